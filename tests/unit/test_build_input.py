"""What a build's workflow is started with comes from the deployment's settings."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pydantic import ValidationError

from kiln.settings import Settings
from workflows.client import TemporalWorkflows


def started_with(**settings: Any) -> Any:
    facade = TemporalWorkflows(cast(Any, None), Settings(**settings))
    return facade.build_input(7)


def test_a_lost_host_is_given_up_on_after_five_seconds_by_default() -> None:
    assert started_with().heartbeat_timeout_seconds == 5


def test_the_heartbeat_timeout_and_pickup_come_from_the_settings() -> None:
    request = started_with(heartbeat_timeout_seconds=12, host_pickup_seconds=9)
    assert (request.heartbeat_timeout_seconds, request.host_pickup_seconds) == (12, 9)


def test_a_heartbeat_timeout_hosts_cannot_meet_is_refused() -> None:
    # Hosts heartbeat once a second: under 2 s a busy host would be taken for lost.
    with pytest.raises(ValidationError, match="heartbeat_timeout_seconds"):
        Settings(heartbeat_timeout_seconds=1)
