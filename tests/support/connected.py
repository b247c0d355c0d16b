"""A project connected to a repository of the test git server, as the webhook tests use it: its
owner, the repository, the project record (with its webhook secret), and GitHub's side of a
push to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testbed.git_server import GitRepo
from testbed.stack import Stack, User
from tests.support import github
from tests.support.helpers import repo_name


@dataclass
class Connected:
    user: User
    repo: GitRepo
    project: dict[str, Any]

    @property
    def id(self) -> int:
        project_id: int = self.project["id"]
        return project_id

    @property
    def secret(self) -> str:
        secret: str = self.project["webhookSecret"]
        return secret

    @property
    def html_url(self) -> str:
        return github.html_url_of(self.repo.url)

    def push(self, content: str, author: str = "Ada") -> tuple[str, dict[str, Any]]:
        """Commit to main; the commit, and GitHub's payload for that push."""
        before = self.repo.head()
        message = f"push {content.strip()}"
        sha = self.repo.commit({"app.txt": content}, message, author=author)
        payload = github.payload(
            "push", self.html_url, ref="refs/heads/main", before=before, after=sha,
            message=message, author=author,
        )  # fmt: skip
        return sha, payload


def new_repo(stack: Stack, prefix: str, author: str = "Ada Lovelace") -> GitRepo:
    """A repository with one commit of `app.txt` on main."""
    repo = stack.git.create_repo(repo_name(prefix))
    repo.commit({"app.txt": "v1\n"}, "first commit", author=author)
    return repo


async def connect(stack: Stack, repo: GitRepo, repo_url: str | None = None) -> Connected:
    """A new user's project on `repo` (at `repo_url`, if given), its first build finished, so
    that later counts of builds are exact."""
    user = await stack.register()
    created = await stack.create_project(user, repo_url or repo.url, "cat app.txt")
    assert len(created["project"]["webhookSecret"]) >= 32
    await stack.wait_final(user, created["build"]["id"])
    return Connected(user, repo, created["project"])
