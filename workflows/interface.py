"""What a build workflow is called, takes and returns: all that starting, waking and describing
one needs (`workflows.client`), without importing the workflow's activities and what they
bring (Docker's SDK, the outbound HTTP client). The API is kept lean by this: it imports no
worker code."""

from __future__ import annotations

from dataclasses import dataclass

from kiln.contracts import BuildOutcome, Skipped

BUILD_WORKFLOW = "BuildWorkflow"
# Sent when a build of the project ends: a waiting build looks for its slot now.
SLOT_FREED_SIGNAL = "slot_freed"


@dataclass(frozen=True)
class BuildInput:
    """The build, the deployment's id prefix, and the timers (short ones in tests)."""

    build_id: int
    # KILN_WORKFLOW_ID_PREFIX: the ids of the builds this one wakes carry it too.
    id_prefix: str = ""
    # How long a chosen host may take to pick the build up before another host is chosen.
    host_pickup_seconds: float = 30.0
    # A waiting build looks again this often even without a signal (a signal may be lost when
    # the finishing workflow's worker dies between its status write and the signal).
    slot_recheck_seconds: float = 30.0
    # A waiting build continues as new after this many looks (about 100 minutes by default).
    max_slot_checks: int = 200
    # How long the running build's host may go silent before the build is retried.
    heartbeat_timeout_seconds: float = 5.0
    cleanup_pickup_seconds: float = 30.0
    # For Temporal's UI: the commit and the head of the build command name the run step, and
    # a continued run (which has no summary of its own) shows the start's in its details.
    commit_hash: str = ""
    command: str = ""
    summary: str = ""


BuildResult = BuildOutcome | Skipped
