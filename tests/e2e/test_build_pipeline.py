"""A build end to end: the pinned commit is checked out, run in a container, and recorded."""

from __future__ import annotations

from testbed.stack import Stack
from tests.support.helpers import new_repo, repo_name


async def test_new_project_builds_the_branch_head_and_passes_with_logs(stack: Stack) -> None:
    user = await stack.register()
    repo = stack.git.create_repo(repo_name("app"))
    sha = repo.commit({"hello.txt": "hello from v1\n"}, "first commit", author="Ada Lovelace")

    created = await stack.create_project(user, repo.url, "cat hello.txt && echo built ok")

    queued = created["build"]
    assert queued["status"] == "queued"
    assert queued["commitHash"] == sha
    assert queued["exitCode"] is None and queued["finishedAt"] is None
    final = await stack.wait_final(user, queued["id"])
    assert final["status"] == "passed"
    assert final["exitCode"] == 0
    assert final["finishedAt"] is not None
    # Message and author were not known at creation: the checkout filled them in.
    assert final["commit"] == "first commit"
    assert final["commitAuthor"] == "Ada Lovelace"
    logs = await stack.logs(user, queued["id"])
    assert "hello from v1" in logs and "built ok" in logs


async def test_a_failing_command_fails_the_build_with_its_exit_code(stack: Stack) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "app")

    created = await stack.create_project(user, repo.url, "echo about to fail; exit 3")

    final = await stack.wait_final(user, created["build"]["id"])
    assert final["status"] == "failed"
    assert final["exitCode"] == 3
    assert "about to fail" in await stack.logs(user, created["build"]["id"])
