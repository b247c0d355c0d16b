"""ORM models: users own projects, projects own builds, builds own their log chunks."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy import Enum as SQLEnum
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class BuildStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self not in (BuildStatus.QUEUED, BuildStatus.RUNNING)


DEFAULT_TIMEOUT_SECONDS = 3600


def new_webhook_secret() -> str:
    return secrets.token_hex(32)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone; this restores it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    repo_url: Mapped[str] = mapped_column(String(2000))
    # repo_url normalised (kiln.git.repo_key): how push deliveries find their projects.
    repo_key: Mapped[str] = mapped_column(String(2000), index=True, default="")
    branch: Mapped[str] = mapped_column(String(255))
    image: Mapped[str] = mapped_column(String(500))
    build_command: Mapped[str] = mapped_column(Text)
    # Signs GitHub push deliveries (HMAC-SHA256); shown to the owner only.
    webhook_secret: Mapped[str] = mapped_column(String(100), default=new_webhook_secret)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=DEFAULT_TIMEOUT_SECONDS)
    max_concurrent_builds: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Non-secret build variables (name -> value), shown to the owner (kiln.secrets rules).
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Sealed git credentials (kiln.secrets), or None; never shown, never in repo_url.
    git_credentials: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Sealed GitHub token for commit statuses (kiln.github_status), or None; never shown.
    github_token: Mapped[str | None] = mapped_column(Text, nullable=True)

    builds: Mapped[list[Build]] = relationship(
        back_populates="project",
        order_by="Build.id.desc()",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Build(Base):
    __tablename__ = "builds"
    __table_args__ = (
        Index("ix_builds_project_status", "project_id", "status"),
        # A project's builds in id order: its newest are an index range (kiln.projects).
        Index("ix_builds_project_newest", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[BuildStatus] = mapped_column(
        # Stored as the plain word (VARCHAR(16)), read back as the enum.
        SQLEnum(
            BuildStatus,
            native_enum=False,
            length=16,
            values_callable=lambda statuses: [status.value for status in statuses],
        ),
        default=BuildStatus.QUEUED,
    )
    commit: Mapped[str] = mapped_column(Text, default="")
    branch: Mapped[str] = mapped_column(String(255))
    commit_author: Mapped[str] = mapped_column(String(500), default="")
    commit_hash: Mapped[str] = mapped_column(String(64))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The worker host chosen to run the build (its KILN_WORKER_ID).
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)

    project: Mapped[Project] = relationship(back_populates="builds")


class LogChunk(Base):
    """A piece of a build's output; `offset` is its first byte's position in the whole log."""

    __tablename__ = "build_log_chunks"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class WorkerHost(Base):
    """A worker host that is (or was) polling its own queue; `seen_at` is its liveness."""

    __tablename__ = "worker_hosts"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    task_queue: Mapped[str] = mapped_column(String(300))
    capacity: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """GitHub delivery ids already acted on: a redelivery never queues a second build."""

    __tablename__ = "webhook_deliveries"

    delivery_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookPayload(Base):
    """Signed bodies already acted on, per project (SHA-256): a captured delivery replayed under
    a new or no delivery id never queues a second build."""

    __tablename__ = "webhook_payloads"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    body_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SocketEvent(Base):
    """Outbox of Socket.io messages, used as the pub/sub channel when the database is SQLite."""

    __tablename__ = "socket_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A named, revocable credential for the CLI and scripts; only the secret's hash is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DeliveryResult(StrEnum):
    """What a signed webhook delivery did for a project."""

    QUEUED = "queued"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"


class DeliveryLog(Base):
    """A signed webhook delivery, per project, and what became of it: for the owner who wonders
    why a push built nothing. The newest 50 per project are kept (kiln.webhooks)."""

    __tablename__ = "webhook_delivery_log"
    __table_args__ = (Index("ix_webhook_delivery_log_project", "project_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # GitHub's X-GitHub-Delivery, when the delivery had one.
    delivery_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    event: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    result: Mapped[DeliveryResult] = mapped_column(
        SQLEnum(
            DeliveryResult,
            native_enum=False,
            length=16,
            values_callable=lambda results: [result.value for result in results],
        )
    )
    # Why nothing was queued (None when builds were).
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # The ids of the builds it queued, as a JSON list.
    build_ids: Mapped[str] = mapped_column(Text, default="[]")
