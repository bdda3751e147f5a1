"""What a notification says, the seam every chat notifier implements, its error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from responder.exceptions import ExternalServiceError

__all__ = [
    "NOTIFICATION_EVENTS",
    "SEVERITIES",
    "Notification",
    "NotificationEvent",
    "NotificationFailed",
    "Notifier",
    "Severity",
]

NotificationEvent = Literal[
    "incident_opened",
    "incident_contained",
    "approval_needed",
    "incident_failed",
    "incident_not_actionable",
    "incident_escalated",
    "incident_reopened",
    "signal_needs_person",
]
Severity = Literal["critical", "high", "medium", "info"]

NOTIFICATION_EVENTS: frozenset[str] = frozenset(get_args(NotificationEvent))
SEVERITIES: frozenset[str] = frozenset(get_args(Severity))


@dataclass(frozen=True)
class Notification:
    """One message for the people on call, free of any secret value.

    `title` is meant to be one line and `text` a few; both may carry strings an
    attacker influenced (a summary quoting a CloudTrail field), so every notifier
    escapes them for its own markup. `incident_id` and `access_key_id` are `None`
    when the notification is about a signal that names no incident or no key.
    `link` points at the incident report, or is `None` when there is none yet.

    Raises:
        ValueError: `event` or `severity` is not one of the known values.
    """

    event: NotificationEvent
    incident_id: str | None
    access_key_id: str | None
    severity: Severity
    title: str
    text: str
    link: str | None = None

    def __post_init__(self) -> None:
        if self.event not in NOTIFICATION_EVENTS:
            msg = f"unknown notification event {self.event!r}"
            raise ValueError(msg)
        if self.severity not in SEVERITIES:
            msg = f"unknown notification severity {self.severity!r}"
            raise ValueError(msg)


class NotificationFailed(ExternalServiceError):
    """Raised when a notifier could not deliver a notification.

    `retryable` says whether sending the same notification again may work (a 5xx,
    a rate limit, a lost connection); `retry_after` is the wait in seconds the
    peer asked for, if it said. `status_code` is the HTTP answer, if there was one.
    The message never holds the destination URL: webhook URLs are secrets.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(message)


class Notifier(Protocol):
    """Delivers one notification to people; the seam in front of every chat tool.

    Implementations must be safe to call from worker threads, must not retry on
    their own (the dispatcher does), and must never put secrets or their own
    destination URL in logs or exception messages.
    """

    def send(self, notification: Notification) -> None:
        """Deliver `notification` once.

        Raises:
            NotificationFailed: it was not delivered.
        """
        ...
