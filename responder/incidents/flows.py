"""From a stored signal to a running playbook: attach, schedule, resume, retry."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from responder._time import Clock, utcnow
from responder.aws.actions import REGISTRY
from responder.config import Settings
from responder.exceptions import (
    AlertUnresolvable,
    AwsCallFailed,
    GitHubLookupFailed,
    PlaybookValidationError,
)
from responder.notify import Notification, NotificationDispatcher
from responder.playbooks.loader import select_playbook
from responder.playbooks.models import Playbook
from responder.playbooks.runner import PlaybookRunner
from responder.signals.github import AlertLookup, AlertResolver
from responder.signals.models import ExposureSignal
from responder.store.models import (
    Incident,
    IncidentStatus,
    Signal,
    SignalStatus,
    StepStatus,
)
from responder.store.service import Store

__all__ = ["Engine", "SignalOutcome"]

log = structlog.get_logger(__name__)

_LOOKUP_BACKOFF_MAX = timedelta(minutes=15)


@dataclass(frozen=True)
class SignalOutcome:
    """What the engine made of a signal: its record, and the incident if any."""

    signal: Signal
    duplicate: bool
    incident: Incident | None = None


class Engine:
    """Owns the background work: playbook runs and GitHub key lookups.

    Every entry point stores first and schedules second, so an acknowledged signal
    is on disk before anything else happens to it.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        runner: PlaybookRunner,
        playbooks: dict[str, Playbook],
        alert_lookup: AlertLookup | None,
        alert_resolver: AlertResolver | None = None,
        notifications: NotificationDispatcher | None = None,
        clock: Clock = utcnow,
        lookup_interval: float = 5.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.playbooks = playbooks
        self.alert_lookup = alert_lookup
        self.alert_resolver = alert_resolver
        self.notifications = notifications
        runner.open_related = self.related_key_flow
        self._clock = clock
        self._lookup_interval = lookup_interval
        self._pool = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="playbook"
        )
        # Lookups get their own threads: a burst of them must not queue in front
        # of the playbook runs they start.
        self._lookups = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lookup")
        self._futures: set[Future[Any]] = set()
        self._futures_lock = threading.Lock()
        self._stopping = threading.Event()
        self._lookup_thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> None:
        """Resume unfinished incidents and start retrying pending key lookups."""
        unfinished = self.store.list_unfinished_incidents()
        for incident in unfinished:
            self.schedule(incident.id)
        if unfinished:
            log.info("incidents_resumed", count=len(unfinished))
        self._lookup_thread = threading.Thread(
            target=self._lookup_loop, name="key-lookup", daemon=True
        )
        self._lookup_thread.start()

    def stop(self, *, wait: bool = True) -> None:
        """Stop taking work; with `wait`, let running playbooks finish."""
        self._stopping.set()
        self._lookups.shutdown(wait=wait, cancel_futures=not wait)
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        if self.notifications is not None:
            self.notifications.close(wait=wait)
        if self._lookup_thread is not None:
            self._lookup_thread.join(timeout=5)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until every scheduled run and lookup has finished (for tests/CLI)."""
        while True:
            with self._futures_lock:
                pending = [f for f in self._futures if not f.done()]
            if not pending:
                return
            for future in pending:
                future.result(timeout=timeout)

    def schedule(self, incident_id: str) -> None:
        """Run the incident's playbook in the background."""
        self._submit(self.incident_run_flow, incident_id)

    # Flows

    def signal_received_flow(
        self,
        *,
        source: str,
        delivery_id: str,
        kind: str,
        status: SignalStatus,
        reason: str,
        access_key_id: str | None = None,
        details: dict[str, Any] | None = None,
        dry_run: bool = False,
        schedule: bool = True,
    ) -> SignalOutcome:
        """Store a signal once, then attach it to its key's incident and schedule.

        A redelivery returns the first record with `duplicate=True` and does nothing
        else. A signal still needing its key ID is looked up in the background.
        With `schedule=False` the caller runs the incident's playbook itself.
        """
        signal, created = self.store.create_signal(
            source=source,
            delivery_id=delivery_id,
            kind=kind,
            status=status,
            reason=reason,
            access_key_id=access_key_id,
            details=details,
        )
        if not created:
            log.info("signal_duplicate", signal_id=signal.id, source=source)
            incident = (
                self.store.get_incident(incident_id=signal.incident_id)
                if signal.incident_id
                else None
            )
            return SignalOutcome(signal=signal, duplicate=True, incident=incident)
        log.info(
            "signal_recorded",
            signal_id=signal.id,
            source=source,
            kind=kind,
            status=status.value,
            access_key_id=access_key_id,
        )

        if status is SignalStatus.NEEDS_KEY_ID:
            self._submit(self.key_lookup_flow, signal.id, pool=self._lookups)
            return SignalOutcome(signal=signal, duplicate=False)
        if status is not SignalStatus.ACCEPTED or access_key_id is None:
            return SignalOutcome(signal=signal, duplicate=False)

        incident = self._attach(
            signal, access_key_id, dry_run=dry_run, schedule=schedule
        )
        signal = self.store.get_signal(signal_id=signal.id) or signal

        return SignalOutcome(signal=signal, duplicate=False, incident=incident)

    def exposure_received_flow(
        self, exposure: ExposureSignal, *, schedule: bool = True
    ) -> SignalOutcome:
        """Store one parsed exposure signal and act on it.

        A repeat of a `repeatable` signal (a GuardDuty finding published again)
        counts one more sighting on the signal and its incident and reruns
        nothing, unless the key turned out to be active again.
        """
        details = {**exposure.details, "account_id": exposure.account_id}
        outcome = self.signal_received_flow(
            source=exposure.source,
            delivery_id=exposure.delivery_id,
            kind=exposure.kind,
            status=exposure.status,
            reason=exposure.reason,
            access_key_id=exposure.access_key_id,
            details=details,
            schedule=schedule,
        )
        if outcome.duplicate and exposure.repeatable:
            signal, incident = self.store.record_repeat(
                signal_id=outcome.signal.id, details=details
            )
            log.info(
                "signal_repeated",
                signal_id=signal.id,
                seen_count=signal.seen_count,
                incident_id=signal.incident_id,
            )
            if incident is not None and incident.is_final:
                self._submit(self.incident_recheck_flow, incident.id)
            return SignalOutcome(signal=signal, duplicate=True, incident=incident)
        if not outcome.duplicate and outcome.signal.status is SignalStatus.NEEDS_PERSON:
            self._notify(
                "signal_needs_person",
                None,
                title=f"{exposure.source} signal needs a person",
                text=exposure.reason,
            )

        return outcome

    def approve_flow(self, incident_id: str, *, approver: str, note: str) -> Incident:
        """Record a person's approval and let the incident's playbook go on.

        Raises:
            LookupError: no such incident.
            ValueError: the incident is not waiting for an approval.
        """
        incident = self.store.get_incident(incident_id=incident_id)
        if incident is None:
            msg = f"no incident {incident_id}"
            raise LookupError(msg)
        approved = self.store.approve_incident(
            incident_id=incident_id, approver=approver
        )
        if approved is None:
            msg = (
                f"incident {incident_id} is {incident.status.value}, not"
                " awaiting_approval: there is nothing to approve"
            )
            raise ValueError(msg)

        self.store.add_timeline(
            incident_id=incident_id,
            event="approval_given",
            description=f"approved by {approver}" + (f": {note}" if note else ""),
            details={"approver": approver, "note": note},
        )
        log.info("incident_approved", incident_id=incident_id, approver=approver)
        self.schedule(incident_id)

        return approved

    def related_key_flow(self, access_key_id: str, reason: str) -> str | None:
        """Open (or join) the incident of a key another incident led to."""
        outcome = self.signal_received_flow(
            source="trace",
            delivery_id=f"trace:{access_key_id}",
            kind="trace.minting_key",
            status=SignalStatus.ACCEPTED,
            reason=reason,
            access_key_id=access_key_id,
            details={"reason": reason},
        )

        return outcome.incident.id if outcome.incident else outcome.signal.incident_id

    def incident_run_flow(self, incident_id: str) -> Incident:
        """Run the incident's playbook, then tell people and close the source."""
        incident = self.runner.run(incident_id)

        if incident.status is IncidentStatus.AWAITING_APPROVAL:
            self._notify(
                "approval_needed",
                incident,
                title=f"Approval needed for {incident.access_key_id}",
                text=incident.summary or "",
            )
            return incident
        if not incident.is_final:
            return incident
        event = {
            IncidentStatus.COMPLETED: "incident_contained",
            IncidentStatus.PARTIAL: "incident_contained",
            IncidentStatus.FAILED: "incident_failed",
            IncidentStatus.NOT_ACTIONABLE: "incident_not_actionable",
            IncidentStatus.ESCALATED: "incident_escalated",
        }[incident.status]
        self._notify(
            event,
            incident,
            title=f"{incident.access_key_id}: {incident.outcome}",
            text=incident.summary or "",
        )
        if incident.status in {IncidentStatus.COMPLETED, IncidentStatus.PARTIAL}:
            self._resolve_github_alerts(incident)

        return incident

    def incident_recheck_flow(self, incident_id: str) -> Incident | None:
        """Reopen a finished incident whose long-term key is active again."""
        incident = self.store.get_incident(incident_id=incident_id)
        if (
            incident is None
            or not incident.is_final
            or incident.dry_run
            or not incident.user_name
            or incident.key_type != "long-term"
        ):
            return None
        try:
            gateway = self.runner.accounts.gateway_for(incident.account_id)
            listed = gateway.call("iam", "ListAccessKeys", UserName=incident.user_name)[
                "AccessKeyMetadata"
            ]
        except (AwsCallFailed, PermissionError) as exc:
            log.warning(
                "incident_recheck_failed", incident_id=incident_id, error=str(exc)
            )
            return None
        status = next(
            (
                item["Status"]
                for item in listed
                if item["AccessKeyId"] == incident.access_key_id
            ),
            None,
        )
        if status != "Active":
            log.info("incident_rechecked", incident_id=incident_id, key_status=status)
            return None

        # Containment again; a replacement already handed over is not minted twice.
        playbook = self.playbooks[incident.playbook]
        steps = self.store.list_steps(incident_id=incident_id)
        positions = [
            record.position
            for spec, record in zip(playbook.steps, steps, strict=True)
            if not (
                REGISTRY[spec.action].once_per_incident
                and record.status is StepStatus.SUCCEEDED
            )
        ]
        reopened = self.store.reopen_incident(
            incident_id=incident_id, positions=positions
        )
        if reopened is None:
            return None
        description = (
            f"{incident.access_key_id} is Active again after the incident ended:"
            " containing it again"
        )
        self.store.add_timeline(
            incident_id=incident_id, event="incident_reopened", description=description
        )
        log.warning("incident_reopened", incident_id=incident_id)
        self._notify(
            "incident_reopened",
            reopened,
            title=f"{incident.access_key_id} is active again",
            text=description,
        )
        self.schedule(incident_id)

        return reopened

    def key_lookup_flow(self, signal_id: str) -> Incident | None:
        """Look up the key ID a signal names; on failure keep it and retry later."""
        signal = self.store.get_signal(signal_id=signal_id)
        if signal is None or signal.status is not SignalStatus.NEEDS_KEY_ID:
            return None
        if self.alert_lookup is None:
            self._retry_later(signal, "no GitHub token configured for alert lookups")
            return None

        try:
            key_ids = self.alert_lookup.key_ids(signal.details)
        except AlertUnresolvable as exc:
            self.store.update_signal(
                signal_id=signal.id,
                status=SignalStatus.NEEDS_PERSON,
                reason=f"cannot look up the alert: {exc}",
            )
            log.warning("signal_needs_person", signal_id=signal.id, reason=str(exc))
            return None
        except GitHubLookupFailed as exc:
            self._retry_later(signal, str(exc))
            return None

        if not key_ids:
            self.store.update_signal(
                signal_id=signal.id,
                status=SignalStatus.NEEDS_PERSON,
                reason="the alert names no access key ID (only a secret access key?);"
                " its locations are the lead: a person must identify the key",
            )
            log.warning("signal_needs_person", signal_id=signal.id)
            return None
        if len(key_ids) > 1:
            log.warning("alert_names_several_keys", signal_id=signal.id, keys=key_ids)

        return self._attach(signal, key_ids[0], dry_run=False)

    def _attach(
        self,
        signal: Signal,
        access_key_id: str,
        *,
        dry_run: bool,
        schedule: bool = True,
    ) -> Incident | None:
        try:
            playbook = select_playbook(self.playbooks, signal.source, access_key_id)
        except PlaybookValidationError as exc:
            self.store.update_signal(
                signal_id=signal.id,
                status=SignalStatus.NEEDS_PERSON,
                reason=f"{exc}: a person must respond to {access_key_id}",
                access_key_id=access_key_id,
            )
            log.error("signal_unhandled", signal_id=signal.id, reason=str(exc))
            return None
        incident, created = self.store.attach_signal(
            signal_id=signal.id,
            access_key_id=access_key_id,
            playbook=playbook.name,
            dry_run=dry_run,
        )
        self.store.add_timeline(
            incident_id=incident.id,
            event="incident_opened" if created else "signal_attached",
            description=f"{signal.source} signal {signal.delivery_id}: {signal.kind}",
            details={"signal_id": signal.id},
        )
        log.info(
            "signal_attached",
            signal_id=signal.id,
            incident_id=incident.id,
            access_key_id=access_key_id,
            opened=created,
        )
        if created:
            self._notify(
                "incident_opened",
                incident,
                title=f"Exposed key {access_key_id}",
                text=f"{signal.source} signal: {signal.kind}",
            )
        if created and schedule:
            self.schedule(incident.id)
        elif not created and incident.is_final:
            # A fresh sighting of a key whose incident ended: is it active again?
            self._submit(self.incident_recheck_flow, incident.id)

        return incident

    def _notify(
        self, event: str, incident: Incident | None, *, title: str, text: str
    ) -> None:
        if self.notifications is None:
            return
        link = None
        if incident is not None:
            base = self.settings.public_url.rstrip("/")
            link = f"{base}/api/v1/incidents/{incident.id}/report?format=html"
        self.notifications.dispatch(
            Notification(
                event=event,  # type: ignore[arg-type]
                incident_id=incident.id if incident else None,
                access_key_id=incident.access_key_id if incident else None,
                severity=incident.severity if incident else "medium",  # type: ignore[arg-type]
                title=title,
                text=text,
                link=link,
            )
        )

    def notification_recorded(
        self,
        notification: Notification,
        delivered: bool,
        error: str | None,
        attempts: int,
    ) -> None:
        """Record a notification's fate in its incident's timeline."""
        if notification.incident_id is None:
            return
        self.store.add_timeline(
            incident_id=notification.incident_id,
            event="notification_sent" if delivered else "notification_failed",
            description=f"{notification.event}: "
            + ("delivered" if delivered else f"not delivered ({error})"),
            details={"attempts": attempts, "event": notification.event},
        )

    def _resolve_github_alerts(self, incident: Incident) -> None:
        if (
            self.alert_resolver is None
            or incident.dry_run
            or not self.settings.resolve_github_alerts
        ):
            return
        base = self.settings.public_url.rstrip("/")
        comment = (
            f"Key {incident.access_key_id} contained by the responder"
            f" (incident {incident.id}): {base}/api/v1/incidents/{incident.id}"
        )
        for signal in self.store.list_signals(incident_id=incident.id):
            if signal.source != "github" or signal.details.get("alert_number") is None:
                continue
            try:
                self.alert_resolver.resolve_alert(signal.details, comment=comment)
            except GitHubLookupFailed as exc:
                self.store.add_timeline(
                    incident_id=incident.id,
                    event="github_alert_not_resolved",
                    description=f"GitHub alert not resolved: {exc}",
                    details={"signal_id": signal.id},
                )
                log.warning("github_alert_not_resolved", signal_id=signal.id)
                continue
            self.store.add_timeline(
                incident_id=incident.id,
                event="github_alert_resolved",
                description=f"GitHub alert {signal.details.get('repository')}"
                f"#{signal.details.get('alert_number')} resolved as revoked",
                details={"signal_id": signal.id},
            )

    def _retry_later(self, signal: Signal, reason: str) -> None:
        attempts = signal.lookup_attempts + 1
        delay = min(timedelta(seconds=5 * 2 ** min(attempts, 10)), _LOOKUP_BACKOFF_MAX)
        self.store.update_signal(
            signal_id=signal.id,
            reason=f"needs key ID: {reason}",
            lookup_attempts=attempts,
            next_lookup_at=self._clock() + delay,
        )
        log.warning(
            "key_lookup_failed",
            signal_id=signal.id,
            attempt=attempts,
            retry_in_s=delay.total_seconds(),
            reason=reason,
        )

    def _lookup_loop(self) -> None:
        while not self._stopping.wait(self._lookup_interval):
            self.retry_due_lookups()

    def retry_due_lookups(self) -> int:
        """Retry every key lookup that is due; return how many were tried."""
        due = self.store.list_signals_needing_key(due_before=self._clock())
        for signal in due:
            self._submit(self.key_lookup_flow, signal.id, pool=self._lookups)

        return len(due)

    def _submit(
        self, fn: Any, *args: Any, pool: ThreadPoolExecutor | None = None
    ) -> None:
        if self._stopping.is_set():
            return
        context = structlog.contextvars.get_contextvars()

        def _job() -> Any:
            # Threads do not inherit contextvars: re-bind the request's context.
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**context)
            try:
                return fn(*args)
            except Exception:
                log.exception("background_job_crashed", job=fn.__name__)
                raise

        future = (pool or self._pool).submit(_job)
        with self._futures_lock:
            self._futures = {f for f in self._futures if not f.done()}
            self._futures.add(future)
