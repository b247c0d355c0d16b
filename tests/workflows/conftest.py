"""The workflow tier: BuildWorkflow on a Temporal dev server this tier starts, with scripted
fakes in place of the activities (no database, no Docker).

Each test gets its own task queues: one for the workflow and its local activities, and two live
host queues whose worker runs the fake host activities."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cli.temporal_server import temporal_binary
from tests.workflows.fakes import WAIT_SECONDS, Fakes, Script
from workflows.build import BuildWorkflow
from workflows.ids import workflow_id
from workflows.interface import BuildInput, BuildResult
from workflows.visibility import SEARCH_ATTRIBUTES

BuildHandle = WorkflowHandle[BuildWorkflow, BuildResult]

# A workflow task that waits on a local activity is extended every 80% of this; a cancel or a
# signal sent meanwhile reaches the workflow at the next extension. Production's 10 s would
# make each test that cancels during a local activity take ~8 s; much less than 2 s risks
# workflow-task timeouts on a loaded machine.
TASK_TIMEOUT = timedelta(seconds=2)


@pytest.fixture(scope="session")
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_log_level="error",
        ui=False,
        # The workflow keeps its search attributes current: the namespace must know them.
        search_attributes=SEARCH_ATTRIBUTES,
    )
    yield env
    await env.shutdown()


@dataclass
class Kiln:
    """One test's Kiln: the workflow worker, two live hosts, and ids under a fresh prefix."""

    client: Client
    fakes: Fakes
    queue: str
    prefix: str
    host_a: str
    host_b: str
    started: list[int] = field(default_factory=list)

    def dead_host(self, name: str) -> str:
        """A host queue that nobody polls."""
        return f"{self.queue}-dead-{name}"

    def build_input(self, build_id: int, **timers: Any) -> BuildInput:
        """Short timers by default; a test overrides the ones it is about."""
        defaults = BuildInput(
            build_id,
            id_prefix=self.prefix,
            host_pickup_seconds=10,
            slot_recheck_seconds=0.5,
            heartbeat_timeout_seconds=2,
            cleanup_pickup_seconds=2,
        )
        return replace(defaults, **timers)

    async def start(self, build_id: int, **timers: Any) -> BuildHandle:
        self.started.append(build_id)
        return await self.client.start_workflow(
            BuildWorkflow.run,
            self.build_input(build_id, **timers),
            id=workflow_id(build_id, self.prefix),
            task_queue=self.queue,
            task_timeout=TASK_TIMEOUT,
        )

    def handle(self, build_id: int) -> BuildHandle:
        """The build's workflow as the client facade finds it: by id, latest run."""
        return self.client.get_workflow_handle_for(
            BuildWorkflow.run, workflow_id(build_id, self.prefix)
        )

    async def end_leftovers(self) -> None:
        """End the workflows a failed test left running, while the workers still run: a
        workflow still cached when its worker stops is closed by the garbage collector later,
        and its `finally` then raises outside any workflow (an unraisable-exception error)."""
        for build_id in self.started:
            handle = self.handle(build_id)
            try:
                if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                    continue
                await handle.cancel()
                await asyncio.wait_for(handle.result(), 5)
            except (RPCError, WorkflowFailureError, TimeoutError):
                pass
            with contextlib.suppress(RPCError):  # already closed
                await handle.terminate("test over")

    async def result(self, handle: BuildHandle, timeout: float = WAIT_SECONDS) -> BuildResult:
        return await asyncio.wait_for(handle.result(), timeout)


async def history(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    """The events of the handle's run: the latest run unless the handle names one (a handle
    from `start_workflow` does not)."""
    return [event async for event in handle.fetch_history_events()]


async def until_event(
    handle: WorkflowHandle[Any, Any],
    event_type: EventType.ValueType,
    where: Callable[[HistoryEvent], bool] = lambda _: True,
    timeout: float = WAIT_SECONDS,
) -> None:
    """Poll the run's history until an event of this type (matching `where`) is in it."""
    async with asyncio.timeout(timeout):
        while not any(e.event_type == event_type and where(e) for e in await history(handle)):
            await asyncio.sleep(0.1)


def scheduled_activities(events: list[HistoryEvent]) -> list[str]:
    """The names of the (non-local) activities a run scheduled."""
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


@pytest.fixture
async def kiln(workflow_env: WorkflowEnvironment) -> AsyncIterator[Kiln]:
    client = workflow_env.client
    queue = f"kiln-{uuid.uuid4()}"
    host_a, host_b = f"{queue}-host-a", f"{queue}-host-b"
    fakes = Fakes(Script(hosts=[host_a]))
    local = Worker(
        client,
        task_queue=queue,
        workflows=[BuildWorkflow],
        activities=[
            fakes.claim_slot,
            fakes.pick_host,
            fakes.finish_build,
            fakes.notify_plan,
            fakes.send_github_status,
            fakes.send_hook,
        ],
    )
    hosts = [
        Worker(client, task_queue=host, activities=[fakes.execute_build, fakes.cleanup_build])
        for host in (host_a, host_b)
    ]
    kiln = Kiln(client, fakes, queue, prefix=f"{queue}-", host_a=host_a, host_b=host_b)
    async with local, hosts[0], hosts[1]:
        yield kiln
        await kiln.end_leftovers()
