"""Live status over Socket.io: the owner's sockets see every change, in order; nobody else does."""

from __future__ import annotations

import uuid

import pytest
import socketio

from tests.support.stack import SocketRecorder, Stack, eventually


async def test_owner_receives_queued_running_passed_in_order(stack: Stack) -> None:
    owner, stranger = await stack.register(), await stack.register()
    owner_socket, stranger_socket = SocketRecorder(), SocketRecorder()
    await owner_socket.connect(stack.base_url, owner.token)
    await stranger_socket.connect(stack.base_url, stranger.token)
    try:
        repo = stack.git.create_repo(f"events-{uuid.uuid4().hex[:8]}")
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
    finally:
        await owner_socket.client.disconnect()
        await stranger_socket.client.disconnect()


async def test_rebuild_events_follow_the_new_build(stack: Stack) -> None:
    user = await stack.register()
    recorder = SocketRecorder()
    await recorder.connect(stack.base_url, user.token)
    try:
        repo = stack.git.create_repo(f"events-{uuid.uuid4().hex[:8]}")
        repo.commit({"a.txt": "a\n"}, "first")
        created = await stack.create_project(user, repo.url, "exit 4")
        first_id = created["build"]["id"]
        assert await recorder.wait_statuses(first_id, 3) == ["queued", "running", "failed"]

        response = await stack.http.post(f"/api/build/rebuild/{first_id}", headers=user.headers)
        assert response.status_code == 201
        rebuild_id = response.json()["build"]["id"]

        assert await recorder.wait_statuses(rebuild_id, 3) == ["queued", "running", "failed"]
        final = [
            d for e, d in recorder.events if e == "buildStatusUpdate" and d["id"] == rebuild_id
        ][-1]
        assert final["exitCode"] == 4
        assert recorder.statuses(first_id) == ["queued", "running", "failed"]
    finally:
        await recorder.client.disconnect()


@pytest.mark.parametrize("token", ["", "not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."])
async def test_a_bad_token_is_refused_at_connect(stack: Stack, token: str) -> None:
    recorder = SocketRecorder()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await recorder.connect(stack.base_url, token)
    assert not recorder.client.connected


async def test_events_reach_every_socket_of_the_owner(stack: Stack) -> None:
    user = await stack.register()
    first, second = SocketRecorder(), SocketRecorder()
    await first.connect(stack.base_url, user.token)
    await second.connect(stack.base_url, user.token)
    try:
        repo = stack.git.create_repo(f"events-{uuid.uuid4().hex[:8]}")
        repo.commit({"a.txt": "a\n"}, "first")
        created = await stack.create_project(user, repo.url, "true")
        build_id = created["build"]["id"]
        await first.wait_statuses(build_id, 3)
        await eventually(
            lambda: _done(second.statuses(build_id) == ["queued", "running", "passed"]),
            timeout=10,
        )
    finally:
        await first.client.disconnect()
        await second.client.disconnect()


async def _done(condition: bool) -> bool | None:
    return True if condition else None
