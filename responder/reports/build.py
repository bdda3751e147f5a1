"""Shape a key's CloudTrail records into the blast-radius report (a JSON-ready dict).

Shaping only: no I/O. The readers in `sources` gather records; this module
keeps those of the exposed key and of the keys it led to (see `analysis`),
normalises them, counts them, names their techniques, lists what they left
behind and states the coverage. Every value taken from a record is
attacker-controlled text and is kept as data; escaping is the renderers' job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import structlog

from responder._time import isoformat_z, parse_timestamp
from responder.reports.analysis import (
    TACTIC_ORDER,
    apply_min_events,
    classify,
    derived_key_entries,
    left_behind_of,
    load_rules,
    open_items,
    record_key,
    summarise_techniques,
    trace_keys,
)
from responder.reports.sources import Coverage, Window

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "build_report",
    "key_type_of",
    "normalise_event",
]

log = structlog.get_logger(__name__)

REPORT_SCHEMA_VERSION = 2

# Longest text kept from one record field; user agents and error messages are
# attacker-chosen and unbounded in principle.
_MAX_TEXT = 1024
_MAX_RESOURCES = 50
_REQUIRED_TEXT = ("eventSource", "eventName", "eventID")
_OPTIONAL_TEXT = (
    ("sourceIPAddress", "source_ip"),
    ("userAgent", "user_agent"),
    ("errorCode", "error_code"),
    ("errorMessage", "error_message"),
    ("requestID", "request_id"),
)
_COUNT_DIMENSIONS = (
    ("by_service", "event_source"),
    ("by_action", "action"),
    ("by_region", "region"),
    ("by_source_ip", "source_ip"),
    ("by_user_agent", "user_agent"),
)


def key_type_of(access_key_id: str) -> str | None:
    """Return `"long-term"` for an `AKIA` key, `"temporary"` for `ASIA`, else `None`."""
    if access_key_id.startswith("AKIA"):
        return "long-term"
    if access_key_id.startswith("ASIA"):
        return "temporary"

    return None


def normalise_event(record: object) -> tuple[dict[str, Any], list[str]]:
    """Return the report's compact form of one record and the fields it could not read.

    Never raises: a value that is missing where CloudTrail always writes one, or
    of the wrong type, becomes `None` and its field name is returned as a
    problem. `time` is ISO 8601 with `Z`; `action` is `<service>:<eventName>`.
    """
    problems: list[str] = []
    data: Mapping[str, Any] = record if isinstance(record, dict) else {}
    if not isinstance(record, dict):
        problems.append("record")

    moment = parse_timestamp(data.get("eventTime"))
    if moment is None:
        problems.append("eventTime")

    texts: dict[str, str | None] = {}
    for name in _REQUIRED_TEXT:
        texts[name] = _text(data.get(name), name, problems, required=True)
    region = _text(data.get("awsRegion"), "awsRegion", problems, required=False)
    region = region or _text(data.get("responder:region"), "region", problems)
    if region is None:
        problems.append("awsRegion")

    identity = data.get("userIdentity")
    if not isinstance(identity, dict):
        problems.append("userIdentity")
        identity = {}
    access_key_id = _text(identity.get("accessKeyId"), "accessKeyId", problems)
    access_key_id = access_key_id or _text(
        data.get("responder:access_key_id"), "accessKeyId", problems
    )

    event: dict[str, Any] = {
        "time": isoformat_z(moment) if moment else None,
        "event_source": texts["eventSource"],
        "event_name": texts["eventName"],
        "action": _action(texts["eventSource"], texts["eventName"]),
        "region": region,
        "access_key_id": access_key_id,
    }
    for source_name, report_name in _OPTIONAL_TEXT:
        event[report_name] = _text(data.get(source_name), source_name, problems)
    event["read_only"] = _flag(data.get("readOnly"), problems)
    event["resources"] = _resources(data, problems)
    event["event_id"] = texts["eventID"]
    event["origins"] = _origins(data)
    if data.get("responder:partial"):
        problems.append("CloudTrailEvent")
    event["problems"] = sorted(set(problems))

    return event, problems


def build_report(
    *,
    access_key_id: str,
    owner: str | None,
    account_id: str | None,
    key_type: str | None,
    window: Window,
    events: Iterable[object],
    coverage: Coverage,
    responder_actions: Iterable[Mapping[str, Any]],
    generated_at: datetime,
    incident_id: str | None = None,
    posture: Mapping[str, Any] | None = None,
    least_privilege: Mapping[str, Any] | None = None,
    exposure_start: datetime | None = None,
    consume: bool = False,
) -> dict[str, Any]:
    """Return the blast-radius report of one key as a JSON-ready dict.

    `events` are raw CloudTrail records in any order; only those made by the
    key or by a key it led to (sessions, role sessions, created access keys,
    transitively) are reported, in time order, those without a readable time
    last. Calls with an `errorCode` were attempts, not effects: they are
    counted in `failed`, apart from `counts`. `posture` and `least_privilege`
    are copied as given (`None` when not gathered); `exposure_start` (the
    incident's first signal) adds a note on events before it. With `consume`,
    a list given as `events` is emptied (its items set to `None`) as it is
    read, to bound memory. The field reference is `docs/report-format.md`.
    """
    records = events if consume and isinstance(events, list) else list(events)
    trace = trace_keys(access_key_id, records)
    members = trace.members
    rules = load_rules()
    problems: Counter[str] = Counter(coverage.parse_problems)
    timeline: list[dict[str, Any]] = []
    behind: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        if consume:
            # The raw record is done with after this turn: let it go now, so the
            # raw records and the report's events are not all held at once.
            records[index] = None
        if not isinstance(record, dict):
            problems["record"] += 1
            continue
        key = record_key(record)
        if key not in members:
            continue
        event, event_problems = normalise_event(record)
        problems.update(event_problems)
        event["chain"] = trace.chain(str(key))
        event["techniques"] = classify(record, rules)
        timeline.append(event)
        if event["error_code"] is None:
            behind.extend(left_behind_of(record, event))
    timeline.sort(key=_time_order)
    apply_min_events(timeline, rules)

    succeeded = [event for event in timeline if event["error_code"] is None]
    failed = [event for event in timeline if event["error_code"] is not None]
    left_behind = sorted(
        behind, key=lambda item: (item["at"] is None, item["at"] or "", item["kind"])
    )
    derived = derived_key_entries(
        trace, timeline, exposed_key_type=key_type, generated_at=generated_at
    )
    techniques = summarise_techniques(timeline, rules)
    actions = sorted(
        (_responder_action(action) for action in responder_actions),
        key=lambda action: (action["at"] is None, action["at"] or ""),
    )
    coverage_section = _coverage_section(coverage, problems, trace.truncation_note)
    if exposure_start is not None:
        _note_before_exposure(coverage_section, timeline, exposure_start)
    todo = open_items(
        derived_keys=derived,
        left_behind=left_behind,
        coverage=coverage_section,
        posture=posture,
        generated_at=generated_at,
    )

    summary = _summary(timeline, succeeded, failed, coverage_section)
    summary["derived_keys"] = len(derived)
    summary["techniques"] = [
        tactic
        for tactic in TACTIC_ORDER
        if any(entry["tactic"] == tactic for entry in techniques)
    ]
    summary["left_behind"] = len(left_behind)
    summary["open_items"] = len(todo)
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "responder.blast-radius-report",
        "generated_at": isoformat_z(generated_at),
        "incident_id": incident_id,
        "access_key": {
            "id": access_key_id,
            "type": key_type,
            "owner": owner,
            "account_id": account_id,
        },
        "window": window.to_dict(),
        "summary": summary,
        "coverage": coverage_section,
        "failed": {
            "total": len(failed),
            "by_error_code": _count(failed, "error_code"),
            **_counts(failed),
        },
        "counts": {"total": len(succeeded), **_counts(succeeded)},
        "events": timeline,
        "responder_actions": actions,
        "derived_keys": derived,
        "open_items": todo,
        "techniques": techniques,
        "left_behind": left_behind,
        "posture": dict(posture) if posture is not None else None,
        "least_privilege": (
            dict(least_privilege) if least_privilege is not None else None
        ),
    }
    log.info(
        "report_built",
        access_key_id=access_key_id,
        incident_id=incident_id,
        events=len(timeline),
        failed=len(failed),
        derived_keys=len(derived),
        techniques=len(techniques),
        left_behind=len(left_behind),
        open_items=len(todo),
        truncated=trace.truncated,
        regions_incomplete=sorted(coverage.regions_incomplete),
        parse_problems=coverage_section["parse_problems"],
    )

    return report


def _coverage_section(
    coverage: Coverage, problems: Counter[str], truncation_note: str | None
) -> dict[str, Any]:
    section = coverage.to_dict()
    section["parse_problems"] = sum(problems.values())
    section["parse_problems_by_field"] = dict(sorted(problems.items()))
    section["data_events_visible"] = coverage.files_read > 0
    note = truncation_note or coverage.truncation
    section["truncated"] = note is not None
    section["truncation_note"] = note
    # A bound that stopped following keys leaves events unread: not complete.
    section["complete"] = section["complete"] and note is None
    # Regions the collector skipped are its to report; incomplete ones are ours.
    not_read = dict(section.get("regions_not_read") or {})
    for region, reason in coverage.regions_incomplete.items():
        not_read.setdefault(region, reason)
    section["regions_not_read"] = dict(sorted(not_read.items()))

    return section


def _note_before_exposure(
    coverage: dict[str, Any], timeline: list[dict[str, Any]], start: datetime
) -> None:
    moment = isoformat_z(start)
    before = sum(1 for event in timeline if event["time"] and event["time"] < moment)
    if before:
        note = (
            f"{before} event(s) happened before the exposure was first signalled "
            f"({moment}): they may be the owner's own use."
        )
        coverage["notes"] = [*coverage.get("notes", []), note]


def _summary(
    timeline: list[dict[str, Any]],
    succeeded: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    coverage: dict[str, Any],
) -> dict[str, Any]:
    times = [event["time"] for event in timeline if event["time"] is not None]

    return {
        "events": len(timeline),
        "succeeded": len(succeeded),
        "failed": len(failed),
        "first_event_at": times[0] if times else None,
        "last_event_at": times[-1] if times else None,
        "services": len({event["event_source"] for event in succeeded}),
        "regions": sorted(
            {event["region"] for event in timeline if event["region"] is not None}
        ),
        "source_ips": len(
            {event["source_ip"] for event in timeline if event["source_ip"]}
        ),
        "coverage_complete": coverage["complete"],
        "regions_incomplete": sorted(coverage["regions_incomplete"]),
        "sources_incomplete": sorted(coverage["sources_incomplete"]),
        "files_failed": len(coverage["files_failed"]),
    }


def _counts(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {name: _count(events, field) for name, field in _COUNT_DIMENSIONS}


def _count(events: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    tally = Counter(event[field] for event in events)
    # Most frequent first; ties by value so the report is stable, null last.
    ordered = sorted(
        tally.items(), key=lambda item: (-item[1], item[0] is None, item[0] or "")
    )

    return [{"value": value, "count": count} for value, count in ordered]


def _time_order(event: dict[str, Any]) -> tuple[bool, str, str]:
    return (event["time"] is None, event["time"] or "", event["event_id"] or "")


def _responder_action(action: Mapping[str, Any]) -> dict[str, Any]:
    moment = parse_timestamp(action.get("at"))
    unused: list[str] = []

    return {
        "at": isoformat_z(moment) if moment else None,
        "service": _text(action.get("service"), "service", unused),
        "operation": _text(action.get("operation"), "operation", unused),
        "target": _text(action.get("target"), "target", unused),
        "request_id": _text(action.get("request_id"), "request_id", unused),
        "outcome": _text(action.get("outcome"), "outcome", unused),
    }


def _text(
    value: object, name: str, problems: list[str], *, required: bool = False
) -> str | None:
    if isinstance(value, str):
        return _clip(value)
    if value is not None or required:
        problems.append(name)

    return None


def _clip(text: str) -> str:
    if len(text) <= _MAX_TEXT:
        return text

    return text[:_MAX_TEXT] + "…[truncated]"


def _flag(value: object, problems: list[str]) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append("readOnly")

    return None


def _origins(data: Mapping[str, Any]) -> list[str]:
    origins = data.get("responder:origins")
    if isinstance(origins, list):
        return [origin for origin in origins if isinstance(origin, str)]
    origin = data.get("responder:origin")

    return [origin] if isinstance(origin, str) else []


def _action(event_source: str | None, event_name: str | None) -> str | None:
    if event_name is None:
        return None
    service = (event_source or "").removesuffix(".amazonaws.com")

    return (service or "?") + ":" + event_name


def _resources(data: Mapping[str, Any], problems: list[str]) -> list[dict[str, Any]]:
    """Merge a record's `resources` with LookupEvents' `Resources`, deduplicated."""
    found: list[dict[str, Any]] = []
    for field, type_key, name_key in (
        ("resources", "type", "ARN"),
        ("responder:lookup_resources", "ResourceType", "ResourceName"),
    ):
        value = data.get(field)
        if value is None:
            continue
        if not isinstance(value, list):
            problems.append("resources")
            continue
        for item in value:
            resource = _resource(item, type_key, name_key, problems)
            if resource is not None and resource not in found:
                found.append(resource)

    return found[:_MAX_RESOURCES]


def _resource(
    item: object, type_key: str, name_key: str, problems: list[str]
) -> dict[str, Any] | None:
    if isinstance(item, str):
        problems.append("resources")
        return {"type": None, "name": _clip(item)}
    if not isinstance(item, dict):
        problems.append("resources")
        return None

    unused: list[str] = []
    name = _text(item.get(name_key), name_key, unused)
    if name is None and name_key == "ARN":
        name = _text(item.get("arn"), "arn", unused)

    return {"type": _text(item.get(type_key), type_key, unused), "name": name}
