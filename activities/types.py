"""Inputs and results of the activities; they travel through Temporal's history, so they hold
ids and outcomes only (never a repository URL, which may carry a token)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildJob:
    build_id: int


@dataclass(frozen=True)
class RunResult:
    exit_code: int


@dataclass(frozen=True)
class BuildOutcome:
    build_id: int
    status: str
    exit_code: int | None = None
    # Why the build failed without an exit code; becomes the last line of its log.
    reason: str | None = None


# ApplicationError types the workflow treats as "this build cannot succeed": never retried.
PERMANENT_ERROR = "KilnPermanentError"
