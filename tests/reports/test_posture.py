"""Tests for the owner's posture and the least-privilege suggestion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore import xform_name
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from responder._time import isoformat_z
from responder.aws.session import AwsGateway, map_client_error
from responder.exceptions import AccessDenied
from responder.reports.posture import (
    gather_posture,
    iam_action_of,
    suggest_least_privilege,
)

READ_ONLY_ARN = "arn:aws:iam::aws:policy/ReadOnlyAccess"
CUT = datetime(2024, 5, 1, 12, tzinfo=UTC)
KEY = "AKIAEXAMPLEKEY000001"


def _document(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action, resource="*"):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@pytest.fixture
def gateway_call():
    """Return a caller over a gateway's IAM client, mapping errors as the gateway does.

    `AwsGateway.call` turns `ListMFADevices` into `list_mfadevices` (its name
    conversion splits no acronym), so the calls go to the gateway's cached client
    by botocore's own name mapping; reported for a fix in `aws/session.py`.
    """
    gateway = AwsGateway(region="us-east-1", max_attempts=1, sleep=lambda _s: None)

    def call(service, operation, **params):
        method = getattr(gateway.client(service), xform_name(operation))
        try:
            return method(**params)
        except ClientError as exc:
            raise map_client_error(exc, operation) from exc

    return call


@pytest.fixture
def managed_policies(monkeypatch):
    """Make moto know AWS managed policies (it skips loading them by default)."""
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")


@pytest.fixture
def furnished(managed_policies, world):
    """Give alice MFA, managed, customer, inline and group policies, a second key."""
    iam = world.iam
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="alice-mfa")
    iam.enable_mfa_device(
        UserName="alice",
        SerialNumber=device["VirtualMFADevice"]["SerialNumber"],
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    iam.attach_user_policy(UserName="alice", PolicyArn=READ_ONLY_ARN)
    customer = iam.create_policy(
        PolicyName="app-deploy",
        PolicyDocument=_document(_allow(["S3:PutObject", "lambda:UpdateFunctionCode"])),
    )["Policy"]["Arn"]
    iam.attach_user_policy(UserName="alice", PolicyArn=customer)
    # moto does not ship the AWS managed quarantine policy, so a customer policy
    # of the same name stands in for it: detection goes by the name.
    quarantine = iam.create_policy(
        PolicyName="AWSCompromisedKeyQuarantineV2",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Deny", "Action": "ec2:RunInstances", "Resource": "*"}
                ],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_user_policy(UserName="alice", PolicyArn=quarantine)
    iam.put_user_policy(
        UserName="alice",
        PolicyName="inline-sqs",
        PolicyDocument=_document(_allow("sqs:SendMessage")),
    )
    iam.create_group(GroupName="ops")
    iam.add_user_to_group(GroupName="ops", UserName="alice")
    iam.put_group_policy(
        GroupName="ops",
        PolicyName="ops-ec2",
        PolicyDocument=_document(_allow("ec2:*")),
    )
    other = world.new_key("alice")
    iam.update_access_key(UserName="alice", AccessKeyId=other, Status="Inactive")
    world.other = other
    world.customer_arn = customer
    world.quarantine_arn = quarantine
    return world


class StrictCaller:
    """Answers IAM calls from a dict of operation to answers; strict about the rest."""

    def __init__(self, answers):
        self.answers = {op: list(items) for op, items in answers.items()}
        self.calls = []

    def __call__(self, service, operation, **params):
        assert service == "iam"
        self.calls.append((operation, params))
        answer = self.answers[operation].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _denied(operation):
    return AccessDenied(
        f"{operation} failed: AccessDenied: not authorised",
        operation=operation,
        error_code="AccessDenied",
    )


def _event(name, at, *, source="iam.amazonaws.com", error=None, resources=(), key=KEY):
    return {
        "time": at,
        "event_source": source,
        "event_name": name,
        "action": source.removesuffix(".amazonaws.com") + ":" + name,
        "error_code": error,
        "access_key_id": key,
        "resources": [{"type": None, "name": arn} for arn in resources],
    }


class TestGatherPosture:
    def test_gather_posture_furnished_user_reflects_everything(
        self, furnished, gateway_call
    ):
        """Keys, MFA, policies, group, quarantine and reach all come from IAM."""
        now = datetime.now(UTC) + timedelta(days=10)
        listed = furnished.iam.list_access_keys(UserName="alice")["AccessKeyMetadata"]
        created = {item["AccessKeyId"]: item["CreateDate"] for item in listed}
        other_created = created[furnished.other]

        posture = gather_posture(
            gateway_call, user_name="alice", access_key_id=furnished.exposed, now=now
        )

        assert posture["user_name"] == "alice"
        assert posture["key_age_days"] == 10
        assert posture["key_created_at"] == isoformat_z(created[furnished.exposed])
        assert posture["other_keys"] == [
            {
                "access_key_id": furnished.other,
                "status": "Inactive",
                "created_at": isoformat_z(other_created),
            }
        ]
        assert posture["mfa_devices"] == 1
        assert posture["attached_policies"] == sorted(
            [READ_ONLY_ARN, furnished.customer_arn, furnished.quarantine_arn]
        )
        assert posture["inline_policies"] == ["inline-sqs"]
        assert posture["groups"] == ["ops"]
        assert posture["quarantine_policy"] == "AWSCompromisedKeyQuarantineV2"
        assert "sts:AssumeRole" in posture["quarantine_note"]
        assert "Secrets Manager" in posture["quarantine_note"]
        assert posture["reach"] == [
            "ec2:*",
            "lambda:UpdateFunctionCode",
            "s3:PutObject",
            "sqs:SendMessage",
            "AWS managed policy ReadOnlyAccess (not expanded)",
        ]
        assert posture["problems"] == [
            "AWSCompromisedKeyQuarantineV2 is attached: sts:AssumeRole, Secrets "
            "Manager and SSM stay open"
        ]

    def test_gather_posture_bare_user_reports_no_mfa_and_second_active_key(
        self, world, gateway_call
    ):
        """A user without MFA and with another active key gets both as problems."""
        other = world.new_key("alice")

        posture = gather_posture(
            gateway_call,
            user_name="alice",
            access_key_id=world.exposed,
            now=datetime.now(UTC),
        )

        assert posture["mfa_devices"] == 0
        assert posture["quarantine_policy"] is None
        assert posture["quarantine_note"] is None
        assert posture["reach"] == []
        assert "no MFA device" in posture["problems"]
        assert any(other in problem for problem in posture["problems"])

    def test_gather_posture_full_admin_is_named(self, world, gateway_call):
        """A policy allowing "*" shows as full administrator in reach and problems."""
        world.iam.put_user_policy(
            UserName="alice",
            PolicyName="everything",
            PolicyDocument=_document(_allow("*")),
        )

        posture = gather_posture(
            gateway_call,
            user_name="alice",
            access_key_id=world.exposed,
            now=datetime.now(UTC),
        )

        assert posture["reach"] == ["* (full administrator)"]
        assert (
            "the user's policies grant full administrator access"
            in (posture["problems"])
        )

    def test_gather_posture_group_policy_with_not_action_is_summarised(
        self, world, gateway_call
    ):
        """A group's customer policy allowing all but IAM shows as "* except iam:*"."""
        arn = world.iam.create_policy(
            PolicyName="power",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
                        _allow([f"kms:Op{n}" for n in range(9)]),
                    ],
                }
            ),
        )["Policy"]["Arn"]
        world.iam.create_group(GroupName="power-users")
        world.iam.attach_group_policy(GroupName="power-users", PolicyArn=arn)
        world.iam.add_user_to_group(GroupName="power-users", UserName="alice")

        posture = gather_posture(
            gateway_call,
            user_name="alice",
            access_key_id=world.exposed,
            now=datetime.now(UTC),
        )

        assert posture["groups"] == ["power-users"]
        assert posture["attached_policies"] == []
        assert posture["reach"] == [
            "kms: 9 actions",
            "* except iam:* (NotAction in power)",
        ]

    def test_gather_posture_access_denied_is_a_problem_not_an_error(self):
        """AccessDenied on a read fills `problems` and leaves the field unknown."""
        caller = StrictCaller(
            {
                "ListAccessKeys": [_denied("ListAccessKeys")],
                "ListMFADevices": [_denied("ListMFADevices")],
                "ListAttachedUserPolicies": [
                    {"AttachedPolicies": [], "IsTruncated": False}
                ],
                "ListUserPolicies": [{"PolicyNames": [], "IsTruncated": False}],
                "ListGroupsForUser": [_denied("ListGroupsForUser")],
            }
        )

        with capture_logs() as logs:
            posture = gather_posture(
                caller, user_name="alice", access_key_id=KEY, now=CUT
            )

        assert posture["mfa_devices"] is None
        assert posture["key_created_at"] is None
        assert posture["key_age_days"] is None
        assert posture["other_keys"] == []
        assert posture["groups"] == []
        assert posture["problems"] == [
            "ListAccessKeys failed: AccessDenied",
            "ListMFADevices failed: AccessDenied",
            "ListGroupsForUser failed: AccessDenied",
        ]
        failed = [e for e in logs if e["event"] == "posture_read_failed"]
        assert [e["operation"] for e in failed] == [
            "ListAccessKeys",
            "ListMFADevices",
            "ListGroupsForUser",
        ]

    def test_gather_posture_truncated_listing_follows_marker(self):
        """A truncated listing is read to the last page with its Marker."""
        created = datetime(2024, 4, 1, tzinfo=UTC)
        caller = StrictCaller(
            {
                "ListAccessKeys": [
                    {
                        "AccessKeyMetadata": [
                            {
                                "AccessKeyId": KEY,
                                "Status": "Active",
                                "CreateDate": created,
                            }
                        ],
                        "IsTruncated": True,
                        "Marker": "page-2",
                    },
                    {
                        "AccessKeyMetadata": [
                            {
                                "AccessKeyId": "AKIAOTHERKEY00000002",
                                "Status": "Active",
                                "CreateDate": created,
                            }
                        ],
                        "IsTruncated": False,
                    },
                ],
                "ListMFADevices": [{"MFADevices": [{}], "IsTruncated": False}],
                "ListAttachedUserPolicies": [
                    {"AttachedPolicies": [], "IsTruncated": False}
                ],
                "ListUserPolicies": [{"PolicyNames": [], "IsTruncated": False}],
                "ListGroupsForUser": [{"Groups": [], "IsTruncated": False}],
            }
        )

        posture = gather_posture(caller, user_name="alice", access_key_id=KEY, now=CUT)

        assert ("ListAccessKeys", {"UserName": "alice", "Marker": "page-2"}) in (
            caller.calls
        )
        assert posture["key_age_days"] == 30
        assert posture["key_created_at"] == "2024-04-01T00:00:00Z"
        assert [key["access_key_id"] for key in posture["other_keys"]] == [
            "AKIAOTHERKEY00000002"
        ]

    def test_gather_posture_missing_key_is_a_problem(self, world, gateway_call):
        """A key the user does not hold is reported, not assumed."""
        posture = gather_posture(
            gateway_call,
            user_name="alice",
            access_key_id="AKIANOTALICESKEY0001",
            now=datetime.now(UTC),
        )

        assert posture["key_created_at"] is None
        assert (
            "key AKIANOTALICESKEY0001 is not among the user's keys"
            in (posture["problems"])
        )


class TestIamActionOf:
    @pytest.mark.parametrize(
        ("source", "name", "expected"),
        [
            ("s3.amazonaws.com", "GetObject", ["s3:GetObject"]),
            ("s3.amazonaws.com", "ListObjectsV2", ["s3:ListBucket"]),
            ("s3.amazonaws.com", "ListBuckets", ["s3:ListAllMyBuckets"]),
            ("s3.amazonaws.com", "CopyObject", ["s3:GetObject", "s3:PutObject"]),
            ("monitoring.amazonaws.com", "GetMetricData", ["cloudwatch:GetMetricData"]),
            ("email.amazonaws.com", "SendEmail", ["ses:SendEmail"]),
            (
                "lambda.amazonaws.com",
                "UpdateFunctionCode20150331v2",
                ["lambda:UpdateFunctionCode"],
            ),
            ("iam.amazonaws.com", "ListUsers", ["iam:ListUsers"]),
            ("sts.amazonaws.com", "GetCallerIdentity", []),
            ("signin.amazonaws.com", "ConsoleLogin", []),
            (None, "ListUsers", []),
        ],
    )
    def test_iam_action_of_maps_event_to_iam_action(self, source, name, expected):
        """Event sources map to IAM prefixes and known event-name exceptions apply."""
        assert iam_action_of(source, name) == expected


class TestSuggestLeastPrivilege:
    def test_suggest_least_privilege_uses_successes_before_cut(self):
        """Only successful calls before the cut shape the policy, grouped by service."""
        events = [
            _event("ListUsers", "2024-05-01T08:00:00Z"),
            _event("ListUsers", "2024-05-01T09:00:00Z"),
            _event(
                "GetObject",
                "2024-04-30T10:00:00Z",
                source="s3.amazonaws.com",
                resources=["arn:aws:s3:::logs/a.txt"],
            ),
            _event(
                "ListObjects",
                "2024-04-30T11:00:00Z",
                source="s3.amazonaws.com",
                resources=["arn:aws:s3:::logs"],
            ),
            _event(
                "GetMetricData",
                "2024-05-01T07:00:00Z",
                source="monitoring.amazonaws.com",
            ),
            _event("CreateUser", "2024-05-01T10:00:00Z", error="AccessDenied"),
            _event("CreateAccessKey", "2024-05-01T13:00:00Z"),
            _event("DeleteTrail", None, source="cloudtrail.amazonaws.com"),
            _event("ListRoles", "2024-05-01T08:00:00Z", key="AKIAOTHERKEY00000002"),
        ]

        suggestion = suggest_least_privilege(
            events,
            before=CUT,
            current_policies=["b-policy", "a-policy"],
            access_key_id=KEY,
        )

        assert suggestion["actions"] == [
            "cloudwatch:GetMetricData",
            "iam:ListUsers",
            "s3:GetObject",
            "s3:ListBucket",
        ]
        assert suggestion["based_on"] == {
            "start": "2024-04-30T10:00:00Z",
            "end": "2024-05-01T12:00:00Z",
            "events": 5,
        }
        assert suggestion["current_policies"] == ["a-policy", "b-policy"]
        assert suggestion["policy"] == {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Cloudwatch1",
                    "Effect": "Allow",
                    "Action": ["cloudwatch:GetMetricData"],
                    "Resource": "*",
                },
                {
                    "Sid": "Iam2",
                    "Effect": "Allow",
                    "Action": ["iam:ListUsers"],
                    "Resource": "*",
                },
                {
                    "Sid": "S33",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": ["arn:aws:s3:::logs"],
                },
                {
                    "Sid": "S34",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": ["arn:aws:s3:::logs/a.txt"],
                },
            ],
        }
        assert "Data events" in suggestion["note"]

    def test_suggest_least_privilege_unnamed_resource_widens_to_star(self):
        """One call of an action without a named resource makes its Resource "*"."""
        events = [
            _event(
                "GetObject",
                "2024-04-30T10:00:00Z",
                source="s3.amazonaws.com",
                resources=["arn:aws:s3:::logs/a.txt"],
            ),
            _event("GetObject", "2024-04-30T10:05:00Z", source="s3.amazonaws.com"),
        ]

        suggestion = suggest_least_privilege(events, before=CUT, current_policies=[])

        assert suggestion["policy"]["Statement"] == [
            {
                "Sid": "S31",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": "*",
            }
        ]

    def test_suggest_least_privilege_no_earlier_use_gives_empty_policy(self):
        """Without successful calls before the cut the policy has no statement."""
        events = [_event("ListUsers", "2024-05-02T08:00:00Z")]

        suggestion = suggest_least_privilege(events, before=CUT, current_policies=[])

        assert suggestion["actions"] == []
        assert suggestion["policy"]["Statement"] == []
        assert suggestion["based_on"]["start"] is None
        assert suggestion["based_on"]["events"] == 0

    def test_suggest_least_privilege_unmapped_calls_are_named_in_note(self):
        """Calls with no IAM action are left out of the policy and named in the note."""
        events = [
            _event(
                "ConsoleLogin", "2024-04-30T10:00:00Z", source="signin.amazonaws.com"
            ),
            _event(
                "GetCallerIdentity", "2024-04-30T10:00:00Z", source="sts.amazonaws.com"
            ),
        ]

        suggestion = suggest_least_privilege(events, before=CUT, current_policies=[])

        assert suggestion["actions"] == []
        assert "signin:ConsoleLogin" in suggestion["note"]
        assert "sts:GetCallerIdentity" in suggestion["note"]
