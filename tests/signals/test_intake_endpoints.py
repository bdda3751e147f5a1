"""The AWS, SNS and scanner endpoints, end to end, and the forged-request suite."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from helpers import ACCOUNT, CORPUS, WEBHOOK_SECRET, FakeAlertLookup, key_in_account

from responder.app import create_app
from responder.signals.aws import parse_aws_events
from responder.signals.partner import PartnerKeyStore
from responder.signals.sns import CertificateCache, SnsVerifier, SubscriptionConfirmer
from responder.signals.views import Intake
from responder.store.models import IncidentStatus

AWS_SECRET = "aws-shared-secret-0123456789"
SCANNER_SECRET = "scanner-hmac-secret-0123456789"
API = "https://api.github.example"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:exposed-keys"
FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999988887777:exposed-keys"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=tok"
)
OUR_KEY_ID = "responder-test-key"
SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PARTNER_KEY = ec.generate_private_key(ec.SECP256R1())
GUARDDUTY = CORPUS / "guardduty"
HEALTH = CORPUS / "health"
PARTNER = CORPUS / "partner"


def sns_certificate() -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(SNS_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(SNS_KEY, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def partner_keys() -> bytes:
    published = json.loads(
        (PARTNER / "github-meta_public_keys_secret_scanning.response.json").read_text()
    )
    pem = PARTNER_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    published["public_keys"].append(
        {"key_identifier": OUR_KEY_ID, "key": pem.decode(), "is_current": True}
    )
    return json.dumps(published).encode()


class Outside:
    """SNS and GitHub as the service sees them over HTTPS; records every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.answers = {
            CERT_URL: sns_certificate(),
            f"{API}/meta/public_keys/secret_scanning": partner_keys(),
            SUBSCRIBE_URL: (
                "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult>"
                f"<SubscriptionArn>{TOPIC}:1b0e5f1c-0000-4000-8000-000000000001"
                "</SubscriptionArn></ConfirmSubscriptionResult>"
                "</ConfirmSubscriptionResponse>"
            ).encode(),
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        if url not in self.answers:
            return httpx.Response(404)
        return httpx.Response(200, content=self.answers[url])


def sign_sns(message: dict[str, Any], *, version: str = "2") -> dict[str, Any]:
    """Sign an SNS envelope with our look-alike SNS key."""
    fields = (
        ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
        if message["Type"] == "Notification"
        else (
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        )
    )
    text = "".join(f"{name}\n{message[name]}\n" for name in fields if name in message)
    digest = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303
    signature = SNS_KEY.sign(text.encode(), padding.PKCS1v15(), digest)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": message.get("SigningCertURL", CERT_URL),
    }


def notification(event: dict[str, Any], *, topic: str = TOPIC, **extra: Any):
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return sign_sns(
        {
            "Type": "Notification",
            "MessageId": f"m-{hash(json.dumps(event)) & 0xFFFF}",
            "TopicArn": topic,
            "Message": json.dumps(event),
            "Timestamp": now,
            **extra,
        }
    )


def guardduty_event(key_id: str, finding_id: str = "f-1") -> dict[str, Any]:
    """A real-shaped (non-sample) GuardDuty finding about `key_id`."""
    event = json.loads(
        (
            GUARDDUTY / "cloud-custodian_cwe_UnauthorizedAccess_IAMUser_TorIPCaller"
            "_sample_asn-int.json"
        ).read_text()
    )
    detail = event["detail"]
    detail["id"] = finding_id
    detail["accountId"] = ACCOUNT
    detail["resource"]["accessKeyDetails"].update(
        accessKeyId=key_id, userName="alice", userType="IAMUser"
    )
    detail["service"]["additionalInfo"] = {}
    event["account"] = ACCOUNT
    return unplaceholder(event)


def unplaceholder(value: Any) -> Any:
    """Replace the sample's GeneratedFinding* values, so it reads as a real one."""
    if isinstance(value, dict):
        return {key: unplaceholder(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unplaceholder(item) for item in value]
    if isinstance(value, str):
        return value.replace("GeneratedFinding", "Observed")
    return value


def health_event(key_id: str) -> dict[str, Any]:
    event = json.loads(
        (
            HEALTH
            / "aws-health-tools_readme_AWS_RISK_CREDENTIALS_EXPOSED_test-event.json"
        ).read_text()
    )
    event["detail"]["affectedEntities"] = [{"entityValue": key_id}]
    event["account"] = ACCOUNT
    return event


def partner_post(matches: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(matches).encode()
    signature = PARTNER_KEY.sign(body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "Github-Public-Key-Identifier": OUR_KEY_ID,
        "Github-Public-Key-Signature": base64.b64encode(signature).decode(),
        "Content-Type": "application/json",
    }


def scanner_post(matches: list[dict[str, Any]], secret: str = SCANNER_SECRET):
    body = json.dumps(matches).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Responder-Signature-256": f"sha256={digest}"}


@pytest.fixture
def intake(make_services):
    """A running app with every endpoint enabled; yields (client, services, outside)."""
    outside = Outside()
    opened: list[TestClient] = []

    def make(lookup: Any = None):
        services = make_services(
            lookup,
            http_transport=httpx.MockTransport(outside.handle),
            aws_webhook_secret=AWS_SECRET,
            scanner_hmac_secret=SCANNER_SECRET,
            sns_topic_arns=(TOPIC,),
            github_api_url=API,
        )
        client = TestClient(create_app(services))
        client.__enter__()
        opened.append(client)
        return client, services

    yield make, outside
    for client in opened:
        client.__exit__(None, None, None)


def post_aws(client: TestClient, event: Any, secret: str = AWS_SECRET):
    return client.post(
        "/webhooks/aws",
        content=json.dumps(event),
        headers={"x-responder-token": secret, "content-type": "application/json"},
    )


class TestAwsEndpoint:
    @pytest.mark.parametrize(
        "path",
        [
            path
            for path in sorted(GUARDDUTY.glob("*.json")) + sorted(HEALTH.glob("*.json"))
            if not path.name.endswith(".index.json")
        ],
        ids=lambda path: path.name[:60],
    )
    def test_every_corpus_sample_is_recorded_without_action(self, aws, intake, path):
        """Each real GuardDuty or Health sample is acknowledged and recorded."""
        make, _outside = intake
        client, services = make()
        payload = json.loads(path.read_text())

        response = post_aws(client, payload)

        assert response.status_code in {200, 202}, response.text
        answers = response.json()["signals"]
        assert len(answers) == len(parse_aws_events(payload))
        assert len(services.store.list_signals()) == len(answers)
        # None of these keys exists in this account: nothing can be contained.
        services.engine.wait_idle()
        assert all(
            incident.status is not IncidentStatus.COMPLETED
            for incident in services.store.list_incidents()
        )

    def test_guardduty_finding_for_our_key_contains_it(self, world, intake):
        """A real finding about our key: 202, stored, and the key ends Inactive."""
        make, _outside = intake
        client, services = make()

        response = post_aws(client, guardduty_event(world.exposed))
        services.engine.wait_idle()

        assert response.status_code == 202
        (answer,) = response.json()["signals"]
        assert answer["access_key_id"] == world.exposed
        assert world.keys()[world.exposed] == "Inactive"

    def test_three_sources_for_one_key_make_one_incident(self, world, intake):
        """GitHub, Health and GuardDuty about one key: one incident, three signals."""
        make, _outside = intake
        client, services = make(FakeAlertLookup({7: [world.exposed]}))
        alert = json.loads(
            (
                CORPUS
                / "github"
                / "octokit-webhooks_secret_scanning_alert_reopened.payload.json"
            ).read_text()
        )
        alert["alert"].update(number=7, secret_type="aws_access_key_id")
        body = json.dumps(alert).encode()
        digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()

        client.post(
            "/webhooks/github",
            content=body,
            headers={
                "X-GitHub-Event": "secret_scanning_alert",
                "X-GitHub-Delivery": "d-1",
                "X-Hub-Signature-256": f"sha256={digest}",
            },
        )
        services.engine.wait_idle()
        post_aws(client, health_event(world.exposed))
        post_aws(client, guardduty_event(world.exposed))
        services.engine.wait_idle()

        (incident,) = services.store.list_incidents()
        sources = {
            s.source for s in services.store.list_signals(incident_id=incident.id)
        }
        assert sources == {"github", "health", "guardduty"}
        assert incident.signal_count == 3


class TestSnsEndpoint:
    def test_signed_notification_is_unwrapped_and_acted_on(self, world, intake):
        """A GuardDuty event inside a signed SNS message reaches the same parser."""
        make, outside = intake
        client, services = make()

        response = client.post(
            "/webhooks/sns",
            content=json.dumps(notification(guardduty_event(world.exposed))),
            headers={"x-amz-sns-message-type": "Notification"},
        )
        services.engine.wait_idle()

        assert response.status_code == 202, response.text
        assert world.keys()[world.exposed] == "Inactive"
        assert outside.requests == [CERT_URL]

    def test_allowed_topic_subscription_is_confirmed(self, aws, intake):
        """A confirmation for an allowed topic is verified, then SubscribeURL is hit."""
        make, outside = intake
        client, services = make()
        confirmation = sign_sns(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "c-1",
                "Token": "tok",
                "TopicArn": TOPIC,
                "Message": "You have chosen to subscribe",
                "SubscribeURL": SUBSCRIBE_URL,
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        )

        response = client.post("/webhooks/sns", content=json.dumps(confirmation))

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "subscribed"
        assert outside.requests == [CERT_URL, SUBSCRIBE_URL]
        assert services.store.list_signals() == []

    def test_other_accounts_topic_is_403_and_never_confirmed(self, aws, intake):
        """A confirmation from a topic not allowed: 403, no request leaves."""
        make, outside = intake
        client, services = make()
        confirmation = sign_sns(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "c-2",
                "Token": "tok",
                "TopicArn": FOREIGN_TOPIC,
                "Message": "subscribe",
                "SubscribeURL": SUBSCRIBE_URL.replace(TOPIC, FOREIGN_TOPIC),
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        )

        response = client.post("/webhooks/sns", content=json.dumps(confirmation))

        assert response.status_code == 403
        assert outside.requests == []
        assert services.store.list_signals() == []

    def test_awsdemo_delivery_unwraps_to_a_sample_finding(self):
        """The real 2018 SNS delivery's Message parses as an ignored sample finding."""
        path = (
            CORPUS
            / "sns"
            / (
                "awsdemo-2018_sns-http-notification_guardduty_"
                "UnauthorizedAccess_IAMUser_UnusualASNCaller.json"
            )
        )
        delivery = json.loads(path.read_text())

        (signal,) = parse_aws_events(json.loads(delivery["Message"]))

        assert signal.status.value == "ignored"
        assert "sample" in signal.reason


def forged_requests(world_key: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Requests no endpoint may act on: (name, path, body, headers)."""
    finding = json.dumps(guardduty_event(world_key)).encode()
    good_sns = notification(guardduty_event(world_key))
    partner_body, partner_headers = partner_post(
        [{"token": world_key, "type": "aws_access_key_id", "url": "u", "source": "s"}]
    )
    scanner_body, scanner_headers = scanner_post(
        [{"token": world_key, "type": "aws_access_key_id"}]
    )
    github_digest = hmac.new(WEBHOOK_SECRET.encode(), finding, hashlib.sha256)
    old = json.loads(
        (
            CORPUS
            / "sns"
            / (
                "aws-sdk-ruby-spec_sns-http-notification_SignatureVersion2-SHA256_verifiable.json"
            )
        ).read_text()
    )
    docs_body = (
        PARTNER / "ghdocs-current_signed-sample_key-bcb53661_source-commit.body.json"
    ).read_bytes()
    docs_headers = json.loads(
        (
            PARTNER
            / "ghdocs-current_signed-sample_key-bcb53661_source-commit.headers.json"
        ).read_text()
    )
    return [
        ("aws-no-secret", "/webhooks/aws", finding, {}),
        ("aws-wrong-secret", "/webhooks/aws", finding, {"x-responder-token": "x" * 30}),
        (
            "aws-github-signature-replayed",
            "/webhooks/aws",
            finding,
            {"X-Hub-Signature-256": "sha256=" + github_digest.hexdigest()},
        ),
        (
            "sns-tampered-message",
            "/webhooks/sns",
            json.dumps(
                {**good_sns, "Message": good_sns["Message"].replace("f-1", "f-2")}
            ).encode(),
            {},
        ),
        (
            "sns-signature-version-3",
            "/webhooks/sns",
            json.dumps({**good_sns, "SignatureVersion": "3"}).encode(),
            {},
        ),
        (
            "sns-cert-not-on-sns-host",
            "/webhooks/sns",
            json.dumps(
                notification(
                    guardduty_event(world_key),
                    SigningCertURL="https://sns.us-east-1.amazonaws.com.evil.example/c.pem",
                )
            ).encode(),
            {},
        ),
        (
            "sns-replayed-old-message",
            "/webhooks/sns",
            json.dumps({**old, "TopicArn": TOPIC}).encode(),
            {},
        ),
        (
            "sns-raw-delivery-unauthenticated",
            "/webhooks/sns",
            finding,
            {
                "x-amz-sns-rawdelivery": "true",
                "x-amz-sns-message-type": "Notification",
                "x-amz-sns-topic-arn": TOPIC,
                "x-amz-sns-message-id": "raw-1",
            },
        ),
        (
            "partner-body-changed",
            "/webhooks/secret-scanning",
            partner_body.replace(b'"u"', b'"v"'),
            partner_headers,
        ),
        (
            "partner-unknown-key-identifier",
            "/webhooks/secret-scanning",
            partner_body,
            {**partner_headers, "Github-Public-Key-Identifier": "f" * 64},
        ),
        (
            "partner-docs-signature-on-other-body",
            "/webhooks/secret-scanning",
            partner_body,
            {k: v for k, v in docs_headers.items() if k.startswith("Github")},
        ),
        (
            "partner-docs-sample-reused",
            "/webhooks/secret-scanning",
            docs_body + b" ",
            {k: v for k, v in docs_headers.items() if k.startswith("Github")},
        ),
        ("scanner-unsigned", "/webhooks/secret-scanning", scanner_body, {}),
        (
            "scanner-wrong-secret",
            "/webhooks/secret-scanning",
            scanner_post([{"token": world_key, "type": "t"}], "w" * 30)[0],
            scanner_post([{"token": world_key, "type": "t"}], "w" * 30)[1],
        ),
        (
            "scanner-signature-on-other-body",
            "/webhooks/secret-scanning",
            scanner_body + b" ",
            scanner_headers,
        ),
        (
            "github-wrong-signature",
            "/webhooks/github",
            finding,
            {
                "X-GitHub-Event": "secret_scanning_alert",
                "X-GitHub-Delivery": "g-1",
                "X-Hub-Signature-256": "sha256=" + "0" * 64,
            },
        ),
    ]


class TestForgedRequests:
    def test_no_endpoint_acts_on_what_it_cannot_verify(self, world, intake):
        """Every forged or replayed request: 401/403, no signal, no AWS change."""
        make, _outside = intake
        client, services = make()

        answers = {
            name: client.post(path, content=body, headers=headers).status_code
            for name, path, body, headers in forged_requests(world.exposed)
        }
        services.engine.wait_idle()

        assert {
            name: code for name, code in answers.items() if code not in {401, 403}
        } == {}
        assert services.store.list_signals() == []
        assert services.store.list_incidents() == []
        assert world.keys() == {world.exposed: "Active"}

    def test_the_genuine_versions_are_accepted(self, world, intake):
        """The same requests, correctly signed, are accepted (the suite can fail)."""
        make, _outside = intake
        client, services = make()
        body, headers = scanner_post(
            [{"token": world.exposed, "type": "aws_access_key_id", "url": "u"}]
        )

        scanner = client.post(
            "/webhooks/secret-scanning", content=body, headers=headers
        )
        direct = post_aws(client, guardduty_event(world.exposed, "f-9"))

        assert scanner.status_code == 200
        assert direct.status_code in {200, 202}
        assert len(services.store.list_signals()) == 2


class TestPartnerEndpoint:
    def test_batch_with_ours_and_a_foreign_key(self, world, intake):
        """Two matches: ours is contained, the foreign one is not actionable."""
        _iam, foreign = key_in_account("333344445555", "mallory")
        make, _outside = intake
        client, services = make()
        body, headers = partner_post(
            [
                {"token": world.exposed, "type": "aws_access_key_id", "url": "a"},
                {"token": foreign, "type": "aws_access_key_id", "url": "b"},
            ]
        )

        response = client.post(
            "/webhooks/secret-scanning", content=body, headers=headers
        )
        services.engine.wait_idle()

        assert response.status_code == 200
        assert [entry["label"] for entry in response.json()] == [
            "true_positive",
            "true_positive",
        ]
        assert world.exposed not in response.text
        outcomes = {
            incident.access_key_id: incident.outcome
            for incident in services.store.list_incidents()
        }
        assert outcomes == {
            world.exposed: "contained_and_rotated",
            foreign: "foreign_account",
        }

    def test_github_docs_sample_verifies_and_is_recorded(self, aws, intake):
        """GitHub's own signed sample: verified with its real key, recorded, no key."""
        make, _outside = intake
        client, services = make()
        stem = "ghdocs-current_signed-sample_key-bcb53661_source-commit"
        body = (PARTNER / f"{stem}.body.json").read_bytes()
        headers = json.loads((PARTNER / f"{stem}.headers.json").read_text())
        headers = {k: v for k, v in headers.items() if k.startswith("Github")}

        response = client.post(
            "/webhooks/secret-scanning", content=body, headers=headers
        )

        assert response.status_code == 200, response.text
        (signal,) = services.store.list_signals()
        assert signal.status.value == "ignored"
        assert "some_token" not in json.dumps(signal.to_dict())


class TestIntakeWiring:
    def test_intake_parts_are_the_real_ones(self, aws, intake):
        """The app verifies with the real SNS and partner components."""
        make, _outside = intake
        _client, services = make()

        assert isinstance(services.intake, Intake)
        assert isinstance(services.intake.sns_verifier, SnsVerifier)
        assert isinstance(services.intake.sns_confirmer, SubscriptionConfirmer)
        assert isinstance(services.intake.partner_keys, PartnerKeyStore)
        assert CertificateCache is not None


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"responder:{password}".encode()).decode()


class TestHostileInput:
    """Cases a break test found; each once answered 500 or flooded the queue."""

    def test_token_naming_many_keys_is_400_and_opens_nothing(self, aws, intake):
        """One match listing 500 key IDs is a list, not a leak: 400, nothing stored."""
        make, _outside = intake
        client, services = make()
        keys = " ".join(f"AKIA{n:016d}" for n in range(500))
        body, headers = scanner_post([{"token": keys, "type": "generic"}])

        response = client.post(
            "/webhooks/secret-scanning", content=body, headers=headers
        )

        assert response.status_code == 400
        assert "send one match each" in response.text
        assert services.store.list_signals() == []

    def test_request_naming_too_many_keys_is_400(self, aws, intake):
        """51 findings about 51 keys in one request: 400 before anything is stored."""
        make, _outside = intake
        client, services = make()
        events = [guardduty_event(f"AKIA{n:016d}", f"f-{n}") for n in range(51)]

        response = post_aws(client, events)

        assert response.status_code == 400
        assert "smaller batches" in response.text
        assert services.store.list_signals() == []

    @pytest.mark.parametrize("field", ["type", "id"])
    def test_lone_surrogate_is_stored_not_500(self, aws, intake, field):
        """A lone surrogate escape in a finding is kept visibly escaped."""
        make, _outside = intake
        client, services = make()
        event = guardduty_event("AKIA" + "Y" * 16)
        event["detail"][field] = "\ud800"

        response = post_aws(client, event)

        assert response.status_code in {200, 202}, response.text
        assert len(services.store.list_signals()) == 1

    def test_scanner_type_with_surrogate_or_huge_is_handled(self, aws, intake):
        """A surrogate type is stored; a 500 KB or multi-line type is 400."""
        make, _outside = intake
        client, _services = make()

        odd = client.post(
            "/webhooks/secret-scanning",
            content=scanner_post([{"token": "\ud800", "type": "\udfff"}])[0],
            headers=scanner_post([{"token": "\ud800", "type": "\udfff"}])[1],
        )
        huge_body, huge_headers = scanner_post([{"token": "t", "type": "x" * 500_000}])
        huge = client.post(
            "/webhooks/secret-scanning", content=huge_body, headers=huge_headers
        )
        lines_body, lines_headers = scanner_post([{"token": "t", "type": "a\nb"}])
        lines = client.post(
            "/webhooks/secret-scanning", content=lines_body, headers=lines_headers
        )

        assert odd.status_code in {200, 400}
        assert huge.status_code in {400, 413}
        assert lines.status_code == 400

    def test_raw_delivery_deeply_nested_is_400(self, aws, intake):
        """An authenticated raw delivery nested too deeply is 400, not 500."""
        make, _outside = intake
        client, _services = make()

        response = client.post(
            "/webhooks/sns",
            content=b"[" * 100_000,
            headers={
                "authorization": basic(AWS_SECRET),
                "x-amz-sns-rawdelivery": "true",
                "x-amz-sns-message-type": "Notification",
                "x-amz-sns-message-id": "r1",
                "x-amz-sns-topic-arn": TOPIC,
            },
        )

        assert response.status_code == 400

    def test_raw_subscription_confirmation_is_400(self, aws, intake):
        """A raw delivery cannot confirm a subscription: 400, no request leaves."""
        make, outside = intake
        client, _services = make()

        response = client.post(
            "/webhooks/sns",
            content=b"{}",
            headers={
                "authorization": basic(AWS_SECRET),
                "x-amz-sns-rawdelivery": "true",
                "x-amz-sns-message-type": "SubscriptionConfirmation",
                "x-amz-sns-message-id": "r2",
                "x-amz-sns-topic-arn": TOPIC,
            },
        )

        assert response.status_code == 400
        assert outside.requests == []

    def test_repeated_finding_is_answered_repeated(self, world, intake):
        """The same finding published again is a repeat, not a bare duplicate."""
        make, _outside = intake
        client, services = make()
        post_aws(client, guardduty_event(world.exposed))
        services.engine.wait_idle()

        again = post_aws(client, guardduty_event(world.exposed))

        assert again.json()["signals"][0]["status"] == "repeated"

    def test_unknown_key_gets_no_trail_read(self, aws, intake):
        """A made-up key: not actionable, and the report step does not run."""
        make, _outside = intake
        client, services = make()

        post_aws(client, guardduty_event("AKIA" + "Z" * 16))
        services.engine.wait_idle()

        (incident,) = services.store.list_incidents()
        assert incident.outcome == "key_not_found"
        report = [
            s
            for s in services.store.list_steps(incident_id=incident.id)
            if s.name == "report"
        ]
        assert report[0].status.value == "skipped"
