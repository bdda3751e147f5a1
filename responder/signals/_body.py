"""Reading request and response bodies the same way on every endpoint."""

from __future__ import annotations

import json
from typing import Any

import httpx

from responder.exceptions import ExternalServiceError, SignalMalformed

__all__ = ["load_json", "read_capped"]


def load_json(body: bytes | str, *, expected: str = "JSON") -> Any:
    """Parse a request body as strict JSON (no NaN or Infinity) and return it.

    Raises:
        SignalMalformed: empty, not UTF-8, not JSON, or nested too deeply to
            read; the message says which, and what was `expected`.
    """
    if not body.strip():
        msg = f"empty body: expected {expected}"
        raise SignalMalformed(msg)
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        msg = f"body is not JSON: not UTF-8 text (expected {expected})"
        raise SignalMalformed(msg) from None
    except json.JSONDecodeError as exc:
        msg = f"body is not JSON: {exc.msg} (expected {expected})"
        raise SignalMalformed(msg) from None
    except (RecursionError, ValueError):
        # Nesting too deep for the parser, an integer too long, or NaN.
        msg = (
            "body is JSON this service will not parse (too deeply nested, a huge"
            " number, or NaN)"
        )
        raise SignalMalformed(msg) from None


def read_capped(
    response: httpx.Response,
    max_bytes: int,
    *,
    what: str,
    error: type[ExternalServiceError],
) -> bytes:
    """Return a streamed response's body, refusing one over `max_bytes`.

    Checks the declared length first and the bytes as they arrive, so a peer
    that lies about its length still cannot make us hold more.

    Raises:
        error: the body is over the limit.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        msg = f"{what} answer of {declared} bytes is over the {max_bytes}-byte limit"
        raise error(msg)

    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            msg = f"{what} answer is over the {max_bytes}-byte limit"
            raise error(msg)
        chunks.append(chunk)

    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)
