"""Blocking work beside a beat (kiln.heartbeat.run_beside). Timing is steered with events; the
only waiting is the `every` interval itself."""

from __future__ import annotations

import threading

import pytest

from kiln.heartbeat import run_beside

EVERY = 0.01
# Upper bound for a wait that should end at once; reached only when the code under test hangs.
NO_HANG = 5.0


def test_the_works_value_is_returned() -> None:
    assert run_beside(lambda: "checked out", lambda: None, EVERY) == "checked out"


def test_a_work_that_returns_none_returns_none() -> None:
    assert run_beside(lambda: None, lambda: None, EVERY) is None


def test_the_works_own_exception_is_raised_in_the_caller() -> None:
    class CloneFailed(Exception):
        pass

    failure = CloneFailed("no such commit")

    def work() -> None:
        raise failure

    with pytest.raises(CloneFailed) as caught:
        run_beside(work, lambda: None, EVERY)
    assert caught.value is failure


def test_tick_is_called_while_the_work_runs_and_not_after() -> None:
    release = threading.Event()
    finished = threading.Event()
    ticks_while_running: list[bool] = []

    def work() -> int:
        assert release.wait(NO_HANG), "tick was never called"
        finished.set()
        return 3

    def tick() -> None:
        ticks_while_running.append(not finished.is_set())
        if len(ticks_while_running) == 3:
            release.set()

    assert run_beside(work, tick, EVERY) == 3
    assert len(ticks_while_running) >= 3
    assert ticks_while_running[:3] == [True, True, True]


def test_tick_runs_in_the_callers_thread_and_work_in_another() -> None:
    caller = threading.get_ident()
    threads: dict[str, int] = {}
    release = threading.Event()

    def work() -> None:
        threads["work"] = threading.get_ident()
        assert release.wait(NO_HANG)

    def tick() -> None:
        threads["tick"] = threading.get_ident()
        release.set()

    run_beside(work, tick, EVERY)
    assert threads["tick"] == caller
    assert threads["work"] != caller


def test_a_raising_tick_propagates_at_once_while_the_work_goes_on() -> None:
    release = threading.Event()
    work_finished = threading.Event()

    class LostLease(Exception):
        pass

    def work() -> None:
        release.wait(NO_HANG)
        work_finished.set()

    def tick() -> None:
        raise LostLease("activity canceled")

    try:
        with pytest.raises(LostLease):
            run_beside(work, tick, EVERY)
        assert not work_finished.is_set()  # the caller did not wait for the work
    finally:
        release.set()
    assert work_finished.wait(NO_HANG)


def test_work_that_ends_before_the_first_beat_is_never_ticked() -> None:
    ticks: list[None] = []
    assert run_beside(lambda: 1, lambda: ticks.append(None), every=NO_HANG) == 1
    assert ticks == []
