"""A Kiln without KILN_SECRETS_KEY: secrets and git credentials cannot be stored (a clear 503
that stores nothing), everything else works, and once secrets exist neither the API nor a
worker starts without the key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio.client import Client

from api.main import create_app
from kiln.crypto import SecretBox, generate_key
from kiln.secrets import Credentials, SecretsKeyError, SecretStore
from testbed.stack import Stack
from tests.support.helpers import PROJECTS, assert_error, new_repo
from worker import build_worker_process


async def test_without_a_key_secrets_and_credentials_are_a_503_that_stores_nothing(
    stack: Stack,
) -> None:
    assert stack.settings.secrets_key == ""  # the shared stack: no KILN_SECRETS_KEY
    user = await stack.register()
    repo = new_repo(stack.git, "no-key")
    created = await stack.create_project(user, repo.url, 'echo "$MODE"', env={"MODE": "plain"})
    project_id = created["project"]["id"]
    build = await stack.wait_final(user, created["build"]["id"])
    assert build["status"] == "passed"
    assert await stack.logs(user, build["id"]) == "plain\n"  # env needs no key

    secret = await stack.http.put(
        f"{PROJECTS}/{project_id}/secrets/TOKEN", json={"value": "x" * 10}, headers=user.headers
    )
    assert "KILN_SECRETS_KEY" in assert_error(secret, 503)
    credentials = await stack.http.put(
        f"{PROJECTS}/{project_id}/credentials", json={"token": "t" * 10}, headers=user.headers
    )
    assert "KILN_SECRETS_KEY" in assert_error(credentials, 503)
    body = {
        "name": "app",
        "repoUrl": repo.url.replace("http://", "http://bob:tttttttttt@"),
        "image": stack.image,
    }
    embedded = await stack.http.post(PROJECTS, json=body, headers=user.headers)
    message = assert_error(embedded, 503)
    assert "KILN_SECRETS_KEY" in message and "tttttttttt" not in message

    listed = await stack.http.get(f"{PROJECTS}/{project_id}/secrets", headers=user.headers)
    assert listed.json()["secrets"] == []
    projects = (await stack.http.get(PROJECTS, headers=user.headers)).json()["projects"]
    assert [p["hasCredentials"] for p in projects] == [False]


async def test_once_secrets_exist_the_api_and_a_worker_refuse_to_start_without_the_key(
    stack: Stack,
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "no-key")
    project_id = (await stack.create_project(user, repo.url, "true"))["project"]["id"]
    # Stored by a Kiln that had a key (the key has since been lost, or not passed on).
    store = SecretStore(stack.sessions, SecretBox(generate_key()))
    store.set_credentials(user.id, project_id, Credentials("bob", "lost-token-value"))

    with pytest.raises(SecretsKeyError) as api_refused:
        create_app(stack.settings)
    client = await Client.connect(stack.settings.temporal_address)
    with ThreadPoolExecutor(max_workers=2) as executor:
        with pytest.raises(SecretsKeyError) as worker_refused:
            build_worker_process(client, stack.settings, executor)
    for refused in (api_refused, worker_refused):
        assert "KILN_SECRETS_KEY is not set" in str(refused.value)
        assert "lost-token-value" not in str(refused.value)
