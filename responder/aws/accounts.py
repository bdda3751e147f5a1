"""Which accounts the responder may act in, and the credentials it acts with there."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import botocore.session
import structlog
from botocore.credentials import RefreshableCredentials

from responder.aws.session import AwsGateway
from responder.config import AccountRole, Settings

__all__ = ["AccountRouter"]

log = structlog.get_logger(__name__)

_SESSION_NAME = "responder"
_SESSION_SECONDS = 3600


class AccountRouter:
    """Routes each incident's AWS calls to its account.

    The home gateway (the responder's own credentials) answers for its own account
    and for managed accounts without a configured role. An account in
    `account_roles` gets a gateway whose credentials come from `sts:AssumeRole`
    (with the external ID), refreshed before they expire. An account that is neither
    is not managed: nothing may be done there. Thread-safe; gateways are cached.
    """

    def __init__(self, *, settings: Settings, home: AwsGateway) -> None:
        self.settings = settings
        self.home = home
        self._gateways: dict[str, AwsGateway] = {}
        self._lock = threading.Lock()
        self._identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """Return the responder's own `GetCallerIdentity` (cached)."""
        if self._identity is None:
            self._identity = self.home.call("sts", "GetCallerIdentity")

        return self._identity

    def home_account(self) -> str:
        """Return the account of the responder's own credentials."""
        return str(self.identity()["Account"])

    def managed_accounts(self) -> tuple[str, ...]:
        """Return the accounts the responder may act in (its own when none is set)."""
        return self.settings.all_managed_accounts or (self.home_account(),)

    def is_managed(self, account_id: str) -> bool:
        """Return whether the responder may act in `account_id`."""
        return account_id in self.managed_accounts()

    def gateway_for(self, account_id: str | None) -> AwsGateway:
        """Return the gateway that acts in `account_id` (home when unknown).

        Raises:
            PermissionError: the account is not managed (a caller bug: check first).
        """
        role = self.settings.account_roles.get(account_id or "")
        if role is None:
            if account_id is not None and not self.is_managed(account_id):
                msg = f"account {account_id} is not managed by the responder"
                raise PermissionError(msg)
            return self.home

        with self._lock:
            gateway = self._gateways.get(account_id or "")
            if gateway is None:
                gateway = self._assumed_gateway(role)
                self._gateways[account_id or ""] = gateway

        return gateway

    def _assumed_gateway(self, role: AccountRole) -> AwsGateway:
        def fetch() -> dict[str, str]:
            params: dict[str, Any] = {
                "RoleArn": role.role_arn,
                "RoleSessionName": _SESSION_NAME,
                "DurationSeconds": _SESSION_SECONDS,
            }
            if role.external_id:
                params["ExternalId"] = role.external_id
            credentials = self.home.call("sts", "AssumeRole", **params)["Credentials"]
            log.info(
                "role_assumed",
                role_arn=role.role_arn,
                access_key_id=credentials["AccessKeyId"],
            )

            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        # Assumed lazily: the first call in the account pays for AssumeRole, and
        # botocore refreshes the credentials shortly before they expire.
        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )
        core = botocore.session.get_session()
        # botocore offers no public setter for a refreshable credential object.
        core._credentials = credentials  # type: ignore[attr-defined]

        return AwsGateway(
            region=self.home.region,
            endpoint_url=self.home.endpoint_url,
            max_attempts=self.home.max_attempts,
            session=boto3.Session(botocore_session=core),
            sleep=self.home.sleep,
        )
