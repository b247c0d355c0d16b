"""BuildWorkflow: one build, from `queued` to a final status, surviving crashes on the way.

Steps: mark running (local) → pick a live host (local) → clone + run + clean up on that host's
queue → record the outcome (local). The host-bound step heartbeats, so a lost worker is noticed
in seconds; a host that never picks the work up is replaced by another after a bounded wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
    TimeoutType,
)

with workflow.unsafe.imports_passed_through():
    from activities.build import BuildActivities
    from activities.hosts import HostActivities
    from activities.records import RecordActivities
    from activities.types import PERMANENT_ERROR, BuildJob, BuildOutcome, RunResult
    from kiln.models import BuildStatus

LOCAL_TIMEOUT = timedelta(seconds=30)
# How long a chosen host may take to pick the build up before another host is chosen.
HOST_PICKUP_TIMEOUT = timedelta(seconds=30)
MAX_HOST_MOVES = 3
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
BUILD_TIMEOUT = timedelta(hours=3)
# Infrastructure trouble (clone failing, Docker unreachable) is retried; a failing build
# command is a result and never reaches this policy.
INFRA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
    non_retryable_error_types=[PERMANENT_ERROR],
)


@dataclass(frozen=True)
class BuildInput:
    build_id: int


def workflow_id(build_id: int) -> str:
    return f"build-{build_id}"


def _reason(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, TimeoutError):
        return f"build step timed out ({cause.type.name.lower() if cause.type else 'timeout'})"
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or error)


@workflow.defn(name="BuildWorkflow")
class BuildWorkflow:
    @workflow.run
    async def run(self, request: BuildInput) -> BuildOutcome:
        build_id = request.build_id
        started = await workflow.execute_local_activity_method(
            RecordActivities.start_build, build_id, start_to_close_timeout=LOCAL_TIMEOUT
        )
        if not started:
            return BuildOutcome(build_id, status="skipped")
        outcome = BuildOutcome(build_id, BuildStatus.FAILED.value, reason="build was interrupted")
        host: str | None = None
        try:
            for move in range(MAX_HOST_MOVES + 1):
                host = await workflow.execute_local_activity_method(
                    HostActivities.pick_host, start_to_close_timeout=LOCAL_TIMEOUT
                )
                try:
                    result = await self._execute_on(host, build_id)
                except ActivityError as err:
                    if _never_picked_up(err) and move < MAX_HOST_MOVES:
                        workflow.logger.warning("host %s did not pick up build %s", host, build_id)
                        continue
                    outcome = BuildOutcome(build_id, BuildStatus.FAILED.value, reason=_reason(err))
                    break
                status = BuildStatus.PASSED if result.exit_code == 0 else BuildStatus.FAILED
                outcome = BuildOutcome(build_id, status.value, exit_code=result.exit_code)
                host = None  # the activity cleaned up after itself
                break
        except CancelledError:
            outcome = BuildOutcome(build_id, BuildStatus.FAILED.value, reason="build canceled")
            raise
        finally:
            if host is not None:
                await self._cleanup_on(host, build_id)
            await workflow.execute_local_activity_method(
                RecordActivities.finish_build, outcome, start_to_close_timeout=LOCAL_TIMEOUT
            )
        return outcome

    async def _execute_on(self, host: str, build_id: int) -> RunResult:
        return await workflow.execute_activity_method(
            BuildActivities.execute_build,
            BuildJob(build_id),
            task_queue=host,
            schedule_to_start_timeout=HOST_PICKUP_TIMEOUT,
            start_to_close_timeout=BUILD_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=INFRA_RETRY,
        )

    async def _cleanup_on(self, host: str, build_id: int) -> None:
        """Best effort: a host that is gone cannot clean; the worker's start-up sweep will."""
        try:
            await workflow.execute_activity_method(
                BuildActivities.cleanup_build,
                BuildJob(build_id),
                task_queue=host,
                schedule_to_start_timeout=HOST_PICKUP_TIMEOUT,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError:
            workflow.logger.warning("cleanup of build %s on %s failed", build_id, host)


def _never_picked_up(error: ActivityError) -> bool:
    cause = error.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START
