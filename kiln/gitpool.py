"""A bounded pool for the slow network work a request makes (git resolving a branch, DNS of an
image's registry), with a cap per user.

A git server that accepts connections and never answers holds a thread until git gives up.
In the request threads, a few such requests starve every other user's login and listing; in
this pool they only wait for each other, and one user holds at most `per_user` of its threads
(queued or running) — beyond that they get a 429 at once. The cap is per API process, like
the pool itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from kiln.quotas import LimitReached
from kiln.settings import Settings

T = TypeVar("T")


class GitPool:
    def __init__(self, size: int, per_user: int, retry_after: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="kiln-git")
        self._per_user = per_user
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._busy: Counter[int] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings) -> GitPool:
        # A slot frees at the latest when git drops a stalled server.
        return cls(settings.git_pool_size, settings.git_per_user, settings.git_stall_seconds)

    async def run(self, user_id: int, work: Callable[[], T]) -> T:
        """Run `work` in the pool for `user_id` and await it; LimitReached when the user already
        has `per_user` pieces of work in the pool. The user's slot is given back when the work
        ends, not when the caller stops waiting: a request that went away still holds it."""
        with self._lock:
            if self._busy[user_id] >= self._per_user:
                raise LimitReached(
                    f"Too many repository look-ups at once (at most {self._per_user} per "
                    "user): try again when the earlier ones have finished",
                    retry_after=self._retry_after,
                )
            self._busy[user_id] += 1
        try:
            future = self._executor.submit(work)
        except BaseException:
            self._release(user_id)
            raise
        future.add_done_callback(lambda _done: self._release(user_id))
        return await asyncio.wrap_future(future)

    def _release(self, user_id: int) -> None:
        with self._lock:
            self._busy[user_id] -= 1
            if self._busy[user_id] <= 0:
                del self._busy[user_id]

    def shutdown(self) -> None:
        """Stop taking work; work not started yet is dropped (its callers see it canceled)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
