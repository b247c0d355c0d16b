"""Status writes, as local activities (they run beside the workflow: no task-queue round trip)."""

from __future__ import annotations

from temporalio import activity

from kiln.builds import BuildService
from kiln.contracts import BuildOutcome, SlotClaim


class RecordActivities:
    def __init__(self, builds: BuildService) -> None:
        self._builds = builds

    @activity.defn(name="claim_slot")
    def claim_slot(self, build_id: int) -> SlotClaim:
        """queued → running when the project has a free slot and no older build waits."""
        return self._builds.claim_slot(build_id)

    @activity.defn(name="finish_build")
    def finish_build(self, outcome: BuildOutcome) -> list[int]:
        """Record the final status once; returns the builds the freed slot may start."""
        return self._builds.finish(outcome)
