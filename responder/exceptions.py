"""Errors raised by the responder.

The tree is split by who must act::

    ResponderError
    ├── ConfigError                 the operator: fix the settings, then restart
    ├── PlaybookValidationError     the operator: fix a playbook file, then restart
    ├── SignalRejected              the sender: the request is refused (4xx, or
    │   │                           503 while we cannot verify it yet)
    │   ├── WebhookSignatureInvalid
    │   ├── SignalForbidden
    │   ├── SignalMalformed
    │   ├── BodyTooLarge
    │   ├── EndpointDisabled
    │   └── PeerUnavailable
    ├── ExternalServiceError        AWS or an HTTP peer failed
    │   ├── AwsCallFailed
    │   │   ├── AccessDenied
    │   │   ├── ResourceNotFound
    │   │   ├── LimitExceeded
    │   │   ├── SecretScheduledForDeletion
    │   │   └── Throttled
    │   ├── GitHubLookupFailed
    │   │   └── AlertUnresolvable
    │   └── KeyFetchFailed
    └── ExecutionError              a playbook step cannot go on
        └── ReplacementSecretLost
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AlertUnresolvable",
    "AwsCallFailed",
    "BodyTooLarge",
    "ConfigError",
    "EndpointDisabled",
    "ExecutionError",
    "ExternalServiceError",
    "GitHubLookupFailed",
    "KeyFetchFailed",
    "LimitExceeded",
    "PeerUnavailable",
    "PlaybookValidationError",
    "ReplacementSecretLost",
    "ResourceNotFound",
    "ResponderError",
    "SecretScheduledForDeletion",
    "SignalForbidden",
    "SignalMalformed",
    "SignalRejected",
    "Throttled",
    "WebhookSignatureInvalid",
]


class ResponderError(Exception):
    """Root of every error the responder raises on purpose."""


class ConfigError(ResponderError):
    """Raised at startup when settings are missing or contradict each other."""


class PlaybookValidationError(ResponderError):
    """Raised at load time when a playbook names an unknown action or bad options."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class SignalRejected(ResponderError):
    """Raised when an incoming signal is refused; `status_code` is the HTTP answer."""

    status_code = 400


class WebhookSignatureInvalid(SignalRejected):
    """Raised when a webhook signature is missing, malformed or does not match."""

    status_code = 401


class SignalForbidden(SignalRejected):
    """Raised when a verified request comes from a sender we do not accept."""

    status_code = 403


class SignalMalformed(SignalRejected):
    """Raised when a signed body cannot be understood (not JSON, wrong shape)."""

    status_code = 400


class BodyTooLarge(SignalRejected):
    """Raised when a request body is larger than `RESPONDER_MAX_BODY_BYTES`."""

    status_code = 413


class EndpointDisabled(SignalRejected):
    """Raised when an endpoint's settings are missing, so nothing can be verified."""

    status_code = 404


class PeerUnavailable(SignalRejected):
    """Raised when a certificate or key needed to verify could not be fetched."""

    status_code = 503


class ExternalServiceError(ResponderError):
    """Raised when AWS or an HTTP peer fails after the retries we allow."""


class AwsCallFailed(ExternalServiceError):
    """Raised when an AWS call fails; carries operation, error code, request ID."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        error_code: str,
        request_id: str | None = None,
    ) -> None:
        self.operation = operation
        self.error_code = error_code
        self.request_id = request_id
        super().__init__(message)


class AccessDenied(AwsCallFailed):
    """Raised when AWS refuses the responder's own credentials for a call."""


class ResourceNotFound(AwsCallFailed):
    """Raised when AWS does not know the named entity (`NoSuchEntity`, ...)."""


class LimitExceeded(AwsCallFailed):
    """Raised when IAM refuses a third access key for a user."""


class SecretScheduledForDeletion(AwsCallFailed):
    """Raised when Secrets Manager refuses a write to a secret pending deletion."""


class Throttled(AwsCallFailed):
    """Raised when AWS keeps throttling after every retry we allow."""


class GitHubLookupFailed(ExternalServiceError):
    """Raised when the GitHub alert lookup fails; the signal is kept and retried."""


class AlertUnresolvable(GitHubLookupFailed):
    """Raised when a delivery can never name a key (no alert, or a foreign URL)."""


class KeyFetchFailed(ExternalServiceError):
    """Raised when a signing certificate or public key list cannot be fetched."""


class ExecutionError(ResponderError):
    """Raised when a playbook step cannot go on for a reason of its own."""


class ReplacementSecretLost(ExecutionError):
    """Raised when the secret of a minted key is no longer held in memory."""

    def __init__(self, access_key_id: str) -> None:
        self.access_key_id = access_key_id
        super().__init__(f"secret of minted key {access_key_id} is not held in memory")
