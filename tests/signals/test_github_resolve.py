"""Closing GitHub alerts: PATCH only the configured host, already resolved is done."""

from __future__ import annotations

import json

import httpx
import pytest
from helpers import CORPUS
from structlog.testing import capture_logs

from responder.exceptions import AlertUnresolvable, GitHubLookupFailed
from responder.signals.github import (
    RESOLUTION_COMMENT_LIMIT,
    HttpxAlertLookup,
    truncate_comment,
)

REST = (
    CORPUS
    / "github"
    / "github-openapi-example_REST_get-alert_resolved_used_in_tests.json"
)
TOKEN = "ghp_t0kenThatMustNeverShow"
URL = "https://api.github.com/repos/octo/app/secret-scanning/alerts/42"
DETAILS = {"repository": "octo/app", "alert_number": 42, "alert_url": URL}


def resolver(handler) -> HttpxAlertLookup:
    return HttpxAlertLookup(
        api_url="https://api.github.com",
        token=TOKEN,
        transport=httpx.MockTransport(handler),
    )


def recording(*responses: httpx.Response):
    """Return a handler answering `responses` in turn, and the requests it saw."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return handler, seen


class TestResolveAlert:
    def test_resolve_open_alert_patches_revoked_with_token(self):
        """One PATCH to the alert URL carries the token and the revoked resolution."""
        handler, seen = recording(httpx.Response(200, json={"state": "resolved"}))

        with capture_logs() as logs:
            resolver(handler).resolve_alert(DETAILS, comment="Key AKIA... contained.")

        assert [(r.method, str(r.url)) for r in seen] == [("PATCH", URL)]
        assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
        assert json.loads(seen[0].content) == {
            "state": "resolved",
            "resolution": "revoked",
            "resolution_comment": "Key AKIA... contained.",
        }
        assert [entry["event"] for entry in logs] == ["github_alert_resolved"]
        assert logs[0]["alert_number"] == 42

    def test_resolve_long_comment_truncated_to_limit(self):
        """A comment over the limit is cut to it and marked, not refused."""
        handler, seen = recording(httpx.Response(200, json={}))

        resolver(handler).resolve_alert(DETAILS, comment="x" * 1000)

        sent = json.loads(seen[0].content)["resolution_comment"]
        assert len(sent) == RESOLUTION_COMMENT_LIMIT
        assert sent.endswith("\N{HORIZONTAL ELLIPSIS}")

    def test_resolve_blank_comment_sent_as_null(self):
        """A blank comment is sent as null, which GitHub accepts, not as ''."""
        handler, seen = recording(httpx.Response(200, json={}))

        resolver(handler).resolve_alert(DETAILS, comment="   ")

        assert json.loads(seen[0].content)["resolution_comment"] is None

    @pytest.mark.parametrize("status", [400, 422])
    def test_resolve_refused_but_already_resolved_succeeds(self, status):
        """A refused update of an alert already resolved (read back) counts as done."""
        handler, seen = recording(
            httpx.Response(status, json={"message": "not changed"}),
            httpx.Response(200, content=REST.read_bytes()),
        )

        with capture_logs() as logs:
            resolver(handler).resolve_alert(DETAILS, comment="contained")

        assert [r.method for r in seen] == ["PATCH", "GET"]
        assert str(seen[1].url) == URL
        assert [entry["event"] for entry in logs] == ["github_alert_already_resolved"]
        assert logs[0]["resolution"] == "used_in_tests"
        assert logs[0]["status_code"] == status
        assert "XXXXXXXX" not in repr(logs)

    def test_resolve_refused_and_still_open_raises_with_status(self):
        """A 422 for an alert that reads back open is a failure naming the status."""
        handler, _seen = recording(
            httpx.Response(422, json={"message": "State does not match"}),
            httpx.Response(200, json={"state": "open", "secret": "AKIA..."}),
        )

        with pytest.raises(GitHubLookupFailed, match="HTTP 422") as caught:
            resolver(handler).resolve_alert(DETAILS, comment="contained")
        assert TOKEN not in str(caught.value)

    def test_resolve_refused_and_unreadable_raises_with_status(self):
        """A 400 whose read-back fails too is reported with the PATCH status."""
        handler, _seen = recording(httpx.Response(400), httpx.Response(503))

        with pytest.raises(GitHubLookupFailed, match="HTTP 400"):
            resolver(handler).resolve_alert(DETAILS, comment="contained")

    @pytest.mark.parametrize("status", [401, 403, 404, 500, 503])
    def test_resolve_error_status_raises_without_read_back(self, status):
        """Other statuses raise at once, with the status and without the token."""
        handler, seen = recording(httpx.Response(status))

        with pytest.raises(GitHubLookupFailed, match=f"HTTP {status}") as caught:
            resolver(handler).resolve_alert(DETAILS, comment="contained")
        assert TOKEN not in str(caught.value)
        assert [r.method for r in seen] == ["PATCH"]

    def test_resolve_unreachable_raises_without_token(self):
        """A transport error is a lookup failure naming only the error's type."""

        def handler(request: httpx.Request) -> httpx.Response:
            msg = f"refused {request.headers['Authorization']}"
            raise httpx.ConnectError(msg, request=request)

        with pytest.raises(GitHubLookupFailed, match="ConnectError") as caught:
            resolver(handler).resolve_alert(DETAILS, comment="contained")
        assert TOKEN not in str(caught.value)

    def test_resolve_foreign_alert_url_refused_without_request(self):
        """An alert URL outside the configured API is refused before any request."""
        handler, seen = recording(httpx.Response(200))
        details = {**DETAILS, "alert_url": "https://evil.example/alerts/42"}

        with pytest.raises(AlertUnresolvable, match="refusing"):
            resolver(handler).resolve_alert(details, comment="contained")
        assert seen == []

    def test_resolve_without_alert_number_refused_without_request(self):
        """A delivery that names no alert cannot be resolved, and nothing is sent."""
        handler, seen = recording(httpx.Response(200))

        with pytest.raises(AlertUnresolvable):
            resolver(handler).resolve_alert({"repository": "octo/app"}, comment="x")
        assert seen == []


class TestTruncateComment:
    def test_truncate_short_comment_unchanged(self):
        """A comment within the limit is only stripped of outer whitespace."""
        assert truncate_comment("  contained at 10:00Z \n") == "contained at 10:00Z"

    def test_truncate_wide_characters_cut_between_code_points(self):
        """Characters outside the BMP are kept whole; the result fits the limit."""
        cut = truncate_comment("\N{GRINNING FACE}" * 300, limit=10)

        assert cut == "\N{GRINNING FACE}" * 9 + "\N{HORIZONTAL ELLIPSIS}"

    def test_truncate_space_at_cut_dropped(self):
        """Whitespace left at the cut is dropped before the ellipsis."""
        assert (
            truncate_comment("abcd     efgh", limit=6) == "abcd\N{HORIZONTAL ELLIPSIS}"
        )
