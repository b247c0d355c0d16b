"""The worker refuses to put builds on an unprotected network by default: with
`KILN_BUILD_NETWORK` unset and the firewall rules impossible to install, it does not start;
`none` (builds without any network) starts without them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kiln.migrate import upgrade
from testbed.processes import kiln_env
from testbed.stack import stack_settings

ROOT = Path(__file__).resolve().parents[2]
IPTABLES_NAMES = [
    f"{family}{variant}{tool}"
    for family in ("iptables", "ip6tables")
    for variant in ("", "-nft", "-legacy")
    for tool in ("", "-restore", "-save")
]


@pytest.fixture
def failing_iptables(tmp_path: Path) -> str:
    """A PATH on which every iptables command fails as it does for a user who is not root."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in IPTABLES_NAMES:
        stub = stubs / name
        stub.write_text(
            "#!/bin/sh\necho 'iptables v1.8.9 (nf_tables): Could not fetch rule set generation "
            "id: Permission denied (you must be root)' >&2\nexit 4\n"
        )
        stub.chmod(0o755)
    return f"{stubs}:{os.environ['PATH']}"


def worker_env(tmp_path: Path, temporal_address: str, path: str, **extra: str) -> dict[str, str]:
    db = tmp_path / "kiln.db"
    if not db.exists():
        upgrade(f"sqlite:///{db}")
    settings = stack_settings(f"sqlite:///{db}", temporal_address, tmp_path / "workspaces")
    env = kiln_env(settings, KILN_WORKER_ID=f"net-{uuid.uuid4().hex[:6]}", PATH=path)
    env.pop("KILN_BUILD_NETWORK")  # unset: the default, Kiln's protected network
    return env | extra


def test_the_worker_refuses_to_start_when_it_cannot_protect_the_build_network(
    tmp_path: Path, temporal_address: str, failing_iptables: str
) -> None:
    done = subprocess.run(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env=worker_env(tmp_path, temporal_address, failing_iptables),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("kiln worker: cannot start:"), done.stderr
    assert "you must be root" in last, last
    assert "KILN_BUILD_NETWORK" in last and "`none`" in last, last
    assert "polling" not in done.stderr
    assert "Traceback" not in done.stderr


def test_the_worker_starts_without_the_rules_when_builds_get_no_network(
    tmp_path: Path, temporal_address: str, failing_iptables: str
) -> None:
    worker_log = tmp_path / "worker.log"
    env = worker_env(tmp_path, temporal_address, failing_iptables, KILN_BUILD_NETWORK="none")
    with open(worker_log, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while "polling" not in worker_log.read_text():
            assert process.poll() is None, worker_log.read_text()
            assert time.monotonic() < deadline, worker_log.read_text()
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)
    assert returncode == 0, worker_log.read_text()
    assert "cannot start" not in worker_log.read_text()


def test_a_host_where_docker_does_not_manage_iptables_is_recognised(tmp_path: Path) -> None:
    # A fresh network namespace has real iptables but no DOCKER-USER chain, like a host whose
    # dockerd runs with --iptables=false.
    name = f"kiln-test-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        code = "from kiln.network import find_firewall; find_firewall()"
        done = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("kiln.network.BuildNetworkError:"), done.stderr
    assert "DOCKER-USER" in last and "Docker must manage iptables" in last, last
