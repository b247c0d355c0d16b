"""Keep Socket.io's client-side HTTP libraries out of an API process.

`import socketio` imports its client classes too, and engine.io's clients import `requests` and
`aiohttp` when they are installed (both are here: Docker's SDK and the tests need them). That
is about 19 MB resident in every API process, for code a server never runs. Both imports are
optional in engine.io (it falls back to None), so while socketio is first imported they are
marked missing, then unmarked at once: anything imported later may still use them."""

from __future__ import annotations

import importlib
import sys

CLIENT_ONLY = ("requests", "aiohttp")


def import_socketio_server_only() -> None:
    if "socketio" in sys.modules:
        return
    blocked = [name for name in CLIENT_ONLY if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's "not importable" mark
    try:
        importlib.import_module("socketio")
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
