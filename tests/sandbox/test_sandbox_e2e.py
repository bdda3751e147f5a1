"""The README's first command and `responder demo`, end to end on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest

from responder.sandbox.demo import run_demo
from responder.sandbox.service import free_port


@pytest.fixture
def sandbox_service(tmp_path: Path):
    """`responder serve --sandbox` in a subprocess, on a free loopback port."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "responder", "serve", "--sandbox", "--port", str(port)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RESPONDER_LOG_FORMAT": "json"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail((tmp_path / "serve.log").read_text()[-3000:])
    yield url, tmp_path
    process.terminate()
    process.wait(timeout=20)
    log.close()


@pytest.mark.slow
class TestSandbox:
    def test_demo_contains_rotates_stores_and_reports(self, sandbox_service, capsys):
        """The demo's AWS alert ends contained, rotated, stored and reported."""
        url, workdir = sandbox_service
        env = json.loads((workdir / ".responder-sandbox" / "env.json").read_text())
        banner = (workdir / "serve.log").read_text()
        endpoint = banner.split("moto endpoint")[1].split()[0]
        exposed = banner.split("exposed key")[1].split()[0]
        healthy = banner.split("healthy key")[1].split()[0]

        status = run_demo(
            url=url,
            webhook_secret=env["RESPONDER_GITHUB_WEBHOOK_SECRET"],
            api_token=env["RESPONDER_API_TOKEN"],
            aws_secret=env["RESPONDER_AWS_WEBHOOK_SECRET"],
            scanner_secret=env["RESPONDER_SCANNER_HMAC_SECRET"],
            timeout=60,
        )
        printed = capsys.readouterr().out

        assert status == 0, printed
        assert "ignored: not an AWS credential" in printed
        assert "duplicate" in printed
        assert "ignored: sample finding" in printed
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
        keys = {
            k["AccessKeyId"]: k["Status"]
            for k in iam.list_access_keys(UserName="app-deployer")["AccessKeyMetadata"]
        }
        assert keys.pop(exposed) == "Inactive"
        assert list(keys.values()) == ["Active"]
        healthy_keys = iam.list_access_keys(UserName="reporting-job")[
            "AccessKeyMetadata"
        ]
        assert [(k["AccessKeyId"], k["Status"]) for k in healthy_keys] == [
            (healthy, "Active")
        ]
        policies = iam.list_user_policies(UserName="app-deployer")["PolicyNames"]
        assert "responder-revoke-older-sessions" in policies
        sm = boto3.client(
            "secretsmanager", endpoint_url=endpoint, region_name="us-east-1"
        )
        stored = json.loads(
            sm.get_secret_value(SecretId="responder/app-deployer/access-key")[
                "SecretString"
            ]
        )
        assert stored["AccessKeyId"] in keys

        auth = {"Authorization": f"Bearer {env['RESPONDER_API_TOKEN']}"}
        (incident,) = httpx.get(f"{url}/api/v1/incidents", headers=auth).json()[
            "incidents"
        ]
        report = httpx.get(
            f"{url}/api/v1/incidents/{incident['id']}/report?format=json", headers=auth
        ).json()
        # The real capture holds 2,104 records of the key the sandbox re-keyed.
        detail = httpx.get(
            f"{url}/api/v1/incidents/{incident['id']}", headers=auth
        ).json()
        sources = sorted({signal["source"] for signal in detail["signals"]})
        assert sources == ["github", "guardduty", "health", "scanner"]
        assert incident["sightings"] >= 6
        own = [e for e in report["events"] if e["access_key_id"] == exposed]
        assert len(own) == 2104
        assert all(e["chain"][0] == exposed for e in report["events"])
        # The sandbox incident's report has every part an incident responder reads.
        assert report["derived_keys"], "the capture's session keys are followed"
        tactics = {technique["tactic"] for technique in report["techniques"]}
        assert {"persistence", "defense-evasion", "discovery"} <= tactics
        assert any(item["kind"] == "iam-user" for item in report["left_behind"])
        assert report["posture"]["user_name"] == "app-deployer"
        assert report["least_privilege"]["actions"]
        assert report["coverage"]["data_events_visible"] is True
        for form in ("md", "html"):
            rendered = httpx.get(
                f"{url}/api/v1/incidents/{incident['id']}/report?format={form}",
                headers=auth,
            )
            assert rendered.status_code == 200
            assert "Left behind" in rendered.text or "left behind" in rendered.text
