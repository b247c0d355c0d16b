"""Scripted fakes of Kiln's activities, registered under the real names, and what they saw.

A test says what each activity answers (`Script`) and then waits, with a timeout, for what the
fakes recorded (`Fakes.until`). Every fake is async, so it runs on the test's event loop and
can be waited on with plain asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from kiln.contracts import (
    BuildJob,
    BuildOutcome,
    HostRequest,
    RunResult,
    SlotClaim,
    Started,
    Waiting,
)
from kiln.notifications import Delivery, Notice, NotifyPlan

T = TypeVar("T")

# How long a test waits for something the workflow should do soon.
WAIT_SECONDS = 15.0
# A blocked fake gives up after this long, so a test that went wrong still ends.
BLOCK_LIMIT_SECONDS = 20.0


class Block:
    """An answer that holds the call until the call is cancelled."""

    def __repr__(self) -> str:
        return "BLOCK"


BLOCK = Block()

Step = RunResult | BaseException | Block


def _next(answers: list[T]) -> T:
    """The next answer in order; the last one repeats."""
    return answers.pop(0) if len(answers) > 1 else answers[0]


# What claim_slot may be scripted to answer.
ClaimAnswer = SlotClaim | Waiting | Started | Block


@dataclass
class Script:
    """What the fakes answer. Lists are consumed in order and their last item repeats."""

    # claim_slot, per build id (a build missing here gets STARTED). A bare WAITING is what a
    # worker that does not count answers; Waiting(n) says n builds are ahead.
    # Started(wake) is a claim that took a slot and names the builds to wake.
    claims: dict[int, list[ClaimAnswer]] = field(default_factory=dict)
    # pick_host: the host task queue per call.
    hosts: list[str | Block] = field(default_factory=list)
    # execute_build, per call: a result, an exception to raise, or BLOCK.
    runs: list[Step] = field(default_factory=lambda: [RunResult(exit_code=0)])
    # finish_build, per build id: the builds to wake.
    wakes: dict[int, list[int]] = field(default_factory=dict)
    # notify_plan: what every build's project has configured (default: nothing), or an
    # exception it raises (the database is away).
    plan: NotifyPlan | BaseException = field(default_factory=NotifyPlan)
    # send_github_status / send_hook: how many attempts of each notice fail (a 5xx) before
    # one gets through; None: the receiver refuses every notice for good (non-retryable).
    notice_failures: int | None = 0
    # How long each notice takes to get through (a slow receiver).
    notice_seconds: float = 0.0


@dataclass(frozen=True)
class Sent:
    """A notice that got through: to whom (`github` or `hook:<id>`), which event, on which
    attempt."""

    target: str
    event: str
    attempt: int


@dataclass(frozen=True)
class Run:
    """One execute_build (or cleanup_build) call: where, for which build, which attempt."""

    host: str
    build_id: int
    attempt: int = 1


@dataclass
class Fakes:
    script: Script
    claims: list[int] = field(default_factory=list)
    picks: list[HostRequest] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    cleanups: list[Run] = field(default_factory=list)
    outcomes: list[BuildOutcome] = field(default_factory=list)
    notices: list[Sent] = field(default_factory=list)
    # Every attempt at a notice.
    notice_attempts: list[Sent] = field(default_factory=list)
    # Names of the fakes that started blocking, and of those that then saw their cancel.
    blocked: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _record(self, into: list[T], item: T) -> None:
        into.append(item)
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
        """Wait until `condition()` holds (it is looked at after every recorded call)."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def _block(self, name: str, *, heartbeat: bool = False) -> None:
        self._record(self.blocked, name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BLOCK_LIMIT_SECONDS
        try:
            while loop.time() < deadline:
                if heartbeat:
                    activity.heartbeat()
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            self._record(self.cancelled, name)
            raise

    # The workflow's local activities.

    @activity.defn(name="claim_slot")
    async def claim_slot(self, build_id: int) -> SlotClaim | Waiting | Started:
        self._record(self.claims, build_id)
        answer = _next(self.script.claims.setdefault(build_id, [SlotClaim.STARTED]))
        if isinstance(answer, Block):
            await self._block("claim_slot")
            return SlotClaim.WAITING
        return answer

    @activity.defn(name="pick_host")
    async def pick_host(self, request: HostRequest) -> str:
        # A copy: the workflow's list is the caller's, not a record.
        self._record(self.picks, HostRequest(request.build_id, list(request.exclude)))
        answer = _next(self.script.hosts)
        if isinstance(answer, Block):
            await self._block("pick_host")
            return "nobody-polls-this-queue"
        return answer

    @activity.defn(name="finish_build")
    async def finish_build(self, outcome: BuildOutcome) -> list[int]:
        self._record(self.outcomes, outcome)
        return self.script.wakes.get(outcome.build_id, [])

    @activity.defn(name="notify_plan")
    async def notify_plan(self, build_id: int) -> NotifyPlan:
        if isinstance(self.script.plan, BaseException):
            raise self.script.plan
        return self.script.plan

    # The notices (on the workflow's queue).

    async def _notice(self, target: str, notice: Notice) -> Delivery:
        attempt = activity.info().attempt
        self._record(self.notice_attempts, Sent(target, notice.event, attempt))
        failures = self.script.notice_failures
        if failures is None:
            raise ApplicationError(f"{target} answered 401", non_retryable=True)
        if attempt <= failures:
            raise ApplicationError(f"{target} answered 500")
        await asyncio.sleep(self.script.notice_seconds)
        self._record(self.notices, Sent(target, notice.event, attempt))
        return Delivery.SENT

    @activity.defn(name="send_github_status")
    async def send_github_status(self, notice: Notice) -> Delivery:
        return await self._notice("github", notice)

    @activity.defn(name="send_hook")
    async def send_hook(self, notice: Notice) -> Delivery:
        return await self._notice(f"hook:{notice.hook_id}", notice)

    # The host-bound activities.

    @activity.defn(name="execute_build")
    async def execute_build(self, job: BuildJob) -> RunResult:
        info = activity.info()
        self._record(self.runs, Run(info.task_queue, job.build_id, info.attempt))
        step = _next(self.script.runs)
        if isinstance(step, Block):
            await self._block("execute_build", heartbeat=True)
            return RunResult(exit_code=99)  # never cancelled: the test fails on this
        if isinstance(step, BaseException):
            raise step
        return step

    @activity.defn(name="cleanup_build")
    async def cleanup_build(self, job: BuildJob) -> None:
        self._record(self.cleanups, Run(activity.info().task_queue, job.build_id))
