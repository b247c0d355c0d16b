"""The network builds run on by default: the public internet, and nothing of the host's.

A build needs DNS and connections to global addresses (package registries). It must never reach
the worker host, other containers, loopback, private, shared (CGNAT), link-local (cloud
metadata), multicast or other special-purpose addresses. Docker's default bridge allows all of
them, so Kiln manages its own bridge network and firewall rules:

- the Docker network `kiln-builds` (bridge interface `kiln-builds`), created if missing, with
  inter-container traffic off (`enable_icc=false`) and IPv6 off, labelled as Kiln's;
- a chain `KILN-BUILDS` jumped to from `DOCKER-USER` (Docker's hook in `FORWARD`, evaluated
  before Docker's own accept rules) for traffic coming in from that bridge: replies pass, a
  connection that the host rewrote to another address (a published port) is refused, DNS to the
  resolvers Docker forwards containers' queries to passes, and every non-global IPv4 range is
  refused;
- a chain `KILN-BUILDS-IN` jumped to from `INPUT`: traffic from the bridge to the host itself
  (the gateway address, and every other address of the host, all of which arrive through
  `INPUT`, not `FORWARD`) is refused, except replies and DNS to a resolver on the host;
- in `ip6tables` (when the kernel has IPv6), a chain `KILN-BUILDS` refusing every IPv6 packet
  from the bridge, in `FORWARD` and `INPUT`.

Rules match the bridge interface (`-i kiln-builds`), not source addresses, so a container
cannot slip past them with another source address. Each chain is rebuilt in one atomic
`iptables-restore --noflush` (declaring a chain flushes it), so applying the rules again never
stacks duplicates and never opens a gap; the jumps are inserted once and de-duplicated. A
file lock serialises workers of one host. Refusing (REJECT, ICMP "administratively
prohibited") rather than dropping makes a build's attempt fail at once with "host
unreachable" instead of hanging.

`ProtectedNetwork.ensure()` raises `BuildNetworkError`, with what to do, when it cannot set
this up: no iptables, not root, or Docker not managing iptables (no `DOCKER-USER` chain).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound

log = logging.getLogger(__name__)

DEFAULT_NETWORK = "kiln-builds"
LABEL_MANAGED = "kiln.managed"
LABEL_ROLE = "kiln.role"
ROLE = "build-network"
DOCKER_HOOK = "DOCKER-USER"

# Every IPv4 range that is not global unicast: a build reaches none of them.
BLOCKED_IPV4 = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private (RFC 1918)
    "100.64.0.0/10",  # shared address space, carrier-grade NAT (RFC 6598)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local: cloud metadata services (169.254.169.254)
    "172.16.0.0/12",  # private (RFC 1918): Docker's own networks
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.168.0.0/16",  # private (RFC 1918)
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the broadcast address
)
REJECT_V4 = ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]
REJECT_V6 = ["-j", "REJECT", "--reject-with", "icmp6-adm-prohibited"]
ESTABLISHED = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"]

DOCKER_DAEMON_JSON = Path("/etc/docker/daemon.json")
RESOLV_CONF = Path("/etc/resolv.conf")
SYSTEMD_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
IPV6_PRESENT = Path("/proc/net/if_inet6")
BRIDGE_NF_CALL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
LOCK_FILE = "kiln-build-network.lock"

FALLBACK = (
    "Builds would reach this host, its private networks and cloud metadata. Fix that, or set "
    "KILN_BUILD_NETWORK explicitly: `none` (builds get no network at all; recommended where "
    "they need none) or the name of a Docker network you protect yourself."
)


class BuildNetworkError(Exception):
    """The protected build network cannot be set up; the message says why and what to do."""


@dataclass(frozen=True)
class Firewall:
    """The iptables commands that manage the tables Docker uses (nft or legacy)."""

    iptables: str
    iptables_restore: str
    ip6tables: str | None
    ip6tables_restore: str | None


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildNetworkError(f"`{' '.join(argv)}` could not run: {exc}. {FALLBACK}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise BuildNetworkError(f"`{' '.join(argv)}` failed: {detail}. {FALLBACK}")
    return done.stdout


def find_firewall() -> Firewall:
    """The iptables variant in which Docker installed its `DOCKER-USER` chain.

    Docker hooks `DOCKER-USER` into `FORWARD` before its own rules; without it (Docker started
    with `--iptables=false`, or a firewall backend Kiln does not know) nothing Kiln adds is
    guaranteed to come before Docker's accept rules."""
    failures: list[str] = []
    for variant in ("iptables", "iptables-nft", "iptables-legacy"):
        binary = shutil.which(variant)
        restore = shutil.which(variant + "-restore")
        if binary is None or restore is None:
            continue
        try:
            done = subprocess.run(
                [binary, "-w", "-S", DOCKER_HOOK], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            failures.append(f"`{variant}` could not run ({exc})")
            continue
        if done.returncode == 0:
            ip6 = variant.replace("iptables", "ip6tables")
            return Firewall(binary, restore, shutil.which(ip6), shutil.which(ip6 + "-restore"))
        detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        failures.append(f"`{variant} -S {DOCKER_HOOK}`: {detail}")
    if not failures:
        raise BuildNetworkError(
            "iptables is not installed (Debian: apt-get install iptables), so the build "
            f"network cannot be protected. {FALLBACK}"
        )
    raise BuildNetworkError(
        "cannot install the build network's firewall rules ("
        + "; ".join(failures)
        + "). The worker must run as root in the host's network namespace, and Docker must "
        f"manage iptables (its {DOCKER_HOOK} chain must exist). {FALLBACK}"
    )


def _nameservers(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [
        line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1
    ]


def docker_resolvers(
    daemon_json: Path = DOCKER_DAEMON_JSON, resolv_conf: Path = RESOLV_CONF
) -> tuple[str, ...]:
    """The non-global IPv4 resolvers Docker's embedded DNS forwards containers' queries to.

    Docker uses the daemon's `dns` setting, else the host's resolv.conf (systemd-resolved's
    upstream list when the host points at its stub), leaving out loopback addresses; the
    queries leave from the container's own address. Global resolvers need no exception."""
    servers: list[str] = []
    with contextlib.suppress(OSError, ValueError, AttributeError):
        configured = json.loads(daemon_json.read_text()).get("dns")
        if isinstance(configured, list):
            servers = [str(server) for server in configured]
    if not servers:
        servers = _nameservers(resolv_conf)
        if servers and all(server.startswith("127.") for server in servers):
            servers = _nameservers(SYSTEMD_RESOLV_CONF)
    resolvers: list[str] = []
    for server in servers:
        try:
            address = ipaddress.ip_address(server.split("%")[0])
        except ValueError:
            continue
        if address.version == 4 and not address.is_loopback and not address.is_global:
            resolvers.append(str(address))
    return tuple(dict.fromkeys(resolvers))


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    """Serialise the workers of one host while they set the network up."""
    for directory in ("/run/lock", tempfile.gettempdir()):
        try:
            handle = open(Path(directory) / LOCK_FILE, "a")
        except OSError:
            continue
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        return
    yield


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    bridge: str
    subnet: str
    gateway: str


@dataclass
class ProtectedNetwork:
    """A Docker bridge network whose containers reach global addresses only.

    The defaults are the network every worker uses; tests may name their own."""

    name: str = DEFAULT_NETWORK
    bridge: str = DEFAULT_NETWORK
    chain: str = "KILN-BUILDS"
    resolvers: tuple[str, ...] | None = None  # None: the resolvers Docker uses
    _last_rules: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.bridge) > 15:
            raise ValueError("a bridge interface name has at most 15 characters")
        if len(self.input_chain) > 28:
            raise ValueError("an iptables chain name has at most 28 characters")

    @property
    def input_chain(self) -> str:
        return f"{self.chain}-IN"

    def ensure(self, client: docker.DockerClient) -> NetworkInfo:
        """Create the network if needed and (re)apply its firewall rules; idempotent."""
        firewall = find_firewall()  # first: a worker that is not root fails here, clearly
        with _host_lock():
            network = self._ensure_network(client)
            self._check_bridge_filtering()
            self._apply_rules(firewall)
        return self._info(network)

    # --- the Docker network ---

    def _options(self) -> dict[str, str]:
        return {
            "com.docker.network.bridge.name": self.bridge,
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.enable_ip_masquerade": "true",
        }

    def _mismatch(self, attrs: dict[str, Any]) -> str | None:
        """What about an existing network differs from what Kiln needs, if anything."""
        options = attrs.get("Options") or {}
        if attrs.get("Driver") != "bridge":
            return f"driver {attrs.get('Driver')!r}"
        for key, value in self._options().items():
            if options.get(key, "true" if key.endswith("masquerade") else None) != value:
                return f"option {key}={options.get(key)!r}"
        if attrs.get("EnableIPv6"):
            return "IPv6 enabled"
        if attrs.get("Internal"):
            return "internal (no internet)"
        if (attrs.get("Labels") or {}).get(LABEL_ROLE) != ROLE:
            return "not labelled as Kiln's"
        return None

    def _create(self, client: docker.DockerClient) -> Any:
        try:
            return client.networks.create(
                self.name,
                driver="bridge",
                options=self._options(),
                enable_ipv6=False,
                internal=False,
                check_duplicate=True,
                labels={LABEL_MANAGED: "true", LABEL_ROLE: ROLE},
            )
        except APIError as exc:
            if exc.status_code == 409:  # another worker of this engine just made it
                return client.networks.get(self.name)
            raise BuildNetworkError(f"cannot create the Docker network {self.name}: {exc}") from exc

    def _ensure_network(self, client: docker.DockerClient) -> Any:
        try:
            try:
                network = client.networks.get(self.name)
            except NotFound:
                return self._create(client)
            wrong = self._mismatch(network.attrs)
            if wrong is None:
                return network
            log.warning("replacing Docker network %s (%s)", self.name, wrong)
            try:
                network.remove()
            except APIError as exc:
                raise BuildNetworkError(
                    f"the Docker network {self.name} exists but is not what Kiln needs ({wrong}), "
                    f"and it cannot be replaced: {exc}. Remove it: docker network rm {self.name}"
                ) from exc
            return self._create(client)
        except DockerException as exc:
            raise BuildNetworkError(f"cannot set up the Docker network {self.name}: {exc}") from exc

    def _info(self, network: Any) -> NetworkInfo:
        network.reload()
        configs = (network.attrs.get("IPAM") or {}).get("Config") or [{}]
        return NetworkInfo(
            self.name, self.bridge, configs[0].get("Subnet", ""), configs[0].get("Gateway", "")
        )

    @staticmethod
    def _check_bridge_filtering() -> None:
        """Traffic between two ports of one bridge meets iptables only through br_netfilter;
        Docker turns it on for a network without inter-container traffic, but check."""
        try:
            enabled = BRIDGE_NF_CALL.read_text().strip() == "1"
        except OSError:
            enabled = False
        if not enabled:
            raise BuildNetworkError(
                "bridged traffic bypasses iptables here (net.bridge.bridge-nf-call-iptables is "
                "not 1), so builds could reach each other: modprobe br_netfilter && sysctl -w "
                f"net.bridge.bridge-nf-call-iptables=1. {FALLBACK}"
            )

    # --- the firewall rules ---

    def ipv4_rules(self) -> str:
        """The IPv4 chains, in iptables-restore format."""
        fwd, inp = self.chain, self.input_chain
        resolvers = docker_resolvers() if self.resolvers is None else self.resolvers
        lines = ["*filter", f":{fwd} - [0:0]", f":{inp} - [0:0]"]
        lines.append(" ".join(["-A", fwd, *ESTABLISHED, "-j", "RETURN"]))
        # A connection the host rewrote (DNAT: a port published on one of its addresses)
        # leads to the host's services, whatever address it now has.
        lines.append(" ".join(["-A", fwd, "-m", "conntrack", "--ctstate", "DNAT", *REJECT_V4]))
        dns = [
            f"-d {resolver}/32 -p {proto} -m {proto} --dport 53 -j RETURN"
            for resolver in resolvers
            for proto in ("udp", "tcp")
        ]
        lines += [f"-A {fwd} {rule}" for rule in dns]
        lines += [" ".join(["-A", fwd, "-d", cidr, *REJECT_V4]) for cidr in BLOCKED_IPV4]
        lines.append(" ".join(["-A", inp, *ESTABLISHED, "-j", "RETURN"]))
        lines += [f"-A {inp} {rule}" for rule in dns]
        lines.append(" ".join(["-A", inp, *REJECT_V4]))
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def ipv6_rules(self) -> str:
        """The network has no IPv6: every IPv6 packet from its bridge is refused."""
        reject = " ".join(["-A", self.chain, *REJECT_V6])
        return f"*filter\n:{self.chain} - [0:0]\n{reject}\nCOMMIT\n"

    def _ensure_jump(self, iptables: str, hook: str, target: str) -> bool:
        """Exactly one `-A <hook> -i <bridge> -j <target>`, inserted first in `hook`; True if
        there was not exactly one."""
        rule = f"-A {hook} -i {self.bridge} -j {target}"
        count = _run([iptables, "-w", "-S", hook]).splitlines().count(rule)
        if count == 0:
            _run([iptables, "-w", "-I", hook, "1", "-i", self.bridge, "-j", target])
        for _ in range(count - 1):
            _run([iptables, "-w", "-D", hook, "-i", self.bridge, "-j", target])
        return count != 1

    def _apply(self, iptables: str, restore: str, rules: str, jumps: list[tuple[str, str]]) -> None:
        """Rebuild the chains atomically, then make sure each is jumped to exactly once."""
        chains = sorted({target for _, target in jumps})
        before = "".join(self._listing(iptables, chain) for chain in chains)
        _run([restore, "-w", "--noflush"], stdin=rules)
        fixed = [self._ensure_jump(iptables, hook, target) for hook, target in jumps]
        previous = self._last_rules.get(iptables)
        if previous is not None and (before != previous or any(fixed)):
            log.warning("firewall rules of %s had been changed (%s); restored", self.name, iptables)
        self._last_rules[iptables] = "".join(self._listing(iptables, chain) for chain in chains)

    @staticmethod
    def _listing(iptables: str, chain: str) -> str:
        """The chain's rules, or nothing if it does not exist."""
        done = subprocess.run(
            [iptables, "-w", "-S", chain], capture_output=True, text=True, timeout=60, check=False
        )
        return done.stdout if done.returncode == 0 else ""

    def _apply_rules(self, firewall: Firewall) -> None:
        self._apply(
            firewall.iptables,
            firewall.iptables_restore,
            self.ipv4_rules(),
            [(DOCKER_HOOK, self.chain), ("INPUT", self.input_chain)],
        )
        if not IPV6_PRESENT.exists():
            return  # no IPv6 in this kernel
        if firewall.ip6tables is None or firewall.ip6tables_restore is None:
            raise BuildNetworkError(
                f"ip6tables is not installed, so IPv6 from the build network cannot be refused. "
                f"{FALLBACK}"
            )
        self._apply(
            firewall.ip6tables,
            firewall.ip6tables_restore,
            self.ipv6_rules(),
            [("FORWARD", self.chain), ("INPUT", self.chain)],
        )

    def remove(self, client: docker.DockerClient) -> None:
        """Take the network and its rules away (for networks a test made)."""
        firewall = find_firewall()
        with _host_lock():
            with contextlib.suppress(NotFound):
                client.networks.get(self.name).remove()
            tables = [(firewall.iptables, [(DOCKER_HOOK, self.chain), ("INPUT", self.input_chain)])]
            if firewall.ip6tables is not None and IPV6_PRESENT.exists():
                tables.append(
                    (firewall.ip6tables, [("FORWARD", self.chain), ("INPUT", self.chain)])
                )
            for iptables, jumps in tables:
                for hook, target in jumps:
                    rule = f"-A {hook} -i {self.bridge} -j {target}"
                    for _ in range(_run([iptables, "-w", "-S", hook]).splitlines().count(rule)):
                        _run([iptables, "-w", "-D", hook, "-i", self.bridge, "-j", target])
                for target in sorted({target for _, target in jumps}):
                    if self._listing(iptables, target):
                        _run([iptables, "-w", "-F", target])
                        _run([iptables, "-w", "-X", target])
