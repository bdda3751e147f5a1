"""SNS HTTP(S) deliveries: read the envelope, check its signature, confirm it.

SNS signs every JSON envelope it POSTs (RSA PKCS#1 v1.5 with SHA1 for
SignatureVersion 1, SHA256 for 2) with a certificate it serves at
`SigningCertURL`. Nothing here trusts that URL until it is an https `.pem` URL on
an `sns.<region>.amazonaws.com` host, and nothing trusts the certificate until it
is issued to an SNS name and valid now. Raw message delivery is unsigned: the
envelope says so (`raw`), and the verifier refuses it.

The endpoint wires these parts; topic allow-listing is its job (`topic_allowed`).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from responder._time import Clock, isoformat_z, parse_timestamp, utcnow
from responder.exceptions import (
    ExternalServiceError,
    KeyFetchFailed,
    SignalForbidden,
    SignalMalformed,
    WebhookSignatureInvalid,
)
from responder.signals._body import load_json, read_capped

__all__ = [
    "MESSAGE_TYPES",
    "NOTIFICATION",
    "SUBSCRIPTION_CONFIRMATION",
    "UNSUBSCRIBE_CONFIRMATION",
    "CertificateCache",
    "CertificateSource",
    "SnsEnvelope",
    "SnsVerifier",
    "SubscriptionConfirmer",
    "is_sns_host",
    "parse_envelope",
    "string_to_sign",
    "topic_allowed",
]

log = structlog.get_logger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
MESSAGE_TYPES = frozenset(
    {NOTIFICATION, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION}
)

# The signed fields, in the order SNS concatenates them (SNS developer guide,
# "Verifying the signatures of Amazon SNS messages"). Subject only if present.
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}
# Lambda and SQS-JSON copies of the envelope spell these fields `...Url`.
_URL_CASINGS = {
    "SigningCertUrl": "SigningCertURL",
    "SubscribeUrl": "SubscribeURL",
    "UnsubscribeUrl": "UnsubscribeURL",
}
_JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
    type(None): "null",
}

_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}"
_SNS_HOST = re.compile(rf"sns\.{_REGION}\.amazonaws\.com(?:\.cn)?")
# The real certificate is issued to `sns.amazonaws.com`; allow regional names too.
_SNS_CERTIFICATE_NAME = re.compile(rf"sns(?:\.{_REGION})?\.amazonaws\.com(?:\.cn)?")
_PRINTABLE_ASCII = re.compile(r"[!-~]+")
_MAX_URL_LENGTH = 2048

# ConfirmSubscriptionResponse / ConfirmSubscriptionResult / SubscriptionArn.
_SUBSCRIPTION_ARN = re.compile(
    r"<ConfirmSubscriptionResult>\s*"
    r"<SubscriptionArn>\s*([^<]{1,512}?)\s*</SubscriptionArn>\s*"
    r"</ConfirmSubscriptionResult>"
)
_ERROR_CODE = re.compile(r"<Code>\s*([A-Za-z0-9.]{1,64})\s*</Code>")
_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.:-]+")

_MAX_FUTURE_SKEW = timedelta(minutes=5)
_MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SnsEnvelope:
    """One SNS delivery as received; `raw` ones carry no signature at all.

    `timestamp` is `None` only for raw deliveries, which carry no time;
    `timestamp_text` is the `Timestamp` exactly as signed. The `token`, the
    `subscribe_url` (which holds the token) and the `signature` are left out of
    `repr` and of `details()`: they must never be logged or stored.
    """

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime | None
    timestamp_text: str | None = None
    subject: str | None = None
    signature_version: str | None = None
    signature: str | None = field(default=None, repr=False)
    signing_cert_url: str | None = None
    subscribe_url: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    raw: bool = False

    def details(self) -> dict[str, Any]:
        """Return the fields worth keeping with a signal; never a secret."""
        return {
            "sns_type": self.type,
            "sns_message_id": self.message_id,
            "topic_arn": self.topic_arn,
            "subject": self.subject,
            "sns_timestamp": isoformat_z(self.timestamp) if self.timestamp else None,
            "raw_delivery": self.raw,
        }


def parse_envelope(body: bytes, headers: Mapping[str, str]) -> SnsEnvelope:
    """Read an SNS POST body, whatever its content type, into an envelope.

    Header names are matched case-insensitively. With `x-amz-sns-rawdelivery:
    true` the body is the message itself, and the topic and message ID come from
    the `x-amz-sns-topic-arn` and `x-amz-sns-message-id` headers. Nothing is
    verified here: pass the result to `SnsVerifier.verify`.

    Raises:
        SignalMalformed: not JSON, a field missing or of the wrong type, an
            unknown `Type`, or headers that contradict the body.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("x-amz-sns-rawdelivery", "").strip().lower() == "true":
        return _parse_raw(body, lowered)

    fields = _normalise_casing(_load_object(body))
    message_type = _required(fields, "Type")
    if message_type not in MESSAGE_TYPES:
        msg = f"unknown SNS Type {_shown(message_type)}"
        raise SignalMalformed(msg)
    message_id = _required(fields, "MessageId")
    topic_arn = _required(fields, "TopicArn")
    for header, name, value in (
        ("x-amz-sns-message-type", "Type", message_type),
        ("x-amz-sns-message-id", "MessageId", message_id),
        ("x-amz-sns-topic-arn", "TopicArn", topic_arn),
    ):
        declared = lowered.get(header)
        if declared is not None and declared != value:
            msg = f"header {header} does not match the body's {name}"
            raise SignalMalformed(msg)
    timestamp_text = _required(fields, "Timestamp")
    timestamp = parse_timestamp(timestamp_text)
    if timestamp is None:
        msg = f"SNS Timestamp {_shown(timestamp_text)} is not a readable time"
        raise SignalMalformed(msg)
    confirmation = message_type != NOTIFICATION

    return SnsEnvelope(
        type=message_type,
        message_id=message_id,
        topic_arn=topic_arn,
        message=_required(fields, "Message", allow_empty=True),
        timestamp=timestamp,
        timestamp_text=timestamp_text,
        subject=_optional(fields, "Subject"),
        signature_version=_required(fields, "SignatureVersion"),
        signature=_required(fields, "Signature"),
        signing_cert_url=_required(fields, "SigningCertURL"),
        subscribe_url=_required(fields, "SubscribeURL") if confirmation else None,
        token=_required(fields, "Token") if confirmation else None,
    )


def _parse_raw(body: bytes, headers: Mapping[str, str]) -> SnsEnvelope:
    message_type = headers.get("x-amz-sns-message-type") or NOTIFICATION
    if message_type not in MESSAGE_TYPES:
        msg = f"unknown x-amz-sns-message-type {_shown(message_type)}"
        raise SignalMalformed(msg)
    message_id = headers.get("x-amz-sns-message-id")
    topic_arn = headers.get("x-amz-sns-topic-arn")
    if not message_id or not topic_arn:
        msg = "raw SNS delivery needs x-amz-sns-message-id and x-amz-sns-topic-arn"
        raise SignalMalformed(msg)
    try:
        message = body.decode("utf-8")
    except UnicodeDecodeError:
        msg = "raw SNS delivery body is not UTF-8 text"
        raise SignalMalformed(msg) from None

    return SnsEnvelope(
        type=message_type,
        message_id=message_id,
        topic_arn=topic_arn,
        message=message,
        timestamp=None,
        raw=True,
    )


def _load_object(body: bytes) -> dict[str, Any]:
    payload = load_json(body, expected="an SNS JSON envelope")
    if not isinstance(payload, dict):
        msg = "SNS body must be a JSON object"
        raise SignalMalformed(msg)

    return payload


def _normalise_casing(payload: dict[str, Any]) -> dict[str, Any]:
    fields = dict(payload)
    for variant, canonical in _URL_CASINGS.items():
        if variant not in fields:
            continue
        value = fields.pop(variant)
        if canonical in fields and fields[canonical] != value:
            msg = f"SNS envelope has different {variant} and {canonical} values"
            raise SignalMalformed(msg)
        fields[canonical] = value

    return fields


def _required(
    fields: Mapping[str, Any], name: str, *, allow_empty: bool = False
) -> str:
    if name not in fields:
        msg = f"SNS envelope has no {name} field"
        raise SignalMalformed(msg)
    value = fields[name]
    if not isinstance(value, str):
        msg = f"SNS {name} must be a string, not {_json_type(value)}"
        raise SignalMalformed(msg)
    if not value and not allow_empty:
        msg = f"SNS {name} is empty"
        raise SignalMalformed(msg)

    return value


def _optional(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        msg = f"SNS {name} must be a string, not {_json_type(value)}"
        raise SignalMalformed(msg)

    return value


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _shown(value: str, limit: int = 40) -> str:
    """Quote a sender-controlled value for a message, cut to `limit` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def string_to_sign(envelope: SnsEnvelope) -> bytes:
    """Return the canonical `Name\\nvalue\\n` bytes SNS signed for this envelope.

    Notifications sign Message, MessageId, Subject (only if present), Timestamp,
    TopicArn and Type; both confirmation types sign Message, MessageId,
    SubscribeURL, Timestamp, Token, TopicArn and Type.
    """
    values = {
        "Message": envelope.message,
        "MessageId": envelope.message_id,
        "Subject": envelope.subject,
        "SubscribeURL": envelope.subscribe_url,
        "Timestamp": envelope.timestamp_text,
        "Token": envelope.token,
        "TopicArn": envelope.topic_arn,
    }
    names = (
        _NOTIFICATION_FIELDS if envelope.type == NOTIFICATION else _CONFIRMATION_FIELDS
    )
    lines = [f"{name}\n{values[name]}\n" for name in names if values[name] is not None]
    lines.append(f"Type\n{envelope.type}\n")

    return "".join(lines).encode("utf-8")


def is_sns_host(url: str, *, pem: bool = False) -> bool:
    """Return whether `url` is https on an `sns.<region>.amazonaws.com[.cn]` host.

    No user info, no port but 443, no whitespace, backslash or non-ASCII (so no
    two URL parsers can disagree on the host). With `pem`, the path must also end
    in `.pem` with no query or fragment, as a `SigningCertURL` does.
    """
    if len(url) > _MAX_URL_LENGTH or not _PRINTABLE_ASCII.fullmatch(url) or "\\" in url:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        return False
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or parsed.scheme != "https"
        or "@" in parts.netloc
        or parsed.userinfo
        or port not in (None, 443)
        or parsed.port not in (None, 443)
        or not _SNS_HOST.fullmatch(host)
        or parsed.host != host
    ):
        return False
    if pem:
        return parts.path.endswith(".pem") and not parts.query and not parts.fragment

    return True


def topic_allowed(topic_arn: str, allowed: Iterable[str]) -> bool:
    """Return whether `topic_arn` is exactly one of `allowed`.

    There are no wildcards: a `*` in an allowed entry matches only a `*`.
    """
    return bool(topic_arn) and topic_arn in set(allowed)


class CertificateSource(Protocol):
    """Hands out SNS signing certificates that are fit to verify with now."""

    def get(self, url: str) -> x509.Certificate:
        """Return the certificate at `url`, issued to SNS and valid now.

        Raises:
            WebhookSignatureInvalid: the URL or the certificate is not SNS's.
            KeyFetchFailed: the certificate could not be fetched; try later.
        """
        ...


@dataclass(frozen=True)
class _Cached:
    certificate: x509.Certificate
    fetched_at: datetime


class CertificateCache:
    """Fetches SNS signing certificates through `client` and keeps them a while.

    Only URLs passing `is_sns_host(url, pem=True)` are ever requested, without
    following redirects, with a short timeout and a size cap. The client must
    verify TLS (httpx's default): that is what ties the certificate to AWS. A
    certificate is kept, by URL, only if it is issued to an SNS name; at most
    `max_entries` are kept, each for `ttl`. Failed fetches are not kept. Its
    validity period is checked against `clock` on every `get`. Thread-safe; two
    threads missing the same URL at once may both fetch it.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        clock: Clock = utcnow,
        ttl: timedelta = timedelta(hours=24),
        max_entries: int = 32,
        max_bytes: int = _MAX_RESPONSE_BYTES,
        timeout: float = 5.0,
    ) -> None:
        self._client = client
        self._clock = clock
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._entries: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> x509.Certificate:
        """Return the certificate at `url`, issued to SNS and valid now.

        Raises:
            WebhookSignatureInvalid: the URL is not an SNS certificate URL (nothing
                is fetched), or the certificate is not issued to an SNS name or
                not valid at this time.
            KeyFetchFailed: the certificate could not be fetched or read; the
                sender should retry later.
        """
        if not is_sns_host(url, pem=True):
            msg = (
                "SigningCertURL is not an https URL of a .pem file on an SNS host "
                "(sns.<region>.amazonaws.com); refusing to fetch it"
            )
            raise WebhookSignatureInvalid(msg)
        now = self._clock()

        certificate = self._lookup(url, now)
        if certificate is None:
            certificate = self._fetch(url)
            _check_sns_name(certificate)
            self._store(url, _Cached(certificate, now))
        _check_validity(certificate, now)

        return certificate

    def _lookup(self, url: str, now: datetime) -> x509.Certificate | None:
        with self._lock:
            cached = self._entries.get(url)
            if cached is None:
                return None
            if now - cached.fetched_at >= self._ttl:
                del self._entries[url]
                return None
            self._entries.move_to_end(url)
            return cached.certificate

    def _store(self, url: str, cached: _Cached) -> None:
        with self._lock:
            self._entries[url] = cached
            self._entries.move_to_end(url)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def _fetch(self, url: str) -> x509.Certificate:
        try:
            body = _get_capped(
                self._client,
                url,
                timeout=self._timeout,
                max_bytes=self._max_bytes,
                what="SNS signing certificate",
                error=KeyFetchFailed,
            )
            certificate = x509.load_pem_x509_certificate(body)
        except KeyFetchFailed as exc:
            log.warning("sns_certificate_fetch_failed", url=url, reason=str(exc))
            raise
        except ValueError:
            log.warning("sns_certificate_fetch_failed", url=url, reason="not PEM")
            msg = "SNS signing certificate URL answered something other than PEM"
            raise KeyFetchFailed(msg) from None
        log.info("sns_certificate_fetched", url=url, size=len(body))

        return certificate


def _get_capped(
    client: httpx.Client,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    what: str,
    error: type[ExternalServiceError],
) -> bytes:
    """GET `url` without redirects and return its 200 body, at most `max_bytes`.

    Messages never hold the URL: a SubscribeURL carries the subscription token.
    """
    try:
        with client.stream(
            "GET", url, follow_redirects=False, timeout=timeout
        ) as response:
            status = response.status_code
            body = read_capped(response, max_bytes, what=what, error=error)
    except httpx.HTTPError as exc:
        # httpx messages may name the URL, and a SubscribeURL holds the token.
        msg = f"{what} request failed: {type(exc).__name__}"
        raise error(msg) from None
    if status != 200:
        code = _ERROR_CODE.search(body.decode("utf-8", "replace"))
        suffix = f" ({code.group(1)})" if code else ""
        msg = f"{what} request answered HTTP {status}{suffix}"
        raise error(msg)

    return body


def _check_sns_name(certificate: x509.Certificate) -> None:
    names = [
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    try:
        alternative = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        pass
    else:
        names.extend(alternative.value.get_values_for_type(x509.DNSName))
    if not any(_SNS_CERTIFICATE_NAME.fullmatch(name.lower()) for name in names):
        msg = "signing certificate is not issued to an SNS name (sns.amazonaws.com)"
        raise WebhookSignatureInvalid(msg)


def _check_validity(certificate: x509.Certificate, now: datetime) -> None:
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    if not not_before <= now <= not_after:
        msg = (
            f"signing certificate is not valid at {isoformat_z(now)} "
            f"(valid {isoformat_z(not_before)} to {isoformat_z(not_after)})"
        )
        raise WebhookSignatureInvalid(msg)


class SnsVerifier:
    """Checks that an envelope was signed by SNS, recently.

    Stateless apart from its certificate source; safe to share between threads.
    """

    def __init__(
        self,
        certificates: CertificateSource,
        *,
        clock: Clock = utcnow,
        max_age: timedelta = timedelta(hours=1),
    ) -> None:
        self._certificates = certificates
        self._clock = clock
        self._max_age = max_age

    def verify(self, envelope: SnsEnvelope) -> None:
        """Return if the envelope is signed by SNS and its `Timestamp` is recent.

        The cheap checks run first, so a stale or malformed envelope never
        causes a certificate fetch.

        Raises:
            WebhookSignatureInvalid: a raw (unsigned) delivery, an unsupported
                `SignatureVersion`, a `Signature` that is not base64 or does not
                match, a `Timestamp` older than `max_age` or more than five minutes
                ahead, or a certificate that is not SNS's or not valid now.
            KeyFetchFailed: the signing certificate could not be fetched; the
                sender should retry later.
        """
        if envelope.raw:
            msg = (
                "raw SNS delivery is unsigned: it cannot be verified, "
                "authenticate it another way"
            )
            raise WebhookSignatureInvalid(msg)
        algorithm = _hash_for(envelope.signature_version)
        signature = _decode_signature(envelope.signature)
        self._check_age(envelope.timestamp)
        if envelope.signing_cert_url is None:
            msg = "SNS envelope has no SigningCertURL"
            raise WebhookSignatureInvalid(msg)

        certificate = self._certificates.get(envelope.signing_cert_url)
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            msg = "SNS signing certificate does not hold an RSA public key"
            raise WebhookSignatureInvalid(msg)

        try:
            public_key.verify(
                signature, string_to_sign(envelope), padding.PKCS1v15(), algorithm
            )
        except InvalidSignature:
            msg = "SNS Signature does not match the envelope and its certificate"
            raise WebhookSignatureInvalid(msg) from None

    def _check_age(self, timestamp: datetime | None) -> None:
        if timestamp is None:
            msg = "SNS envelope has no Timestamp"
            raise WebhookSignatureInvalid(msg)
        now = self._clock()
        if now - timestamp > self._max_age:
            msg = (
                f"SNS Timestamp {isoformat_z(timestamp)} is older than "
                f"{self._max_age} at {isoformat_z(now)}; refusing a replay"
            )
            raise WebhookSignatureInvalid(msg)
        if timestamp - now > _MAX_FUTURE_SKEW:
            msg = (
                f"SNS Timestamp {isoformat_z(timestamp)} is more than "
                f"{_MAX_FUTURE_SKEW} ahead of {isoformat_z(now)}"
            )
            raise WebhookSignatureInvalid(msg)


def _hash_for(version: str | None) -> hashes.HashAlgorithm:
    algorithm = _HASHES.get(version or "")
    if algorithm is None:
        if version is None:
            shown = "missing"
        elif version.isalnum() and len(version) <= 16:
            shown = version
        else:
            shown = _shown(version, 16)
        msg = f"SignatureVersion {shown} is not supported (only 1 and 2)"
        raise WebhookSignatureInvalid(msg)

    return algorithm()


def _decode_signature(text: str | None) -> bytes:
    try:
        signature = base64.b64decode(text or "", validate=True)
    except (binascii.Error, ValueError):
        msg = "SNS Signature is not valid base64"
        raise WebhookSignatureInvalid(msg) from None
    if not signature:
        msg = "SNS Signature is empty"
        raise WebhookSignatureInvalid(msg)

    return signature


class SubscriptionConfirmer:
    """Confirms SNS subscriptions by visiting their `SubscribeURL`.

    Only https URLs on an SNS host are visited, without following redirects, with
    a short timeout and a size cap. Call it only with an envelope that
    `SnsVerifier.verify` accepted and whose topic the caller allows.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        timeout: float = 5.0,
        max_bytes: int = _MAX_RESPONSE_BYTES,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._max_bytes = max_bytes

    def confirm(self, envelope: SnsEnvelope) -> str:
        """Confirm the subscription and return its `SubscriptionArn`.

        Raises:
            ValueError: the envelope is not a `SubscriptionConfirmation` (caller
                misuse).
            SignalForbidden: the `SubscribeURL` is not https on an SNS host;
                nothing was requested.
            ExternalServiceError: SNS failed or did not answer with a
                `SubscriptionArn`; the confirmation can be tried again.
        """
        if envelope.type != SUBSCRIPTION_CONFIRMATION or not envelope.subscribe_url:
            msg = f"only a {SUBSCRIPTION_CONFIRMATION} can be confirmed"
            raise ValueError(msg)
        if not is_sns_host(envelope.subscribe_url):
            msg = (
                "SubscribeURL is not an https URL on an SNS host; refusing to visit it"
            )
            raise SignalForbidden(msg)

        body = _get_capped(
            self._client,
            envelope.subscribe_url,
            timeout=self._timeout,
            max_bytes=self._max_bytes,
            what="SNS ConfirmSubscription",
            error=ExternalServiceError,
        )
        subscription_arn = _subscription_arn(body)
        if subscription_arn is None:
            msg = "SNS ConfirmSubscription answer holds no SubscriptionArn"
            raise ExternalServiceError(msg)

        log.info(
            "sns_subscription_confirmed",
            topic_arn=envelope.topic_arn,
            subscription_arn=subscription_arn,
        )

        return subscription_arn


def _subscription_arn(body: bytes) -> str | None:
    """Return the ARN in a `ConfirmSubscriptionResponse`, or `None`.

    A regular expression over this small answer, not an XML parser, so that no
    DTD or entity in it is ever expanded; a `<!` (DOCTYPE, ENTITY) is refused.
    """
    text = body.decode("utf-8", "replace")
    if "<!" in text or "<ConfirmSubscriptionResponse" not in text:
        return None
    found = _SUBSCRIPTION_ARN.search(text)
    if found is None or not _ARN.fullmatch(found.group(1)):
        return None

    return found.group(1)
