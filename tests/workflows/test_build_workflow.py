"""BuildWorkflow end to end on a real Temporal server, with scripted activities: what a user
notices is the outcome recorded for the build, the workflow's result, and where it ran."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from activities.errors import PERMANENT_ERROR
from kiln.contracts import BuildOutcome, HostRequest, RunResult, Skipped, SlotClaim, Started
from kiln.models import BuildStatus
from tests.workflows.conftest import BuildHandle, Kiln, history, scheduled_activities, until_event
from tests.workflows.fakes import BLOCK, ClaimAnswer, Run
from workflows.build import BuildWorkflow

WAITING = SlotClaim.WAITING
STARTED = SlotClaim.STARTED
CANCELED = BuildOutcome(1, BuildStatus.CANCELED, reason="build canceled")


async def until_waiting_for_a_slot(handle: BuildHandle) -> None:
    """The workflow has claimed in vain and now sleeps on its recheck timer."""
    await until_event(handle, EventType.EVENT_TYPE_TIMER_STARTED)


async def assert_ends_canceled(kiln: Kiln, handle: BuildHandle) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await kiln.result(handle)
    assert isinstance(failure.value.cause, CancelledError), repr(failure.value.cause)
    assert kiln.fakes.outcomes == [CANCELED]


# 1. The plain path.


@pytest.mark.parametrize(
    ("run", "outcome"),
    [
        (RunResult(exit_code=0), BuildOutcome(1, BuildStatus.PASSED, exit_code=0)),
        (RunResult(exit_code=3), BuildOutcome(1, BuildStatus.FAILED, exit_code=3)),
        (
            RunResult(exit_code=137, timed_out=True),
            BuildOutcome.failed(1, "the build timed out and was stopped"),
        ),
    ],
    ids=["exit-0-passes", "non-zero-exit-fails", "timeout-fails"],
)
async def test_a_build_with_a_free_slot_runs_on_the_picked_host_and_records_its_result(
    kiln: Kiln, run: RunResult, outcome: BuildOutcome
) -> None:
    kiln.fakes.script.hosts = [kiln.host_b]
    kiln.fakes.script.runs = [run]

    result = await kiln.result(await kiln.start(1))

    assert result == outcome
    assert kiln.fakes.outcomes == [outcome]
    assert kiln.fakes.picks == [HostRequest(1, exclude=[])]
    assert kiln.fakes.runs == [Run(kiln.host_b, 1)]
    assert kiln.fakes.cleanups == [Run(kiln.host_b, 1)]


# 2-4. Waiting for a slot.


async def test_a_waiting_build_runs_as_soon_as_it_is_told_a_slot_was_freed(kiln: Kiln) -> None:
    kiln.fakes.script.claims[1] = [WAITING, STARTED]
    handle = await kiln.start(1, slot_recheck_seconds=60)
    await until_waiting_for_a_slot(handle)
    assert kiln.fakes.runs == []

    await handle.signal(BuildWorkflow.slot_freed)

    # Well before the 60 s recheck.
    await kiln.fakes.until(lambda: bool(kiln.fakes.runs), timeout=10)
    assert await kiln.result(handle) == BuildOutcome(1, BuildStatus.PASSED, exit_code=0)
    assert kiln.fakes.claims == [1, 1]


async def test_a_waiting_build_looks_again_on_its_recheck_timer_without_a_signal(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.claims[1] = [WAITING, WAITING, STARTED]

    result = await kiln.result(await kiln.start(1, slot_recheck_seconds=0.5))

    assert result == BuildOutcome(1, BuildStatus.PASSED, exit_code=0)
    assert kiln.fakes.claims == [1, 1, 1]
    assert kiln.fakes.outcomes == [result]


# Build 2 claimed first and was told to wait (build 1 is older). Its 60 s recheck is far off:
# only a signal, sent to the prefixed id, can start it within the test's 10 s.
WAKES: dict[str, tuple[list[ClaimAnswer], list[int]]] = {
    # 1's finish frees the slot 2 waits for.
    "when-an-older-build-ends": ([STARTED], [2]),
    # Two slots: 2 claimed while 1 still waited its turn. Once 1 runs, a slot is still free,
    # and 1's finish wakes nobody here: the signal comes when 1 takes its slot.
    "when-an-older-build-takes-its-slot-with-one-left": ([Started(wake=(2,))], []),
}


@pytest.mark.parametrize("wake", WAKES)
async def test_a_waiting_build_is_woken_by_the_build_before_it(kiln: Kiln, wake: str) -> None:
    kiln.fakes.script.claims[1], kiln.fakes.script.wakes[1] = WAKES[wake]
    kiln.fakes.script.claims[2] = [WAITING, STARTED]
    waiting = await kiln.start(2, slot_recheck_seconds=60)
    await until_waiting_for_a_slot(waiting)

    first = await kiln.start(1, slot_recheck_seconds=60)
    assert await kiln.result(first) == BuildOutcome(1, BuildStatus.PASSED, exit_code=0)

    assert await kiln.result(waiting, timeout=10) == BuildOutcome(
        2, BuildStatus.PASSED, exit_code=0
    )
    assert kiln.fakes.claims == [2, 1, 2]


# 5-6. Hosts that never pick the build up.


async def test_a_host_that_never_picks_the_build_up_is_replaced_by_another(kiln: Kiln) -> None:
    dead = kiln.dead_host("1")
    kiln.fakes.script.hosts = [dead, kiln.host_a]

    result = await kiln.result(await kiln.start(1, host_pickup_seconds=1))

    assert result == BuildOutcome(1, BuildStatus.PASSED, exit_code=0)
    assert kiln.fakes.picks == [HostRequest(1, exclude=[]), HostRequest(1, exclude=[dead])]
    assert kiln.fakes.runs == [Run(kiln.host_a, 1)]
    assert kiln.fakes.cleanups == [Run(kiln.host_a, 1)]


async def test_after_three_moves_a_build_no_host_picks_up_fails_without_a_cleanup(
    kiln: Kiln,
) -> None:
    dead = [kiln.dead_host(str(n)) for n in range(4)]
    kiln.fakes.script.hosts = list(dead)
    handle = await kiln.start(1, host_pickup_seconds=1, cleanup_pickup_seconds=1)

    result = await kiln.result(handle)

    failed = BuildOutcome.failed(1, "no worker host picked the build up")
    assert result == failed
    assert kiln.fakes.outcomes == [failed]
    assert [p.exclude for p in kiln.fakes.picks] == [[], dead[:1], dead[:2], dead[:3]]
    assert kiln.fakes.runs == []
    # Nobody polls those queues, so a cleanup would show only as scheduled in the history.
    assert scheduled_activities(await history(handle)) == ["execute_build"] * 4


# 7-8. Cancels.


async def test_a_build_canceled_while_it_waits_for_a_slot_records_canceled(kiln: Kiln) -> None:
    kiln.fakes.script.claims[1] = [WAITING]
    handle = await kiln.start(1, slot_recheck_seconds=60)
    await until_waiting_for_a_slot(handle)

    await handle.cancel()

    await assert_ends_canceled(kiln, handle)
    assert kiln.fakes.picks == []


async def test_a_build_canceled_while_it_claims_its_slot_records_canceled(kiln: Kiln) -> None:
    kiln.fakes.script.claims[1] = [BLOCK]
    handle = await kiln.start(1)
    await kiln.fakes.until(lambda: kiln.fakes.blocked == ["claim_slot"])

    await handle.cancel()

    await assert_ends_canceled(kiln, handle)
    assert kiln.fakes.cancelled == ["claim_slot"]  # the cancel came during the claim
    assert kiln.fakes.picks == []


async def test_a_build_canceled_while_its_host_is_picked_records_canceled(kiln: Kiln) -> None:
    kiln.fakes.script.hosts = [BLOCK]
    handle = await kiln.start(1)
    await kiln.fakes.until(lambda: kiln.fakes.blocked == ["pick_host"])

    await handle.cancel()

    await assert_ends_canceled(kiln, handle)
    assert kiln.fakes.cancelled == ["pick_host"]  # the cancel came during the pick
    assert kiln.fakes.runs == []
    assert kiln.fakes.cleanups == []


async def test_a_build_canceled_while_it_runs_is_stopped_recorded_canceled_and_cleaned_up(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.runs = [BLOCK]
    handle = await kiln.start(1)
    await kiln.fakes.until(lambda: kiln.fakes.blocked == ["execute_build"])

    await handle.cancel()

    await assert_ends_canceled(kiln, handle)
    assert kiln.fakes.cancelled == ["execute_build"]  # the run saw the cancel (stops its container)
    assert kiln.fakes.runs == [Run(kiln.host_a, 1)]
    assert kiln.fakes.cleanups == [Run(kiln.host_a, 1)]


# 9. Long waits.


async def test_a_long_wait_continues_as_new_and_the_build_then_runs_once(kiln: Kiln) -> None:
    kiln.fakes.script.claims[1] = [WAITING]
    handle = await kiln.start(1, max_slot_checks=2, slot_recheck_seconds=0.5)
    first_run = handle.first_execution_run_id
    assert first_run is not None

    await kiln.fakes.until(lambda: len(kiln.fakes.claims) >= 3)

    events = await history(kiln.client.get_workflow_handle(handle.id, run_id=first_run))
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    latest = await kiln.handle(1).describe()
    assert latest.run_id != first_run
    assert latest.status == WorkflowExecutionStatus.RUNNING
    assert kiln.fakes.outcomes == []

    kiln.fakes.script.claims[1] = [STARTED]
    passed = BuildOutcome(1, BuildStatus.PASSED, exit_code=0)
    assert await kiln.result(kiln.handle(1)) == passed
    assert kiln.fakes.outcomes == [passed]
    assert kiln.fakes.runs == [Run(kiln.host_a, 1)]


# 10. Nothing to do.


async def test_a_build_already_final_records_nothing_and_is_skipped(kiln: Kiln) -> None:
    kiln.fakes.script.claims[1] = [SlotClaim.FINAL]

    result = await kiln.result(await kiln.start(1))

    assert isinstance(result, Skipped)
    assert result.build_id == 1
    assert kiln.fakes.outcomes == []
    assert kiln.fakes.picks == []


# 11. Errors of the run step.


@pytest.mark.parametrize("non_retryable", [True, False], ids=["flagged", "by-type-only"])
async def test_a_permanent_error_fails_the_build_with_its_message_without_a_retry(
    kiln: Kiln, non_retryable: bool
) -> None:
    message = "commit abc123 does not exist"
    kiln.fakes.script.runs = [
        ApplicationError(message, type=PERMANENT_ERROR, non_retryable=non_retryable)
    ]

    result = await kiln.result(await kiln.start(1))

    assert result == BuildOutcome.failed(1, message)
    assert kiln.fakes.outcomes == [result]
    assert kiln.fakes.runs == [Run(kiln.host_a, 1)]
    assert kiln.fakes.cleanups == [Run(kiln.host_a, 1)]


async def test_a_retryable_error_is_retried_and_the_build_then_passes(kiln: Kiln) -> None:
    kiln.fakes.script.runs = [
        ApplicationError("docker is unreachable", type="RetryableError"),
        RunResult(exit_code=0),
    ]

    result = await kiln.result(await kiln.start(1))

    assert result == BuildOutcome(1, BuildStatus.PASSED, exit_code=0)
    assert kiln.fakes.outcomes == [result]
    assert kiln.fakes.runs == [Run(kiln.host_a, 1, attempt=1), Run(kiln.host_a, 1, attempt=2)]
