"""Private repositories: a git server on 127.0.0.1 that demands HTTP basic auth, and projects
whose git credentials open it. With the right credentials branch resolution, the clone and the
build work; without them, or with wrong ones, the project is refused with a clear 400, and a
build whose credentials were removed fails saying why. The credentials never show in git's
argv, the stored URL, the workspace's `.git/config`, a log, an error message, an API answer or
the Temporal history.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client

from kiln.crypto import generate_key
from kiln.git import Credentials, GitAuthFailed, GitError, checkout, resolve_branch
from kiln.models import Project
from kiln.secrets import split_credentials
from testbed.git_server import GitRepo, GitServer, _CgiHandler, _Server
from testbed.stack import Stack, User
from tests.support.helpers import PROJECTS, assert_error, last_line, repo_name
from workflows.ids import workflow_id

TIMEOUT = 30.0
USER = "deploy-bot"
TOKEN = "ghp_PrivAteT0ken-0123456789abcdef"
WRONG = "ghp_wrongwrongwrong-000000000000"


class _AuthHandler(_CgiHandler):
    """Answers 401 unless the request carries the server's basic credentials."""

    server: _AuthServer

    def _run_backend(self) -> None:
        self.server.seen.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != self.server.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="private"')
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            return
        super()._run_backend()


class _AuthServer(_Server):
    def __init__(self, root: Path, fetch_delay: float) -> None:
        super().__init__(root, fetch_delay)
        self.RequestHandlerClass = _AuthHandler
        self.expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
        self.seen: list[str | None] = []


class PrivateGitServer(GitServer):
    """testbed's git server, behind HTTP basic auth (USER / TOKEN)."""

    def start(self) -> None:
        self._server = _AuthServer(self.root, self.fetch_delay)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def seen(self) -> list[str | None]:
        assert isinstance(self._server, _AuthServer)
        return self._server.seen


@pytest.fixture(scope="module")
def private_git() -> Iterator[PrivateGitServer]:
    with PrivateGitServer() as server:
        yield server


@pytest.fixture
def private_repo(private_git: PrivateGitServer) -> GitRepo:
    repo = private_git.create_repo(repo_name("private"))
    repo.commit({"README": "private hello\n"}, "private init")
    return repo


@pytest.fixture(scope="module")
def stack_changes() -> dict[str, Any]:
    return {"secrets_key": generate_key()}


def embedded(url: str, user: str = USER, token: str = TOKEN) -> str:
    return url.replace("http://", f"http://{user}:{token}@", 1)


def forms_of(secret: str) -> list[str]:
    """How a token could show: as it is, inside the basic-auth header, or in a URL."""
    pair = f"{USER}:{secret}".encode()
    return [secret, base64.b64encode(pair).decode(), f":{secret}@"]


def assert_absent(secret: str, where: str, text: str) -> None:
    for form in forms_of(secret):
        assert form not in text, f"{form!r} found in {where}"


@pytest.fixture
def git_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    """Every git command kiln.git runs: its argv and its environment."""
    calls: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def recording(command: list[str], **kwargs: Any) -> Any:
        calls.append((list(command), dict(kwargs.get("env") or {})))
        return real(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)  # the module kiln.git calls
    return calls


# --- the core path: kiln.git with credentials ----------------------------------------------------


def test_credentials_open_a_private_repository_through_gits_environment_only(
    private_git: PrivateGitServer,
    private_repo: GitRepo,
    git_calls: list[tuple[list[str], dict[str, str]]],
    tmp_path: Path,
) -> None:
    auth = Credentials(USER, TOKEN)
    head = resolve_branch(private_repo.url, "main", timeout=TIMEOUT, auth=auth)
    dest = tmp_path / "ws"
    info = checkout(private_repo.url, head, dest, timeout=TIMEOUT, auth=auth)

    assert head == private_repo.head()
    assert info.message == "private init"
    assert (dest / "README").read_text() == "private hello\n"
    assert private_git.seen[-1] == f"Basic {forms_of(TOKEN)[1]}"
    # Never in argv (any user of the host can read that), only in the environment.
    network = [env for argv, env in git_calls if {"ls-remote", "fetch"} & set(argv)]
    assert len(network) == 2
    for argv, _env in git_calls:
        assert_absent(TOKEN, "git's argv", " ".join(argv))
    for env in network:
        assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
        assert env["GIT_CONFIG_VALUE_0"] == f"Authorization: Basic {forms_of(TOKEN)[1]}"
    # Nothing of them in the workspace git leaves behind (config, FETCH_HEAD, logs).
    for path in (dest / ".git").rglob("*"):
        if path.is_file():
            assert_absent(TOKEN, str(path), path.read_bytes().decode(errors="replace"))
    assert TOKEN not in repr(auth)


@pytest.mark.parametrize("auth", [None, Credentials(USER, WRONG), Credentials("", TOKEN)])
def test_missing_or_wrong_credentials_are_a_clear_permanent_error_that_shows_none(
    private_repo: GitRepo, auth: Credentials | None, tmp_path: Path
) -> None:
    with pytest.raises(GitAuthFailed) as resolving:
        resolve_branch(private_repo.url, "main", timeout=TIMEOUT, auth=auth)
    with pytest.raises(GitError) as fetching:
        checkout(private_repo.url, private_repo.head(), tmp_path / "ws", timeout=TIMEOUT, auth=auth)

    for caught in (resolving, fetching):
        assert caught.value.permanent is True
        message = str(caught.value)
        assert "credentials" in message
        assert ("none given" in message) == (auth is None), message
        assert_absent(TOKEN, "the error", message)
        assert_absent(WRONG, "the error", message)


@pytest.mark.parametrize(
    ("url", "clean", "username", "token"),
    [
        ("https://bob:s3cret@git.example.com/a/b.git", "https://git.example.com/a/b.git", "bob",
         "s3cret"),
        ("https://ghp_abc@github.com/a/b", "https://github.com/a/b", "", "ghp_abc"),
        ("http://u%40x:p%3Aw%2F@127.0.0.1:8080/r.git?x=1", "http://127.0.0.1:8080/r.git?x=1",
         "u@x", "p:w/"),
        ("https://git.example.com/a/b.git", "https://git.example.com/a/b.git", None, None),
        ("ssh://git@example.com/a.git", "ssh://git@example.com/a.git", None, None),
    ],
)  # fmt: skip
def test_credentials_embedded_in_a_url_are_split_from_it(
    url: str, clean: str, username: str | None, token: str | None
) -> None:
    found_url, found = split_credentials(url)
    assert found_url == clean
    if token is None:
        assert found is None
    else:
        assert found == Credentials(username or "", token)


@pytest.mark.parametrize("url", ["https://bob:@host/r.git", "https://bob:a%0Ab@host/r.git"])
def test_unusable_embedded_credentials_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        split_credentials(url)
    assert "bob" not in str(caught.value) and "a\nb" not in str(caught.value)


# --- through the API and the pipeline ------------------------------------------------------------


async def create(stack: Stack, user: User, repo_url: str) -> Any:
    body = {
        "name": "private",
        "repoUrl": repo_url,
        "image": stack.image,
        "buildCommand": "cat README",
    }
    return await stack.http.post(PROJECTS, json=body, headers=user.headers)


async def history_text(stack: Stack, build_id: int) -> str:
    """The build's Temporal history as JSON, with every payload in it decoded too."""
    client = await Client.connect(stack.settings.temporal_address)
    handle = client.get_workflow_handle(workflow_id(build_id, stack.settings.workflow_id_prefix))
    text = (await handle.fetch_history()).to_json()
    parts = [text]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    parts.append(base64.b64decode(value).decode(errors="replace"))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(text))
    return "\n".join(parts)


async def test_a_project_created_with_credentials_in_its_url_keeps_them_apart_and_builds(
    stack: Stack, private_repo: GitRepo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await stack.register()

    response = await create(stack, user, embedded(private_repo.url))

    assert response.status_code == 201, response.text
    project = response.json()["project"]
    assert project["repoUrl"] == private_repo.url  # stored without them
    assert project["hasCredentials"] is True
    build = await stack.wait_final(user, response.json()["build"]["id"])
    assert (build["status"], build["exitCode"]) == ("passed", 0)
    log = await stack.logs(user, build["id"])
    assert log == "private hello\n"

    answers = [response.text]
    for path in (PROJECTS, f"{PROJECTS}/{project['id']}", f"/api/build/{build['id']}"):
        answers.append((await stack.http.get(path, headers=user.headers)).text)
    with stack.sessions() as session:
        stored_url = session.scalar(select(Project.repo_url).where(Project.id == project["id"]))
    places = {
        "the stored repoUrl": str(stored_url),
        "the log": log,
        "the API answers": "\n".join(answers),
        "the server logs": caplog.text,
        "the Temporal history": await history_text(stack, build["id"]),
    }
    for where, text in places.items():
        assert_absent(TOKEN, where, text)


async def test_a_project_without_or_with_wrong_credentials_is_refused_with_a_clear_400(
    stack: Stack, private_repo: GitRepo
) -> None:
    user = await stack.register()
    cases = [
        (private_repo.url, "needs credentials (none given)"),
        (embedded(private_repo.url, token=WRONG), "refused the credentials given"),
    ]
    for url, given in cases:
        response = await create(stack, user, url)
        message = assert_error(response, 400, url)
        assert "credentials" in message and given in message, message
        assert_absent(WRONG, "the answer", message)
    projects = (await stack.http.get(PROJECTS, headers=user.headers)).json()["projects"]
    assert projects == []


async def test_credentials_are_set_only_when_they_open_the_repository_and_never_shown(
    stack: Stack, private_repo: GitRepo
) -> None:
    user = await stack.register()
    created = (await create(stack, user, embedded(private_repo.url))).json()
    project_id = created["project"]["id"]
    await stack.wait_final(user, created["build"]["id"])
    path = f"{PROJECTS}/{project_id}/credentials"

    wrong = await stack.http.put(
        path, json={"username": USER, "token": WRONG}, headers=user.headers
    )
    assert "refused the credentials" in assert_error(wrong, 400)
    bad_bodies: list[dict[str, Any]] = [
        {},
        {"token": ""},
        {"username": "a:b", "token": "x"},
        {"token": "a\nb"},
        {"token": TOKEN, "extra": 1},
    ]
    for body in bad_bodies:
        assert_error(await stack.http.put(path, json=body, headers=user.headers), 400, str(body))
    right = await stack.http.put(
        path, json={"username": USER, "token": TOKEN}, headers=user.headers
    )
    assert right.status_code == 200, right.text
    assert right.json() == {
        "message": "Credentials saved",
        "projectId": project_id,
        "hasCredentials": True,
    }
    assert_absent(TOKEN, "the answer", right.text)

    other = await stack.register()
    missing = f"{PROJECTS}/999999/credentials"
    for method in ("PUT", "DELETE"):
        for where, headers, status in ((path, other.headers, 403), (path, {}, 401),
                                       (missing, user.headers, 404)):  # fmt: skip
            response = await stack.http.request(
                method, where, json={"token": TOKEN}, headers=headers
            )
            assert_error(response, status, f"{method} {where}")


async def test_a_build_whose_credentials_were_removed_fails_saying_why(
    stack: Stack, private_repo: GitRepo
) -> None:
    user = await stack.register()
    created = (await create(stack, user, embedded(private_repo.url))).json()
    project_id = created["project"]["id"]
    first = await stack.wait_final(user, created["build"]["id"])
    assert first["status"] == "passed"

    removed = await stack.http.delete(f"{PROJECTS}/{project_id}/credentials", headers=user.headers)
    assert removed.status_code == 200, removed.text
    assert removed.json()["hasCredentials"] is False
    again = await stack.http.delete(f"{PROJECTS}/{project_id}/credentials", headers=user.headers)
    assert_error(again, 404)
    record = (await stack.http.get(f"{PROJECTS}/{project_id}", headers=user.headers)).json()
    assert record["project"]["hasCredentials"] is False

    response = await stack.http.post(f"/api/build/rebuild/{first['id']}", headers=user.headers)
    assert response.status_code == 201, response.text
    build = await stack.wait_final(user, response.json()["build"]["id"], timeout=30)

    assert (build["status"], build["exitCode"]) == ("failed", None)
    reason = last_line(await stack.logs(user, build["id"]))
    assert "needs credentials" in reason and "no git credentials" in reason, reason
