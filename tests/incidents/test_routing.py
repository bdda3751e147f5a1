"""Routing to accounts, temporary and protected keys, approvals, reopen, notices."""

from __future__ import annotations

import gzip
import json
from typing import Any

import boto3
import pytest
from helpers import ACCOUNT, key_in_account, steps

from responder.config import AccountRole
from responder.notify import RecordingNotifier
from responder.signals.models import ExposureSignal
from responder.store.models import IncidentStatus, SignalStatus, StepStatus

OTHER_ACCOUNT = "222233334444"
ROLE_ARN = f"arn:aws:iam::{OTHER_ACCOUNT}:role/responder"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def guardduty(key_id: str, *, count: int = 1, **lead: str) -> ExposureSignal:
    """A real (not sample) GuardDuty finding about `key_id`, as the parser gives it."""
    return ExposureSignal(
        source="guardduty",
        delivery_id=f"{ACCOUNT}:finding-{key_id}",
        kind="guardduty.UnauthorizedAccess:IAMUser/TorIPCaller",
        status=SignalStatus.ACCEPTED,
        reason="GuardDuty finding about an access key",
        access_key_id=key_id,
        account_id=ACCOUNT,
        details={"count": count, **lead},
        repeatable=True,
    )


def run(services: Any, exposure: ExposureSignal) -> Any:
    """Store the signal, run its incident's playbook, return the incident."""
    outcome = services.engine.exposure_received_flow(exposure, schedule=False)
    return services.engine.incident_run_flow(outcome.incident.id)


class TestAccounts:
    def test_key_in_role_account_is_contained_there(self, aws, make_services):
        """A key of another managed account is deactivated with the assumed role."""
        iam, key_id = key_in_account(OTHER_ACCOUNT, "bob")
        services = make_services(
            account_roles={
                OTHER_ACCOUNT: AccountRole(role_arn=ROLE_ARN, external_id="xid")
            }
        )

        incident = run(services, guardduty(key_id))

        assert incident.account_id == OTHER_ACCOUNT
        assert incident.user_name == "bob"
        listed = iam.list_access_keys(UserName="bob")["AccessKeyMetadata"]
        assert [k["Status"] for k in listed if k["AccessKeyId"] == key_id] == [
            "Inactive"
        ]
        home = boto3.client("iam", region_name="us-east-1")
        assert [u["UserName"] for u in home.list_users()["Users"]] == []

    def test_key_of_unmanaged_account_is_not_actionable(self, aws, make_services):
        """A key in an account without a role is recorded and nothing is changed."""
        iam, key_id = key_in_account("333344445555", "carol")
        notifier = RecordingNotifier()
        services = make_services(notifier=notifier)

        incident = run(services, guardduty(key_id))
        services.engine.notifications.wait_idle(5)

        assert incident.status is IncidentStatus.NOT_ACTIONABLE
        assert incident.outcome == "foreign_account"
        listed = iam.list_access_keys(UserName="carol")["AccessKeyMetadata"]
        assert listed[0]["Status"] == "Active"
        assert [n.event for n in notifier.sent] == [
            "incident_opened",
            "incident_not_actionable",
        ]


class TestTemporaryKeys:
    def test_role_session_waits_for_approval_then_denies_the_role(
        self, aws, make_services
    ):
        """An ASIA role session: the role deny waits for a person, then lands."""
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="app-role", AssumeRolePolicyDocument=TRUST)
        role_id = role["Role"]["RoleId"]
        key_id = "ASIA" + "Q" * 16
        notifier = RecordingNotifier()
        services = make_services(notifier=notifier)
        exposure = guardduty(
            key_id,
            user_type="AssumedRole",
            principal_id=f"{role_id}:attacker-session",
            user_name="app-role",
        )

        waiting = run(services, exposure)

        assert waiting.status is IncidentStatus.AWAITING_APPROVAL
        assert steps(services, waiting.id)["revoke-role-sessions"].status is (
            StepStatus.AWAITING_APPROVAL
        )
        assert iam.list_role_policies(RoleName="app-role")["PolicyNames"] == []

        services.engine.approve_flow(waiting.id, approver="dana", note="go")
        services.engine.wait_idle()
        services.engine.notifications.wait_idle(5)

        done = services.store.get_incident(incident_id=waiting.id)
        assert done.status is IncidentStatus.COMPLETED, done.summary
        assert done.outcome == "sessions_revoked"
        assert done.approved_by == "dana"
        assert iam.list_role_policies(RoleName="app-role")["PolicyNames"] == [
            "responder-revoke-older-sessions"
        ]
        assert "app-role" in done.summary
        assert "approval_needed" in [n.event for n in notifier.sent]

    def test_root_session_is_escalated_and_never_written(self, aws, make_services):
        """A temporary key of the root user: critical, escalated, no IAM write."""
        services = make_services()

        incident = run(
            services,
            guardduty("ASIA" + "R" * 16, user_type="Root", principal_id=ACCOUNT),
        )

        assert incident.status is IncidentStatus.ESCALATED
        assert incident.severity == "critical"
        assert "root" in incident.summary
        assert services.store.list_audit(incident_id=incident.id) == []
        assert steps(services, incident.id)["report"].status is StepStatus.SUCCEEDED

    def test_approving_an_incident_not_waiting_is_refused(self, world, make_services):
        """Approval of a finished incident changes nothing and says why."""
        services = make_services()
        incident = run(services, guardduty(world.exposed))

        with pytest.raises(ValueError, match="not awaiting_approval"):
            services.engine.approve_flow(incident.id, approver="dana", note="")

        assert services.store.get_incident(incident_id=incident.id).approved_by is None

    def test_trace_opens_the_minting_keys_incident(self, world, make_services):
        """A session minted by a long-term key opens that key's incident too."""
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="app-role", AssumeRolePolicyDocument=TRUST)
        session_key = "ASIA" + "T" * 16
        record = {
            "eventTime": "2026-12-04T10:00:00Z",
            "eventName": "AssumeRole",
            "eventSource": "sts.amazonaws.com",
            "userIdentity": {
                "type": "IAMUser",
                "accessKeyId": world.exposed,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
            },
            "responseElements": {
                "credentials": {
                    "accessKeyId": session_key,
                    "sessionToken": "never-kept",
                }
            },
        }
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="trail")
        s3.put_object(
            Bucket="trail",
            Key=f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/12/04/f.json.gz",
            Body=gzip.compress(json.dumps({"Records": [record]}).encode()),
        )
        services = make_services(trail_bucket="trail")
        exposure = guardduty(
            session_key,
            user_type="AssumedRole",
            principal_id=f"{role['Role']['RoleId']}:s",
        )

        incident = run(services, exposure)

        trace = steps(services, incident.id)["trace"]
        assert trace.outputs["origin_key"] == world.exposed
        related = services.store.get_incident(
            incident_id=trace.outputs["origin_incident"]
        )
        assert related.access_key_id == world.exposed
        assert related.playbook == "contain-long-term-key"


class TestProtectedAndRepeats:
    def test_tagged_user_waits_for_approval_before_deactivation(
        self, world, make_services
    ):
        """A user tagged responder:protected keeps its key until a person approves."""
        world.iam.tag_user(
            UserName="alice", Tags=[{"Key": "responder:protected", "Value": "yes"}]
        )
        services = make_services()

        waiting = run(services, guardduty(world.exposed))

        assert waiting.status is IncidentStatus.AWAITING_APPROVAL
        assert "tagged responder:protected" in waiting.summary
        assert world.keys()[world.exposed] == "Active"

        services.engine.approve_flow(waiting.id, approver="dana", note="")
        services.engine.wait_idle()

        assert world.keys()[world.exposed] == "Inactive"

    def test_responders_own_user_waits_for_approval(self, aws, make_services):
        """A key of the user the responder runs as is not touched without approval."""
        iam = boto3.client("iam", region_name="us-east-1")
        own = boto3.client("sts", region_name="us-east-1").get_caller_identity()
        own_user = own["Arn"].rsplit("/", 1)[1]
        iam.create_user(UserName=own_user)
        key_id = iam.create_access_key(UserName=own_user)["AccessKey"]["AccessKeyId"]
        services = make_services()

        waiting = run(services, guardduty(key_id))

        assert waiting.status is IncidentStatus.AWAITING_APPROVAL
        assert "responder's own credentials" in waiting.summary
        listed = iam.list_access_keys(UserName=own_user)["AccessKeyMetadata"]
        assert listed[0]["Status"] == "Active"

    def test_repeat_finding_counts_without_rerunning(self, world, make_services):
        """The same finding again updates counts; containment is not repeated."""
        services = make_services()
        first = run(services, guardduty(world.exposed))
        steps_before = steps(services, first.id)

        again = services.engine.exposure_received_flow(
            guardduty(world.exposed, count=7), schedule=False
        )
        services.engine.wait_idle()

        assert again.duplicate
        assert again.signal.seen_count == 2
        assert again.signal.details["count"] == 7
        incident = services.store.get_incident(incident_id=first.id)
        assert incident.sightings == 2
        assert incident.status is IncidentStatus.COMPLETED
        assert steps(services, first.id) == steps_before

    def test_repeat_finding_for_reactivated_key_contains_again(
        self, world, make_services
    ):
        """A key turned Active again is contained again, without a second rotation."""
        services = make_services()
        first = run(services, guardduty(world.exposed))
        replacements = set(world.keys()) - {world.exposed}
        world.iam.update_access_key(
            UserName="alice", AccessKeyId=world.exposed, Status="Active"
        )

        services.engine.exposure_received_flow(
            guardduty(world.exposed, count=2), schedule=False
        )
        services.engine.wait_idle()
        services.engine.wait_idle()

        incident = services.store.get_incident(incident_id=first.id)
        assert incident.status is IncidentStatus.COMPLETED, incident.summary
        assert world.keys()[world.exposed] == "Inactive"
        assert set(world.keys()) - {world.exposed} == replacements
        events = [e.event for e in services.store.list_timeline(incident_id=first.id)]
        assert "incident_reopened" in events


class FakeResolver:
    """Records which GitHub alerts the engine resolved."""

    def __init__(self) -> None:
        self.resolved: list[tuple[Any, str]] = []

    def resolve_alert(self, details: dict[str, Any], *, comment: str) -> None:
        self.resolved.append((details["alert_number"], comment))


class TestNotificationsAndSource:
    def test_failing_notifier_never_blocks_containment(self, world, make_services):
        """Chat down: the key is still contained and the failure is recorded."""
        notifier = RecordingNotifier(fail_first=100)
        services = make_services(notifier=notifier)
        services.engine.notifications._sleep = lambda _s: None

        incident = run(services, guardduty(world.exposed))
        services.engine.notifications.wait_idle(10)

        assert world.keys()[world.exposed] == "Inactive"
        assert incident.status is IncidentStatus.COMPLETED
        events = [
            e.event for e in services.store.list_timeline(incident_id=incident.id)
        ]
        assert "notification_failed" in events

    def test_contained_github_alert_is_resolved_with_a_link(self, world, make_services):
        """After containment the GitHub alert is resolved, linking the incident."""
        resolver = FakeResolver()
        services = make_services(resolver=resolver)
        outcome = services.engine.signal_received_flow(
            source="github",
            delivery_id="d-1",
            kind="secret_scanning_alert.created",
            status=SignalStatus.ACCEPTED,
            reason="test",
            access_key_id=world.exposed,
            details={"alert_number": 42, "repository": "acme/app"},
            schedule=False,
        )

        services.engine.incident_run_flow(outcome.incident.id)

        assert [number for number, _ in resolver.resolved] == [42]
        assert outcome.incident.id in resolver.resolved[0][1]
