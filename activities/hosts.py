"""Host choice, as a local activity."""

from __future__ import annotations

from temporalio import activity

from kiln.contracts import HostRequest
from kiln.hosts import HostRegistry


class HostActivities:
    def __init__(self, hosts: HostRegistry) -> None:
        self._hosts = hosts

    @activity.defn(name="pick_host")
    def pick_host(self, request: HostRequest) -> str:
        """The task queue of the live host with the most free capacity."""
        return self._hosts.pick(request.build_id, request.exclude)
