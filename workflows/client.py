"""The one Temporal client facade: start, cancel, wake and describe build workflows.

It owns workflow ids and the deployment's prefix (`KILN_WORKFLOW_ID_PREFIX`); nothing else
spells them out. The API and the reconciler use it; tests of the API use a fake of `Workflows`.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import Protocol

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from kiln.builds import BuildService
from kiln.contracts import BuildOutcome
from kiln.settings import Settings
from workflows.build import BuildInput, BuildResult, BuildWorkflow
from workflows.ids import workflow_id

log = logging.getLogger(__name__)


class WorkflowsUnavailable(Exception):
    """Temporal could not be reached (or refused the call)."""


class Closed(Enum):
    """How a build's workflow ended, when it did not complete."""

    FAILED = "the build's workflow failed"
    TERMINATED = "the build's workflow was terminated"
    TIMED_OUT = "the build's workflow timed out"
    CONTINUED_AS_NEW = "the build's workflow ended unexpectedly"
    CANCELED = "build canceled"


class Workflows(Protocol):
    """What Kiln asks of Temporal about builds."""

    def workflow_id(self, build_id: int) -> str: ...

    async def start(self, build_id: int) -> None:
        """Start the build's workflow (a repeated start is the same build); raises
        WorkflowsUnavailable."""

    async def cancel(self, build_id: int) -> bool:
        """Request a cancel; False when the build has no workflow. Raises WorkflowsUnavailable."""

    async def wake(self, build_ids: list[int]) -> None:
        """Tell waiting builds to look for a free slot now (a gone workflow is skipped)."""

    async def describe(self, build_id: int) -> BuildResult | Closed | None:
        """The result of a closed workflow, how it closed, or None while it runs. Raises
        LookupError when there is no such workflow, WorkflowsUnavailable when Temporal is away."""


_CLOSED = {
    WorkflowExecutionStatus.FAILED: Closed.FAILED,
    WorkflowExecutionStatus.TERMINATED: Closed.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT: Closed.TIMED_OUT,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: Closed.CONTINUED_AS_NEW,
    WorkflowExecutionStatus.CANCELED: Closed.CANCELED,
}


class TemporalWorkflows:
    """`Workflows` over a Temporal client."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    def workflow_id(self, build_id: int) -> str:
        return workflow_id(build_id, self._settings.workflow_id_prefix)

    def build_input(self, build_id: int) -> BuildInput:
        return BuildInput(
            build_id,
            id_prefix=self._settings.workflow_id_prefix,
            host_pickup_seconds=self._settings.host_pickup_seconds,
        )

    async def start(self, build_id: int) -> None:
        try:
            await self._client.start_workflow(
                BuildWorkflow.run,
                self.build_input(build_id),
                id=self.workflow_id(build_id),
                task_queue=self._settings.task_queue,
            )
        except WorkflowAlreadyStartedError:
            pass  # the id is the build's: a repeated start is the same build
        except Exception as exc:  # Temporal unreachable, or refusing
            raise WorkflowsUnavailable(str(exc)) from exc

    async def cancel(self, build_id: int) -> bool:
        try:
            await self._client.get_workflow_handle(self.workflow_id(build_id)).cancel()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise WorkflowsUnavailable(str(exc)) from exc
        return True

    async def wake(self, build_ids: list[int]) -> None:
        for build_id in build_ids:
            handle = self._client.get_workflow_handle_for(
                BuildWorkflow.run, self.workflow_id(build_id)
            )
            try:
                await handle.signal(BuildWorkflow.slot_freed)
            except RPCError:
                pass

    async def describe(self, build_id: int) -> BuildResult | Closed | None:
        handle = self._client.get_workflow_handle_for(BuildWorkflow.run, self.workflow_id(build_id))
        try:
            status = (await handle.describe()).status
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise LookupError(self.workflow_id(build_id)) from None
            raise WorkflowsUnavailable(str(exc)) from exc
        if status is None or status == WorkflowExecutionStatus.RUNNING:
            return None
        if status == WorkflowExecutionStatus.COMPLETED:
            return await handle.result()
        return _CLOSED[status]


async def settle(builds: BuildService, workflows: Workflows, outcome: BuildOutcome) -> None:
    """Record a final status outside any workflow, and wake the builds its slot frees."""
    waiting = await asyncio.to_thread(builds.finish, outcome)
    await workflows.wake(waiting)
