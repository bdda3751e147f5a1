"""One gateway for every AWS call: cached clients, retries, errors mapped to ours."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import structlog
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from responder.aws.retry import error_code_of, is_throttling, retrying
from responder.exceptions import (
    AccessDenied,
    AwsCallFailed,
    LimitExceeded,
    ResourceNotFound,
    SecretScheduledForDeletion,
    Throttled,
)

__all__ = [
    "ERROR_CLASSES",
    "AwsCall",
    "AwsGateway",
    "CallObserver",
    "is_mutating",
    "map_client_error",
    "request_id_of",
]

log = structlog.get_logger(__name__)

# Error codes we act on, by the class the rest of the responder catches.
ERROR_CLASSES: dict[str, type[AwsCallFailed]] = {
    "AccessDenied": AccessDenied,
    "AccessDeniedException": AccessDenied,
    "UnauthorizedOperation": AccessDenied,
    "UnrecognizedClientException": AccessDenied,
    "InvalidClientTokenId": AccessDenied,
    "NoSuchEntity": ResourceNotFound,
    "ResourceNotFoundException": ResourceNotFound,
    "TrailNotFoundException": ResourceNotFound,
    "NoSuchBucket": ResourceNotFound,
    "LimitExceeded": LimitExceeded,
}

_READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Head", "Select")


def is_mutating(operation: str) -> bool:
    """Return whether an operation name (PascalCase) can change AWS state."""
    return not operation.startswith(_READ_PREFIXES)


def request_id_of(payload: dict[str, Any]) -> str | None:
    """Return the AWS request ID of a response or error body, if it has one."""
    request_id = payload.get("ResponseMetadata", {}).get("RequestId")

    return str(request_id) if request_id else None


def map_client_error(exc: ClientError | BotoCoreError, operation: str) -> AwsCallFailed:
    """Translate a botocore error into the responder's class for its code."""
    code = error_code_of(exc)
    request_id = None
    if isinstance(exc, ClientError):
        request_id = request_id_of(dict(exc.response))
    message = str(exc)
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message") or code)

    cls: type[AwsCallFailed] = ERROR_CLASSES.get(code, AwsCallFailed)
    if is_throttling(exc):
        cls = Throttled
    elif code == "InvalidRequestException" and "deletion" in message.lower():
        cls = SecretScheduledForDeletion

    return cls(
        f"{operation} failed: {code}: {message}",
        operation=operation,
        error_code=code,
        request_id=request_id,
    )


@dataclass(frozen=True)
class AwsCall:
    """What one finished AWS call did, for step records and the audit trail."""

    service: str
    operation: str
    region: str
    target: str | None
    request_id: str | None
    error_code: str | None
    duration_ms: float


class CallObserver(Protocol):
    """Receives every finished AWS call, succeeded or failed."""

    def __call__(self, call: AwsCall) -> None: ...


class AwsGateway:
    """Makes AWS calls with one retry policy and one error vocabulary.

    Clients are cached per service and region; the gateway is thread-safe and meant
    to be shared by every playbook run of a process.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        session: boto3.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "responder/0.1",
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        self._session = session or boto3.Session()
        self.sleep = sleep
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        # Tenacity owns retries, so botocore must not retry underneath it.
        self._config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=20,
            user_agent_extra=user_agent,
        )

    def client(self, service: str, region: str | None = None) -> Any:
        """Return the cached boto3 client for `service` in `region`."""
        key = (service, region or self.region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._session.client(
                    service,  # type: ignore[call-overload]
                    region_name=key[1],
                    endpoint_url=self.endpoint_url,
                    config=self._config,
                )

            return self._clients[key]

    def call(
        self,
        service: str,
        operation: str,
        *,
        region: str | None = None,
        idempotent: bool = True,
        target: str | None = None,
        observer: CallObserver | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Call `operation` (PascalCase) and return the response.

        Throttling is retried for every call; 5xx and lost connections only for
        calls marked idempotent. `observer` sees the final outcome once.

        Raises:
            AwsCallFailed: or the subclass for its error code, after the retries.
        """
        client = self.client(service, region)
        method = getattr(client, xform_name(operation))
        policy = retrying(
            operation=operation,
            max_attempts=self.max_attempts,
            idempotent=idempotent,
            sleep=self.sleep,
        )
        started = time.perf_counter()

        try:
            response: dict[str, Any] = policy(method, **params)
        except (ClientError, BotoCoreError) as exc:
            error = map_client_error(exc, operation)
            self._observe(observer, service, operation, region, target, started, error)
            raise error from exc

        self._observe(observer, service, operation, region, target, started, response)

        return response

    def _observe(
        self,
        observer: CallObserver | None,
        service: str,
        operation: str,
        region: str | None,
        target: str | None,
        started: float,
        outcome: dict[str, Any] | AwsCallFailed,
    ) -> None:
        if observer is None:
            return
        if isinstance(outcome, AwsCallFailed):
            request_id, error_code = outcome.request_id, outcome.error_code
        else:
            request_id, error_code = request_id_of(outcome), None
        observer(
            AwsCall(
                service=service,
                operation=operation,
                region=region or self.region,
                target=target,
                request_id=request_id,
                error_code=error_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        )
