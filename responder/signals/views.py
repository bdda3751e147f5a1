"""Webhook endpoints: authenticate the exact bytes, store, acknowledge fast."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from responder.exceptions import (
    SignalMalformed,
    SignalRejected,
    WebhookSignatureInvalid,
)
from responder.incidents.flows import SignalOutcome
from responder.signals.github import parse_alert, parse_delivery, verify_signature
from responder.store.models import SignalStatus

__all__ = ["read_body", "router"]

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"])


class BodyTooLarge(SignalRejected):
    """Raised when a request body is larger than `RESPONDER_MAX_BODY_BYTES`."""

    status_code = 413


async def read_body(request: Request) -> bytes:
    """Return the raw body, refusing (413) one above the configured limit."""
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        msg = f"body of {declared} bytes is over the {limit}-byte limit"
        raise BodyTooLarge(msg)

    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            msg = f"body is over the {limit}-byte limit"
            raise BodyTooLarge(msg)
        chunks.append(chunk)

    return b"".join(chunks)


@router.post(
    "/webhooks/github",
    status_code=202,
    summary="GitHub secret_scanning_alert deliveries",
    responses={401: {"description": "signature missing or wrong"}, 413: {}},
)
async def github_webhook(
    request: Request,
    body: Annotated[bytes, Depends(read_body)],
    x_github_event: Annotated[str | None, Header()] = None,
    x_github_delivery: Annotated[str | None, Header()] = None,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Verify, record and acknowledge one delivery; the playbook runs later."""
    settings = request.app.state.settings
    secret = settings.github_webhook_secret.get_secret_value().encode()

    # Authenticate the bytes as received, before reading anything in them.
    try:
        verify_signature(body, x_hub_signature_256, secret)
    except WebhookSignatureInvalid:
        log.warning("webhook_rejected", source="github", reason="signature")
        raise
    if not x_github_delivery or len(x_github_delivery) > 128:
        msg = "missing or oversized X-GitHub-Delivery header"
        raise SignalMalformed(msg)
    if not x_github_event:
        msg = "missing X-GitHub-Event header"
        raise SignalMalformed(msg)
    payload = parse_delivery(body)

    engine = request.app.state.engine
    if x_github_event == "ping":
        return JSONResponse({"status": "pong", "zen": payload.get("zen")}, 200)
    if x_github_event != "secret_scanning_alert":
        outcome = engine.signal_received_flow(
            source="github",
            delivery_id=x_github_delivery,
            kind=f"{x_github_event}.{payload.get('action', '')}",
            status=SignalStatus.IGNORED,
            reason=f"ignored: event {x_github_event!r} is not acted on",
        )
        return _answer(outcome, 200)

    alert = parse_alert(payload)
    reason = alert.ignore_reason()
    outcome = engine.signal_received_flow(
        source="github",
        delivery_id=x_github_delivery,
        kind=f"secret_scanning_alert.{alert.action}",
        status=SignalStatus.IGNORED if reason else SignalStatus.NEEDS_KEY_ID,
        reason=reason or "needs key ID: looking up the alert",
        details=alert.details(),
    )

    return _answer(outcome, 200 if reason else 202)


def _answer(outcome: SignalOutcome, status_code: int) -> JSONResponse:
    """Return the acknowledgement; a duplicate is always a plain 200."""
    signal = outcome.signal
    body = {
        "signal_id": signal.id,
        "status": "duplicate" if outcome.duplicate else signal.status.value,
        "reason": signal.reason,
        "incident_id": signal.incident_id,
    }

    return JSONResponse(body, status_code=200 if outcome.duplicate else status_code)
