"""Partner-program token reports: verify the sender, parse matches, make signals.

Two senders use one body format, a JSON array of `{token, type, url, source}`
objects (GitHub's secret-scanning partner-program format):

- GitHub itself, signing the raw body with ECDSA P-256/SHA-256 under a key it
  publishes by identifier (`verify_partner_signature`, `PartnerKeyStore`);
- our own scanners (TruffleHog, gitleaks in CI), signing with a shared HMAC
  secret (`verify_scanner_signature`).

Nothing here keeps a token once `parse_matches` returns: a match is known by the
SHA-256 of its token (`token_hash`, also what GitHub's feedback format accepts)
and by the access key IDs found in it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

import httpx
import structlog
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from responder._time import Clock, utcnow
from responder.exceptions import (
    KeyFetchFailed,
    SignalMalformed,
    WebhookSignatureInvalid,
)
from responder.signals._body import load_json, read_capped
from responder.signals.github import AWS_SECRET_TYPES, extract_access_key_ids
from responder.signals.models import ExposureSignal
from responder.store.models import SignalStatus

__all__ = [
    "IDENTIFIER_HEADER",
    "KEYS_PATH",
    "SCANNER_SIGNATURE_HEADER",
    "SIGNATURE_HEADER",
    "FeedbackEntry",
    "PartnerKeyStore",
    "PartnerMatch",
    "feedback",
    "match_signals",
    "parse_matches",
    "verify_partner_signature",
    "verify_scanner_signature",
]

log = structlog.get_logger(__name__)

KEYS_PATH = "/meta/public_keys/secret_scanning"
IDENTIFIER_HEADER = "Github-Public-Key-Identifier"
SIGNATURE_HEADER = "Github-Public-Key-Signature"
SCANNER_SIGNATURE_HEADER = "X-Responder-Signature-256"

# GitHub's identifiers are 64 hex characters, but the docs call them opaque.
_KEY_IDENTIFIER = re.compile(r"[\x21-\x7e]{1,128}")
# A DER ECDSA P-256 signature is at most 72 bytes: 96 base64 characters.
_MAX_SIGNATURE_CHARS = 128
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_TYPE_WORDS = re.compile(r"[^a-z0-9]+")


class PartnerKeyStore:
    """GitHub's secret-scanning public keys by identifier, fetched lazily and cached.

    The list is fetched on first use and again when it is older than `max_age`.
    An identifier not in the list triggers one refresh within a call, and at most
    one fetch happens per `min_refresh_interval` whatever is asked, so forged
    identifiers cannot make the service hammer GitHub. Only ECDSA P-256 keys are
    usable. Thread-safe: callers wait for a fetch in progress instead of starting
    another.

    The caller owns `client` and configures its timeout and any token (GitHub
    rate-limits anonymous calls); redirects are never followed.
    """

    def __init__(
        self,
        client: httpx.Client,
        api_url: str,
        *,
        clock: Clock = utcnow,
        min_refresh_interval: timedelta = timedelta(seconds=60),
        max_age: timedelta = timedelta(hours=24),
        max_response_bytes: int = 65_536,
    ) -> None:
        self.url = api_url.rstrip("/") + KEYS_PATH
        self._client = client
        self._clock = clock
        self._min_refresh_interval = min_refresh_interval
        self._max_age = max_age
        self._max_response_bytes = max_response_bytes
        self._lock = threading.Lock()
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._refused: dict[str, str] = {}
        self._fetched_at: datetime | None = None
        self._attempted_at: datetime | None = None
        self._last_attempt_failed = False

    def public_key(self, identifier: str) -> ec.EllipticCurvePublicKey:
        """Return the P-256 key GitHub publishes under `identifier`.

        Raises:
            WebhookSignatureInvalid: GitHub does not list the identifier (after a
                refresh, or a fetch within `min_refresh_interval`), or lists a key
                that is not ECDSA P-256.
            KeyFetchFailed: the list could not be fetched, so the identifier
                cannot be checked; try again later.
        """
        with self._lock:
            now = self._clock()
            fetched = False
            if self._fetched_at is None or now - self._fetched_at >= self._max_age:
                fetched = self._refresh(now, keep_stale=self._fetched_at is not None)
            known = identifier in self._keys or identifier in self._refused
            if not known and not fetched:
                self._refresh(now, keep_stale=False)

            return self._lookup(identifier)

    def _refresh(self, now: datetime, *, keep_stale: bool) -> bool:
        """Fetch the list unless one was tried lately; return whether it was fetched.

        With `keep_stale`, a failure leaves the cached keys in use instead of
        raising.
        """
        if (
            self._attempted_at is not None
            and now - self._attempted_at < self._min_refresh_interval
        ):
            if self._last_attempt_failed and not keep_stale:
                seconds = int(self._min_refresh_interval.total_seconds())
                msg = (
                    "GitHub's secret-scanning key list could not be fetched, and"
                    f" is tried at most once every {seconds} s"
                )
                raise KeyFetchFailed(msg)
            log.debug("partner_keys_refresh_skipped", url=self.url)
            return False

        self._attempted_at = now
        self._last_attempt_failed = True
        try:
            keys, refused = _read_key_list(self._fetch())
        except KeyFetchFailed as exc:
            if not keep_stale:
                raise
            log.warning("partner_keys_refresh_failed", url=self.url, error=str(exc))
            return False
        self._keys, self._refused = keys, refused
        self._fetched_at = now
        self._last_attempt_failed = False
        log.info(
            "partner_keys_fetched",
            url=self.url,
            count=len(self._keys),
            key_identifiers=sorted(self._keys),
            refused=sorted(self._refused),
        )

        return True

    def _fetch(self) -> Any:
        """Return the parsed key list response, or raise `KeyFetchFailed`."""
        headers = {"Accept": "application/vnd.github+json"}
        try:
            with self._client.stream(
                "GET", self.url, headers=headers, follow_redirects=False
            ) as response:
                raw = self._read_capped(response)
        except httpx.HTTPError as exc:
            msg = f"GitHub key list fetch failed: {type(exc).__name__}"
            raise KeyFetchFailed(msg) from exc

        try:
            return json.loads(raw)
        except (UnicodeDecodeError, RecursionError, ValueError):
            msg = "GitHub key list is not JSON"
            raise KeyFetchFailed(msg) from None

    def _read_capped(self, response: httpx.Response) -> bytes:
        """Return the body of a 200 answer no larger than `max_response_bytes`."""
        if response.status_code != 200:
            msg = f"GitHub key list answered HTTP {response.status_code}"
            raise KeyFetchFailed(msg)

        return read_capped(
            response,
            self._max_response_bytes,
            what="GitHub key list",
            error=KeyFetchFailed,
        )

    def _lookup(self, identifier: str) -> ec.EllipticCurvePublicKey:
        """Return the cached key, or raise `WebhookSignatureInvalid` saying why not."""
        key = self._keys.get(identifier)
        if key is not None:
            return key
        if identifier in self._refused:
            msg = (
                f"{IDENTIFIER_HEADER} names a key this service refuses:"
                f" {self._refused[identifier]}"
            )
            raise WebhookSignatureInvalid(msg)

        msg = (
            f"{IDENTIFIER_HEADER} names no key in GitHub's secret-scanning key list;"
            " sign with a key listed at /meta/public_keys/secret_scanning"
        )
        raise WebhookSignatureInvalid(msg)


def _read_key_list(
    payload: Any,
) -> tuple[dict[str, ec.EllipticCurvePublicKey], dict[str, str]]:
    """Split a key list into usable P-256 keys and refused ones with the reason.

    Raises:
        KeyFetchFailed: the list is not `{"public_keys": [...]}`.
    """
    entries = payload.get("public_keys") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        msg = "GitHub key list has no 'public_keys' array"
        raise KeyFetchFailed(msg)

    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    refused: dict[str, str] = {}
    for entry in entries:
        identifier = entry.get("key_identifier") if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or not identifier:
            log.warning("partner_key_skipped", reason="entry without key_identifier")
            continue
        key, reason = _load_p256(entry.get("key"))
        if key is None:
            log.warning("partner_key_skipped", key_identifier=identifier, reason=reason)
            refused[identifier] = reason
        else:
            keys[identifier] = key

    return keys, refused


def _load_p256(pem: object) -> tuple[ec.EllipticCurvePublicKey | None, str]:
    """Return the key in `pem` if it is an ECDSA P-256 public key, else the reason."""
    if not isinstance(pem, str):
        return None, "the list gives no PEM key"
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        return None, "the listed key is not a readable PEM public key"
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return None, "the listed key is not an ECDSA key"
    if not isinstance(key.curve, ec.SECP256R1):
        return None, f"the listed key is on curve {key.curve.name}, not P-256"

    return key, ""


def verify_partner_signature(
    body: bytes, headers: Mapping[str, str], keys: PartnerKeyStore
) -> None:
    """Check GitHub's ECDSA P-256/SHA-256 signature over the exact bytes received.

    Header names are matched in any case; each header must come once. Both are
    checked for shape before any key is fetched.

    Raises:
        WebhookSignatureInvalid: a header is missing, repeated, oversized or
            malformed, the key is unknown or refused, or the signature does not
            match the body.
        KeyFetchFailed: GitHub's key list could not be fetched; try again later.
    """
    identifier = _single_header(headers, IDENTIFIER_HEADER)
    encoded = _single_header(headers, SIGNATURE_HEADER)
    if not _KEY_IDENTIFIER.fullmatch(identifier):
        msg = (
            f"malformed {IDENTIFIER_HEADER}: expected a key_identifier from GitHub's"
            " key list (1 to 128 visible ASCII characters)"
        )
        raise WebhookSignatureInvalid(msg)
    if len(encoded) > _MAX_SIGNATURE_CHARS:
        msg = (
            f"{SIGNATURE_HEADER} is over {_MAX_SIGNATURE_CHARS} characters:"
            " expected the base64 of one DER-encoded ECDSA P-256 signature"
        )
        raise WebhookSignatureInvalid(msg)
    try:
        signature = base64.b64decode(encoded, validate=True)
        decode_dss_signature(signature)
    except (binascii.Error, ValueError):
        msg = (
            f"malformed {SIGNATURE_HEADER}: expected the base64 of one DER-encoded"
            " ECDSA signature"
        )
        raise WebhookSignatureInvalid(msg) from None

    key = keys.public_key(identifier)
    try:
        key.verify(signature, body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        msg = (
            f"{SIGNATURE_HEADER} does not match the body under the key named by"
            f" {IDENTIFIER_HEADER}; sign the exact bytes sent"
        )
        raise WebhookSignatureInvalid(msg) from None


def _single_header(headers: Mapping[str, str], name: str) -> str:
    """Return the one value of header `name`, matched in any case."""
    wanted = name.lower()
    values = [value for key, value in headers.items() if key.lower() == wanted]
    if not values:
        msg = f"missing {name} header"
        raise WebhookSignatureInvalid(msg)
    if len(values) > 1:
        msg = f"{name} header sent {len(values)} times; send it once"
        raise WebhookSignatureInvalid(msg)

    return values[0].strip()


def verify_scanner_signature(body: bytes, header: str | None, secret: bytes) -> None:
    """Check `X-Responder-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body.

    Same rules as GitHub's `X-Hub-Signature-256`: the hex digest may be in any
    case, the comparison takes constant time.

    Raises:
        WebhookSignatureInvalid: missing, malformed, or not matching.
        ValueError: `secret` is empty (a configuration mistake, not the sender's).
    """
    if not secret:
        msg = "scanner secret is empty: anyone could sign with it"
        raise ValueError(msg)
    if not header:
        msg = f"missing {SCANNER_SIGNATURE_HEADER} header"
        raise WebhookSignatureInvalid(msg)
    scheme, _, digest = header.partition("=")
    if scheme != "sha256" or not _HEX_DIGEST.fullmatch(digest):
        msg = (
            f"malformed {SCANNER_SIGNATURE_HEADER}: expected sha256=<64 hex characters>"
        )
        raise WebhookSignatureInvalid(msg)

    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest.lower()):
        msg = (
            f"{SCANNER_SIGNATURE_HEADER} does not match the body and the shared"
            " secret; sign the exact bytes sent"
        )
        raise WebhookSignatureInvalid(msg)


@dataclass(frozen=True)
class PartnerMatch:
    """One reported token, known by its SHA-256 and the key IDs it holds.

    The token itself is not kept: `token_hash` is the SHA-256 hex digest of its
    UTF-8 bytes, the form GitHub's feedback accepts. `url` and `source` are `None`
    when the sender left them out, sent null, or sent an empty string.
    """

    token_hash: str
    type: str
    url: str | None
    source: str | None
    access_key_ids: tuple[str, ...]

    @property
    def is_aws_type(self) -> bool:
        """Return whether `type` names an AWS credential (any case or separator)."""
        words = _TYPE_WORDS.sub("_", self.type.lower()).strip("_")
        return words in AWS_SECRET_TYPES or words == "aws" or words.startswith("aws_")

    def details(self) -> dict[str, Any]:
        """Return the fields kept with a signal; never the token."""
        return {
            "type": self.type,
            "url": self.url,
            "source": self.source,
            "token_hash": self.token_hash,
        }


# A credential names one key; a token naming many is a list, not a leak to act on.
MAX_KEYS_PER_TOKEN = 4
_FIELD_LIMITS = {"type": 256, "source": 256, "url": 4096}


def parse_matches(body: bytes, max_matches: int = 1000) -> list[PartnerMatch]:
    """Read a verified body as a JSON array of `{token, type, url, source}` objects.

    `token` and `type` must be non-empty strings. `url` and `source` may be
    missing, null or a string; any other type is refused rather than guessed at,
    so a broken sender hears about it. Fields not listed here are ignored, so a
    field GitHub adds later does not break intake. An empty array is valid and
    yields no matches.

    Raises:
        SignalMalformed: the body is not such an array, or holds more than
            `max_matches` elements.
    """
    payload = _load_array(body)
    if len(payload) > max_matches:
        msg = (
            f"batch of {len(payload)} matches is over the limit of {max_matches};"
            " send smaller batches"
        )
        raise SignalMalformed(msg)

    return [_read_match(index, element) for index, element in enumerate(payload)]


def _load_array(body: bytes) -> list[Any]:
    """Parse `body` as a JSON array, or raise `SignalMalformed` saying why not."""
    expected = "expected a JSON array of {token, type, url, source} objects"
    payload = load_json(body, expected="a JSON array of matches")
    if not isinstance(payload, list):
        msg = f"body is a JSON {type(payload).__name__}: {expected}"
        raise SignalMalformed(msg)

    return payload


def _read_match(index: int, element: Any) -> PartnerMatch:
    """Turn one array element into a `PartnerMatch`, dropping the token."""
    if not isinstance(element, dict):
        msg = f"match {index} is not an object: expected {{token, type, url, source}}"
        raise SignalMalformed(msg)
    token, type_ = element.get("token"), element.get("type")
    if not isinstance(token, str) or not token:
        msg = f"match {index}: 'token' must be a non-empty string"
        raise SignalMalformed(msg)
    if not isinstance(type_, str) or not type_:
        msg = f"match {index}: 'type' must be a non-empty string"
        raise SignalMalformed(msg)
    for name in ("url", "source"):
        if not isinstance(element.get(name), str | None):
            msg = f"match {index}: '{name}' must be a string, null, or left out"
            raise SignalMalformed(msg)
    for name, limit in _FIELD_LIMITS.items():
        value = element.get(name)
        if isinstance(value, str) and (len(value) > limit or not value.isprintable()):
            msg = (
                f"match {index}: '{name}' must be printable text of at most"
                f" {limit} characters"
            )
            raise SignalMalformed(msg)
    key_ids = extract_access_key_ids(token)
    if len(key_ids) > MAX_KEYS_PER_TOKEN:
        msg = (
            f"match {index}: the token names {len(key_ids)} access key IDs; one"
            f" credential names at most {MAX_KEYS_PER_TOKEN}: send one match each"
        )
        raise SignalMalformed(msg)

    # A lone surrogate from a JSON escape cannot be UTF-8 encoded strictly.
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    return PartnerMatch(
        token_hash=digest,
        type=type_,
        url=element.get("url") or None,
        source=element.get("source") or None,
        access_key_ids=tuple(key_ids),
    )


def match_signals(
    matches: Iterable[PartnerMatch], *, source: str
) -> list[ExposureSignal]:
    """Return one signal per match and key ID, ready to store.

    `source` is "partner" for GitHub's ECDSA-signed posts and "scanner" for
    HMAC-signed ones. A match whose token holds key IDs gives one ACCEPTED signal
    per key ID, whatever its type. Otherwise an AWS-typed match (a secret access
    key or session token alone) gives one NEEDS_PERSON signal, and any other
    type one IGNORED signal. `delivery_id` depends only on the match (and key ID),
    so the same match posted again is a duplicate in the store.
    """
    signals: list[ExposureSignal] = []
    for match in matches:
        kind = f"token_match.{match.type}"
        for key_id in match.access_key_ids:
            signals.append(
                ExposureSignal(
                    source=source,
                    delivery_id=_delivery_id(match, key_id),
                    kind=kind,
                    status=SignalStatus.ACCEPTED,
                    reason=f"accepted: the {match.type} token holds key ID {key_id}",
                    access_key_id=key_id,
                    details=match.details(),
                )
            )
        if match.access_key_ids:
            continue
        if match.is_aws_type:
            status = SignalStatus.NEEDS_PERSON
            reason = (
                f"needs a person: the {match.type} token names no access key ID;"
                " identify the key from where it was found (details.url)"
            )
        else:
            status = SignalStatus.IGNORED
            reason = f"ignored: not an AWS credential (type {match.type})"
        signals.append(
            ExposureSignal(
                source=source,
                delivery_id=_delivery_id(match, None),
                kind=kind,
                status=status,
                reason=reason,
                details=match.details(),
            )
        )

    return signals


def _delivery_id(match: PartnerMatch, key_id: str | None) -> str:
    """Return a stable ID for a match and key ID; the JSON list keeps fields apart."""
    fields = [match.token_hash, match.type, match.url, match.source, key_id]
    encoded = json.dumps(fields, separators=(",", ":")).encode()

    return hashlib.sha256(encoded).hexdigest()


class FeedbackEntry(TypedDict):
    """One element of the false-positive feedback GitHub's partner program takes."""

    token_hash: str
    token_type: str
    label: Literal["true_positive", "false_positive"]


def feedback(matches: Iterable[PartnerMatch]) -> list[FeedbackEntry]:
    """Return one feedback entry per match, in order, with the token's hash only.

    The label is "true_positive" when the token holds a well-formed AKIA/ASIA key
    ID, or is of an AWS credential type (a secret access key without its key ID
    goes to a person, and calling it false could silence a real leak), and
    "false_positive" otherwise. This reads only the token's form: the responder
    never calls AWS with a leaked credential to test it.
    """
    return [
        FeedbackEntry(
            token_hash=match.token_hash,
            token_type=match.type,
            label="true_positive"
            if match.access_key_ids or match.is_aws_type
            else "false_positive",
        )
        for match in matches
    ]
