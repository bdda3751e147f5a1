"""Containment on IAM: deactivate the key, revoke its sessions, mint a replacement."""

from __future__ import annotations

import json
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from responder._time import isoformat_z, parse_timestamp
from responder.aws.actions.base import Action, ActionContext, StepResult
from responder.exceptions import AwsCallFailed, LimitExceeded, ResourceNotFound
from responder.store.models import StepStatus

__all__ = [
    "REPLACEMENT_MEMORY_KEY",
    "AccessKeyDeactivate",
    "AccessKeyRotate",
    "RoleSessionsRevoke",
    "UserSessionsRevoke",
    "revoke_sessions_policy",
]

log = structlog.get_logger(__name__)

# Where a minted key's secret waits, in process memory only, for the store step.
REPLACEMENT_MEMORY_KEY = "replacement_key"


def _owner(ctx: ActionContext) -> str:
    user = ctx.incident.user_name or ctx.outputs.get("resolve", {}).get("user_name")
    if not user:
        msg = "no owner resolved: a resolve step must run first"
        raise RuntimeError(msg)

    return str(user)


def _list_keys(ctx: ActionContext, user: str) -> dict[str, dict[str, Any]]:
    listed = ctx.aws("iam", "ListAccessKeys", UserName=user)

    return {item["AccessKeyId"]: item for item in listed["AccessKeyMetadata"]}


class DeactivateOptions(BaseModel):
    """Options of `access-key-deactivate`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    confirm_attempts: int = Field(
        5, ge=1, le=20, description="Reads of ListAccessKeys to see Inactive."
    )
    confirm_delay: float = Field(1.0, ge=0, le=10, description="Seconds between reads.")


class AccessKeyDeactivate(Action):
    """Set exactly the exposed key to Inactive and confirm it from IAM.

    `UserName` is always passed: without it IAM acts on the caller's own keys. The
    user's other key is never touched. IAM is eventually consistent, so the state
    is confirmed by reading `ListAccessKeys` again, not by calling with the key::

        - name: deactivate
          action: access-key-deactivate
          needs: [resolve]
          critical: true
    """

    name = "access-key-deactivate"
    mutates = True
    Options = DeactivateOptions
    permissions = ("iam:UpdateAccessKey", "iam:ListAccessKeys")

    def run(self, ctx: ActionContext) -> StepResult:
        """Return succeeded once IAM lists the key as Inactive."""
        options: DeactivateOptions = self.options  # type: ignore[assignment]
        key_id, user = ctx.incident.access_key_id, _owner(ctx)
        if ctx.dry_run:
            return StepResult(
                StepStatus.PLANNED,
                f"would call UpdateAccessKey(UserName={user}, AccessKeyId={key_id},"
                " Status=Inactive) and confirm from ListAccessKeys",
            )

        keys = _list_keys(ctx, user)
        if key_id not in keys:
            return StepResult(
                StepStatus.FAILED,
                f"{user} no longer lists {key_id}",
                error_code="NoSuchEntity",
            )
        if keys[key_id]["Status"] == "Inactive":
            log.info(
                "access_key_already_inactive", access_key_id=key_id, user_name=user
            )
        else:
            ctx.aws(
                "iam",
                "UpdateAccessKey",
                target=key_id,
                UserName=user,
                AccessKeyId=key_id,
                Status="Inactive",
            )

        # Read back until IAM agrees; a stale read is not proof of failure yet.
        for attempt in range(options.confirm_attempts):
            status = _list_keys(ctx, user).get(key_id, {}).get("Status")
            if status == "Inactive":
                contained_at = ctx.now()
                ctx.store.update_incident(
                    incident_id=ctx.incident.id, contained_at=contained_at
                )
                log.info("access_key_deactivated", access_key_id=key_id, user_name=user)
                return StepResult(
                    StepStatus.SUCCEEDED,
                    f"{key_id} of {user} is Inactive (confirmed from ListAccessKeys)",
                    outputs={"contained_at": isoformat_z(contained_at)},
                )
            if attempt + 1 < options.confirm_attempts:
                ctx.sleep(options.confirm_delay)

        return StepResult(
            StepStatus.FAILED,
            f"UpdateAccessKey returned, but ListAccessKeys still shows {key_id} as"
            f" {status} after {options.confirm_attempts} reads",
            error_code="NotConfirmed",
        )


class RevokeOptions(BaseModel):
    """Options of `user-sessions-revoke`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_name: str = Field(
        "responder-revoke-older-sessions",
        pattern=r"^[\w+=,.@-]{1,128}$",
        description="Fixed inline policy name, so a rerun overwrites it.",
    )


def revoke_sessions_policy(issued_before: str) -> dict[str, Any]:
    """Return the policy denying every token issued before `issued_before` (UTC Z)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ResponderDenySessionsIssuedBeforeContainment",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": issued_before}},
            }
        ],
    }


class UserSessionsRevoke(Action):
    """Deny every session token the user's keys minted before now.

    Deactivating a key does not end `GetSessionToken`/`GetFederationToken` sessions
    it minted; they take the user's permissions, so one inline deny on
    `aws:TokenIssueTime` ends them. Requests signed with a long-term key carry no
    token issue time, so the user's healthy key keeps working. Role sessions are
    governed by the role and are not covered. One fixed policy name: a rerun
    overwrites, never adds::

        - name: revoke-sessions
          action: user-sessions-revoke
          needs: [resolve]
          options: {policy_name: responder-revoke-older-sessions}
    """

    name = "user-sessions-revoke"
    mutates = True
    Options = RevokeOptions
    permissions = ("iam:PutUserPolicy",)

    def run(self, ctx: ActionContext) -> StepResult:
        """Return succeeded once the policy is in place."""
        options: RevokeOptions = self.options  # type: ignore[assignment]
        resolved = ctx.outputs.get("resolve", {})
        if resolved.get("key_type") == "temporary" and not resolved.get("user_name"):
            return StepResult(
                StepStatus.SKIPPED,
                "the session is not an IAM user's (GetSessionToken) session",
                outputs={"not_applicable": True},
            )
        user = _owner(ctx)
        issued_before = isoformat_z(ctx.now())
        document = revoke_sessions_policy(issued_before)
        if ctx.dry_run:
            return StepResult(
                StepStatus.PLANNED,
                f"would put inline policy {options.policy_name} on {user} denying"
                f" sessions issued before {issued_before}",
            )

        ctx.aws(
            "iam",
            "PutUserPolicy",
            target=f"user/{user}/{options.policy_name}",
            UserName=user,
            PolicyName=options.policy_name,
            PolicyDocument=json.dumps(document),
        )
        log.info("sessions_revoked", user_name=user, issued_before=issued_before)

        return StepResult(
            StepStatus.SUCCEEDED,
            f"sessions of {user} issued before {issued_before} are denied"
            f" (inline policy {options.policy_name}); role sessions are not covered",
            outputs={
                "policy_name": options.policy_name,
                "issued_before": issued_before,
            },
        )


class RoleSessionsRevoke(Action):
    """Deny every session of the key's role issued before now.

    A temporary key from `AssumeRole` cannot be deactivated and is governed by the
    role, not by any user. The only way to end it early is an inline deny on
    `aws:TokenIssueTime` on the role, which also ends every other session of that
    role issued before now: people, services, instance profiles and functions
    using the role must get new credentials. That is why it waits for a person's
    approval unless the playbook step says `approval: false`::

        - name: revoke-role-sessions
          action: role-sessions-revoke
          needs: [resolve]
          critical: true
    """

    name = "role-sessions-revoke"
    Options = RevokeOptions
    permissions = ("iam:PutRolePolicy",)
    mutates = True
    approval_by_default = True

    def run(self, ctx: ActionContext) -> StepResult:
        """Return succeeded once the role denies every earlier session."""
        options: RevokeOptions = self.options  # type: ignore[assignment]
        role = ctx.outputs.get("resolve", {}).get("role_name")
        if not role:
            return StepResult(
                StepStatus.SKIPPED,
                "the session is not a role session: no role to deny",
                outputs={"not_applicable": True},
            )
        issued_before = isoformat_z(ctx.now())
        impact = (
            f"every session of role {role} issued before {issued_before} is denied,"
            " not only the exposed one: whoever uses the role must get new"
            " credentials"
        )
        if ctx.dry_run:
            return StepResult(StepStatus.PLANNED, f"would deny: {impact}")

        ctx.aws(
            "iam",
            "PutRolePolicy",
            target=f"role/{role}/{options.policy_name}",
            RoleName=role,
            PolicyName=options.policy_name,
            PolicyDocument=json.dumps(revoke_sessions_policy(issued_before)),
        )
        log.info("role_sessions_revoked", role_name=role, issued_before=issued_before)

        return StepResult(
            StepStatus.SUCCEEDED,
            impact,
            outputs={
                "role_name": role,
                "policy_name": options.policy_name,
                "issued_before": issued_before,
            },
        )


class RotateOptions(BaseModel):
    """Options of `access-key-rotate`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delete_exposed_key_when_full: bool = Field(
        False,
        description="When the user holds two keys, delete the (inactive) exposed key"
        " to make room; allowed only after a report step has captured its history.",
    )


class AccessKeyRotate(Action):
    """Mint a replacement key; its secret stays in memory for the store step.

    A user holds at most two keys, inactive ones included. With two, nothing is
    deleted unless `delete_exposed_key_when_full` is set and an earlier report step
    succeeded; otherwise the step is blocked and says what a person must do. A
    replacement minted by a run that died before storing it is deleted and minted
    again, so no key exists whose secret nobody holds::

        - name: rotate
          action: access-key-rotate
          needs: [deactivate]
          options: {delete_exposed_key_when_full: false}
    """

    name = "access-key-rotate"
    Options = RotateOptions
    permissions = ("iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys")
    volatile = True
    mutates = True
    once_per_incident = True

    def validate(self, playbook: Any, step: Any) -> list[str]:
        """Refuse deleting the exposed key unless a report step comes first."""
        options: RotateOptions = self.options  # type: ignore[assignment]
        if not options.delete_exposed_key_when_full:
            return []
        earlier = [s.action for s in playbook.steps[: playbook.steps.index(step)]]
        if "blast-radius-report" in earlier:
            return []

        return [
            "delete_exposed_key_when_full needs a blast-radius-report step before it,"
            " so the key's history is captured before the key is deleted"
        ]

    def run(self, ctx: ActionContext) -> StepResult:
        """Return succeeded with the new key ID, or blocked with what to do."""
        options: RotateOptions = self.options  # type: ignore[assignment]
        key_id, user = ctx.incident.access_key_id, _owner(ctx)
        if ctx.dry_run:
            return StepResult(
                StepStatus.PLANNED, f"would call CreateAccessKey(UserName={user})"
            )

        keys = self._delete_orphans(ctx, user, _list_keys(ctx, user))

        if len(keys) >= 2:
            if not options.delete_exposed_key_when_full:
                return _blocked(key_id, user, keys)
            ctx.aws(
                "iam",
                "DeleteAccessKey",
                target=key_id,
                UserName=user,
                AccessKeyId=key_id,
            )
            log.info("exposed_access_key_deleted", access_key_id=key_id, user_name=user)

        # Record what the user held, so a rerun can tell a key we minted from theirs.
        ctx.checkpoint(keys_before=sorted(keys), minting_at=isoformat_z(ctx.now()))
        try:
            created = ctx.aws(
                "iam", "CreateAccessKey", target=user, idempotent=False, UserName=user
            )
        except LimitExceeded:
            return _blocked(key_id, user, _list_keys(ctx, user))
        except AwsCallFailed:
            # The call may have run although it failed: do not leave its key behind.
            self._delete_orphans(ctx, user, _list_keys(ctx, user))
            raise
        new_key = created["AccessKey"]
        ctx.memory[REPLACEMENT_MEMORY_KEY] = {
            "access_key_id": new_key["AccessKeyId"],
            "secret_access_key": new_key["SecretAccessKey"],
            "user_name": user,
        }
        log.info(
            "access_key_minted",
            new_access_key_id=new_key["AccessKeyId"],
            user_name=user,
        )

        return StepResult(
            StepStatus.SUCCEEDED,
            f"replacement {new_key['AccessKeyId']} minted for {user}",
            outputs={
                "new_access_key_id": new_key["AccessKeyId"],
                "created_at": isoformat_z(
                    parse_timestamp(new_key["CreateDate"]) or ctx.now()
                ),
            },
        )

    def _delete_orphans(
        self, ctx: ActionContext, user: str, keys: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Delete keys an earlier, interrupted run minted but could not store.

        Returns `keys` without the ones deleted (or found already gone).
        """
        minted_before = ctx.previous_outputs.get("new_access_key_id")
        held = ctx.memory.get(REPLACEMENT_MEMORY_KEY, {}).get("access_key_id")
        orphans = {minted_before} if minted_before and minted_before != held else set()
        if "keys_before" in ctx.checkpoint_state:
            # Only keys created since our CreateAccessKey began can be ours.
            known = set(ctx.checkpoint_state["keys_before"]) | {held}
            since = parse_timestamp(ctx.checkpoint_state.get("minting_at"))
            orphans |= {
                key
                for key, item in keys.items()
                if key not in known
                and since is not None
                and (parse_timestamp(item.get("CreateDate")) or since) >= since
            }
        remaining = dict(keys)
        for orphan in sorted(orphan for orphan in orphans if orphan in keys):
            del remaining[orphan]
            try:
                ctx.aws(
                    "iam",
                    "DeleteAccessKey",
                    target=orphan,
                    UserName=user,
                    AccessKeyId=orphan,
                )
            except ResourceNotFound:
                continue
            log.warning(
                "orphaned_replacement_deleted", access_key_id=orphan, user_name=user
            )

        return remaining


def _blocked(key_id: str, user: str, keys: dict[str, dict[str, Any]]) -> StepResult:
    held = ", ".join(f"{k} ({v['Status']})" for k, v in sorted(keys.items()))

    return StepResult(
        StepStatus.BLOCKED,
        f"rotation blocked: {user} already holds two keys ({held}). A person must"
        f" delete one (the exposed {key_id} once its report is read:"
        f" aws iam delete-access-key --user-name {user} --access-key-id {key_id}),"
        f" then create the replacement (aws iam create-access-key --user-name {user})",
        outputs={"keys_held": sorted(keys)},
        error_code="LimitExceeded",
    )
