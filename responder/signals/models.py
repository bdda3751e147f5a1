"""What every signal parser hands the engine, whatever envelope the signal came in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from responder.store.models import SignalStatus

__all__ = ["ExposureSignal"]


@dataclass(frozen=True)
class ExposureSignal:
    """One exposure, read from a verified envelope, ready to store.

    A parser returns one of these per key it found (a Health event naming three
    keys gives three), and one with `status` IGNORED or NEEDS_PERSON for an
    envelope that names no key, so that every accepted request is recorded.

    `delivery_id` is stable across redeliveries of the same thing (the GuardDuty
    finding ID, the Health event ARN with the key): the store keeps one signal per
    `(source, delivery_id)`. `details` is kept in the database and shown to people:
    it must never hold a secret value (a secret access key, a session token, a
    partner-program token that is not a key ID).
    """

    source: str
    delivery_id: str
    kind: str
    status: SignalStatus
    reason: str
    access_key_id: str | None = None
    account_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # The same delivery may come again with news (a GuardDuty finding's count):
    # a repeat updates the stored signal instead of being dropped as a duplicate.
    repeatable: bool = False
