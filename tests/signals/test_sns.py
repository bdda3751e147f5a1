"""SNS HTTPS deliveries: parse, host checks, certificates, signatures, confirming."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from helpers import CORPUS
from structlog.testing import capture_logs

from responder.exceptions import (
    ExternalServiceError,
    KeyFetchFailed,
    SignalForbidden,
    SignalMalformed,
    WebhookSignatureInvalid,
)
from responder.signals.sns import (
    CertificateCache,
    SnsEnvelope,
    SnsVerifier,
    SubscriptionConfirmer,
    is_sns_host,
    parse_envelope,
    topic_allowed,
)

SNS = CORPUS / "sns"
V1 = (
    SNS
    / "aws-sdk-ruby-spec_sns-http-notification_SignatureVersion1-SHA1_verifiable.json"
)
V2 = (
    SNS
    / "aws-sdk-ruby-spec_sns-http-notification_SignatureVersion2-SHA256_verifiable.json"
)
LAMBDA_CASING = (
    SNS / "aws-sdk-ruby-spec_sns-notification_lambda-style-SigningCertUrl-casing_"
    "verifiable.json"
)
GUARDDUTY = (
    SNS / "awsdemo-2018_sns-http-notification_guardduty_Stealth_IAMUser_"
    "LoggingConfigurationModified.json"
)
CERT_DOC = json.loads(
    (SNS / "aws-sdk-ruby-spec_sns-signing-cert_7ff53184.pem.json").read_text()
)
CERT_URL = CERT_DOC["SigningCertURL"]
CERT_PEM = CERT_DOC["pem"].encode()
# Inside the real certificate's validity (2021-09-07 to 2022-08-17), minutes after
# the samples were sent (2022-07-28T21:23:58Z and 21:24:08Z).
SAMPLE_NOW = datetime(2022, 7, 28, 21, 30, tzinfo=UTC)
NOTIFICATION_HEADERS = {
    "x-amz-sns-message-type": "Notification",
    "content-type": "text/plain; charset=UTF-8",
}

# Our own SNS look-alike, for the confirmation messages no public sample signs.
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OWN_CERT_URL = (
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:exposed-keys"
TOKEN = "2336412f37fb687f5d51e6e241d164b0533302ec696efc8f113cd2252ce8a925c1e44a3c"
SUBSCRIBE_URL = (
    "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token={TOKEN}"
)
SUBSCRIPTION_ARN = f"{TOPIC}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"
CONFIRMED_XML = f"""<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <ConfirmSubscriptionResult>
    <SubscriptionArn>{SUBSCRIPTION_ARN}</SubscriptionArn>
  </ConfirmSubscriptionResult>
  <ResponseMetadata>
    <RequestId>075ecce8-8dac-11e1-bf80-f781d96e9307</RequestId>
  </ResponseMetadata>
</ConfirmSubscriptionResponse>
""".encode()
SIGNED_FIELDS = {
    "Notification": (
        "Message",
        "MessageId",
        "Subject",
        "Timestamp",
        "TopicArn",
        "Type",
    ),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS["UnsubscribeConfirmation"] = SIGNED_FIELDS["SubscriptionConfirmation"]


class FakeSns:
    """SNS's HTTPS side: answers registered URLs in turn and records each request.

    An answer is PEM/XML bytes (HTTP 200), a list of chunks (HTTP 200, streamed
    without Content-Length), `(status, body)`, `(status, body, headers)` or an
    exception to raise; the last answer repeats. A request to a URL nobody
    registered fails the test.
    """

    def __init__(self) -> None:
        self.answers: dict[str, list[Any]] = {}
        self.requests: list[httpx.Request] = []
        self.client = httpx.Client(transport=httpx.MockTransport(self.handle))

    def serve(self, url: str, *answers: Any) -> None:
        """Answer requests for `url` with `answers`, one each, the last repeating."""
        self.answers[str(httpx.URL(url))] = list(answers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Return the next answer for the request's URL."""
        self.requests.append(request)
        queue = self.answers.get(str(request.url))
        if queue is None:
            raise AssertionError(f"unexpected request to {request.url}")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer)
        if isinstance(answer, list):
            return httpx.Response(200, content=iter(answer))
        status, body, *headers = answer
        return httpx.Response(
            status, content=body, headers=headers[0] if headers else None
        )

    @property
    def urls(self) -> list[str]:
        """Return the URL of every request, in order."""
        return [str(request.url) for request in self.requests]


class MovingClock:
    """A clock the test sets by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sns():
    """A fake SNS serving the real 2022 signing certificate at its URL."""
    fake = FakeSns()
    fake.serve(CERT_URL, CERT_PEM)
    yield fake
    fake.client.close()


@pytest.fixture(scope="module")
def sns_key() -> rsa.RSAPrivateKey:
    """The private key of our own SNS look-alike certificate."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def own_sns(sns, sns_key):
    """The fake SNS also serving a self-signed `sns.amazonaws.com` certificate."""
    sns.serve(OWN_CERT_URL, make_certificate(sns_key))
    return sns


def make_certificate(
    key: rsa.RSAPrivateKey,
    *,
    common_name: str = "sns.amazonaws.com",
    dns_names: tuple[str, ...] = (),
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=30),
) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if dns_names:
        names = [x509.DNSName(name) for name in dns_names]
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def signed(
    key: rsa.RSAPrivateKey,
    *,
    kind: str = "SubscriptionConfirmation",
    version: str = "2",
    tamper: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Return an envelope signed as the SNS guide describes; `tamper` edits it after."""
    envelope: dict[str, Any] = {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "TopicArn": TOPIC,
        "Message": (
            f"You have chosen to subscribe to the topic {TOPIC}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this "
            "message."
        ),
        "Timestamp": "2025-03-01T11:59:30.123Z",
        "SignatureVersion": version,
        "SigningCertURL": OWN_CERT_URL,
    }
    if kind != "Notification":
        envelope.update({"Token": TOKEN, "SubscribeURL": SUBSCRIBE_URL})
    envelope.update(fields)
    canonical = "".join(
        f"{name}\n{envelope[name]}\n"
        for name in SIGNED_FIELDS[kind]
        if name in envelope
    )
    # SignatureVersion 1 is SHA1 by definition: SNS still sends it by default.
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    signature = key.sign(canonical.encode(), padding.PKCS1v15(), algorithm)
    envelope["Signature"] = base64.b64encode(signature).decode()
    envelope.update(tamper or {})
    return envelope


def envelope_of(fields: dict[str, Any]) -> SnsEnvelope:
    return parse_envelope(
        json.dumps(fields).encode(), {"x-amz-sns-message-type": fields["Type"]}
    )


def sample(path=V1, *, drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    fields = json.loads(path.read_text())
    for name in drop:
        del fields[name]
    fields.update(changes)
    return fields


def verifier_for(fake: FakeSns, now: datetime, **options: Any) -> SnsVerifier:
    cache = CertificateCache(fake.client, clock=lambda: now)
    return SnsVerifier(cache, clock=lambda: now, **options)


class TestParseEnvelope:
    def test_parse_signed_sample_reads_every_field(self):
        """A real v1 notification sent as text/plain parses into typed, aware fields."""
        envelope = parse_envelope(V1.read_bytes(), NOTIFICATION_HEADERS)

        assert envelope.type == "Notification"
        assert envelope.message_id == "792cda85-518f-5dd3-9163-81d851212f3a"
        assert envelope.topic_arn.startswith("arn:aws:sns:us-east-2:295079676684:")
        assert envelope.message == "Hello world"
        assert envelope.timestamp == datetime(
            2022, 7, 28, 21, 23, 58, 317000, tzinfo=UTC
        )
        assert envelope.timestamp_text == "2022-07-28T21:23:58.317Z"
        assert envelope.subject is None
        assert envelope.signature_version == "1"
        assert envelope.signing_cert_url == CERT_URL
        assert (envelope.subscribe_url, envelope.token, envelope.raw) == (
            None,
            None,
            False,
        )

    def test_parse_lambda_casing_normalises_url_fields(self):
        """`SigningCertUrl` (Lambda/SQS-JSON casing) is read as `SigningCertURL`."""
        envelope = parse_envelope(LAMBDA_CASING.read_bytes(), NOTIFICATION_HEADERS)

        assert envelope.signing_cert_url == CERT_URL

    def test_parse_both_casings_disagreeing_is_malformed(self):
        """Two spellings of the certificate URL with different values are refused."""
        body = json.dumps(
            sample(SigningCertUrl="https://sns.us-east-1.amazonaws.com/o.pem")
        )

        with pytest.raises(SignalMalformed, match="SigningCertUrl and SigningCertURL"):
            parse_envelope(body.encode(), NOTIFICATION_HEADERS)

    def test_parse_guardduty_delivery_keeps_message_as_text(self):
        """A real GuardDuty delivery keeps `Message` as the EventBridge JSON string."""
        envelope = parse_envelope(GUARDDUTY.read_bytes(), {})

        event = json.loads(envelope.message)
        assert event["detail-type"] == "GuardDuty Finding"
        assert envelope.topic_arn == "arn:aws:sns:us-east-1:785665517223:PD-GuardDuty"

    @pytest.mark.parametrize(
        ("body", "match"),
        [
            pytest.param(b"", "empty body", id="empty"),
            pytest.param(b"Hello world", "not JSON", id="not-json"),
            pytest.param(b'{"Type": "\xff"}', "not UTF-8", id="not-utf8"),
            pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
            pytest.param(b"[" * 100_000 + b"]" * 100_000, "deeply nested", id="deep"),
        ],
    )
    def test_parse_unreadable_body_is_malformed(self, body, match):
        """A body that is not a JSON object is a 400 that says why."""
        with pytest.raises(SignalMalformed, match=match) as raised:
            parse_envelope(body, NOTIFICATION_HEADERS)

        assert raised.value.status_code == 400

    @pytest.mark.parametrize(
        ("drop", "changes", "match"),
        [
            pytest.param(("Signature",), {}, "no Signature field", id="no-signature"),
            pytest.param(("TopicArn",), {}, "no TopicArn field", id="no-topic"),
            pytest.param(
                (),
                {"MessageId": 7},
                "MessageId must be a string, not number",
                id="id-number",
            ),
            pytest.param(
                (),
                {"Message": None},
                "Message must be a string, not null",
                id="message-null",
            ),
            pytest.param(
                (),
                {"Subject": ["x"]},
                "Subject must be a string, not array",
                id="subject-array",
            ),
            pytest.param(
                (), {"Type": "Notice"}, "unknown SNS Type 'Notice'", id="unknown-type"
            ),
            pytest.param(
                (), {"Timestamp": "yesterday"}, "not a readable time", id="timestamp"
            ),
            pytest.param(
                (), {"Signature": ""}, "Signature is empty", id="empty-signature"
            ),
        ],
    )
    def test_parse_bad_field_is_malformed(self, drop, changes, match):
        """A missing, empty, mistyped or unknown field is a 400 naming the field."""
        body = json.dumps(sample(drop=drop, **changes)).encode()

        with pytest.raises(SignalMalformed, match=match):
            parse_envelope(body, {})

    def test_parse_confirmation_without_token_is_malformed(self, sns_key):
        """A SubscriptionConfirmation must carry its Token."""
        fields = signed(sns_key)
        del fields["Token"]

        with pytest.raises(SignalMalformed, match="no Token field"):
            envelope_of(fields)

    @pytest.mark.parametrize(
        ("header", "value"),
        [
            ("X-Amz-Sns-Message-Type", "SubscriptionConfirmation"),
            ("x-amz-sns-message-id", "00000000-0000-0000-0000-000000000000"),
            ("x-amz-sns-topic-arn", "arn:aws:sns:us-east-2:295079676684:other"),
        ],
    )
    def test_parse_header_contradicting_body_is_malformed(self, header, value):
        """Headers disagreeing with the signed body are refused, whatever their case."""
        with pytest.raises(SignalMalformed, match="does not match the body"):
            parse_envelope(V1.read_bytes(), {header: value})

    def test_parse_raw_delivery_reads_headers_and_body(self):
        """Raw delivery: the body is the message; topic and ID come from headers."""
        headers = {
            "X-Amz-Sns-Rawdelivery": "TRUE",
            "X-Amz-Sns-Message-Type": "Notification",
            "X-Amz-Sns-Topic-Arn": TOPIC,
            "X-Amz-Sns-Message-Id": "dc1e94d9-56c5-5e96-808d-cc7f68faa162",
        }

        envelope = parse_envelope(b'{"detail-type": "GuardDuty Finding"}', headers)

        assert envelope.raw is True
        assert envelope.message == '{"detail-type": "GuardDuty Finding"}'
        assert envelope.topic_arn == TOPIC
        assert envelope.message_id == "dc1e94d9-56c5-5e96-808d-cc7f68faa162"
        assert (envelope.timestamp, envelope.signature, envelope.signing_cert_url) == (
            None,
            None,
            None,
        )

    def test_parse_raw_delivery_without_topic_header_is_malformed(self):
        """A raw delivery that does not say its topic cannot be attributed."""
        headers = {"x-amz-sns-rawdelivery": "true", "x-amz-sns-message-id": "m-1"}

        with pytest.raises(SignalMalformed, match="x-amz-sns-topic-arn"):
            parse_envelope(b"hello", headers)

    def test_repr_and_details_leave_out_token_and_signature(self, sns_key):
        """Neither repr (what a log would show) nor details hold a secret."""
        envelope = envelope_of(signed(sns_key))

        shown = repr(envelope) + json.dumps(envelope.details())

        assert envelope.token == TOKEN
        assert TOKEN not in shown
        assert envelope.signature is not None
        assert envelope.signature not in shown
        assert envelope.details()["sns_timestamp"] == "2025-03-01T11:59:30Z"


class TestIsSnsHost:
    @pytest.mark.parametrize(
        "url",
        [
            CERT_URL,
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-ab.pem",
            "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-ab.pem",
            "https://sns.us-east-1.amazonaws.com:443/SimpleNotificationService-ab.pem",
            "HTTPS://SNS.us-east-1.amazonaws.com/SimpleNotificationService-ab.pem",
        ],
    )
    def test_certificate_url_on_sns_host_is_accepted(self, url):
        """Regional SNS hosts in both partitions, on port 443, serve certificates."""
        assert is_sns_host(url, pem=True) is True

    @pytest.mark.parametrize(
        "url",
        [
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
            "https://sns.us-east-1.amazonaws.com:x@evil.example/x.pem",
            "https://evil.example@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
            "https://sns.us-east-1.amazonaws.com%2eevil.example/x.pem",
            "https://sns.us-east-1.amazonaws.com.cn.evil.example/x.pem",
            "https://sns.us-east-1.amazonaws.com./x.pem",
            "https://xsns.us-east-1.amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://sns.us-east-1.am\u0430zonaws.com/x.pem",
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "ftp://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://sns.us-east-1.amazonaws.com:abc/x.pem",
            " https://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com/x.pem?x=1",
            "https://sns.us-east-1.amazonaws.com/x.pem#top",
            "//sns.us-east-1.amazonaws.com/x.pem",
            "",
        ],
    )
    def test_look_alike_certificate_url_is_refused(self, url):
        """Look-alike hosts, user info, http, odd ports and non-.pem paths fail."""
        assert is_sns_host(url, pem=True) is False

    def test_subscribe_url_passes_only_without_pem(self):
        """A SubscribeURL is on an SNS host, but it is not a certificate URL."""
        assert is_sns_host(SUBSCRIBE_URL) is True
        assert is_sns_host(SUBSCRIBE_URL, pem=True) is False


class TestVerifySamples:
    @pytest.mark.parametrize(
        "path", [V1, V2, LAMBDA_CASING], ids=["v1-sha1", "v2-sha256", "lambda-casing"]
    )
    def test_verify_real_sample_passes(self, sns, path):
        """Real v1 (SHA1) and v2 (SHA256) notifications verify with SNS's cert."""
        envelope = parse_envelope(path.read_bytes(), NOTIFICATION_HEADERS)

        verifier_for(sns, SAMPLE_NOW).verify(envelope)

        assert sns.urls == [CERT_URL]

    @pytest.mark.parametrize(
        "tamper",
        [
            pytest.param({"Message": "Hello world!"}, id="message"),
            pytest.param({"Subject": "added"}, id="subject-added"),
            pytest.param({"Timestamp": "2022-07-28T21:23:58.318Z"}, id="timestamp"),
            pytest.param(
                {"TopicArn": "arn:aws:sns:us-east-2:295079676684:other"}, id="topic"
            ),
            pytest.param(
                {"MessageId": "792cda85-518f-5dd3-9163-81d851212f3b"}, id="id"
            ),
        ],
    )
    def test_verify_tampered_sample_is_401(self, sns, tamper):
        """Any change to a signed field, or an added Subject, breaks the signature."""
        envelope = envelope_of(sample(**tamper))

        with pytest.raises(WebhookSignatureInvalid, match="does not match") as raised:
            verifier_for(sns, SAMPLE_NOW).verify(envelope)

        assert raised.value.status_code == 401

    def test_verify_v2_signature_under_v1_label_is_401(self, sns):
        """The hash follows SignatureVersion: a SHA256 signature labelled 1 fails."""
        envelope = envelope_of(sample(V2, SignatureVersion="1"))

        with pytest.raises(WebhookSignatureInvalid, match="does not match"):
            verifier_for(sns, SAMPLE_NOW).verify(envelope)

    @pytest.mark.parametrize(
        ("changes", "match"),
        [
            pytest.param(
                {"SignatureVersion": "3"},
                "SignatureVersion 3 is not supported",
                id="v3",
            ),
            pytest.param(
                {"SignatureVersion": "2 "},
                "SignatureVersion '2 ' is not",
                id="v2-space",
            ),
            pytest.param({"Signature": "not base64!"}, "not valid base64", id="base64"),
        ],
    )
    def test_verify_unusable_signature_is_401_without_fetch(self, sns, changes, match):
        """An unknown version or undecodable signature is refused before any fetch."""
        envelope = envelope_of(sample(**changes))

        with pytest.raises(WebhookSignatureInvalid, match=match):
            verifier_for(sns, SAMPLE_NOW).verify(envelope)

        assert sns.requests == []

    @pytest.mark.parametrize(
        "url",
        [
            "https://sns.us-east-2.amazonaws.com.evil.example/SimpleNotificationService-7f.pem",
            "https://evil.example/sns.us-east-2.amazonaws.com/SimpleNotificationService.pem",
            "http://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec.pem",
        ],
        ids=["suffix-host", "path-host", "http"],
    )
    def test_verify_foreign_certificate_url_is_401_without_fetch(self, sns, url):
        """A certificate URL off SNS, or over http, is refused and never requested."""
        envelope = envelope_of(sample(SigningCertURL=url))

        with pytest.raises(
            WebhookSignatureInvalid,
            match=r"not an https URL of a \.pem file on an SNS host",
        ):
            verifier_for(sns, SAMPLE_NOW).verify(envelope)

        assert sns.requests == []

    def test_verify_after_certificate_expiry_is_401(self, sns):
        """The real certificate expired 2022-08-17; a day later it verifies nothing."""
        envelope = parse_envelope(V1.read_bytes(), NOTIFICATION_HEADERS)
        later = datetime(2022, 8, 18, tzinfo=UTC)

        with pytest.raises(
            WebhookSignatureInvalid, match="not valid at 2022-08-18T00:00:00Z"
        ):
            verifier_for(sns, later, max_age=timedelta(days=365)).verify(envelope)

        assert sns.urls == [CERT_URL]

    def test_verify_timestamp_older_than_max_age_is_401_without_fetch(self, sns):
        """A replay an hour and a second after sending is refused before any fetch."""
        envelope = parse_envelope(V1.read_bytes(), NOTIFICATION_HEADERS)
        assert envelope.timestamp is not None
        later = envelope.timestamp + timedelta(hours=1, seconds=1)

        with pytest.raises(WebhookSignatureInvalid, match="older than 1:00:00"):
            verifier_for(sns, later).verify(envelope)

        assert sns.requests == []

    def test_verify_timestamp_at_max_age_passes(self, sns):
        """Exactly `max_age` old is still accepted (the bound is inclusive)."""
        envelope = parse_envelope(V1.read_bytes(), NOTIFICATION_HEADERS)
        assert envelope.timestamp is not None

        verifier_for(sns, envelope.timestamp + timedelta(hours=1)).verify(envelope)

        assert sns.urls == [CERT_URL]

    def test_verify_timestamp_far_in_future_is_401(self, sns):
        """A Timestamp more than five minutes ahead of our clock is refused."""
        envelope = parse_envelope(V1.read_bytes(), NOTIFICATION_HEADERS)
        assert envelope.timestamp is not None
        earlier = envelope.timestamp - timedelta(minutes=5, seconds=1)

        with pytest.raises(WebhookSignatureInvalid, match="ahead of"):
            verifier_for(sns, earlier).verify(envelope)

    def test_verify_raw_delivery_is_401(self, sns):
        """Raw deliveries are unsigned; the verifier never vouches for them."""
        headers = {
            "x-amz-sns-rawdelivery": "true",
            "x-amz-sns-topic-arn": TOPIC,
            "x-amz-sns-message-id": "m-1",
        }
        envelope = parse_envelope(b"Hello world", headers)

        with pytest.raises(WebhookSignatureInvalid, match="unsigned"):
            verifier_for(sns, SAMPLE_NOW).verify(envelope)

        assert sns.requests == []


class TestCertificateCache:
    def test_certificate_fetched_once_for_two_verifications(self, sns):
        """Two messages signed with one certificate cause a single fetch."""
        verifier = verifier_for(sns, SAMPLE_NOW)

        with capture_logs() as logs:
            verifier.verify(parse_envelope(V1.read_bytes(), NOTIFICATION_HEADERS))
            verifier.verify(parse_envelope(V2.read_bytes(), NOTIFICATION_HEADERS))

        assert sns.urls == [CERT_URL]
        assert [entry["event"] for entry in logs] == ["sns_certificate_fetched"]
        assert logs[0]["url"] == CERT_URL

    def test_certificate_fetched_again_after_ttl(self, sns):
        """A kept certificate is fetched again once `ttl` has passed."""
        clock = MovingClock(SAMPLE_NOW)
        cache = CertificateCache(sns.client, clock=clock, ttl=timedelta(hours=24))

        cache.get(CERT_URL)
        clock.now += timedelta(hours=23)
        cache.get(CERT_URL)
        clock.now += timedelta(hours=2)
        cache.get(CERT_URL)

        assert sns.urls == [CERT_URL, CERT_URL]

    def test_cache_keeps_at_most_max_entries(self, own_sns, sns_key):
        """With room for one, alternating between two URLs fetches every time."""
        other = OWN_CERT_URL.replace("0123456789abcdef", "fedcba9876543210")
        own_sns.serve(other, make_certificate(sns_key))
        cache = CertificateCache(own_sns.client, clock=lambda: NOW, max_entries=1)

        for url in (OWN_CERT_URL, other, OWN_CERT_URL, OWN_CERT_URL):
            cache.get(url)

        assert own_sns.urls == [OWN_CERT_URL, other, OWN_CERT_URL]

    def test_failed_fetch_raises_and_is_not_cached(self, sns):
        """A 503 is KeyFetchFailed; the next call fetches again and succeeds."""
        sns.serve(
            CERT_URL, (503, b"<Error><Code>ServiceUnavailable</Code></Error>"), CERT_PEM
        )
        cache = CertificateCache(sns.client, clock=lambda: SAMPLE_NOW)

        with (
            capture_logs() as logs,
            pytest.raises(KeyFetchFailed, match=r"HTTP 503 \(ServiceUnavailable\)"),
        ):
            cache.get(CERT_URL)
        certificate = cache.get(CERT_URL)

        assert certificate.subject.rfc4514_string() == "CN=sns.amazonaws.com"
        assert sns.urls == [CERT_URL, CERT_URL]
        assert logs[0]["event"] == "sns_certificate_fetch_failed"
        assert logs[0]["log_level"] == "warning"

    @pytest.mark.parametrize(
        ("answer", "match"),
        [
            pytest.param(
                httpx.ConnectError("refused"), "failed: ConnectError", id="connect"
            ),
            pytest.param(
                httpx.ReadTimeout("slow"), "failed: ReadTimeout", id="timeout"
            ),
            pytest.param(b"<html>maintenance</html>", "other than PEM", id="not-pem"),
            pytest.param(
                b"-" * (64 * 1024 + 1), "over the 65536-byte limit", id="too-big"
            ),
            pytest.param(
                [b"-" * 40_000, b"-" * 40_000],
                "over the 65536-byte limit",
                id="too-big-streamed",
            ),
            pytest.param(
                (302, b"", {"Location": "https://evil.example/x.pem"}),
                "HTTP 302",
                id="redirect",
            ),
        ],
    )
    def test_unusable_answer_raises_key_fetch_failed(self, sns, answer, match):
        """Transport errors, non-PEM, oversized or redirect answers: KeyFetchFailed."""
        sns.serve(CERT_URL, answer)
        cache = CertificateCache(sns.client, clock=lambda: SAMPLE_NOW)

        with pytest.raises(KeyFetchFailed, match=match):
            cache.get(CERT_URL)

        assert sns.urls == [CERT_URL]

    def test_certificate_not_issued_to_sns_is_401_and_not_cached(self, sns, sns_key):
        """A certificate for another name is refused on each use, never kept."""
        sns.serve(OWN_CERT_URL, make_certificate(sns_key, common_name="evil.example"))
        cache = CertificateCache(sns.client, clock=lambda: NOW)

        for _ in range(2):
            with pytest.raises(
                WebhookSignatureInvalid, match="not issued to an SNS name"
            ):
                cache.get(OWN_CERT_URL)

        assert sns.urls == [OWN_CERT_URL, OWN_CERT_URL]

    def test_certificate_with_regional_sns_alternative_name_is_accepted(
        self, sns, sns_key
    ):
        """An SNS name in subjectAltName is enough, whatever the common name."""
        pem = make_certificate(
            sns_key, common_name="Amazon", dns_names=("sns.eu-west-1.amazonaws.com",)
        )
        sns.serve(OWN_CERT_URL, pem)
        cache = CertificateCache(sns.client, clock=lambda: NOW)

        certificate = cache.get(OWN_CERT_URL)

        assert (
            certificate.public_key().public_numbers()
            == sns_key.public_key().public_numbers()
        )

    def test_certificate_not_yet_valid_is_401(self, sns, sns_key):
        """A certificate whose notBefore is still ahead is refused."""
        pem = make_certificate(sns_key, not_before=NOW + timedelta(minutes=1))
        sns.serve(OWN_CERT_URL, pem)
        cache = CertificateCache(sns.client, clock=lambda: NOW)

        with pytest.raises(
            WebhookSignatureInvalid, match="not valid at 2025-03-01T12:00:00Z"
        ):
            cache.get(OWN_CERT_URL)


class TestSubscriptionConfirmation:
    @pytest.mark.parametrize("version", ["1", "2"])
    def test_signed_confirmation_verifies_and_confirms(self, own_sns, sns_key, version):
        """A signed confirmation verifies, then its SubscribeURL yields the ARN."""
        own_sns.serve(SUBSCRIBE_URL, CONFIRMED_XML)
        envelope = envelope_of(signed(sns_key, version=version))

        verifier_for(own_sns, NOW).verify(envelope)
        subscription_arn = SubscriptionConfirmer(own_sns.client).confirm(envelope)

        assert subscription_arn == SUBSCRIPTION_ARN
        assert own_sns.urls == [OWN_CERT_URL, str(httpx.URL(SUBSCRIBE_URL))]
        assert [request.method for request in own_sns.requests] == ["GET", "GET"]

    def test_unsubscribe_confirmation_verifies(self, own_sns, sns_key):
        """UnsubscribeConfirmation signs the same fields as a subscription one."""
        envelope = envelope_of(signed(sns_key, kind="UnsubscribeConfirmation"))

        verifier_for(own_sns, NOW).verify(envelope)

        assert own_sns.urls == [OWN_CERT_URL]

    @pytest.mark.parametrize(
        "tamper",
        [
            pytest.param({"Token": TOKEN[::-1]}, id="token"),
            pytest.param({"SubscribeURL": SUBSCRIBE_URL + "&x=1"}, id="subscribe-url"),
        ],
    )
    def test_tampered_confirmation_is_401(self, own_sns, sns_key, tamper):
        """Token and SubscribeURL are signed in a confirmation."""
        envelope = envelope_of(signed(sns_key, tamper=tamper))

        with pytest.raises(WebhookSignatureInvalid, match="does not match"):
            verifier_for(own_sns, NOW).verify(envelope)

    def test_notification_with_subject_verifies_only_with_it(self, own_sns, sns_key):
        """A present Subject is signed: the signature holds with it, fails without."""
        fields = signed(
            sns_key, kind="Notification", Subject="Key exposed", Message="hi"
        )
        verifier = verifier_for(own_sns, NOW)

        verifier.verify(envelope_of(fields))
        del fields["Subject"]

        with pytest.raises(WebhookSignatureInvalid, match="does not match"):
            verifier.verify(envelope_of(fields))

    def test_confirmation_signed_by_another_key_is_401(self, own_sns):
        """A confirmation signed by a key other than the certificate's fails."""
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        envelope = envelope_of(signed(stranger))

        with pytest.raises(WebhookSignatureInvalid, match="does not match"):
            verifier_for(own_sns, NOW).verify(envelope)

    @pytest.mark.parametrize(
        "url",
        [
            "https://evil.example/?Action=ConfirmSubscription&Token=x",
            "http://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
            "https://sns.eu-west-1.amazonaws.com@evil.example/?Action=ConfirmSubscription",
            "https://sns.eu-west-1.amazonaws.com.evil.example/?Action=ConfirmSubscription",
        ],
        ids=["other-host", "http", "userinfo", "suffix-host"],
    )
    def test_subscribe_url_off_sns_is_refused_without_request(
        self, own_sns, sns_key, url
    ):
        """A SubscribeURL that is not https on an SNS host is never visited."""
        envelope = envelope_of(signed(sns_key, SubscribeURL=url))

        with pytest.raises(SignalForbidden, match="not an https URL on an SNS host"):
            SubscriptionConfirmer(own_sns.client).confirm(envelope)

        assert own_sns.requests == []

    @pytest.mark.parametrize(
        ("answer", "match"),
        [
            pytest.param(
                (
                    403,
                    b"<ErrorResponse><Error><Code>AuthorizationError</Code></Error></ErrorResponse>",
                ),
                r"HTTP 403 \(AuthorizationError\)",
                id="error",
            ),
            pytest.param(
                httpx.ConnectTimeout("slow"), "failed: ConnectTimeout", id="timeout"
            ),
            pytest.param(
                b"<ConfirmSubscriptionResponse/>", "no SubscriptionArn", id="no-arn"
            ),
            pytest.param(
                b'<!DOCTYPE x [<!ENTITY a "arn:aws:sns:eu-west-1:123456789012:t:s">]>'
                + CONFIRMED_XML,
                "no SubscriptionArn",
                id="doctype",
            ),
            pytest.param(
                CONFIRMED_XML.replace(
                    SUBSCRIPTION_ARN.encode(), b"pending confirmation"
                ),
                "no SubscriptionArn",
                id="not-an-arn",
            ),
            pytest.param(
                (302, b"", {"Location": "https://evil.example/"}),
                "HTTP 302",
                id="redirect",
            ),
        ],
    )
    def test_confirm_failure_is_external_error_without_token(
        self, own_sns, sns_key, answer, match
    ):
        """SNS failing or answering nonsense is ExternalServiceError; no token leaks."""
        own_sns.serve(SUBSCRIBE_URL, answer)
        envelope = envelope_of(signed(sns_key))

        with (
            capture_logs() as logs,
            pytest.raises(ExternalServiceError, match=match) as raised,
        ):
            SubscriptionConfirmer(own_sns.client).confirm(envelope)

        assert TOKEN not in str(raised.value)
        assert raised.value.__cause__ is None
        assert logs == []
        assert len(own_sns.requests) == 1

    def test_confirm_logs_arns_and_never_the_token(self, own_sns, sns_key):
        """The one log line names topic and subscription, not the token or URL."""
        own_sns.serve(SUBSCRIBE_URL, CONFIRMED_XML)
        envelope = envelope_of(signed(sns_key))

        with capture_logs() as logs:
            verifier_for(own_sns, NOW).verify(envelope)
            SubscriptionConfirmer(own_sns.client).confirm(envelope)

        assert [entry["event"] for entry in logs] == [
            "sns_certificate_fetched",
            "sns_subscription_confirmed",
        ]
        assert logs[1]["topic_arn"] == TOPIC
        assert logs[1]["subscription_arn"] == SUBSCRIPTION_ARN
        assert TOKEN not in repr(logs)

    def test_confirm_notification_is_caller_misuse(self, own_sns, sns_key):
        """Only a SubscriptionConfirmation can be confirmed; nothing is requested."""
        envelope = envelope_of(signed(sns_key, kind="Notification"))

        with pytest.raises(ValueError, match="only a SubscriptionConfirmation"):
            SubscriptionConfirmer(own_sns.client).confirm(envelope)

        assert own_sns.requests == []


class TestTopicAllowed:
    @pytest.mark.parametrize(
        ("topic", "allowed", "expected"),
        [
            (TOPIC, [TOPIC], True),
            (TOPIC, ("arn:aws:sns:eu-west-1:123456789012:other", TOPIC), True),
            (TOPIC, [TOPIC + "-2"], False),
            (TOPIC, ["arn:aws:sns:eu-west-1:123456789012:*"], False),
            (TOPIC, ["arn:aws:sns:eu-west-1:123456789012:exposed"], False),
            (TOPIC, [TOPIC.upper()], False),
            (TOPIC, [], False),
            ("", [""], False),
        ],
    )
    def test_topic_allowed_only_on_exact_match(self, topic, allowed, expected):
        """Allow-listing is exact: no prefixes, no wildcards, no case folding."""
        assert topic_allowed(topic, allowed) is expected
