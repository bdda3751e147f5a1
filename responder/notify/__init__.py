"""Telling people: notifications, the notifier seam, a Slack webhook and a fake.

`models` holds what a notification says, the `Notifier` protocol and the error
notifiers raise; `service` holds the Slack webhook notifier, the recording fake
and the dispatcher that delivers on its own threads, so that containment never
waits on chat.
"""

from __future__ import annotations

from responder.notify.models import (
    NOTIFICATION_EVENTS,
    SEVERITIES,
    Notification,
    NotificationEvent,
    NotificationFailed,
    Notifier,
    Severity,
)
from responder.notify.service import (
    NotificationDispatcher,
    RecordingNotifier,
    ResultCallback,
    SlackWebhookNotifier,
    escape_slack,
    slack_payload,
)

__all__ = [
    "NOTIFICATION_EVENTS",
    "SEVERITIES",
    "Notification",
    "NotificationDispatcher",
    "NotificationEvent",
    "NotificationFailed",
    "Notifier",
    "RecordingNotifier",
    "ResultCallback",
    "Severity",
    "SlackWebhookNotifier",
    "escape_slack",
    "slack_payload",
]
