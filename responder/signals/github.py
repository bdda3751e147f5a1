"""GitHub secret-scanning webhooks: verify, parse, and look up the key ID."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import structlog

from responder.exceptions import (
    AlertUnresolvable,
    GitHubLookupFailed,
    SignalMalformed,
    WebhookSignatureInvalid,
)
from responder.signals._body import load_json

__all__ = [
    "ACCESS_KEY_ID",
    "ACTED_ON_ACTIONS",
    "AWS_SECRET_TYPES",
    "RESOLUTION_COMMENT_LIMIT",
    "AlertLookup",
    "AlertResolver",
    "GitHubAlert",
    "GitHubAlertLookup",
    "HttpxAlertLookup",
    "extract_access_key_ids",
    "parse_delivery",
    "truncate_comment",
    "verify_signature",
]

log = structlog.get_logger(__name__)

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
ACCESS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")

AWS_SECRET_TYPES = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_temporary_access_key_id",
        "aws_session_token",
    }
)
ACTED_ON_ACTIONS = frozenset({"created", "reopened", "publicly_leaked", "validated"})
# GitHub's OpenAPI description sets no maximum for `resolution_comment`; its
# sibling fields (code scanning and Dependabot `dismissed_comment`) stop at 280
# characters, so we keep to that until GitHub documents a limit of its own.
RESOLUTION_COMMENT_LIMIT = 280


def verify_signature(body: bytes, header: str | None, secret: bytes) -> None:
    """Check `X-Hub-Signature-256` over the exact bytes received.

    Raises:
        WebhookSignatureInvalid: missing, malformed, or not matching.
    """
    if not header:
        msg = "missing X-Hub-Signature-256 header"
        raise WebhookSignatureInvalid(msg)
    scheme, _, digest = header.partition("=")
    if scheme != "sha256" or not _HEX_DIGEST.fullmatch(digest):
        msg = "malformed X-Hub-Signature-256: expected sha256=<64 hex characters>"
        raise WebhookSignatureInvalid(msg)

    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest.lower()):
        msg = "X-Hub-Signature-256 does not match the body and the configured secret"
        raise WebhookSignatureInvalid(msg)


@dataclass(frozen=True)
class GitHubAlert:
    """What a `secret_scanning_alert` delivery says, without any secret value."""

    action: str
    number: int | None
    secret_type: str
    validity: str | None
    url: str | None
    html_url: str | None
    repository: str | None

    @property
    def is_aws(self) -> bool:
        """Return whether the alert is for an AWS credential."""
        return self.secret_type in AWS_SECRET_TYPES

    def ignore_reason(self) -> str | None:
        """Return why this delivery is recorded but not acted on, or `None`."""
        if not self.is_aws:
            return f"ignored: not an AWS credential (secret_type {self.secret_type})"
        if self.action not in ACTED_ON_ACTIONS:
            return f"ignored: action {self.action!r} is not acted on"
        if self.action == "validated" and self.validity != "active":
            return f"ignored: validated with validity {self.validity!r}, not active"

        return None

    def details(self) -> dict[str, Any]:
        """Return the fields worth keeping with the signal."""
        return {
            "action": self.action,
            "alert_number": self.number,
            "secret_type": self.secret_type,
            "validity": self.validity,
            "alert_url": self.url,
            "html_url": self.html_url,
            "repository": self.repository,
        }


def parse_delivery(body: bytes) -> dict[str, Any]:
    """Parse a verified body as a JSON object.

    Raises:
        SignalMalformed: the body is empty, not JSON, or not an object.
    """
    payload = load_json(body, expected="a JSON object")
    if not isinstance(payload, dict):
        msg = "body must be a JSON object"
        raise SignalMalformed(msg)

    return payload


def parse_alert(payload: dict[str, Any]) -> GitHubAlert:
    """Read a `secret_scanning_alert` payload.

    Raises:
        SignalMalformed: `action` or `alert` is missing or of the wrong type.
    """
    alert = payload.get("alert")
    action = payload.get("action")
    if not isinstance(alert, dict) or not isinstance(action, str):
        msg = (
            "secret_scanning_alert payload needs an 'action' string and 'alert' object"
        )
        raise SignalMalformed(msg)
    repository = payload.get("repository")
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    number = alert.get("number")

    return GitHubAlert(
        action=action,
        number=number if isinstance(number, int) else None,
        secret_type=str(alert.get("secret_type") or ""),
        validity=alert.get("validity")
        if isinstance(alert.get("validity"), str)
        else None,
        url=alert.get("url") if isinstance(alert.get("url"), str) else None,
        html_url=alert.get("html_url")
        if isinstance(alert.get("html_url"), str)
        else None,
        repository=full_name if isinstance(full_name, str) else None,
    )


def extract_access_key_ids(text: str) -> list[str]:
    """Return the distinct AKIA/ASIA key IDs in `text`, in order of appearance."""
    return list(dict.fromkeys(ACCESS_KEY_ID.findall(text)))


def truncate_comment(comment: str, limit: int = RESOLUTION_COMMENT_LIMIT) -> str:
    """Return `comment` trimmed to at most `limit` characters, ending in `…` if cut.

    Cuts between code points, never inside one, and drops whitespace left
    dangling at the cut.
    """
    text = comment.strip()
    if len(text) <= limit:
        return text

    return text[: limit - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}"


class AlertLookup(Protocol):
    """Fetches the REST alert (which carries `secret`) for a webhook alert."""

    def key_ids(self, details: dict[str, Any]) -> list[str]:
        """Return the key IDs the alert names (empty when it names none).

        Raises:
            GitHubLookupFailed: the lookup failed; try again later.
        """
        ...


class AlertResolver(Protocol):
    """Closes a GitHub secret-scanning alert once its key has been dealt with.

    Kept apart from `AlertLookup` so that a caller needing only one of the two
    depends on only one. A fake needs just this method: record the alert number
    and comment, and raise a configured `GitHubLookupFailed` to test failures.
    Callers may call it again for the same alert: the real implementation treats
    an alert that is already resolved as success, so fakes should too.
    """

    def resolve_alert(self, details: dict[str, Any], *, comment: str) -> None:
        """Mark the alert resolved as revoked, with `comment` in its timeline.

        Raises:
            GitHubLookupFailed: the update failed; it may be tried again later.
        """
        ...


class GitHubAlertLookup:
    """Builds the alert URL under the configured API base only (no SSRF)."""

    def __init__(self, *, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    def alert_url(self, details: dict[str, Any]) -> str:
        """Return the REST URL of the alert, refusing one outside the API base.

        Raises:
            GitHubLookupFailed: the delivery does not say which alert, or points
                elsewhere than the configured GitHub API.
        """
        repository, number = details.get("repository"), details.get("alert_number")
        if not repository or number is None or number < 1:
            msg = "delivery names no repository and alert number"
            raise AlertUnresolvable(msg)
        url = f"{self.api_url}/repos/{repository}/secret-scanning/alerts/{number}"
        given = details.get("alert_url")
        if given and given.rstrip("/") != url:
            given_host = urlsplit(given).netloc
            msg = f"alert url on {given_host} is not {url}; refusing to fetch it"
            raise AlertUnresolvable(msg)

        return url


class HttpxAlertLookup(GitHubAlertLookup):
    """Reads alerts from the GitHub REST API with a token, through httpx."""

    def __init__(
        self,
        *,
        api_url: str,
        token: str | None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(api_url=api_url)
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "responder/0.1",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def key_ids(self, details: dict[str, Any]) -> list[str]:
        """Return the key IDs in the alert's `secret` field; never keeps the secret."""
        url = self.alert_url(details)
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            msg = f"GitHub alert lookup failed: {type(exc).__name__}"
            raise GitHubLookupFailed(msg) from None
        if response.status_code != 200:
            msg = f"GitHub alert lookup answered HTTP {response.status_code}"
            raise GitHubLookupFailed(msg)
        try:
            secret = response.json().get("secret")
        except (ValueError, AttributeError):
            msg = "GitHub alert lookup answered something other than a JSON object"
            raise GitHubLookupFailed(msg) from None

        return extract_access_key_ids(secret) if isinstance(secret, str) else []

    def resolve_alert(self, details: dict[str, Any], *, comment: str) -> None:
        """Mark the REST alert resolved as `revoked`; already resolved is success.

        `comment` is cut to `RESOLUTION_COMMENT_LIMIT` characters (a blank one is
        sent as `null`); it must hold no secret, as GitHub shows it to everyone
        who can see the alert. Idempotent: when GitHub refuses the update (400
        "resolution was not changed", 422), the alert is read back, and one that
        is already resolved, by anyone and for any reason, counts as done.

        Raises:
            AlertUnresolvable: the delivery names no alert, or an alert URL
                outside the configured API; nothing was sent.
            GitHubLookupFailed: GitHub could not be reached or answered another
                status (404: gone, or secret scanning disabled; 403: token lacks
                the `secret_scanning_alerts` write permission).
        """
        url = self.alert_url(details)
        text = truncate_comment(comment)
        body = {
            "state": "resolved",
            "resolution": "revoked",
            "resolution_comment": text or None,
        }
        where = {
            "repository": details.get("repository"),
            "alert_number": details.get("alert_number"),
        }

        try:
            response = self._client.patch(url, json=body)
        except httpx.HTTPError as exc:
            msg = f"GitHub alert update failed: {type(exc).__name__}"
            raise GitHubLookupFailed(msg) from None

        status = response.status_code
        if status == 200:
            log.info("github_alert_resolved", resolution="revoked", **where)
            return
        if status in {400, 422}:
            resolution = self._resolution_of(url)
            if resolution is not None:
                log.info(
                    "github_alert_already_resolved",
                    resolution=resolution,
                    status_code=status,
                    **where,
                )
                return
        msg = f"GitHub alert update answered HTTP {status}"
        raise GitHubLookupFailed(msg)

    def _resolution_of(self, url: str) -> str | None:
        """Return how the alert was resolved, or `None` if open or unreadable."""
        try:
            response = self._client.get(url)
            alert = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        # Only `state` and `resolution` are read: the alert also carries `secret`.
        if not isinstance(alert, dict) or alert.get("state") != "resolved":
            return None
        resolution = alert.get("resolution")

        return resolution if isinstance(resolution, str) else "unknown"

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
