"""The one Temporal client facade: start, cancel, wake and describe build workflows.

It owns workflow ids and the deployment's prefix (`KILN_WORKFLOW_ID_PREFIX`); nothing else
spells them out. The API and the reconciler use it; tests of the API use a fake of `Workflows`.

A start names the build for Temporal's UI (`workflows.visibility`): search attributes, a
one-line summary and details, from the build's labels (one small read, when the facade is given
a `LabelReader`: kiln.visibility.BuildVisibility). Temporal refuses a start whose search
attributes the namespace lacks; the start then raises WorkflowsUnavailable saying to run `kiln
migrate`, and the caller fails the build ("could not be queued").
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import Any, Protocol

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from kiln.builds import BuildService
from kiln.contracts import BuildLabels, BuildOutcome, Trigger
from kiln.settings import Settings
from workflows import visibility
from workflows.ids import workflow_id
from workflows.interface import BUILD_WORKFLOW, SLOT_FREED_SIGNAL, BuildInput, BuildResult

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


class LabelReader(Protocol):
    """Where a start finds the build's labels (kiln.visibility.BuildVisibility)."""

    def labels(self, build_id: int) -> BuildLabels | None: ...


class Workflows(Protocol):
    """What Kiln asks of Temporal about builds."""

    def workflow_id(self, build_id: int) -> str: ...

    async def start(
        self, build_id: int, *, trigger: Trigger | None = None, rebuild_of: int | None = None
    ) -> None:
        """Start the build's workflow (a repeated start is the same build); raises
        WorkflowsUnavailable. `trigger` (and for a rebuild, the original's id) label it in
        Temporal's UI."""

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

    def __init__(
        self, client: Client, settings: Settings, labels: LabelReader | None = None
    ) -> None:
        self._client = client
        self._settings = settings
        # Where a start reads the build's labels; without it, workflows carry only the build id,
        # its status and trigger (the worker's facade, which never starts builds, has none).
        self._labels = labels

    def workflow_id(self, build_id: int) -> str:
        return workflow_id(build_id, self._settings.workflow_id_prefix)

    def build_input(
        self, build_id: int, labels: BuildLabels | None = None, summary: str = ""
    ) -> BuildInput:
        return BuildInput(
            build_id,
            id_prefix=self._settings.workflow_id_prefix,
            host_pickup_seconds=self._settings.host_pickup_seconds,
            heartbeat_timeout_seconds=self._settings.heartbeat_timeout_seconds,
            commit_hash=labels.commit_hash if labels else "",
            command=labels.command if labels else "",
            summary=summary,
        )

    async def _read_labels(self, build_id: int) -> BuildLabels | None:
        if self._labels is None:
            return None
        try:
            return await asyncio.to_thread(self._labels.labels, build_id)
        except Exception:  # the build matters more than its labels: start it without them
            log.warning("could not read the labels of build %s", build_id, exc_info=True)
            return None

    async def start(
        self, build_id: int, *, trigger: Trigger | None = None, rebuild_of: int | None = None
    ) -> None:
        labels = await self._read_labels(build_id)
        summary = visibility.summary(build_id, labels, trigger, rebuild_of)
        try:
            await self._client.start_workflow(
                BUILD_WORKFLOW,
                self.build_input(build_id, labels, summary),
                id=self.workflow_id(build_id),
                task_queue=self._settings.task_queue,
                search_attributes=visibility.start_attributes(build_id, labels, trigger),
                static_summary=summary,
                static_details=visibility.details(build_id, labels, self._settings.public_url),
            )
        except WorkflowAlreadyStartedError:
            pass  # the id is the build's: a repeated start is the same build
        except RPCError as exc:  # Temporal unreachable, or refusing
            raise WorkflowsUnavailable(visibility.explain_refusal(exc) or str(exc)) from exc
        except Exception as exc:
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
            handle = self._client.get_workflow_handle(self.workflow_id(build_id))
            try:
                await handle.signal(SLOT_FREED_SIGNAL)
            except RPCError:
                pass

    async def describe(self, build_id: int) -> BuildResult | Closed | None:
        # The converter decodes a union of dataclasses; the stub asks for a plain type.
        result_type: Any = BuildResult
        handle = self._client.get_workflow_handle(
            self.workflow_id(build_id), result_type=result_type
        )
        try:
            status = (await handle.describe()).status
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise LookupError(self.workflow_id(build_id)) from None
            raise WorkflowsUnavailable(str(exc)) from exc
        if status is None or status == WorkflowExecutionStatus.RUNNING:
            return None
        if status == WorkflowExecutionStatus.COMPLETED:
            result: BuildResult = await handle.result()
            return result
        return _CLOSED[status]


async def settle(builds: BuildService, workflows: Workflows, outcome: BuildOutcome) -> None:
    """Record a final status outside any workflow, and wake the builds its slot frees."""
    waiting = await asyncio.to_thread(builds.finish, outcome)
    await workflows.wake(waiting)
