"""Inputs and results of the activities; they travel through Temporal's history, so they hold
ids and outcomes only (never a repository URL, which may carry a token)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class HostRequest:
    build_id: int
    # Host queues that already failed to pick this build up.
    exclude: list[str]


@dataclass(frozen=True)
class BuildJob:
    build_id: int


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
    build_id: int
    status: str
    exit_code: int | None = None
    # Why the build failed without an exit code; becomes the last line of its log.
    reason: str | None = None


# ApplicationError types the workflow treats as "this build cannot succeed": never retried.
PERMANENT_ERROR = "KilnPermanentError"
