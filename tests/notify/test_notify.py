"""Notifications: the Slack payload, the webhook notifier, the fake, the dispatcher."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from responder.exceptions import ConfigError, ExternalServiceError
from responder.notify import (
    Notification,
    NotificationDispatcher,
    NotificationFailed,
    RecordingNotifier,
    SlackWebhookNotifier,
    escape_slack,
    slack_payload,
)

WEBHOOK_SECRET_PART = "xYz0SeCrEtWebhookToken"
WEBHOOK = f"https://hooks.slack.example/services/T0001/B0001/{WEBHOOK_SECRET_PART}"
REPORT = "https://responder.example/incidents/inc-1/report?format=html&full=1"
EVIL = "<https://evil.example|click>"


def notification(**overrides) -> Notification:
    fields = {
        "event": "incident_opened",
        "incident_id": "inc-1",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "severity": "critical",
        "title": "Leaked key AKIAIOSFODNN7EXAMPLE",
        "text": "Found by GitHub in octo/app.\nContainment has started.",
        "link": REPORT,
    }
    fields.update(overrides)
    return Notification(**fields)


def slack(handler) -> SlackWebhookNotifier:
    return SlackWebhookNotifier(
        WEBHOOK, httpx.Client(transport=httpx.MockTransport(handler))
    )


def answering(*statuses: int):
    """Return a handler answering the given statuses in turn, and what it saw."""
    seen: list[httpx.Request] = []
    queue = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = queue.pop(0)
        return httpx.Response(status, text="ok" if status == 200 else "")

    return handler, seen


class Results:
    """Collects `on_result` calls as tuples; thread-safe."""

    def __init__(self) -> None:
        self.calls: list[tuple[Notification, bool, str | None, int]] = []
        self._lock = threading.Lock()

    def __call__(self, note, delivered, error_text, attempts) -> None:
        with self._lock:
            self.calls.append((note, delivered, error_text, attempts))


@pytest.fixture
def make_dispatcher():
    """Build dispatchers that never really sleep; all are closed at teardown."""
    built: list[NotificationDispatcher] = []

    def make(notifier, results, **options) -> NotificationDispatcher:
        options.setdefault("sleep", lambda _seconds: None)
        dispatcher = NotificationDispatcher(notifier, on_result=results, **options)
        built.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in built:
        dispatcher.close(wait=True)


class TestNotification:
    def test_create_unknown_event_raises(self):
        """An event outside the known list is refused when the message is built."""
        with pytest.raises(ValueError, match="unknown notification event"):
            notification(event="incident_exploded")

    def test_create_unknown_severity_raises(self):
        """A severity outside the known list is refused when the message is built."""
        with pytest.raises(ValueError, match="unknown notification severity"):
            notification(severity="apocalyptic")

    def test_failure_is_external_service_error(self):
        """Notifier failures sit under ExternalServiceError in the error tree."""
        assert issubclass(NotificationFailed, ExternalServiceError)


class TestSlackPayload:
    def test_payload_has_fallback_header_facts_text_and_link(self):
        """The payload is `text` plus header, context, section and link blocks."""
        payload = slack_payload(notification())

        assert payload["text"].startswith("[CRITICAL] Leaked key AKIAIOSFODNN7EXAMPLE")
        assert [block["type"] for block in payload["blocks"]] == [
            "header",
            "context",
            "section",
            "section",
        ]
        header, context, body, link = payload["blocks"]
        assert header["text"] == {
            "type": "plain_text",
            "text": "Leaked key AKIAIOSFODNN7EXAMPLE",
        }
        assert "*Incident:* inc-1" in context["elements"][0]["text"]
        assert "*Key:* AKIAIOSFODNN7EXAMPLE" in context["elements"][0]["text"]
        assert body["text"]["text"] == notification().text
        assert body["text"]["verbatim"] is True
        assert link["text"]["text"] == (
            "<https://responder.example/incidents/inc-1/report?format=html&amp;full=1"
            "|Open the incident report>"
        )

    def test_payload_attacker_link_escaped_everywhere(self):
        """Slack link syntax in title or text arrives as literal text, not a link."""
        note = notification(title=f"Alert {EVIL}", text=f"summary {EVIL} <!channel>")

        payload = slack_payload(note)

        rendered = json.dumps(payload)
        assert "<https://evil" not in rendered
        assert "<!channel>" not in rendered
        assert payload["blocks"][0]["text"]["text"] == (
            "Alert &lt;https://evil.example|click&gt;"
        )
        assert payload["blocks"][2]["text"]["text"] == (
            "summary &lt;https://evil.example|click&gt; &lt;!channel&gt;"
        )

    def test_payload_link_with_delimiters_cannot_break_out(self):
        """A `|` or `>` inside the link is percent-encoded, so it cannot relabel it."""
        note = notification(link="https://responder.example/r?x=a|b>c <d")

        link = slack_payload(note)["blocks"][-1]["text"]["text"]

        assert link == (
            "<https://responder.example/r?x=a%7Cb%3Ec%20%3Cd|Open the incident report>"
        )

    @pytest.mark.parametrize("link", [None, "", "javascript:alert(1)", "ftp://x/y"])
    def test_payload_without_http_link_has_no_link_block(self, link):
        """No link block is sent for a missing or non-http(s) link."""
        payload = slack_payload(notification(link=link))

        assert "Open the incident report" not in json.dumps(payload)
        assert len(payload["blocks"]) == 3

    def test_payload_multiline_title_folded_onto_one_line(self):
        """A title with line breaks becomes one line in the header."""
        payload = slack_payload(notification(title="Leaked\nkey\r\n  again"))

        assert payload["blocks"][0]["text"]["text"] == "Leaked key again"

    def test_payload_long_text_cut_without_splitting_an_entity(self):
        """Over-long texts fit Slack's limits, and no `&amp;` is cut in half."""
        payload = slack_payload(notification(title="&" * 500, text="&" * 5000))

        header = payload["blocks"][0]["text"]["text"]
        body = payload["blocks"][2]["text"]["text"]
        assert len(header) <= 150
        assert len(body) <= 3000
        assert len(payload["text"]) <= 3000
        assert header == "&amp;" * 29 + "\N{HORIZONTAL ELLIPSIS}"
        assert body == "&amp;" * 599 + "\N{HORIZONTAL ELLIPSIS}"

    def test_escape_replaces_only_control_characters(self):
        """Only `&`, `<` and `>` are turned into entities; quotes stay as they are."""
        assert escape_slack("a & b <c> 'd' \"e\"") == "a &amp; b &lt;c&gt; 'd' \"e\""


class TestSlackWebhookNotifier:
    def test_send_posts_payload_as_json_to_webhook(self):
        """One POST of the payload, as JSON, to the configured webhook."""
        handler, seen = answering(200)

        slack(handler).send(notification())

        assert [(r.method, str(r.url)) for r in seen] == [("POST", WEBHOOK)]
        assert seen[0].headers["Content-Type"] == "application/json"
        assert json.loads(seen[0].content) == slack_payload(notification())

    @pytest.mark.parametrize("status", [500, 502, 429, 408])
    def test_send_transient_status_raises_retryable_without_url(self, status):
        """A 5xx, 408 or 429 fails as retryable, with the status and no URL."""
        handler, _seen = answering(status)

        with pytest.raises(NotificationFailed, match=f"HTTP {status}") as caught:
            slack(handler).send(notification())
        assert caught.value.retryable is True
        assert caught.value.status_code == status
        assert WEBHOOK_SECRET_PART not in str(caught.value)

    def test_send_permanent_status_raises_not_retryable_with_slack_code(self):
        """A 404 `no_service` will not get better: not retryable, code kept."""

        def handler(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(404, text="no_service")

        with pytest.raises(
            NotificationFailed, match=r"HTTP 404 \(no_service\)"
        ) as caught:
            slack(handler).send(notification())
        assert caught.value.retryable is False

    def test_send_redirect_not_followed_and_fails(self):
        """A 3xx is not followed (it could lead anywhere) and counts as failure."""
        handler, seen = answering(302)

        with pytest.raises(NotificationFailed, match="HTTP 302"):
            slack(handler).send(notification())
        assert len(seen) == 1

    def test_send_rate_limited_carries_retry_after(self):
        """A 429 passes on the `Retry-After` seconds Slack asked for."""

        def handler(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(429, headers={"Retry-After": "7"})

        with pytest.raises(NotificationFailed) as caught:
            slack(handler).send(notification())
        assert caught.value.retry_after == 7.0

    def test_send_unreachable_raises_retryable_without_url(self):
        """A transport error whose text quotes the URL is reported by type only."""

        def handler(request: httpx.Request) -> httpx.Response:
            msg = f"could not connect to {request.url}"
            raise httpx.ConnectError(msg, request=request)

        with pytest.raises(NotificationFailed, match="ConnectError") as caught:
            slack(handler).send(notification())
        assert caught.value.retryable is True
        assert WEBHOOK_SECRET_PART not in str(caught.value)
        assert caught.value.__cause__ is None

    @pytest.mark.parametrize("url", ["hooks.slack.example/x", "file:///etc/passwd"])
    def test_create_non_http_url_raises_without_quoting_it(self, url):
        """A webhook URL that is not http(s) is refused at startup, unquoted."""
        with pytest.raises(ConfigError) as caught:
            SlackWebhookNotifier(url, httpx.Client())
        assert url not in str(caught.value)

    def test_repr_masks_url(self):
        """The notifier's repr never shows the webhook URL."""
        notifier = slack(lambda _r: httpx.Response(200))

        assert WEBHOOK_SECRET_PART not in repr(notifier)


class TestRecordingNotifier:
    def test_send_fail_first_then_record(self):
        """The fake fails the first N sends, then keeps what it is sent."""
        fake = RecordingNotifier(fail_first=2)

        for _ in range(2):
            with pytest.raises(NotificationFailed):
                fake.send(notification())
        fake.send(notification())

        assert fake.attempts == 3
        assert fake.sent == [notification()]

    def test_set_unknown_attribute_raises(self):
        """The fake is strict: a misspelt option is an error, not a no-op."""
        fake = RecordingNotifier()

        with pytest.raises(AttributeError):
            fake.fail_frist = 3


class TestNotificationDispatcher:
    def test_dispatch_always_failing_retries_then_reports_failure(
        self, make_dispatcher
    ):
        """A webhook that keeps answering 500 is tried `attempts` times, then fails."""
        handler, seen = answering(500, 500, 500)
        results = Results()
        sleeps: list[float] = []
        dispatcher = make_dispatcher(
            slack(handler), results, attempts=3, sleep=sleeps.append
        )

        with capture_logs() as logs:
            dispatcher.dispatch(notification())
            assert dispatcher.wait_idle(timeout=5)

        assert len(seen) == 3
        assert len(sleeps) == 2
        assert results.calls == [
            (notification(), False, "chat webhook answered HTTP 500", 3)
        ]
        events = [entry["event"] for entry in logs]
        assert events == [
            "notification_retried",
            "notification_retried",
            "notification_failed",
        ]
        assert logs[0]["status_code"] == 500
        assert logs[-1]["attempts"] == 3
        assert logs[-1]["incident_id"] == "inc-1"
        assert logs[-1]["notification_event"] == "incident_opened"

    def test_dispatch_succeeding_on_third_try_reports_delivered(self, make_dispatcher):
        """Two 500s then a 200: delivered, after three attempts."""
        handler, seen = answering(500, 503, 200)
        results = Results()
        dispatcher = make_dispatcher(slack(handler), results, attempts=5)

        with capture_logs() as logs:
            dispatcher.dispatch(notification())
            assert dispatcher.wait_idle(timeout=5)

        assert len(seen) == 3
        assert results.calls == [(notification(), True, None, 3)]
        assert [entry["event"] for entry in logs][-1] == "notification_sent"
        assert logs[-1]["attempts"] == 3

    def test_dispatch_permanent_failure_tried_once(self, make_dispatcher):
        """A failure that will not get better is not retried."""
        fake = RecordingNotifier(fail_first=5, retryable=False)
        results = Results()
        dispatcher = make_dispatcher(fake, results, attempts=5)

        dispatcher.dispatch(notification())
        assert dispatcher.wait_idle(timeout=5)

        assert fake.attempts == 1
        assert results.calls == [
            (notification(), False, "recording notifier told to fail send 1", 1)
        ]

    def test_dispatch_returns_while_transport_blocked(self, make_dispatcher):
        """`dispatch` returns while the webhook hangs; the result comes later."""
        release = threading.Event()
        entered = threading.Event()

        def handler(_request: httpx.Request) -> httpx.Response:
            entered.set()
            release.wait(timeout=10)
            return httpx.Response(200)

        results = Results()
        dispatcher = make_dispatcher(slack(handler), results)

        dispatcher.dispatch(notification())
        dispatcher.dispatch(notification(event="incident_contained"))

        assert entered.wait(timeout=5)
        assert results.calls == []
        assert dispatcher.wait_idle(timeout=0.05) is False
        release.set()
        assert dispatcher.wait_idle(timeout=5)
        assert [(call[0].event, call[1]) for call in results.calls] == [
            ("incident_opened", True),
            ("incident_contained", True),
        ]

    def test_dispatch_webhook_url_never_logged_or_reported(self, make_dispatcher):
        """Neither logs nor results hold the webhook URL, whatever went wrong."""
        calls: list[int] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            if len(calls) == 1:
                msg = f"could not connect to {request.url}"
                raise httpx.ConnectError(msg, request=request)
            return httpx.Response(500, text=f"bad hook {request.url}")

        results = Results()
        dispatcher = make_dispatcher(slack(handler), results, attempts=3)

        with capture_logs() as logs:
            dispatcher.dispatch(notification())
            assert dispatcher.wait_idle(timeout=5)

        assert len(calls) == 3
        assert len(logs) == 3
        assert WEBHOOK_SECRET_PART not in repr(logs)
        assert "hooks.slack.example" not in repr(logs)
        assert results.calls[0][1] is False
        assert WEBHOOK_SECRET_PART not in repr(results.calls)

    def test_dispatch_waits_as_long_as_retry_after_asks(self, make_dispatcher):
        """After a 429 the dispatcher waits the `Retry-After` seconds, within bounds."""
        answers = iter(
            [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)]
        )
        results = Results()
        sleeps: list[float] = []
        dispatcher = make_dispatcher(
            slack(lambda _r: next(answers)), results, sleep=sleeps.append
        )

        dispatcher.dispatch(notification())
        assert dispatcher.wait_idle(timeout=5)

        assert sleeps == [7.0]
        assert results.calls == [(notification(), True, None, 2)]

    def test_dispatch_carries_bound_context_to_worker(self, make_dispatcher):
        """Context bound by the caller (the run ID) is bound on the worker too."""
        seen: list[dict] = []

        def on_result(*_args) -> None:
            seen.append(structlog.contextvars.get_contextvars())

        dispatcher = make_dispatcher(RecordingNotifier(), on_result)
        structlog.contextvars.bind_contextvars(run_id="run-7")

        dispatcher.dispatch(notification())
        assert dispatcher.wait_idle(timeout=5)

        assert seen == [{"run_id": "run-7"}]

    def test_dispatch_notifier_crash_still_reported(self, make_dispatcher):
        """A notifier raising something unexpected is reported, not retried."""

        class Broken:
            def send(self, _notification):
                raise KeyError(WEBHOOK)

        results = Results()
        dispatcher = make_dispatcher(Broken(), results)

        with capture_logs() as logs:
            dispatcher.dispatch(notification())
            assert dispatcher.wait_idle(timeout=5)

        assert results.calls == [(notification(), False, "notifier raised KeyError", 1)]
        assert [entry["event"] for entry in logs] == [
            "notifier_crashed",
            "notification_failed",
        ]
        assert WEBHOOK_SECRET_PART not in repr(logs)

    def test_dispatch_result_callback_raising_leaves_dispatcher_idle(
        self, make_dispatcher
    ):
        """A failing `on_result` is logged and does not wedge `wait_idle`."""

        def on_result(*_args) -> None:
            raise RuntimeError("store is down")

        dispatcher = make_dispatcher(RecordingNotifier(), on_result)

        with capture_logs() as logs:
            dispatcher.dispatch(notification())
            assert dispatcher.wait_idle(timeout=5)

        assert [entry["event"] for entry in logs][
            -1
        ] == "notification_result_unrecorded"
        assert logs[-1]["error_type"] == "RuntimeError"

    def test_dispatch_after_close_reports_undelivered(self, make_dispatcher):
        """After `close`, a notification is reported as not sent, zero attempts."""
        fake = RecordingNotifier()
        results = Results()
        dispatcher = make_dispatcher(fake, results)
        dispatcher.close()

        dispatcher.dispatch(notification())

        assert fake.attempts == 0
        assert results.calls == [
            (notification(), False, "dispatcher closed before sending", 0)
        ]

    def test_close_waits_for_queued_notifications(self, make_dispatcher):
        """`close(wait=True)` returns only after queued notifications are sent."""
        fake = RecordingNotifier(fail_first=1)
        results = Results()
        dispatcher = make_dispatcher(fake, results)

        for _ in range(3):
            dispatcher.dispatch(notification())
        dispatcher.close(wait=True)

        assert len(fake.sent) == 3
        assert [call[1] for call in results.calls] == [True, True, True]

    @pytest.mark.parametrize("options", [{"attempts": 0}, {"max_workers": 0}])
    def test_create_with_no_attempts_or_workers_raises(self, options):
        """A dispatcher that could never send is refused when built."""
        with pytest.raises(ValueError, match="at least 1"):
            NotificationDispatcher(RecordingNotifier(), on_result=Results(), **options)
