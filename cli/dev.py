"""`kiln dev`: the whole system on one machine, supervised.

Each child (the Temporal dev server, the API, the worker) that dies is started again, after a
back-off that doubles from 1 s to 30 s while the child keeps dying young and is back to 1 s once
a child has run 60 s; every exit is announced on one line (`kiln dev: the worker exited (signal
9); restarting in 1s`). Builds in flight carry on: a restarted worker takes its host queue back
and re-attaches to their containers. A crash loop is never given up on: the child is started
again every 30 s, each exit printed, until it stays up (a database or Docker that comes back
heals the stack) or Ctrl-C. Only Ctrl-C or SIGTERM stops the stack, and then every child.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cli.temporal_server import start_dev_server
from kiln.crypto import generate_key
from kiln.migrate import upgrade
from kiln.settings import STATE_DIR, get_settings
from workflows.visibility import ensure_search_attributes

FIRST_DELAY = 1.0  # seconds before a dead child is started again
MAX_DELAY = 30.0  # the back-off doubles up to this
STABLE_SECONDS = 60.0  # a child that ran this long starts again after FIRST_DELAY
STOP_SECONDS = 15.0  # how long a stopped child may take before it is killed
POLL_SECONDS = 0.2


def _state_dir() -> None:
    """.kiln/ holds the database, Temporal's history, the JWT secret and the workspaces: this
    user's alone (0700), however it was made before."""
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    STATE_DIR.chmod(0o700)


def _kept(name: str, generate: Callable[[], str]) -> str:
    """A generated value `kiln dev` keeps under .kiln/, so it survives restarts."""
    _state_dir()
    path = STATE_DIR / name
    if not path.exists():
        # Created 0600: never readable by others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(generate())
    path.chmod(0o600)
    return path.read_text().strip()


def _dev_secret() -> str:
    """The JWT secret: tokens survive restarts."""
    return _kept("jwt_secret", lambda: secrets.token_urlsafe(48))


def _dev_secrets_key() -> str:
    """KILN_SECRETS_KEY: project secrets stay readable across restarts."""
    return _kept("secrets_key", generate_key)


def _say(line: str) -> None:
    print(f"kiln dev: {line}", flush=True)


def unprivileged_defaults(environ: Mapping[str, str], euid: int, egid: int) -> dict[str, str]:
    """What the children need when `kiln dev` is not root, for each setting left unset.

    The worker refuses to start without Kiln's protected build network, whose firewall rules
    only root can install (kiln.network): builds get no network instead. Only root can give a
    build's checkout to another user: builds run as this user."""
    if euid == 0:
        return {}
    defaults = {}
    if "KILN_BUILD_NETWORK" not in environ:
        defaults["KILN_BUILD_NETWORK"] = "none"
        _say(
            "not running as root, so the worker cannot install the firewall rules of Kiln's "
            "protected build network: builds get no network (KILN_BUILD_NETWORK=none). Run as "
            "root, or set KILN_BUILD_NETWORK, for builds that need the network"
        )
    if "KILN_BUILD_USER" not in environ:
        defaults["KILN_BUILD_USER"] = f"{euid}:{egid}"
        _say(
            f"not running as root: builds run as your user (KILN_BUILD_USER={euid}:{egid}), "
            "since only root can give a build's checkout to another user"
        )
    return defaults


def describe_exit(returncode: int) -> str:
    return f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"


@dataclass
class Child:
    """One supervised process: how to start it, and when to start it again."""

    name: str  # as a sentence names it: "the worker"
    start: Callable[[], subprocess.Popen[bytes]]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    due_at: float = 0.0  # when a dead child starts again
    delay: float = FIRST_DELAY  # the back-off for its next quick exit
    warned: bool = False  # said once that it is in a crash loop
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    say: Callable[[str], None] = field(default=_say, repr=False)

    def launch(self) -> None:
        """Start it now; a start that fails counts as an exit at once."""
        self.started_at = self.clock()
        try:
            self.process = self.start()
        except Exception as exc:  # the Temporal dev server did not come up, say
            self._schedule(f"could not be started ({exc})", ran=0.0)

    def check(self) -> None:
        """Notice an exit (and schedule the restart), or start it again when due."""
        if self.process is not None:
            returncode = self.process.poll()
            if returncode is None:
                return
            self.process = None
            ran = self.clock() - self.started_at
            self._schedule(f"exited ({describe_exit(returncode)})", ran)
        if self.clock() >= self.due_at:
            self.launch()

    def _schedule(self, what: str, ran: float) -> None:
        if ran >= STABLE_SECONDS:
            self.delay, self.warned = FIRST_DELAY, False
        wait = self.delay
        self.due_at = self.clock() + wait
        self.delay = min(self.delay * 2, MAX_DELAY)
        self.say(f"{self.name} {what}; restarting in {wait:g}s")
        if wait >= MAX_DELAY and not self.warned:
            self.warned = True
            self.say(
                f"{self.name} keeps exiting within {STABLE_SECONDS:g}s of its start (its own "
                f"output above says why); trying again every {MAX_DELAY:g}s until it stays up. "
                "Ctrl-C stops everything"
            )


class Supervisor:
    """Runs the children until Ctrl-C or SIGTERM, restarting those that die."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stopping = False
        self._forced = False

    def install_signals(self) -> None:
        def stop(_signum: int, _frame: object) -> None:
            if self.stopping:
                self._forced = True  # a second Ctrl-C: kill what is left at once
            self.stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def add(self, name: str, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        child = Child(name, start)
        self.children.append(child)
        if not self.stopping:
            child.launch()

    def run(self) -> None:
        while not self.stopping:
            for child in self.children:
                if self.stopping:
                    break
                child.check()
            time.sleep(POLL_SECONDS)

    def stop_all(self) -> None:
        """SIGTERM to every child, the last started first; SIGKILL to those still there after
        STOP_SECONDS (or at a second Ctrl-C)."""
        running = [c.process for c in reversed(self.children) if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        while any(p.poll() is None for p in running):
            if self._forced or time.monotonic() > deadline:
                for process in running:
                    if process.poll() is None:
                        process.kill()
                for process in running:
                    process.wait()
                break
            time.sleep(0.1)


def _kiln(role: str, env: dict[str, str]) -> Callable[[], subprocess.Popen[bytes]]:
    return lambda: subprocess.Popen([sys.executable, "-m", "cli", role], env=env)


def run_dev() -> None:
    """The whole system on one machine: Temporal dev server, migrations, API, one worker."""
    supervisor = Supervisor()
    supervisor.install_signals()  # first: Ctrl-C while starting stops what was started
    _state_dir()
    env = dict(os.environ)
    env.setdefault("KILN_JWT_SECRET", _dev_secret())
    env.setdefault("KILN_SECRETS_KEY", _dev_secrets_key())
    env |= unprivileged_defaults(os.environ, os.geteuid(), os.getegid())
    try:
        if "KILN_TEMPORAL_ADDRESS" not in os.environ:
            _say("starting Temporal (UI at http://127.0.0.1:8233)")
            supervisor.add(
                "the Temporal dev server",
                lambda: start_dev_server(
                    STATE_DIR / "temporal.db", log_file=STATE_DIR / "temporal.log"
                ),
            )
        if not supervisor.stopping:
            settings = get_settings()
            upgrade(settings.database_url)
            if "KILN_TEMPORAL_ADDRESS" in os.environ:
                # An external Temporal: register Kiln's search attributes, as `kiln migrate`
                # does (the dev server started above has them already).
                namespace = settings.temporal_namespace
                asyncio.run(ensure_search_attributes(settings.temporal_address, namespace))
            supervisor.add("the API", _kiln("api", env))
            supervisor.add("the worker", _kiln("worker", env))
            _say(f"API on http://{settings.host}:{settings.port}")
        supervisor.run()
    finally:
        supervisor.stop_all()  # also when the migrations fail: nothing is left running
    sys.exit(0)
