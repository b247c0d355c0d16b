"""A running build's output, buffered and stored in chunks (kiln.logwriter.LogWriter), on a
migrated SQLite database."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from kiln.db import SessionFactory
from kiln.logs import append_log, read_log
from kiln.logwriter import LOG_EVENT, LogWriter
from kiln.models import Build, LogChunk, User
from tests.unit.conftest import Rows

CAP = 1024


@pytest.fixture
def owner(rows: Rows) -> User:
    return rows.user()


@pytest.fixture
def build(rows: Rows, owner: User) -> Build:
    return rows.build(rows.project(owner))


def writer(sessions: SessionFactory, build: Build, owner: User, cap: int = CAP) -> LogWriter:
    return LogWriter(sessions, build.id, owner.id, cap)


def stored(sessions: SessionFactory, build: Build) -> bytes:
    with sessions() as session:
        return read_log(session, build.id)[0]


def chunks(sessions: SessionFactory, build: Build) -> list[tuple[int, bytes]]:
    with sessions() as session:
        query = select(LogChunk.offset, LogChunk.data).where(LogChunk.build_id == build.id)
        return [(offset, data) for offset, data in session.execute(query.order_by(LogChunk.id))]


def log_events(rows: Rows) -> list[dict[str, Any]]:
    return [event for event in rows.events() if event["event"] == LOG_EVENT]


def test_flushed_output_is_stored_as_written(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    log.write(b"step 1\n")
    log.write(b"step 2\n")
    log.flush()
    assert stored(sessions, build) == b"step 1\nstep 2\n"


def test_nothing_is_stored_before_a_flush(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    log.write(b"pending")
    assert stored(sessions, build) == b""


def test_a_character_split_across_two_writes_is_never_stored_split(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    text = "ok ✓ café 🚀 done".encode()
    for index in range(len(text)):  # one byte per write, a flush after each
        log.write(text[index : index + 1])
        log.flush()
    log.flush(final=True)
    for _offset, data in chunks(sessions, build):
        data.decode("utf-8")  # raises if a chunk ends or starts inside a character
    assert stored(sessions, build) == text


def test_a_non_final_flush_keeps_a_partial_character_for_the_next_write(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    euro = "€".encode()  # three bytes
    log.write(b"price " + euro[:2])
    log.flush()
    assert stored(sessions, build) == b"price "
    log.write(euro[2:])
    log.flush()
    assert [data for _, data in chunks(sessions, build)] == [b"price ", euro]


def test_the_final_flush_stores_even_a_partial_character(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    log.write(b"cut " + "€".encode()[:1])
    log.flush(final=True)
    assert stored(sessions, build) == b"cut \xe2"


def test_output_past_the_cap_is_dropped_and_the_final_flush_says_so(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner, cap=10)
    log.write(b"0123456")
    log.write(b"789abc")
    assert log.full
    log.write(b"more")
    log.flush()
    assert stored(sessions, build) == b"0123456789"
    log.flush(final=True)
    assert stored(sessions, build) == b"0123456789\n[kiln] log truncated at 10 bytes\n"


def test_output_that_fits_the_cap_exactly_gets_no_truncation_note(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner, cap=4)
    log.write(b"1234")
    log.write(b"")
    log.flush(final=True)
    assert stored(sessions, build) == b"1234"


def test_the_truncation_note_is_added_once(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner, cap=3)
    log.write(b"abcdef")
    log.flush(final=True)
    log.flush(final=True)
    assert stored(sessions, build) == b"abc\n[kiln] log truncated at 3 bytes\n"


def test_resume_adds_only_what_write_had_not_seen(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    log.write(b"line 1\n")
    log.write(b"line 2\n")
    log.flush()
    # The container's output again, from its start, cut differently.
    log.resume([b"line", b" 1\nline 2\nli", b"ne 3\n", b"line 4\n"])
    log.flush(final=True)
    assert stored(sessions, build) == b"line 1\nline 2\nline 3\nline 4\n"


def test_resume_with_nothing_new_adds_nothing(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    log.write(b"all of it")
    log.resume([b"all ", b"of it"])
    log.flush(final=True)
    assert stored(sessions, build) == b"all of it"


def test_resume_counts_output_dropped_at_the_cap_as_seen(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner, cap=4)
    log.write(b"abcdefgh")  # 4 stored, 4 dropped, all 8 seen
    log.resume([b"abcdefgh", b"ij"])
    log.flush(final=True)
    assert stored(sessions, build) == b"abcd\n[kiln] log truncated at 4 bytes\n"


def test_resume_that_fills_the_cap_exactly_still_notes_the_output_it_dropped(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner, cap=4)
    log.resume([b"abcd", b"efgh"])
    log.flush(final=True)
    assert stored(sessions, build) == b"abcd\n[kiln] log truncated at 4 bytes\n"


def test_each_flush_appends_at_the_end_of_what_is_stored(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    for part in (b"first ", b"second ", b"third"):
        log.write(part)
        log.flush()
    assert chunks(sessions, build) == [(0, b"first "), (6, b"second "), (13, b"third")]
    with sessions() as session:
        assert read_log(session, build.id, 6) == (b"second third", 18)
        assert read_log(session, build.id, 18) == (b"", 18)


def test_a_flush_with_nothing_new_stores_and_publishes_nothing(
    sessions: SessionFactory, rows: Rows, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner)
    log.flush()
    log.flush(final=True)
    assert chunks(sessions, build) == []
    assert log_events(rows) == []


def test_a_new_writer_forgets_an_earlier_attempts_output(
    sessions: SessionFactory, build: Build, owner: User
) -> None:
    with sessions.begin() as session:
        append_log(session, build.id, b"attempt 1 output\n")
    log = writer(sessions, build, owner)
    log.write(b"attempt 2\n")
    log.flush()
    assert chunks(sessions, build) == [(0, b"attempt 2\n")]


def test_a_writer_leaves_other_builds_logs_alone(
    sessions: SessionFactory, rows: Rows, build: Build, owner: User
) -> None:
    other = rows.build(rows.project(owner))
    with sessions.begin() as session:
        append_log(session, other.id, b"other build\n")
    log = writer(sessions, build, owner)
    log.write(b"mine\n")
    log.flush()
    assert stored(sessions, other) == b"other build\n"


def test_each_stored_chunk_publishes_one_build_log_event_to_the_owner(
    sessions: SessionFactory, rows: Rows, build: Build, owner: User
) -> None:
    log = writer(sessions, build, owner, cap=12)
    log.write(b"hello ")
    log.flush()
    log.write("wörld".encode())
    log.flush()
    log.write(b"overflow")
    log.flush(final=True)
    events = log_events(rows)
    assert [event["data"] for event in events] == [
        [{"buildId": build.id, "offset": 0, "chunk": "hello "}],
        [{"buildId": build.id, "offset": 6, "chunk": "wörld"}],
        [{"buildId": build.id, "offset": 12, "chunk": "\n[kiln] log truncated at 12 bytes\n"}],
    ]
    assert {event["room"] for event in events} == {f"user:{owner.id}"}
    assert len(events) == len(chunks(sessions, build))
