"""Status writes, as local activities (they run beside the workflow: no task-queue round trip)."""

from __future__ import annotations

from temporalio import activity

from kiln.builds import BuildService
from kiln.contracts import BuildOutcome, SlotClaim, Started, Waiting
from kiln.visibility import BuildVisibility


class RecordActivities:
    def __init__(self, builds: BuildService, visibility: BuildVisibility | None = None) -> None:
        self._builds = builds
        # Counts the builds ahead of a waiting one, for Temporal's UI (without it: no count).
        self._visibility = visibility

    @activity.defn(name="claim_slot")
    def claim_slot(self, build_id: int) -> SlotClaim | Waiting | Started:
        """queued → running when the project has a free slot and no older build waits; while
        it waits, how many builds are ahead of it; once started, the project's builds that
        may take its other free slots."""
        claim, wake = self._builds.claim_and_wake(build_id)
        if wake:
            return Started(wake=tuple(wake))
        if claim != SlotClaim.WAITING or self._visibility is None:
            return claim
        return Waiting(ahead=self._visibility.builds_ahead(build_id))

    @activity.defn(name="finish_build")
    def finish_build(self, outcome: BuildOutcome) -> list[int]:
        """Record the final status once; returns the builds the freed slot may start."""
        return self._builds.finish(outcome)
