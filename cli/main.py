"""The `kiln` command. Server side: `kiln dev | api | worker | migrate`. Client side: `kiln
login | logout | projects | builds | build | logs | rebuild | cancel` (see cli/commands.py).

It sits on top of everything (it starts the API and the worker), so it lives outside `kiln/`,
the core, which never imports upward.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kiln.settings import Settings, get_settings


def cmd_migrate() -> None:
    """The database schema, then Kiln's search attributes in the Temporal namespace (those
    missing are registered, and named); a worker refuses to start without them."""
    import asyncio
    import os

    from kiln.migrate import upgrade
    from workflows.visibility import SearchAttributesError, ensure_search_attributes

    settings = get_settings()
    upgrade(settings.database_url)
    log = logging.getLogger("kiln.migrate")
    log.info("database schema is up to date")
    namespace = settings.temporal_namespace
    code = 0
    try:
        added = asyncio.run(ensure_search_attributes(settings.temporal_address, namespace))
    except SearchAttributesError as exc:
        print(f"kiln migrate: the database schema is up to date, but {exc}", file=sys.stderr)
        code = 1
    else:
        if added:
            names = ", ".join(added)
            log.info("registered search attributes %s in namespace %s", names, namespace)
        else:
            log.info("Kiln's search attributes are already registered in namespace %s", namespace)
    # Leave without the interpreter's teardown: the Temporal client's native threads can abort
    # a finalizing interpreter (temporalio/sdk-python#300), and the exit code must be ours.
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_api() -> None:
    """Serve the API from KILN_API_WORKERS processes (uvicorn's workers, sharing one socket).
    Everything already works across processes: events reach every process's sockets through
    the database (api.pubsub), and clients use the websocket transport only (no sticky
    sessions needed)."""
    import uvicorn

    settings = get_settings()
    # log_config=None: Kiln's own logging set-up (kiln.logconfig) formats uvicorn's lines too.
    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_config": None}
    if settings.api_workers == 1:
        uvicorn.run(api_app(), log_level="info", **options)
        return
    _check_api_startup(settings)
    with _shared_metrics_dir():
        uvicorn.run(
            "cli.main:api_worker_app",
            factory=True,
            workers=settings.api_workers,
            log_level="info",
            **options,
        )


@contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """A directory of this `kiln api`'s own where its processes keep their metrics, so that any
    of them answers a scrape for all (kiln.metrics); set before they start, removed after. An
    operator's own PROMETHEUS_MULTIPROC_DIR is used as it is and left in place."""
    import os
    import shutil
    import tempfile

    from kiln.metrics import MULTIPROCESS_ENV

    if os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="kiln-metrics-")
    os.environ[MULTIPROCESS_ENV] = path
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(path, ignore_errors=True)


def _check_api_startup(settings: Settings) -> None:
    """Refuse here what every API process would refuse (uvicorn would start them again and
    again), then let go of the database."""
    from api.startup import check_startup
    from kiln.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        check_startup(settings, make_session_factory(engine))
    finally:
        engine.dispose()


def api_app() -> Any:
    from cli.lean_imports import import_server_only

    import_server_only()
    from api.main import create_app

    app = create_app(get_settings())
    _freeze_startup_objects()
    return app


def _freeze_startup_objects() -> None:
    """Leave what start-up made (modules, the app, the ORM's mappers: most of the heap) out of
    the garbage collector's full passes, which otherwise walk it all every so often: about 90 ms
    stolen from whichever request is being answered then (a 3 % tail of the project listing)."""
    import gc

    gc.collect()
    gc.freeze()


def api_worker_app() -> Any:
    """The app in one of several API processes (started afresh by uvicorn: logging set up
    again), which dies with the process that started it: a `kill -9` of `kiln api` must not
    leave its workers serving the port."""
    from kiln.logconfig import configure_logging

    _die_with_parent()
    configure_logging(level=logging.INFO)
    return api_app()


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux' PR_SET_PDEATHSIG; elsewhere nothing)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def cmd_worker() -> None:
    import worker

    _freeze_startup_objects()
    worker.main()


def cmd_rotate_secrets() -> None:
    from kiln.db import make_engine, make_session_factory
    from kiln.sealed import rotate_secrets

    settings = get_settings()
    sessions = make_session_factory(make_engine(settings.database_url))
    count = rotate_secrets(sessions, settings)
    print(
        f"kiln: {count} secrets, credentials, GitHub tokens and hook secrets re-encrypted "
        "with the first KILN_SECRETS_KEY"
    )


def cmd_dev() -> None:
    from cli.dev import run_dev

    run_dev()


SERVER_COMMANDS = {
    "dev": (cmd_dev, "run the whole system on this machine"),
    "api": (cmd_api, "run the REST API, Socket.io and the dashboard"),
    "worker": (cmd_worker, "run a worker (builds on this host)"),
    "migrate": (cmd_migrate, "apply the database schema and register Temporal search attributes"),
    "rotate-secrets": (cmd_rotate_secrets, "re-encrypt secrets with the newest KILN_SECRETS_KEY"),
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
        from kiln.logconfig import configure_logging

        configure_logging(level=logging.INFO)  # KILN_LOG_FORMAT: text, or json
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
