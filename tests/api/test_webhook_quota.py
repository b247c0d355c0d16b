"""Pushes count against the owner's queued-build limit, like rebuilds: a push for a project
whose owner has as many builds waiting as allowed queues nothing for it (the delivery log says
why); a delivery left with nothing to queue is a 429 and is not remembered, so GitHub's
redelivery queues it once builds have started. Other owners' projects are not held back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from starlette.concurrency import run_in_threadpool

from kiln.git import repo_key
from kiln.models import Build, BuildStatus
from kiln.quotas import UserLimits
from kiln.webhooks import Delivery, Push, SignedProject, WebhookService
from testbed.git_server import GitRepo, GitServer
from tests.api.conftest import serving
from tests.api.support import (
    Api,
    User,
    assert_error,
    deliver,
    deliveries,
    new_sha,
    push_to,
)

MAX_QUEUED = 2
LIMIT_TEXT = f"at most {MAX_QUEUED} builds waiting"


@pytest.fixture(scope="module")
async def api(
    migrated_database: Path, git_server: GitServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    directory = tmp_path_factory.mktemp("api-quota")
    async with serving(
        migrated_database, git_server, directory, max_queued_builds_per_user=MAX_QUEUED
    ) as api:
        yield api


async def full_project(api: Api, repo: GitRepo | None = None) -> tuple[User, dict[str, Any]]:
    """A new user's project with MAX_QUEUED builds waiting (its first, and a push's)."""
    user = await api.register()
    project = (await api.create_project(user, repo or api.repo()))["project"]
    assert (await deliver(api, project, push_to(project))).status_code == 202
    assert len(api.build_ids(project["id"])) == MAX_QUEUED
    return user, project


def start_all(api: Api, project_id: int) -> None:
    """The project's builds leave the queue (as a worker taking them would)."""
    with api.sessions.begin() as session:
        session.execute(
            update(Build).where(Build.project_id == project_id).values(status=BuildStatus.RUNNING)
        )


async def test_a_push_past_the_owners_queued_limit_is_a_429_and_queues_nothing(api: Api) -> None:
    user, project = await full_project(api)
    before = api.build_ids(project["id"])

    over = await deliver(api, project, push_to(project, after=new_sha()))

    assert LIMIT_TEXT in assert_error(over, 429)
    assert api.build_ids(project["id"]) == before
    assert set(api.workflows.started) <= set(before)
    logged = (await deliveries(api, user, project["id"]))[0]
    assert logged["result"] == "ignored" and LIMIT_TEXT in logged["reason"]
    assert logged["builds"] == []


async def test_the_refused_delivery_queues_when_github_redelivers_it_after_builds_start(
    api: Api,
) -> None:
    _user, project = await full_project(api)
    body, delivery = push_to(project, after=new_sha()), "redelivered-after-the-limit"
    assert (await deliver(api, project, body, delivery=delivery)).status_code == 429

    start_all(api, project["id"])
    again = await deliver(api, project, body, delivery=delivery)

    assert again.status_code == 202, again.text
    assert [build["projectId"] for build in again.json()["builds"]] == [project["id"]]


async def test_one_full_owner_does_not_hold_back_another_owners_project(api: Api) -> None:
    repo = api.repo()
    full_user, full = await full_project(api, repo)
    other = await api.register()
    shared = (await api.create_project(other, repo))["project"]
    # One delivery signed for both projects of the repository (each secret is the project's
    # own, so the service is given both signers, as the route would find them).
    delivery = Delivery(delivery_id="for-both", event="push", digest=new_sha())
    push = Push(branch="main", after=new_sha(), message="both", author="Ada")
    signers = [SignedProject(p["id"], "main", repo_key(repo.url)) for p in (full, shared)]
    service = WebhookService(api.sessions, UserLimits.from_settings(api.settings))

    records = await run_in_threadpool(service.queue_push, delivery, push, signers)

    assert [record["projectId"] for record in records] == [shared["id"]]
    assert len(api.build_ids(full["id"])) == MAX_QUEUED
    assert LIMIT_TEXT in (await deliveries(api, full_user, full["id"]))[0]["reason"]
    assert (await deliveries(api, other, shared["id"]))[0]["result"] == "queued"
