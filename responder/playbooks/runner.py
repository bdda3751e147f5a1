"""Run a playbook for an incident, step by step, resumable after a crash."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from responder._time import Clock, utcnow
from responder.aws.accounts import AccountRouter
from responder.aws.actions import REGISTRY, ActionContext, StepResult
from responder.aws.actions.sts import AccessKeyResolve
from responder.aws.session import AwsGateway
from responder.config import Settings
from responder.exceptions import AwsCallFailed, ResponderError
from responder.playbooks.models import Playbook, StepSpec
from responder.store.models import Incident, IncidentStatus, StepRecord, StepStatus
from responder.store.service import Store

__all__ = ["PlaybookRunner", "StepCallback"]

log = structlog.get_logger(__name__)

StepCallback = Callable[[StepRecord], None]
RelatedKeyHook = Callable[[str, str], str | None]

# Halts that only a person can act on: the incident is escalated, not dropped.
_ESCALATED_OUTCOMES = frozenset({"root_key", "root_session"})

_DONE = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.BLOCKED, StepStatus.PLANNED}
)


class PlaybookRunner:
    """Runs incidents' playbooks; one run per incident at a time, per process.

    Step records are written before and after every step, so a run killed at any
    point resumes from them: finished steps are not repeated, and a step that was
    running is run again (every action is idempotent, or uses its checkpoint).
    """

    def __init__(
        self,
        *,
        store: Store,
        gateway: AwsGateway,
        settings: Settings,
        playbooks: dict[str, Playbook],
        clock: Clock = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        accounts: AccountRouter | None = None,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.settings = settings
        self.playbooks = playbooks
        self.accounts = accounts or AccountRouter(settings=settings, home=gateway)
        self.open_related: RelatedKeyHook | None = None
        self._clock = clock
        self._sleep = sleep
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._memory: dict[str, dict[str, Any]] = {}

    def run(self, incident_id: str, *, on_step: StepCallback | None = None) -> Incident:
        """Run (or resume) the incident's playbook to the end and return it."""
        with self._locks_guard:
            lock = self._locks.setdefault(incident_id, threading.Lock())
        with lock, structlog.contextvars.bound_contextvars(incident_id=incident_id):
            return self._run_locked(incident_id, on_step)

    def _run_locked(self, incident_id: str, on_step: StepCallback | None) -> Incident:
        incident = self.store.get_incident(incident_id=incident_id)
        if incident is None:
            msg = f"no incident {incident_id}"
            raise LookupError(msg)
        if incident.is_final:
            return incident
        playbook = self.playbooks[incident.playbook]
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(
            playbook=playbook.name,
            access_key_id=incident.access_key_id,
            dry_run=incident.dry_run,
        )
        log.debug("playbook_started", resumed=incident.status is IncidentStatus.RUNNING)

        records = self.store.ensure_steps(
            incident_id=incident_id,
            steps=[(spec.name, spec.action) for spec in playbook.steps],
        )
        incident = self.store.update_incident(
            incident_id=incident_id, status=IncidentStatus.RUNNING
        )
        memory = self._memory.setdefault(incident_id, {})
        records = self._reopen_volatile(playbook, records, memory)

        halt_reason: tuple[str, str] | None = _recorded_halt(records)
        for spec, record in zip(playbook.steps, records, strict=True):
            if record.status in _DONE or record.status is StepStatus.FAILED:
                continue
            incident = self.store.get_incident(incident_id=incident_id) or incident
            current = self.store.list_steps(incident_id=incident_id)
            statuses = {r.name: r.status for r in current}
            skip = _skip_reason(spec, statuses, halt_reason, incident.dry_run)
            if skip is not None:
                self._finish(record, StepResult(StepStatus.SKIPPED, skip), on_step)
                continue

            outputs = {r.name: r.outputs for r in current if r.status in _DONE}
            wait = self._approval_needed(incident, spec, outputs)
            if wait is not None:
                return self._await_approval(incident, record, wait, started)
            result = self._run_step(incident, spec, record, memory, outputs)
            self._finish(record, result, on_step)
            if result.halt is not None:
                halt_reason = (result.halt.outcome, result.halt.reason)
            if spec.action == AccessKeyResolve.name:
                # The owner goes on the incident, also when resolve ended the run.
                self.store.update_incident(
                    incident_id=incident_id,
                    account_id=result.outputs.get("account_id"),
                    user_name=result.outputs.get("user_name"),
                    key_type=result.outputs.get("key_type"),
                )

        final = self._conclude(incident_id, playbook, halt_reason)
        self._memory.pop(incident_id, None)
        log.info(
            "playbook_finished",
            status=final.status.value,
            outcome=final.outcome,
            steps=len(playbook.steps),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

        return final

    def _approval_needed(
        self,
        incident: Incident,
        spec: StepSpec,
        outputs: dict[str, dict[str, Any]],
    ) -> str | None:
        """Return why this step must wait for a person, or `None` to run it now."""
        if incident.dry_run or incident.approved_at is not None:
            return None
        action = REGISTRY[spec.action]
        required = spec.approval
        if required is None:
            required = action.approval_by_default
        if required:
            return f"step {spec.name} ({spec.action}) needs a person's approval"
        protected = outputs.get("resolve", {}).get("protected")
        if protected and action.mutates and spec.approval is not False:
            return f"{protected}: a person must approve step {spec.name}"

        return None

    def _await_approval(
        self, incident: Incident, record: StepRecord, reason: str, started: float
    ) -> Incident:
        self.store.update_step(
            incident_id=incident.id,
            position=record.position,
            status=StepStatus.AWAITING_APPROVAL,
            message=reason,
        )
        waiting = self.store.update_incident(
            incident_id=incident.id,
            status=IncidentStatus.AWAITING_APPROVAL,
            summary=f"waiting for approval: {reason}",
        )
        self.store.add_timeline(
            incident_id=incident.id,
            event="approval_needed",
            description=reason,
            details={"step": record.name},
        )
        self._memory.pop(incident.id, None)
        log.warning(
            "playbook_awaiting_approval",
            step=record.name,
            reason=reason,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

        return waiting

    def _reopen_volatile(
        self,
        playbook: Playbook,
        records: list[StepRecord],
        memory: dict[str, Any],
    ) -> list[StepRecord]:
        """Rerun volatile steps whose in-memory result died with an earlier process."""
        reopened = False
        for index, (spec, record) in enumerate(
            zip(playbook.steps, records, strict=True)
        ):
            action = REGISTRY[spec.action]
            if not action.volatile or record.status is not StepStatus.SUCCEEDED:
                continue
            consumers = [
                later
                for later, later_record in zip(
                    playbook.steps[index + 1 :], records[index + 1 :], strict=True
                )
                if spec.name in later.needs and later_record.status not in _DONE
            ]
            if consumers and not memory:
                log.warning("volatile_step_reopened", step=spec.name)
                self.store.update_step(
                    incident_id=record.incident_id,
                    position=record.position,
                    status=StepStatus.PENDING,
                )
                reopened = True

        return (
            self.store.list_steps(incident_id=records[0].incident_id)
            if reopened
            else records
        )

    def _run_step(
        self,
        incident: Incident,
        spec: StepSpec,
        record: StepRecord,
        memory: dict[str, Any],
        outputs: dict[str, dict[str, Any]],
    ) -> StepResult:
        action_cls = REGISTRY[spec.action]
        action = action_cls(action_cls.Options.model_validate(spec.options))
        gateway = self.gateway
        if incident.account_id and self.accounts.is_managed(incident.account_id):
            gateway = self.accounts.gateway_for(incident.account_id)
        ctx = ActionContext(
            incident=incident,
            step_name=spec.name,
            position=record.position,
            settings=self.settings,
            gateway=gateway,
            store=self.store,
            dry_run=incident.dry_run,
            outputs=outputs,
            memory=memory,
            previous_outputs=dict(record.outputs),
            checkpoint_state=dict(record.checkpoint),
            now=self._clock,
            sleep=self._sleep,
            accounts=self.accounts,
            open_related=self.open_related,
        )
        self.store.update_step(
            incident_id=incident.id,
            position=record.position,
            status=StepStatus.RUNNING,
            started_at=self._clock(),
        )
        started = time.perf_counter()

        with structlog.contextvars.bound_contextvars(
            step=spec.name, action=spec.action
        ):
            try:
                result = action.run(ctx)
            except AwsCallFailed as exc:
                result = StepResult(
                    StepStatus.FAILED, str(exc), error_code=exc.error_code
                )
            except ResponderError as exc:
                result = StepResult(
                    StepStatus.FAILED, str(exc), error_code=type(exc).__name__
                )
            except Exception:
                log.exception("step_crashed")
                result = StepResult(
                    StepStatus.FAILED,
                    "internal error in the responder (see its logs)",
                    error_code="InternalError",
                )
            result_log = log.error if result.status is StepStatus.FAILED else log.info
            result_log(
                "step_finished",
                status=result.status.value,
                error_code=result.error_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                aws_requests=len(ctx.request_ids),
            )
        result.request_ids = ctx.request_ids

        return result

    def _finish(
        self, record: StepRecord, result: StepResult, on_step: StepCallback | None
    ) -> None:
        self.store.update_step(
            incident_id=record.incident_id,
            position=record.position,
            status=result.status,
            finished_at=self._clock(),
            message=result.message,
            error_code=result.error_code,
            request_ids=result.request_ids,
            outputs=result.outputs,
        )
        self.store.add_timeline(
            incident_id=record.incident_id,
            event=f"step_{result.status.value}",
            description=f"{record.name}: {result.message}",
            details={"step": record.name, "error_code": result.error_code},
        )
        if on_step is not None:
            finished = [
                r
                for r in self.store.list_steps(incident_id=record.incident_id)
                if r.position == record.position
            ]
            on_step(finished[0])

    def _conclude(
        self, incident_id: str, playbook: Playbook, halt: tuple[str, str] | None
    ) -> Incident:
        records = self.store.list_steps(incident_id=incident_id)
        incident = self.store.get_incident(incident_id=incident_id)
        assert incident is not None
        by_name = dict(zip([s.name for s in playbook.steps], records, strict=True))
        critical_failed = [
            spec.name
            for spec in playbook.steps
            if spec.critical and by_name[spec.name].status is StepStatus.FAILED
        ]
        not_done = [
            f"{r.name} ({r.status.value}: {r.message})"
            for r in records
            if r.status not in {StepStatus.SUCCEEDED, StepStatus.PLANNED}
            and not r.outputs.get("not_applicable")
        ]

        severity = incident.severity
        if halt is not None and halt[0] in _ESCALATED_OUTCOMES:
            status, outcome, summary = IncidentStatus.ESCALATED, halt[0], halt[1]
            severity = "critical"
        elif halt is not None:
            status, outcome, summary = IncidentStatus.NOT_ACTIONABLE, halt[0], halt[1]
        elif critical_failed:
            status = IncidentStatus.FAILED
            outcome = "not_contained"
            summary = "the key is NOT contained: " + "; ".join(not_done)
        elif incident.dry_run:
            status, outcome = IncidentStatus.COMPLETED, "dry_run"
            summary = "dry run: nothing was changed in AWS"
        elif not not_done and incident.access_key_id.startswith("ASIA"):
            status, outcome = IncidentStatus.COMPLETED, "sessions_revoked"
            summary = "temporary key contained: " + "; ".join(
                str(r.message)
                for r in records
                if r.status is StepStatus.SUCCEEDED and REGISTRY[r.action].mutates
            )
        elif not not_done:
            status, outcome = IncidentStatus.COMPLETED, "contained_and_rotated"
            summary = "key contained, sessions revoked, replacement stored"
        else:
            status = IncidentStatus.PARTIAL
            blocked = any(r.status is StepStatus.BLOCKED for r in records)
            outcome = "contained_rotation_blocked" if blocked else "contained_with_gaps"
            summary = "key contained; not done: " + "; ".join(not_done)

        final = self.store.update_incident(
            incident_id=incident_id,
            status=status,
            outcome=outcome,
            summary=summary,
            severity=severity,
            finished_at=self._clock(),
        )
        self.store.add_timeline(
            incident_id=incident_id,
            event=f"incident_{status.value}",
            description=summary,
            details={"outcome": outcome},
        )

        return final


def _recorded_halt(records: list[StepRecord]) -> tuple[str, str] | None:
    """Return a halt an earlier run already recorded (its outputs say why)."""
    for record in records:
        outcome = record.outputs.get("not_actionable")
        if record.status is StepStatus.SUCCEEDED and outcome:
            return str(outcome), record.message or outcome

    return None


def _skip_reason(
    spec: StepSpec,
    statuses: dict[str, StepStatus],
    halt: tuple[str, str] | None,
    dry_run: bool,
) -> str | None:
    if halt is not None and not spec.always:
        return f"not run: {halt[1]}"
    ok = (
        {StepStatus.SUCCEEDED, StepStatus.PLANNED}
        if dry_run
        else {StepStatus.SUCCEEDED}
    )
    for need in spec.needs:
        if statuses.get(need) not in ok:
            status = statuses.get(need)
            state = status.value if status else "never ran"
            return f"not run: needs {need}, which {state}"

    return None
