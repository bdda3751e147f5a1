"""Analyse a key's CloudTrail records: derived keys, techniques, what was left behind.

Pure functions, no I/O besides reading the packaged `techniques.yaml` once.
`trace_keys` follows the keys the exposed key obtained (sessions, role
sessions, new access keys) and, transitively, the keys those obtained;
`classify` names the attack techniques of one record from the rules in
`techniques.yaml`; `left_behind_of` says what a successful call created or
changed that a person must undo or decide on; `open_items` lists what is still
to do. Every value taken from a record is attacker-controlled text and is kept
as clipped data; escaping is the renderers' job. Secrets in response elements
(session tokens, secret keys) are never read.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import yaml

from responder._time import isoformat_z, parse_timestamp
from responder.exceptions import ConfigError
from responder.reports.sources import minted_keys

__all__ = [
    "MAX_DERIVED_DEPTH",
    "MAX_DERIVED_KEYS",
    "TACTIC_ORDER",
    "DerivedKey",
    "KeyTrace",
    "TechniqueRule",
    "apply_min_events",
    "classify",
    "derived_key_entries",
    "left_behind_of",
    "load_rules",
    "open_items",
    "parse_expiration",
    "parse_rules",
    "record_key",
    "summarise_techniques",
    "trace_keys",
]

MAX_DERIVED_DEPTH = 5
MAX_DERIVED_KEYS = 500
TACTIC_ORDER = (
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "exfiltration",
    "impact",
    "execution",
    "lateral-movement",
    "initial-access",
    "collection",
    "discovery",
    "other",
)

_MAX_TEXT = 1024
_MAX_TECHNIQUE_EVENT_IDS = 20
_SESSION_EVENTS = frozenset({"GetSessionToken", "GetFederationToken"})
_ROLE_EVENTS = frozenset(
    {"AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"}
)
# STS writes `expiration` as a Java-style human date in many records, with or
# without a comma after the year; email.utils would read "9:46:15 PM" as 09:46.
_HUMAN_DATE = re.compile(
    r"^[A-Za-z]{3,9}\.? \d{1,2}, \d{4},? \d{1,2}:\d{2}(:\d{2})? [AP]M$"
)
_HUMAN_FORMATS = (
    "%b %d, %Y %I:%M:%S %p",
    "%b %d, %Y, %I:%M:%S %p",
    "%B %d, %Y %I:%M:%S %p",
    "%B %d, %Y, %I:%M:%S %p",
    "%b %d, %Y %I:%M %p",
    "%b %d, %Y, %I:%M %p",
)
# Epoch values above this are milliseconds (year 5138 in seconds).
_EPOCH_MS_FLOOR = 1e11
# Lambda event names carry the API version: `UpdateFunctionCode20150331v2`.
_LAMBDA_VERSION = re.compile(r"\d{8}(v\d+)?$")
_RULE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_MITRE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
_RULE_KEYS = frozenset(
    {"id", "tactic", "name", "mitre", "match", "fallback", "min_events"}
)
_MATCH_KEYS = frozenset(
    {"event_source", "event_names", "event_name_prefixes", "condition"}
)


# --- derived keys -----------------------------------------------------------


@dataclass(frozen=True)
class DerivedKey:
    """A key the exposed key obtained, directly (`depth` 1) or through another key."""

    access_key_id: str
    parent: str
    obtained_by: str
    obtained_at: datetime | None
    event_id: str | None
    role_arn: str | None
    user_name: str | None
    expires_at: datetime | None
    depth: int

    @property
    def key_type(self) -> str:
        """Return `"long-term"` for a created access key, else `"temporary"`."""
        if self.obtained_by == "CreateAccessKey" or self.access_key_id.startswith(
            "AKIA"
        ):
            return "long-term"

        return "temporary"


@dataclass
class KeyTrace:
    """The exposed key and every key derived from it, with how far the trace went.

    `truncated` is true when a key deeper than `MAX_DERIVED_DEPTH` or beyond
    `MAX_DERIVED_KEYS` was seen and not followed; `truncation_note` says which.
    """

    exposed: str
    derived: dict[str, DerivedKey] = field(default_factory=dict)
    truncated: bool = False
    truncation_note: str | None = None

    @property
    def members(self) -> frozenset[str]:
        """Return the exposed key and every derived key."""
        return frozenset(self.derived) | {self.exposed}

    def chain(self, access_key_id: str) -> list[str]:
        """Return the key IDs from the exposed key to `access_key_id`, both included.

        A key that is not a member gives an empty list.
        """
        if access_key_id == self.exposed:
            return [self.exposed]
        path: list[str] = []
        current: str | None = access_key_id
        while current is not None and current in self.derived:
            path.append(current)
            current = self.derived[current].parent
        if current != self.exposed:
            return []
        path.append(self.exposed)

        return path[::-1]


def record_key(record: object) -> str | None:
    """Return the access key ID that made a record, or `None` if it names none.

    That is `userIdentity.accessKeyId`, else the key LookupEvents was asked
    about (`responder:access_key_id`).
    """
    if not isinstance(record, dict):
        return None
    identity = record.get("userIdentity")
    if isinstance(identity, dict):
        key = identity.get("accessKeyId")
        if isinstance(key, str) and key:
            return key
    key = record.get("responder:access_key_id")

    return key if isinstance(key, str) and key else None


def parse_expiration(value: object) -> datetime | None:
    """Parse an STS `expiration` into aware UTC, or `None` if unreadable.

    Accepts ISO 8601, epoch seconds or milliseconds, RFC 1123 and the human
    form CloudTrail often writes (`May 1, 2024 10:00:00 PM`,
    `Jul 30, 2024, 9:46:15 PM`), which is UTC.
    """
    if isinstance(value, str) and _HUMAN_DATE.match(value.strip()):
        text = " ".join(value.strip().replace(".", "").split())
        for pattern in _HUMAN_FORMATS:
            try:
                return datetime.strptime(text, pattern).replace(tzinfo=UTC)
            except ValueError:
                continue
        return None
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) >= _EPOCH_MS_FLOOR
    ):
        value = value / 1000
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError, OSError):
        return None


def trace_keys(access_key_id: str, records: Iterable[object]) -> KeyTrace:
    """Return every key obtained by `access_key_id` or, transitively, by its keys.

    `records` may be in any order and may include other principals' records;
    failed calls obtain nothing. The trace stops at `MAX_DERIVED_DEPTH` levels
    and `MAX_DERIVED_KEYS` keys, saying so in the result. A key obtained twice
    keeps its first (shallowest, then earliest) origin.
    """
    minted_by: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for record in records:
        if not isinstance(record, dict):
            continue
        # Any call whose response hands out a key counts (AssumeRoot, Cognito's
        # GetCredentialsForIdentity...), as in the trail reader: a key it follows
        # and this trace did not would have its events dropped.
        if record.get("errorCode"):
            continue
        parent = record_key(record)
        if parent is None:
            continue
        for key, how in minted_keys(record):
            minted_by.setdefault(parent, []).append((key, how, record))

    trace = KeyTrace(exposed=access_key_id)
    notes: list[str] = []
    queue: deque[tuple[str, int]] = deque([(access_key_id, 0)])
    while queue:
        parent, depth = queue.popleft()
        children = sorted(
            minted_by.get(parent, []),
            key=lambda item: _time_key(item[2].get("eventTime")),
        )
        for key, how, record in children:
            if key in trace.derived or key == access_key_id:
                continue
            if depth + 1 > MAX_DERIVED_DEPTH:
                _note_once(notes, f"keys deeper than {MAX_DERIVED_DEPTH} levels")
                continue
            if len(trace.derived) >= MAX_DERIVED_KEYS:
                _note_once(notes, f"more than {MAX_DERIVED_KEYS} derived keys")
                continue
            trace.derived[key] = _derived(key, parent, how, record, depth + 1)
            queue.append((key, depth + 1))

    if notes:
        trace.truncated = True
        trace.truncation_note = (
            "Derived keys were not all followed ("
            + "; ".join(notes)
            + "): events of the keys left out are not in this report."
        )

    return trace


def derived_key_entries(
    trace: KeyTrace,
    events: Iterable[Mapping[str, Any]],
    *,
    exposed_key_type: str | None,
    generated_at: datetime,
) -> list[dict[str, Any]]:
    """Return the report's `derived_keys` entries, ordered by `obtained_at`.

    `events` are the report's shaped events (their `access_key_id` is counted).
    Coverage follows the report contract: a session the exposed long-term key
    obtained with `GetSessionToken`/`GetFederationToken` is covered by the
    user's session-revoking deny; a role session is not; a created access key
    is left behind; anything else is unknown (`None`).
    """
    used = Counter(event.get("access_key_id") for event in events)
    ordered = sorted(
        trace.derived.values(),
        key=lambda key: (
            key.obtained_at is None,
            key.obtained_at or generated_at,
            key.access_key_id,
        ),
    )

    entries: list[dict[str, Any]] = []
    for key in ordered:
        covered, note = _coverage_of(key, trace, exposed_key_type, generated_at)
        entries.append(
            {
                "access_key_id": key.access_key_id,
                "parent": key.parent,
                "obtained_by": key.obtained_by,
                "obtained_at": _iso(key.obtained_at),
                "event_id": key.event_id,
                "type": key.key_type,
                "role_arn": key.role_arn,
                "user_name": key.user_name,
                "expires_at": _iso(key.expires_at),
                "depth": key.depth,
                "events": used.get(key.access_key_id, 0),
                "covered_by_containment": covered,
                "coverage_note": note,
            }
        )

    return entries


def _derived(
    key: str, parent: str, how: str, record: dict[str, Any], depth: int
) -> DerivedKey:
    request = _mapping(record.get("requestParameters"))
    response = _mapping(record.get("responseElements"))
    credentials = _mapping(response.get("credentials"))
    created = _mapping(response.get("accessKey"))
    role_arn = _str(request.get("roleArn")) if how in _ROLE_EVENTS else None
    user_name = None
    if how == "CreateAccessKey":
        user_name = (
            _str(request.get("userName"))
            or _str(created.get("userName"))
            or _str(_mapping(record.get("userIdentity")).get("userName"))
        )

    return DerivedKey(
        access_key_id=key,
        parent=parent,
        obtained_by=how,
        obtained_at=parse_timestamp(record.get("eventTime")),
        event_id=_str(record.get("eventID")),
        role_arn=role_arn,
        user_name=user_name,
        expires_at=parse_expiration(credentials.get("expiration")),
        depth=depth,
    )


def _coverage_of(
    key: DerivedKey,
    trace: KeyTrace,
    exposed_key_type: str | None,
    generated_at: datetime,
) -> tuple[bool | None, str]:
    expiry = _expiry_text(key, generated_at)
    if key.obtained_by == "CreateAccessKey":
        return False, (
            f"New long-term key for user {key.user_name or '(unknown)'}: "
            "containment did not touch it; it is left behind until deleted."
        )
    if key.obtained_by in _ROLE_EVENTS:
        return False, (
            f"Role session of {key.role_arn or 'an unknown role'}: governed by the "
            "role, not the user, so the user's deny does not end it; it lasts "
            f"until the role's earlier sessions are revoked{expiry}."
        )
    if key.obtained_by in _SESSION_EVENTS:
        exposed_long_term = exposed_key_type == "long-term" or trace.exposed.startswith(
            "AKIA"
        )
        if key.parent == trace.exposed and exposed_long_term:
            return True, (
                "Session of the exposed key's user: ended by the user's deny on "
                f"tokens issued before containment (aws:TokenIssueTime){expiry}."
            )
        parent = trace.derived.get(key.parent)
        if parent is not None and parent.obtained_by == "CreateAccessKey":
            return False, (
                f"Session of {key.parent}, a key the containment did not touch{expiry}."
            )
        return None, f"Session of {key.parent}: whether containment ends it is unknown."

    return None, f"Obtained by {key.obtained_by}: coverage unknown."


def _expiry_text(key: DerivedKey, generated_at: datetime) -> str:
    if key.expires_at is None:
        return " (expiry unknown)"
    moment = isoformat_z(key.expires_at)
    if key.expires_at <= generated_at:
        return f" (expired at {moment})"

    return f" (expires at {moment})"


# --- technique rules --------------------------------------------------------


_Check = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class TechniqueRule:
    """One classification rule from `techniques.yaml` (see the file's header)."""

    id: str
    tactic: str
    name: str
    mitre: str
    event_source: str | None = None
    event_names: frozenset[str] = frozenset()
    event_name_prefixes: tuple[str, ...] = ()
    condition: _Check | None = None
    fallback: bool = False
    min_events: int = 1

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Return whether the record's source, name and condition fit the rule."""
        if self.event_source is not None and (
            record.get("eventSource") != self.event_source
        ):
            return False
        name = record.get("eventName")
        if not isinstance(name, str) or not self.names_match(name):
            return False

        return self.condition is None or self.condition(record)

    def names_match(self, name: str) -> bool:
        """Return whether an event name fits the rule's names and prefixes."""
        if not (self.event_names or self.event_name_prefixes):
            return True

        return name in self.event_names or name.startswith(self.event_name_prefixes)


@functools.cache
def load_rules() -> tuple[TechniqueRule, ...]:
    """Return the packaged technique rules, read and checked once per process.

    Raises:
        ConfigError: the packaged file is malformed (names the bad rule).
    """
    text = (
        resources.files("responder.reports")
        .joinpath("techniques.yaml")
        .read_text(encoding="utf-8")
    )

    return parse_rules(yaml.safe_load(text), source="techniques.yaml")


def parse_rules(raw: object, *, source: str) -> tuple[TechniqueRule, ...]:
    """Return the rules of a parsed `techniques.yaml` document, checked.

    Raises:
        ConfigError: the document is not `{"rules": [...]}` or a rule is
            malformed; the message names the source and the rule.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        msg = f"{source}: expected a mapping with a 'rules' list"
        raise ConfigError(msg)

    rules: list[TechniqueRule] = []
    seen: set[str] = set()
    for index, item in enumerate(raw["rules"]):
        label = f"{source}: rule #{index + 1}"
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            label += f" ({item['id']})"
        try:
            rule = _parse_rule(item)
        except _RuleInvalid as exc:
            msg = f"{label}: {exc}"
            raise ConfigError(msg) from None
        if rule.id in seen:
            msg = f"{label}: id is used twice"
            raise ConfigError(msg)
        seen.add(rule.id)
        rules.append(rule)

    return tuple(rules)


class _RuleInvalid(Exception):
    """Raised inside the rule parser; `parse_rules` adds the rule's name."""


def _parse_rule(item: object) -> TechniqueRule:
    if not isinstance(item, dict):
        msg = "must be a mapping"
        raise _RuleInvalid(msg)
    unknown = sorted(set(item) - _RULE_KEYS)
    if unknown:
        msg = "unknown keys " + ", ".join(map(str, unknown))
        raise _RuleInvalid(msg)

    rule_id = _required_text(item, "id")
    if not _RULE_ID.match(rule_id):
        msg = "id must be lower-case kebab-case"
        raise _RuleInvalid(msg)
    tactic = _required_text(item, "tactic")
    if tactic not in TACTIC_ORDER:
        msg = f"tactic {tactic!r} is not one of " + ", ".join(TACTIC_ORDER)
        raise _RuleInvalid(msg)
    name = _required_text(item, "name")
    mitre = _required_text(item, "mitre")
    if not _MITRE_ID.match(mitre):
        msg = f"mitre {mitre!r} is not a technique ID like T1098 or T1098.001"
        raise _RuleInvalid(msg)
    fallback = item.get("fallback", False)
    min_events = item.get("min_events", 1)
    if not isinstance(fallback, bool):
        msg = "fallback must be true or false"
        raise _RuleInvalid(msg)
    if isinstance(min_events, bool) or not isinstance(min_events, int):
        msg = "min_events must be a positive integer"
        raise _RuleInvalid(msg)
    if min_events < 1:
        msg = "min_events must be a positive integer"
        raise _RuleInvalid(msg)

    match = item.get("match")
    if not isinstance(match, dict):
        msg = "match must be a mapping"
        raise _RuleInvalid(msg)
    unknown = sorted(set(match) - _MATCH_KEYS)
    if unknown:
        msg = "unknown match keys " + ", ".join(map(str, unknown))
        raise _RuleInvalid(msg)
    event_source = match.get("event_source")
    if event_source is not None and not isinstance(event_source, str):
        msg = "match.event_source must be a string"
        raise _RuleInvalid(msg)
    names = _text_list(match, "event_names")
    prefixes = _text_list(match, "event_name_prefixes")
    condition = None
    if "condition" in match:
        condition = _compile_condition(match["condition"], "match.condition")
    if not names and not prefixes and condition is None:
        msg = "match needs event_names, event_name_prefixes or a condition"
        raise _RuleInvalid(msg)

    return TechniqueRule(
        id=rule_id,
        tactic=tactic,
        name=name,
        mitre=mitre,
        event_source=event_source,
        event_names=frozenset(names),
        event_name_prefixes=tuple(prefixes),
        condition=condition,
        fallback=fallback,
        min_events=min_events,
    )


def _required_text(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        msg = f"{name} must be a non-empty string"
        raise _RuleInvalid(msg)

    return value


def _text_list(match: Mapping[str, Any], name: str) -> list[str]:
    value = match.get(name, [])
    if not isinstance(value, list) or not all(
        isinstance(entry, str) and entry for entry in value
    ):
        msg = f"match.{name} must be a list of non-empty strings"
        raise _RuleInvalid(msg)

    return list(value)


def _compile_condition(raw: object, where: str) -> _Check:
    if not isinstance(raw, dict) or len(raw) != 1:
        msg = f"{where} must be a mapping with exactly one operator"
        raise _RuleInvalid(msg)
    operator, argument = next(iter(raw.items()))
    here = f"{where}.{operator}"

    if operator in ("all", "any"):
        if not isinstance(argument, list) or not argument:
            msg = f"{here} must be a non-empty list of conditions"
            raise _RuleInvalid(msg)
        parts = [_compile_condition(part, here) for part in argument]
        combine = all if operator == "all" else any
        return lambda record: combine(part(record) for part in parts)
    if operator == "not":
        inner = _compile_condition(argument, here)
        return lambda record: not inner(record)
    if operator == "exists":
        if not isinstance(argument, str) or not argument:
            msg = f"{here} must be a field path"
            raise _RuleInvalid(msg)
        path = argument.split(".")
        return lambda record: any(
            value is not None for value in _values_at(record, path)
        )
    if operator in ("equals", "one_of", "not_one_of", "contains", "pattern"):
        return _compile_comparison(operator, argument, here)

    msg = f"{where}: unknown operator {operator!r}"
    raise _RuleInvalid(msg)


def _compile_comparison(operator: str, argument: object, here: str) -> _Check:
    wanted_key = {
        "equals": "value",
        "contains": "value",
        "one_of": "values",
        "not_one_of": "values",
        "pattern": "regex",
    }[operator]
    if not isinstance(argument, dict) or set(argument) != {"field", wanted_key}:
        msg = f"{here} needs exactly 'field' and '{wanted_key}'"
        raise _RuleInvalid(msg)
    field_path = argument["field"]
    if not isinstance(field_path, str) or not field_path:
        msg = f"{here}.field must be a field path"
        raise _RuleInvalid(msg)
    path = field_path.split(".")
    wanted = argument[wanted_key]

    if operator == "pattern":
        if not isinstance(wanted, str):
            msg = f"{here}.regex must be a string"
            raise _RuleInvalid(msg)
        try:
            regex = re.compile(wanted)
        except re.error as exc:
            msg = f"{here}.regex does not compile: {exc}"
            raise _RuleInvalid(msg) from None
        return lambda record: any(
            regex.search(text) for text in _strings_under(record, path)
        )
    if operator == "contains":
        if not isinstance(wanted, str) or not wanted:
            msg = f"{here}.value must be a non-empty string"
            raise _RuleInvalid(msg)
        needle = wanted.lower()
        return lambda record: any(
            needle in text.lower() for text in _strings_under(record, path)
        )
    if operator == "equals":
        if not _is_scalar(wanted):
            msg = f"{here}.value must be a string, number or boolean"
            raise _RuleInvalid(msg)
        target = _normalised(wanted)
        return lambda record: any(
            _normalised(value) == target for value in _values_at(record, path)
        )

    if not isinstance(wanted, list) or not all(_is_scalar(x) for x in wanted):
        msg = f"{here}.values must be a list of strings, numbers or booleans"
        raise _RuleInvalid(msg)
    targets = frozenset(_normalised(value) for value in wanted)
    if operator == "one_of":
        return lambda record: any(
            _normalised(value) in targets for value in _values_at(record, path)
        )

    def not_one_of(record: Mapping[str, Any]) -> bool:
        found = [
            _normalised(value)
            for value in _values_at(record, path)
            if _is_scalar(value)
        ]
        return bool(found) and not any(value in targets for value in found)

    return not_one_of


def _values_at(value: object, path: list[str]) -> list[object]:
    """Return the values at a dotted path, fanning out over lists on the way."""
    current: list[object] = [value]
    for part in path:
        following: list[object] = []
        for item in current:
            for element in item if isinstance(item, list) else [item]:
                if isinstance(element, dict) and part in element:
                    following.append(element[part])
        current = following
        if not current:
            return []
    flat: list[object] = []
    for item in current:
        flat.extend(item if isinstance(item, list) else [item])

    return flat


def _strings_under(value: object, path: list[str]) -> list[str]:
    found: list[str] = []
    stack = list(_values_at(value, path))
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)

    return found


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


def _normalised(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, int | float):
        return str(value)

    return value


def classify(
    record: Mapping[str, Any], rules: Iterable[TechniqueRule] | None = None
) -> list[str]:
    """Return the IDs of the rules a record matches, in rule-file order.

    A `fallback` rule applies only when no other rule matched. `min_events`
    thresholds are applied later, over the whole report (`apply_min_events`).
    """
    if rules is None or rules is load_rules():
        chosen = _packaged_rules_named(record.get("eventName"))
    else:
        chosen = tuple(rules)
    matched = [rule.id for rule in chosen if not rule.fallback and rule.matches(record)]
    if matched:
        return matched

    return [rule.id for rule in chosen if rule.fallback and rule.matches(record)]


# Most rules name their events: checking only the rules that can match an event
# name keeps classification linear in events, not in events times rules.
_NAMED_RULES: dict[str, tuple[TechniqueRule, ...]] = {}
_NAMED_RULES_MAX = 10_000


def _packaged_rules_named(name: object) -> tuple[TechniqueRule, ...]:
    """Return the packaged rules whose names or prefixes fit `name`, in order."""
    if not isinstance(name, str):
        return ()
    found = _NAMED_RULES.get(name)
    if found is None:
        found = tuple(rule for rule in load_rules() if rule.names_match(name))
        if len(_NAMED_RULES) < _NAMED_RULES_MAX:
            _NAMED_RULES[name] = found

    return found


def apply_min_events(
    events: list[dict[str, Any]], rules: Iterable[TechniqueRule] | None = None
) -> None:
    """Drop, from each event's `techniques`, rules that matched too few events.

    Mutates `events`. A rule with `min_events: N` names a technique only when
    at least N events of the report matched it (volume rules such as bulk S3
    reads).
    """
    chosen = load_rules() if rules is None else tuple(rules)
    tally = Counter(rule_id for event in events for rule_id in event["techniques"])
    too_few = {
        rule.id
        for rule in chosen
        if rule.min_events > 1 and tally[rule.id] < rule.min_events
    }
    if not too_few:
        return
    for event in events:
        event["techniques"] = [
            rule_id for rule_id in event["techniques"] if rule_id not in too_few
        ]


def summarise_techniques(
    events: Iterable[Mapping[str, Any]], rules: Iterable[TechniqueRule] | None = None
) -> list[dict[str, Any]]:
    """Return the report's `techniques` list from events carrying `techniques`.

    Ordered by tactic priority (`TACTIC_ORDER`), then techniques with a
    successful call before attempts only, then by first time and ID. Failed
    calls count in `events` and again in `failed`. `event_ids` holds up to 20
    IDs, successful calls first, each part in time order.
    """
    chosen = {rule.id: rule for rule in (load_rules() if rules is None else rules)}
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        for rule_id in event.get("techniques", []):
            grouped.setdefault(rule_id, []).append(event)

    entries: list[dict[str, Any]] = []
    for rule_id, matched in grouped.items():
        rule = chosen.get(rule_id)
        if rule is None:
            continue
        failed = [event for event in matched if event.get("error_code") is not None]
        succeeded = [event for event in matched if event.get("error_code") is None]
        times = sorted(event["time"] for event in matched if event.get("time"))
        event_ids = [
            event["event_id"]
            for event in [*succeeded, *failed]
            if isinstance(event.get("event_id"), str)
        ]
        entries.append(
            {
                "id": rule.id,
                "tactic": rule.tactic,
                "name": rule.name,
                "mitre": rule.mitre,
                "events": len(matched),
                "failed": len(failed),
                "first_at": times[0] if times else None,
                "event_ids": event_ids[:_MAX_TECHNIQUE_EVENT_IDS],
            }
        )

    entries.sort(
        key=lambda entry: (
            TACTIC_ORDER.index(entry["tactic"]),
            entry["failed"] == entry["events"],
            entry["first_at"] is None,
            entry["first_at"] or "",
            entry["id"],
        )
    )

    return entries


# --- left behind ------------------------------------------------------------


_LeftBehind = Callable[[Mapping[str, Any], Mapping[str, Any]], list[dict[str, Any]]]


def left_behind_of(
    record: Mapping[str, Any], event: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Return what a successful call created or changed that still needs a person.

    `event` is the record's shaped event (time, key, ID). A failed call, or a
    call that leaves nothing, gives an empty list. Each item names the AWS call
    that undoes it; `needs_decision` is true when undoing needs the owner's
    judgement (a previous trust policy to restore, instances that may hold work).
    """
    if record.get("errorCode"):
        return []
    name = record.get("eventName")
    if not isinstance(name, str):
        return []
    handler = _LEFT_BEHIND.get(_LAMBDA_VERSION.sub("", name))
    if handler is None:
        return []

    items = handler(record, _mapping(record.get("requestParameters")))
    for item in items:
        item["resource"] = _clip(item["resource"])
        item["undo"] = _clip(item["undo"])
        item["event_id"] = event.get("event_id")
        item["at"] = event.get("time")
        item["by_key"] = event.get("access_key_id")

    return items


def _item(
    kind: str, resource: str, undo: str, *, decide: bool = False
) -> dict[str, Any]:
    return {"kind": kind, "resource": resource, "undo": undo, "needs_decision": decide}


def _caller_user(record: Mapping[str, Any]) -> str:
    identity = _mapping(record.get("userIdentity"))

    return _str(identity.get("userName")) or "(the caller's user)"


def _create_user(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    user = _str(req.get("userName")) or "?"
    undo = (
        f"iam:DeleteUser UserName={user} (after deleting its access keys, login "
        "profile, policies and group memberships)"
    )

    return [_item("iam-user", user, undo)]


def _create_access_key(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    created = _mapping(_mapping(record.get("responseElements")).get("accessKey"))
    user = (
        _str(req.get("userName"))
        or _str(created.get("userName"))
        or _caller_user(record)
    )
    key = _str(created.get("accessKeyId")) or "?"
    undo = f"iam:DeleteAccessKey UserName={user} AccessKeyId={key}"

    return [_item("access-key", f"{user}/{key}", undo)]


def _login_profile(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    user = _str(req.get("userName")) or _caller_user(record)
    if record.get("eventName") == "UpdateLoginProfile":
        undo = (
            f"iam:DeleteLoginProfile UserName={user}, or reset the password with "
            "iam:UpdateLoginProfile PasswordResetRequired=true"
        )
        return [_item("login-profile", user, undo, decide=True)]

    return [_item("login-profile", user, f"iam:DeleteLoginProfile UserName={user}")]


def _create_role(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    role = _str(req.get("roleName")) or "?"
    undo = f"iam:DeleteRole RoleName={role} (after detaching and deleting its policies)"

    return [_item("iam-role", role, undo)]


def _trust_policy(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    role = _str(req.get("roleName")) or "?"
    undo = (
        f"iam:UpdateAssumeRolePolicy RoleName={role} PolicyDocument=<the trust "
        "policy before this change>"
    )

    return [_item("role-trust-policy", role, undo, decide=True)]


def _attach_policy(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    name = str(record.get("eventName"))
    principal_kind = name.removeprefix("Attach").removesuffix("Policy")
    principal_key = principal_kind.lower() + "Name"
    principal = _str(req.get(principal_key)) or "?"
    policy = _str(req.get("policyArn")) or "?"
    undo = (
        f"iam:Detach{principal_kind}Policy {principal_kind}Name={principal} "
        f"PolicyArn={policy}"
    )

    return [_item("policy", f"{principal_kind.lower()}/{principal}: {policy}", undo)]


def _put_policy(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    name = str(record.get("eventName"))
    principal_kind = name.removeprefix("Put").removesuffix("Policy")
    principal = _str(req.get(principal_kind.lower() + "Name")) or "?"
    policy = _str(req.get("policyName")) or "?"
    undo = (
        f"iam:Delete{principal_kind}Policy {principal_kind}Name={principal} "
        f"PolicyName={policy}"
    )

    return [_item("policy", f"{principal_kind.lower()}/{principal}: {policy}", undo)]


def _create_policy(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    policy = _mapping(_mapping(record.get("responseElements")).get("policy"))
    arn = _str(policy.get("arn")) or _str(req.get("policyName")) or "?"
    undo = f"iam:DeletePolicy PolicyArn={arn} (after detaching it everywhere)"

    return [_item("policy", arn, undo)]


def _policy_version(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    if record.get("eventName") == "CreatePolicyVersion" and not _truthy(
        req.get("setAsDefault")
    ):
        return []
    arn = _str(req.get("policyArn")) or "?"
    undo = (
        f"iam:SetDefaultPolicyVersion PolicyArn={arn} VersionId=<the previous default>"
    )

    return [_item("policy-version", arn, undo, decide=True)]


def _group_member(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    user = _str(req.get("userName")) or "?"
    group = _str(req.get("groupName")) or "?"
    undo = f"iam:RemoveUserFromGroup GroupName={group} UserName={user}"

    return [_item("group-membership", f"{group}: {user}", undo)]


def _stop_logging(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    trail = _str(req.get("name")) or "?"

    return [_item("trail-stopped", trail, f"cloudtrail:StartLogging Name={trail}")]


def _delete_trail(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    trail = _str(req.get("name")) or "?"
    undo = (
        f"cloudtrail:CreateTrail Name={trail} (with its previous bucket and settings)"
    )

    return [_item("trail-deleted", trail, undo, decide=True)]


def _trail_changed(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    trail = _str(req.get("trailName")) or _str(req.get("name")) or "?"
    call = str(record.get("eventName"))
    undo = f"cloudtrail:{call} TrailName={trail} (restore the previous settings)"

    return [_item("trail-modified", trail, undo, decide=True)]


def _flow_logs(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    ids = _strings_under(req, ["DeleteFlowLogsRequest", "FlowLogId"]) or _strings_under(
        req, ["flowLogIds"]
    )
    resource = ", ".join(ids) or "?"
    undo = "ec2:CreateFlowLogs (recreate the flow logs with their previous settings)"

    return [_item("flow-logs-deleted", resource, undo, decide=True)]


def _guardduty(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    detector = _str(req.get("detectorId")) or "?"
    if record.get("eventName") == "UpdateDetector":
        if not _is_false(req.get("enable")):
            return []
        undo = f"guardduty:UpdateDetector DetectorId={detector} Enable=true"
        return [_item("guardduty-disabled", detector, undo)]
    undo = "guardduty:CreateDetector Enable=true (findings of the deleted one are gone)"

    return [_item("guardduty-deleted", detector, undo, decide=True)]


def _dns_logs(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    config = _str(req.get("resolverQueryLogConfigId")) or "?"
    undo = (
        "route53resolver:CreateResolverQueryLogConfig (and associate it with the VPCs)"
    )

    return [_item("dns-query-logging-deleted", config, undo, decide=True)]


def _log_group(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    group = _str(req.get("logGroupName")) or "?"
    undo = f"logs:CreateLogGroup LogGroupName={group} (the deleted events are gone)"

    return [_item("log-group-deleted", group, undo, decide=True)]


def _organization(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    account = _str(record.get("recipientAccountId")) or "?"
    undo = "organizations:InviteAccountToOrganization (from the management account)"

    return [_item("organization-left", account, undo, decide=True)]


def _snapshot_share(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    return _ec2_share(
        req,
        kind="snapshot-share",
        permission="createVolumePermission",
        id_field="snapshotId",
        call="ec2:ModifySnapshotAttribute SnapshotId",
    )


def _image_share(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    return _ec2_share(
        req,
        kind="ami-share",
        permission="launchPermission",
        id_field="imageId",
        call="ec2:ModifyImageAttribute ImageId",
    )


def _ec2_share(
    req: Mapping[str, Any], *, kind: str, permission: str, id_field: str, call: str
) -> list[dict[str, Any]]:
    """Return the share an EC2 `Modify*Attribute` call added, with its undo."""
    added = _mapping(_mapping(req.get(permission)).get("add"))
    if not added:
        return []
    resource = _str(req.get(id_field)) or "?"
    targets = _share_targets(added)
    undo = (
        f"{call}={resource} Attribute={permission} OperationType=remove "
        f"{_share_args(targets)}"
    )

    return [_item(kind, f"{resource} shared with {_joined(targets)}", undo)]


def _db_snapshot_share(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    added = [
        str(value) for value in _values_at(req, ["valuesToAdd"]) if _is_scalar(value)
    ]
    if not added:
        return []
    cluster = record.get("eventName") == "ModifyDBClusterSnapshotAttribute"
    key = "dBClusterSnapshotIdentifier" if cluster else "dBSnapshotIdentifier"
    snapshot = _str(req.get(key)) or "?"
    call = (
        "ModifyDBClusterSnapshotAttribute" if cluster else "ModifyDBSnapshotAttribute"
    )
    parameter = "DBClusterSnapshotIdentifier" if cluster else "DBSnapshotIdentifier"
    undo = (
        f"rds:{call} {parameter}={snapshot} AttributeName=restore "
        f"ValuesToRemove={','.join(added)}"
    )

    return [
        _item("db-snapshot-share", f"{snapshot} shared with {_joined(added)}", undo)
    ]


def _ingress(record: Mapping[str, Any], req: Mapping[str, Any]) -> list[dict[str, Any]]:
    group = _str(req.get("groupId")) or _str(req.get("groupName")) or "?"
    response = _mapping(record.get("responseElements"))
    rule_ids = _strings_under(
        response, ["securityGroupRuleSet", "items", "securityGroupRuleId"]
    )
    ranges = sorted(
        {
            text
            for text in _strings_under(req, [])
            if re.match(r"^[0-9a-fA-F:.]+/\d{1,3}$", text)
        }
    )
    ports = _port_text(req)
    resource = f"{group} {ports} from {_joined(ranges)}"
    if rule_ids:
        undo = (
            f"ec2:RevokeSecurityGroupIngress GroupId={group} "
            f"SecurityGroupRuleIds={','.join(rule_ids)}"
        )
    else:
        undo = f"ec2:RevokeSecurityGroupIngress GroupId={group} (the same permissions)"

    return [_item("security-group-rule", resource, undo)]


def _port_text(req: Mapping[str, Any]) -> str:
    protocol = _str(req.get("ipProtocol")) or "?"
    low, high = req.get("fromPort"), req.get("toPort")
    if low is None and high is None:
        return protocol
    if low == high:
        return f"{protocol}/{low}"

    return f"{protocol}/{low}-{high}"


def _lambda(record: Mapping[str, Any], req: Mapping[str, Any]) -> list[dict[str, Any]]:
    name = _LAMBDA_VERSION.sub("", str(record.get("eventName")))
    function = _str(req.get("functionName")) or "?"
    if name == "CreateFunction":
        return [
            _item(
                "lambda-function",
                function,
                f"lambda:DeleteFunction FunctionName={function}",
            )
        ]
    if name == "AddPermission":
        statement = _str(req.get("statementId")) or "?"
        principal = _str(req.get("principal")) or "?"
        undo = (
            f"lambda:RemovePermission FunctionName={function} StatementId={statement}"
        )
        return [
            _item("lambda-permission", f"{function} invocable by {principal}", undo)
        ]
    if name == "UpdateFunctionCode":
        undo = (
            f"lambda:UpdateFunctionCode FunctionName={function} (redeploy the "
            "previous code)"
        )
        return [_item("lambda-code", function, undo, decide=True)]
    undo = (
        f"lambda:UpdateFunctionConfiguration FunctionName={function} (restore the "
        "previous layers, role and environment)"
    )

    return [_item("lambda-configuration", function, undo, decide=True)]


def _run_instances(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    response = _mapping(record.get("responseElements"))
    instances = _strings_under(response, ["instancesSet", "items", "instanceId"])
    instance_type = _str(req.get("instanceType")) or "?"
    resource = f"{_joined(sorted(instances))} ({instance_type})"
    undo = f"ec2:TerminateInstances InstanceIds={','.join(sorted(instances)) or '?'}"

    return [_item("ec2-instance", resource, undo, decide=True)]


def _user_data(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    if req.get("userData") is None:
        return []
    instance = _str(req.get("instanceId")) or "?"
    undo = (
        f"ec2:ModifyInstanceAttribute InstanceId={instance} UserData=<the previous "
        "user data> (the instance must be stopped)"
    )

    return [_item("instance-user-data", instance, undo, decide=True)]


def _bucket_policy(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    bucket = _str(req.get("bucketName")) or "?"
    undo = (
        f"s3:DeleteBucketPolicy Bucket={bucket}, or s3:PutBucketPolicy with the "
        "previous policy"
    )

    return [_item("bucket-policy", bucket, undo, decide=True)]


def _bucket_lifecycle(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    bucket = _str(req.get("bucketName")) or "?"
    undo = f"s3:DeleteBucketLifecycle Bucket={bucket} (or restore the previous rules)"

    return [_item("bucket-lifecycle", bucket, undo, decide=True)]


def _roles_anywhere(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    response = _mapping(record.get("responseElements"))
    if record.get("eventName") == "CreateTrustAnchor":
        anchor = _mapping(response.get("trustAnchor"))
        anchor_id = _str(anchor.get("trustAnchorId")) or "?"
        name = _str(req.get("name")) or anchor_id
        undo = f"rolesanywhere:DeleteTrustAnchor TrustAnchorId={anchor_id}"
        return [_item("rolesanywhere-trust-anchor", name, undo)]
    profile = _mapping(response.get("profile"))
    profile_id = _str(profile.get("profileId")) or "?"
    name = _str(req.get("name")) or profile_id
    undo = f"rolesanywhere:DeleteProfile ProfileId={profile_id}"

    return [_item("rolesanywhere-profile", name, undo)]


def _serial_console(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    account = _str(record.get("recipientAccountId")) or "?"
    region = _str(record.get("awsRegion")) or "?"
    undo = "ec2:DisableSerialConsoleAccess (in that region)"

    return [_item("serial-console-enabled", f"{account} {region}", undo)]


def _model_access(
    record: Mapping[str, Any], req: Mapping[str, Any]
) -> list[dict[str, Any]]:
    model = _str(req.get("modelId")) or "?"
    undo = f"bedrock:DeleteFoundationModelAgreement ModelId={model}"

    return [_item("model-access", model, undo, decide=True)]


_LEFT_BEHIND: dict[str, _LeftBehind] = {
    "CreateUser": _create_user,
    "CreateAccessKey": _create_access_key,
    "CreateLoginProfile": _login_profile,
    "UpdateLoginProfile": _login_profile,
    "CreateRole": _create_role,
    "UpdateAssumeRolePolicy": _trust_policy,
    "AttachUserPolicy": _attach_policy,
    "AttachRolePolicy": _attach_policy,
    "AttachGroupPolicy": _attach_policy,
    "PutUserPolicy": _put_policy,
    "PutRolePolicy": _put_policy,
    "PutGroupPolicy": _put_policy,
    "CreatePolicy": _create_policy,
    "CreatePolicyVersion": _policy_version,
    "SetDefaultPolicyVersion": _policy_version,
    "AddUserToGroup": _group_member,
    "StopLogging": _stop_logging,
    "DeleteTrail": _delete_trail,
    "UpdateTrail": _trail_changed,
    "PutEventSelectors": _trail_changed,
    "DeleteFlowLogs": _flow_logs,
    "DeleteDetector": _guardduty,
    "UpdateDetector": _guardduty,
    "DeleteResolverQueryLogConfig": _dns_logs,
    "DeleteLogGroup": _log_group,
    "LeaveOrganization": _organization,
    "ModifySnapshotAttribute": _snapshot_share,
    "ModifyImageAttribute": _image_share,
    "ModifyDBSnapshotAttribute": _db_snapshot_share,
    "ModifyDBClusterSnapshotAttribute": _db_snapshot_share,
    "AuthorizeSecurityGroupIngress": _ingress,
    "CreateFunction": _lambda,
    "UpdateFunctionCode": _lambda,
    "UpdateFunctionConfiguration": _lambda,
    "AddPermission": _lambda,
    "RunInstances": _run_instances,
    "ModifyInstanceAttribute": _user_data,
    "PutBucketPolicy": _bucket_policy,
    "PutBucketLifecycle": _bucket_lifecycle,
    "PutBucketLifecycleConfiguration": _bucket_lifecycle,
    "CreateTrustAnchor": _roles_anywhere,
    "CreateProfile": _roles_anywhere,
    "EnableSerialConsoleAccess": _serial_console,
    "CreateFoundationModelAgreement": _model_access,
}


def _share_targets(added: Mapping[str, Any]) -> list[str]:
    targets = []
    for item in _values_at(added, ["items"]):
        entry = _mapping(item)
        if _str(entry.get("userId")):
            targets.append(str(entry["userId"]))
        elif _str(entry.get("group")):
            targets.append("group:" + str(entry["group"]))

    return targets


def _share_args(targets: list[str]) -> str:
    users = [target for target in targets if not target.startswith("group:")]
    groups = [
        target.removeprefix("group:") for target in targets if target not in users
    ]
    parts = []
    if users:
        parts.append("UserIds=" + ",".join(users))
    if groups:
        parts.append("GroupNames=" + ",".join(groups))

    return " ".join(parts) or "UserIds=?"


# --- open items -------------------------------------------------------------


_CRITICAL_KINDS = frozenset(
    {
        "access-key",
        "iam-user",
        "login-profile",
        "role-trust-policy",
        "rolesanywhere-trust-anchor",
        "rolesanywhere-profile",
        "lambda-permission",
    }
)
_HIGH_KINDS = frozenset(
    {
        "policy",
        "policy-version",
        "iam-role",
        "group-membership",
        "trail-stopped",
        "trail-deleted",
        "trail-modified",
        "guardduty-deleted",
        "guardduty-disabled",
        "snapshot-share",
        "ami-share",
        "db-snapshot-share",
        "security-group-rule",
        "bucket-policy",
        "ec2-instance",
        "lambda-code",
        "lambda-configuration",
        "lambda-function",
    }
)


def open_items(
    *,
    derived_keys: Iterable[Mapping[str, Any]],
    left_behind: Iterable[Mapping[str, Any]],
    coverage: Mapping[str, Any],
    posture: Mapping[str, Any] | None,
    generated_at: datetime,
) -> list[dict[str, Any]]:
    """Return what a person must still do, most severe first.

    Role sessions that containment does not end and that had not expired at
    `generated_at`, sessions of unknown coverage, everything left behind
    (created keys first), incomplete coverage and the limits of an attached
    quarantine policy. It never states that every session was revoked.
    """
    items: list[dict[str, Any]] = []

    for key in derived_keys:
        if key["type"] == "long-term":
            continue  # its CreateAccessKey is in left_behind
        expires = parse_timestamp(key.get("expires_at"))
        if expires is not None and expires <= generated_at:
            continue
        if key["covered_by_containment"] is False:
            items.append(
                _open(
                    "critical",
                    f"Session {key['access_key_id']} is still usable: "
                    + key["coverage_note"],
                    key.get("event_id"),
                )
            )
        elif key["covered_by_containment"] is None:
            items.append(
                _open(
                    "high",
                    f"Check session {key['access_key_id']}: " + key["coverage_note"],
                    key.get("event_id"),
                )
            )

    for thing in left_behind:
        severity = (
            "critical"
            if thing["kind"] in _CRITICAL_KINDS
            else "high"
            if thing["kind"] in _HIGH_KINDS
            else "medium"
        )
        verb = "Decide on" if thing["needs_decision"] else "Undo"
        text = f"{verb} {thing['kind']} {thing['resource']}: {thing['undo']}"
        items.append(_open(severity, text, thing.get("event_id")))

    items.extend(_coverage_items(coverage))
    if posture:
        policy = posture.get("quarantine_policy")
        if isinstance(policy, str) and policy:
            note = posture.get("quarantine_note") or (
                "it does not deactivate the key and does not deny sts:AssumeRole, "
                "Secrets Manager or SSM"
            )
            items.append(
                _open(
                    "high", f"{policy} is attached but leaves work open: {note}", None
                )
            )

    rank = {"critical": 0, "high": 1, "medium": 2}

    return sorted(items, key=lambda item: rank[item["severity"]])


def _coverage_items(coverage: Mapping[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    missing = [
        *sorted(coverage.get("regions_incomplete") or {}),
        *sorted(coverage.get("sources_incomplete") or {}),
    ]
    files_failed = len(coverage.get("files_failed") or {})
    if missing or files_failed:
        text = "Events may be missing: not fully read: " + (", ".join(missing) or "-")
        if files_failed:
            text += f"; {files_failed} trail file(s) unreadable"
        items.append(_open("high", text + ".", None))
    if coverage.get("truncated"):
        items.append(_open("high", str(coverage.get("truncation_note")), None))
    if not coverage.get("data_events_visible"):
        items.append(
            _open(
                "medium",
                "Data events (S3 object reads, Lambda invocations) were not visible: "
                "read the trail files to see them.",
                None,
            )
        )

    return items


def _open(severity: str, text: str, event_id: str | None) -> dict[str, Any]:
    return {"severity": severity, "text": _clip(text), "event_id": event_id}


# --- small helpers ----------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return _clip(value) if isinstance(value, str) and value else None


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _is_false(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def _joined(values: list[str]) -> str:
    return ", ".join(values) or "?"


def _clip(text: str) -> str:
    if len(text) <= _MAX_TEXT:
        return text

    return text[:_MAX_TEXT] + "…[truncated]"


def _iso(moment: datetime | None) -> str | None:
    return isoformat_z(moment) if moment else None


def _time_key(value: object) -> tuple[bool, datetime]:
    moment = parse_timestamp(value)

    return (moment is None, moment or datetime.max.replace(tzinfo=UTC))


def _note_once(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)
