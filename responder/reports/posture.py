"""The exposed key's owner as IAM sees it, and the policy its past use suggests.

`gather_posture` reads the owning user's keys, MFA devices, policies and groups
(read-only IAM calls) into the report's `posture` object; a call that fails is
written into `problems`, never raised. `suggest_least_privilege` turns the
successful calls a key made before an incident into a reviewable IAM policy,
much like IAM Access Analyzer's policy generation. No secrets pass through here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import unquote

import structlog

from responder._time import isoformat_z, parse_timestamp
from responder.exceptions import AwsCallFailed

__all__ = [
    "QUARANTINE_NOTE",
    "QUARANTINE_PREFIX",
    "AwsCaller",
    "gather_posture",
    "iam_action_of",
    "suggest_least_privilege",
]

log = structlog.get_logger(__name__)

QUARANTINE_PREFIX = "AWSCompromisedKeyQuarantine"
QUARANTINE_NOTE = (
    "AWS attached {name} after detecting the exposure. It denies a list of risky "
    "actions but does not deactivate the key and does not deny sts:AssumeRole, "
    "Secrets Manager or SSM: sessions of roles the user may assume, secrets and "
    "SSM parameters stay reachable. Keep it attached; it is not containment."
)
_FULL_ADMIN = "* (full administrator)"
# Listing more than this many actions of one service says less than a count.
_ACTIONS_PER_SERVICE = 8
# Far beyond any real user; a bound in case a listing never stops truncating.
_MAX_PAGES = 50
# A policy listing more ARNs than this for one action is hard to review.
_MAX_ARNS_PER_ACTION = 20
_MAX_UNMAPPED_NAMED = 10
_PARTITION_MANAGED = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")

# CloudTrail event sources whose IAM service prefix differs from the host name.
_SERVICE_PREFIXES = {
    "monitoring": "cloudwatch",
    "email": "ses",
    "streams.dynamodb": "dynamodb",
    "tagging": "tag",
    "api.ecr": "ecr",
    "api.mediatailor": "mediatailor",
    "catalog.marketplace": "aws-marketplace",
    "metering-marketplace": "aws-marketplace",
    "billingconsole": "aws-portal",
}
# Sources whose events name no IAM action (sign-in, HTTP-verb APIs).
_NO_IAM_ACTION = frozenset({"signin", "apigateway", "execute-api"})
# Event names that are not the IAM action name, by (prefix, event name).
_ACTION_EXCEPTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "ListObjects"): ("ListBucket",),
    ("s3", "ListObjectsV2"): ("ListBucket",),
    ("s3", "ListObjectVersions"): ("ListBucketVersions",),
    ("s3", "HeadBucket"): ("ListBucket",),
    ("s3", "HeadObject"): ("GetObject",),
    ("s3", "ListBuckets"): ("ListAllMyBuckets",),
    ("s3", "CopyObject"): ("GetObject", "PutObject"),
    ("s3", "CreateMultipartUpload"): ("PutObject",),
    ("s3", "UploadPart"): ("PutObject",),
    ("s3", "UploadPartCopy"): ("GetObject", "PutObject"),
    ("s3", "CompleteMultipartUpload"): ("PutObject",),
    ("s3", "DeleteObjects"): ("DeleteObject",),
    ("s3", "ListParts"): ("ListMultipartUploadParts",),
}
# Calls every principal may make whatever its policies say.
_ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})
# Lambda records its API version in event names: CreateFunction20150331v2.
_LAMBDA_VERSION = re.compile(r"\d{8}(v\d+)?$")


class AwsCaller(Protocol):
    """Makes one AWS call and returns the response (`AwsGateway.call`, ctx.aws).

    Raises `AwsCallFailed` (or a subclass) when the call fails.
    """

    def __call__(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """Call `operation` (PascalCase) of `service` with `params`."""
        ...


def gather_posture(
    call: AwsCaller, *, user_name: str, access_key_id: str, now: datetime
) -> dict[str, Any]:
    """Return the report's `posture` object for the user owning the exposed key.

    Read-only and never raises for AWS failures: a call that fails leaves its
    field at its empty value (`mfa_devices` at `None`) and adds
    `"<Operation> failed: <code>"` to `problems`, so an unreadable field is never
    mistaken for an empty one. `problems` also names risky findings (no MFA,
    another active key, full administrator). `now` sets the key's age.
    """
    reader = _Reader(call)
    keys = reader.pages("ListAccessKeys", "AccessKeyMetadata", UserName=user_name)
    mfa = reader.pages("ListMFADevices", "MFADevices", UserName=user_name)
    attached = reader.pages(
        "ListAttachedUserPolicies", "AttachedPolicies", UserName=user_name
    )
    inline = reader.pages("ListUserPolicies", "PolicyNames", UserName=user_name)
    groups = reader.pages("ListGroupsForUser", "Groups", UserName=user_name)

    own_key = _own_key(keys, access_key_id)
    created = parse_timestamp(own_key.get("CreateDate")) if own_key else None
    attached_arns = sorted({str(item["PolicyArn"]) for item in attached or []})
    inline_names = sorted(str(name) for name in inline or [])
    group_names = sorted(str(group["GroupName"]) for group in groups or [])
    quarantine = _quarantine_policy(attached or [])

    reach = _Reach()
    for arn in attached_arns:
        reader.add_managed_policy(reach, arn)
    for name in inline_names:
        reader.add_inline_policy(reach, "GetUserPolicy", UserName=user_name, name=name)
    for group in group_names:
        reader.add_group(reach, group)

    posture: dict[str, Any] = {
        "user_name": user_name,
        "key_created_at": isoformat_z(created) if created else None,
        "key_age_days": (now - created).days if created else None,
        "other_keys": _other_keys(keys or [], access_key_id),
        "mfa_devices": len(mfa) if mfa is not None else None,
        "attached_policies": attached_arns,
        "inline_policies": inline_names,
        "groups": group_names,
        "quarantine_policy": quarantine,
        "quarantine_note": QUARANTINE_NOTE.format(name=quarantine)
        if quarantine
        else None,
        "reach": reach.summary(),
        "problems": reader.problems,
    }
    posture["problems"] += _findings(posture, keys, access_key_id)
    log.info(
        "posture_gathered",
        user_name=user_name,
        access_key_id=access_key_id,
        problems=len(posture["problems"]),
        quarantined=quarantine is not None,
    )

    return posture


def iam_action_of(event_source: str | None, event_name: str | None) -> list[str]:
    """Return the IAM actions (`"s3:GetObject"`) a CloudTrail event needed.

    Empty when the event needs none we can name: sign-in events, HTTP-verb APIs
    such as API Gateway, `sts:GetCallerIdentity`, or a missing field. Most
    event names are the IAM action; known exceptions (S3 `ListObjects` is
    `s3:ListBucket`, `HeadObject` is `s3:GetObject`, Lambda's dated names) are
    mapped.
    """
    if not event_source or not event_name:
        return []
    host = event_source.removesuffix(".amazonaws.com")
    if host in _NO_IAM_ACTION:
        return []
    prefix = _SERVICE_PREFIXES.get(host, host)
    name = event_name
    if prefix == "lambda":
        name = _LAMBDA_VERSION.sub("", name) or name

    names = _ACTION_EXCEPTIONS.get((prefix, name), (name,))
    actions = [f"{prefix}:{each}" for each in names]

    return [action for action in actions if action not in _ALWAYS_ALLOWED]


def suggest_least_privilege(
    events: list[dict[str, Any]],
    *,
    before: datetime,
    current_policies: list[str],
    access_key_id: str | None = None,
) -> dict[str, Any]:
    """Return the report's `least_privilege` object from the key's earlier calls.

    Uses report events (normalised dicts) that succeeded strictly before
    `before` (the incident's first signal) and, when `access_key_id` is given,
    were made with that key; events without a readable time are left out, as
    they cannot be placed before the cut. Each action's `Resource` lists the
    ARNs its events named, or `"*"` when any of its events named none. The
    result is a suggestion for the owner to review, not a policy to apply.
    """
    used = [
        event
        for event in events
        if not event.get("error_code")
        and (access_key_id is None or event.get("access_key_id") == access_key_id)
        and (moment := parse_timestamp(event.get("time"))) is not None
        and moment < before
    ]

    resources: dict[str, set[str]] = {}
    unmapped: set[str] = set()
    for event in used:
        actions = iam_action_of(event.get("event_source"), event.get("event_name"))
        if not actions:
            unmapped.add(str(event.get("action") or event.get("event_name")))
        arns = _arns_of(event)
        for action in actions:
            known = resources.setdefault(action, set())
            # "*" absorbs everything: one call on an unnamed resource needs it.
            known.update(arns if arns else {"*"})
    times = sorted(isoformat_z(moment) for e in used if (moment := _time(e)))

    return {
        "based_on": {
            "start": times[0] if times else None,
            "end": isoformat_z(before),
            "events": len(used),
        },
        "actions": sorted(resources),
        "policy": _policy_document(resources),
        "current_policies": sorted(current_policies),
        "note": _least_privilege_note(unmapped),
    }


class _Reach:
    """Collects what Allow statements grant, as service prefixes and actions."""

    def __init__(self) -> None:
        self.actions: set[str] = set()
        self.extra: set[str] = set()

    def add_document(self, document: object, label: str) -> None:
        statements = document.get("Statement") if isinstance(document, dict) else None
        if isinstance(statements, dict):
            statements = [statements]
        for statement in statements if isinstance(statements, list) else []:
            if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
                continue
            if "NotAction" in statement:
                excluded = ", ".join(_strings(statement["NotAction"]))
                self.extra.add(f"* except {excluded} (NotAction in {label})")
            for action in _strings(statement.get("Action")):
                self.actions.add(_normalise_action(action))

    def summary(self) -> list[str]:
        if "*" in self.actions or "*:*" in self.actions:
            return [_FULL_ADMIN, *sorted(self.extra)]
        by_service: dict[str, set[str]] = {}
        for action in self.actions:
            service, _, name = action.partition(":")
            by_service.setdefault(service, set()).add(name or "*")
        lines: list[str] = []
        for service, names in sorted(by_service.items()):
            if "*" in names:
                lines.append(f"{service}:*")
            elif len(names) > _ACTIONS_PER_SERVICE:
                lines.append(f"{service}: {len(names)} actions")
            else:
                lines.extend(f"{service}:{name}" for name in sorted(names))

        return lines + sorted(self.extra)


class _Reader:
    """Runs the read calls for `gather_posture`, turning failures into problems."""

    def __init__(self, call: AwsCaller) -> None:
        self.call = call
        self.problems: list[str] = []

    def one(self, operation: str, **params: Any) -> dict[str, Any] | None:
        try:
            return self.call("iam", operation, **params)
        except AwsCallFailed as exc:
            self.problems.append(f"{operation} failed: {exc.error_code}")
            log.warning(
                "posture_read_failed", operation=operation, error_code=exc.error_code
            )
            return None

    def pages(self, operation: str, field: str, **params: Any) -> list[Any] | None:
        items: list[Any] = []
        for page in self._iter_pages(operation, params):
            if page is None:
                return None
            items.extend(page.get(field) or [])

        return items

    def add_managed_policy(self, reach: _Reach, arn: str) -> None:
        name = arn.rsplit("/", 1)[-1]
        if _PARTITION_MANAGED.match(arn):
            # AWS managed documents are long and public: name them, do not expand.
            if name == "AdministratorAccess":
                reach.actions.add("*")
            else:
                reach.extra.add(f"AWS managed policy {name} (not expanded)")
            return
        policy = self.one("GetPolicy", PolicyArn=arn)
        version = (policy or {}).get("Policy", {}).get("DefaultVersionId")
        if not version:
            return
        answer = self.one("GetPolicyVersion", PolicyArn=arn, VersionId=version)
        document = (answer or {}).get("PolicyVersion", {}).get("Document")
        reach.add_document(_decoded(document), name)

    def add_inline_policy(
        self, reach: _Reach, operation: str, *, name: str, **owner: str
    ) -> None:
        answer = self.one(operation, PolicyName=name, **owner)
        reach.add_document(_decoded((answer or {}).get("PolicyDocument")), name)

    def add_group(self, reach: _Reach, group: str) -> None:
        attached = self.pages(
            "ListAttachedGroupPolicies", "AttachedPolicies", GroupName=group
        )
        for item in attached or []:
            self.add_managed_policy(reach, str(item["PolicyArn"]))
        inline = self.pages("ListGroupPolicies", "PolicyNames", GroupName=group)
        for name in inline or []:
            self.add_inline_policy(reach, "GetGroupPolicy", GroupName=group, name=name)

    def _iter_pages(
        self, operation: str, params: dict[str, Any]
    ) -> Iterator[dict[str, Any] | None]:
        marker: str | None = None
        for _ in range(_MAX_PAGES):
            extra = {"Marker": marker} if marker else {}
            page = self.one(operation, **params, **extra)
            yield page
            if page is None or not page.get("IsTruncated"):
                return
            marker = page.get("Marker")
            if not marker:
                return
        self.problems.append(f"{operation} stopped after {_MAX_PAGES} pages")


def _own_key(keys: list[Any] | None, access_key_id: str) -> dict[str, Any] | None:
    for item in keys or []:
        if item.get("AccessKeyId") == access_key_id:
            return dict(item)

    return None


def _other_keys(keys: list[Any], access_key_id: str) -> list[dict[str, Any]]:
    others: list[dict[str, Any]] = []
    for item in keys:
        if item.get("AccessKeyId") == access_key_id:
            continue
        created = parse_timestamp(item.get("CreateDate"))
        others.append(
            {
                "access_key_id": item.get("AccessKeyId"),
                "status": item.get("Status"),
                "created_at": isoformat_z(created) if created else None,
            }
        )

    return sorted(others, key=lambda key: str(key["access_key_id"]))


def _quarantine_policy(attached: list[Any]) -> str | None:
    for item in attached:
        name = str(item.get("PolicyName") or "")
        if name.startswith(QUARANTINE_PREFIX):
            return name

    return None


def _findings(
    posture: dict[str, Any], keys: list[Any] | None, access_key_id: str
) -> list[str]:
    findings: list[str] = []
    if keys is not None and _own_key(keys, access_key_id) is None:
        findings.append(f"key {access_key_id} is not among the user's keys")
    if posture["mfa_devices"] == 0:
        findings.append("no MFA device")
    for other in posture["other_keys"]:
        if other["status"] == "Active":
            findings.append(
                f"another active key {other['access_key_id']} is untouched by "
                "containment of the exposed key"
            )
    if _FULL_ADMIN in posture["reach"]:
        findings.append("the user's policies grant full administrator access")
    if posture["quarantine_policy"]:
        findings.append(
            f"{posture['quarantine_policy']} is attached: sts:AssumeRole, Secrets "
            "Manager and SSM stay open"
        )

    return findings


def _decoded(document: object) -> object:
    """Return a policy document as a dict; IAM sends it URL-encoded JSON text."""
    if isinstance(document, str):
        try:
            return json.loads(unquote(document))
        except ValueError:
            return None

    return document


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]

    return []


def _normalise_action(action: str) -> str:
    service, colon, name = action.partition(":")

    return service.lower() + colon + name if colon else action


def _time(event: dict[str, Any]) -> datetime | None:
    return parse_timestamp(event.get("time"))


def _arns_of(event: dict[str, Any]) -> set[str]:
    arns: set[str] = set()
    for resource in event.get("resources") or []:
        name = resource.get("name") if isinstance(resource, dict) else None
        if isinstance(name, str) and name.startswith("arn:"):
            arns.add(name)

    return arns


def _policy_document(resources: dict[str, set[str]]) -> dict[str, Any]:
    """Group actions by service and by identical resource lists, one statement each."""
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for action, arns in resources.items():
        if "*" in arns or len(arns) > _MAX_ARNS_PER_ACTION:
            listed: tuple[str, ...] = ("*",)
        else:
            listed = tuple(sorted(arns))
        service = action.partition(":")[0]
        grouped.setdefault((service, listed), []).append(action)

    statements: list[dict[str, Any]] = []
    for index, ((service, listed), actions) in enumerate(sorted(grouped.items())):
        statements.append(
            {
                "Sid": _sid(service, index),
                "Effect": "Allow",
                "Action": sorted(actions),
                "Resource": listed[0] if listed == ("*",) else list(listed),
            }
        )

    return {"Version": "2012-10-17", "Statement": statements}


def _sid(service: str, index: int) -> str:
    words = re.split(r"[^A-Za-z0-9]+", service)

    return "".join(word.capitalize() for word in words) + str(index + 1)


def _least_privilege_note(unmapped: set[str]) -> str:
    note = (
        "Actions the key used successfully before the incident, for the owner to "
        "review; failed calls are left out. Data events (S3 object reads, Lambda "
        "invocations) are present only if trail files were read, and LookupEvents "
        "keeps 90 days: the key may need actions not seen here. Resource is '*' "
        "where CloudTrail named no resource."
    )
    if unmapped:
        # Event names are attacker-controlled text: name a few, count the rest.
        listed = sorted(unmapped)
        names = ", ".join(listed[:_MAX_UNMAPPED_NAMED])
        if len(listed) > _MAX_UNMAPPED_NAMED:
            names += f" and {len(listed) - _MAX_UNMAPPED_NAMED} more"
        note += f" Calls that map to no IAM action were left out: {names}."

    return note
