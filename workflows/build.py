"""BuildWorkflow: one build, from `queued` to a final status, surviving crashes on the way.

Steps: wait for a slot of the project (local claim, woken by a signal when a build of the
project ends, or when an older one takes its slot with more left free) → pick a live host
(local) → clone + run + clean up on that host's queue → record
the outcome (local) and wake the next waiting builds. The host-bound step heartbeats, so a lost
worker is noticed in seconds; a host that never picks the work up is replaced after a bounded
wait. Cancelling the workflow cancels the build: its container is stopped and removed.

Operators follow it in Temporal's UI (`workflows.visibility`): the search attributes
KilnBuildStatus, KilnHost and KilnExitCode move with the build, the current details say what it
waits for or where it runs, and each step has a summary.

Projects that send commit statuses to GitHub or have notification hooks (asked once, by a
local activity) get notices: `queued` after the first claim, `running`, then the final status.
Each target's notices are sent by activities one after the other, beside the build (they never
hold up a step or change the outcome); the workflow waits for what is still under way (bounded)
only once the outcome is recorded and the host cleaned up.

Client-side code (start, cancel, wake, describe) is in `workflows.client`, not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutType
from temporalio.exceptions import TimeoutError as StepTimeout

with workflow.unsafe.imports_passed_through():
    from activities.build import BuildActivities
    from activities.errors import PERMANENT_ERROR
    from activities.hosts import HostActivities
    from activities.notify import NotifyActivities
    from activities.records import RecordActivities
    from kiln.contracts import (
        BuildJob,
        BuildOutcome,
        HostRequest,
        RunResult,
        Skipped,
        SlotClaim,
        Started,
        Waiting,
    )
    from kiln.models import BuildStatus
    from kiln.notifications import GITHUB_TARGET, Notice, NotifyPlan, hook_target
    from workflows import visibility
    from workflows.ids import workflow_id
    from workflows.interface import BUILD_WORKFLOW, SLOT_FREED_SIGNAL, BuildInput, BuildResult

T = TypeVar("T")

LOCAL_TIMEOUT = timedelta(seconds=30)
MAX_HOST_MOVES = 3
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
# Runs started before the workflow kept its search attributes current replay without the upserts.
VISIBILITY_PATCH = "kiln-visibility"
# Runs started before notices existed replay without asking for a plan.
NOTIFY_PATCH = "kiln-notify"
# Notices: GitHub or a hook that is slow, down or failing is retried with back-off, a few
# times; each attempt's request ends within kiln.outbound.REQUEST_SECONDS.
GITHUB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
)
HOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
NOTICE_ATTEMPT = timedelta(seconds=20)
NOTICE_BOUND = timedelta(minutes=2)
# How long a finished build's workflow waits for its notices still under way.
NOTICES_DRAIN = timedelta(minutes=5)


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


async def _cancellable(step: Awaitable[T]) -> T:
    """A step that a cancel of the workflow interrupts: the cancel arrives as an ActivityError
    (a local activity canceled mid-flight) and is turned back into the workflow's own cancel,
    so the build ends `canceled`, not `failed`."""
    try:
        return await step
    except ActivityError as err:
        if isinstance(err.cause, CancelledError):
            raise asyncio.CancelledError() from err
        raise


@workflow.defn(name=BUILD_WORKFLOW)
class BuildWorkflow:
    def __init__(self) -> None:
        self._slot_freed = False
        # The host the build was handed to: a cancel mid-run must still clean up there.
        self._running_on: str | None = None
        self._visible = False
        self._summary = ""
        self._build_id = 0
        self._notices = NotifyPlan()
        # Per target (GitHub, each hook): its newest notice, which first awaits the one before.
        self._chains: dict[str, asyncio.Task[None]] = {}

    @workflow.signal(name=SLOT_FREED_SIGNAL)
    def slot_freed(self) -> None:
        """A build of the project ended, or took its slot with more left free: look for a free
        slot now."""
        self._slot_freed = True

    @workflow.run
    async def run(self, request: BuildInput) -> BuildResult:
        self._visible = workflow.patched(VISIBILITY_PATCH)
        self._build_id = request.build_id
        if workflow.info().continued_run_id is not None:
            self._summary = request.summary
        build_id = request.build_id
        outcome: BuildOutcome | None = BuildOutcome.failed(build_id, "the build was interrupted")
        host: str | None = None
        try:
            await self._plan_notices(build_id)
            if not await self._wait_for_slot(request):
                outcome = None
                self._details("nothing to do: the build was already final")
                return Skipped(build_id, why="the build was already final")
            outcome, host = await self._run_on_a_host(request)
        except asyncio.CancelledError:
            outcome = BuildOutcome.canceled(build_id)
            host = self._running_on
            raise
        except workflow.ContinueAsNewError:
            outcome = None  # the next run of this workflow goes on waiting
            raise
        except GeneratorExit:
            # The worker is gone and the coroutine is being closed: record nothing (a worker
            # will replay this workflow), and schedule nothing outside the workflow loop.
            outcome = host = None
            raise
        finally:
            # Record first (the user sees the result sooner), then remove the container, then
            # let the notices still under way end.
            if outcome is not None:
                await self._finish(outcome, request.id_prefix)
                self._notify(outcome.status, outcome.exit_code)
            if host is not None:
                await self._cleanup_on(host, request)
            if outcome is not None:
                await self._drain_notices()
        return outcome

    async def _plan_notices(self, build_id: int) -> None:
        """What the project has configured: without anything, no notice is ever scheduled."""
        if not workflow.patched(NOTIFY_PATCH):
            return
        try:
            self._notices = await _cancellable(
                workflow.execute_local_activity_method(
                    NotifyActivities.notify_plan,
                    build_id,
                    start_to_close_timeout=LOCAL_TIMEOUT,
                    retry_policy=RetryPolicy(maximum_attempts=3),
                    summary="look up notices",
                )
            )
        # A local activity's failure arrives as its ApplicationError, not wrapped.
        except (ActivityError, ApplicationError):  # no notices, rather than no build
            workflow.logger.warning("could not look up the notices of build %s", build_id)

    def _notify(self, event: BuildStatus, exit_code: int | None = None) -> None:
        """Hand the event to every target that wants it, after that target's earlier ones."""
        if self._notices.github:
            notice = Notice(self._build_id, event.value, exit_code)
            self._chain(GITHUB_TARGET, notice, f"GitHub status: {event.value}")
        for hook in self._notices.hooks:
            if event.value in hook.events:
                notice = Notice(self._build_id, event.value, exit_code, hook_id=hook.hook_id)
                self._chain(hook_target(hook.hook_id), notice, f"hook {hook.hook_id}: {event}")

    def _chain(self, target: str, notice: Notice, summary: str) -> None:
        previous = self._chains.get(target)
        github = notice.hook_id is None

        async def send() -> None:
            if previous is not None:
                await previous
            try:
                if github:
                    await workflow.execute_activity_method(
                        NotifyActivities.send_github_status,
                        notice,
                        start_to_close_timeout=NOTICE_ATTEMPT,
                        schedule_to_close_timeout=NOTICE_BOUND,
                        retry_policy=GITHUB_RETRY,
                        summary=summary,
                    )
                else:
                    await workflow.execute_activity_method(
                        NotifyActivities.send_hook,
                        notice,
                        start_to_close_timeout=NOTICE_ATTEMPT,
                        schedule_to_close_timeout=NOTICE_BOUND,
                        retry_policy=HOOK_RETRY,
                        summary=summary,
                    )
            except ActivityError:  # given up on: the build is not the receiver's to change
                workflow.logger.warning("build %s: %s not delivered", self._build_id, summary)

        self._chains[target] = asyncio.create_task(send())

    async def _drain_notices(self, *, recorded: bool = True) -> None:
        """Wait (bounded) for the notices still under way: a closed workflow's are lost. Once
        the outcome is `recorded`, a cancel only stops the wait: the workflow still ends with
        the build's own outcome."""
        if not self._chains or all(chain.done() for chain in self._chains.values()):
            return
        try:
            await workflow.wait_condition(
                lambda: all(chain.done() for chain in self._chains.values()),
                timeout=NOTICES_DRAIN,
                timeout_summary="wait for notices",
            )
        except TimeoutError:
            workflow.logger.warning("gave up waiting for the notices of build %s", self._build_id)
        except asyncio.CancelledError:
            if not recorded:
                raise
            workflow.logger.info("stopped waiting for the notices of build %s", self._build_id)

    async def _wait_for_slot(self, request: BuildInput) -> bool:
        """True once the build holds a slot; False when it is already final (nothing to do).
        A long wait continues as a new run, so the history stays small."""
        recheck = timedelta(seconds=request.slot_recheck_seconds)
        first = True
        for _ in range(request.max_slot_checks):
            self._slot_freed = False
            claim = await _cancellable(
                workflow.execute_local_activity_method(
                    RecordActivities.claim_slot,
                    request.build_id,
                    start_to_close_timeout=LOCAL_TIMEOUT,
                    summary="claim a slot",
                )
            )
            if claim == SlotClaim.FINAL:
                return False
            if first and workflow.info().continued_run_id is None:
                self._notify(BuildStatus.QUEUED)
            first = False
            if claim == SlotClaim.STARTED or isinstance(claim, Started):
                self._upsert(visibility.status_update(BuildStatus.RUNNING))
                self._notify(BuildStatus.RUNNING)
                if isinstance(claim, Started):  # younger builds may have been told to wait
                    await self._wake(claim.wake, request.id_prefix)
                return True
            # Waiting; a bare SlotClaim.WAITING (recorded before claims counted) has no count.
            ahead = claim.ahead if isinstance(claim, Waiting) else None
            self._details(visibility.waiting_details(ahead))
            try:
                await workflow.wait_condition(
                    lambda: self._slot_freed, timeout=recheck, timeout_summary="look again"
                )
            except TimeoutError:  # no signal came: look again anyway
                pass
        await self._drain_notices(recorded=False)  # the next run cannot hear back from these
        workflow.continue_as_new(request)

    async def _run_on_a_host(self, request: BuildInput) -> tuple[BuildOutcome, str | None]:
        """The outcome, and the host to clean up on (None when no host took the build)."""
        build_id = request.build_id
        unresponsive: list[str] = []
        for move in range(MAX_HOST_MOVES + 1):
            self._details("picking a worker host")
            host = await _cancellable(
                workflow.execute_local_activity_method(
                    HostActivities.pick_host,
                    HostRequest(build_id, exclude=unresponsive),
                    start_to_close_timeout=LOCAL_TIMEOUT,
                    summary="pick a worker host",
                )
            )
            self._running_on = host
            worker = visibility.host_of(host, workflow.info().task_queue)
            self._upsert([visibility.HOST.value_set(worker)])
            self._details(f"running on {worker}")
            try:
                # A cancel of the build: its activity has stopped the container.
                result = await _cancellable(self._execute_on(host, request))
            except ActivityError as err:
                if _never_picked_up(err) and move < MAX_HOST_MOVES:
                    workflow.logger.warning("host %s did not pick up build %s", host, build_id)
                    unresponsive.append(host)
                    self._running_on = None
                    continue
                if _never_picked_up(err):
                    return BuildOutcome.failed(build_id, "no worker host picked the build up"), None
                return BuildOutcome.failed(build_id, _reason(err)), host
            return self._result_outcome(build_id, result), host
        raise AssertionError("unreachable: the last move returns")

    @staticmethod
    def _result_outcome(build_id: int, result: RunResult) -> BuildOutcome:
        if result.timed_out:
            return BuildOutcome.failed(build_id, "the build timed out and was stopped")
        status = BuildStatus.PASSED if result.exit_code == 0 else BuildStatus.FAILED
        return BuildOutcome(build_id, status, exit_code=result.exit_code)

    async def _execute_on(self, host: str, request: BuildInput) -> RunResult:
        return await workflow.execute_activity_method(
            BuildActivities.execute_build,
            BuildJob(request.build_id),
            task_queue=host,
            schedule_to_start_timeout=timedelta(seconds=request.host_pickup_seconds),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            summary=visibility.run_summary(request.commit_hash, request.command),
            heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_seconds),
            retry_policy=INFRA_RETRY,
            # On cancel, wait until the container is stopped before recording `canceled`.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    async def _cleanup_on(self, host: str, request: BuildInput) -> None:
        """Best effort: a host that is gone cannot clean; the worker's start-up sweep will."""
        try:
            await workflow.execute_activity_method(
                BuildActivities.cleanup_build,
                BuildJob(request.build_id),
                task_queue=host,
                schedule_to_start_timeout=timedelta(seconds=request.cleanup_pickup_seconds),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary=f"clean up on {visibility.host_of(host, workflow.info().task_queue)}",
            )
        except ActivityError:
            workflow.logger.warning("cleanup of build %s on %s failed", request.build_id, host)

    def _upsert(self, updates: Sequence[SearchAttributeUpdate[Any]]) -> None:
        if self._visible:
            workflow.upsert_search_attributes(updates)

    def _details(self, text: str) -> None:
        """What the build does now, in Temporal's UI (after the summary, on a continued run)."""
        workflow.set_current_details(f"{self._summary}\n\n{text}" if self._summary else text)

    async def _finish(self, outcome: BuildOutcome, id_prefix: str) -> None:
        waiting = await workflow.execute_local_activity_method(
            RecordActivities.finish_build,
            outcome,
            start_to_close_timeout=LOCAL_TIMEOUT,
            summary=f"record {outcome.status.value}",
        )
        updates = list(visibility.status_update(outcome.status))
        if outcome.exit_code is not None:
            updates.append(visibility.EXIT_CODE.value_set(outcome.exit_code))
        self._upsert(updates)
        self._details(visibility.final_details(outcome.status, outcome.exit_code, outcome.reason))
        await self._wake(waiting, id_prefix)

    async def _wake(self, build_ids: Sequence[int], id_prefix: str) -> None:
        """Tell these waiting builds to look for a free slot now."""
        for other in build_ids:
            handle = workflow.get_external_workflow_handle_for(
                BuildWorkflow.run, workflow_id(other, id_prefix)
            )
            try:
                await handle.signal(BuildWorkflow.slot_freed)
            except Exception:  # that build's workflow is gone; its own recheck covers it
                workflow.logger.info("could not wake build %s", other)
