"""BuildWorkflow: one build, from `queued` to a final status, surviving crashes on the way.

Steps: wait for a slot of the project (local claim, woken by a signal when a build of the
project ends) → pick a live host (local) → clone + run + clean up on that host's queue → record
the outcome (local) and wake the next waiting builds. The host-bound step heartbeats, so a lost
worker is noticed in seconds; a host that never picks the work up is replaced after a bounded
wait. Cancelling the workflow cancels the build: its container is stopped and removed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutType
from temporalio.exceptions import TimeoutError as StepTimeout
from temporalio.service import RPCError

with workflow.unsafe.imports_passed_through():
    from activities.build import BuildActivities
    from activities.hosts import HostActivities
    from activities.records import RecordActivities
    from activities.types import (
        PERMANENT_ERROR,
        BuildJob,
        BuildOutcome,
        HostRequest,
        RunResult,
        SlotClaim,
    )
    from kiln.models import BuildStatus

LOCAL_TIMEOUT = timedelta(seconds=30)
# A waiting build looks again this often even without a signal (a signal may be lost when the
# finishing workflow's worker dies between its status write and the signal).
SLOT_RECHECK = timedelta(seconds=30)
MAX_HOST_MOVES = 3
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
CLEANUP_PICKUP_TIMEOUT = timedelta(seconds=30)
# The run activity enforces the project's own timeout; this only bounds a runaway activity.
ACTIVITY_TIMEOUT = timedelta(hours=25)
# Infrastructure trouble (clone failing, Docker unreachable) is retried; a failing build
# command is a result and never reaches this policy.
INFRA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
    non_retryable_error_types=[PERMANENT_ERROR],
)
SLOT_FREED_SIGNAL = "slot_freed"
# A waiting build continues as new after this many looks (about 100 minutes).
MAX_SLOT_CHECKS = 200
# The outcome of a workflow that found its build already final: nothing to record.
SKIPPED = "skipped"


@dataclass(frozen=True)
class BuildInput:
    build_id: int
    # How long a chosen host may take to pick the build up before another host is chosen.
    host_pickup_seconds: float = 30.0


def workflow_id(build_id: int, prefix: str = "") -> str:
    """`build-<id>`, after KILN_WORKFLOW_ID_PREFIX when Kilns share a Temporal namespace."""
    return f"{prefix}build-{build_id}"


async def wake_waiting_builds(client: Client, build_ids: list[int], prefix: str) -> None:
    """(Outside workflows.) Tell waiting builds to look for a free slot now rather than at
    their next recheck; a build whose workflow is gone is skipped."""
    for build_id in build_ids:
        try:
            handle = client.get_workflow_handle(workflow_id(build_id, prefix))
            await handle.signal(SLOT_FREED_SIGNAL)
        except RPCError:
            pass


def _failed(build_id: int, reason: str) -> BuildOutcome:
    return BuildOutcome(build_id, BuildStatus.FAILED.value, reason=reason)


def _reason(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, StepTimeout):
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "unknown"
        return f"the build step stopped responding ({kind} timeout)"
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or error)


def _never_picked_up(error: ActivityError) -> bool:
    cause = error.cause
    return isinstance(cause, StepTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START


@workflow.defn(name="BuildWorkflow")
class BuildWorkflow:
    def __init__(self) -> None:
        self._slot_freed = False

    @workflow.signal(name=SLOT_FREED_SIGNAL)
    def slot_freed(self) -> None:
        self._slot_freed = True

    @workflow.run
    async def run(self, request: BuildInput) -> BuildOutcome:
        build_id = request.build_id
        outcome: BuildOutcome | None = _failed(build_id, "the build was interrupted")
        host: str | None = None
        try:
            if not await self._wait_for_slot(request):
                outcome = None
                return BuildOutcome(build_id, status=SKIPPED)
            pickup = timedelta(seconds=request.host_pickup_seconds)
            outcome, host = await self._run_on_a_host(build_id, pickup)
        except asyncio.CancelledError:
            outcome = BuildOutcome(build_id, BuildStatus.CANCELED.value, reason="build canceled")
            raise
        except workflow.ContinueAsNewError:
            outcome = None  # the next run of this workflow goes on waiting
            raise
        finally:
            # Record first (the user sees the result sooner), then remove the container.
            if outcome is not None:
                await self._finish(outcome)
            if host is not None:
                await self._cleanup_on(host, build_id)
        return outcome

    async def _wait_for_slot(self, request: BuildInput) -> bool:
        """True once the build holds a slot; False when it is already final (nothing to do).
        A long wait continues as a new run, so the history stays small."""
        build_id = request.build_id
        for _ in range(MAX_SLOT_CHECKS):
            self._slot_freed = False
            claim = await workflow.execute_local_activity_method(
                RecordActivities.claim_slot, build_id, start_to_close_timeout=LOCAL_TIMEOUT
            )
            if claim != SlotClaim.WAITING:
                return claim == SlotClaim.STARTED
            try:
                await workflow.wait_condition(lambda: self._slot_freed, timeout=SLOT_RECHECK)
            except TimeoutError:  # no signal came: look again anyway
                pass
        workflow.continue_as_new(request)

    async def _run_on_a_host(
        self, build_id: int, pickup: timedelta
    ) -> tuple[BuildOutcome, str | None]:
        """The outcome, and the host to clean up on (None when no host took the build)."""
        unresponsive: list[str] = []
        for move in range(MAX_HOST_MOVES + 1):
            host = await workflow.execute_local_activity_method(
                HostActivities.pick_host,
                HostRequest(build_id, exclude=unresponsive),
                start_to_close_timeout=LOCAL_TIMEOUT,
            )
            try:
                result = await self._execute_on(host, build_id, pickup)
            except ActivityError as err:
                if isinstance(err.cause, CancelledError):
                    # The build was canceled; its activity has stopped the container.
                    raise asyncio.CancelledError() from err
                if _never_picked_up(err) and move < MAX_HOST_MOVES:
                    workflow.logger.warning("host %s did not pick up build %s", host, build_id)
                    unresponsive.append(host)
                    continue
                if _never_picked_up(err):
                    return _failed(build_id, "no worker host picked the build up"), None
                return _failed(build_id, _reason(err)), host
            return self._result_outcome(build_id, result), host
        raise AssertionError("unreachable: the last move returns")

    @staticmethod
    def _result_outcome(build_id: int, result: RunResult) -> BuildOutcome:
        if result.timed_out:
            return _failed(build_id, "the build timed out and was stopped")
        status = BuildStatus.PASSED if result.exit_code == 0 else BuildStatus.FAILED
        return BuildOutcome(build_id, status.value, exit_code=result.exit_code)

    async def _execute_on(self, host: str, build_id: int, pickup: timedelta) -> RunResult:
        return await workflow.execute_activity_method(
            BuildActivities.execute_build,
            BuildJob(build_id),
            task_queue=host,
            schedule_to_start_timeout=pickup,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=INFRA_RETRY,
            # On cancel, wait until the container is stopped before recording `canceled`.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    async def _cleanup_on(self, host: str, build_id: int) -> None:
        """Best effort: a host that is gone cannot clean; the worker's start-up sweep will."""
        try:
            await workflow.execute_activity_method(
                BuildActivities.cleanup_build,
                BuildJob(build_id),
                task_queue=host,
                schedule_to_start_timeout=CLEANUP_PICKUP_TIMEOUT,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError:
            workflow.logger.warning("cleanup of build %s on %s failed", build_id, host)

    async def _finish(self, outcome: BuildOutcome) -> None:
        waiting = await workflow.execute_local_activity_method(
            RecordActivities.finish_build, outcome, start_to_close_timeout=LOCAL_TIMEOUT
        )
        # This workflow's own id tells the deployment's prefix.
        prefix = workflow.info().workflow_id.removesuffix(workflow_id(outcome.build_id))
        for other in waiting:
            try:
                await workflow.get_external_workflow_handle(workflow_id(other, prefix)).signal(
                    SLOT_FREED_SIGNAL
                )
            except Exception:  # that build's workflow is gone; its own recheck covers it
                workflow.logger.info("could not wake build %s", other)
