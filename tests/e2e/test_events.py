"""Live status over Socket.io: the owner's sockets see every change, in order; nobody else does."""

from __future__ import annotations

import pytest
import socketio

from testbed.stack import SocketRecorder, Stack, eventually
from tests.support.helpers import connected, holds, new_repo, rebuild, repo_name


async def test_owner_receives_queued_running_passed_in_order(stack: Stack) -> None:
    owner, stranger = await stack.register(), await stack.register()
    async with (
        connected(stack, owner) as owner_socket,
        connected(stack, stranger) as stranger_socket,
    ):
        repo = stack.git.create_repo(repo_name("events"))
        repo.commit({"a.txt": "a\n"}, "events commit", author="Eve")

        created = await stack.create_project(owner, repo.url, "echo streaming; exit 0")
        build_id = created["build"]["id"]

        statuses = await owner_socket.wait_statuses(build_id, 3)
        assert statuses == ["queued", "running", "passed"]
        final = [d for e, d in owner_socket.events if e == "buildStatusUpdate"][-1]
        # The event carries the whole build record, as GET /api/build/:id shows it.
        expected = await stack.build(owner, build_id)
        expected.pop("project")
        assert final == expected
        # Output went out live too, to the owner only.
        chunks = [d for e, d in owner_socket.events if e == "buildLog" and d["buildId"] == build_id]
        assert "streaming" in "".join(chunk["chunk"] for chunk in chunks)
        assert stranger_socket.events == []


async def test_rebuild_events_follow_the_new_build(stack: Stack) -> None:
    user = await stack.register()
    async with connected(stack, user) as recorder:
        repo = new_repo(stack.git, "events")
        created = await stack.create_project(user, repo.url, "exit 4")
        first_id = created["build"]["id"]
        assert await recorder.wait_statuses(first_id, 3) == ["queued", "running", "failed"]

        response = await rebuild(stack, user, first_id)
        assert response.status_code == 201
        rebuild_id = response.json()["build"]["id"]

        assert await recorder.wait_statuses(rebuild_id, 3) == ["queued", "running", "failed"]
        final = [
            d for e, d in recorder.events if e == "buildStatusUpdate" and d["id"] == rebuild_id
        ][-1]
        assert final["exitCode"] == 4
        assert recorder.statuses(first_id) == ["queued", "running", "failed"]


@pytest.mark.parametrize("token", ["", "not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."])
async def test_a_bad_token_is_refused_at_connect(stack: Stack, token: str) -> None:
    recorder = SocketRecorder()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await recorder.connect(stack.base_url, token)
    assert not recorder.client.connected


async def test_events_reach_every_socket_of_the_owner(stack: Stack) -> None:
    user = await stack.register()
    async with connected(stack, user) as first, connected(stack, user) as second:
        repo = new_repo(stack.git, "events")
        created = await stack.create_project(user, repo.url, "true")
        build_id = created["build"]["id"]
        await first.wait_statuses(build_id, 3)
        await eventually(
            lambda: holds(second.statuses(build_id) == ["queued", "running", "passed"]),
            timeout=10,
        )
