"""Fixtures for the report tests: a fake clock and a gateway that uses it."""

from __future__ import annotations

import pytest
from ctfakes import FakeClock

from responder.aws.session import AwsGateway


@pytest.fixture
def clock() -> FakeClock:
    """Return a fake monotonic clock whose `sleep` advances it."""
    return FakeClock()


@pytest.fixture
def gateway(clock: FakeClock) -> AwsGateway:
    """Return a gateway with three attempts whose retry sleeps take no time."""
    return AwsGateway(region="us-east-1", max_attempts=3, sleep=clock.sleep)
