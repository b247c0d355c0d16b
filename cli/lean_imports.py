"""Keep libraries an API process never runs out of it, when their importers would load them
only because they are installed.

- `import socketio` imports its client classes too, and engine.io's clients import `requests`
  and `aiohttp` (both are here: Docker's SDK and the tests need them): about 19 MB resident in
  every API process. Both imports are optional in engine.io (it falls back to None).
- python-jose takes `cryptography` as its backend when it can import it, else `rsa` (with
  `pyasn1`) for RSA keys: about 9 MB in all. Kiln's tokens are HS256 only, for which jose's own
  backend is Python's `hmac`; Kiln's secrets load `cryptography` themselves when one is first
  sealed or opened (kiln.crypto).

Each library is marked missing only while its importer is first imported, then unmarked at
once: anything imported later may still use it."""

from __future__ import annotations

import importlib
import sys

KEPT_OUT = {"socketio": ("requests", "aiohttp"), "jose.jwt": ("cryptography", "rsa", "pyasn1")}


def import_server_only() -> None:
    for module, libraries in KEPT_OUT.items():
        _import_without(module, libraries)


def _import_without(module: str, libraries: tuple[str, ...]) -> None:
    if module in sys.modules:
        return
    blocked = [name for name in libraries if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's "not importable" mark
    try:
        importlib.import_module(module)
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
