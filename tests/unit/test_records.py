"""The JSON shapes the API and the events share (kiln.records)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from kiln.db import make_session_factory
from kiln.models import Build, BuildStatus
from kiln.projects import ProjectService
from kiln.records import build_record, iso, queue_positions, user_room
from tests.unit.conftest import Rows

SHA = "b" * 40


def test_iso_shows_utc_with_milliseconds_and_a_z() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)
    assert iso(moment) == "2026-03-04T05:06:07.891Z"


def test_iso_pads_milliseconds_to_three_digits() -> None:
    assert iso(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"
    assert iso(datetime(2026, 1, 1, 0, 0, 0, 5_000, tzinfo=UTC)) == "2026-01-01T00:00:00.005Z"


def test_iso_truncates_rather_than_rounds_to_milliseconds() -> None:
    assert iso(datetime(2026, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC)) == "2026-01-01T23:59:59.999Z"


def test_iso_converts_another_time_zone_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert iso(datetime(2026, 1, 1, 8, 30, tzinfo=tokyo)) == "2025-12-31T23:30:00.000Z"
    new_york = timezone(timedelta(hours=-5))
    assert iso(datetime(2026, 1, 1, 20, 0, 0, 250_000, tzinfo=new_york)) == (
        "2026-01-02T01:00:00.250Z"
    )


def test_iso_of_no_moment_is_none() -> None:
    assert iso(None) is None


def build(status: BuildStatus, *, build_id: int = 5, finished: bool = False) -> Build:
    return Build(
        id=build_id,
        project_id=2,
        status=status,
        commit="Fix the thing",
        branch="main",
        commit_author="Ada",
        commit_hash=SHA,
        exit_code=0 if finished else None,
        started_at=datetime(2026, 1, 1, 12, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, 12, 1, tzinfo=UTC) if finished else None,
    )


def test_a_build_record_has_the_api_pages_fields() -> None:
    record = build_record(build(BuildStatus.PASSED, finished=True))
    assert record == {
        "id": 5,
        "status": "passed",
        "commit": "Fix the thing",
        "branch": "main",
        "commitAuthor": "Ada",
        "commitHash": SHA,
        "exitCode": 0,
        "projectId": 2,
        "startedAt": "2026-01-01T12:00:00.000Z",
        "finishedAt": "2026-01-01T12:01:00.000Z",
        "queuePosition": None,
        "workflowId": "build-5",
    }


def test_a_queued_build_shows_its_queue_position() -> None:
    assert build_record(build(BuildStatus.QUEUED), {5: 3, 6: 4})["queuePosition"] == 3


def test_a_queued_build_missing_from_the_positions_has_none() -> None:
    assert build_record(build(BuildStatus.QUEUED), {6: 1})["queuePosition"] is None
    assert build_record(build(BuildStatus.QUEUED))["queuePosition"] is None


@pytest.mark.parametrize(
    "status",
    [BuildStatus.RUNNING, BuildStatus.PASSED, BuildStatus.FAILED, BuildStatus.CANCELED],
)
def test_only_a_queued_build_has_a_queue_position(status: BuildStatus) -> None:
    record = build_record(build(status, finished=status.is_final), {5: 1})
    assert record["queuePosition"] is None
    assert record["status"] == status.value


def test_a_users_events_go_to_their_own_room() -> None:
    assert user_room(12) == "user:12"
    assert user_room(12) != user_room(1)


def test_the_listing_shows_each_build_as_its_own_record_does(rows: Rows) -> None:
    """The project listing reads builds as plain rows (kiln.records.RECORD_COLUMNS): its records
    are the very ones a build's own read gives, queue place and workflow id included."""
    project = rows.project()
    for status in (BuildStatus.PASSED, BuildStatus.RUNNING, BuildStatus.QUEUED):
        rows.build(project, status)
    # A deployment with a workflow id prefix: a row carries no session to tell it.
    sessions = make_session_factory(rows.sessions.kw["bind"], workflow_id_prefix="staging-")
    listed = ProjectService(sessions).list_owned(project.owner_id)[0]["builds"]
    with sessions() as session:
        positions = queue_positions(session, [project.id])
        newest = session.scalars(select(Build).order_by(Build.id.desc()))
        assert listed == [build_record(one, positions) for one in newest]
    assert [record["workflowId"] for record in listed] == [
        "staging-build-3",
        "staging-build-2",
        "staging-build-1",
    ]
    assert listed[0]["queuePosition"] == 1
