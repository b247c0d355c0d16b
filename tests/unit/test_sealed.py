"""Everything sealed with KILN_SECRETS_KEY is checked at start-up and re-sealed by a rotation:
project secrets, git credentials, GitHub tokens and hook signing secrets alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kiln.crypto import SecretBox, generate_key
from kiln.db import SessionFactory
from kiln.git import Credentials
from kiln.github_status import GithubTokens
from kiln.hooks import HookService
from kiln.models import Project
from kiln.sealed import require_secrets_key, rotate_secrets
from kiln.secrets import SecretsKeyError, SecretStore
from kiln.settings import Settings
from tests.unit.conftest import Rows

TOKEN = "ghp_sealed-token-value"
HOOK_URL = "http://127.0.0.1:9/hook"  # never called: allow_local lets the test create it

Seal = Callable[[SessionFactory, SecretBox, Project], None]


def settings(key: str) -> Settings:
    return Settings(secrets_key=key, allow_local_repos=True, jwt_secret="x" * 32)


def secret(sessions: SessionFactory, box: SecretBox, project: Project) -> None:
    SecretStore(sessions, box).put(project.owner_id, project.id, "NPM_TOKEN", "npm-value")


def credentials(sessions: SessionFactory, box: SecretBox, project: Project) -> None:
    SecretStore(sessions, box).set_credentials(
        project.owner_id, project.id, Credentials("bob", "git-token-value")
    )


def github_token(sessions: SessionFactory, box: SecretBox, project: Project) -> None:
    GithubTokens(sessions, box).set(project.owner_id, project.id, TOKEN)


def hook(sessions: SessionFactory, box: SecretBox, project: Project) -> None:
    HookService(sessions, box, allow_local=True).create(
        project.owner_id, project.id, HOOK_URL, ["failed"]
    )


KINDS = [secret, credentials, github_token, hook]


def test_nothing_sealed_needs_no_key(sessions: SessionFactory) -> None:
    require_secrets_key(sessions, settings(""))


@pytest.mark.parametrize("seal", KINDS, ids=lambda seal: seal.__name__)
def test_once_anything_is_sealed_a_kiln_without_the_key_refuses_to_start(
    sessions: SessionFactory, rows: Rows, seal: Seal
) -> None:
    key = generate_key()
    seal(sessions, SecretBox(key), rows.project())

    for wrong in ("", generate_key()):
        with pytest.raises(SecretsKeyError) as refused:
            require_secrets_key(sessions, settings(wrong))
        assert "KILN_SECRETS_KEY" in str(refused.value)
        assert "value" not in str(refused.value) and TOKEN not in str(refused.value)
    require_secrets_key(sessions, settings(key))
    require_secrets_key(sessions, settings(f"{generate_key()},{key}"))


def test_a_rotation_reseals_every_kind_so_the_old_key_can_go(
    sessions: SessionFactory, rows: Rows
) -> None:
    old, new = generate_key(), generate_key()
    for seal in KINDS:
        seal(sessions, SecretBox(old), rows.project())

    assert rotate_secrets(sessions, settings(f"{new},{old}")) == 4

    require_secrets_key(sessions, settings(new))
    with pytest.raises(SecretsKeyError):
        require_secrets_key(sessions, settings(old))
