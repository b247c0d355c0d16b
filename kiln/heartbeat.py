"""Blocking work beside a beat: a slow step (a clone, an image pull, following a container)
must never look like a lost worker, or a second attempt would start beside it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_beside(work: Callable[[], T], tick: Callable[[], None], every: float) -> T:
    """Run `work` in a thread and call `tick` in this one every `every` seconds until it ends.

    Returns what `work` returned, or raises what it raised. If `tick` raises, that propagates
    at once and `work` is left to finish on its own (it is a daemon thread)."""
    results: list[T] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # re-raised in the caller's thread
            failures.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    while not done.wait(every):
        tick()
    if failures:
        raise failures[0]
    return results[0]
