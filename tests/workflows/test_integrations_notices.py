"""BuildWorkflow's notices (GitHub commit statuses, notification hooks) with scripted
activities: each target gets its events in order, retried when it fails, and no receiver —
slow, failing or refusing — changes or holds up the build's own outcome. A project with
nothing configured gets no notice activity at all."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from kiln.contracts import BuildOutcome, RunResult
from kiln.models import BuildStatus
from kiln.notifications import HookPlan, NotifyPlan
from tests.workflows.conftest import Kiln, history, scheduled_activities, until_event
from tests.workflows.fakes import BLOCK, Sent

PASSED = BuildOutcome(1, BuildStatus.PASSED, exit_code=0)
EVERYTHING = NotifyPlan(
    github=True,
    hooks=[HookPlan(7, ["running", "failed"]), HookPlan(8, ["passed", "failed", "canceled"])],
)


def sent_to(kiln: Kiln, target: str) -> list[str]:
    return [sent.event for sent in kiln.fakes.notices if sent.target == target]


async def test_each_target_gets_the_events_it_wants_in_order(kiln: Kiln) -> None:
    kiln.fakes.script.plan = EVERYTHING

    assert await kiln.result(await kiln.start(1)) == PASSED

    assert sent_to(kiln, "github") == ["queued", "running", "passed"]
    assert sent_to(kiln, "hook:7") == ["running"]
    assert sent_to(kiln, "hook:8") == ["passed"]


async def test_a_failed_build_notifies_its_failure(kiln: Kiln) -> None:
    kiln.fakes.script.plan = EVERYTHING
    kiln.fakes.script.runs = [RunResult(exit_code=2)]

    result = await kiln.result(await kiln.start(1))

    assert result == BuildOutcome(1, BuildStatus.FAILED, exit_code=2)
    assert sent_to(kiln, "github") == ["queued", "running", "failed"]
    assert sent_to(kiln, "hook:7") == ["running", "failed"]


async def test_failing_receivers_are_retried_and_still_get_every_event_in_order(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.plan = EVERYTHING
    kiln.fakes.script.notice_failures = 2  # two 5xx answers, then through

    assert await kiln.result(await kiln.start(1)) == PASSED

    github = [sent for sent in kiln.fakes.notices if sent.target == "github"]
    assert github == [Sent("github", event, 3) for event in ("queued", "running", "passed")]
    # One notice at a time per target: every attempt at `running` came after `queued` got
    # through.
    attempts = [a.event for a in kiln.fakes.notice_attempts if a.target == "github"]
    assert attempts == ["queued"] * 3 + ["running"] * 3 + ["passed"] * 3


async def test_receivers_refusing_every_notice_change_nothing_about_the_build(kiln: Kiln) -> None:
    kiln.fakes.script.plan = EVERYTHING
    kiln.fakes.script.notice_failures = None  # a 401 on every notice

    assert await kiln.result(await kiln.start(1)) == PASSED

    assert kiln.fakes.outcomes == [PASSED]
    assert kiln.fakes.notices == []
    assert kiln.fakes.runs and kiln.fakes.cleanups


async def test_a_slow_receiver_never_holds_the_build_up(kiln: Kiln) -> None:
    kiln.fakes.script.plan = NotifyPlan(github=True)
    kiln.fakes.script.notice_seconds = 1.5
    handle = await kiln.start(1)

    await kiln.fakes.until(lambda: bool(kiln.fakes.outcomes))

    # The outcome is recorded and the host cleaned up while the first notice is still out.
    assert kiln.fakes.outcomes == [PASSED]
    assert sent_to(kiln, "github") == []
    assert await kiln.result(handle, timeout=20) == PASSED
    assert sent_to(kiln, "github") == ["queued", "running", "passed"]


async def test_a_cancel_while_notices_are_still_out_ends_with_the_builds_own_outcome(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.plan = NotifyPlan(github=True)
    kiln.fakes.script.notice_seconds = 1.5
    handle = await kiln.start(1)
    # Recorded and cleaned up: the workflow now waits for its notices (a timer bounds it).
    await until_event(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    assert kiln.fakes.outcomes == [PASSED] and kiln.fakes.cleanups

    await handle.cancel()  # e.g. the project is being deleted

    assert await kiln.result(handle, timeout=20) == PASSED
    assert kiln.fakes.outcomes == [PASSED]


async def test_a_canceled_build_notifies_canceled_after_running(kiln: Kiln) -> None:
    kiln.fakes.script.plan = EVERYTHING
    kiln.fakes.script.runs = [BLOCK]
    handle = await kiln.start(1)
    await kiln.fakes.until(lambda: "execute_build" in kiln.fakes.blocked)

    await handle.cancel()

    await kiln.fakes.until(lambda: "canceled" in sent_to(kiln, "github"))
    assert sent_to(kiln, "github") == ["queued", "running", "canceled"]
    await kiln.fakes.until(lambda: sent_to(kiln, "hook:8") == ["canceled"])
    assert kiln.fakes.outcomes[-1].status == BuildStatus.CANCELED


async def test_a_project_with_nothing_configured_schedules_no_notice(kiln: Kiln) -> None:
    handle = await kiln.start(1)

    assert await kiln.result(handle) == PASSED

    assert scheduled_activities(await history(handle)) == ["execute_build", "cleanup_build"]
    assert kiln.fakes.notice_attempts == []


async def test_a_build_whose_notices_cannot_be_looked_up_still_runs_without_them(
    kiln: Kiln,
) -> None:
    kiln.fakes.script.plan = RuntimeError("the database is away")

    assert await kiln.result(await kiln.start(1), timeout=30) == PASSED

    assert kiln.fakes.notice_attempts == []
