"""Constants and strict fakes shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
ACCOUNT = "123456789012"  # moto's account
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
API_TOKEN = "test-api-token-0123456789abcdef"


class World:
    """An IAM user `alice` holding the exposed key; helpers to read AWS back."""

    def __init__(self) -> None:
        self.iam = boto3.client("iam", region_name="us-east-1")
        self.secrets = boto3.client("secretsmanager", region_name="us-east-1")
        self.iam.create_user(UserName="alice")
        self.exposed = self.new_key("alice")

    def new_key(self, user: str) -> str:
        """Create a key for `user` and return its ID."""
        created = self.iam.create_access_key(UserName=user)["AccessKey"]
        return str(created["AccessKeyId"])

    def keys(self, user: str = "alice") -> dict[str, str]:
        """Return `{key ID: status}` of the user's keys, read from IAM."""
        listed = self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {item["AccessKeyId"]: item["Status"] for item in listed}

    def secret_versions(self, name: str) -> list[dict[str, Any]]:
        """Return the versions of a secret."""
        return list(self.secrets.list_secret_version_ids(SecretId=name)["Versions"])


class FakeAlertLookup:
    """GitHub alert lookups answered from a dict; strict about what it is asked."""

    def __init__(self, answers: dict[int, list[str] | Exception]) -> None:
        self.answers = answers
        self.calls: list[int] = []

    def key_ids(self, details: dict[str, Any]) -> list[str]:
        """Return the key IDs recorded for the alert number, or raise its error."""
        number = details["alert_number"]
        self.calls.append(number)
        answer = self.answers[number]
        if isinstance(answer, Exception):
            raise answer
        return answer


def iam_in_account(account_id: str, role: str = "setup") -> Any:
    """Return an IAM client acting in another (moto) account through AssumeRole."""
    sts = boto3.client("sts", region_name="us-east-1")
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role}", RoleSessionName="setup"
    )["Credentials"]

    return boto3.client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def key_in_account(account_id: str, user: str) -> tuple[Any, str]:
    """Create `user` with one key in another account; return its IAM client and key."""
    iam = iam_in_account(account_id)
    iam.create_user(UserName=user)
    key_id = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]

    return iam, str(key_id)


def steps(services: Any, incident_id: str) -> dict[str, Any]:
    """Return an incident's step records by step name."""
    return {s.name: s for s in services.store.list_steps(incident_id=incident_id)}
