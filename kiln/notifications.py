"""Telling the outside world about a build: commit statuses on GitHub (kiln.github_status) and
notification hooks (kiln.hooks), sent from the worker by activities.activities.notify.

The workflow carries ids and event names only (`Notice`); what is sent, and the token or hook
secret it is sent with, is read and opened here, on the worker. Nothing here can change a
build: a notice that cannot be delivered is given up on, never raised into the build.

Order: the workflow hands each target (GitHub, each hook) its notices one after the other, and
each notice has a sequence number (queued 1, running 2, final 3). Before sending, a notice
claims its number for its build and target in the database (`notification_marks`): a notice
whose target has already been handed a newer one (an older retry that lost the race) is
dropped, so GitHub never gets `pending` after `success`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kiln.crypto import SecretBox
from kiln.db import SessionFactory
from kiln.errors import PermanentError
from kiln.github_status import (
    GithubTokens,
    dashboard_url,
    describe,
    github_repo,
    post_status,
    status_body,
    status_url,
)
from kiln.hooks import SIGNATURE_HEADER, HookService, hook_body, hook_text, sign
from kiln.integration_models import NotificationMark, ProjectHook
from kiln.models import Build, BuildStatus, Project
from kiln.outbound import Answer, OutboundFailed, OutboundRefused, check_url, post_json
from kiln.records import build_record, project_summary
from kiln.settings import Settings

log = logging.getLogger(__name__)

# Sequence numbers: a target never gets a notice with a lower one after a higher one.
SEQUENCE = {BuildStatus.QUEUED: 1, BuildStatus.RUNNING: 2}
FINAL_SEQUENCE = 3
GITHUB_TARGET = "github"
# Answers that trying again cannot change: the token is wrong or lacks the scope (401, 403),
# the repository or commit is unknown to GitHub (404), or GitHub refuses the status (422).
GITHUB_GIVE_UP = frozenset({400, 401, 403, 404, 410, 422})
# A hook answering anything else than these (or 2xx) is given up on.
HOOK_RETRY = frozenset({408, 425, 429})


def sequence(event: str) -> int:
    return SEQUENCE.get(BuildStatus(event), FINAL_SEQUENCE)


def hook_target(hook_id: int) -> str:
    return f"hook:{hook_id}"


@dataclass(frozen=True)
class HookPlan:
    hook_id: int
    events: list[str]


@dataclass(frozen=True)
class NotifyPlan:
    """What a build's project has configured (ids and event names only)."""

    github: bool = False
    hooks: list[HookPlan] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return self.github or bool(self.hooks)


@dataclass(frozen=True)
class Notice:
    """One notice of one build to one target (GitHub, or the hook `hook_id`)."""

    build_id: int
    # `queued`, `running`, or the build's final status.
    event: str
    exit_code: int | None = None
    hook_id: int | None = None

    @property
    def seq(self) -> int:
        return sequence(self.event)


class Delivery(StrEnum):
    """What became of a notice (the activity's result, in Temporal's history)."""

    SENT = "sent"
    # A newer notice was already handed to this target.
    DROPPED = "dropped"
    # Not configured any more (token or hook removed, repository not on GitHub).
    SKIPPED = "skipped"
    # The target refused it for good (401, 422, a refused address, no key to open the token).
    GAVE_UP = "gave-up"


@dataclass(frozen=True)
class _StatusJob:
    project_id: int
    project_name: str
    repo_url: str
    sealed_token: str | None
    commit_hash: str


class Notifier:
    """Sends notices for builds of one database, with one deployment's settings."""

    def __init__(self, sessions: SessionFactory, settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        box = SecretBox(settings.secrets_key)
        self._tokens = GithubTokens(sessions, box)
        self._hooks = HookService(sessions, box, allow_local=settings.allow_local_repos)

    # --- what to send (the workflow asks once, at its start) ---

    def plan(self, build_id: int) -> NotifyPlan:
        with self._sessions() as session:
            row = session.execute(
                select(Project.id, Project.repo_url, Project.github_token)
                .join(Build, Build.project_id == Project.id)
                .where(Build.id == build_id)
            ).one_or_none()
            if row is None:
                return NotifyPlan()
            project_id, repo_url, token = row
            hooks = session.execute(
                select(ProjectHook.id, ProjectHook.events)
                .where(ProjectHook.project_id == project_id)
                .order_by(ProjectHook.id)
            ).all()
        github = token is not None and self._github_repo(repo_url) is not None
        return NotifyPlan(github, [HookPlan(hook_id, list(events)) for hook_id, events in hooks])

    def _github_repo(self, repo_url: str) -> Any:
        return github_repo(repo_url, self._settings.github_api_url)

    # --- the order guard ---

    def claim(self, build_id: int, target: str, seq: int) -> bool:
        """Whether a notice numbered `seq` may go to `target` now: no newer one was handed
        over (an equal one is this notice's own earlier attempt). Records `seq` if so."""
        for _ in range(2):  # a concurrent first claim of the same target: look again
            try:
                with self._sessions.begin() as session:
                    mark = session.get(NotificationMark, (build_id, target), with_for_update=True)
                    if mark is None:
                        if session.get(Build, build_id) is None:
                            return False  # the build (and its project) was deleted
                        session.add(NotificationMark(build_id=build_id, target=target, seq=seq))
                        return True
                    if mark.seq > seq:
                        return False
                    mark.seq = seq
                    return True
            except IntegrityError:
                continue
        return False

    # --- GitHub ---

    async def send_status(self, notice: Notice) -> Delivery:
        job = await asyncio.to_thread(self._status_job, notice.build_id)
        repo = self._github_repo(job.repo_url) if job else None
        if job is None or job.sealed_token is None or repo is None:
            return Delivery.SKIPPED
        if not await asyncio.to_thread(self.claim, notice.build_id, GITHUB_TARGET, notice.seq):
            return Delivery.DROPPED
        try:
            token = self._tokens.open(job.project_id, job.sealed_token)
        except PermanentError as exc:  # no key, or a key that does not open it
            log.warning("build %s: no commit status sent: %s", notice.build_id, exc)
            return Delivery.GAVE_UP
        url = status_url(self._settings.github_api_url, repo, job.commit_hash)
        target = dashboard_url(self._settings.public_url, notice.build_id)
        body = status_body(notice.event, notice.exit_code, job.project_name, target)
        answer = await post_status(url, token, body)
        return self._judge("GitHub", notice, answer, give_up=lambda s: s in GITHUB_GIVE_UP)

    def _status_job(self, build_id: int) -> _StatusJob | None:
        with self._sessions() as session:
            row = session.execute(
                select(Project.id, Project.name, Project.repo_url, Project.github_token)
                .add_columns(Build.commit_hash)
                .join(Build, Build.project_id == Project.id)
                .where(Build.id == build_id)
            ).one_or_none()
        return _StatusJob(*row) if row is not None else None

    # --- hooks ---

    async def send_hook(self, notice: Notice) -> Delivery:
        assert notice.hook_id is not None
        try:
            prepared = await asyncio.to_thread(self._hook_job, notice)
        except PermanentError as exc:  # no key, or a key that does not open its secret
            log.warning("build %s: hook %s not sent: %s", notice.build_id, notice.hook_id, exc)
            return Delivery.GAVE_UP
        if prepared is None:
            return Delivery.SKIPPED
        url, secret, body = prepared
        try:  # the address rules again: the host's DNS answer may have changed
            pin = check_url(url, allow_local=self._settings.allow_local_repos)
        except OutboundRefused as exc:
            log.warning("build %s: hook %s not sent: %s", notice.build_id, notice.hook_id, exc)
            return Delivery.GAVE_UP
        target = hook_target(notice.hook_id)
        if not await asyncio.to_thread(self.claim, notice.build_id, target, notice.seq):
            return Delivery.DROPPED
        headers = {SIGNATURE_HEADER: sign(secret, body), "X-Kiln-Event": notice.event}
        answer = await post_json(url, body, headers, pin=pin)
        return self._judge(
            f"hook {notice.hook_id}",
            notice,
            answer,
            give_up=lambda s: s < 500 and s not in HOOK_RETRY,
        )

    def _hook_job(self, notice: Notice) -> tuple[str, str, bytes] | None:
        """The hook's URL, its secret and the body to send; None when the hook is gone or no
        longer wants this event."""
        with self._sessions() as session:
            hook = session.get(ProjectHook, notice.hook_id)
            build = session.get(Build, notice.build_id)
            if hook is None or build is None or notice.event not in hook.events:
                return None
            project = build.project
            secret = self._hooks.open_secret(hook)
            link = dashboard_url(self._settings.public_url, build.id)
            sentence = describe(notice.event, notice.exit_code)
            body = hook_body(
                notice.event,
                build_record(build),
                project_summary(project),
                link,
                hook_text(project.name, build.id, sentence, link),
            )
            return hook.url, secret, body

    @staticmethod
    def _judge(what: str, notice: Notice, answer: Answer, *, give_up: Any) -> Delivery:
        """Sent on a 2xx; given up on when `give_up(status)`; else OutboundFailed (retried)."""
        if answer.ok:
            return Delivery.SENT
        if give_up(answer.status):
            log.warning(
                "build %s: %s refused the %s notice (%s); not retried",
                notice.build_id,
                what,
                notice.event,
                answer.status,
            )
            return Delivery.GAVE_UP
        raise OutboundFailed(f"{what} answered {answer.status}")
