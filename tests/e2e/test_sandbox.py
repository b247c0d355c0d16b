"""The build container is a sandbox, proven from inside it: one real build runs a probe script
that prints what the build command can see and do, and each test checks one fact of it."""

from __future__ import annotations

import pytest

from testbed.stack import Stack
from tests.support.helpers import new_repo

# Prints one `key=value` line per fact. Limits are read from cgroup v2 paths first, then v1.
PROBE = r"""
first() { for f in "$@"; do if [ -r "$f" ]; then cat "$f"; return; fi; done; echo missing; }
attempt() { if "$@" 2>/dev/null; then echo ok; else echo refused; fi; }
echo "user=$(id -u)"
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status | tr -d ' \t' | tr ':' '='
echo "write_root=$(attempt touch /etc/x)"
echo "write_usr=$(attempt mkdir /usr/kiln-probe)"
echo "write_workspace=$(attempt touch /workspace/x)"
echo "write_tmp=$(attempt touch /tmp/x)"
echo "pwd=$(pwd)"
echo "source_visible=$(attempt test -f /workspace/README)"
echo "docker_socket=$(attempt test -e /var/run/docker.sock)"
echo "docker_socket_run=$(attempt test -e /run/docker.sock)"
echo "interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ',')"
echo "memory=$(first /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "memswap=$(first /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes)"
echo "swap=$(first /sys/fs/cgroup/memory.swap.max)"
echo "pids=$(first /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max)"
echo "cpu_v2=$(first /sys/fs/cgroup/cpu.max)"
echo "cpu_quota=$(first /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
echo "cpu_period=$(first /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
echo probe-done
"""

Facts = dict[str, str]


@pytest.fixture(scope="module")
async def facts(stack: Stack) -> Facts:
    """What the probe printed from inside one real build's container."""
    user = await stack.register()
    repo = new_repo(
        stack.git, "sandbox", {"probe.sh": PROBE, "README": "source\n"}, "add the probe"
    )
    created = await stack.create_project(user, repo.url, "sh probe.sh")
    build_id = created["build"]["id"]
    final = await stack.wait_final(user, build_id)
    logs = await stack.logs(user, build_id)
    assert final["status"] == "passed", logs
    assert "probe-done" in logs, logs
    return dict(line.split("=", 1) for line in logs.splitlines() if "=" in line)


def test_the_build_has_no_capabilities(facts: Facts) -> None:
    assert facts["CapEff"] == "0" * 16
    assert facts["CapPrm"] == "0" * 16
    assert facts["CapBnd"] == "0" * 16
    assert facts["NoNewPrivs"] == "1"


def test_the_build_cannot_write_its_root_filesystem(facts: Facts) -> None:
    assert facts["write_root"] == "refused"
    assert facts["write_usr"] == "refused"


def test_the_build_writes_in_its_workspace_and_tmp(facts: Facts) -> None:
    assert facts["pwd"] == "/workspace"
    assert facts["source_visible"] == "ok"
    assert facts["write_workspace"] == "ok"
    assert facts["write_tmp"] == "ok"


def test_the_build_sees_no_docker_socket(facts: Facts) -> None:
    assert facts["docker_socket"] == "refused"
    assert facts["docker_socket_run"] == "refused"


def test_the_build_has_no_network_but_loopback(facts: Facts) -> None:
    assert facts["interfaces"] == "lo,"


def test_the_build_has_the_configured_memory_limit(stack: Stack, facts: Facts) -> None:
    limit = stack.settings.build_memory_mb * 1024 * 1024
    assert facts["memory"] == str(limit)
    # Swap does not extend it: v1 bounds memory + swap together, v2 allows no swap at all.
    assert facts["memswap"] in ("missing", str(limit))
    assert facts["swap"] in ("missing", "0")


def test_the_build_has_the_configured_process_limit(stack: Stack, facts: Facts) -> None:
    assert facts["pids"] == str(stack.settings.build_pids_limit)


def test_the_build_has_the_configured_cpu_limit(stack: Stack, facts: Facts) -> None:
    if facts["cpu_v2"] != "missing":
        quota, period = facts["cpu_v2"].split()
    else:
        quota, period = facts["cpu_quota"], facts["cpu_period"]
    assert int(quota) / int(period) == pytest.approx(stack.settings.build_cpus)
