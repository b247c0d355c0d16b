"""Notification hooks: URLs a project's owner chooses, POSTed a signed JSON notice on the build
events they were chosen for.

The body is `{event, build, project, url, text}` (`text` so a Slack or Discord incoming webhook
shows something readable), signed `X-Kiln-Signature-256: sha256=<hex HMAC-SHA256 of the exact
body>` with the hook's own secret, shown once at creation and stored sealed (kiln.crypto). Hook
URLs follow the rules of repository URLs (kiln.outbound), at creation and at every send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from kiln.access import MAX_ID, owned_project
from kiln.crypto import SecretBox
from kiln.db import SessionFactory
from kiln.errors import NotFound, RequestError
from kiln.integration_models import ProjectHook
from kiln.models import Project
from kiln.outbound import OutboundFailed, OutboundRefused, check_url
from kiln.records import iso

HOOK_EVENTS = ("failed", "passed", "canceled", "running")
MAX_HOOKS = 20
MAX_URL = 2000
SIGNATURE_HEADER = "X-Kiln-Signature-256"


class InvalidHook(RequestError):
    """A hook that breaks the rules (the API's 400)."""


def check_events(events: Sequence[str]) -> list[str]:
    """The events if they are a non-empty list of known events without repeats."""
    if not events:
        raise InvalidHook(f"events may not be empty: choose from {', '.join(HOOK_EVENTS)}")
    unknown = [event for event in events if event not in HOOK_EVENTS]
    if unknown:
        raise InvalidHook(
            f"unknown event '{unknown[0][:40]}': choose from {', '.join(HOOK_EVENTS)}"
        )
    if len(set(events)) != len(events):
        raise InvalidHook("events may not repeat")
    return list(events)


def check_hook_url(url: str, *, allow_local: bool) -> None:
    """InvalidHook saying why Kiln would not POST to `url`."""
    if len(url) > MAX_URL:
        raise InvalidHook(f"url may be at most {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidHook("url may not contain spaces or control characters")
    try:
        check_url(url, allow_local=allow_local)
    except (OutboundRefused, OutboundFailed) as exc:
        raise InvalidHook(str(exc)) from None


def sign(secret: str, body: bytes) -> str:
    """The `X-Kiln-Signature-256` value of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hook_body(
    event: str,
    build: dict[str, Any],
    project: dict[str, Any],
    url: str | None,
    text: str,
) -> bytes:
    """The exact bytes sent (and signed)."""
    notice = {"event": event, "build": build, "project": project, "url": url, "text": text}
    return json.dumps(notice, separators=(",", ":"), ensure_ascii=False).encode()


def hook_text(project_name: str, build_id: int, sentence: str, url: str | None) -> str:
    """`my-app #42: The build failed (exit code 1) <url>`."""
    text = f"{project_name} #{build_id}: {sentence}"
    return f"{text} {url}" if url else text


def hook_record(hook: ProjectHook) -> dict[str, Any]:
    """A hook as its owner sees it (its secret only in the creation answer)."""
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "createdAt": iso(hook.created_at),
    }


def secret_context(project_id: int, hook_id: int) -> str:
    return f"hook:{project_id}:{hook_id}"


class HookService:
    """Projects' hooks: created, listed and deleted by their owner; opened by the worker."""

    def __init__(self, sessions: SessionFactory, box: SecretBox, *, allow_local: bool) -> None:
        self._sessions = sessions
        self._box = box
        self._allow_local = allow_local

    @property
    def available(self) -> bool:
        return self._box.available

    def create(
        self, owner_id: int, project_id: int, url: str, events: Sequence[str]
    ) -> tuple[dict[str, Any], str]:
        """The new hook's record and its signing secret (shown this once). InvalidHook for a bad
        URL or events or one hook too many; SecretsUnavailable without a key."""
        chosen = check_events(events)
        with self._sessions() as session:  # ownership first: a stranger learns nothing
            owned_project(session, project_id, owner_id)
        check_hook_url(url, allow_local=self._allow_local)
        secret = secrets.token_hex(32)
        with self._sessions.begin() as session:
            owned_project(session, project_id, owner_id)
            # The project row lock keeps two concurrent creations from passing the cap together.
            session.scalar(select(Project.id).where(Project.id == project_id).with_for_update())
            count = session.scalar(select(func.count()).where(ProjectHook.project_id == project_id))
            if (count or 0) >= MAX_HOOKS:
                raise InvalidHook(f"a project may have at most {MAX_HOOKS} hooks")
            hook = ProjectHook(project_id=project_id, url=url, events=chosen, sealed_secret="")
            session.add(hook)
            session.flush()
            hook.sealed_secret = self._box.seal(secret, secret_context(project_id, hook.id))
            session.flush()
            return hook_record(hook), secret

    def records(self, owner_id: int, project_id: int) -> list[dict[str, Any]]:
        with self._sessions() as session:
            owned_project(session, project_id, owner_id)
            hooks = session.scalars(
                select(ProjectHook)
                .where(ProjectHook.project_id == project_id)
                .order_by(ProjectHook.id)
            )
            return [hook_record(hook) for hook in hooks]

    def delete(self, owner_id: int, project_id: int, hook_id: int) -> None:
        with self._sessions.begin() as session:
            owned_project(session, project_id, owner_id)
            hook = session.get(ProjectHook, hook_id) if hook_id <= MAX_ID else None
            if hook is None or hook.project_id != project_id:
                raise NotFound("Hook not found")
            session.delete(hook)

    def open_secret(self, hook: ProjectHook) -> str:
        return self._box.open(hook.sealed_secret, secret_context(hook.project_id, hook.id))

    def check_key(self) -> bool:
        """Whether any hook exists, the key opening one's secret (SecretsUnavailable without a
        key, UnreadableSecret when it opens none)."""
        with self._sessions() as session:
            hook = session.scalar(select(ProjectHook).limit(1))
            if hook is None:
                return False
            self.open_secret(hook)
            return True

    def rotate(self) -> int:
        """Re-seal every hook secret with the newest key (as SecretStore.rotate does)."""
        with self._sessions.begin() as session:
            hooks = list(session.scalars(select(ProjectHook)))
            for hook in hooks:
                hook.sealed_secret = self._box.reseal(hook.sealed_secret)
            return len(hooks)
