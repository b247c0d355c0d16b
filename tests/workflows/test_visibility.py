"""What an operator sees of a build in Temporal's UI, with scripted activities: the search
attributes the facade starts it with and the workflow keeps current (status, host, exit code),
its summary and details, what it is doing now, and the summary of each step."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionDescription, WorkflowFailureError
from temporalio.common import SearchAttributeKey
from temporalio.converter import DataConverter

from kiln.contracts import BuildLabels, RunResult, SlotClaim, Trigger, Waiting
from kiln.settings import Settings
from tests.workflows.conftest import BuildHandle, Kiln, history
from tests.workflows.fakes import BLOCK, WAIT_SECONDS
from workflows import visibility as v
from workflows.build import BuildWorkflow
from workflows.client import TemporalWorkflows
from workflows.ids import workflow_id

SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
LABELS = BuildLabels(
    project_id=7,
    project="my-vite-app",
    branch="main",
    commit_hash=SHA,
    commit_message="Fix the *thing*\n\nand explain why",
    commit_author="Ada",
    command="npm ci && npm run build",
)


class Labels:
    """The facade's label reader, without a database."""

    def __init__(self, labels: BuildLabels | None) -> None:
        self._labels = labels

    def labels(self, build_id: int) -> BuildLabels | None:
        return self._labels


def facade(kiln: Kiln, labels: BuildLabels | None = LABELS) -> TemporalWorkflows:
    """The real facade, on this test's queue and id prefix."""
    settings = Settings(
        task_queue=kiln.queue,
        workflow_id_prefix=kiln.prefix,
        public_url="https://kiln.example.com/",
        host_pickup_seconds=10,
    )
    return TemporalWorkflows(kiln.client, settings, Labels(labels))


async def start(kiln: Kiln, build_id: int, **labels: Any) -> BuildHandle:
    kiln.started.append(build_id)
    await facade(kiln, **labels).start(build_id, trigger=Trigger.REBUILD, rebuild_of=14)
    return kiln.handle(build_id)


async def attributes(handle: BuildHandle) -> dict[str, Any]:
    """The run's search attributes that are Kiln's, by name."""
    found = (await handle.describe()).typed_search_attributes
    return {key.name: found.get(key) for key in v.SEARCH_ATTRIBUTES if found.get(key) is not None}


async def current_details(handle: BuildHandle) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details: str = metadata.current_details
    return details


async def until_details(handle: BuildHandle, text: str) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while await current_details(handle) != text:
            await asyncio.sleep(0.1)


async def until_attribute(handle: BuildHandle, key: SearchAttributeKey[Any], value: Any) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while (await handle.describe()).typed_search_attributes.get(key) != value:
            await asyncio.sleep(0.1)


def step_summaries(events: list[HistoryEvent]) -> dict[str, str]:
    """The summary of each (non-local) activity the run scheduled, by activity name."""
    converter = DataConverter.default.payload_converter
    return {
        e.activity_task_scheduled_event_attributes.activity_type.name: converter.from_payload(
            e.user_metadata.summary, str
        )
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }


async def test_a_build_starts_with_its_labels_as_search_attributes_a_summary_and_details(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.claims[1] = [Waiting(ahead=2)]
    handle = await start(kiln, 1)

    assert await attributes(handle) == {
        "KilnProjectId": 7,
        "KilnBuildId": 1,
        "KilnProject": "my-vite-app",
        "KilnBranch": "main",
        "KilnCommit": SHA,
        "KilnBuildStatus": "queued",
        "KilnTrigger": "rebuild",
    }
    description: WorkflowExecutionDescription = await handle.describe()
    assert await description.static_summary() == "my-vite-app · main · a1b2c3d · rebuild of #14"
    details = await description.static_details()
    assert details is not None
    assert f"Commit {SHA} on main by Ada" in details
    assert "```\nFix the *thing*\n\nand explain why\n```" in details
    assert "[Build #1 on the dashboard](https://kiln.example.com/builds/1)" in details
    await until_details(handle, "waiting for a slot: 2 builds ahead")


async def test_status_host_and_exit_code_move_with_the_build_and_each_step_has_a_summary(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.claims[1] = [Waiting(ahead=1), SlotClaim.STARTED]
    kiln.fakes.script.hosts = [kiln.host_b]
    kiln.fakes.script.runs = [RunResult(exit_code=3)]
    handle = await start(kiln, 1)
    await until_details(handle, "waiting for a slot: 1 build ahead")
    assert "KilnHost" not in await attributes(handle)

    await handle.signal(BuildWorkflow.slot_freed)
    await kiln.result(handle)

    found = await attributes(handle)
    assert (found["KilnBuildStatus"], found["KilnHost"], found["KilnExitCode"]) == (
        "failed",
        "b",
        3,
    )
    assert await current_details(handle) == "failed (exit code 3)"
    assert step_summaries(await history(handle)) == {
        "execute_build": "clone a1b2c3d, run `npm ci && npm run build`",
        "cleanup_build": "clean up on b",
    }


async def test_a_running_build_shows_running_and_its_host_and_a_canceled_one_no_exit_code(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.runs = [BLOCK]
    handle = await start(kiln, 1)
    await kiln.fakes.until(lambda: kiln.fakes.blocked == ["execute_build"])

    await until_attribute(handle, v.STATUS, "running")
    assert (await attributes(handle))["KilnHost"] == "a"
    assert await current_details(handle) == "running on a"

    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await kiln.result(handle)
    found = await attributes(handle)
    assert found["KilnBuildStatus"] == "canceled"
    assert "KilnExitCode" not in found


async def test_a_build_whose_labels_cannot_be_read_still_starts_and_runs(kiln: Kiln) -> None:
    handle = await start(kiln, 1, labels=None)

    await kiln.result(handle)

    assert await attributes(handle) == {
        "KilnBuildId": 1,
        "KilnBuildStatus": "passed",
        "KilnTrigger": "rebuild",
        "KilnHost": "a",
        "KilnExitCode": 0,
    }
    assert await (await handle.describe()).static_summary() == "rebuild of #14"


async def test_a_long_wait_continues_as_new_keeping_its_attributes_and_showing_its_summary(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.claims[1] = [Waiting(ahead=3)]
    summary = v.summary(1, LABELS, Trigger.PUSH, None)
    request = replace(kiln.build_input(1, max_slot_checks=2), summary=summary)
    kiln.started.append(1)
    first = await kiln.client.start_workflow(
        BuildWorkflow.run,
        request,
        id=workflow_id(1, kiln.prefix),
        task_queue=kiln.queue,
        search_attributes=v.start_attributes(1, LABELS, Trigger.PUSH),
        static_summary=summary,
    )
    # The first run has its static summary, so its details do not repeat it.
    await until_details(first, "waiting for a slot: 3 builds ahead")

    await kiln.fakes.until(lambda: len(kiln.fakes.claims) >= 3)  # into the second run

    latest = kiln.handle(1)
    assert (await latest.describe()).run_id != first.first_execution_run_id
    await until_details(latest, f"{summary}\n\nwaiting for a slot: 3 builds ahead")
    assert summary == "my-vite-app · main · a1b2c3d · push"
    assert (await attributes(latest))["KilnProject"] == "my-vite-app"
