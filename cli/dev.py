"""`kiln dev`: the whole system on one machine, supervised."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from cli.temporal_server import start_dev_server
from kiln.migrate import upgrade
from kiln.settings import STATE_DIR, get_settings


def _state_dir() -> None:
    """.kiln/ holds the database, Temporal's history, the JWT secret and the workspaces: this
    user's alone (0700), however it was made before."""
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    STATE_DIR.chmod(0o700)


def _dev_secret() -> str:
    """`kiln dev` keeps one generated JWT secret under .kiln/, so tokens survive restarts."""
    _state_dir()
    path = STATE_DIR / "jwt_secret"
    if not path.exists():
        # Created 0600: never readable by others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    path.chmod(0o600)
    return path.read_text().strip()


def run_dev() -> None:
    """The whole system on one machine: Temporal dev server, migrations, API, one worker."""
    _state_dir()
    env = dict(os.environ)
    env.setdefault("KILN_JWT_SECRET", _dev_secret())
    children: list[subprocess.Popen[bytes]] = []
    if "KILN_TEMPORAL_ADDRESS" not in os.environ:
        print("kiln dev: starting Temporal (UI at http://127.0.0.1:8233)", flush=True)
        children.append(
            start_dev_server(STATE_DIR / "temporal.db", log_file=STATE_DIR / "temporal.log")
        )
    upgrade(get_settings().database_url)
    for role in ("api", "worker"):
        children.append(subprocess.Popen([sys.executable, "-m", "cli", role], env=env))
    settings = get_settings()
    print(f"kiln dev: API on http://{settings.host}:{settings.port}", flush=True)
    _supervise(children)


def _supervise(children: list[subprocess.Popen[bytes]]) -> None:
    """Run until Ctrl-C, SIGTERM or a child's exit; then stop every child."""
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    for child in reversed(children):
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    failed = [child.returncode for child in children if child.returncode not in (0, -15, None)]
    sys.exit(1 if failed and not stopping else 0)
