"""Named retry policies for AWS calls: transient failures only, bounded, logged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

__all__ = [
    "THROTTLING_CODES",
    "error_code_of",
    "is_retryable",
    "is_throttling",
    "retrying",
]

log = structlog.get_logger(__name__)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "EC2ThrottledException",
        "PriorRequestNotComplete",
    }
)

_NETWORK_ERRORS = (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


def error_code_of(exc: BaseException) -> str:
    """Return the AWS error code of a botocore error, or the exception's class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))

    return type(exc).__name__


def is_throttling(exc: BaseException) -> bool:
    """Return whether AWS refused the call for rate, so it did not run."""
    return isinstance(exc, ClientError) and error_code_of(exc) in THROTTLING_CODES


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """Return whether `exc` is transient and the call may be sent again.

    A throttled call never ran, so it is always safe to resend. A 5xx or a lost
    connection may hide a call that did run: only idempotent calls are resent then;
    the caller of a non-idempotent one re-reads state instead.
    """
    if is_throttling(exc):
        return True
    if not idempotent:
        return False
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return int(status) >= 500

    return isinstance(exc, _NETWORK_ERRORS)


def retrying(
    *,
    operation: str,
    max_attempts: int,
    idempotent: bool,
    sleep: Callable[[float], None],
    max_delay: float = 8.0,
) -> Retrying:
    """Build the policy for one AWS call: exponential backoff with full jitter."""

    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "aws_call_retried",
            operation=operation,
            error_code=error_code_of(exc) if exc else None,
            attempt=state.attempt_number,
            delay=round(delay, 3),
        )

    def _should_retry(exc: BaseException) -> bool:
        return is_retryable(exc, idempotent=idempotent)

    kwargs: dict[str, Any] = {
        "retry": retry_if_exception(_should_retry),
        "wait": wait_random_exponential(multiplier=0.25, max=max_delay),
        "stop": stop_after_attempt(max_attempts),
        "before_sleep": _log_retry,
        "sleep": sleep,
        "reraise": True,
    }

    return Retrying(**kwargs)
