"""Settings: every option, its environment variable and its default, in one place.

Environment variables are read here and nowhere else, all under the `RESPONDER_`
prefix. Secret settings are `SecretStr`, so they never show in a repr or a log.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from responder.exceptions import ConfigError

__all__ = [
    "DEFAULT_HEALTH_RISK_CODES",
    "PREFIX",
    "AccountRole",
    "Settings",
    "default_playbooks_dir",
]

PREFIX = "RESPONDER_"

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$")

# AWS Health codes under which real key leaks have arrived (FACTS.md).
DEFAULT_HEALTH_RISK_CODES = (
    "AWS_RISK_CREDENTIALS_EXPOSED",
    "AWS_RISK_CREDENTIALS_EXPOSURE_SUSPECTED",
    "AWS_RISK_CREDENTIALS_COMPROMISED",
    "AWS_RISK_CREDENTIALS_COMPROMISE_SUSPECTED",
    "AWS_RISK_IAM_QUARANTINE",
)


class AccountRole(BaseModel):
    """The role the responder assumes to act in one managed account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role_arn: str = Field(description="arn:aws:iam::<account>:role/<name>")
    external_id: str | None = Field(
        None, min_length=2, max_length=1224, description="sts:ExternalId, if required."
    )


def default_playbooks_dir() -> Path:
    """Return `playbooks/` beside the package (a checkout), else `./playbooks`."""
    beside_package = Path(__file__).resolve().parent.parent / "playbooks"
    if beside_package.is_dir():
        return beside_package

    return Path("playbooks")


class Settings(BaseModel):
    """The responder's configuration, read once at startup."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database: Path = Field(
        Path("responder.db"), description="SQLite file holding signals and incidents."
    )
    github_webhook_secret: SecretStr | None = Field(
        None, description="Secret shared with the GitHub webhook (HMAC-SHA256)."
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token for the /api/v1 endpoints."
    )
    github_token: SecretStr | None = Field(
        None, description="Token that may read secret-scanning alerts."
    )
    github_api_url: str = Field(
        "https://api.github.com",
        description="GitHub REST base; alert URLs outside it are never fetched.",
    )
    playbooks_dir: Path = Field(default_factory=default_playbooks_dir)
    managed_accounts: tuple[str, ...] = Field(
        (),
        description="Account IDs the responder may act in; empty means its own.",
    )
    regions: tuple[str, ...] = Field(
        (), description="Regions to read CloudTrail in; empty means all enabled."
    )
    aws_region: str = Field("us-east-1", description="Region for IAM, STS and SM.")
    aws_endpoint_url: str | None = Field(
        None, description="Send every AWS call here (the sandbox's moto server)."
    )
    aws_max_attempts: int = Field(5, ge=1, le=10)
    secret_name_template: str = Field(
        "responder/{user_name}/access-key",
        description="Secrets Manager name for a user's replacement key.",
    )
    report_window_days: int = Field(90, ge=1, le=90)
    trail_bucket: str | None = Field(
        None, description="S3 bucket of the trail; found from DescribeTrails if unset."
    )
    lookup_events: bool = Field(
        True, description="Read CloudTrail LookupEvents (off where it is not modelled)."
    )
    report_start: datetime | None = Field(
        None, description="Report window start (ISO 8601); default now minus the days."
    )
    lookup_events_interval: float = Field(
        0.55, ge=0, description="Seconds between LookupEvents calls in one region."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024)
    workers: int = Field(4, ge=1, le=64, description="Playbooks run at once.")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL used in links to reports."
    )
    account_roles: dict[str, AccountRole] = Field(
        default_factory=dict,
        description="Per managed account, the role to assume there (JSON object).",
    )
    protected_principals: tuple[str, ...] = Field(
        (),
        description="IAM user or role names acted on only after a person approves.",
    )
    protected_tag: str = Field(
        "responder:protected",
        description="Tag key that marks a user or role as protected.",
    )
    aws_webhook_secret: SecretStr | None = Field(
        None, description="Shared secret EventBridge API destinations send."
    )
    aws_webhook_header: str = Field(
        "x-responder-token",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="Header that carries the EventBridge shared secret.",
    )
    health_risk_codes: tuple[str, ...] = Field(
        DEFAULT_HEALTH_RISK_CODES,
        description="AWS Health RISK event codes that mean a key is exposed.",
    )
    sns_topic_arns: tuple[str, ...] = Field(
        (), description="SNS topics whose messages and subscriptions are accepted."
    )
    sns_max_age_seconds: int = Field(
        3600, ge=60, le=86_400, description="Older signed SNS messages are replays."
    )
    scanner_hmac_secret: SecretStr | None = Field(
        None, description="Shared HMAC secret for scanners posting partner format."
    )
    notify_webhook_url: SecretStr | None = Field(
        None, description="Slack-compatible incoming webhook for notifications."
    )
    resolve_github_alerts: bool = Field(
        True, description="Resolve the GitHub alert as revoked after containment."
    )

    @property
    def all_managed_accounts(self) -> tuple[str, ...]:
        """Return every account the responder may act in (empty: only its own)."""
        return tuple(dict.fromkeys([*self.managed_accounts, *self.account_roles]))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> Settings:
        """Build settings from `RESPONDER_*` variables, then apply `overrides`.

        Raises:
            ConfigError: a variable is unknown, malformed or contradicts another.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        known = set(cls.model_fields)
        for name, raw in environ.items():
            if not name.startswith(PREFIX):
                continue
            field = name.removeprefix(PREFIX).lower()
            if field not in known:
                msg = f"unknown setting {name}; known: {_env_names(known)}"
                raise ConfigError(msg)
            if field in _LIST_FIELDS:
                values[field] = _split(raw)
            elif field in _JSON_FIELDS:
                values[field] = _json(name, raw)
            else:
                values[field] = raw
        values.update(overrides)

        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{PREFIX}{'.'.join(map(str, err['loc'])).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(problems) from None
        settings.check()

        return settings

    def check(self) -> None:
        """Refuse contradictory or malformed values.

        Raises:
            ConfigError: with every problem found.
        """
        problems = [
            f"{PREFIX}MANAGED_ACCOUNTS: {account!r} is not a 12-digit account ID"
            for account in self.managed_accounts
            if not _ACCOUNT_ID.match(account)
        ]
        if "{user_name}" not in self.secret_name_template:
            problems.append(f"{PREFIX}SECRET_NAME_TEMPLATE must contain {{user_name}}")
        for name in ("github_webhook_secret", "api_token"):
            value = getattr(self, name)
            if value is not None and len(value.get_secret_value()) < 16:
                problems.append(
                    f"{PREFIX}{name.upper()} must be at least 16 characters"
                )
        for account, role in self.account_roles.items():
            match = _ROLE_ARN.match(role.role_arn)
            if not _ACCOUNT_ID.match(account):
                problems.append(
                    f"{PREFIX}ACCOUNT_ROLES: {account!r} is not a 12-digit account ID"
                )
            elif match is None or match.group(1) != account:
                problems.append(
                    f"{PREFIX}ACCOUNT_ROLES: role for {account} must be an IAM role"
                    f" ARN in that account (got {role.role_arn!r})"
                )
        problems.extend(
            f"{PREFIX}SNS_TOPIC_ARNS: {arn!r} is not an SNS topic ARN"
            for arn in self.sns_topic_arns
            if not _TOPIC_ARN.match(arn)
        )
        for name in ("aws_webhook_secret", "scanner_hmac_secret"):
            value = getattr(self, name)
            if value is not None and len(value.get_secret_value()) < 16:
                problems.append(
                    f"{PREFIX}{name.upper()} must be at least 16 characters"
                )
        if self.report_start is not None and self.report_start.tzinfo is None:
            problems.append(f"{PREFIX}REPORT_START needs a timezone (end it with Z)")
        if problems:
            raise ConfigError("; ".join(problems))


_LIST_FIELDS = {
    "managed_accounts",
    "regions",
    "protected_principals",
    "health_risk_codes",
    "sns_topic_arns",
}
_JSON_FIELDS = {"account_roles"}


def _json(name: str, raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        msg = f"{name} must be JSON: {exc.msg} at character {exc.pos}"
        raise ConfigError(msg) from None


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _env_names(fields: set[str]) -> str:
    return ", ".join(sorted(PREFIX + field.upper() for field in fields))
