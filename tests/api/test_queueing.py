"""Queueing when Temporal cannot be reached (docs/api.md, Queueing): the endpoint that created
a build answers 503, and the build it inserted is `failed` with no exit code and the reason as
its log's last line, never left `queued` with nothing to run it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import (
    NOT_QUEUED,
    PROJECTS,
    Api,
    FakeWorkflows,
    User,
    assert_error,
)
from tests.support.records import TIMESTAMP

REASON = "[kiln] the build could not be queued"


@pytest.fixture(scope="module")
async def owner(api: Api) -> User:
    return await api.register()


async def assert_not_queued(api: Api, user: User, build: dict[str, Any]) -> None:
    """The build ended `failed` without an exit code, its log ending with the reason."""
    assert build["status"] == "failed"
    assert build["exitCode"] is None
    assert TIMESTAMP.match(build["finishedAt"])
    assert build["queuePosition"] is None
    assert (await api.logs(user, build["id"])).splitlines()[-1] == REASON


async def test_a_rebuild_that_cannot_be_started_is_a_503_and_ends_failed(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    created = await api.create_project(owner)
    project_id, original_id = created["project"]["id"], created["build"]["id"]
    workflows.start_fails = True

    response = await api.http.post(f"/api/build/rebuild/{original_id}", headers=owner.headers)

    assert assert_error(response, 503) == NOT_QUEUED
    builds = (await api.project(owner, project_id))["builds"]
    assert [build["id"] for build in builds][1:] == [original_id]
    new = builds[0]
    await assert_not_queued(api, owner, new)
    assert new["commitHash"] == created["build"]["commitHash"]
    fetched = await api.build(owner, new["id"])
    assert fetched["status"] == "failed"
    # The original still waits, and is still first in line.
    assert builds[1]["status"] == "queued"
    assert builds[1]["queuePosition"] == 1
    assert workflows.started == [original_id]  # the project's first build only


async def test_a_project_whose_first_build_cannot_be_started_exists_with_it_failed(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    workflows.start_fails = True

    response = await api.http.post(
        PROJECTS,
        json={"name": "unqueued", "repoUrl": api.shared_repo().url},
        headers=owner.headers,
    )

    assert assert_error(response, 503) == NOT_QUEUED
    listed = await api.http.get(PROJECTS, headers=owner.headers)
    (project,) = [p for p in listed.json()["projects"] if p["name"] == "unqueued"]
    (build,) = project["builds"]
    assert build["commitHash"] == api.shared_repo().head()
    await assert_not_queued(api, owner, build)


async def test_once_temporal_is_back_the_same_build_can_be_rebuilt(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    created = await api.create_project(owner)
    build_id = created["build"]["id"]
    workflows.start_fails = True
    refused = await api.http.post(f"/api/build/rebuild/{build_id}", headers=owner.headers)
    assert_error(refused, 503)
    workflows.start_fails = False

    response = await api.http.post(f"/api/build/rebuild/{build_id}", headers=owner.headers)

    assert response.status_code == 201, response.text
    build = response.json()["build"]
    assert build["status"] == "queued"
    # The one that failed to queue holds no place in line.
    assert build["queuePosition"] == 2
    assert workflows.started == [build_id, build["id"]]
