"""The authenticated API: manual trigger, incidents and reports."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from helpers import API_TOKEN

from responder.app import create_app

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def api(make_services):
    services = make_services()
    with TestClient(create_app(services)) as client:
        yield client, services


class TestManualTrigger:
    @pytest.mark.parametrize("auth", [None, "Bearer wrong-token", API_TOKEN, "Basic x"])
    def test_missing_or_wrong_token_is_401(self, api, auth):
        """Without the bearer token nothing is recorded."""
        client, services = api
        sent = {"Authorization": auth} if auth else {}

        response = client.post(
            "/api/v1/incidents",
            json={"access_key_id": "AKIAIOSFODNN7EXAMPLE"},
            headers=sent,
        )

        assert response.status_code == 401
        assert services.store.list_signals() == []

    @pytest.mark.parametrize(
        "key",
        [
            "AKIA123",
            "akiaiosfodnn7example",
            "AIDAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLE1",
        ],
    )
    def test_bad_key_shape_is_422_with_what_is_wrong(self, api, key):
        """The message says the key must be AKIA/ASIA plus 16 characters."""
        client, services = api

        response = client.post(
            "/api/v1/incidents", json={"access_key_id": key}, headers=AUTH
        )

        assert response.status_code == 422
        assert "AKIA or ASIA followed by 16" in response.text
        assert services.store.list_signals() == []

    def test_trigger_contains_key_and_report_renders(self, api, world):
        """A manual trigger opens an incident whose report renders in all formats."""
        client, services = api

        response = client.post(
            "/api/v1/incidents",
            json={"access_key_id": world.exposed, "reason": "pasted in chat"},
            headers=AUTH,
        )
        services.engine.wait_idle()
        incident_id = response.json()["incident"]["id"]
        detail = client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH).json()

        assert response.status_code == 202
        assert detail["status"] == "completed"
        assert detail["user_name"] == "alice"
        assert [s["name"] for s in detail["steps"]][:2] == ["resolve", "deactivate"]
        assert all(s["finished_at"].endswith("Z") for s in detail["steps"])
        assert all(s["started_at"] <= s["finished_at"] for s in detail["steps"])
        for fmt, marker in (
            ("json", '"schema_version"'),
            ("md", "#"),
            ("html", "<html"),
        ):
            report = client.get(
                f"/api/v1/incidents/{incident_id}/report?format={fmt}", headers=AUTH
            )
            assert report.status_code == 200
            assert marker in report.text
            assert world.exposed in report.text

    def test_idempotency_key_makes_retries_one_signal(self, api, world):
        """The same Idempotency-Key twice is one signal."""
        client, services = api
        sent = {**AUTH, "Idempotency-Key": "retry-1"}

        first = client.post(
            "/api/v1/incidents", json={"access_key_id": world.exposed}, headers=sent
        )
        second = client.post(
            "/api/v1/incidents", json={"access_key_id": world.exposed}, headers=sent
        )
        services.engine.wait_idle()

        assert (first.status_code, second.status_code) == (202, 200)
        assert second.json()["duplicate"] is True
        assert len(services.store.list_signals()) == 1

    def test_unknown_incident_is_404(self, api):
        """An unknown incident ID is a 404 with a message."""
        client, _ = api

        response = client.get("/api/v1/incidents/inc_nope/report", headers=AUTH)

        assert response.status_code == 404
        assert "no incident" in response.json()["detail"][0]["msg"]

    def test_healthz_and_openapi_are_open(self, api):
        """Health and the OpenAPI document need no token."""
        client, _ = api

        assert client.get("/healthz").json()["status"] == "ok"
        assert "/webhooks/github" in client.get("/openapi.json").json()["paths"]


class TestHostileRequests:
    def test_idempotency_key_reused_for_other_key_is_409(self, api, world):
        """Reusing an Idempotency-Key with another key never drops that key."""
        client, services = api
        sent = {**AUTH, "Idempotency-Key": "reuse-1"}
        other = world.new_key("alice")

        client.post(
            "/api/v1/incidents", json={"access_key_id": world.exposed}, headers=sent
        )
        response = client.post(
            "/api/v1/incidents", json={"access_key_id": other}, headers=sent
        )
        services.engine.wait_idle()

        assert response.status_code == 409
        assert "another access key" in response.json()["detail"][0]["msg"]

    def test_large_api_body_is_413_and_422_does_not_echo(self, api):
        """A body over the limit is 413; a long reason is 422 without echoing it."""
        client, _ = api

        big = client.post("/api/v1/incidents", content=b"x" * 2_000_000, headers=AUTH)
        long_reason = client.post(
            "/api/v1/incidents",
            json={"access_key_id": "AKIAIOSFODNN7EXAMPLE", "reason": "r" * 5000},
            headers=AUTH,
        )

        assert big.status_code == 413
        assert long_reason.status_code == 422
        assert "r" * 1001 not in long_reason.text


class TestApprove:
    def test_approve_endpoint_continues_a_waiting_incident(self, api, world):
        """A protected user's incident waits; an approval with a name continues it."""
        client, services = api
        world.iam.tag_user(
            UserName="alice", Tags=[{"Key": "responder:protected", "Value": "1"}]
        )
        created = client.post(
            "/api/v1/incidents", json={"access_key_id": world.exposed}, headers=AUTH
        ).json()
        incident_id = created["incident"]["id"]
        services.engine.wait_idle()

        unauthenticated = client.post(
            f"/api/v1/incidents/{incident_id}/approve", json={"approver": "dana"}
        )
        approved = client.post(
            f"/api/v1/incidents/{incident_id}/approve",
            json={"approver": "dana", "note": "owner confirmed"},
            headers=AUTH,
        )
        services.engine.wait_idle()
        again = client.post(
            f"/api/v1/incidents/{incident_id}/approve",
            json={"approver": "dana"},
            headers=AUTH,
        )

        assert unauthenticated.status_code == 401
        assert approved.status_code == 202
        assert world.keys()[world.exposed] == "Inactive"
        assert again.status_code == 409
        assert "nothing to approve" in again.text
        timeline = client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH).json()
        approvals = [e for e in timeline["timeline"] if e["event"] == "approval_given"]
        assert approvals[0]["details"]["approver"] == "dana"

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"approver": ""},
            {"approver": " "},
            {"approver": "a\nb"},
            {"approver": "\u202eecila"},
            {"approver": "a\u2028b"},
            {"approver": "a\u0085b"},
        ],
    )
    def test_approve_needs_a_plain_approver_name(self, api, body):
        """No approver, an empty one or one with control characters is 422."""
        client, _services = api

        response = client.post(
            "/api/v1/incidents/inc_x/approve", json=body, headers=AUTH
        )

        assert response.status_code == 422

    def test_approve_unknown_incident_is_404(self, api):
        """An unknown incident ID is 404, not a 500."""
        client, _services = api

        response = client.post(
            "/api/v1/incidents/inc_missing/approve",
            json={"approver": "dana"},
            headers=AUTH,
        )

        assert response.status_code == 404


class TestStrictInput:
    @pytest.mark.parametrize("value", ["yes", "true", 1, "1"])
    def test_dry_run_must_be_a_json_boolean(self, api, world, value):
        """`dry_run: "yes"` is 422, not a silent dry run (or a silent real run)."""
        client, services = api

        response = client.post(
            "/api/v1/incidents",
            json={"access_key_id": world.exposed, "dry_run": value},
            headers=AUTH,
        )

        assert response.status_code == 422
        assert services.store.list_signals() == []
