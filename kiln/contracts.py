"""The values that pass between the core, the activities and the workflow.

They travel through Temporal's history, so they hold ids and outcomes only — never a repository
URL (it may carry a token), a command's output or a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kiln.models import BuildStatus


@dataclass(frozen=True)
class BuildJob:
    build_id: int


@dataclass(frozen=True)
class HostRequest:
    build_id: int
    # Host queues that already failed to pick this build up.
    exclude: list[str]


class SlotClaim(StrEnum):
    STARTED = "started"  # the build is running: go on
    WAITING = "waiting"  # the project's slots are taken, or older builds wait first
    FINAL = "final"  # already finished, canceled or deleted: nothing to do


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    # The container was killed at the project's timeout; exit_code is then the kill's.
    timed_out: bool = False


@dataclass(frozen=True)
class BuildOutcome:
    """The final state to record for a build."""

    build_id: int
    status: BuildStatus
    exit_code: int | None = None
    # Why the build failed without an exit code; becomes the last line of its log.
    reason: str | None = None

    @classmethod
    def failed(cls, build_id: int, reason: str) -> BuildOutcome:
        return cls(build_id, BuildStatus.FAILED, reason=reason)

    @classmethod
    def canceled(cls, build_id: int) -> BuildOutcome:
        return cls(build_id, BuildStatus.CANCELED, reason="build canceled")


@dataclass(frozen=True)
class Skipped:
    """A workflow run that found its build already final: it recorded nothing."""

    build_id: int
    why: str
