"""Builds that go wrong still end: a final status, a reason in the logs, nothing left behind.

Every test here waits for its build to reach `passed` or `failed` (a build never stays
`queued`/`running` once its workflow ended) and then checks that the build's container and
workspace are gone.
"""

from __future__ import annotations

import shutil

import docker
from temporalio.client import Client

from testbed.git_server import GitServer
from testbed.stack import Stack
from tests.support.helpers import assert_cleaned_up, last_line, new_repo, rebuild, repo_name
from workflows.ids import workflow_id

# A permanent error ends the build on its first attempt (about a second). The retry policy for
# infrastructure trouble waits 1 + 2 + 4 + 8 + 16 s between its six attempts, so a build that
# ends within this bound was not put through that policy.
PERMANENT_FAILURE_BOUND = 20.0
MISSING_IMAGE = "kiln-test/does-not-exist:latest"


async def test_a_repository_deleted_after_creation_fails_the_rebuild_with_a_reason(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "fail")
    created = await stack.create_project(user, repo.url, "cat README")
    first = await stack.wait_final(user, created["build"]["id"])
    assert first["status"] == "passed"
    await assert_cleaned_up(stack, docker_client, first["id"])
    shutil.rmtree(repo.bare)

    response = await rebuild(stack, user, first["id"])
    assert response.status_code == 201, response.text
    build_id = response.json()["build"]["id"]

    final = await stack.wait_final(user, build_id, timeout=PERMANENT_FAILURE_BOUND)
    assert final["status"] == "failed"
    assert final["exitCode"] is None
    assert final["finishedAt"] is not None
    reason = last_line(await stack.logs(user, build_id)).lower()
    assert "git" in reason and "not found" in reason
    await assert_cleaned_up(stack, docker_client, build_id)


async def test_a_missing_image_fails_the_build_with_a_reason(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "fail")

    created = await stack.create_project(user, repo.url, "echo never runs", image=MISSING_IMAGE)

    build_id = created["build"]["id"]
    final = await stack.wait_final(user, build_id, timeout=PERMANENT_FAILURE_BOUND)
    assert final["status"] == "failed"
    assert final["exitCode"] is None
    logs = await stack.logs(user, build_id)
    assert MISSING_IMAGE in last_line(logs)
    assert "never runs" not in logs
    await assert_cleaned_up(stack, docker_client, build_id)


async def test_a_long_output_is_stored_completely_and_in_order(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "fail")

    created = await stack.create_project(user, repo.url, "seq 1 20000")

    build_id = created["build"]["id"]
    final = await stack.wait_final(user, build_id)
    assert final["status"] == "passed"
    assert final["exitCode"] == 0
    logs = await stack.logs(user, build_id)
    assert "20000" in logs
    assert logs.splitlines() == [str(n) for n in range(1, 20001)]
    await assert_cleaned_up(stack, docker_client, build_id)


async def test_bytes_that_are_not_utf8_do_not_break_the_logs(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "fail")
    command = r"printf 'before\n\377\376 raw bytes\ncaf\303\251\n'; echo after; exit 7"

    created = await stack.create_project(user, repo.url, command)

    build_id = created["build"]["id"]
    final = await stack.wait_final(user, build_id)
    assert final["status"] == "failed"
    assert final["exitCode"] == 7
    response = await stack.http.get(f"/api/build/{build_id}/logs", headers=user.headers)
    assert response.status_code == 200, response.text
    lines = response.json()["logs"].splitlines()
    assert lines[0] == "before"
    assert "\ufffd" in lines[1] and lines[1].endswith(" raw bytes")
    assert lines[2:] == ["café", "after"]
    await assert_cleaned_up(stack, docker_client, build_id)


async def test_a_clone_slower_than_the_heartbeat_timeout_still_builds_once(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    """A fetch that takes longer than the 10 s heartbeat timeout (a big repository, a slow
    remote) must not look like a lost worker: no retry starts beside it."""
    user = await stack.register()
    with GitServer(fetch_delay=12) as slow:
        repo = slow.create_repo(repo_name("slow"))
        repo.commit({"big.txt": "pretend this is large\n"}, "big")
        created = await stack.create_project(user, repo.url, "cat big.txt")
        build_id = created["build"]["id"]

        final = await stack.wait_final(user, build_id, timeout=120)

    assert (final["status"], final["exitCode"]) == ("passed", 0)
    assert (await stack.logs(user, build_id)).count("pretend this is large") == 1
    client = await Client.connect(stack.settings.temporal_address)
    handle = client.get_workflow_handle(workflow_id(build_id, stack.settings.workflow_id_prefix))
    history = await handle.fetch_history()
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert attempts and set(attempts) == {1}, attempts  # each step's first attempt did it
    await assert_cleaned_up(stack, docker_client, build_id)
