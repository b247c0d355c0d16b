"""Where the CLI keeps its server and token: `~/.config/kiln/config.json` (mode 0600), or the
file `KILN_CONFIG` names. `KILN_SERVER` and `KILN_TOKEN` override what the file says."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


class NotLoggedIn(Exception):
    pass


@dataclass(frozen=True)
class Login:
    server: str
    token: str


def config_path() -> Path:
    named = os.environ.get("KILN_CONFIG")
    if named:
        return Path(named)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "kiln" / "config.json"


def _stored() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str)}


def current() -> Login:
    """The server and token to use; NotLoggedIn when either is missing."""
    stored = _stored()
    server = os.environ.get("KILN_SERVER") or stored.get("server")
    token = os.environ.get("KILN_TOKEN") or stored.get("token")
    if not server or not token:
        raise NotLoggedIn("not logged in: run `kiln login --server URL --email EMAIL`")
    return Login(server.rstrip("/"), token)


def save(login: Login) -> Path:
    """Write the file readable by its owner only (it holds a credential)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps({"server": login.server, "token": login.token}, indent=2) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(data)
    path.chmod(0o600)  # an older file keeps its mode through O_CREAT
    return path


def forget() -> bool:
    """Remove the stored login; False when there was none."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
