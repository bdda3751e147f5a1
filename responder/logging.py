"""structlog configuration: one function, JSON off a TTY, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "redact_secrets"]

# Field names whose values are secret whatever they hold.
_SECRET_FIELDS = re.compile(
    r"(secret|password|token|authorization|signature|credential|sessiontoken)",
    re.IGNORECASE,
)
# Values shaped like a secret access key (40 base64 characters) or a session token.
_SECRET_VALUE = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")
_SAFE_FIELDS = {"access_key_id", "new_access_key_id", "secret_arn", "secret_name"}


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop values of secret-named fields and mask secret-shaped strings."""
    for key, value in list(event_dict.items()):
        if key in _SAFE_FIELDS:
            continue
        if _SECRET_FIELDS.search(key):
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = _SECRET_VALUE.sub("[redacted]", value)

    return event_dict


def configure_logging(*, level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog once per process; tests use `structlog.reset_defaults`."""
    renderer: Any
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    if use_console:
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.dict_tracebacks
            if not use_console
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
