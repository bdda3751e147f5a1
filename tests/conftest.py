"""Shared fixtures: no test can reach a real account, the network, or local time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from helpers import ACCOUNT, API_TOKEN, WEBHOOK_SECRET, World
from moto import mock_aws

from responder.app import Services, build_services
from responder.aws.session import AwsGateway
from responder.config import Settings


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scrub AWS, proxy and responder variables; set fake credentials."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "RESPONDER_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def aws() -> Iterator[None]:
    """Run the test against moto's simulated AWS."""
    with mock_aws():
        yield


@pytest.fixture
def world(aws: None) -> World:
    """A user with one exposed key, in moto."""
    return World()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own database, moto's account, no LookupEvents."""
    return Settings(
        database=tmp_path / "responder.db",
        github_webhook_secret=WEBHOOK_SECRET,
        api_token=API_TOKEN,
        github_token="test-github-token",
        github_api_url="https://api.github.example",
        managed_accounts=(ACCOUNT,),
        regions=("us-east-1",),
        lookup_events=False,
        lookup_events_interval=0,
        workers=2,
    )


@pytest.fixture
def gateway() -> AwsGateway:
    """A gateway that never really sleeps between retries."""
    return AwsGateway(region="us-east-1", max_attempts=3, sleep=lambda _s: None)


@pytest.fixture
def make_services(settings: Settings, gateway: AwsGateway) -> Any:
    """Build the service's parts with a fake GitHub lookup; stopped at teardown."""
    built: list[Services] = []

    def make(
        lookup: Any = None,
        *,
        notifier: Any = None,
        resolver: Any = None,
        http_transport: Any = None,
        **overrides: Any,
    ) -> Services:
        chosen = (
            Settings.model_validate({**settings.model_dump(), **overrides})
            if overrides
            else settings
        )
        services = build_services(
            chosen,
            gateway=gateway,
            alert_lookup=lookup,
            alert_resolver=resolver,
            notifier=notifier,
            http_transport=http_transport,
        )
        services.runner._sleep = lambda _s: None
        built.append(services)
        return services

    yield make
    for services in built:
        services.engine.stop(wait=True)
        services.store.close()
