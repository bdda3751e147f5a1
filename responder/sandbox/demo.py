"""`responder demo`: send GitHub's own sample deliveries, signed, to a service."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from importlib import resources
from typing import Any

import httpx

__all__ = ["aws_samples", "run_demo", "sample_deliveries", "sign"]

_DATA = resources.files("responder.sandbox").joinpath("data")


def sign(body: bytes, secret: str) -> str:
    """Return the `X-Hub-Signature-256` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sample_deliveries(url: str) -> list[tuple[str, str, str, bytes]]:
    """Return `(label, event, delivery ID, body)` for each demo delivery.

    The octokit `reopened` example goes as published (a non-AWS type: ignored). The
    same example adapted to an AWS key alert (action `created`, type
    `aws_access_key_id`, alert number and URL of the sandbox's GitHub stand-in) is
    sent twice with one delivery ID and once more as if from a second hook.
    """
    reopened = _DATA.joinpath(
        "octokit-webhooks_secret_scanning_alert_reopened.payload.json"
    )
    original = reopened.read_bytes()
    location = _DATA.joinpath(
        "github-docs_secret_scanning_alert_location_created.payload.json"
    ).read_bytes()

    payload: dict[str, Any] = json.loads(original)
    repo = payload["repository"]["full_name"]
    payload["action"] = "created"
    payload["alert"].update(
        {
            "number": 1,
            "secret_type": "aws_access_key_id",
            "url": f"{url}/_sandbox/github/repos/{repo}/secret-scanning/alerts/1",
            "html_url": f"https://github.com/{repo}/security/secret-scanning/1",
            "validity": "active",
        }
    )
    adapted = json.dumps(payload, indent=2).encode()
    delivery = str(uuid.uuid4())

    alert, location_event = "secret_scanning_alert", "secret_scanning_alert_location"

    return [
        ("octokit sample (adafruit_io_key)", alert, str(uuid.uuid4()), original),
        ("AWS key alert", alert, delivery, adapted),
        ("same delivery again", alert, delivery, adapted),
        ("same alert, second hook", alert, str(uuid.uuid4()), adapted),
        ("alert location event", location_event, str(uuid.uuid4()), location),
    ]


def aws_samples(access_key_id: str) -> list[tuple[str, Any]]:
    """Return `(label, event)` for the AWS signals the demo sends about the key.

    The GuardDuty sample goes as published (a sample finding: recorded, not acted
    on), then as a real finding about the key, and twice more (a repeat counts a
    sighting). The Health event names the key as its affected entity.
    """
    published = json.loads(
        _DATA.joinpath(
            "cloud-custodian_cwe_UnauthorizedAccess_IAMUser_TorIPCaller_sample_asn-int.json"
        ).read_text(encoding="utf-8")
    )
    real = json.loads(json.dumps(published).replace("GeneratedFinding", "Observed"))
    real["detail"]["id"] = "demo-" + access_key_id.lower()
    real["detail"]["service"]["additionalInfo"] = {}
    real["detail"]["resource"]["accessKeyDetails"].update(
        accessKeyId=access_key_id, userName="app-deployer", userType="IAMUser"
    )
    health = json.loads(
        _DATA.joinpath(
            "aws-health-tools_readme_AWS_RISK_CREDENTIALS_EXPOSED_test-event.json"
        ).read_text(encoding="utf-8")
    )
    health["detail"]["affectedEntities"] = [{"entityValue": access_key_id}]
    again = json.loads(json.dumps(real))
    again["detail"]["service"]["count"] = 2

    return [
        ("GuardDuty sample finding", published),
        ("GuardDuty finding about the key", real),
        ("same finding, published again", again),
        ("AWS Health RISK event", health),
    ]


def run_demo(
    *,
    url: str,
    webhook_secret: str,
    api_token: str,
    timeout: float,
    aws_secret: str | None = None,
    scanner_secret: str | None = None,
) -> int:
    """Send the deliveries, wait for the incident, print where to read it."""
    incident_ids: set[str] = set()
    with httpx.Client(timeout=10.0) as client:
        for label, event, delivery_id, body in sample_deliveries(url):
            response = client.post(
                f"{url}/webhooks/github",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": event,
                    "X-GitHub-Delivery": delivery_id,
                    "X-Hub-Signature-256": sign(body, webhook_secret),
                },
            )
            answer = response.json()
            status, reason = answer.get("status"), answer.get("reason")
            print(f"{response.status_code}  {label:<34} {_said(status, reason)}")

        # The key ID is looked up in the background: wait for the incident.
        headers = {"Authorization": f"Bearer {api_token}"}
        deadline = time.monotonic() + timeout
        incident: dict[str, Any] = {}
        while time.monotonic() < deadline:
            listed = client.get(f"{url}/api/v1/incidents", headers=headers).json()
            incidents = listed.get("incidents", [])
            incident_ids = {item["id"] for item in incidents}
            finished = [
                i for i in incidents if i["status"] not in {"received", "running"}
            ]
            if incidents and len(finished) == len(incidents):
                incident = finished[0]
                break
            time.sleep(0.2)
        else:
            print(f"no finished incident after {timeout:.0f} s: {sorted(incident_ids)}")
            return 1

        if aws_secret:
            _send_aws(client, url, aws_secret, incident["access_key_id"])
        if scanner_secret:
            _send_scanner(client, url, scanner_secret, incident["access_key_id"])
        detail = client.get(
            f"{url}/api/v1/incidents/{incident['id']}", headers=headers
        ).json()

    print(f"\nincident {incident['id']}: {incident['status']} ({incident['outcome']})")
    print(f"  {incident['summary']}")
    for step in detail["steps"]:
        print(f"  {step['status']:>9}  {step['name']:<16} {step['message']}")
    print(f"  signals attached: {len(detail['signals'])}")
    auth = "Authorization: Bearer $RESPONDER_API_TOKEN"
    print(f"\n  curl -H '{auth}' {detail['links']['incident']}")
    print(f"  report: {detail['links']['report']} (also format=md and format=json)")

    return 0 if incident["status"] in {"completed", "partial"} else 1


def _send_aws(client: httpx.Client, url: str, secret: str, key_id: str) -> None:
    print()
    for label, event in aws_samples(key_id):
        response = client.post(
            f"{url}/webhooks/aws", json=event, headers={"x-responder-token": secret}
        )
        for answer in response.json().get("signals", []):
            status, reason = answer.get("status"), answer.get("reason")
            print(f"{response.status_code}  {label:<34} {_said(status, reason)}")


def _send_scanner(client: httpx.Client, url: str, secret: str, key_id: str) -> None:
    body = json.dumps(
        [{"token": key_id, "type": "aws_access_key_id", "url": "ci://gitleaks"}]
    ).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        f"{url}/webhooks/secret-scanning",
        content=body,
        headers={"X-Responder-Signature-256": f"sha256={digest}"},
    )
    print(f"{response.status_code}  {'scanner (HMAC) finding':<34} {response.text}")


def _said(status: object, reason: object) -> str:
    """Return `status: reason`, without saying the status twice."""
    text = str(reason or "")
    if text.startswith(f"{status}:"):
        return text

    return f"{status}: {text}"
