"""What the API refuses to start without. Apart from the app, so that `kiln api`'s parent
process can check it before it starts its worker processes without loading the whole API."""

from __future__ import annotations

from kiln.db import SessionFactory
from kiln.sealed import require_secrets_key
from kiln.settings import Settings


def check_startup(settings: Settings, sessions: SessionFactory) -> None:
    """What the API refuses to start without, as a RuntimeError saying why: a JWT secret, and
    the KILN_SECRETS_KEY of what is sealed. `kiln api` checks it before it starts its worker
    processes too (a worker that fails to start would only be started again)."""
    if not settings.jwt_secret:
        raise RuntimeError("KILN_JWT_SECRET is not set: the API refuses to start without it")
    require_secrets_key(sessions, settings)  # SecretsKeyError (a RuntimeError) says why
