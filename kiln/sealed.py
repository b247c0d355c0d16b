"""Everything Kiln keeps sealed with KILN_SECRETS_KEY, taken together: project secrets and git
credentials (kiln.secrets), GitHub tokens (kiln.github_status) and hook signing secrets
(kiln.hooks). The API and each worker check the key against them at start-up; `kiln
rotate-secrets` re-seals all of them with the newest key."""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.exc import OperationalError

from kiln.crypto import InvalidSecretsKey, SecretBox, SecretsUnavailable, UnreadableSecret
from kiln.db import SessionFactory
from kiln.github_status import GithubTokens
from kiln.hooks import HookService
from kiln.secrets import SecretsKeyError, SecretStore
from kiln.settings import Settings

log = logging.getLogger(__name__)
NO_KEY = (
    "projects have secrets, git credentials, GitHub tokens or notification hooks, but "
    "KILN_SECRETS_KEY is not set: set it to the key they were stored with (`kiln dev` keeps "
    "its own in .kiln/secrets_key)"
)


class Sealed(Protocol):
    def check_key(self) -> bool: ...

    def rotate(self) -> int: ...


def _kinds(sessions: SessionFactory, settings: Settings) -> list[Sealed]:
    """Every kind of sealed value (InvalidSecretsKey when the setting is malformed)."""
    box = SecretBox(settings.secrets_key)
    return [
        SecretStore(sessions, box),
        GithubTokens(sessions, box),
        HookService(sessions, box, allow_local=settings.allow_local_repos),
    ]


def require_secrets_key(sessions: SessionFactory, settings: Settings) -> None:
    """At start-up of the API and of each worker: SecretsKeyError, with a message for the
    operator, when KILN_SECRETS_KEY is malformed, or missing or wrong while anything is sealed.
    A database that cannot be reached yet is no reason to refuse (builds then fail with a
    clear reason if the key is missing)."""
    try:
        for kind in _kinds(sessions, settings):
            kind.check_key()
    except InvalidSecretsKey as exc:
        raise SecretsKeyError(str(exc)) from None
    except SecretsUnavailable:
        raise SecretsKeyError(NO_KEY) from None
    except UnreadableSecret as exc:
        raise SecretsKeyError(str(exc)) from None
    except OperationalError:
        log.warning("could not check KILN_SECRETS_KEY: the database is unreachable")


def rotate_secrets(sessions: SessionFactory, settings: Settings) -> int:
    """Re-seal every sealed value with the newest key (the first of KILN_SECRETS_KEY); how
    many. Older keys may be dropped from the setting afterwards."""
    return sum(kind.rotate() for kind in _kinds(sessions, settings))
