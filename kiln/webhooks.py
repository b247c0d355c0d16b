"""GitHub push deliveries: which projects a delivery is for, what it asks to build, and acting
on each delivery once.

The signature (`X-Hub-Signature-256`, HMAC-SHA256 of the raw body) is checked in constant time
before the body is parsed. A delivery to a project's own URL (`/api/webhook/github/{id}`) costs
one HMAC, with that project's secret. A delivery to the shared URL names its repository only in
the body: the candidate projects are found by scanning the raw bytes for the repository's
`clone_url`/`html_url` (no parsing), and at most `SHARED_URL_MAX_PROJECTS` of them, the oldest
first, are checked; once parsed, the payload must name the signer's repository.

A delivery is acted on once: per `X-GitHub-Delivery` id, and per project and SHA-256 of the
signed body (so a captured delivery replayed under a new or no id queues nothing). Both records
are kept `DEDUPE_DAYS` days, pruned as new deliveries are recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from kiln.access import MAX_ID
from kiln.builds import queue_new
from kiln.db import SessionFactory
from kiln.errors import KilnError, RequestError
from kiln.git import SHA_RE, repo_key
from kiln.models import Build, Project, WebhookDelivery, WebhookPayload, utcnow

log = logging.getLogger(__name__)

NO_COMMIT = "0" * 40
# Projects checked per delivery on the shared URL (the oldest on the repository first); the
# others must use their own URL.
SHARED_URL_MAX_PROJECTS = 20
# How long delivery ids and body digests are remembered.
DEDUPE_DAYS = 7
SIGNATURE_RE = re.compile(r"sha256=[0-9a-f]{64}")
# A repository URL in the raw body, as GitHub writes it: `"clone_url": "https://..."`.
_URL_FIELDS = (b'"clone_url"', b'"html_url"')
_URL_VALUE = re.compile(rb'[ \t\r\n]{0,64}:[ \t\r\n]{0,64}"([^"\\]{1,2000})"')
# Payloads name many URLs (owner, sender, commits); the repository's come first.
_MAX_URL_FIELDS = 100


class DuplicateDelivery(KilnError):
    """This delivery (its id, or its signed body) was acted on already."""


class InvalidPayload(RequestError):
    """The body is not a JSON object (a 400)."""


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
    repo_key: str


@dataclass(frozen=True)
class _Candidate:
    project: SignedProject
    secret: str


def well_formed_signature(signature: str) -> bool:
    """GitHub's `sha256=<64 hex digits>`: anything else can sign nothing (checked before the
    body is read)."""
    return SIGNATURE_RE.fullmatch(signature) is not None


def signed_by(secret: str, body: bytes, signature: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def decode_payload(body: bytes) -> dict[str, Any]:
    """The delivery's JSON object; InvalidPayload for anything else (including nesting too deep
    to parse). CPU-bound: call it off the event loop."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidPayload("Request body is not valid JSON") from None
    except RecursionError:
        raise InvalidPayload("Request body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise InvalidPayload("Request body must be a JSON object")
    return payload


def _keys(urls: list[str]) -> set[str]:
    keys = set()
    for url in urls:
        if url:
            try:
                keys.add(repo_key(url))
            except ValueError:  # matches no project
                pass
    return keys


def raw_repository_keys(body: bytes) -> set[str]:
    """Repo keys of the `clone_url`/`html_url` fields in the raw body (before parsing): the
    candidates a signature is checked against. A superset of the repository's own."""
    urls = []
    for field in _URL_FIELDS:
        start = 0
        for _ in range(_MAX_URL_FIELDS):
            found = body.find(field, start)
            if found == -1:
                break
            start = found + len(field)
            value = _URL_VALUE.match(body, start)
            if value is not None:
                urls.append(value.group(1).decode("utf-8", "replace"))
    return _keys(urls)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def repository_keys(payload: dict[str, Any]) -> set[str]:
    """The repository the payload names, as project repo keys (`clone_url`, `html_url`)."""
    repository = _object(payload.get("repository"))
    urls = [repository.get("clone_url"), repository.get("html_url")]
    return _keys([url for url in urls if isinstance(url, str)])


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


def _candidate(project: Project) -> _Candidate:
    return _Candidate(
        SignedProject(project.id, project.branch, project.repo_key), project.webhook_secret
    )


class WebhookService:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def signed_projects(self, keys: set[str], body: bytes, signature: str) -> list[SignedProject]:
        """Projects on these repositories whose secret signed `body`: at most
        SHARED_URL_MAX_PROJECTS checked, the oldest first (HMACs: call it off the event loop)."""
        if not keys or not well_formed_signature(signature):
            return []
        with self._sessions() as session:
            query = (
                select(Project)
                .where(Project.repo_key.in_(keys))
                .order_by(Project.id)
                .limit(SHARED_URL_MAX_PROJECTS)
            )
            candidates = [_candidate(project) for project in session.scalars(query)]
        return [c.project for c in candidates if signed_by(c.secret, body, signature)]

    def signed_project(self, project_id: int, body: bytes, signature: str) -> SignedProject | None:
        """The project, if its secret signed `body` (one HMAC)."""
        if not well_formed_signature(signature):
            return None
        if project_id > MAX_ID:
            return None
        with self._sessions() as session:
            project = session.get(Project, project_id)
            candidate = _candidate(project) if project is not None else None
        if candidate is None or not signed_by(candidate.secret, body, signature):
            return None
        return candidate.project

    def queue_push(
        self, delivery: str, digest: str, push: Push, project_ids: list[int]
    ) -> list[dict[str, Any]]:
        """Queue one build per project at the pushed commit, once per delivery id and once per
        project and body digest (else DuplicateDelivery, even for a concurrent redelivery);
        their records."""
        project_ids = sorted(set(project_ids))
        with self._sessions.begin() as session:
            if delivery:
                session.add(WebhookDelivery(delivery_id=delivery))
            session.add_all(
                WebhookPayload(project_id=project_id, body_sha256=digest)
                for project_id in project_ids
            )
            try:
                session.flush()
            except IntegrityError:
                raise DuplicateDelivery(delivery or digest) from None
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
            records = queue_new(session, builds)
        self.prune()
        return records

    def forget(self, delivery: str, digest: str, project_ids: list[int]) -> None:
        """Forget a delivery that queued nothing, so GitHub's redelivery can try again."""
        with self._sessions.begin() as session:
            if delivery:
                session.execute(
                    delete(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery)
                )
            session.execute(
                delete(WebhookPayload).where(
                    WebhookPayload.body_sha256 == digest,
                    WebhookPayload.project_id.in_(project_ids),
                )
            )

    def prune(self) -> None:
        """Drop what is older than DEDUPE_DAYS: the dedupe records stay bounded."""
        cutoff = utcnow() - timedelta(days=DEDUPE_DAYS)
        try:
            with self._sessions.begin() as session:
                session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < cutoff))
                session.execute(delete(WebhookPayload).where(WebhookPayload.created_at < cutoff))
        except SQLAlchemyError as exc:  # the next delivery prunes again
            log.warning("could not prune old webhook deliveries: %s", exc)
