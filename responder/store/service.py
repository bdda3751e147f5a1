"""SQLite store for signals, incidents, steps, the audit trail and reports.

One connection, serialised by a lock: every public method is one short
transaction and is safe to call from any thread. Writes are durable (WAL with
`synchronous=FULL`) before a method returns, so an acknowledged signal survives a
crash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from responder._time import Clock, utcnow
from responder.store.models import (
    AuditEntry,
    Incident,
    IncidentStatus,
    Signal,
    SignalStatus,
    StepRecord,
    StepStatus,
    TimelineEntry,
)

__all__ = ["Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    access_key_id TEXT,
    incident_id TEXT REFERENCES incidents(id),
    details TEXT NOT NULL,
    lookup_attempts INTEGER NOT NULL DEFAULT 0,
    next_lookup_at TEXT,
    seen_count INTEGER NOT NULL DEFAULT 1,
    last_seen_at TEXT,
    UNIQUE (source, delivery_id)
);
CREATE INDEX IF NOT EXISTS signals_by_status ON signals(status);
CREATE INDEX IF NOT EXISTS signals_by_incident ON signals(incident_id);

CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    access_key_id TEXT NOT NULL,
    status TEXT NOT NULL,
    playbook TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    outcome TEXT,
    summary TEXT,
    account_id TEXT,
    user_name TEXT,
    key_type TEXT,
    contained_at TEXT,
    finished_at TEXT,
    signal_count INTEGER NOT NULL DEFAULT 1,
    severity TEXT NOT NULL DEFAULT 'high',
    approved_by TEXT,
    approved_at TEXT,
    last_signal_at TEXT,
    sightings INTEGER NOT NULL DEFAULT 1
);
-- One open (non dry-run) incident per key: the database, not the code, holds the line.
CREATE UNIQUE INDEX IF NOT EXISTS one_incident_per_key
    ON incidents(access_key_id) WHERE dry_run = 0;
CREATE INDEX IF NOT EXISTS incidents_by_status ON incidents(status);

CREATE TABLE IF NOT EXISTS steps (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    message TEXT,
    error_code TEXT,
    request_ids TEXT NOT NULL DEFAULT '[]',
    outputs TEXT NOT NULL DEFAULT '{}',
    checkpoint TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (incident_id, position)
);

CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    step TEXT NOT NULL,
    at TEXT NOT NULL,
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    region TEXT NOT NULL,
    target TEXT,
    request_id TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_incident ON audit(incident_id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;

CREATE TABLE IF NOT EXISTS timeline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    description TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_by_incident ON timeline(incident_id);

CREATE TABLE IF NOT EXISTS reports (
    incident_id TEXT PRIMARY KEY REFERENCES incidents(id),
    generated_at TEXT NOT NULL,
    body TEXT NOT NULL
);
"""

_UNFINISHED = (
    IncidentStatus.RECEIVED.value,
    IncidentStatus.RUNNING.value,
    IncidentStatus.AWAITING_APPROVAL.value,
)

# Columns added after the first release, with their definitions: an older
# database gets them at open.
_ADDED_COLUMNS = {
    "signals": {
        "seen_count": "INTEGER NOT NULL DEFAULT 1",
        "last_seen_at": "TEXT",
    },
    "incidents": {
        "severity": "TEXT NOT NULL DEFAULT 'high'",
        "approved_by": "TEXT",
        "approved_at": "TEXT",
        "last_signal_at": "TEXT",
        "sightings": "INTEGER NOT NULL DEFAULT 1",
    },
}

_INCIDENT_FIELDS = frozenset(
    {
        "status",
        "severity",
        "outcome",
        "summary",
        "account_id",
        "user_name",
        "key_type",
        "contained_at",
        "finished_at",
    }
)
_STEP_FIELDS = frozenset(
    {
        "status",
        "started_at",
        "finished_at",
        "message",
        "error_code",
        "request_ids",
        "outputs",
        "checkpoint",
    }
)


class Store:
    """Durable records of everything the responder received and did."""

    def __init__(self, path: Path | str, *, clock: Clock = utcnow) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30
        )
        if str(path) != ":memory:":
            # Incident records name people and keys: readable by us alone.
            self.path.chmod(0o600)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            present = {
                row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")
            }
            for name, definition in columns.items():
                if name not in present:
                    self._db.execute(
                        f"ALTER TABLE {table} ADD COLUMN {name} {definition}"
                    )

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # Signals

    def create_signal(
        self,
        *,
        source: str,
        delivery_id: str,
        kind: str,
        status: SignalStatus,
        reason: str,
        access_key_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> tuple[Signal, bool]:
        """Record a signal once per `(source, delivery_id)`.

        Returns:
            The stored signal and whether this call created it; a redelivery returns
            the first record and `False`, also when both arrive at the same time.
        """
        now = self._clock()
        signal_id = f"sig_{uuid.uuid4().hex[:16]}"
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO signals (id, source, delivery_id, received_at, kind,"
                " status, reason, access_key_id, details, next_lookup_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (source, delivery_id) DO NOTHING",
                (
                    signal_id,
                    _utf8(source),
                    _utf8(delivery_id),
                    _ts(now),
                    _utf8(kind),
                    status.value,
                    _utf8(reason),
                    access_key_id,
                    json.dumps(details or {}),
                    _ts(now) if status is SignalStatus.NEEDS_KEY_ID else None,
                ),
            )
            created = cursor.rowcount == 1
            row = db.execute(
                "SELECT * FROM signals WHERE source = ? AND delivery_id = ?",
                (_utf8(source), _utf8(delivery_id)),
            ).fetchone()

        return _signal(row), created

    def record_repeat(
        self, *, signal_id: str, details: dict[str, Any]
    ) -> tuple[Signal, Incident | None]:
        """Count one more sighting of a stored signal and merge its new details.

        Returns:
            The updated signal and its incident (also updated), if it has one.
        """
        now = _ts(self._clock())
        with self._tx() as db:
            row = db.execute(
                "SELECT details, incident_id FROM signals WHERE id = ?", (signal_id,)
            ).fetchone()
            merged = {**json.loads(row["details"]), **details}
            db.execute(
                "UPDATE signals SET details = ?, seen_count = seen_count + 1,"
                " last_seen_at = ? WHERE id = ?",
                (json.dumps(merged), now, signal_id),
            )
            incident_row = None
            if row["incident_id"]:
                db.execute(
                    "UPDATE incidents SET sightings = sightings + 1,"
                    " last_signal_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, row["incident_id"]),
                )
                incident_row = db.execute(
                    "SELECT * FROM incidents WHERE id = ?", (row["incident_id"],)
                ).fetchone()
            signal_row = db.execute(
                "SELECT * FROM signals WHERE id = ?", (signal_id,)
            ).fetchone()

        return _signal(signal_row), _incident(incident_row) if incident_row else None

    def get_signal(self, *, signal_id: str) -> Signal | None:
        """Return the signal with this ID, or `None`."""
        row = self._one("SELECT * FROM signals WHERE id = ?", (signal_id,))

        return _signal(row) if row else None

    def list_signals(self, *, incident_id: str | None = None) -> list[Signal]:
        """Return signals, oldest first; only those of one incident if given."""
        if incident_id is None:
            rows = self._all("SELECT * FROM signals ORDER BY received_at, id", ())
        else:
            rows = self._all(
                "SELECT * FROM signals WHERE incident_id = ? ORDER BY received_at, id",
                (incident_id,),
            )

        return [_signal(row) for row in rows]

    def list_signals_needing_key(
        self, *, due_before: datetime | None = None
    ) -> list[Signal]:
        """Return signals whose key ID is still unknown, due for a lookup."""
        sql = "SELECT * FROM signals WHERE status = ?"
        params: tuple[Any, ...] = (SignalStatus.NEEDS_KEY_ID.value,)
        if due_before is not None:
            sql += " AND (next_lookup_at IS NULL OR next_lookup_at <= ?)"
            params += (_ts(due_before),)

        return [
            _signal(row) for row in self._all(sql + " ORDER BY received_at", params)
        ]

    def update_signal(
        self,
        *,
        signal_id: str,
        status: SignalStatus | None = None,
        reason: str | None = None,
        access_key_id: str | None = None,
        lookup_attempts: int | None = None,
        next_lookup_at: datetime | None = None,
    ) -> Signal:
        """Change a signal's lookup state and return it."""
        changes: dict[str, Any] = {
            "status": status.value if status else None,
            "reason": _utf8(reason) if reason is not None else None,
            "access_key_id": access_key_id,
            "lookup_attempts": lookup_attempts,
            "next_lookup_at": _ts(next_lookup_at) if next_lookup_at else None,
        }
        changes = {key: value for key, value in changes.items() if value is not None}
        with self._tx() as db:
            if changes:
                assignments = ", ".join(f"{key} = ?" for key in changes)
                db.execute(
                    f"UPDATE signals SET {assignments} WHERE id = ?",  # noqa: S608
                    (*changes.values(), signal_id),
                )
            row = db.execute(
                "SELECT * FROM signals WHERE id = ?", (signal_id,)
            ).fetchone()

        return _signal(row)

    # Incidents

    def attach_signal(
        self,
        *,
        signal_id: str,
        access_key_id: str,
        playbook: str,
        dry_run: bool,
    ) -> tuple[Incident, bool]:
        """Attach a signal to the key's incident, opening one if there is none.

        Returns:
            The incident and whether this call opened it. Signals for a key that
            already has an incident join it, so one key never gets two responses.
        """
        now = self._clock()
        with self._tx() as db:
            row = None
            if not dry_run:
                row = db.execute(
                    "SELECT * FROM incidents WHERE access_key_id = ? AND dry_run = 0",
                    (access_key_id,),
                ).fetchone()
            created = row is None
            if created:
                incident_id = f"inc_{uuid.uuid4().hex[:16]}"
                db.execute(
                    "INSERT INTO incidents (id, access_key_id, status, playbook,"
                    " dry_run, created_at, updated_at, last_signal_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        incident_id,
                        access_key_id,
                        IncidentStatus.RECEIVED.value,
                        playbook,
                        int(dry_run),
                        _ts(now),
                        _ts(now),
                        _ts(now),
                    ),
                )
            else:
                assert row is not None
                incident_id = str(row["id"])
                db.execute(
                    "UPDATE incidents SET signal_count = signal_count + 1,"
                    " sightings = sightings + 1, last_signal_at = ?, updated_at = ?"
                    " WHERE id = ?",
                    (_ts(now), _ts(now), incident_id),
                )
            db.execute(
                "UPDATE signals SET incident_id = ?, access_key_id = ?, status = ?"
                " WHERE id = ?",
                (incident_id, access_key_id, SignalStatus.ACCEPTED.value, signal_id),
            )
            row = db.execute(
                "SELECT * FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()

        return _incident(row), created

    def get_incident(self, *, incident_id: str) -> Incident | None:
        """Return the incident with this ID, or `None`."""
        row = self._one("SELECT * FROM incidents WHERE id = ?", (incident_id,))

        return _incident(row) if row else None

    def list_incidents(
        self, *, status: IncidentStatus | None = None, limit: int = 100
    ) -> list[Incident]:
        """Return incidents, newest first."""
        if status is None:
            rows = self._all(
                "SELECT * FROM incidents ORDER BY created_at DESC, id LIMIT ?", (limit,)
            )
        else:
            rows = self._all(
                "SELECT * FROM incidents WHERE status = ?"
                " ORDER BY created_at DESC, id LIMIT ?",
                (status.value, limit),
            )

        return [_incident(row) for row in rows]

    def approve_incident(self, *, incident_id: str, approver: str) -> Incident | None:
        """Record an approval of an incident that waits for one.

        Returns:
            The incident, back in `received` so its playbook goes on; `None` when it
            was not awaiting approval (approving twice changes nothing).
        """
        now = _ts(self._clock())
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE incidents SET status = ?, approved_by = ?, approved_at = ?,"
                " updated_at = ? WHERE id = ? AND status = ?",
                (
                    IncidentStatus.RECEIVED.value,
                    approver,
                    now,
                    now,
                    incident_id,
                    IncidentStatus.AWAITING_APPROVAL.value,
                ),
            )
            if cursor.rowcount != 1:
                return None
            row = db.execute(
                "SELECT * FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()

        return _incident(row)

    def reopen_incident(
        self, *, incident_id: str, positions: list[int]
    ) -> Incident | None:
        """Put a finished incident back to `received` and its given steps to pending.

        Returns:
            The reopened incident, or `None` if it was not finished (a concurrent
            reopen, or a run still going), so one reopen wins.
        """
        now = _ts(self._clock())
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE incidents SET status = ?, outcome = NULL, finished_at = NULL,"
                " updated_at = ? WHERE id = ? AND status NOT IN (?, ?, ?)",
                (IncidentStatus.RECEIVED.value, now, incident_id, *_UNFINISHED),
            )
            if cursor.rowcount != 1:
                return None
            db.executemany(
                "UPDATE steps SET status = ?, started_at = NULL, finished_at = NULL,"
                " message = NULL, error_code = NULL WHERE incident_id = ?"
                " AND position = ?",
                [
                    (StepStatus.PENDING.value, incident_id, position)
                    for position in positions
                ],
            )
            row = db.execute(
                "SELECT * FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()

        return _incident(row)

    def list_unfinished_incidents(self) -> list[Incident]:
        """Return incidents whose playbook has not finished, oldest first."""
        rows = self._all(
            "SELECT * FROM incidents WHERE status IN (?, ?) ORDER BY created_at",
            (IncidentStatus.RECEIVED.value, IncidentStatus.RUNNING.value),
        )

        return [_incident(row) for row in rows]

    def update_incident(self, *, incident_id: str, **changes: Any) -> Incident:
        """Set the given fields of an incident and return it."""
        unknown = set(changes) - _INCIDENT_FIELDS
        if unknown:
            msg = f"not incident fields: {sorted(unknown)}"
            raise TypeError(msg)
        values = {key: _column(value) for key, value in changes.items()}
        values["updated_at"] = _ts(self._clock())
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self._tx() as db:
            db.execute(
                f"UPDATE incidents SET {assignments} WHERE id = ?",  # noqa: S608
                (*values.values(), incident_id),
            )
            row = db.execute(
                "SELECT * FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()

        return _incident(row)

    # Steps

    def ensure_steps(
        self, *, incident_id: str, steps: list[tuple[str, str]]
    ) -> list[StepRecord]:
        """Create pending records for `(name, action)` steps unless they exist."""
        with self._tx() as db:
            for position, (name, action) in enumerate(steps):
                db.execute(
                    "INSERT INTO steps (incident_id, position, name, action, status)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (incident_id, position, name, action, StepStatus.PENDING.value),
                )

        return self.list_steps(incident_id=incident_id)

    def list_steps(self, *, incident_id: str) -> list[StepRecord]:
        """Return an incident's steps in playbook order."""
        rows = self._all(
            "SELECT * FROM steps WHERE incident_id = ? ORDER BY position",
            (incident_id,),
        )

        return [_step(row) for row in rows]

    def update_step(self, *, incident_id: str, position: int, **changes: Any) -> None:
        """Set the given fields of one step record."""
        unknown = set(changes) - _STEP_FIELDS
        if unknown:
            msg = f"not step fields: {sorted(unknown)}"
            raise TypeError(msg)
        values = {key: _column(value) for key, value in changes.items()}
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self._tx() as db:
            db.execute(
                f"UPDATE steps SET {assignments}"  # noqa: S608
                " WHERE incident_id = ? AND position = ?",
                (*values.values(), incident_id, position),
            )

    # Audit trail and timeline

    def append_audit(
        self,
        *,
        incident_id: str,
        step: str,
        service: str,
        operation: str,
        region: str,
        target: str | None,
        request_id: str | None,
        outcome: str,
    ) -> None:
        """Append one AWS call that changed, or tried to change, something."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit (incident_id, step, at, service, operation, region,"
                " target, request_id, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    incident_id,
                    step,
                    _ts(self._clock()),
                    service,
                    operation,
                    region,
                    target,
                    request_id,
                    outcome,
                ),
            )

    def list_audit(self, *, incident_id: str) -> list[AuditEntry]:
        """Return an incident's audit trail in order."""
        rows = self._all(
            "SELECT * FROM audit WHERE incident_id = ? ORDER BY id", (incident_id,)
        )

        return [
            AuditEntry(
                id=row["id"],
                incident_id=row["incident_id"],
                step=row["step"],
                at=datetime.fromisoformat(row["at"]),
                service=row["service"],
                operation=row["operation"],
                region=row["region"],
                target=row["target"],
                request_id=row["request_id"],
                outcome=row["outcome"],
            )
            for row in rows
        ]

    def add_timeline(
        self,
        *,
        incident_id: str,
        event: str,
        description: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an entry to the incident's timeline."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO timeline (incident_id, at, event, description, details)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    incident_id,
                    _ts(self._clock()),
                    event,
                    _utf8(description),
                    json.dumps(details or {}),
                ),
            )

    def list_timeline(self, *, incident_id: str) -> list[TimelineEntry]:
        """Return the incident's timeline in order."""
        rows = self._all(
            "SELECT * FROM timeline WHERE incident_id = ? ORDER BY id", (incident_id,)
        )

        return [
            TimelineEntry(
                id=row["id"],
                incident_id=row["incident_id"],
                at=datetime.fromisoformat(row["at"]),
                event=row["event"],
                description=row["description"],
                details=json.loads(row["details"]),
            )
            for row in rows
        ]

    # Reports

    def save_report(self, *, incident_id: str, report: dict[str, Any]) -> None:
        """Store (or replace) the incident's report."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO reports (incident_id, generated_at, body) VALUES (?, ?, ?)"
                " ON CONFLICT (incident_id) DO UPDATE SET"
                " generated_at = excluded.generated_at, body = excluded.body",
                (incident_id, _ts(self._clock()), json.dumps(report)),
            )

    def get_report(self, *, incident_id: str) -> dict[str, Any] | None:
        """Return the incident's report, or `None` if none was built yet."""
        row = self._one(
            "SELECT body FROM reports WHERE incident_id = ?", (incident_id,)
        )
        if row is None:
            return None
        report: dict[str, Any] = json.loads(row["body"])

        return report

    def _one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()

        return row

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


def _utf8(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"), which SQLite cannot store as
    # UTF-8: keep them visible as escapes instead of failing the request.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _ts(moment: datetime) -> str:
    # Stored as fixed-width UTC ISO text, so string order is time order.
    if moment.tzinfo is None:
        msg = "naive datetime: every timestamp in the store must be aware"
        raise ValueError(msg)

    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _column(value: Any) -> Any:
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    if hasattr(value, "value"):
        return value.value

    return value


def _signal(row: sqlite3.Row) -> Signal:
    return Signal(
        id=row["id"],
        source=row["source"],
        delivery_id=row["delivery_id"],
        received_at=_dt(row["received_at"]),  # type: ignore[arg-type]
        kind=row["kind"],
        status=SignalStatus(row["status"]),
        reason=row["reason"],
        access_key_id=row["access_key_id"],
        incident_id=row["incident_id"],
        details=json.loads(row["details"]),
        lookup_attempts=row["lookup_attempts"],
        next_lookup_at=_dt(row["next_lookup_at"]),
        seen_count=row["seen_count"],
        last_seen_at=_dt(row["last_seen_at"]),
    )


def _incident(row: sqlite3.Row) -> Incident:
    return Incident(
        id=row["id"],
        access_key_id=row["access_key_id"],
        status=IncidentStatus(row["status"]),
        playbook=row["playbook"],
        dry_run=bool(row["dry_run"]),
        created_at=_dt(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_dt(row["updated_at"]),  # type: ignore[arg-type]
        outcome=row["outcome"],
        summary=row["summary"],
        account_id=row["account_id"],
        user_name=row["user_name"],
        key_type=row["key_type"],
        contained_at=_dt(row["contained_at"]),
        finished_at=_dt(row["finished_at"]),
        signal_count=row["signal_count"],
        severity=row["severity"],
        approved_by=row["approved_by"],
        approved_at=_dt(row["approved_at"]),
        last_signal_at=_dt(row["last_signal_at"]),
        sightings=row["sightings"],
    )


def _step(row: sqlite3.Row) -> StepRecord:
    return StepRecord(
        incident_id=row["incident_id"],
        position=row["position"],
        name=row["name"],
        action=row["action"],
        status=StepStatus(row["status"]),
        started_at=_dt(row["started_at"]),
        finished_at=_dt(row["finished_at"]),
        message=row["message"],
        error_code=row["error_code"],
        request_ids=json.loads(row["request_ids"]),
        outputs=json.loads(row["outputs"]),
        checkpoint=json.loads(row["checkpoint"]),
    )
