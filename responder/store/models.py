"""Records the store keeps: signals, incidents, steps, audit entries, timeline."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "TERMINAL_STATUSES",
    "AuditEntry",
    "Incident",
    "IncidentStatus",
    "Signal",
    "SignalStatus",
    "StepRecord",
    "StepStatus",
    "TimelineEntry",
]


class SignalStatus(StrEnum):
    """What became of a signal."""

    ACCEPTED = "accepted"  # names a key; attached to an incident
    IGNORED = "ignored"  # recorded, not acted on (the reason says why)
    NEEDS_KEY_ID = "needs_key_id"  # the key ID is still being looked up
    NEEDS_PERSON = "needs_person"  # the signal names no key ID: a person must find it


class IncidentStatus(StrEnum):
    """Where an incident stands; the last five are final."""

    RECEIVED = "received"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"  # a person must approve the next step
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    NOT_ACTIONABLE = "not_actionable"
    ESCALATED = "escalated"  # only a person can act (a root key)


TERMINAL_STATUSES = frozenset(
    {
        IncidentStatus.COMPLETED,
        IncidentStatus.PARTIAL,
        IncidentStatus.FAILED,
        IncidentStatus.NOT_ACTIONABLE,
        IncidentStatus.ESCALATED,
    }
)


class StepStatus(StrEnum):
    """Where one playbook step stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"  # could not be done safely; a person must act
    PLANNED = "planned"  # dry run: what the step would have done
    AWAITING_APPROVAL = "awaiting_approval"  # waits for POST .../approve


@dataclass(frozen=True)
class Signal:
    """One exposure signal as received; never holds a secret value."""

    id: str
    source: str
    delivery_id: str
    received_at: datetime
    kind: str
    status: SignalStatus
    reason: str
    access_key_id: str | None
    incident_id: str | None
    details: dict[str, Any]
    lookup_attempts: int = 0
    next_lookup_at: datetime | None = None
    seen_count: int = 1
    last_seen_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_json(self)


@dataclass(frozen=True)
class Incident:
    """The response to one exposed key."""

    id: str
    access_key_id: str
    status: IncidentStatus
    playbook: str
    dry_run: bool
    created_at: datetime
    updated_at: datetime
    outcome: str | None = None
    summary: str | None = None
    account_id: str | None = None
    user_name: str | None = None
    key_type: str | None = None
    contained_at: datetime | None = None
    finished_at: datetime | None = None
    signal_count: int = 1
    severity: str = "high"
    approved_by: str | None = None
    approved_at: datetime | None = None
    last_signal_at: datetime | None = None
    sightings: int = 1

    @property
    def is_final(self) -> bool:
        """Return whether the playbook has finished for this incident."""
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_json(self)


@dataclass(frozen=True)
class StepRecord:
    """One step of an incident's playbook, as recorded."""

    incident_id: str
    position: int
    name: str
    action: str
    status: StepStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None
    error_code: str | None = None
    request_ids: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, without the internal checkpoint."""
        data = _as_json(self)
        data.pop("checkpoint")

        return data


@dataclass(frozen=True)
class AuditEntry:
    """One AWS call that changed something (or tried to)."""

    id: int
    incident_id: str
    step: str
    at: datetime
    service: str
    operation: str
    region: str
    target: str | None
    request_id: str | None
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_json(self)


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to an incident, for the people responding to it."""

    id: int
    incident_id: str
    at: datetime
    event: str
    description: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_json(self)


def _as_json(record: Any) -> dict[str, Any]:
    data: dict[str, Any] = _jsonable(asdict(record))

    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]

    return value
