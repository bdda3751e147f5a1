"""The GitHub REST alert lookup: only the configured host, never the secret kept."""

from __future__ import annotations

import json

import httpx
import pytest
from helpers import CORPUS

from responder.exceptions import GitHubLookupFailed
from responder.signals.github import HttpxAlertLookup, extract_access_key_ids

REST = (
    CORPUS
    / "github"
    / "github-openapi-example_REST_get-alert_resolved_used_in_tests.json"
)
DETAILS = {
    "repository": "octo/app",
    "alert_number": 42,
    "alert_url": "https://api.github.com/repos/octo/app/secret-scanning/alerts/42",
}


def lookup(handler) -> HttpxAlertLookup:
    return HttpxAlertLookup(
        api_url="https://api.github.com",
        token="t0ken",
        transport=httpx.MockTransport(handler),
    )


class TestAlertLookup:
    def test_key_id_taken_from_secret_with_token(self):
        """The REST alert's secret yields the key ID; the request carries the token."""
        seen: list[httpx.Request] = []
        alert = json.loads(REST.read_text())
        alert["secret"] = "AKIAIOSFODNN7EXAMPLE"

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json=alert)

        assert lookup(handler).key_ids(DETAILS) == ["AKIAIOSFODNN7EXAMPLE"]
        assert str(seen[0].url) == DETAILS["alert_url"]
        assert seen[0].headers["Authorization"] == "Bearer t0ken"

    def test_pair_secret_yields_only_the_id(self):
        """A secret holding ID and secret key gives back only the ID."""
        pair = "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

        def handler(_request):
            return httpx.Response(200, json={"secret": pair})

        assert lookup(handler).key_ids(DETAILS) == ["AKIAIOSFODNN7EXAMPLE"]

    def test_real_non_aws_secret_names_no_key(self):
        """The real REST example (a Mailchimp key) names no AWS key."""
        body = REST.read_bytes()

        assert (
            lookup(lambda _r: httpx.Response(200, content=body)).key_ids(DETAILS) == []
        )

    @pytest.mark.parametrize("status", [401, 404, 500, 502])
    def test_http_error_raises_lookup_failed(self, status):
        """A non-200 answer is a lookup failure to retry."""
        with pytest.raises(GitHubLookupFailed, match=str(status)):
            lookup(lambda _r: httpx.Response(status)).key_ids(DETAILS)

    def test_alert_url_elsewhere_is_never_fetched(self):
        """An alert URL outside the configured API is refused, token unsent."""
        called: list[httpx.Request] = []
        details = {**DETAILS, "alert_url": "https://evil.example/steal"}

        with pytest.raises(GitHubLookupFailed, match="refusing"):
            lookup(lambda r: called.append(r) or httpx.Response(200)).key_ids(details)
        assert called == []


class TestExtract:
    def test_ids_found_by_pattern_with_boundaries(self):
        """Only whole 20-character AKIA/ASIA IDs are taken, each once."""
        text = (
            "x AKIAIOSFODNN7EXAMPLE,ASIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLE AKIA123"
        )

        assert extract_access_key_ids(text) == [
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAIOSFODNN7EXAMPLE",
        ]
        assert extract_access_key_ids("XAKIAIOSFODNN7EXAMPLEX") == []
