"""Builds (docs/api.md, Build endpoints): fetch one with its project, rebuild it at the same
pinned commit, cancel it. The workflow side is the fake: a cancel it accepts leaves the status
to the workflow; one for a build without a workflow settles the record in the API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from api.schemas import BuildFetched
from kiln.builds import BuildService
from kiln.contracts import SlotClaim
from kiln.git import CommitInfo
from kiln.models import Build as BuildRow
from kiln.models import BuildStatus
from tests.api.support import Api, FakeWorkflows, User, assert_error
from tests.support.records import BUILD_KEYS, TIMESTAMP

COPIED = ("commit", "branch", "commitAuthor", "commitHash", "projectId")


@dataclass(frozen=True)
class Created:
    owner: User
    project: dict[str, Any]
    build: dict[str, Any]


@pytest.fixture(scope="module")
async def owner(api: Api) -> User:
    return await api.register()


@pytest.fixture
async def created(api: Api, owner: User, workflows: FakeWorkflows) -> Created:
    """A new project, with its first build queued (position 1); the fake then forgets that
    build's start, so a test sees only what it did itself."""
    answer = await api.create_project(owner)
    assert workflows.started == [answer["build"]["id"]]
    workflows.reset()
    return Created(owner, answer["project"], answer["build"])


def record(fetched: dict[str, Any]) -> dict[str, Any]:
    """A fetched build without its nested project: the build record."""
    return {key: value for key, value in fetched.items() if key != "project"}


async def rebuild(api: Api, user: User, build_id: int) -> dict[str, Any]:
    response = await api.http.post(f"/api/build/rebuild/{build_id}", headers=user.headers)
    assert response.status_code == 201, response.text
    build: dict[str, Any] = response.json()["build"]
    return build


# --- fetch ----------------------------------------------------------------------------------


async def test_fetch_answers_the_build_record_with_its_project_summary(
    api: Api, created: Created
) -> None:
    response = await api.http.get(
        f"/api/build/{created.build['id']}", headers=created.owner.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "build"}
    assert body["message"] == "Build fetched"
    build = body["build"]
    assert set(build) == BUILD_KEYS | {"project"}
    project = created.project
    summary = {key: project[key] for key in ("id", "name", "repoUrl", "branch")}
    assert build == created.build | {"project": summary}
    assert BuildFetched.model_validate(body).model_dump(mode="json") == body  # as documented


async def test_a_finished_build_has_its_exit_code_and_finish_time_and_no_queue_position(
    api: Api, created: Created
) -> None:
    api.finish(created.build["id"], BuildStatus.PASSED, 0)

    build = await api.build(created.owner, created.build["id"])

    assert build["status"] == "passed"
    assert build["exitCode"] == 0
    assert TIMESTAMP.match(build["finishedAt"])
    assert build["queuePosition"] is None
    fetched = {"message": "Build fetched", "build": build}
    assert BuildFetched.model_validate(fetched).model_dump(mode="json") == fetched


READS = {
    "build": "/api/build/{build}",
    "logs": "/api/build/{build}/logs",
    "projects": "/api/project/projects",  # the caller's lookup is the route's only other read
    "project": "/api/project/projects/{project}",
}


@pytest.mark.parametrize("path", READS.values(), ids=READS.keys())
async def test_a_build_is_read_while_another_connection_holds_the_write_lock(
    api: Api, created: Created, path: str
) -> None:
    # A worker appending output, or a burst of inserts, holds SQLite's write lock: readers,
    # and the lookup of who calls, must not queue behind it (up to the 30 s busy timeout).
    url = path.format(build=created.build["id"], project=created.project["id"])
    with api.sessions.begin() as writer:
        writer.execute(select(BuildRow.id))  # BEGIN IMMEDIATE: the write lock is held
        response = await asyncio.wait_for(
            api.http.get(url, headers=created.owner.headers), timeout=5
        )

    assert response.status_code == 200, response.text


# --- rebuild --------------------------------------------------------------------------------


async def test_rebuild_answers_201_with_a_new_queued_build_of_the_same_commit(
    api: Api, created: Created, workflows: FakeWorkflows
) -> None:
    original_id = created.build["id"]
    BuildService(api.sessions).fill_commit_info(original_id, CommitInfo("fix: hero", "Jane"))
    api.finish(original_id, BuildStatus.FAILED, 2)
    original = await api.build(created.owner, original_id)

    response = await api.http.post(
        f"/api/build/rebuild/{original_id}", headers=created.owner.headers
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"message", "build"}
    assert body["message"] == "Build re-queued"
    new = body["build"]
    assert set(new) == BUILD_KEYS
    assert new["id"] != original_id
    assert {key: new[key] for key in COPIED} == {key: original[key] for key in COPIED}
    assert (new["commit"], new["commitAuthor"]) == ("fix: hero", "Jane")
    assert new["status"] == "queued"
    assert (new["exitCode"], new["finishedAt"], new["queuePosition"]) == (None, None, 1)
    assert workflows.started == [new["id"]]
    assert await api.build(created.owner, original_id) == original


async def test_rebuilds_wait_in_order_behind_the_queued_builds(api: Api, created: Created) -> None:
    second = await rebuild(api, created.owner, created.build["id"])
    third = await rebuild(api, created.owner, created.build["id"])

    assert (second["queuePosition"], third["queuePosition"]) == (2, 3)
    assert (await api.build(created.owner, created.build["id"]))["queuePosition"] == 1


# --- cancel ---------------------------------------------------------------------------------


async def test_cancel_answers_202_with_the_record_and_asks_the_workflow_to_stop(
    api: Api, created: Created, workflows: FakeWorkflows
) -> None:
    build_id = created.build["id"]

    response = await api.http.post(f"/api/build/{build_id}/cancel", headers=created.owner.headers)

    assert response.status_code == 202, response.text
    assert response.json() == {"message": "Build cancel requested", "build": created.build}
    assert workflows.canceled == [build_id]
    # The workflow ends the build; until it does, the record is as it was.
    assert record(await api.build(created.owner, build_id)) == created.build


async def test_cancel_of_a_running_build_answers_its_running_record(
    api: Api, created: Created, workflows: FakeWorkflows
) -> None:
    build_id = created.build["id"]
    assert BuildService(api.sessions).claim_slot(build_id) == SlotClaim.STARTED

    response = await api.http.post(f"/api/build/{build_id}/cancel", headers=created.owner.headers)

    assert response.status_code == 202, response.text
    assert response.json()["build"]["status"] == "running"
    assert response.json()["build"]["queuePosition"] is None
    assert workflows.canceled == [build_id]


async def test_cancel_of_a_build_without_a_workflow_ends_it_canceled(
    api: Api, created: Created, workflows: FakeWorkflows
) -> None:
    build_id = created.build["id"]
    waiting = (await rebuild(api, created.owner, build_id))["id"]
    workflows.no_workflow = True

    response = await api.http.post(f"/api/build/{build_id}/cancel", headers=created.owner.headers)

    assert response.status_code == 202, response.text
    assert response.json()["build"]["status"] == "queued"
    build = await api.build(created.owner, build_id)
    assert build["status"] == "canceled"
    assert build["exitCode"] is None
    assert TIMESTAMP.match(build["finishedAt"])
    assert (await api.logs(created.owner, build_id)).splitlines()[-1] == "[kiln] build canceled"
    # The freed slot goes to the next build.
    assert workflows.woken == [waiting]
    assert (await api.build(created.owner, waiting))["queuePosition"] == 1


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [(BuildStatus.FAILED, 1), (BuildStatus.PASSED, 0), (BuildStatus.CANCELED, None)],
)
async def test_cancel_of_a_finished_build_is_a_409_naming_its_status(
    api: Api,
    created: Created,
    workflows: FakeWorkflows,
    status: BuildStatus,
    exit_code: int | None,
) -> None:
    build_id = created.build["id"]
    api.finish(build_id, status, exit_code)
    before = await api.build(created.owner, build_id)

    response = await api.http.post(f"/api/build/{build_id}/cancel", headers=created.owner.headers)

    assert assert_error(response, 409) == f"Build already finished ({status})"
    assert workflows.canceled == []
    assert await api.build(created.owner, build_id) == before


async def test_cancel_while_temporal_is_away_is_a_503_and_changes_nothing(
    api: Api, created: Created, workflows: FakeWorkflows
) -> None:
    build_id = created.build["id"]
    workflows.cancel_fails = True

    response = await api.http.post(f"/api/build/{build_id}/cancel", headers=created.owner.headers)

    assert assert_error(response, 503) == "Cancel failed: the workflow service is unavailable"
    assert record(await api.build(created.owner, build_id)) == created.build
