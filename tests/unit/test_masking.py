"""Masking secret values in build output (kiln.masking.Masker, and kiln.logwriter.LogWriter
with `masked=`): every occurrence of a value of 4+ characters becomes `***`, however the output
is cut into chunks, and what is stored and announced never holds a value or a piece of one."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from kiln.db import SessionFactory
from kiln.logs import read_log
from kiln.logwriter import LOG_EVENT, LogWriter
from kiln.masking import Masker
from tests.unit.conftest import Rows

SECRET = "hunter2-S3CRET"
TOKEN = "tok-ü✓-Ωmega"  # not ASCII: masking works on the UTF-8 bytes


def pieces_of(value: str, size: int = 4) -> set[str]:
    """Every piece of `value` of `size` characters: none may show in masked output."""
    return {value[start : start + size] for start in range(len(value) - size + 1)}


def stream(masker: Masker, chunks: list[bytes]) -> tuple[bytes, list[bytes]]:
    """Feed chunks through `split` as the log writer does: everything handed on, and the
    pieces handed on after each chunk."""
    rest = b""
    pieces = []
    for chunk in chunks:
        ready, rest = masker.split(rest + chunk)
        pieces.append(ready)
    ready, _ = masker.split(rest, final=True)
    pieces.append(ready)
    return b"".join(pieces), pieces


def test_every_occurrence_of_a_value_is_masked() -> None:
    masker = Masker([SECRET, TOKEN])
    text = f"{SECRET} and {TOKEN}{SECRET}\nNPM={SECRET}".encode()
    assert masker.mask(text) == b"*** and ******\nNPM=***"


def test_values_shorter_than_four_characters_are_not_masked() -> None:
    masker = Masker(["abc", "on", ""])
    assert not masker
    assert masker.mask(b"abc is on") == b"abc is on"
    assert Masker(["abcd"]).mask(b"abc abcd") == b"abc ***"


def test_where_two_values_overlap_the_longer_is_masked_whole() -> None:
    masker = Masker(["abcd", "abcdefgh", "efgh"])
    assert masker.mask(b"abcdefgh abcd efgh") == b"*** *** ***"


@pytest.mark.parametrize("values", [[SECRET], [SECRET, TOKEN, "abcd", "S3CRET-tail"]])
def test_a_value_split_at_any_byte_across_two_chunks_is_masked(values: list[str]) -> None:
    masker = Masker(values)
    text = f"before {SECRET} middle {TOKEN} after S3CRET-tail abcd".encode()
    expected = masker.mask(text)
    assert SECRET.encode() not in expected
    for cut in range(len(text) + 1):
        out, pieces = stream(masker, [text[:cut], text[cut:]])
        assert out == expected, cut
        for value in values:
            for piece in pieces:
                assert value.encode() not in piece


def test_a_value_cut_into_many_small_chunks_is_masked() -> None:
    masker = Masker([SECRET, TOKEN])
    text = (f"x{SECRET}{SECRET}y{TOKEN}\n" * 20).encode()
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 40)))
        chunks = [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]
        assert stream(masker, chunks)[0] == masker.mask(text)


def test_only_what_could_start_a_value_is_kept_back() -> None:
    """Output that cannot be the start of a value goes out at once (a build that prints a line
    and sleeps shows the line while it sleeps)."""
    masker = Masker([SECRET])
    assert masker.split(b"step 1 done\n") == (b"step 1 done\n", b"")
    assert masker.split(b"step 2 hunt") == (b"step 2 ", b"hunt")
    assert masker.split(b"step 3 hunter2-S3CRET!") == (b"step 3 ***!", b"")
    # The end of the stream releases what was kept back: it was not a value after all.
    assert masker.split(b"hunter2-S3", final=True) == (b"hunter2-S3", b"")


def test_masking_text_masks_error_messages() -> None:
    masker = Masker([TOKEN])
    assert masker.mask_text(f"docker said: bad value {TOKEN!r}") == "docker said: bad value '***'"


# --- the log writer -----------------------------------------------------------------------------


def stored(sessions: SessionFactory, build_id: int) -> bytes:
    with sessions() as session:
        return read_log(session, build_id)[0]


def log_events(rows: Rows) -> list[dict[str, Any]]:
    return [event["data"][0] for event in rows.events() if event["event"] == LOG_EVENT]


@pytest.fixture
def build_and_owner(rows: Rows) -> tuple[int, int]:
    owner = rows.user()
    return rows.build(rows.project(owner)).id, owner.id


def test_a_secret_printed_in_two_writes_with_a_flush_between_is_stored_and_sent_masked(
    sessions: SessionFactory, rows: Rows, build_and_owner: tuple[int, int]
) -> None:
    build_id, owner_id = build_and_owner
    writer = LogWriter(sessions, build_id, owner_id, 4096, masked=[SECRET])
    half = len(SECRET) // 2
    writer.write(f"token: {SECRET[:half]}".encode())
    writer.flush()
    writer.write(f"{SECRET[half:]} ok\n".encode())
    writer.flush()
    writer.write(f"again {SECRET}\n".encode())
    writer.flush(final=True)

    assert stored(sessions, build_id) == b"token: *** ok\nagain ***\n"
    events = log_events(rows)
    assert "".join(event["chunk"] for event in events) == "token: *** ok\nagain ***\n"
    # Offsets count stored (masked) bytes, each event where the one before ended.
    offset = 0
    for event in events:
        assert event["offset"] == offset
        offset += len(event["chunk"].encode())
        assert not any(piece in event["chunk"] for piece in pieces_of(SECRET)), event


def test_the_cap_never_cuts_a_secret_in_two(
    sessions: SessionFactory, build_and_owner: tuple[int, int]
) -> None:
    build_id, owner_id = build_and_owner
    for prefix in range(0, 12):
        writer = LogWriter(sessions, build_id, owner_id, 12, masked=[SECRET])
        writer.write(b"x" * prefix + SECRET.encode() + b" more output")
        writer.flush(final=True)
        log = stored(sessions, build_id)
        kept = log.split(b"\n[kiln]")[0]
        assert len(kept) <= 12
        assert b"truncated" in log
        assert not any(piece.encode() in kept for piece in pieces_of(SECRET)), (prefix, log)


def test_a_partial_value_kept_back_is_stored_by_the_final_flush(
    sessions: SessionFactory, build_and_owner: tuple[int, int]
) -> None:
    build_id, owner_id = build_and_owner
    writer = LogWriter(sessions, build_id, owner_id, 4096, masked=[SECRET])
    writer.write(b"the end: hunt")
    writer.flush()
    assert stored(sessions, build_id) == b"the end: "
    writer.flush(final=True)
    assert stored(sessions, build_id) == b"the end: hunt"


def test_resume_after_a_masked_stream_adds_only_the_unseen_output_masked(
    sessions: SessionFactory, build_and_owner: tuple[int, int]
) -> None:
    build_id, owner_id = build_and_owner
    writer = LogWriter(sessions, build_id, owner_id, 4096, masked=[SECRET])
    whole = f"a {SECRET}\nb {SECRET}\n".encode()
    writer.write(whole[:9])
    writer.flush()
    writer.resume([whole[:5], whole[5:]])
    writer.flush(final=True)
    assert stored(sessions, build_id) == b"a ***\nb ***\n"
