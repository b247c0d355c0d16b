"""Where a build's checkout lives on its worker host: one directory per build, named for it."""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^build-(\d+)$")


def workspace_name(build_id: int) -> str:
    return f"build-{build_id}"


def workspace_path(root: Path, build_id: int) -> Path:
    return (root / workspace_name(build_id)).resolve()


def build_id_of(name: str) -> int | None:
    """The build a workspace directory belongs to, or None for anything else."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None
