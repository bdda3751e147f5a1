"""Find who owns an exposed key, and whether the responder may act on it."""

from __future__ import annotations

import json
from typing import Any

import structlog

from responder._time import isoformat_z, parse_timestamp
from responder.aws.actions.base import Action, ActionContext, Halt, StepResult
from responder.exceptions import AccessDenied, AwsCallFailed, ResourceNotFound
from responder.store.models import StepStatus

__all__ = ["AccessKeyResolve"]

log = structlog.get_logger(__name__)

# Where the GuardDuty parser leaves what a finding says about the key's principal.
_LEAD_FIELDS = ("user_type", "principal_id", "user_name", "role_id", "session_name")


class AccessKeyResolve(Action):
    """Resolve the owning account and IAM user of a key, and classify the key.

    `sts:GetAccessKeyInfo` names the account for any key ID, active or not; only
    managed accounts go further, with that account's credentials from then on.
    For a long-term key, `iam:GetAccessKeyLastUsed` names the user and
    `iam:ListAccessKeys` for that user must list the key: a user name is never
    guessed. A root key ends the playbook, escalated to a person. For a temporary
    (`ASIA`) key it names the session's role or user, from the signal (GuardDuty's
    principal) or else from CloudTrail. A protected principal (configured by name,
    tagged, or the responder's own) is recorded so that changing steps wait for a
    person's approval.

    Reads only, so it also runs in a dry run::

        - name: resolve
          action: access-key-resolve
          critical: true
    """

    name = "access-key-resolve"
    permissions = (
        "sts:GetAccessKeyInfo",
        "sts:GetCallerIdentity",
        "sts:AssumeRole",
        "iam:GetAccessKeyLastUsed",
        "iam:ListAccessKeys",
        "iam:ListUserTags",
        "iam:ListRoles",
        "iam:GetRole",
        "iam:ListRoleTags",
        "cloudtrail:LookupEvents",
    )

    def run(self, ctx: ActionContext) -> StepResult:
        """Return the owner, or a halt saying why the key is not actionable."""
        key_id = ctx.incident.access_key_id
        key_type = "temporary" if key_id.startswith("ASIA") else "long-term"

        # The owning account decides everything else: never act outside ours.
        info = ctx.aws("sts", "GetAccessKeyInfo", AccessKeyId=key_id)
        account_id = str(info["Account"])
        outputs: dict[str, Any] = {"account_id": account_id, "key_type": key_type}
        if not ctx.accounts.is_managed(account_id):
            return _halt(
                outputs,
                "foreign_account",
                f"account {account_id} is not managed by the responder",
            )
        ctx.use_account(account_id)

        if key_type == "temporary":
            return _resolve_session(ctx, key_id, outputs)

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
        protected = _protection(ctx, "user", user_name, account_id)
        if protected:
            outputs["protected"] = protected
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


def _resolve_session(
    ctx: ActionContext, key_id: str, outputs: dict[str, Any]
) -> StepResult:
    """Name the role or user whose session a temporary key belongs to."""
    lead = _signal_lead(ctx) or _cloudtrail_lead(ctx, key_id)
    outputs["session"] = lead
    user_type = lead.get("user_type")
    account_id = str(outputs["account_id"])

    if user_type == "Root":
        outputs["key_type"] = "root"
        return _halt(
            outputs,
            "root_session",
            "temporary key of the root user: only a person signed in as root can"
            " end it (change the root password, review MFA); escalate now",
        )
    if user_type == "AssumedRole":
        role = _find_role(ctx, lead)
        if role is None:
            return _halt(
                outputs,
                "owner_unknown",
                "role session, but its role could not be found in IAM: a person"
                " must identify it",
            )
        outputs.update(role_name=role["RoleName"], role_arn=role["Arn"])
        protected = _protection(ctx, "role", role["RoleName"], account_id)
        if protected:
            outputs["protected"] = protected
        message = (
            f"{key_id} is a session of role {role['RoleName']} in {account_id}"
            f" (session {lead.get('session_name') or 'unknown'})"
        )
    elif user_type == "IAMUser" and lead.get("user_name"):
        user_name = str(lead["user_name"])
        outputs["user_name"] = user_name
        protected = _protection(ctx, "user", user_name, account_id)
        if protected:
            outputs["protected"] = protected
        message = f"{key_id} is a session token of IAM user {user_name}"
    else:
        return _halt(
            outputs,
            "owner_unknown",
            f"cannot tell whose session {key_id} is (user type"
            f" {user_type or 'unknown'}): a person must identify it",
        )
    log.info(
        "session_resolved",
        access_key_id=key_id,
        **{key: outputs.get(key) for key in ("role_name", "user_name")},
    )

    return StepResult(StepStatus.SUCCEEDED, message, outputs=outputs)


def _signal_lead(ctx: ActionContext) -> dict[str, Any]:
    """Return what the incident's signals say about the key's principal."""
    for signal in ctx.store.list_signals(incident_id=ctx.incident.id):
        lead = {
            key: signal.details[key]
            for key in _LEAD_FIELDS
            if isinstance(signal.details.get(key), str)
        }
        if lead.get("user_type"):
            lead["from"] = f"{signal.source} signal {signal.id}"
            return lead

    return {}


def _cloudtrail_lead(ctx: ActionContext, key_id: str) -> dict[str, Any]:
    """Return the principal of the key's latest CloudTrail event, if there is one."""
    if not ctx.settings.lookup_events:
        return {}
    try:
        page = ctx.aws(
            "cloudtrail",
            "LookupEvents",
            LookupAttributes=[
                {"AttributeKey": "AccessKeyId", "AttributeValue": key_id}
            ],
            MaxResults=5,
        )
    except AwsCallFailed as exc:
        log.warning("session_lookup_failed", error_code=exc.error_code)
        return {}
    for item in page.get("Events", []):
        try:
            record = json.loads(item.get("CloudTrailEvent") or "{}")
        except ValueError:
            continue
        identity = record.get("userIdentity")
        if not isinstance(identity, dict):
            continue
        issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
        principal = str(identity.get("principalId") or "")
        lead = {
            "user_type": identity.get("type"),
            "principal_id": principal,
            "user_name": identity.get("userName") or issuer.get("userName"),
            "role_id": principal.partition(":")[0] or None,
            "session_name": principal.partition(":")[2] or None,
            "from": "CloudTrail LookupEvents",
        }
        return {key: value for key, value in lead.items() if value}

    return {}


def _find_role(ctx: ActionContext, lead: dict[str, Any]) -> dict[str, Any] | None:
    """Return the IAM role a session belongs to, by role ID or else by name."""
    role_id = str(lead.get("role_id") or lead.get("principal_id", "")).partition(":")[0]
    if role_id.startswith("AROA"):
        marker: str | None = None
        for _ in range(100):
            params: dict[str, Any] = {"MaxItems": 1000}
            if marker:
                params["Marker"] = marker
            page = ctx.aws("iam", "ListRoles", **params)
            for role in page.get("Roles", []):
                if role.get("RoleId") == role_id:
                    return dict(role)
            marker = page.get("Marker") if page.get("IsTruncated") else None
            if not marker:
                break
    name = lead.get("user_name")
    if not name:
        return None
    try:
        return dict(ctx.aws("iam", "GetRole", RoleName=str(name))["Role"])
    except ResourceNotFound:
        return None


def _protection(
    ctx: ActionContext, kind: str, name: str, account_id: str
) -> str | None:
    """Return why a principal must not be changed without approval, or `None`."""
    if name in ctx.settings.protected_principals:
        return f"{kind} {name} is protected by configuration"

    # Never cut off the branch the responder sits on.
    identity = ctx.accounts.identity()
    own_arn = str(identity.get("Arn", ""))
    if str(identity.get("Account")) == account_id and (
        (kind == "user" and own_arn.endswith(f"/{name}") and ":user/" in own_arn)
        or (kind == "role" and f":assumed-role/{name}/" in own_arn)
    ):
        return f"{kind} {name} holds the responder's own credentials"
    role = ctx.settings.account_roles.get(account_id)
    if kind == "role" and role is not None and role.role_arn.endswith(f"/{name}"):
        return f"role {name} is the role the responder acts with in {account_id}"

    try:
        if kind == "user":
            listed = ctx.aws("iam", "ListUserTags", UserName=name)
        else:
            listed = ctx.aws("iam", "ListRoleTags", RoleName=name)
    except AwsCallFailed as exc:
        log.warning(
            "principal_tags_unreadable", kind=kind, name=name, error_code=exc.error_code
        )
        return None
    tags = listed.get("Tags", [])
    if any(tag.get("Key") == ctx.settings.protected_tag for tag in tags):
        return f"{kind} {name} is tagged {ctx.settings.protected_tag}"

    return None


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
