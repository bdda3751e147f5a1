"""POST /webhooks/github: authenticate exact bytes, store, acknowledge, dedupe."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import CORPUS, WEBHOOK_SECRET, FakeAlertLookup

from responder.app import create_app
from responder.exceptions import GitHubLookupFailed
from responder.store.models import SignalStatus

OCTOKIT = (
    CORPUS / "github" / "octokit-webhooks_secret_scanning_alert_reopened.payload.json"
)


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def aws_alert(number: int = 7, action: str = "created", **alert: Any) -> bytes:
    payload = json.loads(OCTOKIT.read_bytes())
    payload["action"] = action
    payload["alert"].update({"number": number, "secret_type": "aws_access_key_id"})
    payload["alert"].update(alert)
    return json.dumps(payload).encode()


def headers(body: bytes, delivery: str = "d-1", event: str = "secret_scanning_alert"):
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json",
    }


@pytest.fixture
def client_for(make_services):
    """Return (client, services) for a GitHub lookup answering `answers`."""
    opened: list[TestClient] = []

    def make(answers: dict[int, Any] | None = None):
        services = make_services(FakeAlertLookup(answers or {}))
        client = TestClient(create_app(services))
        client.__enter__()
        opened.append(client)
        return client, services

    yield make
    for client in opened:
        client.__exit__(None, None, None)


class TestAuthentication:
    @pytest.mark.parametrize(
        "signature",
        [None, "", "sha256=", "sha1=" + "0" * 40, "sha256=" + "0" * 64, "sha256=zz"],
    )
    def test_bad_signature_is_401_and_records_nothing(self, client_for, signature):
        """A missing, malformed or wrong signature is refused before parsing."""
        client, services = client_for()
        body = aws_alert()
        sent = headers(body)
        if signature is None:
            del sent["X-Hub-Signature-256"]
        else:
            sent["X-Hub-Signature-256"] = signature

        response = client.post("/webhooks/github", content=body, headers=sent)

        assert response.status_code == 401
        assert "X-Hub-Signature-256" in response.json()["detail"][0]["msg"]
        assert services.store.list_signals() == []

    def test_signature_over_other_secret_is_401(self, client_for):
        """A body signed with another secret is refused."""
        client, services = client_for()
        body = aws_alert()
        sent = {**headers(body), "X-Hub-Signature-256": sign(body, "another-secret")}

        response = client.post("/webhooks/github", content=body, headers=sent)

        assert response.status_code == 401
        assert services.store.list_signals() == []

    def test_escaped_control_characters_verify_over_exact_bytes(self, client_for):
        """A body with \\u001B escapes verifies, since the HMAC covers the raw bytes."""
        client, services = client_for({7: ["AKIAIOSFODNN7EXAMPLE"]})
        body = aws_alert().replace(b'"Hello-World"', b'"Hello\\u001BWorld\\u001b"', 1)
        assert b"\\u001B" in body

        response = client.post("/webhooks/github", content=body, headers=headers(body))

        assert response.status_code == 202
        assert len(services.store.list_signals()) == 1

    def test_service_refuses_to_start_without_secret(self, make_services):
        """No webhook secret configured: the app is not built."""
        from responder.exceptions import ConfigError

        services = make_services(github_webhook_secret=None)

        with pytest.raises(ConfigError, match="RESPONDER_GITHUB_WEBHOOK_SECRET"):
            create_app(services)


class TestBadBodies:
    @pytest.mark.parametrize(
        ("body", "message"),
        [(b"", "empty body"), (b"{not json", "not JSON"), (b"[1, 2]", "JSON object")],
    )
    def test_signed_garbage_is_400_with_reason(self, client_for, body, message):
        """Signed but unreadable bodies get a 400 that says what is wrong."""
        client, services = client_for()

        response = client.post("/webhooks/github", content=body, headers=headers(body))

        assert response.status_code == 400
        assert message in response.json()["detail"][0]["msg"]
        assert services.store.list_signals() == []

    def test_body_of_several_megabytes_is_413(self, client_for):
        """A 3 MB body is refused before it is read whole."""
        client, services = client_for()
        body = b'{"pad": "' + b"x" * 3_000_000 + b'"}'

        response = client.post("/webhooks/github", content=body, headers=headers(body))

        assert response.status_code == 413
        assert "limit" in response.json()["detail"][0]["msg"]
        assert services.store.list_signals() == []


class TestDeliveries:
    def test_ping_is_answered(self, client_for):
        """GitHub's ping gets a 200."""
        client, _ = client_for()
        body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'

        response = client.post(
            "/webhooks/github", content=body, headers=headers(body, event="ping")
        )

        assert response.status_code == 200
        assert response.json()["status"] == "pong"

    def test_real_non_aws_sample_is_recorded_as_ignored(self, client_for):
        """The octokit sample (adafruit_io_key) gets a 2xx and an 'ignored' record."""
        client, services = client_for()
        body = OCTOKIT.read_bytes()

        response = client.post("/webhooks/github", content=body, headers=headers(body))

        assert response.status_code == 200
        (signal,) = services.store.list_signals()
        assert signal.status is SignalStatus.IGNORED
        assert signal.reason.startswith("ignored: not an AWS credential")
        assert services.store.list_incidents() == []

    @pytest.mark.parametrize("action", ["resolved", "assigned", "revoked"])
    def test_other_actions_are_recorded_not_acted_on(self, client_for, action):
        """Actions other than the four acted on are kept as ignored."""
        client, services = client_for({7: ["AKIAIOSFODNN7EXAMPLE"]})
        body = aws_alert(action=action)

        response = client.post("/webhooks/github", content=body, headers=headers(body))

        assert response.status_code == 200
        assert services.store.list_signals()[0].status is SignalStatus.IGNORED

    def test_validated_inactive_is_ignored(self, client_for):
        """`validated` is acted on only when validity is active."""
        client, services = client_for()
        body = aws_alert(action="validated", validity="inactive")

        client.post("/webhooks/github", content=body, headers=headers(body))

        assert services.store.list_signals()[0].status is SignalStatus.IGNORED

    def test_delivery_opens_incident_from_alert_lookup(self, client_for, world):
        """A created AWS alert is looked up and contains the key it names."""
        client, services = client_for({7: [world.exposed]})
        body = aws_alert()

        response = client.post("/webhooks/github", content=body, headers=headers(body))
        services.engine.wait_idle()

        assert response.status_code == 202
        (incident,) = services.store.list_incidents()
        assert incident.access_key_id == world.exposed
        assert world.keys()[world.exposed] == "Inactive"

    def test_same_delivery_twice_in_a_row_is_processed_once(self, client_for, world):
        """A redelivery (same delivery ID) is a 200 duplicate, nothing more."""
        client, services = client_for({7: [world.exposed]})
        body = aws_alert()

        first = client.post("/webhooks/github", content=body, headers=headers(body))
        services.engine.wait_idle()
        second = client.post("/webhooks/github", content=body, headers=headers(body))
        services.engine.wait_idle()

        assert (first.status_code, second.status_code) == (202, 200)
        assert second.json()["status"] == "duplicate"
        assert len(services.store.list_signals()) == 1
        assert len(world.keys()) == 2  # exposed + one replacement

    def test_same_delivery_at_the_same_time_is_processed_once(self, client_for, world):
        """Two simultaneous copies of one delivery: one signal, one incident."""
        client, services = client_for({7: [world.exposed]})
        body = aws_alert()
        barrier = threading.Barrier(8)
        codes: list[int] = []

        def send() -> None:
            barrier.wait()
            codes.append(
                client.post(
                    "/webhooks/github", content=body, headers=headers(body)
                ).status_code
            )

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        services.engine.wait_idle()

        assert sorted(codes) == [200] * 7 + [202]
        assert len(services.store.list_signals()) == 1
        assert len(services.store.list_incidents()) == 1
        assert len(world.keys()) == 2

    def test_second_hook_attaches_to_the_same_incident(self, client_for, world):
        """The same alert under another delivery ID joins the key's incident."""
        client, services = client_for({7: [world.exposed]})
        body = aws_alert()

        client.post("/webhooks/github", content=body, headers=headers(body, "hook-a"))
        services.engine.wait_idle()
        client.post("/webhooks/github", content=body, headers=headers(body, "hook-b"))
        services.engine.wait_idle()

        (incident,) = services.store.list_incidents()
        assert incident.signal_count == 2
        assert len(services.store.list_signals(incident_id=incident.id)) == 2
        assert len(world.keys()) == 2

    def test_failed_lookup_keeps_signal_and_retries(self, client_for, world):
        """A failed GitHub lookup keeps the signal as needs_key_id; a retry ends it."""
        client, services = client_for({7: GitHubLookupFailed("HTTP 502")})
        body = aws_alert()

        response = client.post("/webhooks/github", content=body, headers=headers(body))
        services.engine.wait_idle()

        (signal,) = services.store.list_signals()
        assert response.status_code == 202
        assert signal.status is SignalStatus.NEEDS_KEY_ID
        assert signal.lookup_attempts == 1
        assert "HTTP 502" in signal.reason

        services.engine.alert_lookup.answers[7] = [world.exposed]
        services.engine.key_lookup_flow(signal.id)
        services.engine.wait_idle()

        assert services.store.list_signals()[0].status is SignalStatus.ACCEPTED
        assert world.keys()[world.exposed] == "Inactive"

    def test_alert_without_key_id_needs_a_person(self, client_for):
        """An alert whose secret names no key ID is kept for a person."""
        client, services = client_for({7: []})
        body = aws_alert(secret_type="aws_secret_access_key")

        client.post("/webhooks/github", content=body, headers=headers(body))
        services.engine.wait_idle()

        assert services.store.list_signals()[0].status is SignalStatus.NEEDS_PERSON


class TestHostileBodies:
    def test_non_ascii_signature_is_401_not_500(self, client_for):
        """A signature of 64 non-hex characters is refused as malformed."""
        client, services = client_for()
        body = aws_alert()
        sent = {**headers(body), "X-Hub-Signature-256": "sha256=" + "é" * 64}

        response = client.post(
            "/webhooks/github",
            content=body,
            headers={k: v.encode() for k, v in sent.items()},
        )

        assert response.status_code == 401
        assert services.store.list_signals() == []

    @pytest.mark.parametrize(
        "body", [b"[" * 100_000 + b"]" * 100_000, b'{"n": ' + b"9" * 5000 + b"}"]
    )
    def test_signed_hostile_json_is_400(self, client_for, body):
        """Deep nesting or a 5,000-digit number is a 400, not a crash."""
        client, services = client_for()

        response = client.post("/webhooks/github", content=body, headers=headers(body))

        assert response.status_code == 400
        assert "will not parse" in response.json()["detail"][0]["msg"]
        assert services.store.list_signals() == []

    def test_foreign_alert_url_needs_a_person_without_retries(self, client_for):
        """An alert URL outside the GitHub API is never fetched and never retried."""
        from responder.signals.github import GitHubAlertLookup

        client, services = client_for()
        services.engine.alert_lookup = type(
            "Lookup",
            (GitHubAlertLookup,),
            {"key_ids": lambda self, details: [self.alert_url(details)]},
        )(api_url="https://api.github.com")
        body = aws_alert(url="https://evil.example/alerts/7")

        client.post("/webhooks/github", content=body, headers=headers(body))
        services.engine.wait_idle()

        (signal,) = services.store.list_signals()
        assert signal.status is SignalStatus.NEEDS_PERSON
        assert "refusing" in signal.reason


class TestEventHeader:
    def test_oversized_event_header_is_400(self, client_for):
        """An X-GitHub-Event over 64 characters is refused and not recorded."""
        client, services = client_for()
        body = aws_alert()
        sent = headers(body, event="x" * 65)

        response = client.post("/webhooks/github", content=body, headers=sent)

        assert response.status_code == 400
        assert services.store.list_signals() == []
