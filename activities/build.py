"""The host-bound activities: run a build (clone, container, follow) and clean up after it.

They run as plain functions in a thread pool because git and the Docker SDK block.
"""

from __future__ import annotations

from temporalio import activity

from activities.errors import temporal_errors
from kiln.contracts import BuildJob, RunResult
from kiln.execution import BuildExecutor, Stop


class TemporalAttempt:
    """The running activity as the executor's `Attempt`."""

    def heartbeat(self, note: str | None = None) -> None:
        if note is None:
            activity.heartbeat()
        else:
            activity.heartbeat(note)

    def stop_requested(self) -> Stop | None:
        if not activity.is_cancelled():
            return None
        # Only a cancel of the build itself stops its container. Other cancels of an attempt
        # (a worker shutting down, a heartbeat timeout after which a retry took over) must
        # leave it to the current attempt.
        details = activity.cancellation_details()
        if details is not None and details.cancel_requested and not details.worker_shutdown:
            return Stop.CANCEL
        return Stop.SUPERSEDED


class BuildActivities:
    def __init__(self, executor: BuildExecutor) -> None:
        self._executor = executor

    @activity.defn(name="execute_build")
    def execute_build(self, job: BuildJob) -> RunResult:
        """Clone, run and follow; a non-zero exit is a result, not an error."""
        # Cancellation is looked for at known points rather than raised into the thread
        # wherever it happens to be, e.g. half-way through a database write.
        with activity.shield_thread_cancel_exception(), temporal_errors():
            return self._executor.execute(job.build_id, TemporalAttempt())

    @activity.defn(name="cleanup_build")
    def cleanup_build(self, job: BuildJob) -> None:
        """Remove the build's container and workspace; safe to call any number of times."""
        with temporal_errors():
            self._executor.cleanup(job.build_id, TemporalAttempt())
