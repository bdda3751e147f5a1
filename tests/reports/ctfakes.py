"""Fakes and sample records for the report tests (no AWS, no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from helpers import CORPUS as TEAM_CORPUS

from responder.reports import build_report
from responder.reports.sources import Coverage, Window

CORPUS = TEAM_CORPUS / "cloudtrail"
INVICTUS = CORPUS / "invictus-ir_aws_dataset_stratus-2023-07-10"
DIGEST_FILE = (
    CORPUS / "elastic-integrations_CloudTrail-Digest-file_not-Records_skip-me.json"
)

KEY = "AKIAEXAMPLEKEY000001"
OTHER_KEY = "AKIAOTHERPRINCIPAL01"
START = datetime(2024, 5, 1, tzinfo=UTC)
END = datetime(2024, 5, 2, tzinfo=UTC)


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def record(
    number: int,
    *,
    key: str = KEY,
    event_name: str = "ListUsers",
    event_source: str = "iam.amazonaws.com",
    region: str = "us-east-1",
    at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Return a plausible CloudTrail record made with `key`."""
    body: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "arn": "arn:aws:iam::111122223333:user/alice",
            "accountId": "111122223333",
            "accessKeyId": key,
            "userName": "alice",
        },
        "eventTime": at or f"2024-05-01T10:{number // 60 % 60:02d}:{number % 60:02d}Z",
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": None,
        "responseElements": None,
        "requestID": f"req-{number:06d}",
        "eventID": f"evt-{region}-{number:06d}",
        "readOnly": True,
        "eventType": "AwsApiCall",
        "recipientAccountId": "111122223333",
    }
    body.update(extra)

    return body


def lookup_item(body: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Return the LookupEvents item CloudTrail would give for record `body`."""
    item: dict[str, Any] = {
        "EventId": body["eventID"],
        "EventName": body["eventName"],
        "ReadOnly": "true",
        "AccessKeyId": body["userIdentity"]["accessKeyId"],
        "EventTime": datetime.fromisoformat(body["eventTime"].replace("Z", "+00:00")),
        "EventSource": body["eventSource"],
        "Username": "alice",
        "Resources": [],
        "CloudTrailEvent": json.dumps(body),
    }
    item.update(overrides)

    return item


def lookup_params(key: str = KEY, token: str | None = None) -> dict[str, Any]:
    """Return the LookupEvents request the reader must send for `key`."""
    params: dict[str, Any] = {
        "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": key}],
        "StartTime": START,
        "EndTime": END,
        "MaxResults": 50,
    }
    if token is not None:
        params["NextToken"] = token

    return params


def sample_report(
    events: list[Any],
    *,
    coverage: Coverage | None = None,
    actions: list[dict[str, Any]] | tuple[()] = (),
    generated_at: datetime = datetime(2024, 5, 3, 8, 0, tzinfo=UTC),
) -> dict[str, Any]:
    """Return the report of `events` for `KEY`, owned by alice, over START-END."""
    return build_report(
        access_key_id=KEY,
        owner="alice",
        account_id="111122223333",
        key_type="long-term",
        window=Window(START, END),
        events=events,
        coverage=coverage or Coverage(window=Window(START, END)),
        responder_actions=list(actions),
        generated_at=generated_at,
        incident_id="inc-1",
    )
