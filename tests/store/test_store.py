"""The SQLite store: one incident per key, append-only audit, UTC timestamps."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from responder.config import Settings
from responder.exceptions import ConfigError
from responder.logging import redact_secrets
from responder.store.models import SignalStatus
from responder.store.service import Store


@pytest.fixture
def store(tmp_path):
    db = Store(tmp_path / "s.db")
    yield db
    db.close()


def signal(store: Store, delivery: str):
    return store.create_signal(
        source="github",
        delivery_id=delivery,
        kind="k",
        status=SignalStatus.ACCEPTED,
        reason="r",
    )


class TestStore:
    def test_concurrent_signals_for_one_key_share_one_incident(self, store):
        """Twenty signals for one key from twenty threads: one incident."""
        ids: list[str] = []
        barrier = threading.Barrier(20)

        def attach(n: int) -> None:
            created, _ = signal(store, f"d{n}")
            barrier.wait()
            incident, _ = store.attach_signal(
                signal_id=created.id,
                access_key_id="AKIAIOSFODNN7EXAMPLE",
                playbook="p",
                dry_run=False,
            )
            ids.append(incident.id)

        threads = [threading.Thread(target=attach, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(set(ids)) == 1
        assert store.get_incident(incident_id=ids[0]).signal_count == 20

    def test_audit_trail_is_append_only(self, store):
        """UPDATE and DELETE on the audit table are refused by the database."""
        store.append_audit(
            incident_id="i",
            step="s",
            service="iam",
            operation="UpdateAccessKey",
            region="us-east-1",
            target="AKIA",
            request_id="r",
            outcome="succeeded",
        )

        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._db.execute("UPDATE audit SET outcome = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._db.execute("DELETE FROM audit")

    def test_times_are_stored_and_read_as_utc(self, tmp_path):
        """A clock in +09:00 is stored and read back as the same instant in UTC."""
        tokyo = datetime(2026, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
        db = Store(tmp_path / "t.db", clock=lambda: tokyo)

        created, _ = signal(db, "d")

        assert created.received_at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
        assert created.received_at.utcoffset() == timedelta(0)
        assert created.to_dict()["received_at"] == "2026-01-01T00:00:00Z"
        db.close()

    def test_naive_datetime_is_refused(self, tmp_path):
        """A naive timestamp never reaches the database."""
        db = Store(tmp_path / "n.db", clock=lambda: datetime(2026, 1, 1))

        with pytest.raises(ValueError, match="naive"):
            signal(db, "d")
        db.close()


class TestSettings:
    def test_environment_is_read_under_prefix(self):
        """RESPONDER_* variables fill the settings; secrets are masked in repr."""
        settings = Settings.from_env(
            {
                "RESPONDER_API_TOKEN": "a-very-long-token-value",
                "RESPONDER_MANAGED_ACCOUNTS": "111122223333, 444455556666",
                "PATH": "/bin",
            }
        )

        assert settings.managed_accounts == ("111122223333", "444455556666")
        assert "a-very-long-token-value" not in repr(settings)

    @pytest.mark.parametrize(
        ("environ", "message"),
        [
            ({"RESPONDER_NOPE": "1"}, "unknown setting RESPONDER_NOPE"),
            ({"RESPONDER_MANAGED_ACCOUNTS": "12"}, "12-digit"),
            ({"RESPONDER_API_TOKEN": "short"}, "at least 16"),
            ({"RESPONDER_WORKERS": "zero"}, "RESPONDER_WORKERS"),
        ],
    )
    def test_bad_settings_fail_at_startup(self, environ, message):
        """Unknown or malformed settings are refused with the variable's name."""
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(environ)


class TestRedaction:
    def test_secret_fields_and_shapes_are_dropped(self):
        """Secret-named fields and 40-character secret shapes never reach a log."""
        event = redact_secrets(
            None,
            "info",
            {
                "event": "x",
                "secret_access_key": "abc",
                "detail": "key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY leaked",
                "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            },
        )

        assert event["secret_access_key"] == "[redacted]"
        assert "wJalr" not in event["detail"]
        assert event["access_key_id"] == "AKIAIOSFODNN7EXAMPLE"
