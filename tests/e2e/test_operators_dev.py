"""`kiln dev` supervises its children: a child killed with `kill -9` (the worker, the API, the
Temporal dev server) is started again with a line saying so, builds in flight finish with their
own result, and only SIGTERM (or Ctrl-C) stops the stack, every child with it. Run by a user who
is not root, `kiln dev` still builds: with no network, and saying why.

Everything is a real process: `kiln dev` in its own directory and environment, its children
found by their command lines among its children in /proc, killed with real signals."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from cli.dev import Child
from testbed.git_server import GitRepo, GitServer
from testbed.stack import eventually, free_port
from tests.support.helpers import bearer, repo_name, wait_for_build

DEV_TEMPORAL_PORT = 7233
WORKER = ["-m", "cli", "worker"]
API = ["-m", "cli", "api"]
TEMPORAL = ["server", "start-dev"]
NOBODY = 65534


# --- processes, from /proc ---------------------------------------------------------------------


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after the command name: state, ppid


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


def runs(argv: list[str], words: list[str]) -> bool:
    """`argv` holds `words` one after the other."""
    return any(argv[i : i + len(words)] == words for i in range(len(argv)))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Dev:
    """A running `kiln dev`: its process, its output, and every child pid seen."""

    process: subprocess.Popen[bytes]
    output_path: Path
    base_url: str
    seen: set[int]

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def child(self, words: list[str]) -> int | None:
        """The live child whose command line holds `words`."""
        for pid in children_of(self.process.pid):
            if runs(command_line(pid), words) and alive(pid):
                self.seen.add(pid)
                return pid
        return None

    async def wait_child(self, words: list[str], *, other_than: int | None = None) -> int:
        async def found() -> int | None:
            pid = self.child(words)
            return pid if pid is not None and pid != other_than else None

        return await eventually(found, timeout=90, interval=0.1)

    async def wait_line(self, line: str, *, timeout: float = 60) -> None:
        async def printed() -> bool | None:
            return True if line in self.output() else None

        try:
            await eventually(printed, timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"kiln dev never printed {line!r}:\n{self.output()}") from None

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    return env | extra


@contextmanager
def kiln_dev(
    cwd: Path, port: int, env: dict[str, str], prefix: list[str] | None = None
) -> Iterator[Dev]:
    """`kiln dev` in `cwd` (as another user with `prefix`), its output kept in a file."""
    output_path = cwd / "kiln-dev.out"
    with open(output_path, "wb") as output:
        process = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "cli", "dev"],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    dev = Dev(process, output_path, f"http://127.0.0.1:{port}", set())
    try:
        yield dev
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        for pid in dev.seen:  # never leave a child behind, whatever failed
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def dev_env(port: int, **extra: str) -> dict[str, str]:
    return _env(
        KILN_PORT=str(port),
        KILN_ALLOW_LOCAL_REPOS="true",
        KILN_IMAGE_PULL="never",
        KILN_TASK_QUEUE=f"kiln-dev-{uuid.uuid4().hex[:8]}",
        KILN_WORKER_METRICS_PORT=str(free_port()),
        **extra,
    )


async def answers(base_url: str) -> bool | None:
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
            return (await http.get("/docs")).status_code == 200 or None
    except httpx.TransportError:
        return None


async def sign_up(http: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": "dev@example.com", "password": "long enough pw", "name": "Dev"}
    response = await http.post("/api/auth/register", json=body)
    assert response.status_code == 201, response.text
    return bearer(response.json()["token"])


async def create(
    http: httpx.AsyncClient, headers: dict[str, str], repo: GitRepo, image: str, command: str
) -> int:
    project = {"name": "app", "repoUrl": repo.url, "image": image, "buildCommand": command}
    created = await http.post("/api/project/projects", json=project, headers=headers)
    assert created.status_code == 201, created.text
    build_id: int = created.json()["build"]["id"]
    return build_id


async def logs(http: httpx.AsyncClient, headers: dict[str, str], build_id: int) -> str:
    response = await http.get(f"/api/build/{build_id}/logs", headers=headers)
    assert response.status_code == 200, response.text
    text: str = response.json()["logs"]
    return text


async def wait_logs(
    http: httpx.AsyncClient, headers: dict[str, str], build_id: int, text: str
) -> None:
    async def printed() -> bool | None:
        return True if text in await logs(http, headers, build_id) else None

    await eventually(printed, timeout=90, interval=0.1)


class Watch:
    """Polls the API every 100 ms until stopped, counting the polls it did not answer."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str], build_id: int) -> None:
        self.http, self.headers, self.build_id = http, headers, build_id
        self.answered = 0
        self.failures: list[str] = []

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task

    async def _poll(self) -> None:
        while True:
            try:
                response = await self.http.get(f"/api/build/{self.build_id}", headers=self.headers)
            except httpx.TransportError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                if response.status_code == 200:
                    self.answered += 1
                else:
                    self.failures.append(f"{response.status_code}: {response.text}")
            await asyncio.sleep(0.1)


# --- the tests ---------------------------------------------------------------------------------


async def test_kiln_dev_restarts_killed_children_and_builds_in_flight_end_with_their_own_exit_codes(
    tmp_path: Path, git_server: GitServer, busybox: str
) -> None:
    repo = git_server.create_repo(repo_name("dev-supervised"))
    repo.commit({"README": "hello\n"}, "init")
    port = free_port()
    env = dev_env(port, KILN_BUILD_NETWORK="none")

    with kiln_dev(tmp_path, port, env) as dev:
        await eventually(lambda: answers(dev.base_url), timeout=90, interval=0.2)
        first_worker = await dev.wait_child(WORKER)
        first_api = await dev.wait_child(API)
        temporal = await dev.wait_child(TEMPORAL)
        async with httpx.AsyncClient(base_url=dev.base_url, timeout=30) as http:
            headers = await sign_up(http)
            passing = await create(
                http, headers, repo, busybox, "echo started; sleep 10; echo finished"
            )
            failing = await create(
                http, headers, repo, busybox, "echo started; sleep 10; echo failing; exit 3"
            )
            for build_id in (passing, failing):  # both containers are running
                await wait_logs(http, headers, build_id, "started")

            # kill -9 of the worker, mid-build: the API keeps answering all along.
            async with Watch(http, headers, passing) as watch:
                dev.kill(first_worker)
                await dev.wait_line("kiln dev: the worker exited (signal 9); restarting in 1s")
                await dev.wait_child(WORKER, other_than=first_worker)
                passed = await wait_for_build(http, headers, passing, timeout=120)
                failed = await wait_for_build(http, headers, failing, timeout=120)
            assert watch.failures == [], watch.failures
            assert watch.answered > 10
            assert (passed["status"], passed["exitCode"]) == ("passed", 0), passed
            assert (failed["status"], failed["exitCode"]) == ("failed", 3), failed
            # Each command ran once, in one container, followed to its end.
            passed_logs = await logs(http, headers, passing)
            assert passed_logs.count("started") == 1 and "finished" in passed_logs, passed_logs
            failed_logs = await logs(http, headers, failing)
            assert failed_logs.count("started") == 1 and "failing" in failed_logs, failed_logs

            # kill -9 of the API: it comes back, with the same secret and database.
            dev.kill(first_api)
            await dev.wait_line("kiln dev: the API exited (signal 9); restarting in 1s")
            await dev.wait_child(API, other_than=first_api)
            await eventually(lambda: answers(dev.base_url), timeout=90, interval=0.2)
            again = await http.get(f"/api/build/{passing}", headers=headers)
            assert again.status_code == 200 and again.json()["build"]["status"] == "passed"

            # kill -9 of the Temporal dev server: it comes back with its history, and builds.
            dev.kill(temporal)
            await dev.wait_line(
                "kiln dev: the Temporal dev server exited (signal 9); restarting in 1s"
            )
            await dev.wait_child(TEMPORAL, other_than=temporal)
            rebuilt = await http.post(f"/api/build/rebuild/{failing}", headers=headers)
            assert rebuilt.status_code == 201, rebuilt.text
            build = await wait_for_build(http, headers, rebuilt.json()["build"]["id"], timeout=120)
            assert (build["status"], build["exitCode"]) == ("failed", 3), build

        # Nothing but a signal stops it: still up, and then SIGTERM stops every child.
        assert dev.process.poll() is None
        living = set(children_of(dev.process.pid))
        assert len(living) == 3, [command_line(pid) for pid in living]
        dev.seen |= living
        dev.process.send_signal(signal.SIGTERM)
        assert dev.process.wait(timeout=60) == 0, dev.output()
        assert [pid for pid in dev.seen if alive(pid)] == []
        assert len(dev.seen) == 6  # three first children, three restarted ones
        assert await answers(dev.base_url) is None


async def test_kiln_dev_run_by_a_user_who_is_not_root_builds_without_a_network_and_says_why(
    git_server: GitServer, busybox: str
) -> None:
    repo = git_server.create_repo(repo_name("dev-nonroot"))
    repo.commit({"README": "hello\n"}, "init")
    port = free_port()
    # No KILN_BUILD_NETWORK: the worker would want Kiln's protected network, whose firewall
    # rules a user who is not root cannot install.
    home = Path(tempfile.mkdtemp(prefix="kiln-dev-nonroot-"))
    os.chown(home, NOBODY, NOBODY)
    env = dev_env(port) | {"HOME": str(home)}
    docker_group = os.stat("/var/run/docker.sock").st_gid
    # uid/gid nobody, in Docker's group. The interpreter lives under /root here (0700): the
    # one capability kept lets the process reach it, and nothing else (no CAP_NET_ADMIN).
    prefix = [
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={docker_group}",
        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
    ]  # fmt: skip
    try:
        with kiln_dev(home, port, env, prefix) as dev:
            await eventually(lambda: answers(dev.base_url), timeout=90, interval=0.2)
            worker = await dev.wait_child(WORKER)
            status = Path(f"/proc/{worker}/status").read_text()
            assert f"Uid:\t{NOBODY}\t{NOBODY}" in status, status
            assert "CapEff:\t0000000000000004" in status, status
            await dev.wait_line(
                "not running as root, so the worker cannot install the firewall rules of "
                "Kiln's protected build network: builds get no network (KILN_BUILD_NETWORK=none)"
            )
            await dev.wait_line(f"builds run as your user (KILN_BUILD_USER={NOBODY}:{NOBODY})")
            async with httpx.AsyncClient(base_url=dev.base_url, timeout=30) as http:
                headers = await sign_up(http)
                build_id = await create(http, headers, repo, busybox, "ls /sys/class/net; id -u")
                build = await wait_for_build(http, headers, build_id, timeout=120)
                output = await logs(http, headers, build_id)
                assert (build["status"], build["exitCode"]) == ("passed", 0), (build, output)
            # No network but loopback, and run as this user.
            assert output.split() == ["lo", str(NOBODY)], output
            assert "the worker exited" not in dev.output(), dev.output()
            assert dev.child(WORKER) == worker  # the worker started once, and stayed up
            dev.process.send_signal(signal.SIGTERM)
            assert dev.process.wait(timeout=60) == 0, dev.output()
            assert [pid for pid in children_of(dev.process.pid) if alive(pid)] == []
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_crash_loop_backs_off_to_30s_and_a_child_that_ran_60s_starts_again_after_1s() -> None:
    """The back-off on a real child that exits at once: 1 s, 2 s, 4 s ... 30 s, said once that it
    keeps failing, and back to 1 s after a child that ran a minute (on a clock the test moves)."""
    printed: list[str] = []
    clock = [1000.0]
    probe = [sys.executable, "-c", "raise SystemExit(7)"]
    child = Child(
        "the probe", lambda: subprocess.Popen(probe), clock=lambda: clock[0], say=printed.append
    )
    child.launch()
    delays: list[float] = []
    for _ in range(7):
        assert child.process is not None
        child.process.wait(timeout=30)
        clock[0] += 0.5  # it died young
        child.check()
        assert child.process is None  # not started again before it is due
        delays.append(child.due_at - clock[0])
        clock[0] = child.due_at
        child.check()  # due: started again
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    restarts = [line for line in printed if "restarting" in line]
    assert restarts[0] == "the probe exited (exit status 7); restarting in 1s"
    assert restarts[5] == "the probe exited (exit status 7); restarting in 30s"
    warnings = [line for line in printed if "keeps exiting within 60s of its start" in line]
    assert len(warnings) == 1, printed  # said once, when the back-off reached its cap
    assert child.process is not None
    child.process.wait(timeout=30)
    clock[0] += 61  # this one ran a minute
    child.check()
    assert child.due_at - clock[0] == 1
