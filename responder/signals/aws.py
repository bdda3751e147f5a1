"""AWS exposure events: GuardDuty findings, Health risk events, Trusted Advisor.

`parse_aws_events` reads the parsed JSON of a verified body (an EventBridge event,
PutEvents entries, bare GuardDuty findings, or a list of any of these) and returns
the signals to store. It never raises for well-formed JSON of a shape it does not
know: such input becomes one IGNORED signal that says what it was, so that every
accepted request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any

import structlog

from responder._time import isoformat_z, parse_timestamp
from responder.exceptions import SignalMalformed
from responder.signals.github import ACCESS_KEY_ID
from responder.signals.models import ExposureSignal
from responder.store.models import SignalStatus

__all__ = [
    "DEFAULT_HEALTH_RISK_CODES",
    "MAX_EVENTS",
    "NO_KEY_REASON",
    "SAMPLE_REASON",
    "parse_aws_events",
]

log = structlog.get_logger(__name__)

DEFAULT_HEALTH_RISK_CODES = frozenset(
    {
        "AWS_RISK_CREDENTIALS_EXPOSED",
        "AWS_RISK_CREDENTIALS_EXPOSURE_SUSPECTED",
        "AWS_RISK_CREDENTIALS_COMPROMISED",
        "AWS_RISK_CREDENTIALS_COMPROMISE_SUSPECTED",
        "AWS_RISK_IAM_QUARANTINE",
    }
)
# Events (and findings) per payload, and separately entities (Health affected
# entities, Security Hub resources): beyond either the payload is refused.
MAX_EVENTS = 1000

SAMPLE_REASON = "sample finding: recorded as a test of the wiring, not acted on"
NO_KEY_REASON = "no access key in finding"

_ACCOUNT_ID = re.compile(r"\d{12}")
_INTEGER = re.compile(r"[+-]?\d{1,18}")
_PARTIAL_KEY = re.compile(r"[A-Z0-9]{1,20}")
# The shape of a secret access key: never kept, even where AWS should not put one.
_SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_TEXT_LIMIT = 256
_LIST_LIMIT = 20
_TA_ALERT_STATUSES = frozenset({"ERROR", "WARN", "WARNING", "RED", "YELLOW"})
_TA_CLEAR_STATUSES = frozenset({"OK", "GREEN", "RESOLVED"})
_TA_CHECK = "Exposed Access Keys"
_KNOWN_SOURCES = {
    "aws.guardduty": "guardduty",
    "aws.securityhub": "securityhub",
    "aws.health": "health",
    "aws.trustedadvisor": "trustedadvisor",
}


@dataclass(frozen=True)
class _Envelope:
    """The EventBridge (or PutEvents) fields around a detail; absent ones are None."""

    source: str | None
    detail_type: str | None
    event_id: str | None
    account: str | None
    region: str | None
    detail: dict[str, Any]
    detail_problem: str | None
    raw: Any


_NO_ENVELOPE = _Envelope(None, None, None, None, None, {}, None, None)


class _Budget:
    """Counts what one payload makes us read, and refuses a payload beyond it."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}

    def take(self, count: int, what: str) -> None:
        """Count `count` more of `what`.

        Raises:
            SignalMalformed: more than MAX_EVENTS of `what` in one payload.
        """
        self.used[what] = self.used.get(what, 0) + count
        if self.used[what] > MAX_EVENTS:
            msg = f"more than {MAX_EVENTS} {what} in one payload: split it"
            raise SignalMalformed(msg)


def parse_aws_events(
    payload: Any, *, health_codes: frozenset[str] = DEFAULT_HEALTH_RISK_CODES
) -> list[ExposureSignal]:
    """Return the signals in a verified AWS event payload, at least one per event.

    Accepts an EventBridge event (`detail` as an object or a JSON string), a
    PutEvents entry or `{"Entries": [...]}`, a list of events or of `{"detail":
    ...}` wrappers, and bare GuardDuty findings in API (camelCase) or CLI
    (PascalCase) form, alone or as `{"findings": [...]}`. Odd types inside a known
    shape count as absent. The result depends only on the payload, so a
    redelivery gives the same delivery IDs.

    Args:
        payload: the parsed JSON body (or the parsed `Message` of an SNS
            notification).
        health_codes: AWS Health RISK event type codes that name exposed keys;
            any other RISK code is handed to a person.

    Raises:
        SignalMalformed: the payload is not a JSON object or list, or it holds
            more than MAX_EVENTS events or entities.
    """
    if not isinstance(payload, dict | list):
        msg = f"expected a JSON object or list of AWS events, not {_json_type(payload)}"
        raise SignalMalformed(msg)
    budget = _Budget()
    items = _items(payload)
    budget.take(len(items), "events")

    if not items:
        signals = [_unrecognised(payload, "a payload with no events in it")]
    else:
        signals = []
        for item in items:
            signals.extend(_parse_item(item, health_codes, budget))

    log.debug(
        "aws_events_parsed",
        events=len(items),
        signals=len(signals),
        accepted=sum(s.status is SignalStatus.ACCEPTED for s in signals),
    )

    return signals


def _items(payload: dict[str, Any] | list[Any]) -> list[Any]:
    if isinstance(payload, list):
        return list(payload)
    if _first(payload, "source", "Source") is None:
        for name in ("Entries", "findings", "Findings"):
            listed = payload.get(name)
            if isinstance(listed, list):
                return list(listed)

    return [payload]


def _parse_item(
    item: Any, health_codes: frozenset[str], budget: _Budget
) -> list[ExposureSignal]:
    if not isinstance(item, dict):
        return [_unrecognised(item, f"a JSON {_json_type(item)} where an event was")]
    if not item:
        return [_unrecognised(item, "an empty JSON object")]
    envelope = _envelope(item)
    if envelope is None:
        if _is_asff(item):
            return _securityhub(item, replace(_NO_ENVELOPE, raw=item), budget)
        if _is_finding(item):
            return [_guardduty(item, replace(_NO_ENVELOPE, raw=item))]
        keys = sorted(str(key)[:40] for key in item)[:_LIST_LIMIT]
        return [_unrecognised(item, f"a JSON object with keys {keys}")]

    return _dispatch(envelope, health_codes, budget)


def _dispatch(
    envelope: _Envelope, health_codes: frozenset[str], budget: _Budget
) -> list[ExposureSignal]:
    source = envelope.source or _infer_source(envelope.detail)
    detail = envelope.detail
    if envelope.detail_problem is not None and source in _KNOWN_SOURCES:
        return [_ignored(envelope, _KNOWN_SOURCES[source], envelope.detail_problem)]

    if source == "aws.guardduty":
        if _is_finding(detail):
            return [_guardduty(detail, envelope)]
        what = f"GuardDuty event of detail-type {envelope.detail_type!r}"
        return [_ignored(envelope, "guardduty", f"{what} carries no finding")]
    if source == "aws.securityhub":
        if (envelope.detail_type or "").startswith("Security Hub Findings"):
            return _securityhub_event(envelope, budget)
        what = f"Security Hub event of detail-type {envelope.detail_type!r}"
        return [_ignored(envelope, "securityhub", f"{what} carries no findings")]
    if source == "aws.health":
        return _health(envelope, health_codes, budget)
    if source == "aws.trustedadvisor":
        return [_trusted_advisor(envelope)]
    if source == "awsmock.trustedadvisor":
        reason = f"mock source {source}: recorded as a test of the wiring, not acted on"
        return [
            _ignored(envelope, "trustedadvisor", reason, kind="trustedadvisor.mock")
        ]

    if source is None:
        reason = "event without a source, and its detail is of no shape this reads"
    else:
        reason = (
            f"source {source!r} (detail-type {envelope.detail_type!r})"
            " is not one this service reads"
        )

    return [_ignored(envelope, "aws", reason, kind="unrecognised")]


# GuardDuty


def _guardduty(raw: dict[str, Any], envelope: _Envelope) -> ExposureSignal:
    finding = _obj(raw)
    service = _obj(finding.get("service"))
    resource = _obj(finding.get("resource"))
    key_details = _obj(resource.get("accessKeyDetails"))
    finding_type = _text(finding.get("type")) or "unknown"
    finding_id = _text(finding.get("id"))
    arn = _text(finding.get("arn"))
    account, account_details = _choose_account(
        _account(finding.get("accountId")), envelope.account, _arn_account(arn)
    )
    user_type = _text(key_details.get("userType"))
    principal = _text(key_details.get("principalId"))
    user_name = _text(key_details.get("userName"))

    details = _compact(
        {
            "finding_id": finding_id,
            "finding_type": finding_type,
            "finding_arn": arn,
            "severity": _number(finding.get("severity")),
            "title": _text(finding.get("title")),
            "region": _text(finding.get("region")) or envelope.region,
            "resource_type": _text(resource.get("resourceType")),
            "user_type": user_type,
            "principal_id": principal,
            "user_name": user_name,
            "count": _int(service.get("count")),
            "updated_at": _iso(finding.get("updatedAt")),
            "first_seen": _iso(service.get("eventFirstSeen")),
            "last_seen": _iso(service.get("eventLastSeen")),
            "event_id": envelope.event_id,
            **account_details,
            **_role_session(user_type, principal),
        }
    )
    base = ExposureSignal(
        source="guardduty",
        delivery_id=f"{account or 'unknown'}:{finding_id or arn or _fingerprint(raw)}",
        kind=f"guardduty.{finding_type}",
        status=SignalStatus.IGNORED,
        reason=NO_KEY_REASON,
        account_id=account,
        details=details,
        repeatable=True,
    )

    info = _additional_info(service.get("additionalInfo"))
    placeholders = (finding.get("title"), *key_details.values())
    if _truthy(info.get("sample")) or _has_placeholder(placeholders):
        return replace(base, reason=SAMPLE_REASON)
    if not isinstance(resource.get("accessKeyDetails"), dict):
        return base
    key = _key_id(key_details.get("accessKeyId"))
    if key is None:
        partial = _partial_key(key_details.get("accessKeyId"))
        return _needs_person(
            base,
            f"finding names no full access key ID{partial}",
            ("user type", user_type),
            ("principal", principal),
            ("user name", user_name),
        )

    return replace(
        base,
        status=SignalStatus.ACCEPTED,
        reason=f"GuardDuty {finding_type} names the key",
        access_key_id=key,
    )


def _is_finding(value: Any) -> bool:
    finding = _obj(value)
    named = isinstance(finding.get("id"), str) or isinstance(finding.get("arn"), str)
    described = any(isinstance(finding.get(k), dict) for k in ("service", "resource"))

    return isinstance(finding.get("type"), str) and named and described


def _additional_info(value: Any) -> dict[str, Any]:
    # The API and CLI wrap it as {"value": "<JSON string>", "type": "default"}.
    info = _obj(value)
    nested = info.get("value")
    if isinstance(nested, str):
        info = {**info, **_obj(_loads(nested))}

    return info


def _has_placeholder(values: tuple[Any, ...]) -> bool:
    return any(isinstance(v, str) and "GeneratedFinding" in v for v in values)


def _role_session(user_type: str | None, principal: str | None) -> dict[str, Any]:
    # An assumed role's principal is "<role ID>:<session name>".
    if principal is None or ":" not in principal:
        return {}
    if user_type != "AssumedRole" and not principal.startswith("AROA"):
        return {}
    role_id, _, session_name = principal.partition(":")

    return {"role_id": role_id or None, "session_name": session_name or None}


def _choose_account(
    finding: str | None, envelope: str | None, arn: str | None
) -> tuple[str | None, dict[str, Any]]:
    # The envelope account can be the GuardDuty administrator, not the one affected.
    account = finding or envelope or arn
    details: dict[str, Any] = {"account_id": account}
    if finding is not None and envelope is not None and finding != envelope:
        details["finding_account"] = finding
        details["envelope_account"] = envelope
    if finding is None and envelope is None and arn is not None:
        details["account_from"] = "finding arn"

    return account, details


# Security Hub (ASFF)


def _securityhub_event(envelope: _Envelope, budget: _Budget) -> list[ExposureSignal]:
    findings = envelope.detail.get("findings")
    if not isinstance(findings, list) or not findings:
        return [
            _ignored(envelope, "securityhub", "Security Hub event lists no findings")
        ]
    budget.take(len(findings), "events")
    signals: list[ExposureSignal] = []
    for finding in findings:
        if isinstance(finding, dict):
            signals.extend(_securityhub(finding, envelope, budget))
        else:
            what = f"Security Hub finding that is a JSON {_json_type(finding)}"
            signals.append(_ignored(envelope, "securityhub", what))

    return signals


def _is_asff(value: Any) -> bool:
    finding = _obj(value)
    return isinstance(finding.get("productArn"), str) and (
        isinstance(finding.get("awsAccountId"), str)
        or isinstance(finding.get("resources"), list)
    )


def _securityhub(
    raw: dict[str, Any], envelope: _Envelope, budget: _Budget
) -> list[ExposureSignal]:
    finding = _obj(raw)
    fields = _dict(finding.get("productFields"))
    resources = finding.get("resources")
    resources = resources if isinstance(resources, list) else []
    budget.take(len(resources), "entities")
    product = _text(fields.get("aws/securityhub/ProductName")) or _text(
        (_text(finding.get("productArn")) or "").rpartition("/")[2]
    )
    finding_id = _text(finding.get("id"))
    account, account_details = _choose_account(
        _account(finding.get("awsAccountId")), envelope.account, None
    )
    key_resources = [_obj(r) for r in resources if _is_key_resource(r)]
    keys, users = _asff_keys(key_resources)
    types = finding.get("types")

    details = _compact(
        {
            "finding_id": finding_id,
            "product": product,
            "types": _texts(types) if isinstance(types, list) else None,
            "title": _text(finding.get("title")),
            "severity_label": _text(_obj(finding.get("severity")).get("label"))
            or _text(fields.get("aws/securityhub/SeverityLabel")),
            "region": _text(finding.get("region")) or envelope.region,
            "user_names": users or None,
            "count": _int(fields.get("count")),
            "updated_at": _iso(finding.get("updatedAt")),
            "first_seen": _iso(finding.get("firstObservedAt")),
            "last_seen": _iso(finding.get("lastObservedAt")),
            "event_id": envelope.event_id,
            "detail_type": envelope.detail_type,
            "action_name": _text(envelope.detail.get("actionName")),
            **account_details,
        }
    )
    base = ExposureSignal(
        source="securityhub",
        delivery_id=f"{account or 'unknown'}:{finding_id or _fingerprint(raw)}",
        kind=f"securityhub.{(product or 'finding').lower()}",
        status=SignalStatus.IGNORED,
        reason=NO_KEY_REASON,
        account_id=account,
        details=details,
        repeatable=True,
    )

    if _asff_is_sample(fields, key_resources):
        return [replace(base, reason=SAMPLE_REASON)]
    if keys:
        named = f"Security Hub finding from {product or 'a product'} names the key"
        return [
            replace(
                base,
                delivery_id=base.delivery_id + (f":{key}" if len(keys) > 1 else ""),
                status=SignalStatus.ACCEPTED,
                reason=named,
                access_key_id=key,
            )
            for key in keys
        ]
    if key_resources:
        return [
            _needs_person(
                base,
                "Security Hub finding names an access key but not its ID",
                ("user name", ", ".join(users) if users else None),
            )
        ]

    return [base]


def _is_key_resource(value: Any) -> bool:
    resource = _obj(value)
    resource_id = _text(resource.get("id")) or ""

    return resource.get("type") == "AwsIamAccessKey" or resource_id.startswith(
        "AWS::IAM::AccessKey"
    )


def _asff_keys(resources: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    keys: dict[str, None] = {}
    users: dict[str, None] = {}
    for resource in resources:
        about = _obj(_obj(resource.get("details")).get("awsIamAccessKey"))
        resource_id = _text(resource.get("id")) or ""
        for candidate in (about.get("accessKeyId"), resource_id.rpartition(":")[2]):
            key = _key_id(candidate)
            if key is not None:
                keys[key] = None
        user = _text(about.get("userName")) or _text(about.get("principalName"))
        if user is not None:
            users[user] = None

    return list(keys), list(users)[:_LIST_LIMIT]


def _asff_is_sample(fields: dict[str, Any], resources: list[dict[str, Any]]) -> bool:
    # GuardDuty flattens its finding into ProductFields: "additionalInfo" may be a
    # JSON string, and nested keys become paths such as "additionalInfo/sample".
    info = _additional_info({"value": fields.get("additionalInfo")})
    flagged = any(
        key.rpartition("/")[2] == "sample" and _truthy(value)
        for key, value in fields.items()
    )
    names = tuple(_text(r.get("id")) for r in resources)

    return flagged or _truthy(info.get("sample")) or _has_placeholder(names)


# AWS Health


def _health(
    envelope: _Envelope, health_codes: frozenset[str], budget: _Budget
) -> list[ExposureSignal]:
    detail = envelope.detail
    code = _text(detail.get("eventTypeCode"))
    service = _text(detail.get("service"))
    arn = _text(detail.get("eventArn"))
    account = _account(detail.get("affectedAccount")) or envelope.account
    entities = detail.get("affectedEntities")
    entities = entities if isinstance(entities, list) else []
    budget.take(len(entities), "entities")
    keys, others = _split_entities(entities)

    details = _compact(
        {
            "event_arn": arn,
            "event_type_code": code,
            "service": service,
            "event_type_category": _text(detail.get("eventTypeCategory")),
            "page": _int(detail.get("page")),
            "total_pages": _int(detail.get("totalPages")),
            "start_time": _iso(detail.get("startTime")),
            "end_time": _iso(detail.get("endTime")),
            "last_updated_time": _iso(detail.get("lastUpdatedTime")),
            "affected_account": _account(detail.get("affectedAccount")),
            "account_id": account,
            "communication_id": _text(detail.get("communicationId")),
            "status_code": _text(detail.get("statusCode")),
            "backup_event": _truthy(detail.get("backupEvent")) or None,
            "region": _text(detail.get("eventRegion")) or envelope.region,
            "event_id": envelope.event_id,
            "other_entities": others[:_LIST_LIMIT] or None,
            "other_entity_count": len(others) or None,
        }
    )
    event = arn or envelope.event_id or _fingerprint(envelope.raw)
    base = ExposureSignal(
        source="health",
        delivery_id=f"{event}:{account or 'unknown'}",
        kind=f"health.{code or 'unknown'}",
        status=SignalStatus.IGNORED,
        reason=f"AWS Health event {code} (service {service}) is not a risk event",
        account_id=account,
        details=details,
    )

    is_risk = service == "RISK" or (code or "").startswith("AWS_RISK_")
    if not is_risk and code not in health_codes:
        return [base]
    if code not in health_codes:
        reason = f"unknown AWS Health RISK code {code}: a person must read it"
        found = {**details, "access_key_ids": keys} if keys else details
        return [
            replace(
                base, status=SignalStatus.NEEDS_PERSON, reason=reason, details=found
            )
        ]
    if not keys:
        reason = (
            f"AWS Health {code} names no access key ID among its affected entities:"
            " a person must read it"
        )
        return [replace(base, status=SignalStatus.NEEDS_PERSON, reason=reason)]

    return [
        replace(
            base,
            delivery_id=f"{base.delivery_id}:{key}",
            status=SignalStatus.ACCEPTED,
            reason=f"AWS Health {code} names the key",
            access_key_id=key,
        )
        for key in keys
    ]


def _split_entities(entities: list[Any]) -> tuple[list[str], list[str]]:
    keys: dict[str, None] = {}
    others: dict[str, None] = {}
    for entity in entities:
        value = _text(_dict(entity).get("entityValue"))
        if value is None:
            continue
        key = _key_id(value)
        if key is not None:
            keys[key] = None
        else:
            others[_SECRET_SHAPE.sub("[redacted]", value)] = None

    return list(keys), list(others)


# Trusted Advisor


def _trusted_advisor(envelope: _Envelope) -> ExposureSignal:
    detail = envelope.detail
    check = _text(detail.get("check-name"))
    item = _dict(detail.get("check-item-detail"))
    status = _text(detail.get("status"))
    user_name = _text(item.get("User Name (IAM or Root)"))
    case_id = _text(item.get("Case ID"))
    key = _key_id(item.get("Access Key ID"))
    account = envelope.account

    details = _compact(
        {
            "check_name": check,
            "status": status,
            "user_name": user_name,
            "case_id": case_id,
            "fraud_type": _text(item.get("Fraud Type")),
            "location": _text(item.get("Location")),
            "usage_usd_per_day": _text(item.get("Usage (USD per Day)")),
            "deadline": _epoch_ms(item.get("Deadline")),
            "time_updated": _epoch_ms(item.get("Time Updated")),
            "uuid": _text(detail.get("uuid")),
            "account_id": account,
            "region": envelope.region,
            "event_id": envelope.event_id,
        }
    )
    # The notification repeats at each refresh; the support case names the exposure.
    exposure = case_id or envelope.event_id or _fingerprint(envelope.raw)
    base = ExposureSignal(
        source="trustedadvisor",
        delivery_id=f"{account or 'unknown'}:{exposure}:{key or 'no-key'}",
        kind="trustedadvisor.exposed_access_keys",
        status=SignalStatus.IGNORED,
        reason=f"Trusted Advisor check {check!r} is not {_TA_CHECK!r}",
        account_id=account,
        details=details,
    )

    if check != _TA_CHECK:
        return replace(base, kind="trustedadvisor.other")
    flag = (status or "").upper()
    if flag in _TA_CLEAR_STATUSES:
        return replace(base, reason=f"Trusted Advisor reports status {status}: cleared")
    if flag not in _TA_ALERT_STATUSES:
        reason = f"unknown Trusted Advisor status {status!r}: a person must read it"
        return replace(base, status=SignalStatus.NEEDS_PERSON, reason=reason)
    if key is None:
        return _needs_person(
            base,
            "Trusted Advisor exposed-key alert names no access key ID",
            ("user name", user_name),
            ("case", case_id),
        )

    return replace(
        base,
        status=SignalStatus.ACCEPTED,
        reason=f"Trusted Advisor {_TA_CHECK} ({status}) names the key",
        access_key_id=key,
    )


# Envelopes and unknown shapes


def _envelope(item: dict[str, Any]) -> _Envelope | None:
    names = ("source", "Source", "detail", "Detail", "detail-type", "DetailType")
    if not any(name in item for name in names):
        return None
    detail: Any = _first(item, "detail", "Detail")
    problem = None
    if isinstance(detail, str):
        detail = _loads(detail)
        if not isinstance(detail, dict):
            problem = "the event's detail is a string that is not a JSON object"

    return _Envelope(
        source=_text(_first(item, "source", "Source")),
        detail_type=_text(_first(item, "detail-type", "detailType", "DetailType")),
        event_id=_text(_first(item, "id", "Id")),
        account=_account(_first(item, "account", "Account")),
        region=_text(_first(item, "region", "Region")),
        detail=_dict(detail),
        detail_problem=problem,
        raw=item,
    )


def _infer_source(detail: dict[str, Any]) -> str | None:
    # Wrappers of `{"detail": ...}` without an envelope: judge by the detail.
    if _is_finding(detail):
        return "aws.guardduty"
    if "eventTypeCode" in detail or ":health:" in str(detail.get("eventArn", "")):
        return "aws.health"
    if "check-name" in detail:
        return "aws.trustedadvisor"
    if isinstance(detail.get("findings"), list):
        return "aws.securityhub"

    return None


def _ignored(
    envelope: _Envelope, source: str, reason: str, *, kind: str | None = None
) -> ExposureSignal:
    account = envelope.account
    event = envelope.event_id or _fingerprint(envelope.raw)
    details = _compact(
        {
            "event_source": envelope.source,
            "detail_type": envelope.detail_type,
            "event_id": envelope.event_id,
            "account_id": account,
            "region": envelope.region,
        }
    )

    return ExposureSignal(
        source=source,
        delivery_id=f"{account or 'unknown'}:{event}",
        kind=kind or f"{source}.other",
        status=SignalStatus.IGNORED,
        reason=reason,
        account_id=account,
        details=details,
    )


def _unrecognised(value: Any, what: str) -> ExposureSignal:
    return ExposureSignal(
        source="aws",
        delivery_id=f"unrecognised:{_fingerprint(value)}",
        kind="unrecognised",
        status=SignalStatus.IGNORED,
        reason=f"not an AWS event this service reads: {what}",
        details={"shape": what},
    )


# Reading odd JSON: anything of the wrong type is absent


def _first(mapping: dict[str, Any], *names: str) -> Any:
    for name in names:
        if mapping.get(name) is not None:
            return mapping[name]

    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _obj(value: Any) -> dict[str, Any]:
    # CLI and boto3 print findings in PascalCase; the API and EventBridge use
    # camelCase. Lower the first letter of each key, one level at a time.
    if not isinstance(value, dict):
        return {}

    return {_camel(key): item for key, item in value.items() if isinstance(key, str)}


def _camel(key: str) -> str:
    return key[:1].lower() + key[1:]


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    stripped = value.strip()

    return stripped[:_TEXT_LIMIT] or None


def _texts(values: list[Any]) -> list[str] | None:
    texts = [text for text in map(_text, values) if text is not None]
    return texts[:_LIST_LIMIT] or None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())

    return None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None

    return None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _iso(value: Any) -> str | None:
    try:
        moment = parse_timestamp(value)
    except (OverflowError, OSError, ValueError):
        return None

    return isoformat_z(moment) if moment is not None else None


def _epoch_ms(value: Any) -> str | None:
    milliseconds = _int(value)
    return _iso(milliseconds / 1000) if milliseconds is not None else None


def _account(value: Any) -> str | None:
    if isinstance(value, str) and _ACCOUNT_ID.fullmatch(value):
        return value

    return None


def _arn_account(arn: str | None) -> str | None:
    parts = (arn or "").split(":")
    return _account(parts[4]) if len(parts) > 4 else None


def _key_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    candidate = value.strip()

    return candidate if ACCESS_KEY_ID.fullmatch(candidate) else None


def _partial_key(value: Any) -> str:
    # A truncated ID (GuardDuty has shown "ASIAIM") is worth showing; anything
    # longer or of another alphabet might be a secret, so it is never echoed.
    if isinstance(value, str) and _PARTIAL_KEY.fullmatch(value):
        return f" (only {value!r})"

    return ""


def _needs_person(
    base: ExposureSignal, what: str, *lead: tuple[str, str | None]
) -> ExposureSignal:
    """Return `base` for a person: `what` is missing, `lead` is where to look."""
    reason = f"{what}; lead: {_lead(*lead)}: a person must identify the key"

    return replace(base, status=SignalStatus.NEEDS_PERSON, reason=reason)


def _lead(*pairs: tuple[str, str | None]) -> str:
    named = [f"{label} {value}" for label, value in pairs if value]
    return ", ".join(named) or "none given"


def _compact(details: dict[str, Any]) -> dict[str, Any]:
    # A repeat merges its details over the stored ones: absent fields must not
    # erase what an earlier delivery said.
    return {key: value for key, value in details.items() if value is not None}


def _fingerprint(value: Any) -> str:
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except (RecursionError, TypeError, ValueError):
        return "unreadable"

    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"

    return type(value).__name__
