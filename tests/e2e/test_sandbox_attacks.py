"""The build container is a sandbox, proven by attacking it: each test's build command *is* the
attack (a fork bomb, memory past the limit, a CPU hog, looking for the Docker socket, writing
outside the workspace, privileged operations, reaching the host over the network).

For every attack the build ends `failed` within a bounded time, its log shows the attack was
stopped (the commands print a marker per attempt and exit non-zero only when every attempt was
stopped), and the system is unharmed: Docker still answers, no container or workspace of the
attack build is left behind, host files are untouched, and the same worker passes a normal
build right after.

test_sandbox.py reads the configured limits from inside a container; these tests hit them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import httpx
import pytest

from kiln.db import make_engine, make_session_factory
from kiln.migrate import upgrade
from kiln.workspaces import workspace_path
from testbed import stack as support  # its `stack_settings` is no test of this module
from testbed.git_server import GitServer
from testbed.stack import Stack, User, eventually, running_api, running_worker
from tests.support.helpers import new_repo

# An attack build must have ended (failed) this long after it was created; it is also the
# project's own timeout, so a regression cannot keep a container running much longer.
ATTACK_SECONDS = 30
# What `sh` says when the pids limit refuses a fork.
CANT_FORK = "can't fork"
# Exit status of a process killed by SIGKILL (the OOM killer).
SIGKILLED = 137


@dataclass(frozen=True)
class Attack:
    user: User
    repo_url: str
    build_id: int
    final: dict[str, Any]
    logs: str
    seconds: float

    def lines(self, prefix: str) -> list[str]:
        """The marker lines the attack printed, without their `prefix: `."""
        return [
            line.removeprefix(f"{prefix}: ")
            for line in self.logs.splitlines()
            if line.startswith(f"{prefix}: ")
        ]


@pytest.fixture(scope="module")
def repo_url(git_server: GitServer) -> str:
    """Any repository will do: the attack is the build command, not the source."""
    return new_repo(git_server, "attacks", {"README": "nothing to see\n"}).url


async def run_attack(stack: Stack, repo_url: str, command: str) -> Attack:
    user = await stack.register()
    started = time.monotonic()
    created = await stack.create_project(
        user, repo_url, command, name="attack", timeoutSeconds=ATTACK_SECONDS
    )
    build_id = created["build"]["id"]
    final = await stack.wait_final(user, build_id, timeout=ATTACK_SECONDS)
    seconds = time.monotonic() - started
    logs = await stack.logs(user, build_id)
    return Attack(user, repo_url, build_id, final, logs, seconds)


def assert_stopped(attack: Attack, exit_code: int = 1) -> None:
    """The attack build failed by its own exit status: not by a timeout, not by trouble."""
    assert attack.final["status"] == "failed", attack.logs
    assert attack.final["exitCode"] == exit_code, attack.logs
    assert attack.seconds < ATTACK_SECONDS
    assert "ESCAPED" not in attack.logs, attack.logs
    assert "[kiln]" not in attack.logs, attack.logs  # no timeout or infrastructure reason


def containers_mounting(client: docker.DockerClient, path: Path) -> list[Any]:
    """The containers (running or not) that have `path`, or a path below it, of the host
    mounted: independent of how Kiln names or labels its containers."""
    found = client.containers.list(all=True, ignore_removed=True)
    return [
        c
        for c in found
        if any(Path(m.get("Source", "")).is_relative_to(path) for m in c.attrs.get("Mounts", []))
    ]


async def assert_unharmed(stack: Stack, client: docker.DockerClient, attack: Attack) -> None:
    """Docker answers, nothing of the attack build is left, and a normal build passes next."""
    assert client.ping()
    workspace = workspace_path(stack.settings.workspace_dir, attack.build_id)

    async def left_nothing() -> bool | None:
        left = containers_mounting(client, workspace) or workspace.exists()
        return None if left else True

    await eventually(left_nothing, timeout=15)

    created = await stack.create_project(
        attack.user, attack.repo_url, "echo follow-up ok", name="next"
    )
    build_id = created["build"]["id"]
    final = await stack.wait_final(attack.user, build_id, timeout=ATTACK_SECONDS)
    logs = await stack.logs(attack.user, build_id)
    assert final["status"] == "passed", logs
    assert "follow-up ok" in logs


# --- the process limit ------------------------------------------------------------------------

FORK_BOMB = r"""
echo "fork-bomb: spawning {target} processes"
( i=0; while [ $i -lt {target} ]; do sleep 30 & i=$((i+1)); echo $i > /tmp/spawned; done )
rc=$?
read spawned < /tmp/spawned || spawned=0
echo "fork-bomb: stopped after $spawned processes (exit $rc)"
[ "$spawned" -lt {target} ] && exit 1
echo FORK-BOMB-ESCAPED
"""


async def test_a_fork_bomb_is_stopped_by_the_process_limit(
    stack: Stack, repo_url: str, docker_client: docker.DockerClient
) -> None:
    limit = stack.settings.build_pids_limit
    target = limit * 4

    attack = await run_attack(stack, repo_url, FORK_BOMB.format(target=target))

    assert_stopped(attack)
    assert CANT_FORK in attack.logs, attack.logs
    [stopped] = [line for line in attack.lines("fork-bomb") if line.startswith("stopped")]
    match = re.fullmatch(r"stopped after (\d+) processes \(exit (\d+)\)", stopped)
    assert match, stopped
    # The two shells count too: the limit, not anything else, is what refused the next fork.
    assert limit - 16 <= int(match[1]) < limit, stopped
    assert match[2] != "0"
    await assert_unharmed(stack, docker_client, attack)


# --- the memory limit ------------------------------------------------------------------------

# `dd` holds one block of `bs` bytes in memory; `iflag=fullblock` makes it fill all of it.
MEMORY_HOG = r"""
for mb in {below} {above}; do
  echo "memory: allocating $mb MiB"
  dd if=/dev/zero of=/dev/null bs=${{mb}}M count=1 iflag=fullblock 2>/dev/null || {{
    rc=$?; echo "memory: $mb MiB refused (exit $rc)"; exit $rc; }}
  echo "memory: $mb MiB allocated"
done
echo MEMORY-ESCAPED
"""


async def test_memory_past_the_limit_is_killed_and_fails_the_build(
    stack: Stack, repo_url: str, docker_client: docker.DockerClient
) -> None:
    limit = stack.settings.build_memory_mb
    below, above = limit * 3 // 4, limit + 256  # swap is part of the limit: no way around it

    attack = await run_attack(stack, repo_url, MEMORY_HOG.format(below=below, above=above))

    assert_stopped(attack, exit_code=SIGKILLED)
    assert attack.lines("memory") == [
        f"allocating {below} MiB",
        f"{below} MiB allocated",  # under the limit: allowed
        f"allocating {above} MiB",
        f"{above} MiB refused (exit {SIGKILLED})",  # the OOM killer, at the limit
    ], attack.logs
    await assert_unharmed(stack, docker_client, attack)


# --- the CPU limit ---------------------------------------------------------------------------

# Four busy loops for two seconds; the container's own CPU time over wall time, in millicpus.
# cgroup v1 (cpuacct.usage, ns) first, then v2 (cpu.stat usage_usec).
CPU_HOG = r"""
used() {{
  if read ns < /sys/fs/cgroup/cpuacct/cpuacct.usage; then echo $((ns / 1000000)); return; fi
  while read k v; do [ "$k" = usage_usec ] && echo $((v / 1000)); done < /sys/fs/cgroup/cpu.stat
}}
now() {{ read up rest < /proc/uptime; echo $(( ${{up%.*}} * 1000 + 1${{up#*.}} * 10 - 1000 )); }}
for n in 1 2 3 4; do ( while :; do :; done ) & done
u0=$(used); t0=$(now)
sleep 2
u1=$(used); t1=$(now)
m=$(( (u1 - u0) * 1000 / (t1 - t0) ))
echo "cpu-hog: used $m millicpus over $((t1 - t0)) ms"
[ $m -le {allowed} ] && exit 1
echo CPU-HOG-ESCAPED
"""


async def test_a_cpu_hog_is_held_to_the_cpu_limit(
    stack: Stack, repo_url: str, docker_client: docker.DockerClient
) -> None:
    limit = round(stack.settings.build_cpus * 1000)
    # CFS enforces the quota per 100 ms period: over 2 s one period of overshoot is 5 %; the
    # clock is read in 10 ms steps.
    allowed = limit * 115 // 100

    attack = await run_attack(stack, repo_url, CPU_HOG.format(allowed=allowed))

    assert_stopped(attack)
    [used] = attack.lines("cpu-hog")
    match = re.fullmatch(r"used (\d+) millicpus over (\d+) ms", used)
    assert match, attack.logs
    # A loaded machine may give the hog less than the limit; it may never get more.
    assert 0 < int(match[1]) <= allowed, used
    assert int(match[2]) >= 1900, used
    await assert_unharmed(stack, docker_client, attack)


# --- the Docker socket -----------------------------------------------------------------------

DOCKER_SOCKET = r"""
reached=0
for path in /var/run/docker.sock /run/docker.sock; do
  if [ -e "$path" ]; then echo "docker: REACHED $path"; reached=1; else echo "docker: no $path"; fi
done
test -S /var/run/docker.sock && echo "docker: REACHED a socket" && reached=1
sockets=$(find / -path /proc -prune -o -path /sys -prune -o -type s -print 2>/dev/null)
echo "docker: unix sockets [$(echo $sockets)]"
[ -n "$sockets" ] && reached=1
[ $reached = 0 ] && exit 1
echo DOCKER-ESCAPED
"""


async def test_a_build_cannot_reach_the_docker_socket(
    stack: Stack, repo_url: str, docker_client: docker.DockerClient
) -> None:
    attack = await run_attack(stack, repo_url, DOCKER_SOCKET)

    assert_stopped(attack)
    assert attack.lines("docker") == [
        "no /var/run/docker.sock",
        "no /run/docker.sock",
        "unix sockets []",  # no socket of any kind anywhere in its filesystem
    ], attack.logs
    assert "REACHED" not in attack.logs
    await assert_unharmed(stack, docker_client, attack)


# --- writing outside the workspace ------------------------------------------------------------

WRITE_OUTSIDE = r"""
escaped=0
attempt() {{
  if echo {name} > "$1"; then echo "write: WROTE $1"; escaped=1; else echo "write: refused $1"; fi
}}
attempt /etc/{name}
attempt /bin/{name}
attempt /{name}
attempt /workspace/../{name}
attempt /workspace/../../{name}
attempt /etc/hosts
ln -s / /workspace/root-link && attempt /workspace/root-link/{name}
ln -s {canary} /workspace/canary-link && attempt /workspace/canary-link/{name}
while read src point fstype opts rest; do
  case $fstype in
    proc|sysfs|cgroup|cgroup2|tmpfs|devpts|mqueue|overlay) ;;
    *) echo "mount: $point ${{opts%%,*}}" ;;
  esac
done < /proc/mounts
[ $escaped = 0 ] && exit 1
echo WRITE-ESCAPED
"""


def paths_named(root: Path, token: str, *, recursive: bool) -> list[Path]:
    if not recursive:
        return [p for p in root.iterdir() if token in p.name]
    # os.walk skips what vanishes meanwhile: other builds' workspaces are being removed.
    found = []
    for folder, dirs, files in os.walk(root):
        found += [Path(folder) / name for name in [*dirs, *files] if token in name]
    return found


async def test_a_build_cannot_write_outside_its_workspace(
    stack: Stack, repo_url: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex[:10]
    name = f"pwned-outside-{token}"
    # A directory of the host the build knows the path of: a symlink to it must not lead there,
    # and the workspace's clean-up must not follow the symlink either.
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("keep me\n")
    workspaces = stack.settings.workspace_dir.resolve()

    attack = await run_attack(stack, repo_url, WRITE_OUTSIDE.format(name=name, canary=canary))

    assert_stopped(attack)
    refused = [
        f"/etc/{name}",
        f"/bin/{name}",
        f"/{name}",
        f"/workspace/../{name}",
        f"/workspace/../../{name}",
        "/etc/hosts",
        f"/workspace/root-link/{name}",
        f"/workspace/canary-link/{name}",
    ]
    assert attack.lines("write") == [f"refused {path}" for path in refused], attack.logs
    assert "Read-only file system" in attack.logs
    # The only host directory mounted writable is the build's own workspace.
    mounts = dict(line.split() for line in attack.lines("mount"))
    assert {point for point, mode in mounts.items() if mode == "rw"} == {"/workspace"}, mounts

    await assert_unharmed(stack, docker_client, attack)
    assert paths_named(workspaces, token, recursive=True) == []
    assert paths_named(workspaces.parent, token, recursive=False) == []
    assert sorted(p.name for p in canary.iterdir()) == ["keep"]
    assert (canary / "keep").read_text() == "keep me\n"


# --- privileges --------------------------------------------------------------------------------

# Each needs a capability the build does not have (or a namespace it may not make).
PRIVILEGED = {
    "mknod": "mknod /tmp/sda b 8 0",  # CAP_MKNOD: a block device of the host's first disk
    "mount": "mount -t tmpfs none /tmp/mnt",  # CAP_SYS_ADMIN
    "chown": "chown 1:1 /workspace",  # CAP_CHOWN, on the host's directory
    "raw-socket": "traceroute -n -m 1 -w 1 127.0.0.1",  # CAP_NET_RAW (SOCK_RAW)
    "packet-socket": "arping -c 1 -w 1 -I lo 127.0.0.1",  # CAP_NET_RAW (AF_PACKET)
    "chroot": "chroot / true",  # CAP_SYS_CHROOT
    "hostname": "hostname pwned",  # CAP_SYS_ADMIN in the UTS namespace
    "user-namespace": "unshare -r true",  # a user namespace would hand all capabilities back
}
PRIVILEGE_ATTACK = (
    "allowed=0\nmkdir -p /tmp/mnt\n"
    + "".join(
        f'if {command}; then echo "privilege: {op} ALLOWED"; allowed=1; '
        f'else echo "privilege: {op} refused"; fi\n'
        for op, command in PRIVILEGED.items()
    )
    + "[ $allowed = 0 ] && exit 1\necho PRIVILEGE-ESCAPED\n"
)


async def test_privileged_operations_are_refused(
    stack: Stack, repo_url: str, docker_client: docker.DockerClient
) -> None:
    workspaces = stack.settings.workspace_dir.resolve()
    before = workspaces.stat()

    attack = await run_attack(stack, repo_url, PRIVILEGE_ATTACK)

    assert_stopped(attack)
    verdicts = dict(line.split(" ", 1) for line in attack.lines("privilege"))
    assert verdicts == {op: "refused" for op in PRIVILEGED}, attack.logs
    assert "Operation not permitted" in attack.logs
    await assert_unharmed(stack, docker_client, attack)
    after = workspaces.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )


# --- the network -----------------------------------------------------------------------------

NETWORK = r"""
reached=0
for target in {targets}; do
  if echo kiln-sandbox-probe | nc -w 2 ${{target%:*}} ${{target#*:}}; then
    echo "network: REACHED $target"; reached=1
  else
    echo "network: no connection to $target"
  fi
done
[ $reached = 0 ] && exit 1
echo NETWORK-ESCAPED
"""


@pytest.fixture
async def host_listener(docker_client: docker.DockerClient) -> AsyncIterator[tuple[str, list[str]]]:
    """A TCP server on the host's Docker bridge address (reachable from a container on the
    default `bridge` network) that records who connects."""
    bridge = docker_client.networks.get("bridge")
    config = bridge.attrs["IPAM"]["Config"][0]
    # The default bridge often omits its gateway: it is the subnet's first address.
    gateway = str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))
    peers: list[str] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(record, host=gateway, port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{gateway}:{port}", peers
    finally:
        server.close()
        await server.wait_closed()


async def test_a_build_cannot_reach_the_host_over_the_network(
    stack: Stack,
    repo_url: str,
    docker_client: docker.DockerClient,
    host_listener: tuple[str, list[str]],
) -> None:
    assert stack.settings.build_network == "none"
    bridge_target, peers = host_listener
    # The API listens on the host's loopback: under `--network host` it would answer.
    api = urlsplit(stack.base_url)
    targets = [bridge_target, f"127.0.0.1:{api.port}"]

    attack = await run_attack(stack, repo_url, NETWORK.format(targets=" ".join(targets)))

    assert_stopped(attack)
    assert attack.lines("network") == [f"no connection to {t}" for t in targets], attack.logs
    gateway = bridge_target.split(":")[0]
    assert f"({gateway}): Network is unreachable" in attack.logs, attack.logs
    assert peers == []
    await assert_unharmed(stack, docker_client, attack)


# --- the workspace's .git after a retried run ------------------------------------------------

# The build plants a hook in the workspace's .git (which the host's git uses when the run is
# retried on this host) and makes HEAD point elsewhere, so that the retry checks out again.
GIT_HOOK_ATTACK = r"""
printf '#!/bin/sh\nhostname > ../{name}\n' > .git/hooks/post-checkout
chmod +x .git/hooks/post-checkout
echo 'ref: refs/heads/elsewhere' > .git/HEAD
echo "git-hook: planted"
sleep 8
exit 1
"""


@pytest.fixture
def own_db(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    upgrade(url)
    yield url


async def test_a_hook_planted_by_the_build_never_runs_on_the_host(
    own_db: str,
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
    docker_client: docker.DockerClient,
    repo_url: str,
    tmp_path: Path,
) -> None:
    """The worker stops mid-build (a deploy, a crash) and the run is retried on the same host,
    in the same workspace, which the build could write: nothing the build left there may run
    on the host."""
    workspaces = tmp_path / "workspaces"
    settings = support.stack_settings(own_db, temporal_address, workspaces)
    name = f"pwned-host-{uuid.uuid4().hex[:10]}"
    engine = make_engine(settings.database_url)
    try:
        async with (
            running_api(settings) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            stack = Stack(
                settings, make_session_factory(engine), base_url, http, git_server, busybox
            )
            user = await stack.register()
            async with running_worker(settings):
                created = await stack.create_project(
                    user, repo_url, GIT_HOOK_ATTACK.format(name=name), timeoutSeconds=60
                )
                build_id = created["build"]["id"]

                async def planted() -> bool | None:
                    return True if "git-hook: planted" in await stack.logs(user, build_id) else None

                await eventually(planted, timeout=ATTACK_SECONDS)
            # The worker is gone with the build still running; the same host comes back and
            # the run is retried there.
            async with running_worker(settings):
                final = await stack.wait_final(user, build_id, timeout=60)
                logs = await stack.logs(user, build_id)
        ran = {str(p): p.read_text().strip() for p in paths_named(tmp_path, name, recursive=True)}
        assert ran == {}, f"the build's hook ran on the host (it wrote the host's name): {ran}"
        assert final["status"] == "failed", logs
    finally:
        engine.dispose()
        for leftover in containers_mounting(docker_client, workspaces.resolve()):
            leftover.remove(force=True)
        shutil.rmtree(workspaces, ignore_errors=True)
