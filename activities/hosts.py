"""Choosing the host a build runs on."""

from __future__ import annotations

from temporalio import activity


class HostActivities:
    def __init__(self, host_queue: str) -> None:
        self._host_queue = host_queue

    @activity.defn(name="pick_host")
    def pick_host(self) -> str:
        """The task queue of this worker's host. Run as a local activity, it names a host that is
        alive right now (it is running this workflow task); clone, run and cleanup then all go
        to that one queue."""
        return self._host_queue
