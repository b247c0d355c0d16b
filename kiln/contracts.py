"""The values that pass between the core, the activities and the workflow.

They travel through Temporal's history, so they hold ids and outcomes only — never a repository
URL (it may carry a token), a command's output or a secret. `BuildLabels` is the exception that
proves the rule: what names a build in Temporal's UI (its project's name, branch, commit and the
head of its command), stored there in clear for operators to search — still never a URL or a
secret.
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
class Waiting:
    """The claim activity's answer while the build waits (its SlotClaim.WAITING, with a count):
    how many builds of its project run or wait before it."""

    ahead: int


@dataclass(frozen=True)
class Started:
    """The claim activity's answer when the build took a slot and the project has more free
    (its SlotClaim.STARTED, with the builds to wake): the project's next waiting builds. One of
    them may have looked before this older build took its slot, and been told to wait."""

    wake: tuple[int, ...]


class Trigger(StrEnum):
    """What queued a build."""

    PROJECT = "project"  # the project was created
    PUSH = "push"  # a webhook delivery
    REBUILD = "rebuild"  # a user asked for a rebuild


@dataclass(frozen=True)
class BuildLabels:
    """What names a build in Temporal's UI (search attributes, summaries), read from its
    record and its project's."""

    project_id: int
    project: str
    branch: str
    commit_hash: str
    commit_message: str
    commit_author: str
    # The head of the project's build command (COMMAND_HEAD_BYTES at most): the run step's
    # summary shows it.
    command: str


# How much of a build command its labels (and so the workflow's input) carry.
COMMAND_HEAD_BYTES = 200


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
