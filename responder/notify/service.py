"""Notifiers for chat (a Slack webhook and a fake) and a dispatcher that never blocks.

Containment must never wait on chat: the engine hands a notification to
`NotificationDispatcher.dispatch`, which returns at once and delivers it on its own
threads with bounded retries, then reports the outcome through `on_result` so the
engine can record it in the incident timeline.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from responder.exceptions import ConfigError
from responder.notify.models import Notification, NotificationFailed, Notifier

__all__ = [
    "NotificationDispatcher",
    "RecordingNotifier",
    "ResultCallback",
    "SlackWebhookNotifier",
    "escape_slack",
    "slack_payload",
]

log = structlog.get_logger(__name__)

ResultCallback = Callable[[Notification, bool, str | None, int], None]

# Slack's documented limits: header text 150 characters, section text 3,000.
_HEADER_LIMIT = 150
_SECTION_LIMIT = 3000
_FALLBACK_LIMIT = 3000
_CONTEXT_LIMIT = 2000
_SLACK_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Slack answers errors with a short code such as `invalid_payload` or `no_service`.
_SLACK_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
_RETRYABLE_STATUSES = frozenset({408, 425, 429})
_MAX_RETRY_AFTER = 300.0


def escape_slack(text: str) -> str:
    """Return `text` with Slack's control characters `&`, `<`, `>` as entities.

    Escaped text cannot form links (`<https://x|label>`), mentions (`<!channel>`)
    or user references, whoever wrote it.
    """
    return "".join(_SLACK_ESCAPES.get(char, char) for char in text)


def _fit(text: str, limit: int) -> str:
    """Escape `text`, cutting it between characters so the result fits `limit`."""
    escaped = escape_slack(text)
    if len(escaped) <= limit:
        return escaped

    # Cut before escaping so an entity such as `&amp;` is never split in two.
    pieces: list[str] = []
    used = 0
    for char in text:
        piece = _SLACK_ESCAPES.get(char, char)
        if used + len(piece) > limit - 1:
            break
        pieces.append(piece)
        used += len(piece)

    return "".join(pieces) + "\N{HORIZONTAL ELLIPSIS}"


def _link_target(link: str | None) -> str | None:
    """Return `link` made safe inside `<url|label>`, or `None` if not http(s)."""
    if not link or urlsplit(link).scheme not in {"http", "https"}:
        return None

    # `|` and `>` would end the URL early; quote them (and spaces, `<`) as %XX.
    quoted = quote(link, safe="/:?#[]@!$&'()*+,;=%~-._")

    return quoted.replace("&", "&amp;")


def slack_payload(notification: Notification) -> dict[str, Any]:
    """Return the incoming-webhook body for `notification`: `text` plus `blocks`.

    Every string from the notification is escaped; the title is folded onto one
    line; texts are cut to Slack's block limits. Sections are `verbatim`, so bare
    URLs and channel names in the text are not turned into links.
    """
    title = " ".join(notification.title.split()) or notification.event
    severity = notification.severity.upper()
    facts = [f"*Severity:* {severity}", f"*Event:* {notification.event}"]
    if notification.incident_id:
        facts.append(f"*Incident:* {notification.incident_id}")
    if notification.access_key_id:
        facts.append(f"*Key:* {notification.access_key_id}")

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _fit(title, _HEADER_LIMIT)},
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _fit(" | ".join(facts), _CONTEXT_LIMIT),
                    "verbatim": True,
                }
            ],
        },
    ]
    if notification.text.strip():
        blocks.append(_section(_fit(notification.text, _SECTION_LIMIT)))
    target = _link_target(notification.link)
    if target is not None:
        blocks.append(_section(f"<{target}|Open the incident report>"))
    fallback = f"[{severity}] {title}\n{notification.text}"

    return {"text": _fit(fallback, _FALLBACK_LIMIT), "blocks": blocks}


def _section(mrkdwn: str) -> dict[str, Any]:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": mrkdwn, "verbatim": True},
    }


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None

    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


class SlackWebhookNotifier:
    """Posts notifications to a Slack-compatible incoming webhook.

    The webhook URL is a secret: it is never logged, never put in an exception
    message, and masked in `repr`. Thread-safe as long as `client` is (an
    `httpx.Client` is). Sends once; retrying is the dispatcher's job.

    Raises:
        ConfigError: `url` is not an http(s) URL (the URL itself is not quoted).
    """

    def __init__(self, url: str, client: httpx.Client) -> None:
        if urlsplit(url).scheme not in {"http", "https"} or not urlsplit(url).netloc:
            msg = "chat webhook URL must be an http(s) URL"
            raise ConfigError(msg)
        self._url = url
        self._client = client

    def __repr__(self) -> str:
        return "SlackWebhookNotifier(url='[redacted]')"

    def send(self, notification: Notification) -> None:
        """Post `notification` once; any 2xx answer means it was delivered.

        Raises:
            NotificationFailed: no 2xx answer. `retryable` is set for transport
                errors, 408/425/429 and 5xx; other answers will not get better.
        """
        payload = slack_payload(notification)
        try:
            response = self._client.post(
                self._url, json=payload, follow_redirects=False
            )
        except httpx.HTTPError as exc:
            # httpx errors can quote the URL, so only the error's type is kept.
            msg = f"chat webhook unreachable: {type(exc).__name__}"
            raise NotificationFailed(msg, retryable=True) from None

        if response.is_success:
            return
        status = response.status_code
        code = response.text.strip()
        reason = f" ({code})" if _SLACK_ERROR_CODE.fullmatch(code) else ""
        msg = f"chat webhook answered HTTP {status}{reason}"
        raise NotificationFailed(
            msg,
            retryable=status >= 500 or status in _RETRYABLE_STATUSES,
            status_code=status,
            retry_after=_retry_after(response),
        )


class RecordingNotifier:
    """The fake notifier: keeps what it was sent, and can fail the first N sends.

    Strict like our other fakes: it has no attributes beyond those below, so a
    test that sets a misspelt option fails. Thread-safe.

    Attributes:
        sent: notifications delivered, in order.
        attempts: calls to `send`, failed ones included.
    """

    __slots__ = ("_lock", "attempts", "fail_first", "retryable", "sent")

    def __init__(self, *, fail_first: int = 0, retryable: bool = True) -> None:
        self.fail_first = fail_first
        self.retryable = retryable
        self.sent: list[Notification] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        """Record `notification`, unless this is one of the first `fail_first` sends.

        Raises:
            NotificationFailed: while failures are still due; `retryable` as set.
        """
        with self._lock:
            self.attempts += 1
            if self.attempts <= self.fail_first:
                msg = f"recording notifier told to fail send {self.attempts}"
                raise NotificationFailed(msg, retryable=self.retryable)
            self.sent.append(notification)


def _fields(notification: Notification) -> dict[str, Any]:
    return {
        "notification_event": notification.event,
        "incident_id": notification.incident_id,
        "access_key_id": notification.access_key_id,
        "severity": notification.severity,
    }


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, NotificationFailed) and exc.retryable


class NotificationDispatcher:
    """Delivers notifications on its own threads, so no caller waits on chat.

    `dispatch` returns at once. Each notification is sent with exponential
    backoff and full jitter, up to `attempts` tries for retryable failures, then
    `on_result(notification, delivered, error_text, attempts_used)` is called
    exactly once, on a worker thread. `error_text` is `None` when delivered and
    never holds a webhook URL. `max_delay` bounds every wait, including a
    `Retry-After` the peer asked for. The caller's contextvars (structlog's bound
    `request_id`, `run_id` ...) are carried to the worker for each notification.

    Raises:
        ValueError: `attempts` or `max_workers` is below 1.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        on_result: ResultCallback,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        max_workers: int = 1,
        max_delay: float = 30.0,
    ) -> None:
        if attempts < 1 or max_workers < 1:
            msg = "attempts and max_workers must be at least 1"
            raise ValueError(msg)
        self._notifier = notifier
        self._on_result = on_result
        self._attempts = attempts
        self._sleep = sleep
        self._max_delay = max_delay
        self._backoff = wait_random_exponential(multiplier=0.5, max=max_delay)
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="notify"
        )
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False

    def dispatch(self, notification: Notification) -> None:
        """Queue `notification` for delivery and return without waiting.

        Never raises for chat trouble. After `close`, the notification is not
        sent: `on_result` is called at once, here, with `delivered=False` and
        zero attempts, so the engine still records that nobody was told.
        """
        context = contextvars.copy_context()
        with self._idle:
            if not self._closed:
                self._pending += 1
                self._pool.submit(context.run, self._deliver, notification)
                return

        log.warning(
            "notification_dropped", reason="dispatcher closed", **_fields(notification)
        )
        self._report(notification, False, "dispatcher closed before sending", 0)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every dispatched notification is reported; `False` on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, wait: bool = True) -> None:
        """Refuse new notifications; with `wait`, finish those already queued.

        Idempotent. Without `wait` it returns at once, and queued notifications
        are still sent (with their retries) before the worker threads end.
        """
        with self._idle:
            self._closed = True
        self._pool.shutdown(wait=wait)

    def _deliver(self, notification: Notification) -> None:
        fields = _fields(notification)
        started = time.monotonic()
        attempts_used = 0
        error_text: str | None = None

        try:
            for attempt in self._retrying(fields):
                with attempt:
                    attempts_used = attempt.retry_state.attempt_number
                    self._notifier.send(notification)
        except NotificationFailed as exc:
            error_text = str(exc)
        except Exception as exc:
            # A notifier bug; no traceback, as frame locals may hold the URL.
            error_text = f"notifier raised {type(exc).__name__}"
            log.error("notifier_crashed", error_type=type(exc).__name__, **fields)

        duration = round(time.monotonic() - started, 3)
        if error_text is None:
            log.info(
                "notification_sent",
                attempts=attempts_used,
                duration=duration,
                **fields,
            )
        else:
            log.warning(
                "notification_failed",
                attempts=attempts_used,
                duration=duration,
                error=error_text,
                **fields,
            )
        try:
            self._report(notification, error_text is None, error_text, attempts_used)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _report(
        self,
        notification: Notification,
        delivered: bool,
        error_text: str | None,
        attempts_used: int,
    ) -> None:
        try:
            self._on_result(notification, delivered, error_text, attempts_used)
        except Exception as exc:
            log.error(
                "notification_result_unrecorded",
                error_type=type(exc).__name__,
                delivered=delivered,
                **_fields(notification),
            )

    def _retrying(self, fields: dict[str, Any]) -> Retrying:
        def wait(state: RetryCallState) -> float:
            backoff = self._backoff(state)
            exc = state.outcome.exception() if state.outcome else None
            asked = exc.retry_after if isinstance(exc, NotificationFailed) else None

            return min(max(backoff, asked or 0.0), self._max_delay)

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "notification_retried",
                attempt=state.attempt_number,
                delay=round(state.next_action.sleep if state.next_action else 0, 3),
                error=str(exc) if exc else None,
                status_code=getattr(exc, "status_code", None),
                **fields,
            )

        return Retrying(
            retry=retry_if_exception(_is_retryable),
            stop=stop_after_attempt(self._attempts),
            wait=wait,
            before_sleep=log_retry,
            sleep=self._sleep,
            reraise=True,
        )
