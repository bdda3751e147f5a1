"""From a stored signal to a running playbook: attach, schedule, resume, retry."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from responder._time import Clock, utcnow
from responder.config import Settings
from responder.exceptions import AlertUnresolvable, GitHubLookupFailed
from responder.playbooks.loader import select_playbook
from responder.playbooks.models import Playbook
from responder.playbooks.runner import PlaybookRunner
from responder.signals.github import AlertLookup
from responder.store.models import Incident, Signal, SignalStatus
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
        clock: Clock = utcnow,
        lookup_interval: float = 5.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.playbooks = playbooks
        self.alert_lookup = alert_lookup
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
        self._submit(self.runner.run, incident_id)

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
    ) -> Incident:
        playbook = select_playbook(self.playbooks, signal.source)
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
        if created and schedule:
            self.schedule(incident.id)

        return incident

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
