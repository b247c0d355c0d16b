"""Builds on Kiln's protected network reach global addresses only, proven by trying.

Each test opens a real listener and connects to it from a container: from one on a plain Docker
bridge network (the control: the listener answers, so the test can see a connection) and from
one on Kiln's network (refused). The listeners sit on the Kiln network's gateway (the host), on
another host address, in a second build container, and on a private address in a network
namespace the test makes itself. The same namespace also holds a global address (a route on a
veth pair, so nothing leaves the machine), which a build does reach: the rules are not simply
"no network". Traffic goes only to loopback, Docker bridges and the test's own namespace.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from kiln.network import BLOCKED_IPV4, DOCKER_HOOK, NetworkInfo, ProtectedNetwork
from testbed.git_server import GitServer
from testbed.stack import Stack, running_stack, stack_settings
from tests.support.helpers import new_repo

BANNER = "kiln-listener-answered"
# What a connection refused by Kiln's rules (ICMP "administratively prohibited") reports: at
# once, not after a timeout.
REFUSED = "No route to host"
PORT = 8080
DNS_PORT = 53
# Serves BANNER over HTTP on every port given, on every address of its network namespace.
SERVER = f"""
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"{BANNER}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
for port in sys.argv[1:]:
    server = ThreadingHTTPServer(("0.0.0.0", int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def probe(client: docker.DockerClient, image: str, network: str, target: str) -> str:
    """What a sandboxed container on `network` gets from `http://<target>/` (its output)."""
    script = f"{http_get(target)} 2>&1"
    container = client.containers.run(
        image,
        ["sh", "-c", script],
        network=network,
        detach=True,
        user="1000:1000",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        labels={"kiln.test": "network-probe"},
    )
    try:
        container.wait(timeout=60)
        output: str = container.logs().decode()
        return output
    finally:
        container.remove(force=True)


def http_get(target: str) -> str:
    """A shell command sending one HTTP request to host:port with busybox's nc."""
    host, port = target.rsplit(":", 1)
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}"


def reached(output: str) -> bool:
    return BANNER in output


@contextmanager
def http_listener(host: str) -> Iterator[str]:
    """An HTTP server of this test process on one of the host's addresses; yields host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = BANNER.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def host_get(target: str) -> str | None:
    """The host's own view of `http://<target>/`: the body, or None if nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{target}/", timeout=3) as response:
            body: bytes = response.read()
            return body.decode()
    except OSError:
        return None


@dataclass(frozen=True)
class Namespace:
    """A network namespace of the test's own, reached from the host through a veth pair."""

    name: str
    host_interface: str
    private: str  # 10.213.x.2: a private address, as on a LAN
    public: str  # 192.88.99.x: a global address, as on the internet (routed to the veth only)


@pytest.fixture(scope="module")
def namespace() -> Iterator[Namespace]:
    tag = uuid.uuid4().hex[:6]
    name = f"kiln-test-{tag}"
    host_if, ns_if = f"kt{tag}h", f"kt{tag}n"
    octet, block = 1 + secrets.randbelow(254), 4 * secrets.randbelow(64)
    private_host, private = f"10.213.{octet}.1", f"10.213.{octet}.2"
    public_host, public = f"192.88.99.{block + 1}", f"192.88.99.{block + 2}"
    _ip("netns", "add", name)
    server: subprocess.Popen[str] | None = None
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        _ip("addr", "add", f"{private_host}/24", "dev", host_if)
        _ip("addr", "add", f"{public_host}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{private}/24", "dev", ns_if)
        _ip("-n", name, "addr", "add", f"{public}/30", "dev", ns_if)
        _ip("-n", name, "link", "set", ns_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        # Both addresses lead into the namespace and nowhere else.
        for address in (private, public):
            assert f"dev {host_if}" in _ip("route", "get", address), address
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", SERVER, str(PORT), str(DNS_PORT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        yield Namespace(name, host_if, private, public)
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)


@pytest.fixture(scope="module")
def kiln_network(docker_client: docker.DockerClient) -> NetworkInfo:
    """The network every worker puts builds on by default, set up as a worker does."""
    return ProtectedNetwork().ensure(docker_client)


@pytest.fixture(scope="module")
def plain_network(docker_client: docker.DockerClient) -> Iterator[NetworkInfo]:
    """An ordinary Docker bridge network without Kiln's rules: the control."""
    name = f"kiln-test-plain-{uuid.uuid4().hex[:6]}"
    network = docker_client.networks.create(name, driver="bridge", labels={"kiln.test": "1"})
    try:
        network.reload()
        config = network.attrs["IPAM"]["Config"][0]
        yield NetworkInfo(name, "", config["Subnet"], config["Gateway"])
    finally:
        network.remove()


@pytest.fixture(scope="module")
def own_network(
    docker_client: docker.DockerClient, namespace: Namespace
) -> Iterator[tuple[ProtectedNetwork, NetworkInfo]]:
    """A protected network of this test's own, whose DNS resolver is in the test namespace
    (the rules are the same as the default network's, but this one may be tampered with)."""
    tag = uuid.uuid4().hex[:6]
    network = ProtectedNetwork(
        name=f"kiln-t-{tag}",
        bridge=f"kiln-t-{tag}",
        chain=f"KILN-T-{tag.upper()}",
        resolvers=(namespace.private,),
    )
    try:
        yield network, network.ensure(docker_client)
    finally:
        network.remove(docker_client)


def test_a_build_cannot_reach_a_service_of_the_host_on_its_gateway(
    docker_client: docker.DockerClient,
    busybox: str,
    kiln_network: NetworkInfo,
    plain_network: NetworkInfo,
) -> None:
    with http_listener(kiln_network.gateway) as target:
        assert reached(probe(docker_client, busybox, plain_network.name, target))
        output = probe(docker_client, busybox, kiln_network.name, target)
        assert not reached(output), output
        assert REFUSED in output, output


def test_a_build_cannot_reach_the_host_on_any_other_of_its_addresses(
    docker_client: docker.DockerClient,
    busybox: str,
    kiln_network: NetworkInfo,
    plain_network: NetworkInfo,
) -> None:
    # The plain network's gateway is one more address of the host, on another bridge.
    with http_listener(plain_network.gateway) as target:
        assert reached(probe(docker_client, busybox, plain_network.name, target))
        output = probe(docker_client, busybox, kiln_network.name, target)
        assert not reached(output), output


@contextmanager
def server_container(client: docker.DockerClient, image: str, network: str) -> Iterator[str]:
    """A container on `network` serving BANNER over HTTP; yields its ip:port once it answers
    the host."""
    page = "/tmp/www/index.html"
    script = f"mkdir -p /tmp/www && echo {BANNER} > {page} && httpd -f -p {PORT} -h /tmp/www"
    container = client.containers.run(
        image,
        ["sh", "-c", script],
        network=network,
        detach=True,
        user="1000:1000",
        cap_drop=["ALL"],
        read_only=True,
        tmpfs={"/tmp": "rw,size=1m"},
        labels={"kiln.test": "network-server"},
    )
    try:
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        target = f"{address}:{PORT}"

        deadline = time.monotonic() + 30
        while host_get(target) is None:  # poll until its server is up
            assert time.monotonic() < deadline, container.logs().decode()
            time.sleep(0.1)
        yield target
    finally:
        container.remove(force=True)


def test_a_build_cannot_reach_another_build_on_the_same_network(
    docker_client: docker.DockerClient,
    busybox: str,
    kiln_network: NetworkInfo,
    plain_network: NetworkInfo,
) -> None:
    with server_container(docker_client, busybox, plain_network.name) as target:
        assert reached(probe(docker_client, busybox, plain_network.name, target))
    with server_container(docker_client, busybox, kiln_network.name) as target:
        output = probe(docker_client, busybox, kiln_network.name, target)
        assert not reached(output), output


def test_a_build_cannot_reach_a_private_address_the_host_reaches(
    docker_client: docker.DockerClient,
    busybox: str,
    kiln_network: NetworkInfo,
    plain_network: NetworkInfo,
    namespace: Namespace,
) -> None:
    target = f"{namespace.private}:{PORT}"
    assert host_get(target) == BANNER
    assert reached(probe(docker_client, busybox, plain_network.name, target))
    output = probe(docker_client, busybox, kiln_network.name, target)
    assert not reached(output), output
    assert REFUSED in output, output


def test_a_build_still_reaches_a_global_address(
    docker_client: docker.DockerClient,
    busybox: str,
    kiln_network: NetworkInfo,
    namespace: Namespace,
) -> None:
    output = probe(docker_client, busybox, kiln_network.name, f"{namespace.public}:{PORT}")
    assert reached(output), output


def test_a_build_reaches_its_private_dns_resolver_on_port_53_only(
    docker_client: docker.DockerClient,
    busybox: str,
    namespace: Namespace,
    own_network: tuple[ProtectedNetwork, NetworkInfo],
) -> None:
    _, info = own_network
    assert reached(probe(docker_client, busybox, info.name, f"{namespace.private}:{DNS_PORT}"))
    output = probe(docker_client, busybox, info.name, f"{namespace.private}:{PORT}")
    assert not reached(output), output


def _jumps(iptables: str, hook: str, bridge: str) -> list[str]:
    listing = subprocess.run([iptables, "-S", hook], check=True, capture_output=True, text=True)
    return [line for line in listing.stdout.splitlines() if f"-i {bridge} " in line]


def _chain(iptables: str, chain: str) -> list[str]:
    listing = subprocess.run([iptables, "-S", chain], check=True, capture_output=True, text=True)
    return listing.stdout.splitlines()


def test_setting_the_network_up_again_stacks_no_duplicate_rules(
    docker_client: docker.DockerClient, own_network: tuple[ProtectedNetwork, NetworkInfo]
) -> None:
    network, info = own_network
    first = (_chain("iptables", network.chain), _chain("iptables", network.input_chain))
    # Four workers of one host starting at once, then one restarting.
    with ThreadPoolExecutor(max_workers=4) as pool:
        infos = list(pool.map(lambda _: replace(network).ensure(docker_client), range(4)))
    assert infos == [info] * 4
    assert network.ensure(docker_client) == info
    assert (_chain("iptables", network.chain), _chain("iptables", network.input_chain)) == first
    # -N, replies, DNAT, DNS over UDP and TCP to the one resolver, then one rule per range.
    assert len(first[0]) == 1 + 2 + 2 + len(BLOCKED_IPV4)
    assert _jumps("iptables", DOCKER_HOOK, network.bridge) == [
        f"-A {DOCKER_HOOK} -i {network.bridge} -j {network.chain}"
    ]
    assert _jumps("iptables", "INPUT", network.bridge) == [
        f"-A INPUT -i {network.bridge} -j {network.input_chain}"
    ]
    for hook in ("FORWARD", "INPUT"):
        assert _jumps("ip6tables", hook, network.bridge) == [
            f"-A {hook} -i {network.bridge} -j {network.chain}"
        ]
    assert len(docker_client.networks.list(names=[network.name])) == 1


def test_rules_someone_removed_are_what_let_a_build_out_and_setting_up_restores_them(
    docker_client: docker.DockerClient,
    busybox: str,
    namespace: Namespace,
    own_network: tuple[ProtectedNetwork, NetworkInfo],
) -> None:
    network, info = own_network
    target = f"{namespace.private}:{PORT}"
    assert not reached(probe(docker_client, busybox, info.name, target))
    # A firewall reload, say, drops the jump into Kiln's chain: the private address is open.
    subprocess.run(
        ["iptables", "-D", DOCKER_HOOK, "-i", network.bridge, "-j", network.chain], check=True
    )
    try:
        assert reached(probe(docker_client, busybox, info.name, target))
    finally:
        network.ensure(docker_client)  # what the worker's maintenance round does
    assert not reached(probe(docker_client, busybox, info.name, target))


# --- a whole Kiln with the default network ---------------------------------------------------


@pytest.fixture(scope="module")
async def default_network_stack(
    db_url: str,
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    workspace: Path = tmp_path_factory.mktemp("workspaces")
    settings = stack_settings(db_url, temporal_address, workspace)
    settings = settings.model_copy(update={"build_network": ""})  # the default: Kiln's network
    async with running_stack(settings, git_server, busybox) as running:
        yield running


async def test_a_build_of_a_default_kiln_reaches_a_global_address_but_not_the_host(
    default_network_stack: Stack,
    docker_client: docker.DockerClient,
    kiln_network: NetworkInfo,
    namespace: Namespace,
) -> None:
    stack = default_network_stack
    with http_listener(kiln_network.gateway) as host_target:
        command = "; ".join(
            f"echo {label}: $({http_get(target)} 2>&1 | tail -n 1)"
            for label, target in (("host", host_target), ("global", f"{namespace.public}:{PORT}"))
        )
        command += "; echo address: $(ip -4 -o addr show eth0 | awk '{print $4}')"
        user = await stack.register()
        repo = new_repo(stack.git, "network")
        created = await stack.create_project(user, repo.url, command)
        final = await stack.wait_final(user, created["build"]["id"])
        logs = await stack.logs(user, created["build"]["id"])
    assert final["status"] == "passed", logs
    lines = dict(line.split(": ", 1) for line in logs.splitlines() if ": " in line)
    assert BANNER not in lines["host"] and REFUSED in lines["host"], logs
    assert lines["global"] == BANNER, logs
    address = ipaddress.ip_interface(lines["address"].strip())
    assert address.network == ipaddress.ip_network(kiln_network.subnet), logs
