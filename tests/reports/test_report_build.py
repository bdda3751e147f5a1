"""Tests for shaping a key's records into the report dict."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from ctfakes import END, KEY, START, record, sample_report
from structlog.testing import capture_logs

from responder.reports.build import (
    REPORT_SCHEMA_VERSION,
    build_report,
    key_type_of,
    normalise_event,
)
from responder.reports.sources import Coverage, Window


def _build(events, *, coverage=None, actions=()):
    return sample_report(events, coverage=coverage, actions=actions)


@pytest.fixture
def tokyo_time():
    """Run the test with the process time zone set to Asia/Tokyo."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if previous is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = previous
    time.tzset()


class TestNormaliseEvent:
    def test_full_record_is_normalised(self):
        """A complete record gives every compact field and no problems."""
        body = record(
            7,
            event_name="GetObject",
            event_source="s3.amazonaws.com",
            region="eu-west-1",
            resources=[{"ARN": "arn:aws:s3:::b/k", "type": "AWS::S3::Object"}],
        )

        event, problems = normalise_event(body)

        assert problems == []
        assert event == {
            "time": "2024-05-01T10:00:07Z",
            "event_source": "s3.amazonaws.com",
            "event_name": "GetObject",
            "action": "s3:GetObject",
            "region": "eu-west-1",
            "access_key_id": KEY,
            "source_ip": "203.0.113.9",
            "user_agent": "aws-cli/2.15.0",
            "error_code": None,
            "error_message": None,
            "request_id": "req-000007",
            "read_only": True,
            "resources": [{"type": "AWS::S3::Object", "name": "arn:aws:s3:::b/k"}],
            "event_id": "evt-eu-west-1-000007",
            "origins": [],
            "problems": [],
        }

    def test_odd_record_becomes_nulls_and_problems(self):
        """Missing userIdentity, absent eventTime and non-string fields never crash."""
        body = record(1, eventName=123, userAgent=["x"], readOnly="maybe")
        del body["userIdentity"]
        del body["eventTime"]
        body["resources"] = "not a list"

        event, problems = normalise_event(body)

        assert event["time"] is None
        assert event["event_name"] is None
        assert event["action"] is None
        assert event["user_agent"] is None
        assert event["read_only"] is None
        assert event["access_key_id"] is None
        assert event["resources"] == []
        assert sorted(problems) == [
            "eventName",
            "eventTime",
            "readOnly",
            "resources",
            "userAgent",
            "userIdentity",
        ]

    def test_non_dict_record_is_counted(self):
        """Something that is not a record at all is shaped into nulls."""
        event, problems = normalise_event(["not", "a", "record"])

        assert event["event_id"] is None
        assert "record" in problems

    def test_offset_time_becomes_utc_z(self):
        """An eventTime with an offset is reported in UTC with a Z."""
        event, _ = normalise_event(record(1, at="2024-05-01T19:30:00+09:00"))

        assert event["time"] == "2024-05-01T10:30:00Z"

    def test_lookup_fields_fill_gaps(self):
        """Lookup key, region and resources fill fields the record lacks."""
        body = record(1, resources=["arn:aws:s3:::raw", 5])
        del body["awsRegion"]
        del body["userIdentity"]["accessKeyId"]
        body["responder:region"] = "ap-south-1"
        body["responder:access_key_id"] = KEY
        body["responder:lookup_resources"] = [
            {"ResourceType": "AWS::IAM::User", "ResourceName": "bob"},
            None,
        ]

        event, problems = normalise_event(body)

        assert event["region"] == "ap-south-1"
        assert event["access_key_id"] == KEY
        assert event["resources"] == [
            {"type": None, "name": "arn:aws:s3:::raw"},
            {"type": "AWS::IAM::User", "name": "bob"},
        ]
        assert problems == ["resources", "resources", "resources"]

    def test_read_only_strings_are_flags(self):
        """`"true"` and `"false"` strings become booleans."""
        event_true, _ = normalise_event(record(1, readOnly="true"))
        event_false, _ = normalise_event(record(2, readOnly="False"))

        assert event_true["read_only"] is True
        assert event_false["read_only"] is False

    def test_long_text_is_clipped(self):
        """An oversized user agent is cut and marked, not kept whole."""
        event, _ = normalise_event(record(1, userAgent="A" * 5000))

        assert len(event["user_agent"]) < 1100
        assert event["user_agent"].endswith("[truncated]")


class TestBuildReport:
    def test_failed_calls_counted_apart_from_successes(self):
        """Calls with an errorCode are in `failed`, never in `counts`."""
        events = [
            record(1),
            record(2, event_name="CreateUser"),
            record(3),
            record(4, event_name="CreateUser", errorCode="AccessDenied"),
            record(
                5,
                event_name="PutObject",
                event_source="s3.amazonaws.com",
                errorCode="AccessDenied",
                errorMessage="Access Denied",
            ),
            record(
                6,
                event_name="RunInstances",
                event_source="ec2.amazonaws.com",
                errorCode="Client.UnauthorizedOperation",
            ),
        ]

        report = _build(events)

        assert report["counts"]["total"] == 3
        assert report["counts"]["by_action"] == [
            {"value": "iam:ListUsers", "count": 2},
            {"value": "iam:CreateUser", "count": 1},
        ]
        assert report["counts"]["by_service"] == [
            {"value": "iam.amazonaws.com", "count": 3}
        ]
        assert report["failed"]["total"] == 3
        assert report["failed"]["by_error_code"] == [
            {"value": "AccessDenied", "count": 2},
            {"value": "Client.UnauthorizedOperation", "count": 1},
        ]
        assert report["failed"]["by_service"][0] == {
            "value": "ec2.amazonaws.com",
            "count": 1,
        }
        assert report["summary"]["succeeded"] == 3
        assert report["summary"]["failed"] == 3

    def test_events_in_time_order_unknown_times_last(self):
        """The timeline is sorted by time, with unreadable times at the end."""
        late = record(1, at="2024-05-01T12:00:00Z")
        early = record(2, at="2024-05-01T09:00:00+00:00")
        unknown = record(3, at="yesterday-ish")
        middle = record(4, at=1714558500)

        report = _build([late, unknown, early, middle])

        assert [event["time"] for event in report["events"]] == [
            "2024-05-01T09:00:00Z",
            "2024-05-01T10:15:00Z",
            "2024-05-01T12:00:00Z",
            None,
        ]
        assert report["summary"]["first_event_at"] == "2024-05-01T09:00:00Z"
        assert report["summary"]["last_event_at"] == "2024-05-01T12:00:00Z"
        assert report["coverage"]["parse_problems_by_field"] == {"eventTime": 1}

    def test_header_fields(self):
        """Schema version, key, owner, account, window and incident are stated."""
        report = _build([])

        assert report["schema_version"] == REPORT_SCHEMA_VERSION
        assert report["generated_at"] == "2024-05-03T08:00:00Z"
        assert report["incident_id"] == "inc-1"
        assert report["access_key"] == {
            "id": KEY,
            "type": "long-term",
            "owner": "alice",
            "account_id": "111122223333",
        }
        assert report["window"] == {
            "start": "2024-05-01T00:00:00Z",
            "end": "2024-05-02T00:00:00Z",
        }
        assert report["events"] == []
        assert report["summary"]["first_event_at"] is None

    def test_counts_by_region_ip_and_user_agent(self):
        """Successful calls are counted by region, source IP and user agent."""
        events = [
            record(1, region="us-east-1"),
            record(2, region="eu-west-1", sourceIPAddress="198.51.100.7"),
            record(3, region="eu-west-1", userAgent="boto3/1.34"),
        ]

        report = _build(events)

        assert report["counts"]["by_region"] == [
            {"value": "eu-west-1", "count": 2},
            {"value": "us-east-1", "count": 1},
        ]
        assert report["counts"]["by_source_ip"] == [
            {"value": "203.0.113.9", "count": 2},
            {"value": "198.51.100.7", "count": 1},
        ]
        assert report["counts"]["by_user_agent"] == [
            {"value": "aws-cli/2.15.0", "count": 2},
            {"value": "boto3/1.34", "count": 1},
        ]
        assert report["summary"]["regions"] == ["eu-west-1", "us-east-1"]
        assert report["summary"]["source_ips"] == 2

    def test_coverage_problems_merge_source_and_shape_counts(self):
        """Parse problems from the readers and from shaping are added up."""
        coverage = Coverage(window=Window(START, END))
        coverage.count_problem("CloudTrailEvent", 2)
        coverage.regions_incomplete["eu-west-1"] = "Throttled"
        body = record(1)
        del body["eventTime"]

        report = _build([body], coverage=coverage)

        assert report["coverage"]["parse_problems"] == 3
        assert report["coverage"]["parse_problems_by_field"] == {
            "CloudTrailEvent": 2,
            "eventTime": 1,
        }
        assert report["coverage"]["complete"] is False
        assert report["summary"]["coverage_complete"] is False
        assert report["summary"]["regions_incomplete"] == ["eu-west-1"]

    def test_responder_actions_normalised_and_sorted(self):
        """The responder's own calls are listed in time order with Z times."""
        actions = [
            {
                "at": datetime(2024, 5, 1, 12, 5, tzinfo=UTC),
                "operation": "PutUserPolicy",
                "target": "alice",
                "request_id": "r2",
                "outcome": "succeeded",
                "service": "iam",
                "step": "revoke-sessions",
            },
            {
                "at": "2024-05-01T21:00:00+09:00",
                "operation": "UpdateAccessKey",
                "target": KEY,
                "request_id": "r1",
                "outcome": "succeeded",
            },
        ]

        report = _build([], actions=actions)

        assert report["responder_actions"] == [
            {
                "at": "2024-05-01T12:00:00Z",
                "service": None,
                "operation": "UpdateAccessKey",
                "target": KEY,
                "request_id": "r1",
                "outcome": "succeeded",
            },
            {
                "at": "2024-05-01T12:05:00Z",
                "service": "iam",
                "operation": "PutUserPolicy",
                "target": "alice",
                "request_id": "r2",
                "outcome": "succeeded",
            },
        ]

    def test_report_is_json_serialisable(self):
        """The report survives a JSON round trip unchanged."""
        report = _build([record(1), record(2, errorCode="AccessDenied")])

        assert json.loads(json.dumps(report)) == report

    def test_report_built_is_logged_with_counts(self):
        """Building logs one report_built line with its counts."""
        with capture_logs() as logs:
            _build([record(1), record(2, errorCode="AccessDenied")])

        built = [entry for entry in logs if entry["event"] == "report_built"]
        assert len(built) == 1
        assert built[0]["events"] == 2
        assert built[0]["failed"] == 1
        assert built[0]["access_key_id"] == KEY

    def test_times_are_utc_under_a_tokyo_time_zone(self, tokyo_time):
        """With TZ=Asia/Tokyo, every report time is still UTC with a Z."""
        local = datetime(2024, 5, 3, 17, 0, tzinfo=timezone(timedelta(hours=9)))
        report = build_report(
            access_key_id=KEY,
            owner=None,
            account_id=None,
            key_type=None,
            window=Window(local - timedelta(days=1), local),
            events=[record(1, at=1714557601.0)],
            coverage=Coverage(),
            responder_actions=[{"at": 1714557602}],
            generated_at=local,
        )

        assert time.localtime(0).tm_gmtoff == 9 * 3600
        assert report["generated_at"] == "2024-05-03T08:00:00Z"
        assert report["window"] == {
            "start": "2024-05-02T08:00:00Z",
            "end": "2024-05-03T08:00:00Z",
        }
        assert report["events"][0]["time"] == "2024-05-01T10:00:01Z"
        assert report["responder_actions"][0]["at"] == "2024-05-01T10:00:02Z"

    def test_naive_window_is_refused(self):
        """A naive datetime cannot make a window."""
        with pytest.raises(ValueError, match="naive"):
            Window(datetime(2024, 5, 1), END)


class TestKeyTypeOf:
    @pytest.mark.parametrize(
        ("key", "expected"),
        [("AKIAEXAMPLE", "long-term"), ("ASIAEXAMPLE", "temporary"), ("ABIA", None)],
    )
    def test_prefix_gives_type(self, key, expected):
        """AKIA keys are long-term, ASIA keys temporary, others unknown."""
        assert key_type_of(key) == expected
