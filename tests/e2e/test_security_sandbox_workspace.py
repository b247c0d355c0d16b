"""A build's workspace is a bind mount of the worker's disk: nothing a build writes there may
hand privileges to the host, nobody else on the host may reach into it, and it may not grow
past `KILN_BUILD_DISK_MB`.

The attacks run as real builds. What the host holds is looked at between the container's exit
and the workspace's removal (the cleanup step is wrapped to take a snapshot first): that is the
window in which a local user could run a setuid file a build left behind.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from kiln.execution import BuildExecutor, disk_limit_reason
from kiln.migrate import upgrade
from testbed.git_server import GitServer
from testbed.stack import Stack, eventually, running_stack, stack_settings
from tests.support.helpers import assert_cleaned_up, last_line, new_repo

DISK_MB = 20
DEFAULT_USER = (1000, 1000)
# The disk-limit builds write until stopped; without the limit only this timeout ends them.
PROJECT_TIMEOUT = 60


@dataclass(frozen=True)
class Snapshot:
    """The workspace as the host saw it once the build's container had exited."""

    mode: int
    owner: tuple[int, int]
    root_mode: int
    names: set[str]
    setid: list[str]  # files or directories with a setuid or setgid bit
    root_exec: list[str]  # root-owned entries with an exec bit
    special: list[str]  # devices, FIFOs, sockets
    owners: set[tuple[int, int]]


def snapshot(workspace: Path) -> Snapshot:
    top = workspace.lstat()
    names, setid, root_exec, special, owners = set(), [], [], [], set()
    for directory, dirs, files in os.walk(workspace, followlinks=False):
        for name in dirs + files:
            path = Path(directory, name)
            info = path.lstat()
            rel = str(path.relative_to(workspace))
            names.add(rel)
            owners.add((info.st_uid, info.st_gid))
            if stat.S_ISLNK(info.st_mode):
                continue
            if info.st_mode & (stat.S_ISUID | stat.S_ISGID):
                setid.append(f"{rel} {stat.filemode(info.st_mode)}")
            if info.st_uid == 0 and info.st_mode & 0o111 and not stat.S_ISDIR(info.st_mode):
                root_exec.append(rel)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                special.append(f"{rel} {stat.filemode(info.st_mode)}")
    return Snapshot(
        mode=stat.S_IMODE(top.st_mode),
        owner=(top.st_uid, top.st_gid),
        root_mode=stat.S_IMODE(workspace.parent.stat().st_mode),
        names=names,
        setid=setid,
        root_exec=root_exec,
        special=special,
        owners=owners,
    )


@pytest.fixture
def before_cleanup(monkeypatch: pytest.MonkeyPatch) -> dict[int, Snapshot]:
    """Snapshots of each build's workspace taken as its cleanup starts (the container exited,
    the result recorded, nothing removed yet), by build id."""
    seen: dict[int, Snapshot] = {}
    cleanup = BuildExecutor.cleanup

    def looking_first(self: BuildExecutor, build_id: int, attempt: object) -> None:
        workspace = self.workspace(build_id)
        if build_id not in seen and workspace.exists():
            seen[build_id] = snapshot(workspace)
        cleanup(self, build_id, attempt)  # type: ignore[arg-type]

    monkeypatch.setattr(BuildExecutor, "cleanup", looking_first)
    return seen


async def looked_at(seen: dict[int, Snapshot], build_id: int) -> Snapshot:
    """The build's snapshot, once its cleanup has started (it trails the status write)."""

    async def taken() -> Snapshot | None:
        return seen.get(build_id)

    return await eventually(taken, timeout=30)


def sqlite_url(root: Path) -> str:
    url = f"sqlite:///{root / 'kiln.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="module")
async def sandbox(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
) -> AsyncIterator[Stack]:
    """A stack with the default build user and a small disk limit (SQLite: the database plays
    no part here)."""
    root = tmp_path_factory.mktemp("sandbox-ws")
    settings = stack_settings(sqlite_url(root), temporal_address, root / "workspaces")
    settings = settings.model_copy(update={"build_disk_mb": DISK_MB})
    assert settings.build_user == "1000:1000"
    async with running_stack(settings, git_server, busybox) as stack:
        yield stack


async def run_build(stack: Stack, command: str, timeout: float = 90) -> tuple[dict[str, Any], str]:
    user = await stack.register()
    repo = new_repo(stack.git, "sandbox-ws", {"README": "source\n", "src/app.js": "1\n"})
    created = await stack.create_project(user, repo.url, command, timeoutSeconds=PROJECT_TIMEOUT)
    build_id = created["build"]["id"]
    final = await stack.wait_final(user, build_id, timeout=timeout)
    return final, await stack.logs(user, build_id)


# --- setuid files, device nodes, FIFOs -----------------------------------------------------------

SETUID_ATTACK = r"""
echo "uid=$(id -u) gid=$(id -g)"
cp /bin/sh /workspace/x && chmod 4755 /workspace/x && echo "planted setuid x"
cp /bin/sh /workspace/y && chmod 2755 /workspace/y && echo "planted setgid y"
mkdir -p /workspace/deep/er && cp /bin/sh /workspace/deep/er/z && chmod 6755 /workspace/deep/er/z
mkdir /workspace/shared && chmod 2777 /workspace/shared
mkfifo /workspace/pipe && echo "planted fifo"
mknod /workspace/disk b 8 0 2>/dev/null && echo "MKNOD ALLOWED"
ls -ln /workspace/x /workspace/y
"""


async def test_a_setuid_file_made_by_a_build_never_reaches_the_host(
    sandbox: Stack, before_cleanup: dict[int, Snapshot], docker_client: docker.DockerClient
) -> None:
    final, logs = await run_build(sandbox, SETUID_ATTACK)

    assert final["status"] == "passed", logs
    # Inside its container the build did what it wanted, as its own unprivileged user...
    assert "uid=1000 gid=1000" in logs, logs
    assert "planted setuid x" in logs and "planted setgid y" in logs, logs
    assert "planted fifo" in logs and "MKNOD ALLOWED" not in logs, logs
    # ...and the host got none of it.
    seen = await looked_at(before_cleanup, final["id"])
    assert {"x", "y", "deep/er/z", "README", "src/app.js"} <= seen.names
    assert seen.setid == [], seen.setid
    assert seen.root_exec == [], seen.root_exec
    assert seen.special == [], seen.special
    assert "pipe" not in seen.names
    # Every entry, the checkout included, is the build user's; nobody else gets in.
    assert seen.owners == {DEFAULT_USER}, seen.owners
    assert seen.owner == DEFAULT_USER
    assert seen.mode == 0o700
    assert seen.root_mode == 0o700
    await assert_cleaned_up(sandbox, docker_client, final["id"])


# A setuid file 300 directories down (deeper than any walk's fixed depth), and links to a
# setuid file of the host: stripping must reach the first and never follow the others.
HIDDEN_ATTACK = r"""
i=0
while [ $i -lt 300 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done
cp /bin/sh deep-x && chmod 4755 deep-x && echo "planted deep setuid"
cd /workspace
ln -s {outside} /workspace/link-to-host-file
ln -s {outside_dir} /workspace/link-to-host-dir
deep=/workspace/$(printf 'x/%.0s' $(seq 1 70))
mkdir -p "$deep" && ln -s {outside_dir} "$deep/l"
echo hidden-done
"""


async def test_links_and_deep_trees_neither_hide_a_setuid_file_nor_reach_the_host(
    sandbox: Stack,
    before_cleanup: dict[int, Snapshot],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    outside_dir = tmp_path / "host"
    outside_dir.mkdir()
    outside = outside_dir / "tool"
    outside.write_bytes(Path("/bin/busybox").read_bytes())
    outside.chmod(0o4755)  # a setuid program of the host that the worker must not touch

    command = HIDDEN_ATTACK.format(outside=outside, outside_dir=outside_dir)
    final, logs = await run_build(sandbox, command)

    assert final["status"] == "passed", logs
    assert "planted deep setuid" in logs and "hidden-done" in logs, logs
    seen = await looked_at(before_cleanup, final["id"])
    assert any(name.endswith("/deep-x") for name in seen.names)
    assert seen.setid == [], seen.setid
    # The host's own file is as it was: no walk followed a link to it.
    assert stat.S_IMODE(outside.stat().st_mode) == 0o4755
    assert outside.stat().st_uid == os.geteuid()
    assert sorted(p.name for p in outside_dir.iterdir()) == ["tool"]
    await assert_cleaned_up(sandbox, docker_client, final["id"])


async def test_the_workspaces_are_private_to_the_worker(sandbox: Stack) -> None:
    root = sandbox.settings.workspace_dir
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert root.stat().st_uid == os.geteuid()


# --- an ordinary build still works ---------------------------------------------------------------

NORMAL_BUILD = r"""
set -e
echo "uid=$(id -u) gid=$(id -g) home=$HOME"
echo built > /workspace/out.txt
echo "changed" >> README
mkdir -p node_modules/.bin node_modules/left-pad
echo 'module.exports = 1' > node_modules/left-pad/index.js
echo '#!/bin/sh' > node_modules/.bin/tool && chmod 755 node_modules/.bin/tool
mkdir -p "$HOME/.npm/_cacache" && echo cache > "$HOME/.npm/_cacache/entry"
echo scratch > /tmp/scratch && cat /tmp/scratch
dd if=/dev/zero of=/workspace/sparse bs=1 count=1 seek=100M 2>/dev/null
cat out.txt
echo normal-build-done
"""


async def test_a_normal_build_writes_its_workspace_and_tmp(
    sandbox: Stack, before_cleanup: dict[int, Snapshot]
) -> None:
    final, logs = await run_build(sandbox, NORMAL_BUILD)

    assert final["status"] == "passed", logs
    assert final["exitCode"] == 0
    assert "uid=1000 gid=1000 home=/tmp" in logs, logs
    assert "scratch" in logs and "built" in logs and "normal-build-done" in logs, logs
    seen = await looked_at(before_cleanup, final["id"])
    assert {"out.txt", "node_modules/left-pad/index.js", "node_modules/.bin/tool"} <= seen.names
    # A 100 MB sparse file uses a few KB of disk: the limit counts what is used, not sizes.
    assert "sparse" in seen.names
    assert seen.owners == {DEFAULT_USER}


async def test_kiln_build_user_sets_the_uid_builds_run_as(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
    before_cleanup: dict[int, Snapshot],
) -> None:
    monkeypatch.setenv("KILN_BUILD_USER", "4242:4343")
    settings = stack_settings(sqlite_url(tmp_path), temporal_address, tmp_path / "workspaces")
    assert settings.build_user == "4242:4343"

    async with running_stack(settings, git_server, busybox) as stack:
        final, logs = await run_build(stack, "echo uid=$(id -u) gid=$(id -g); touch mine")

    assert final["status"] == "passed", logs
    assert "uid=4242 gid=4343" in logs, logs
    seen = await looked_at(before_cleanup, final["id"])
    assert seen.owners == {(4242, 4343)}
    assert seen.owner == (4242, 4343)
    assert "mine" in seen.names


# --- the disk limit ------------------------------------------------------------------------------

# Writes a MiB every tenth of a second for ever, and ignores SIGTERM: only the limit's stop
# (SIGTERM, then SIGKILL after a short grace) ends it before the project's timeout.
DISK_HOG = r"""
trap '' TERM
i=0
while :; do
  dd if=/dev/zero of=/workspace/fill-$i bs=1M count=1 2>/dev/null
  i=$((i+1)); echo "$i" > /tmp/written
  [ $((i % 10)) = 0 ] && echo "disk: wrote $i MiB"
  sleep 0.1
done
"""


async def test_a_build_writing_past_the_disk_limit_is_stopped_and_fails_saying_why(
    sandbox: Stack, before_cleanup: dict[int, Snapshot]
) -> None:
    started = time.monotonic()
    final, logs = await run_build(sandbox, DISK_HOG, timeout=PROJECT_TIMEOUT + 30)
    seconds = time.monotonic() - started

    assert final["status"] == "failed", logs
    assert final["exitCode"] is None
    assert last_line(logs) == f"[kiln] {disk_limit_reason(DISK_MB)}", logs
    assert "timed out" not in logs
    # Stopped within a few measures of passing the limit, not at the project's timeout.
    assert seconds < PROJECT_TIMEOUT / 2, seconds
    seen = await looked_at(before_cleanup, final["id"])
    written = {name for name in seen.names if name.startswith("fill-")}
    assert len(written) > DISK_MB, written
    assert len(written) < 20 * DISK_MB, len(written)


async def test_a_build_that_passed_the_disk_limit_between_measures_still_fails(
    sandbox: Stack,
) -> None:
    command = f"dd if=/dev/zero of=/workspace/big bs=1M count={4 * DISK_MB} 2>/dev/null; echo ok"

    final, logs = await run_build(sandbox, command)

    assert final["status"] == "failed", logs
    assert last_line(logs) == f"[kiln] {disk_limit_reason(DISK_MB)}", logs
