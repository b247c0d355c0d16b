"""The `kiln` CLI client against a running Kiln, as a person runs it: real processes, a config
file of its own, a Socket.io follow, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import stat
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from testbed.git_server import GitRepo
from testbed.stack import Stack, User

PASSWORD = "correct horse battery"


class Kiln:
    """Runs `kiln ...` with its own config file."""

    def __init__(self, stack: Stack, home: Path) -> None:
        self.stack = stack
        self.config = home / "kiln" / "config.json"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
        self.env["KILN_CONFIG"] = str(self.config)

    async def run(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env | (env or {}),
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate((stdin or "").encode()), 120)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def login(self, user: User) -> None:
        code, out, err = await self.run(
            "login", "--server", self.stack.base_url, "--email", user.email, "--password-stdin",
            stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert code == 0, err
        assert "Logged in" in out


@pytest.fixture
def kiln(stack: Stack, tmp_path: Path) -> Kiln:
    return Kiln(stack, tmp_path)


def new_repo(stack: Stack) -> GitRepo:
    repo = stack.git.create_repo(f"cli-{uuid.uuid4().hex[:8]}")
    repo.commit({"README": "hi\n"}, "Teach the CLI")
    return repo


async def project(stack: Stack, user: User, command: str, **fields: Any) -> dict[str, Any]:
    return await stack.create_project(user, new_repo(stack).url, command, **fields)


def one_clear_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kiln: "), err
    return lines[0]


async def test_login_keeps_the_server_and_token_in_a_private_config_file(
    kiln: Kiln, stack: Stack
) -> None:
    user = await stack.register()
    await kiln.login(user)
    saved = json.loads(kiln.config.read_text())
    assert saved["server"] == stack.base_url and saved["token"]
    assert stat.S_IMODE(kiln.config.stat().st_mode) == 0o600
    code, out, _ = await kiln.run("logout")
    assert (code, out.strip()) == (0, "Logged out")
    assert not kiln.config.exists()
    code, _, err = await kiln.run("projects")
    assert code != 0 and "not logged in" in one_clear_line(err)


async def test_a_token_login_and_the_environment_override_the_file(
    kiln: Kiln, stack: Stack
) -> None:
    user = await stack.register()
    code, _, err = await kiln.run("login", "--server", stack.base_url, "--token", user.token)
    assert code == 0, err
    await project(stack, user, "true")
    code, out, _ = await kiln.run("projects")
    assert code == 0 and "app" in out
    # KILN_TOKEN wins over the file: a stranger's token sees none of these projects.
    stranger = await stack.register()
    code, out, _ = await kiln.run("projects", env={"KILN_TOKEN": stranger.token})
    assert (code, out.strip()) == (0, "No projects yet")


async def test_bad_logins_servers_and_tokens_are_one_clear_line_and_a_non_zero_exit(
    kiln: Kiln, stack: Stack
) -> None:
    user = await stack.register()
    code, _, err = await kiln.run(
        "login", "--server", stack.base_url, "--email", user.email, "--password-stdin",
        stdin="wrong password\n",
    )  # fmt: skip
    assert code == 1 and one_clear_line(err) == "kiln: Invalid email or password"
    code, _, err = await kiln.run(
        "projects", env={"KILN_SERVER": "http://127.0.0.1:9", "KILN_TOKEN": user.token}
    )
    assert code == 1 and "cannot reach Kiln at http://127.0.0.1:9" in one_clear_line(err)
    code, _, err = await kiln.run(
        "projects", env={"KILN_SERVER": stack.base_url, "KILN_TOKEN": "not-a-token"}
    )
    assert code == 1 and "Authorization token is invalid" in one_clear_line(err)
    await kiln.login(user)
    owner = await stack.register()
    theirs = await project(stack, owner, "true")
    code, _, err = await kiln.run("build", str(theirs["build"]["id"]))
    assert code == 1 and one_clear_line(err) == "kiln: You do not have access to this build"
    code, _, err = await kiln.run("build", "2147483000")
    assert code == 1 and one_clear_line(err) == "kiln: Build not found"
    code, _, err = await kiln.run("build", "abc")
    assert code == 2 and "Traceback" not in err


async def test_projects_builds_and_build_print_tables_or_the_apis_json(
    kiln: Kiln, stack: Stack
) -> None:
    user = await stack.register()
    await kiln.login(user)
    created = await project(stack, user, "exit 3")
    build_id = created["build"]["id"]
    await stack.wait_final(user, build_id)

    code, out, _ = await kiln.run("projects")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split() == ["ID", "NAME", "BRANCH", "LAST", "BUILD", "REPOSITORY"]
    assert f"#{build_id} failed" in row and created["project"]["repoUrl"] in row

    code, out, _ = await kiln.run("builds", str(created["project"]["id"]), "--status", "failed")
    assert code == 0 and f"#{build_id}" in out and "Teach the CLI" in out
    code, out, _ = await kiln.run("builds", str(created["project"]["id"]), "--status", "passed")
    assert (code, out.strip()) == (0, "No builds")

    code, out, _ = await kiln.run("build", str(build_id))
    assert code == 0 and "Exit code: 3" in out and "Status:    failed" in out
    code, out, _ = await kiln.run("build", str(build_id), "--json")
    assert json.loads(out)["build"]["exitCode"] == 3


async def test_logs_follow_streams_the_output_as_it_is_printed_and_exits_with_the_result(
    kiln: Kiln, stack: Stack
) -> None:
    user = await stack.register()
    await kiln.login(user)
    command = "echo first; sleep 3; echo second; exit 7"
    created = await project(stack, user, command)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "logs", str(created["build"]["id"]), "--follow",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=kiln.env,
    )  # fmt: skip
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 60)
    seen_first = time.monotonic()
    assert first == b"first\n"
    second = await asyncio.wait_for(process.stdout.readline(), 60)
    assert second == b"second\n"
    # The first line was on the screen while the build still ran.
    assert time.monotonic() - seen_first > 1.5
    assert await asyncio.wait_for(process.wait(), 60) == 7
    rest = await process.stdout.read()
    assert b"first" not in rest and b"second" not in rest  # no repeat


async def test_rebuild_follow_exits_0_when_passed_and_1_when_canceled(
    kiln: Kiln, stack: Stack
) -> None:
    user = await stack.register()
    await kiln.login(user)
    created = await project(stack, user, "echo ok")
    await stack.wait_final(user, created["build"]["id"])
    code, out, err = await kiln.run("rebuild", str(created["build"]["id"]), "--follow")
    assert (code, out) == (0, "ok\n"), err
    assert "queued: rebuild of" in err

    slow = await project(stack, user, "sleep 120")
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "logs", str(slow["build"]["id"]), "--follow",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=kiln.env,
    )  # fmt: skip
    code, out, _ = await kiln.run("cancel", str(slow["build"]["id"]))
    assert code == 0 and "Cancel requested" in out
    assert await asyncio.wait_for(follower.wait(), 60) == 1


async def test_ctrl_c_stops_following_and_leaves_the_build_alone(kiln: Kiln, stack: Stack) -> None:
    user = await stack.register()
    await kiln.login(user)
    created = await project(stack, user, "echo started; sleep 4; echo finished")
    build_id = created["build"]["id"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "logs", str(build_id), "--follow",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=kiln.env,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    assert await asyncio.wait_for(process.stdout.readline(), 60) == b"started\n"
    process.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(process.wait(), 30)
    err = (await process.stderr.read()).decode()
    assert code == 130, err
    assert "Traceback" not in err and "the build goes on" in err
    assert (await stack.wait_final(user, build_id))["status"] == "passed"


async def test_follow_shows_a_spinner_with_the_queue_position_while_queued(
    kiln: Kiln, stack: Stack
) -> None:
    user = await stack.register()
    await kiln.login(user)
    created = await project(stack, user, "sleep 5", maxConcurrentBuilds=1)
    response = await stack.http.post(
        f"/api/build/rebuild/{created['build']['id']}", headers=user.headers
    )
    waiting = response.json()["build"]
    terminal, tty = pty.openpty()  # stderr is a terminal: the spinner shows
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "logs", str(waiting["id"]), "--follow",
        stdout=asyncio.subprocess.PIPE, stderr=tty, env=kiln.env,
    )  # fmt: skip
    os.close(tty)
    screen = b""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 30
    while b"1 in queue" not in screen and time.monotonic() < deadline:
        screen += await loop.run_in_executor(None, os.read, terminal, 1024)
    assert b"queued (1 in queue)" in screen
    assert await asyncio.wait_for(process.wait(), 60) == 0
    os.close(terminal)
