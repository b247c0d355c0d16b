"""GitHub push deliveries: which projects a delivery is for, what it asks to build, and acting
on each delivery id once.

The signature (`X-Hub-Signature-256`, HMAC-SHA256 of the raw body) is checked in constant time
against the secret of every project whose repository the payload names; only projects whose
secret signed it are built.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from kiln.builds import queue_new
from kiln.db import SessionFactory
from kiln.errors import KilnError
from kiln.git import SHA_RE, repo_key
from kiln.models import Build, Project, WebhookDelivery

NO_COMMIT = "0" * 40


class DuplicateDelivery(KilnError):
    """This delivery id was acted on already."""


@dataclass(frozen=True)
class Push:
    """A push to a branch, with its head commit."""

    branch: str
    after: str
    message: str
    author: str


@dataclass(frozen=True)
class SignedProject:
    id: int
    branch: str


def signed_by(secret: str, body: bytes, signature: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def repository_keys(payload: dict[str, Any]) -> set[str]:
    """The repository the payload names, as project repo keys (`clone_url`, `html_url`)."""
    repository = _object(payload.get("repository"))
    keys = set()
    for url in (repository.get("clone_url"), repository.get("html_url")):
        if isinstance(url, str) and url:
            try:
                keys.add(repo_key(url))
            except ValueError:  # matches no project
                pass
    return keys


def parse_push(payload: dict[str, Any]) -> Push | None:
    """The branch push the payload describes; None for a tag, a deletion or no new commit."""
    ref, after = payload.get("ref"), payload.get("after")
    if (
        not isinstance(ref, str)
        or not ref.startswith("refs/heads/")
        or payload.get("deleted") is True
        or not isinstance(after, str)
        or after == NO_COMMIT
        or not SHA_RE.match(after)
    ):
        return None
    head = _object(payload.get("head_commit"))
    return Push(
        branch=ref.removeprefix("refs/heads/"),
        after=after,
        message=str(head.get("message") or ""),
        author=str(_object(head.get("author")).get("name") or ""),
    )


class WebhookService:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def signed_projects(self, keys: set[str], body: bytes, signature: str) -> list[SignedProject]:
        """Projects on the repository whose secret signed `body`."""
        if not keys or not signature:
            return []
        with self._sessions() as session:
            projects = session.scalars(select(Project).where(Project.repo_key.in_(keys))).all()
            return [
                SignedProject(project.id, project.branch)
                for project in projects
                if signed_by(project.webhook_secret, body, signature)
            ]

    def queue_push(self, delivery: str, push: Push, project_ids: list[int]) -> list[dict[str, Any]]:
        """Queue one build per project at the pushed commit, once per delivery id (else
        DuplicateDelivery, even for a concurrent redelivery); their records."""
        with self._sessions.begin() as session:
            if delivery:
                session.add(WebhookDelivery(delivery_id=delivery))
                try:
                    session.flush()
                except IntegrityError:
                    raise DuplicateDelivery(delivery) from None
            builds = [
                Build(
                    project_id=project_id,
                    branch=push.branch,
                    commit_hash=push.after,
                    commit=push.message,
                    commit_author=push.author,
                )
                for project_id in project_ids
            ]
            return queue_new(session, builds)

    def forget(self, delivery: str) -> None:
        """Forget a delivery that queued nothing, so GitHub's redelivery can try again."""
        with self._sessions.begin() as session:
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery))
