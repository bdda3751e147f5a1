"""Webhook endpoints: authenticate the exact bytes, store, acknowledge fast."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from responder.exceptions import (
    BodyTooLarge,
    EndpointDisabled,
    ExternalServiceError,
    PeerUnavailable,
    SignalForbidden,
    SignalMalformed,
    WebhookSignatureInvalid,
)
from responder.incidents.flows import SignalOutcome
from responder.signals._body import load_json
from responder.signals.aws import parse_aws_events
from responder.signals.github import parse_alert, parse_delivery, verify_signature
from responder.signals.models import ExposureSignal
from responder.signals.partner import (
    PartnerKeyStore,
    feedback,
    match_signals,
    parse_matches,
    verify_partner_signature,
    verify_scanner_signature,
)
from responder.signals.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    SnsEnvelope,
    SnsVerifier,
    SubscriptionConfirmer,
    parse_envelope,
    topic_allowed,
)
from responder.store.models import SignalStatus

__all__ = ["MAX_KEYS_PER_REQUEST", "Intake", "read_body", "router"]

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"])


# No real delivery names more keys than this; a flood of made-up key IDs must not
# queue in front of a real leak.
MAX_KEYS_PER_REQUEST = 50


@dataclass(frozen=True)
class Intake:
    """What the AWS and scanner endpoints verify with; shared by every request."""

    sns_verifier: SnsVerifier
    sns_confirmer: SubscriptionConfirmer
    partner_keys: PartnerKeyStore


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
    if not x_github_event or len(x_github_event) > 64:
        msg = "missing or oversized X-GitHub-Event header"
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


@router.post(
    "/webhooks/aws",
    status_code=202,
    summary="EventBridge events (GuardDuty, Health) from an API destination",
    responses={401: {"description": "shared secret missing or wrong"}, 413: {}},
)
async def aws_webhook(
    request: Request, body: Annotated[bytes, Depends(read_body)]
) -> JSONResponse:
    """Verify the shared secret, record every signal in the event, acknowledge."""
    settings = request.app.state.settings
    if settings.aws_webhook_secret is None:
        msg = "the AWS endpoint is off: set RESPONDER_AWS_WEBHOOK_SECRET to enable it"
        raise EndpointDisabled(msg)

    header = settings.aws_webhook_header
    given = request.headers.get(header)
    if not _secret_matches(given, settings.aws_webhook_secret.get_secret_value()):
        log.warning("webhook_rejected", source="aws", reason="shared_secret")
        msg = f"missing or wrong {header} header"
        raise WebhookSignatureInvalid(msg)
    exposures = parse_aws_events(
        load_json(body), health_codes=frozenset(settings.health_risk_codes)
    )

    return await _accept(request, exposures)


@router.post(
    "/webhooks/sns",
    status_code=202,
    summary="The same AWS events through an SNS topic (HTTPS subscription)",
    responses={401: {}, 403: {"description": "topic not allowed"}, 413: {}},
)
async def sns_webhook(
    request: Request, body: Annotated[bytes, Depends(read_body)]
) -> JSONResponse:
    """Verify SNS's signature, confirm allowed subscriptions, unwrap messages."""
    settings = request.app.state.settings
    intake: Intake = request.app.state.intake
    if not settings.sns_topic_arns:
        msg = "the SNS endpoint is off: list topics in RESPONDER_SNS_TOPIC_ARNS"
        raise EndpointDisabled(msg)

    envelope = parse_envelope(body, request.headers)
    # Cheap and local first: a topic we do not accept costs no certificate fetch.
    if not topic_allowed(envelope.topic_arn, settings.sns_topic_arns):
        log.warning(
            "webhook_rejected", source="sns", reason="topic", topic=envelope.topic_arn
        )
        msg = f"topic {envelope.topic_arn} is not in RESPONDER_SNS_TOPIC_ARNS"
        raise SignalForbidden(msg)
    try:
        if envelope.raw:
            _check_raw_delivery(request, settings)
        else:
            await run_in_threadpool(intake.sns_verifier.verify, envelope)
    except WebhookSignatureInvalid:
        log.warning("webhook_rejected", source="sns", reason="signature")
        raise
    except ExternalServiceError as exc:
        msg = f"cannot verify now ({exc}); SNS will retry"
        raise PeerUnavailable(msg) from None

    if envelope.type == SUBSCRIPTION_CONFIRMATION:
        if envelope.raw:
            msg = "a raw delivery cannot confirm a subscription: SNS signs those"
            raise SignalMalformed(msg)
        return await _confirm(intake, envelope)
    if envelope.type != NOTIFICATION:
        log.warning("sns_unsubscribed", topic=envelope.topic_arn)
        return JSONResponse({"status": "noted", "type": envelope.type}, 200)

    return await _accept(request, _sns_exposures(envelope, settings))


@router.post(
    "/webhooks/secret-scanning",
    summary="Scanner findings in GitHub's secret-scanning partner format",
    responses={401: {}, 413: {}, 503: {"description": "GitHub keys unavailable"}},
)
async def secret_scanning_webhook(
    request: Request, body: Annotated[bytes, Depends(read_body)]
) -> JSONResponse:
    """Verify GitHub's ECDSA or a scanner's HMAC, record each match, give feedback."""
    source = await _verify_scanning(request, body)

    matches = parse_matches(body)
    await _store(request, match_signals(matches, source=source))

    return JSONResponse(feedback(matches), 200)


async def _verify_scanning(request: Request, body: bytes) -> str:
    """Authenticate a partner-format post; return its source, `partner` or `scanner`.

    Raises:
        WebhookSignatureInvalid: unsigned, or signed wrongly.
        PeerUnavailable: GitHub's public keys could not be fetched (503).
    """
    settings = request.app.state.settings
    intake: Intake = request.app.state.intake
    headers = request.headers

    if "github-public-key-signature" in headers:
        try:
            await run_in_threadpool(
                verify_partner_signature, body, headers, intake.partner_keys
            )
        except WebhookSignatureInvalid:
            log.warning("webhook_rejected", source="partner", reason="signature")
            raise
        except ExternalServiceError as exc:
            msg = f"cannot verify now ({exc}); send again later"
            raise PeerUnavailable(msg) from None
        return "partner"

    if "x-responder-signature-256" in headers:
        if settings.scanner_hmac_secret is None:
            msg = "HMAC-signed posts are off: set RESPONDER_SCANNER_HMAC_SECRET"
            raise WebhookSignatureInvalid(msg)
        secret = settings.scanner_hmac_secret.get_secret_value().encode()
        try:
            verify_scanner_signature(body, headers["x-responder-signature-256"], secret)
        except WebhookSignatureInvalid:
            log.warning("webhook_rejected", source="scanner", reason="signature")
            raise
        return "scanner"

    msg = (
        "unsigned: send Github-Public-Key-Identifier and"
        " Github-Public-Key-Signature, or X-Responder-Signature-256"
    )
    raise WebhookSignatureInvalid(msg)


def _secret_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _check_raw_delivery(request: Request, settings: Any) -> None:
    """Authenticate an unsigned raw delivery by the endpoint URL's basic auth."""
    secret = settings.aws_webhook_secret
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    password = None
    if scheme.lower() == "basic":
        try:
            password = (
                base64.b64decode(encoded, validate=True).decode().partition(":")[2]
            )
        except (binascii.Error, UnicodeDecodeError):
            password = None
    if secret is None or not _secret_matches(password, secret.get_secret_value()):
        msg = (
            "raw message delivery is unsigned: subscribe https://user:<the"
            " RESPONDER_AWS_WEBHOOK_SECRET>@host/webhooks/sns, or turn raw delivery off"
        )
        raise WebhookSignatureInvalid(msg)


async def _confirm(intake: Intake, envelope: SnsEnvelope) -> JSONResponse:
    try:
        arn = await run_in_threadpool(intake.sns_confirmer.confirm, envelope)
    except ExternalServiceError as exc:
        msg = f"subscription not confirmed ({exc}); SNS will retry"
        raise PeerUnavailable(msg) from None
    log.info("sns_subscription_confirmed", topic=envelope.topic_arn, subscription=arn)

    return JSONResponse({"status": "subscribed", "subscription_arn": arn}, 200)


def _sns_exposures(envelope: SnsEnvelope, settings: Any) -> list[ExposureSignal]:
    try:
        payload = json.loads(envelope.message)
    except RecursionError:
        msg = "the SNS message is JSON nested too deeply to read"
        raise SignalMalformed(msg) from None
    except ValueError:
        payload = None
    if not isinstance(payload, dict | list):
        return [
            ExposureSignal(
                source="sns",
                delivery_id=envelope.message_id,
                kind="sns.not_json",
                status=SignalStatus.IGNORED,
                reason="ignored: the SNS message is not a JSON event",
                details=envelope.details(),
            )
        ]

    return parse_aws_events(payload, health_codes=frozenset(settings.health_risk_codes))


def _check_key_count(exposures: list[ExposureSignal]) -> None:
    """Refuse one request naming more keys than any real signal does."""
    keys = {e.access_key_id for e in exposures if e.access_key_id is not None}
    if len(keys) > MAX_KEYS_PER_REQUEST:
        msg = (
            f"the request names {len(keys)} access keys; at most"
            f" {MAX_KEYS_PER_REQUEST} are taken at once: send smaller batches"
        )
        raise SignalMalformed(msg)


async def _store(
    request: Request, exposures: list[ExposureSignal]
) -> list[SignalOutcome]:
    """Refuse too many keys, then store every signal and act on it.

    The store and the engine block: they run on a worker thread, so one large
    delivery does not stall every other request.
    """
    _check_key_count(exposures)
    engine = request.app.state.engine

    return await run_in_threadpool(
        lambda: [engine.exposure_received_flow(exposure) for exposure in exposures]
    )


async def _accept(request: Request, exposures: list[ExposureSignal]) -> JSONResponse:
    """Store every signal, then answer: 202 if any opened work, else 200."""
    outcomes = await _store(request, exposures)
    answers = [
        {
            "signal_id": outcome.signal.id,
            "status": _status_word(outcome),
            "reason": outcome.signal.reason,
            "access_key_id": outcome.signal.access_key_id,
            "incident_id": outcome.signal.incident_id,
        }
        for outcome in outcomes
    ]
    acted = any(
        not outcome.duplicate and outcome.signal.status is SignalStatus.ACCEPTED
        for outcome in outcomes
    )

    return JSONResponse({"signals": answers}, status_code=202 if acted else 200)


def _status_word(outcome: SignalOutcome) -> str:
    if outcome.duplicate and outcome.signal.seen_count > 1:
        return "repeated"
    if outcome.duplicate:
        return "duplicate"

    return outcome.signal.status.value


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
