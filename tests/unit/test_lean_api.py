"""An API process imports Socket.io without its clients' HTTP libraries (cli.lean_imports), and
nothing else is kept from importing them afterwards. Each case runs in a fresh interpreter:
what one import does to `sys.modules` must not leak between tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_api_app_loads_no_socketio_client_library_and_no_worker_code() -> None:
    out = run_fresh(
        """
        import sys
        from cli.lean_imports import import_socketio_server_only
        import_socketio_server_only()
        import api.main
        heavy = ("requests", "aiohttp", "httpx", "docker", "psycopg")
        heavy += ("activities", "workflows.build")
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    assert out == "[]"


def test_the_libraries_it_kept_out_can_still_be_imported_later() -> None:
    out = run_fresh(
        """
        from cli.lean_imports import import_socketio_server_only
        import_socketio_server_only()
        import socketio
        import engineio.async_client
        import requests, aiohttp
        server = socketio.AsyncServer(async_mode="asgi")
        print(engineio.async_client.aiohttp is None, requests.__name__, aiohttp.__name__)
        """
    )
    assert out == "True requests aiohttp"


def test_socketio_imported_first_is_left_as_it_is() -> None:
    out = run_fresh(
        """
        import socketio, engineio.async_client
        from cli.lean_imports import import_socketio_server_only
        import_socketio_server_only()
        print(engineio.async_client.aiohttp is not None)
        """
    )
    assert out == "True"
