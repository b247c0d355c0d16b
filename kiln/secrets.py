"""A project's secrets, variables and git credentials: the rules they follow, where they are
kept (sealed under KILN_SECRETS_KEY, kiln.crypto), and what a build gets of them.

- Secrets are environment variables of the project's builds whose values are never shown
  again: stored sealed, listed by name only, masked in build output (kiln.masking).
- Variables (`env`) are the project's non-secret environment, shown in its record.
- Git credentials (a user name and a token) open a private repository: used for branch
  resolution and every clone, handed to git through its environment (kiln.git), never in a URL,
  git's argv or the workspace's `.git/config`.

A build's values are read on its worker host, from the database (`SecretStore.for_build`):
they never travel through Temporal, its inputs, results or history. In the container a secret
wins over a variable of the same name; Kiln's own `HOME` and `KILN_BUILD_ID` win over both.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from sqlalchemy import func, select, update

from kiln.access import owned_project
from kiln.crypto import SecretBox, SecretsUnavailable, UnreadableSecret
from kiln.db import SessionFactory
from kiln.errors import NotFound, PermanentError, RequestError
from kiln.git import Credentials
from kiln.models import Build, Project, utcnow
from kiln.records import iso
from kiln.secret_models import PROJECT_SECRETS, ProjectSecret
from kiln.settings import Settings

__all__ = [
    "BuildSecrets",
    "Credentials",
    "InvalidSecret",
    "SecretStore",
    "SecretsKeyError",
    "SecretsUnavailable",
    "UnreadableSecret",
    "check_credentials",
    "check_env",
    "check_name",
    "check_value",
    "split_credentials",
]

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
RESERVED_NAMES = frozenset({"HOME", "PATH"})
RESERVED_PREFIX = "KILN_"
# The same rules as one JSON Schema pattern, for the API's schema (what `check_name` takes).
NAME_PATTERN = r"^(?!(?:HOME|PATH)$)(?!KILN_)[A-Z_][A-Z0-9_]{0,127}$"
MAX_VALUE_BYTES = 64 * 1024
MAX_SECRETS = 100
MAX_VARIABLES = 100
# What a build's environment may add up to: the kernel refuses to start a process whose
# arguments and environment pass ARG_MAX (2 MiB on most hosts).
MAX_BUILD_ENV_BYTES = 1024 * 1024
MAX_USERNAME = 256
MAX_TOKEN = 4096


class InvalidSecret(RequestError):
    """A name, value or credential that breaks the rules (the API's 400)."""


class SecretsKeyError(RuntimeError):
    """The API or a worker must not start: secrets exist that it could not open."""


# --- the rules ---------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """`name` if it may name a secret or variable; ValueError saying why not."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"'{name[:140]}' is not a valid variable name: capital letters, digits and _, "
            "not starting with a digit, at most 128 characters"
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX):
        raise ValueError(f"'{name}' is reserved: HOME, PATH and KILN_* names are Kiln's own")
    return name


def check_value(value: str) -> str:
    """`value` if a variable or secret may hold it; ValueError (never repeating it) if not."""
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ValueError(f"a value may be at most {MAX_VALUE_BYTES} bytes")
    if "\0" in value:
        raise ValueError("a value may not contain a NUL character")
    return value


def check_env(env: Mapping[str, str]) -> dict[str, str]:
    """A project's `env` if every name and value follows the rules; ValueError if not."""
    if len(env) > MAX_VARIABLES:
        raise ValueError(f"a project may have at most {MAX_VARIABLES} variables")
    for name, value in env.items():
        check_name(name)
        try:
            check_value(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return dict(env)


def check_credentials(username: str | None, token: str) -> Credentials:
    """Credentials if they may be used; ValueError (never repeating the token) if not."""
    username = username or ""
    if not token:
        raise ValueError("token may not be empty")
    if len(token) > MAX_TOKEN or len(username) > MAX_USERNAME:
        raise ValueError(f"username or token too long (at most {MAX_USERNAME}, {MAX_TOKEN})")
    if ":" in username:
        raise ValueError("username may not contain ':'")
    if any(ord(c) < 32 or ord(c) == 127 for c in username + token):
        raise ValueError("username and token may not contain control characters")
    return Credentials(username=username, token=token)


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """A repository URL without the credentials it embeds (`https://user:token@host/...`, or
    `https://token@host/...`), and those credentials (percent-decoded). ValueError (never
    repeating them) when the URL carries credentials that cannot be used."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return url, None  # not a URL: kiln.repos refuses it with its own message
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return url, None  # other schemes: kiln.repos refuses them with its own message
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, token = userinfo.partition(":")
    if not colon:
        user, token = "", user  # `https://<token>@host/...`
    try:
        credentials = check_credentials(unquote(user), unquote(token))
    except ValueError as exc:
        raise ValueError(f"repoUrl credentials: {exc}") from None
    clean = SplitResult(parts.scheme, hostport, parts.path, parts.query, parts.fragment)
    return clean.geturl(), credentials


# --- what a build gets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSecrets:
    """What one build gets: its environment (variables, then secrets over them), the values to
    mask in its output, and the repository's credentials. Never printed."""

    env: dict[str, str] = field(default_factory=dict, repr=False)
    masked: tuple[str, ...] = field(default=(), repr=False)
    credentials: Credentials | None = field(default=None, repr=False)


def _secret_context(project_id: int, name: str) -> str:
    return f"secret:{project_id}:{name}"


def _credentials_context(project_id: int) -> str:
    return f"git-credentials:{project_id}"


def _iso(moment: datetime) -> str:
    stamp = iso(moment)
    assert stamp is not None
    return stamp


def secret_record(secret: ProjectSecret) -> dict[str, Any]:
    """A secret as its owner sees it: its name and times, never its value."""
    return {
        "name": secret.name,
        "createdAt": _iso(secret.created_at),
        "updatedAt": _iso(secret.updated_at),
    }


class SecretStore:
    """Secrets and git credentials of projects, over one database, sealed with one key set."""

    def __init__(self, sessions: SessionFactory, box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box

    @classmethod
    def from_settings(cls, sessions: SessionFactory, settings: Settings) -> SecretStore:
        return cls(sessions, SecretBox(settings.secrets_key))

    @property
    def available(self) -> bool:
        """Whether values can be sealed and opened (KILN_SECRETS_KEY is set)."""
        return self._box.available

    # --- the owner's side (the API) ---

    def put(self, owner_id: int, project_id: int, name: str, value: str) -> dict[str, Any]:
        """Create or replace a secret: its record. InvalidSecret for a bad name or value or
        one past the limit; SecretsUnavailable without a key."""
        try:
            check_name(name)
            check_value(value)
        except ValueError as exc:
            raise InvalidSecret(str(exc)) from None
        sealed = self._box.seal(value, _secret_context(project_id, name))
        with self._sessions.begin() as session:
            # The project row lock serialises writers of one project (PostgreSQL), so two
            # concurrent PUTs cannot pass the limit together.
            owned_project(session, project_id, owner_id)
            session.scalar(select(Project.id).where(Project.id == project_id).with_for_update())
            secret = session.get(ProjectSecret, (project_id, name))
            if secret is None:
                count = session.scalar(
                    select(func.count()).where(ProjectSecret.project_id == project_id)
                )
                if (count or 0) >= MAX_SECRETS:
                    raise InvalidSecret(f"a project may have at most {MAX_SECRETS} secrets")
                secret = ProjectSecret(project_id=project_id, name=name, sealed=sealed)
                session.add(secret)
            else:
                secret.sealed = sealed
                secret.updated_at = utcnow()
            session.flush()
            return secret_record(secret)

    def records(self, owner_id: int, project_id: int) -> list[dict[str, Any]]:
        """The project's secrets by name (never their values)."""
        with self._sessions() as session:
            owned_project(session, project_id, owner_id)
            secrets = session.scalars(
                select(ProjectSecret)
                .where(ProjectSecret.project_id == project_id)
                .order_by(ProjectSecret.name)
            )
            return [secret_record(secret) for secret in secrets]

    def delete(self, owner_id: int, project_id: int, name: str) -> None:
        """NotFound when the project has no such secret (InvalidSecret for a bad name)."""
        try:
            check_name(name)
        except ValueError as exc:
            raise InvalidSecret(str(exc)) from None
        with self._sessions.begin() as session:
            owned_project(session, project_id, owner_id)
            secret = session.get(ProjectSecret, (project_id, name))
            if secret is None:
                raise NotFound("Secret not found")
            session.delete(secret)

    def seal_credentials(self, project_id: int, credentials: Credentials) -> str:
        """Credentials sealed for the project's `git_credentials` (SecretsUnavailable without
        a key)."""
        plain = json.dumps({"username": credentials.username, "token": credentials.token})
        return self._box.seal(plain, _credentials_context(project_id))

    def sealer(self, credentials: Credentials | None) -> Callable[[int], str] | None:
        """For ProjectService.create: project id -> the credentials sealed for it (None
        without credentials)."""
        if credentials is None:
            return None
        return lambda project_id: self.seal_credentials(project_id, credentials)

    def remote(self, owner_id: int, project_id: int) -> tuple[str, str]:
        """The owner's project's repository URL and branch (to try credentials on)."""
        with self._sessions() as session:
            project = owned_project(session, project_id, owner_id)
            return project.repo_url, project.branch

    def set_credentials(self, owner_id: int, project_id: int, credentials: Credentials) -> None:
        """Create or replace the project's git credentials."""
        sealed = self.seal_credentials(project_id, credentials)
        with self._sessions.begin() as session:
            owned_project(session, project_id, owner_id)
            session.execute(
                update(PROJECT_SECRETS)
                .where(PROJECT_SECRETS.c.id == project_id)
                .values(git_credentials=sealed)
            )

    def clear_credentials(self, owner_id: int, project_id: int) -> None:
        """NotFound when the project has none."""
        with self._sessions.begin() as session:
            owned_project(session, project_id, owner_id)
            projects = PROJECT_SECRETS
            current = session.scalar(
                select(projects.c.git_credentials).where(projects.c.id == project_id)
            )
            if current is None:
                raise NotFound("Project has no git credentials")
            session.execute(
                update(projects).where(projects.c.id == project_id).values(git_credentials=None)
            )

    # --- the worker's side ---

    def for_build(self, build_id: int) -> BuildSecrets:
        """What the build's container and checkout get, opened here. SecretsUnavailable when
        the project has secrets or credentials and this Kiln has no key; UnreadableSecret when
        the key does not open them."""
        project = PROJECT_SECRETS
        with self._sessions() as session:
            row = session.execute(
                select(project.c.id, project.c.env, project.c.git_credentials)
                .join(Build, Build.project_id == project.c.id)
                .where(Build.id == build_id)
            ).one_or_none()
            if row is None:
                return BuildSecrets()
            project_id, stored_env, sealed_credentials = row
            secrets = list(
                session.scalars(select(ProjectSecret).where(ProjectSecret.project_id == project_id))
            )
        env = {str(name): str(value) for name, value in (stored_env or {}).items()}
        if (secrets or sealed_credentials) and not self._box.available:
            raise SecretsUnavailable(
                "this project has secrets or git credentials, but this worker has no "
                "KILN_SECRETS_KEY to decrypt them"
            )
        values = {
            secret.name: self._box.open(secret.sealed, _secret_context(project_id, secret.name))
            for secret in secrets
        }
        credentials = (
            self._open_credentials(project_id, sealed_credentials) if sealed_credentials else None
        )
        masked = tuple(values.values()) + ((credentials.token,) if credentials else ())
        merged = env | values
        size = sum(len(name.encode()) + len(value.encode()) + 2 for name, value in merged.items())
        if size > MAX_BUILD_ENV_BYTES:
            raise PermanentError(
                f"the project's variables and secrets add up to {size // 1024} KiB; a build's "
                f"environment holds at most {MAX_BUILD_ENV_BYTES // 1024} KiB"
            )
        return BuildSecrets(env=merged, masked=masked, credentials=credentials)

    def _open_credentials(self, project_id: int, sealed: str) -> Credentials:
        plain = json.loads(self._box.open(sealed, _credentials_context(project_id)))
        return Credentials(username=str(plain["username"]), token=str(plain["token"]))

    # --- operators ---

    def in_use(self) -> bool:
        """Whether any project has a secret or git credentials (then the key is required)."""
        with self._sessions() as session:
            return bool(
                session.scalar(select(ProjectSecret.project_id).limit(1)) is not None
                or session.scalar(
                    select(PROJECT_SECRETS.c.id)
                    .where(PROJECT_SECRETS.c.git_credentials.is_not(None))
                    .limit(1)
                )
                is not None
            )

    def check_key(self) -> bool:
        """Whether any project has a secret or git credentials, the key opening one of them
        (SecretsUnavailable without a key, UnreadableSecret when it opens none)."""
        if not self.in_use():
            return False
        with self._sessions() as session:
            secret = session.scalar(select(ProjectSecret).limit(1))
            if secret is not None:
                self._box.open(secret.sealed, _secret_context(secret.project_id, secret.name))
                return True
            row = session.execute(
                select(PROJECT_SECRETS.c.id, PROJECT_SECRETS.c.git_credentials)
                .where(PROJECT_SECRETS.c.git_credentials.is_not(None))
                .limit(1)
            ).one_or_none()
        if row is not None and row[1] is not None:
            self._open_credentials(row[0], row[1])
        return True

    def rotate(self) -> int:
        """Re-seal every stored value with the newest key (the first of KILN_SECRETS_KEY), so
        older keys can then be dropped. Returns how many values were re-sealed."""
        count = 0
        with self._sessions.begin() as session:
            for secret in session.scalars(select(ProjectSecret)):
                secret.sealed = self._box.reseal(secret.sealed)
                count += 1
            rows = session.execute(
                select(PROJECT_SECRETS.c.id, PROJECT_SECRETS.c.git_credentials).where(
                    PROJECT_SECRETS.c.git_credentials.is_not(None)
                )
            ).all()
            for project_id, sealed in rows:
                session.execute(
                    update(PROJECT_SECRETS)
                    .where(PROJECT_SECRETS.c.id == project_id)
                    .values(git_credentials=self._box.reseal(sealed))
                )
                count += 1
        return count
