"""An API process imports Socket.io without its clients' HTTP libraries and python-jose without
`cryptography` (cli.lean_imports), and nothing else is kept from importing them afterwards.
Each case runs in a fresh interpreter: what one import does to `sys.modules` must not leak
between tests."""

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
        from cli.lean_imports import import_server_only
        import_server_only()
        import api.main
        heavy = ("requests", "aiohttp", "httpx", "docker", "psycopg", "cryptography", "rsa")
        heavy += ("activities", "workflows.build")
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    assert out == "[]"


def test_the_libraries_it_kept_out_can_still_be_imported_later() -> None:
    out = run_fresh(
        """
        from cli.lean_imports import import_server_only
        import_server_only()
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
        from cli.lean_imports import import_server_only
        import_server_only()
        print(engineio.async_client.aiohttp is not None)
        """
    )
    assert out == "True"


def test_tokens_are_made_and_checked_without_cryptography_and_secrets_load_it_when_used() -> None:
    out = run_fresh(
        """
        import sys
        from cli.lean_imports import import_server_only
        import_server_only()
        import api.main
        from api.security import create_token, user_id_from_token
        from kiln.crypto import SecretBox, generate_key
        import jose.backends

        token = create_token(7, "s" * 32, ttl_seconds=60)
        box = SecretBox(generate_key())  # the key is checked, nothing is loaded yet
        print(user_id_from_token(token, "s" * 32), jose.backends.HMACKey.__module__)
        print("cryptography" in sys.modules)
        print(box.open(box.seal("v", "c"), "c"), "cryptography" in sys.modules)
        """
    )
    assert out.splitlines() == ["7 jose.backends.native", "False", "v True"]
