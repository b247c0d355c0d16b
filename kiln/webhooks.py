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

What became of each signed delivery is logged per project (`DeliveryLog`: queued with its
builds, ignored and why, or a duplicate), the newest `KEPT_DELIVERIES` of each project kept:
the owner's answer to "why did that push build nothing?". Queued builds and their log row
commit together.

Pushes count against their owner's queued-build limit like rebuilds: a project whose owner has
no room left gets no build (its log row says why). When that leaves the delivery with nothing
to queue, it is refused (LimitReached, a 429) and not remembered, so GitHub's redelivery can
queue it once builds have started.
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
from sqlalchemy.orm import Session

from kiln.access import MAX_ID, owned_project
from kiln.builds import queue_new
from kiln.db import SessionFactory
from kiln.errors import KilnError, RequestError
from kiln.git import SHA_RE, repo_key
from kiln.models import (
    Build,
    DeliveryLog,
    DeliveryResult,
    Project,
    WebhookDelivery,
    WebhookPayload,
    utcnow,
)
from kiln.quotas import (
    UserLimits,
    lock_owner,
    queued_builds_left,
    queued_limit_reached,
)
from kiln.records import iso

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
# Logged deliveries kept per project, the newest.
KEPT_DELIVERIES = 50
# Text from the delivery (a ref, a branch, an event name) quoted in a reason, at most.
_QUOTED = 200


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
class Delivery:
    """A signed delivery as it arrived: GitHub's id (may be empty), its event, its body's
    SHA-256."""

    delivery_id: str
    event: str
    digest: str


@dataclass(frozen=True)
class Outcome:
    """What a delivery did for one project, as its log row says."""

    project_id: int
    result: DeliveryResult
    reason: str | None = None
    builds: tuple[int, ...] = ()


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


def _quote(text: str) -> str:
    return repr(text if len(text) <= _QUOTED else text[:_QUOTED] + "...")


def event_ignored(event: str) -> str:
    """Why a delivery of an event other than `push` builds nothing."""
    if event == "ping":
        return "a ping (GitHub checking the hook): nothing to build"
    return f"event {_quote(event)} is not a push" if event else "no X-GitHub-Event header"


def push_ignored(payload: dict[str, Any]) -> str:
    """Why a push that `parse_push` turns down builds nothing: a tag, a deletion, no commit."""
    ref, after = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str):
        return "no ref: not a push to a branch"
    if ref.startswith("refs/tags/"):
        return f"a tag ({_quote(ref.removeprefix('refs/tags/'))}): tags are not built"
    if not ref.startswith("refs/heads/"):
        return f"ref {_quote(ref)} is not a branch"
    branch = _quote(ref.removeprefix("refs/heads/"))
    if payload.get("deleted") is True or after == NO_COMMIT:
        return f"branch {branch} was deleted"
    return f"a push to {branch} without a new commit to build"


def other_branch(pushed: str, built: str) -> str:
    return f"a push to branch {_quote(pushed)}; the project builds {_quote(built)}"


OTHER_REPOSITORY = "the delivery is for another repository"


def delivery_record(row: DeliveryLog) -> dict[str, Any]:
    """A logged delivery as the API shows it."""
    return {
        "deliveryId": row.delivery_id,
        "event": row.event,
        "receivedAt": iso(row.received_at),
        "result": row.result.value,
        "reason": row.reason,
        "builds": json.loads(row.build_ids),
    }


def _candidate(project: Project) -> _Candidate:
    return _Candidate(
        SignedProject(project.id, project.branch, project.repo_key), project.webhook_secret
    )


class WebhookService:
    """Deliveries over one database; with `limits`, pushes respect the owners' queued-build
    limit."""

    def __init__(self, sessions: SessionFactory, limits: UserLimits | None = None) -> None:
        self._sessions = sessions
        self._limits = limits

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
        self, delivery: Delivery, push: Push, signers: list[SignedProject]
    ) -> list[dict[str, Any]]:
        """Queue one build at the pushed commit for each signer on the pushed branch, once per
        delivery id and once per project and body digest (else DuplicateDelivery, even for a
        concurrent redelivery); their records. Every signer's log row is written with them.
        LimitReached when no target's owner has room for another queued build."""
        targets = sorted({project.id for project in signers if project.branch == push.branch})
        elsewhere = {
            project.id: other_branch(push.branch, project.branch)
            for project in signers
            if project.id not in targets
        }
        try:
            with self._sessions.begin() as session:
                records = self._queue(session, delivery, push, targets, elsewhere)
        except DuplicateDelivery:
            self._log_duplicate(delivery, targets, elsewhere)
            raise
        if records is None:
            assert self._limits is not None  # only limits refuse a delivery
            raise queued_limit_reached(self._limits)
        self.prune()
        return records

    def _queue(
        self,
        session: Session,
        delivery: Delivery,
        push: Push,
        targets: list[int],
        elsewhere: dict[int, str],
    ) -> list[dict[str, Any]] | None:
        """`queue_push` in its transaction; None when nothing could be queued for lack of room
        (then the delivery is not remembered: a redelivery may queue it later)."""
        owners = self._lock_owners(session, targets)
        if delivery.delivery_id:
            session.add(WebhookDelivery(delivery_id=delivery.delivery_id))
        session.add_all(
            WebhookPayload(project_id=project_id, body_sha256=delivery.digest)
            for project_id in targets
        )
        try:
            session.flush()
        except IntegrityError:
            raise DuplicateDelivery(delivery.delivery_id or delivery.digest) from None
        over_limit = self._over_limit(session, owners)
        _forget(session, delivery, list(over_limit), delivery_id=len(over_limit) == len(targets))
        builds = [
            Build(
                project_id=project_id,
                branch=push.branch,
                commit_hash=push.after,
                commit=push.message,
                commit_author=push.author,
            )
            for project_id in targets
            if project_id not in over_limit
        ]
        records = queue_new(session, builds)
        queued = [
            Outcome(record["projectId"], DeliveryResult.QUEUED, builds=(record["id"],))
            for record in records
        ]
        _log(session, delivery, queued + _ignored(elsewhere | over_limit))
        return records if records or not over_limit else None

    def _lock_owners(self, session: Session, targets: list[int]) -> dict[int, list[int]]:
        """The targets by owner, each owner locked (before anything is written, as
        `kiln.quotas` asks) when limits apply."""
        owners: dict[int, list[int]] = {}
        if self._limits is None or not targets:
            return owners
        for project_id, owner_id in session.execute(
            select(Project.id, Project.owner_id).where(Project.id.in_(targets))
        ):
            owners.setdefault(owner_id, []).append(project_id)
        for owner_id in sorted(owners):
            lock_owner(session, owner_id)
        return owners

    def _over_limit(self, session: Session, owners: dict[int, list[int]]) -> dict[int, str]:
        """The targets whose owner has no room left for their build, and why."""
        if self._limits is None:
            return {}
        reason = str(queued_limit_reached(self._limits))
        refused: dict[int, str] = {}
        for owner_id, project_ids in owners.items():
            room = queued_builds_left(session, owner_id, self._limits)
            refused |= {project_id: reason for project_id in sorted(project_ids)[room:]}
        return refused

    def _log_duplicate(
        self, delivery: Delivery, targets: list[int], elsewhere: dict[int, str]
    ) -> None:
        with self._sessions() as session:
            redelivered = bool(delivery.delivery_id) and (
                session.get(WebhookDelivery, delivery.delivery_id) is not None
            )
        if redelivered:
            why = f"a redelivery: delivery {_quote(delivery.delivery_id)} was acted on already"
        else:
            why = "the same signed body as an earlier delivery, which was acted on already"
        self.record(
            delivery,
            [Outcome(project_id, DeliveryResult.DUPLICATE, why) for project_id in targets]
            + [Outcome(p, DeliveryResult.IGNORED, reason) for p, reason in elsewhere.items()],
        )

    def record(self, delivery: Delivery, outcomes: list[Outcome]) -> None:
        """Log what a delivery that queued nothing did for each project. A failure to log is
        only logged: the delivery's answer stays what it is."""
        if not outcomes:
            return
        try:
            with self._sessions.begin() as session:
                _log(session, delivery, outcomes)
        except SQLAlchemyError as exc:  # a project deleted meanwhile, the database away
            log.warning("could not log webhook delivery %s: %s", delivery.delivery_id, exc)

    def deliveries(self, owner_id: int, project_id: int) -> list[dict[str, Any]]:
        """The project's logged deliveries, newest first (NotFound, Forbidden)."""
        with self._sessions() as session:
            owned_project(session, project_id, owner_id)
            rows = session.scalars(
                select(DeliveryLog)
                .where(DeliveryLog.project_id == project_id)
                .order_by(DeliveryLog.id.desc())
                .limit(KEPT_DELIVERIES)
            )
            return [delivery_record(row) for row in rows]

    def forget(self, delivery: Delivery, project_ids: list[int]) -> None:
        """Forget a delivery that queued nothing, so GitHub's redelivery can try again (its log
        rows stay: they show the builds that could not be started)."""
        with self._sessions.begin() as session:
            _forget(session, delivery, project_ids, delivery_id=True)

    def prune(self) -> None:
        """Drop what is older than DEDUPE_DAYS: the dedupe records stay bounded."""
        cutoff = utcnow() - timedelta(days=DEDUPE_DAYS)
        try:
            with self._sessions.begin() as session:
                session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < cutoff))
                session.execute(delete(WebhookPayload).where(WebhookPayload.created_at < cutoff))
        except SQLAlchemyError as exc:  # the next delivery prunes again
            log.warning("could not prune old webhook deliveries: %s", exc)


def _forget(
    session: Session, delivery: Delivery, project_ids: list[int], *, delivery_id: bool
) -> None:
    """Drop the delivery's dedupe records for these projects (and its id, if `delivery_id`)."""
    if delivery_id and delivery.delivery_id:
        session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery.delivery_id)
        )
    if project_ids:
        session.execute(
            delete(WebhookPayload).where(
                WebhookPayload.body_sha256 == delivery.digest,
                WebhookPayload.project_id.in_(project_ids),
            )
        )


def _ignored(reasons: dict[int, str]) -> list[Outcome]:
    return [Outcome(project_id, DeliveryResult.IGNORED, why) for project_id, why in reasons.items()]


def _log(session: Session, delivery: Delivery, outcomes: list[Outcome]) -> None:
    """Add the delivery's log rows, and keep each project's newest KEPT_DELIVERIES."""
    event = delivery.event[:100]
    session.add_all(
        DeliveryLog(
            project_id=outcome.project_id,
            delivery_id=delivery.delivery_id or None,
            event=event,
            result=outcome.result,
            reason=outcome.reason,
            build_ids=json.dumps(list(outcome.builds)),
        )
        for outcome in outcomes
    )
    session.flush()
    for project_id in sorted({outcome.project_id for outcome in outcomes}):
        oldest_kept = session.scalar(
            select(DeliveryLog.id)
            .where(DeliveryLog.project_id == project_id)
            .order_by(DeliveryLog.id.desc())
            .offset(KEPT_DELIVERIES - 1)
            .limit(1)
        )
        if oldest_kept is not None:
            session.execute(
                delete(DeliveryLog).where(
                    DeliveryLog.project_id == project_id, DeliveryLog.id < oldest_kept
                )
            )
