"""Live logs: output reaches the owner as it is produced, and the stored log can be read from any
byte offset, so a client that joins late gets everything with no gap and no repeat.

Offsets count bytes of the stored log; chunks and the `logs` text are UTF-8 strings, so the
tests compare byte lengths (`.encode()`), and use non-ASCII output to make the difference show.
"""

from __future__ import annotations

from typing import Any

from testbed.stack import SocketRecorder, Stack, User, eventually
from tests.support.helpers import connected, new_repo, run_together


def log_events(recorder: SocketRecorder, build_id: int) -> list[dict[str, Any]]:
    return [
        data
        for event, data in recorder.events
        if event == "buildLog" and data["buildId"] == build_id
    ]


async def read_logs(stack: Stack, user: User, build_id: int, offset: int) -> dict[str, Any]:
    response = await stack.http.get(
        f"/api/build/{build_id}/logs", params={"offset": offset}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_contiguous(chunks: list[dict[str, Any]]) -> None:
    """Each chunk starts where the one before it ended, the first at byte 0."""
    expected = 0
    for chunk in chunks:
        assert chunk["offset"] == expected, (chunk["offset"], expected, chunks)
        expected += len(chunk["chunk"].encode())


async def test_output_goes_out_as_it_is_produced_with_contiguous_offsets(stack: Stack) -> None:
    user = await stack.register()
    async with connected(stack, user) as recorder:
        repo = new_repo(stack.git, "logs")
        command = "echo 'first héllo ✓'; sleep 2; echo second; echo 'third ünïcode'"
        created = await stack.create_project(user, repo.url, command)
        build_id = created["build"]["id"]

        async def first_chunk_seen() -> list[dict[str, Any]] | None:
            chunks = log_events(recorder, build_id)
            return chunks if "first" in "".join(c["chunk"] for c in chunks) else None

        chunks = await eventually(first_chunk_seen, timeout=30)
        # The first line is out while the command still sleeps: the build has not ended, and
        # what the command prints after the sleep has not been sent yet.
        assert (await stack.build(user, build_id))["status"] == "running"
        assert "second" not in "".join(c["chunk"] for c in chunks)
        assert all(set(c) == {"buildId", "offset", "chunk"} for c in chunks)

        final = await stack.wait_final(user, build_id)
        assert final["status"] == "passed"
        stored = await stack.logs(user, build_id)
        assert stored == "first héllo ✓\nsecond\nthird ünïcode\n"

        # Every chunk arrives (events may trail the status write by a poll).
        async def all_chunks() -> list[dict[str, Any]] | None:
            chunks = log_events(recorder, build_id)
            return chunks if "".join(c["chunk"] for c in chunks) == stored else None

        chunks = await eventually(all_chunks, timeout=10)
        assert len(chunks) >= 2  # at least one before the sleep and one after it
        assert_contiguous(chunks)


async def test_reading_from_next_offset_gives_the_whole_log_without_gap_or_repeat(
    stack: Stack,
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "logs")
    command = 'for i in 1 2 3 4 5 6; do echo "line $i — ünïcode"; sleep 0.3; done'
    created = await stack.create_project(user, repo.url, command)
    build_id = created["build"]["id"]

    # A client following the build while it runs: ask again from `nextOffset` each time.
    pieces: list[str] = []
    offset = 0

    async def follow() -> bool | None:
        nonlocal offset
        status = (await stack.build(user, build_id))["status"]
        page = await read_logs(stack, user, build_id, offset)
        assert page["offset"] == offset
        assert page["nextOffset"] == offset + len(page["logs"].encode())
        pieces.append(page["logs"])
        offset = page["nextOffset"]
        # Once the build was final before this read, this read got the rest of the log.
        return True if status in ("passed", "failed") else None

    await eventually(follow, timeout=60, interval=0.2)
    whole = await read_logs(stack, user, build_id, 0)
    expected = "".join(f"line {i} — ünïcode\n" for i in range(1, 7))
    assert whole["logs"] == expected
    assert whole["nextOffset"] == len(expected.encode())
    assert "".join(pieces) == expected
    assert sum(1 for piece in pieces if piece) >= 2, "the log was read in a single piece"

    # Joining late at any line boundary gives exactly the rest.
    data = expected.encode()
    for cut in [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]:
        page = await read_logs(stack, user, build_id, cut)
        assert page["logs"].encode() == data[cut:]
        assert page["nextOffset"] == len(data)
    # Past the end there is nothing (yet).
    assert (await read_logs(stack, user, build_id, len(data) + 100))["logs"] == ""


async def test_a_bad_offset_is_refused(stack: Stack) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "logs")
    created = await stack.create_project(user, repo.url, "echo hi")
    build_id = created["build"]["id"]
    await stack.wait_final(user, build_id)

    for offset in ["-1", "abc", "1.5", "", "1e3", "0x10"]:
        response = await stack.http.get(
            f"/api/build/{build_id}/logs?offset={offset}", headers=user.headers
        )
        assert response.status_code == 400, (offset, response.text)
        assert "message" in response.json()
    assert (await read_logs(stack, user, build_id, 0))["logs"] == "hi\n"


async def test_output_past_the_cap_is_truncated_with_a_note_and_the_build_still_passes(
    stack: Stack,
) -> None:
    """Two outputs, side by side: lines of 1000 bytes, so the cap falls inside one, and lines
    of 1024 bytes, so they fill the (power of two) cap exactly and the output after it arrives
    as new writes — output past the cap must be noted all the same. (Docker streams long
    lines much faster than short ones, which keeps the test quick.)"""
    user = await stack.register()
    cap = stack.settings.log_max_bytes
    produced = cap + 300_000

    async def truncated(width: int) -> None:
        line = ("0123456789" * (width // 10 + 1))[: width - 1].encode()
        repo = new_repo(stack.git, "logs")
        command = f"yes {line.decode()} | head -c {produced}"
        created = await stack.create_project(user, repo.url, command)
        build_id = created["build"]["id"]

        final = await stack.wait_final(user, build_id)

        assert final["status"] == "passed"
        assert final["exitCode"] == 0
        log = (await stack.logs(user, build_id)).encode()
        note = log.rstrip(b"\n").split(b"\n")[-1]
        assert b"truncated" in note.lower(), (width, len(log), log[-120:])
        assert len(log) <= cap + len(note) + 2  # the note on its own line
        # What was kept is the start of the real output.
        kept = log[: log.rindex(note)].rstrip(b"\n")
        full = (line + b"\n") * (produced // width + 1)
        assert len(kept) > cap // 2
        assert full.startswith(kept)
        # The paged reader agrees with the whole read, and the log stops there.
        tail = await read_logs(stack, user, build_id, len(log) - 100)
        assert tail["logs"].encode() == log[-100:]
        assert tail["nextOffset"] == len(log)

    assert cap % 1024 == 0 and cap % 1000 != 0
    await run_together(truncated(1000), truncated(1024))


async def test_a_last_line_without_a_newline_is_kept(stack: Stack) -> None:
    """The output's tail arrives after the log stream is attached; several builds at once, as
    losing an unterminated tail is a race (Docker's follow stream can drop it when the
    container exits, though the container's log has it)."""
    user = await stack.register()

    async def unterminated(index: int) -> None:
        repo = new_repo(stack.git, "logs")
        command = f"printf 'first\\n'; sleep 0.3; printf 'no newline at the end {index}'"
        created = await stack.create_project(user, repo.url, command)
        build_id = created["build"]["id"]
        final = await stack.wait_final(user, build_id)
        assert final["status"] == "passed"
        assert await stack.logs(user, build_id) == f"first\nno newline at the end {index}"

    await run_together(*(unterminated(index) for index in range(4)))
