"""Find who owns an exposed key, and whether the responder may act on it."""

from __future__ import annotations

from typing import Any

import structlog

from responder._time import isoformat_z, parse_timestamp
from responder.aws.actions.base import Action, ActionContext, Halt, StepResult
from responder.exceptions import AccessDenied, ResourceNotFound
from responder.store.models import StepStatus

__all__ = ["AccessKeyResolve", "managed_accounts"]

log = structlog.get_logger(__name__)


def managed_accounts(ctx: ActionContext) -> tuple[str, ...]:
    """Return the accounts the responder may act in (its own when none configured)."""
    if ctx.settings.managed_accounts:
        return ctx.settings.managed_accounts
    identity = ctx.aws("sts", "GetCallerIdentity")

    return (str(identity["Account"]),)


class AccessKeyResolve(Action):
    """Resolve the owning account and IAM user of a key, and classify the key.

    `sts:GetAccessKeyInfo` names the account for any key ID, active or not; only
    managed accounts go further. `iam:GetAccessKeyLastUsed` names the user, and
    `iam:ListAccessKeys` for that user must list the key: a user name is never
    guessed. Temporary (`ASIA`) and root keys end the playbook here; their own paths
    are separate playbooks.

    Reads only, so it also runs in a dry run::

        - name: resolve
          action: access-key-resolve
          critical: true
    """

    name = "access-key-resolve"
    permissions = (
        "sts:GetAccessKeyInfo",
        "sts:GetCallerIdentity",
        "iam:GetAccessKeyLastUsed",
        "iam:ListAccessKeys",
    )

    def run(self, ctx: ActionContext) -> StepResult:
        """Return the owner, or a halt saying why the key is not actionable."""
        key_id = ctx.incident.access_key_id
        key_type = "temporary" if key_id.startswith("ASIA") else "long-term"

        # The owning account decides everything else: never act outside ours.
        info = ctx.aws("sts", "GetAccessKeyInfo", AccessKeyId=key_id)
        account_id = str(info["Account"])
        outputs: dict[str, Any] = {"account_id": account_id, "key_type": key_type}
        if account_id not in managed_accounts(ctx):
            return _halt(
                outputs,
                "foreign_account",
                f"account {account_id} is not managed by the responder",
            )

        if key_type == "temporary":
            return _halt(
                outputs,
                "temporary_key",
                "temporary (ASIA) key: it cannot be deactivated; its role session"
                " must be revoked (temporary-key playbook)",
            )

        try:
            last_used = ctx.aws("iam", "GetAccessKeyLastUsed", AccessKeyId=key_id)
        except ResourceNotFound:
            return _halt(
                outputs,
                "key_not_found",
                f"IAM does not know key {key_id} (already deleted?)",
            )
        user_name = last_used.get("UserName")
        usage = last_used.get("AccessKeyLastUsed", {})
        outputs["last_used"] = {
            "at": _iso(usage.get("LastUsedDate")),
            "service": usage.get("ServiceName"),
            "region": usage.get("Region"),
        }
        if not user_name or user_name in {"root", "<root_account>"}:
            outputs["key_type"] = "root"
            return _halt(
                outputs,
                "root_key",
                "root user key: only a person signed in as root can delete it;"
                " escalate now",
            )

        # Confirm from the user's own key list, so the name is known, not inferred.
        try:
            listed = ctx.aws("iam", "ListAccessKeys", UserName=user_name)
        except (ResourceNotFound, AccessDenied) as exc:
            return StepResult(
                StepStatus.FAILED,
                f"cannot list keys of {user_name}: {exc}",
                outputs=outputs,
                error_code=exc.error_code,
            )
        keys = {item["AccessKeyId"]: item for item in listed["AccessKeyMetadata"]}
        if key_id not in keys:
            return _halt(
                outputs, "owner_unknown", f"{user_name} does not list {key_id}"
            )
        outputs.update(
            user_name=user_name,
            key_status=keys[key_id]["Status"],
            key_created_at=_iso(keys[key_id].get("CreateDate")),
            other_keys=[
                {"access_key_id": other, "status": item["Status"]}
                for other, item in keys.items()
                if other != key_id
            ],
        )
        log.info(
            "access_key_resolved",
            access_key_id=key_id,
            account_id=account_id,
            user_name=user_name,
        )

        return StepResult(
            StepStatus.SUCCEEDED,
            f"{key_id} is a long-term key of IAM user {user_name} in {account_id}"
            f" ({keys[key_id]['Status']})",
            outputs=outputs,
        )


def _halt(outputs: dict[str, Any], outcome: str, reason: str) -> StepResult:
    log.warning("access_key_not_actionable", outcome=outcome, reason=reason)

    return StepResult(
        StepStatus.SUCCEEDED,
        reason,
        outputs={**outputs, "not_actionable": outcome},
        halt=Halt(outcome=outcome, reason=reason),
    )


def _iso(value: Any) -> str | None:
    moment = parse_timestamp(value)

    return isoformat_z(moment) if moment else None
