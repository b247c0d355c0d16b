"""Resident memory of a process and its children, from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    except OSError:  # the process has just exited
        return found
    for task in tasks:
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_tree_rss(pid: int) -> list[int]:
    """RSS in bytes of `pid` and of each of its descendants (uvicorn's worker processes)."""
    sizes, pending = [], [pid]
    while pending:
        current = pending.pop()
        sizes.append(_rss_bytes(current))
        pending += _children(current)
    return [size for size in sizes if size]


def describe(sizes: list[int]) -> str:
    """`N MB` for one process; `largest N MB (k processes, total M MB)` for several."""
    mb = [size / 2**20 for size in sizes]
    if len(mb) <= 1:
        return f"{(mb or [0.0])[0]:.0f} MB"
    return f"largest {max(mb):.0f} MB ({len(mb)} processes, total {sum(mb):.0f} MB)"
