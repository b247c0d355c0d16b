"""The `kiln` command. Server side: `kiln dev | api | worker | migrate`. Client side: `kiln
login | logout | projects | builds | build | logs | rebuild | cancel` (see cli/commands.py).

It sits on top of everything (it starts the API and the worker), so it lives outside `kiln/`,
the core, which never imports upward.
"""

from __future__ import annotations

import argparse
import logging
import sys

from kiln.settings import get_settings


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


def cmd_dev() -> None:
    from cli.dev import run_dev

    run_dev()


SERVER_COMMANDS = {
    "dev": (cmd_dev, "run the whole system on this machine"),
    "api": (cmd_api, "run the REST API, Socket.io and the dashboard"),
    "worker": (cmd_worker, "run a worker (builds on this host)"),
    "migrate": (cmd_migrate, "apply the database schema"),
}


def parser() -> argparse.ArgumentParser:
    from cli.commands import add_client_commands

    top = argparse.ArgumentParser(prog="kiln", description="Kiln build orchestrator")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_run, text) in SERVER_COMMANDS.items():
        commands.add_parser(name, help=text)
    add_client_commands(commands)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command in SERVER_COMMANDS:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        SERVER_COMMANDS[args.command][0]()
        return
    sys.exit(run_client(args))


def run_client(args: argparse.Namespace) -> int:
    """A client command's exit code; its failures are one line on stderr, never a traceback."""
    from cli.client import CliError
    from cli.output import error

    try:
        code: int = args.handler(args)
    except CliError as exc:
        error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        error("stopped following; the build goes on")
        return 130
    return code


if __name__ == "__main__":
    main()
