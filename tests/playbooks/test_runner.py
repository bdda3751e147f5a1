"""The default playbook against moto: containment, rotation, storage, reports."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from helpers import steps

from responder.aws.actions.iam import REPLACEMENT_MEMORY_KEY
from responder.store.models import IncidentStatus, SignalStatus, StepStatus

POLICY = "responder-revoke-older-sessions"
SECRET = "responder/alice/access-key"


def open_incident(services: Any, key_id: str, *, dry_run: bool = False) -> str:
    outcome = services.engine.signal_received_flow(
        source="manual",
        delivery_id=f"test-{key_id}-{dry_run}",
        kind="manual",
        status=SignalStatus.ACCEPTED,
        reason="test",
        access_key_id=key_id,
        dry_run=dry_run,
        schedule=False,
    )
    return str(outcome.incident.id)


class TestDefaultPlaybook:
    def test_report_carries_owner_posture_and_least_privilege(
        self, world, make_services
    ):
        """The stored report states the owner's posture and a policy suggestion."""
        world.iam.put_user_policy(
            UserName="alice",
            PolicyName="deploy",
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect":'
            ' "Allow", "Action": "s3:*", "Resource": "*"}]}',
        )
        services = make_services()

        incident = services.runner.run(open_incident(services, world.exposed))

        report = services.store.get_report(incident_id=incident.id)
        assert report["schema_version"] == 2
        assert report["posture"]["user_name"] == "alice"
        # Read after containment: the session-revoking policy is already there.
        held = ["deploy", "responder-revoke-older-sessions"]
        assert report["posture"]["inline_policies"] == held
        assert report["least_privilege"]["current_policies"] == held
        assert report["least_privilege"]["actions"] == []

    def test_run_contains_rotates_and_stores(self, world, make_services):
        """The exposed key ends Inactive, a replacement is stored, the policy is on."""
        services = make_services()
        incident_id = open_incident(services, world.exposed)

        incident = services.runner.run(incident_id)

        assert incident.status is IncidentStatus.COMPLETED, incident.summary
        keys = world.keys()
        assert keys.pop(world.exposed) == "Inactive"
        ((new_key, status),) = keys.items()
        assert status == "Active"
        stored = json.loads(
            world.secrets.get_secret_value(SecretId=SECRET)["SecretString"]
        )
        assert stored["AccessKeyId"] == new_key
        assert stored["SecretAccessKey"]
        policy = world.iam.get_user_policy(UserName="alice", PolicyName=POLICY)
        statement = policy["PolicyDocument"]["Statement"][0]
        assert statement["Effect"] == "Deny"
        issued = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        assert issued.endswith("Z")
        assert len(issued) == len("2026-12-04T00:00:00Z")

    def test_run_records_steps_audit_and_no_secret(self, world, make_services):
        """Every step is recorded with request IDs; the database holds no secret."""
        services = make_services()
        incident_id = open_incident(services, world.exposed)

        services.runner.run(incident_id)

        recorded = steps(services, incident_id)
        assert [s.status for s in recorded.values()] == [StepStatus.SUCCEEDED] * 6
        assert recorded["deactivate"].request_ids
        operations = [
            a.operation for a in services.store.list_audit(incident_id=incident_id)
        ]
        assert operations == [
            "UpdateAccessKey",
            "PutUserPolicy",
            "CreateAccessKey",
            "CreateSecret",
        ]
        secret = json.loads(
            world.secrets.get_secret_value(SecretId=SECRET)["SecretString"]
        )
        raw = services.settings.database.read_bytes()
        wal = services.settings.database.with_name("responder.db-wal")
        raw += wal.read_bytes() if wal.exists() else b""
        assert secret["SecretAccessKey"].encode() not in raw
        assert services.store.get_report(incident_id=incident_id) is not None

    def test_rerun_overwrites_policy_and_adds_no_version(self, world, make_services):
        """A second signal for the key attaches; no second key or secret version."""
        services = make_services()
        first = open_incident(services, world.exposed)
        services.runner.run(first)

        again = services.engine.signal_received_flow(
            source="github",
            delivery_id="another-hook",
            kind="secret_scanning_alert.created",
            status=SignalStatus.ACCEPTED,
            reason="second hook",
            access_key_id=world.exposed,
            schedule=False,
        )
        services.runner.run(again.incident.id)

        assert again.incident.id == first
        assert again.incident.signal_count == 2
        assert len(world.keys()) == 2
        assert len(world.secret_versions(SECRET)) == 1
        policies = world.iam.list_user_policies(UserName="alice")["PolicyNames"]
        assert policies == [POLICY]

    def test_other_key_of_user_is_never_touched(self, world, make_services):
        """With a healthy second key: exposed key contained, rotation blocked."""
        healthy = world.new_key("alice")
        services = make_services()
        incident_id = open_incident(services, world.exposed)

        incident = services.runner.run(incident_id)

        assert world.keys() == {world.exposed: "Inactive", healthy: "Active"}
        assert incident.status is IncidentStatus.PARTIAL
        assert incident.outcome == "contained_rotation_blocked"
        recorded = steps(services, incident_id)
        assert recorded["rotate"].status is StepStatus.BLOCKED
        assert "delete-access-key" in recorded["rotate"].message
        assert recorded["store"].status is StepStatus.SKIPPED

    def test_two_keys_one_inactive_blocks_rotation(self, world, make_services):
        """A user holding two keys, one inactive, is contained and rotation blocked."""
        old = world.new_key("alice")
        world.iam.update_access_key(
            UserName="alice", AccessKeyId=old, Status="Inactive"
        )
        services = make_services()

        incident = services.runner.run(open_incident(services, world.exposed))

        assert incident.outcome == "contained_rotation_blocked"
        assert world.keys() == {world.exposed: "Inactive", old: "Inactive"}

    def test_dry_run_changes_nothing(self, world, make_services):
        """A dry run plans every mutating step and leaves AWS as it was."""
        services = make_services()

        incident = services.runner.run(
            open_incident(services, world.exposed, dry_run=True)
        )

        assert incident.status is IncidentStatus.COMPLETED
        assert incident.outcome == "dry_run"
        assert world.keys() == {world.exposed: "Active"}
        recorded = steps(services, incident.id)
        assert recorded["deactivate"].status is StepStatus.PLANNED
        assert "UpdateAccessKey" in recorded["deactivate"].message
        assert services.store.list_audit(incident_id=incident.id) == []


class TestNotActionable:
    def test_unknown_key_is_not_found_and_touches_nothing(self, world, make_services):
        """A key IAM does not know ends as key_not_found; alice's key stays Active."""
        services = make_services()

        incident = services.runner.run(open_incident(services, "AKIAZZZZZZZZZZZZZZZZ"))

        assert incident.status is IncidentStatus.NOT_ACTIONABLE
        assert incident.outcome == "key_not_found"
        assert world.keys() == {world.exposed: "Active"}
        assert services.store.list_audit(incident_id=incident.id) == []

    def test_foreign_account_is_not_actionable(self, world, make_services):
        """A key of an account the responder does not manage is left alone."""
        services = make_services(managed_accounts=("999999999999",))

        incident = services.runner.run(open_incident(services, world.exposed))

        assert incident.outcome == "foreign_account"
        assert world.keys() == {world.exposed: "Active"}
        assert steps(services, incident.id)["report"].status is StepStatus.SKIPPED

    def test_temporary_key_without_lead_ends_with_report(self, world, make_services):
        """An ASIA key nobody can place is not actionable; the report still runs."""
        services = make_services()

        incident = services.runner.run(open_incident(services, "ASIAZZZZZZZZZZZZZZZZ"))

        assert incident.playbook == "contain-temporary-key"
        assert incident.outcome == "owner_unknown"
        recorded = steps(services, incident.id)
        assert recorded["revoke-role-sessions"].status is StepStatus.SKIPPED
        assert recorded["report"].status is StepStatus.SUCCEEDED


class TestFailures:
    def test_update_access_key_denied_fails_incident(
        self, world, make_services, gateway
    ):
        """Deactivation denied: the incident fails and nothing claims containment."""
        from botocore.exceptions import ClientError

        iam = gateway.client("iam")

        def deny(**_kwargs: Any) -> None:
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "not allowed"}},
                "UpdateAccessKey",
            )

        iam.meta.events.register("before-call.iam.UpdateAccessKey", deny)
        services = make_services()

        incident = services.runner.run(open_incident(services, world.exposed))

        assert incident.status is IncidentStatus.FAILED
        assert "NOT contained" in incident.summary
        recorded = steps(services, incident.id)
        assert recorded["deactivate"].error_code == "AccessDenied"
        assert recorded["rotate"].status is StepStatus.SKIPPED
        assert world.keys() == {world.exposed: "Active"}
        audit = services.store.list_audit(incident_id=incident.id)
        assert (audit[0].operation, audit[0].outcome) == (
            "UpdateAccessKey",
            "AccessDenied",
        )

    def test_put_secret_value_timeout_once_is_retried(
        self, world, make_services, gateway
    ):
        """An existing secret; PutSecretValue times out once; one version is added."""
        world.secrets.create_secret(Name=SECRET, SecretString="{}")
        sm = gateway.client("secretsmanager")
        calls = {"n": 0}

        def time_out_once(**_kwargs: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ReadTimeoutError(endpoint_url="https://secretsmanager")

        sm.meta.events.register(
            "before-send.secrets-manager.PutSecretValue", time_out_once
        )
        services = make_services()

        incident = services.runner.run(open_incident(services, world.exposed))

        assert incident.status is IncidentStatus.COMPLETED, incident.summary
        assert calls["n"] == 2
        assert len(world.secret_versions(SECRET)) == 2

    def test_secret_scheduled_for_deletion_is_restored(self, world, make_services):
        """A secret pending deletion is restored, then written."""
        world.secrets.create_secret(Name=SECRET, SecretString="{}")
        world.secrets.delete_secret(SecretId=SECRET, RecoveryWindowInDays=7)
        services = make_services()

        incident = services.runner.run(open_incident(services, world.exposed))

        assert incident.status is IncidentStatus.COMPLETED, incident.summary
        assert "DeletedDate" not in world.secrets.describe_secret(SecretId=SECRET)
        operations = [
            a.operation for a in services.store.list_audit(incident_id=incident.id)
        ]
        assert "RestoreSecret" in operations

    def test_storage_failure_deactivates_replacement(
        self, world, make_services, gateway
    ):
        """When the secret cannot be written, the minted key is deactivated."""
        from botocore.exceptions import ClientError

        def fail(**_kwargs: Any) -> None:
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                "CreateSecret",
            )

        gateway.client("secretsmanager").meta.events.register(
            "before-call.secrets-manager.CreateSecret", fail
        )
        services = make_services()

        incident = services.runner.run(open_incident(services, world.exposed))

        assert incident.status is IncidentStatus.PARTIAL
        assert set(world.keys().values()) == {"Inactive"}
        assert "deactivated" in steps(services, incident.id)["store"].message


class TestResume:
    def test_resume_after_kill_between_rotate_and_store(self, world, make_services):
        """A run killed after minting re-mints and stores; no unstored key is left."""
        services = make_services()
        incident_id = open_incident(services, world.exposed)
        store_action = services.runner.playbooks["contain-long-term-key"].steps[4]

        # Simulate the kill: run up to rotate, then drop the process memory.
        original = services.runner._run_step

        def killed(incident, spec, *rest):
            if spec is store_action:
                raise SystemExit("killed")
            return original(incident, spec, *rest)

        services.runner._run_step = killed
        with pytest.raises(SystemExit):
            services.runner.run(incident_id)
        first_minted = steps(services, incident_id)["rotate"].outputs[
            "new_access_key_id"
        ]
        services.runner._run_step = original
        services.runner._memory.clear()

        restarted = make_services()
        restarted.engine.start()
        restarted.engine.wait_idle()

        incident = restarted.store.get_incident(incident_id=incident_id)
        assert incident.status is IncidentStatus.COMPLETED, incident.summary
        keys = world.keys()
        assert first_minted not in keys
        stored = json.loads(
            world.secrets.get_secret_value(SecretId=SECRET)["SecretString"]
        )
        assert keys == {world.exposed: "Inactive", stored["AccessKeyId"]: "Active"}
        assert REPLACEMENT_MEMORY_KEY not in restarted.runner._memory.get(
            incident_id, {}
        )
        ops = [a.operation for a in restarted.store.list_audit(incident_id=incident_id)]
        assert ops.count("UpdateAccessKey") == 1
        assert ops.count("DeleteAccessKey") == 1
