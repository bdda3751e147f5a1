"""Timezone-aware UTC time helpers; nothing in the responder uses local time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["Clock", "isoformat_z", "parse_timestamp", "utcnow"]

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def isoformat_z(moment: datetime) -> str:
    """Render an aware datetime as ISO 8601 UTC with a `Z`, to the second."""
    if moment.tzinfo is None:
        msg = "naive datetime: every timestamp in the responder must be aware"
        raise ValueError(msg)

    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: object) -> datetime | None:
    """Parse the timestamp forms AWS emits into aware UTC, or `None` if unreadable.

    Accepts ISO 8601 with `Z` or an offset, epoch seconds (int, float or string),
    RFC 1123 dates and aware datetimes. A naive value is taken as UTC, as CloudTrail
    writes UTC without saying so in some older records.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str) and value.strip():
        moment_or_none = _parse_text(value.strip())
        if moment_or_none is None:
            return None
        moment = moment_or_none
    else:
        return None

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)

    return moment.astimezone(UTC)


def _parse_text(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
