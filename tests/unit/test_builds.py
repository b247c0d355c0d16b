"""Build state changes (kiln.builds.BuildService) on a migrated SQLite database: slots, FIFO,
finishing once, and one status event per change."""

from __future__ import annotations

from typing import Any

import pytest

from kiln.builds import BuildService
from kiln.contracts import BuildOutcome, SlotClaim
from kiln.db import SessionFactory
from kiln.events import STATUS_EVENT
from kiln.logs import append_log, read_log
from kiln.models import Build, BuildStatus, Project
from tests.unit.conftest import Rows


@pytest.fixture
def service(sessions: SessionFactory) -> BuildService:
    return BuildService(sessions)


def status_events(rows: Rows) -> list[dict[str, Any]]:
    return [event for event in rows.events() if event["event"] == STATUS_EVENT]


def only_record(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, events
    (record,) = events[0]["data"]
    assert isinstance(record, dict)
    return record


def log_of(sessions: SessionFactory, build: Build) -> bytes:
    with sessions() as session:
        return read_log(session, build.id)[0]


# --- claim_slot ---


def test_a_queued_build_of_an_idle_project_starts(service: BuildService, rows: Rows) -> None:
    build = rows.build(rows.project())
    assert service.claim_slot(build.id) is SlotClaim.STARTED
    assert rows.status(build.id) is BuildStatus.RUNNING


def test_a_build_waits_while_the_projects_only_slot_is_taken(
    service: BuildService, rows: Rows
) -> None:
    project = rows.project()
    rows.build(project, BuildStatus.RUNNING)
    build = rows.build(project)
    assert service.claim_slot(build.id) is SlotClaim.WAITING
    assert rows.status(build.id) is BuildStatus.QUEUED


def test_max_concurrent_builds_builds_run_at_once_and_no_more(
    service: BuildService, rows: Rows
) -> None:
    project = rows.project(max_concurrent_builds=2)
    first, second, third = (rows.build(project) for _ in range(3))
    assert service.claim_slot(first.id) is SlotClaim.STARTED
    assert service.claim_slot(second.id) is SlotClaim.STARTED
    assert service.claim_slot(third.id) is SlotClaim.WAITING
    assert rows.status(third.id) is BuildStatus.QUEUED


def test_a_newer_build_waits_while_an_older_one_of_its_project_is_queued(
    service: BuildService, rows: Rows
) -> None:
    project = rows.project(max_concurrent_builds=3)
    older, newer = rows.build(project), rows.build(project)
    assert service.claim_slot(newer.id) is SlotClaim.WAITING
    assert service.claim_slot(older.id) is SlotClaim.STARTED
    assert service.claim_slot(newer.id) is SlotClaim.STARTED


def test_other_projects_builds_take_no_slot_and_hold_no_place(
    service: BuildService, rows: Rows
) -> None:
    owner = rows.user()
    busy = rows.project(owner)
    rows.build(busy, BuildStatus.RUNNING)
    rows.build(busy)  # older, queued, but in the other project
    mine = rows.build(rows.project(owner))
    assert service.claim_slot(mine.id) is SlotClaim.STARTED


def test_a_finished_build_frees_its_slot(service: BuildService, rows: Rows) -> None:
    project = rows.project()
    running = rows.build(project, BuildStatus.RUNNING)
    waiting = rows.build(project)
    assert service.claim_slot(waiting.id) is SlotClaim.WAITING
    service.finish(BuildOutcome(running.id, BuildStatus.PASSED, exit_code=0))
    assert service.claim_slot(waiting.id) is SlotClaim.STARTED


@pytest.mark.parametrize("status", [BuildStatus.PASSED, BuildStatus.FAILED, BuildStatus.CANCELED])
def test_claiming_a_finished_build_is_final_and_changes_nothing(
    service: BuildService, rows: Rows, status: BuildStatus
) -> None:
    build = rows.build(rows.project(), status)
    assert service.claim_slot(build.id) is SlotClaim.FINAL
    assert rows.status(build.id) is status
    assert status_events(rows) == []


def test_claiming_a_deleted_build_is_final(service: BuildService) -> None:
    assert service.claim_slot(999) is SlotClaim.FINAL


def test_claiming_a_running_build_again_says_started_without_a_new_event(
    service: BuildService, rows: Rows
) -> None:
    project = rows.project()
    build = rows.build(project, BuildStatus.RUNNING)
    rows.build(project, BuildStatus.RUNNING)  # even with every slot taken
    assert service.claim_slot(build.id) is SlotClaim.STARTED
    assert status_events(rows) == []


def test_starting_a_build_announces_it_running_to_its_owner(
    service: BuildService, rows: Rows
) -> None:
    owner = rows.user()
    build = rows.build(rows.project(owner))
    service.claim_slot(build.id)
    events = status_events(rows)
    record = only_record(events)
    assert events[0]["room"] == f"user:{owner.id}"
    assert record["id"] == build.id
    assert record["status"] == "running"
    assert record["queuePosition"] is None


def test_a_build_that_must_wait_announces_nothing(service: BuildService, rows: Rows) -> None:
    project = rows.project()
    rows.build(project, BuildStatus.RUNNING)
    service.claim_slot(rows.build(project).id)
    assert status_events(rows) == []


# --- finish ---


def test_finish_records_the_status_exit_code_and_time(service: BuildService, rows: Rows) -> None:
    build = rows.build(rows.project(), BuildStatus.RUNNING)
    service.finish(BuildOutcome(build.id, BuildStatus.FAILED, exit_code=2))
    with rows.sessions() as session:
        stored = session.get(Build, build.id)
        assert stored is not None
        assert (stored.status, stored.exit_code) == (BuildStatus.FAILED, 2)
        assert stored.finished_at is not None and stored.finished_at >= stored.started_at


def test_a_second_finish_is_a_no_op_that_keeps_the_first_status(
    service: BuildService, rows: Rows
) -> None:
    build = rows.build(rows.project(), BuildStatus.RUNNING)
    service.finish(BuildOutcome(build.id, BuildStatus.PASSED, exit_code=0))
    with rows.sessions() as session:
        first = session.get(Build, build.id)
        assert first is not None
    service.finish(BuildOutcome.canceled(build.id))
    with rows.sessions() as session:
        again = session.get(Build, build.id)
        assert again is not None
        assert (again.status, again.exit_code) == (BuildStatus.PASSED, 0)
        assert again.finished_at == first.finished_at
    assert log_of(rows.sessions, build) == b""  # no "build canceled" line either
    assert len(status_events(rows)) == 1


def test_finish_appends_the_reason_as_the_last_log_line(
    service: BuildService, sessions: SessionFactory, rows: Rows
) -> None:
    build = rows.build(rows.project(), BuildStatus.RUNNING)
    with sessions.begin() as session:
        append_log(session, build.id, b"npm ERR! missing script\n")
    service.finish(BuildOutcome.failed(build.id, "image 'nope' not found"))
    log = log_of(sessions, build)
    assert log == b"npm ERR! missing script\n\n[kiln] image 'nope' not found\n"
    assert log.splitlines()[-1] == b"[kiln] image 'nope' not found"


def test_finish_without_a_reason_adds_nothing_to_the_log(
    service: BuildService, sessions: SessionFactory, rows: Rows
) -> None:
    build = rows.build(rows.project(), BuildStatus.RUNNING)
    with sessions.begin() as session:
        append_log(session, build.id, b"done\n")
    service.finish(BuildOutcome(build.id, BuildStatus.PASSED, exit_code=0))
    assert log_of(sessions, build) == b"done\n"


def test_a_queued_build_can_be_finished_directly(service: BuildService, rows: Rows) -> None:
    build = rows.build(rows.project())
    service.finish(BuildOutcome.canceled(build.id))
    assert rows.status(build.id) is BuildStatus.CANCELED
    assert service.claim_slot(build.id) is SlotClaim.FINAL


def test_finishing_a_deleted_build_wakes_nothing(service: BuildService) -> None:
    assert service.finish(BuildOutcome.failed(12345, "gone")) == []


def test_finish_announces_the_final_record_once(service: BuildService, rows: Rows) -> None:
    owner = rows.user()
    build = rows.build(rows.project(owner), BuildStatus.RUNNING)
    service.finish(BuildOutcome(build.id, BuildStatus.PASSED, exit_code=0))
    events = status_events(rows)
    record = only_record(events)
    assert events[0]["room"] == f"user:{owner.id}"
    assert (record["id"], record["status"], record["exitCode"]) == (build.id, "passed", 0)
    assert record["finishedAt"] is not None and record["finishedAt"].endswith("Z")


def test_a_build_that_takes_a_slot_names_the_builds_its_projects_free_slots_may_start(
    service: BuildService, rows: Rows
) -> None:
    # Three slots: 1 runs, and after it takes its slot, one is left for the oldest waiter.
    project = rows.project(max_concurrent_builds=3)
    rows.build(project, BuildStatus.RUNNING)
    older, younger, youngest = (rows.build(project) for _ in range(3))
    rows.build(rows.project(), BuildStatus.QUEUED)  # another project's: never named here
    assert service.claim_and_wake(younger.id) == (SlotClaim.WAITING, [])  # the older waits first
    assert service.claim_and_wake(older.id) == (SlotClaim.STARTED, [younger.id])
    assert service.claim_and_wake(younger.id) == (SlotClaim.STARTED, [])  # every slot taken
    assert rows.status(youngest.id) is BuildStatus.QUEUED


def test_a_claim_in_a_project_of_one_slot_wakes_nobody(service: BuildService, rows: Rows) -> None:
    project = rows.project()
    first = rows.build(project)
    rows.build(project)
    assert service.claim_and_wake(first.id) == (SlotClaim.STARTED, [])


def test_finish_returns_the_queued_builds_to_wake_oldest_first(
    service: BuildService, rows: Rows
) -> None:
    project = rows.project(max_concurrent_builds=2)
    running = rows.build(project, BuildStatus.RUNNING)
    first, second, third = (rows.build(project) for _ in range(3))
    rows.build(rows.project(), BuildStatus.QUEUED)  # another project's: never woken here
    woken = service.finish(BuildOutcome(running.id, BuildStatus.PASSED, exit_code=0))
    assert woken == [first.id, second.id]
    assert third.id not in woken


def test_a_repeated_finish_still_returns_the_builds_to_wake(
    service: BuildService, rows: Rows
) -> None:
    project = rows.project()
    running = rows.build(project, BuildStatus.RUNNING)
    waiting = rows.build(project)
    outcome = BuildOutcome(running.id, BuildStatus.PASSED, exit_code=0)
    assert service.finish(outcome) == [waiting.id]
    assert service.finish(outcome) == [waiting.id]


def test_finish_wakes_nothing_when_no_build_waits(service: BuildService, rows: Rows) -> None:
    project = rows.project()
    running = rows.build(project, BuildStatus.RUNNING)
    rows.build(project, BuildStatus.PASSED)
    assert service.finish(BuildOutcome(running.id, BuildStatus.FAILED, exit_code=1)) == []


def test_the_builds_a_finish_wakes_follow_a_raised_limit(
    service: BuildService, sessions: SessionFactory, rows: Rows
) -> None:
    project = rows.project()
    running = rows.build(project, BuildStatus.RUNNING)
    queued = [rows.build(project) for _ in range(4)]
    with sessions.begin() as session:
        stored = session.get(Project, project.id)
        assert stored is not None
        stored.max_concurrent_builds = 3
    woken = service.finish(BuildOutcome(running.id, BuildStatus.PASSED, exit_code=0))
    assert woken == [build.id for build in queued[:3]]
    assert service.waiting(project.id) == woken


# --- one event per change, through a whole build ---


def test_each_state_change_writes_exactly_one_status_event(
    service: BuildService, rows: Rows
) -> None:
    project = rows.project()
    build = rows.build(project)
    service.claim_slot(build.id)
    service.claim_slot(build.id)  # a replay: no change
    service.finish(BuildOutcome(build.id, BuildStatus.PASSED, exit_code=0))
    service.finish(BuildOutcome(build.id, BuildStatus.FAILED, exit_code=1))  # no change
    records = [event["data"][0] for event in status_events(rows)]
    assert [(record["id"], record["status"]) for record in records] == [
        (build.id, "running"),
        (build.id, "passed"),
    ]
