"""A simulated AWS account on loopback (moto), seeded with an exposed key."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import structlog

from responder.config import Settings

__all__ = [
    "SANDBOX_ACCOUNT",
    "SANDBOX_TRAIL_KEY",
    "Sandbox",
    "SandboxWorld",
    "fake_aws_environment",
    "seed_world",
]

log = structlog.get_logger(__name__)

SANDBOX_ACCOUNT = "123456789012"  # moto's default account
# The busiest long-term key of the real trail; rewritten to the seeded exposed key.
SANDBOX_TRAIL_KEY = "AKIATFQR7NSC8Q4X20BJ"
SANDBOX_USER = "app-deployer"
# IAM allows two keys per user, so the healthy key sits with a second user: with
# both on one user, no replacement could be minted (that case is tested apart).
HEALTHY_USER = "reporting-job"
TRAIL_BUCKET = "responder-sandbox-cloudtrail"
TRAIL_START = "2023-07-10T00:00:00Z"


def fake_aws_environment() -> dict[str, str]:
    """Return the variables that keep boto3 off real AWS and the metadata address."""
    return {
        "AWS_ACCESS_KEY_ID": "sandbox",
        "AWS_SECRET_ACCESS_KEY": "sandbox",
        "AWS_SESSION_TOKEN": "sandbox",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@dataclass
class SandboxWorld:
    """What the seed created: the exposed key, the healthy key, the trail."""

    endpoint_url: str
    account_id: str
    user_name: str
    healthy_user_name: str
    exposed_key_id: str
    healthy_key_id: str
    trail_bucket: str
    trail_files: int
    alerts: dict[int, dict[str, Any]] = field(default_factory=dict)


def seed_world(endpoint_url: str) -> SandboxWorld:
    """Create the user with two keys, a trail and its bucket of real records."""
    session = boto3.Session(region_name="us-east-1")
    iam = session.client("iam", endpoint_url=endpoint_url)
    s3 = session.client("s3", endpoint_url=endpoint_url)
    cloudtrail = session.client("cloudtrail", endpoint_url=endpoint_url)

    iam.create_user(UserName=SANDBOX_USER, Tags=[{"Key": "team", "Value": "payments"}])
    iam.put_user_policy(
        UserName=SANDBOX_USER,
        PolicyName="deploy-artifacts",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                ],
            }
        ),
    )
    exposed = iam.create_access_key(UserName=SANDBOX_USER)["AccessKey"]["AccessKeyId"]
    iam.create_user(UserName=HEALTHY_USER)
    healthy = iam.create_access_key(UserName=HEALTHY_USER)["AccessKey"]["AccessKeyId"]

    # The trail's bucket holds the real Invictus IR capture, re-keyed to our key.
    s3.create_bucket(Bucket=TRAIL_BUCKET)
    cloudtrail.create_trail(Name="organization-trail", S3BucketName=TRAIL_BUCKET)
    prefix = f"AWSLogs/{SANDBOX_ACCOUNT}/CloudTrail/us-east-1/2023/07/10"
    files = 0
    for item in sorted(
        resources.files("responder.sandbox").joinpath("data/cloudtrail").iterdir(),
        key=lambda entry: entry.name,
    ):
        if not item.name.endswith(".json.gz"):
            continue
        body = _rekey(item.read_bytes(), exposed)
        s3.put_object(Bucket=TRAIL_BUCKET, Key=f"{prefix}/{item.name}", Body=body)
        files += 1

    alert = json.loads(
        resources.files("responder.sandbox")
        .joinpath(
            "data/github-openapi-example_REST_get-alert_resolved_used_in_tests.json"
        )
        .read_text(encoding="utf-8")
    )
    world = SandboxWorld(
        endpoint_url=endpoint_url,
        account_id=SANDBOX_ACCOUNT,
        user_name=SANDBOX_USER,
        healthy_user_name=HEALTHY_USER,
        exposed_key_id=exposed,
        healthy_key_id=healthy,
        trail_bucket=TRAIL_BUCKET,
        trail_files=files,
    )
    world.alerts[1] = {
        **alert,
        "number": 1,
        "state": "open",
        "resolution": None,
        "resolved_at": None,
        "resolved_by": None,
        "secret_type": "aws_access_key_id",
        "secret_type_display_name": "Amazon AWS Access Key ID",
        "secret": exposed,
        "validity": "active",
    }
    log.info(
        "sandbox_seeded",
        user_name=SANDBOX_USER,
        access_key_id=exposed,
        healthy_access_key_id=healthy,
        trail_files=files,
    )

    return world


def _rekey(gzipped: bytes, key_id: str) -> bytes:
    raw = gzip.decompress(gzipped).replace(SANDBOX_TRAIL_KEY.encode(), key_id.encode())

    return gzip.compress(raw, mtime=0)


def free_port() -> int:
    """Return a TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]

    return port


class Sandbox:
    """A moto server on loopback, seeded; use as a context manager."""

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.world: SandboxWorld | None = None
        self._server: Any = None

    def __enter__(self) -> Sandbox:
        from moto.server import ThreadedMotoServer

        os.environ.update(fake_aws_environment())
        self._server = ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.port, verbose=False
        )
        self._server.start()
        self.world = seed_world(self.endpoint_url)

        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.stop()

    def settings(
        self,
        values: dict[str, str],
        *,
        public_url: str,
        database: Path,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Return settings pointing every call at this sandbox.

        `values` holds the `RESPONDER_*` secrets (see `sandbox_secrets`); `environ`
        the variables still to honour (none unless given); `overrides` win last.
        """
        assert self.world is not None

        chosen: dict[str, Any] = {
            "database": database,
            "github_webhook_secret": values["RESPONDER_GITHUB_WEBHOOK_SECRET"],
            "api_token": values["RESPONDER_API_TOKEN"],
            "github_token": values["RESPONDER_GITHUB_TOKEN"],
            "aws_webhook_secret": values.get("RESPONDER_AWS_WEBHOOK_SECRET"),
            "scanner_hmac_secret": values.get("RESPONDER_SCANNER_HMAC_SECRET"),
            "github_api_url": f"{public_url}/_sandbox/github",
            "aws_endpoint_url": self.endpoint_url,
            "managed_accounts": (self.world.account_id,),
            "regions": ("us-east-1",),
            "lookup_events": False,
            "trail_bucket": self.world.trail_bucket,
            "report_start": TRAIL_START,
            "public_url": public_url,
            "aws_max_attempts": 3,
        }

        return Settings.from_env(environ or {}, **{**chosen, **overrides})


def sandbox_secrets(state_dir: Path) -> dict[str, str]:
    """Return the webhook secret and tokens from the environment, or generate them.

    Generated values are written to `state_dir/env.json` (mode 0600) so that
    `responder demo` on the same machine can sign its deliveries.
    """
    values = {
        "RESPONDER_GITHUB_WEBHOOK_SECRET": os.environ.get(
            "RESPONDER_GITHUB_WEBHOOK_SECRET"
        )
        or secrets.token_urlsafe(32),
        "RESPONDER_API_TOKEN": os.environ.get("RESPONDER_API_TOKEN")
        or secrets.token_urlsafe(32),
        "RESPONDER_GITHUB_TOKEN": secrets.token_urlsafe(24),
        "RESPONDER_AWS_WEBHOOK_SECRET": os.environ.get("RESPONDER_AWS_WEBHOOK_SECRET")
        or secrets.token_urlsafe(32),
        "RESPONDER_SCANNER_HMAC_SECRET": os.environ.get("RESPONDER_SCANNER_HMAC_SECRET")
        or secrets.token_urlsafe(32),
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "env.json"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(values, indent=2), encoding="utf-8")

    return values
