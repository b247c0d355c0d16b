"""The `kiln` command: `kiln dev | api | worker | migrate`.

It sits on top of everything (it starts the API and the worker), so it lives outside `kiln/`,
the core, which never imports upward.
"""

from __future__ import annotations

import argparse
import logging

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


COMMANDS = {"dev": cmd_dev, "api": cmd_api, "worker": cmd_worker, "migrate": cmd_migrate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kiln", description="Kiln build orchestrator")
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    COMMANDS[args.command]()


if __name__ == "__main__":
    main()
