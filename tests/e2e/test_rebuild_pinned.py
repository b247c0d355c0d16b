"""A rebuild runs the commit its original build was pinned to, whatever was pushed since."""

from __future__ import annotations

from testbed.stack import Stack
from tests.support.helpers import rebuild, repo_name


async def test_rebuild_keeps_the_pinned_commit_after_new_pushes(stack: Stack) -> None:
    user = await stack.register()
    repo = stack.git.create_repo(repo_name("pinned"))
    v1 = repo.commit({"version.txt": "content of v1\n"}, "release v1", author="Ada Lovelace")
    created = await stack.create_project(user, repo.url, "cat version.txt")
    first_id = created["build"]["id"]
    first = await stack.wait_final(user, first_id)
    assert first["status"] == "passed"
    assert first["commitHash"] == v1
    assert "content of v1" in await stack.logs(user, first_id)

    v2 = repo.commit({"version.txt": "content of v2\n"}, "release v2", author="Alan Turing")
    response = await rebuild(stack, user, first_id)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message"] == "Build re-queued"
    queued = body["build"]
    assert queued["id"] != first_id
    assert queued["status"] == "queued"
    assert queued["commitHash"] == v1
    assert queued["exitCode"] is None and queued["finishedAt"] is None
    assert queued["projectId"] == first["projectId"]
    # The copy carries the original's commit details, not the new push's.
    assert (queued["commit"], queued["commitAuthor"], queued["branch"]) == (
        "release v1",
        "Ada Lovelace",
        first["branch"],
    )

    rebuilt = await stack.wait_final(user, queued["id"])
    assert rebuilt["status"] == "passed"
    assert rebuilt["exitCode"] == 0
    assert rebuilt["commitHash"] == v1 != v2
    assert rebuilt["commit"] == "release v1"
    logs = await stack.logs(user, queued["id"])
    assert "content of v1" in logs
    assert "content of v2" not in logs
    # The original record is as it was before the rebuild.
    assert await stack.build(user, first_id) == first
    assert "content of v1" in await stack.logs(user, first_id)
