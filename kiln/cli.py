"""`kiln dev | api | worker | migrate`."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import time

from kiln.settings import STATE_DIR, get_settings


def cmd_migrate() -> None:
    from kiln.migrate import upgrade

    upgrade(get_settings().database_url)


def cmd_api() -> None:
    import uvicorn

    from api.main import create_app

    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


def cmd_worker() -> None:
    import worker

    worker.main()


def _dev_secret() -> str:
    """`kiln dev` keeps one generated JWT secret under .kiln/, so tokens survive restarts."""
    path = STATE_DIR / "jwt_secret"
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def cmd_dev() -> None:
    """The whole system on one machine: Temporal dev server, migrations, API, one worker."""
    from kiln.temporal_server import start_dev_server

    env = dict(os.environ)
    env.setdefault("KILN_JWT_SECRET", _dev_secret())
    children: list[subprocess.Popen[bytes]] = []
    if "KILN_TEMPORAL_ADDRESS" not in os.environ:
        print("kiln dev: starting Temporal (UI at http://127.0.0.1:8233)", flush=True)
        children.append(
            start_dev_server(STATE_DIR / "temporal.db", log_file=STATE_DIR / "temporal.log")
        )
    cmd_migrate()
    for role in ("api", "worker"):
        children.append(subprocess.Popen([sys.executable, "-m", "kiln.cli", role], env=env))
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


COMMANDS = {"dev": cmd_dev, "api": cmd_api, "worker": cmd_worker, "migrate": cmd_migrate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kiln", description="Kiln build orchestrator")
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    COMMANDS[args.command]()


if __name__ == "__main__":
    main()
