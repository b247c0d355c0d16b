"""The benchmark harness, in its short form, end to end: it must keep printing every figure (so
it cannot rot unnoticed). What the numbers are is not judged here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Each row the table must have, by the start of its figure's name.
ROWS = [
    "POST rebuild → `passed` event",
    "rebuild POST answered",
    "POST → `running` event",
    "`GET /api/build/:id`, 1 connection",
    "`GET /api/build/:id`, 32 connections",
    "`GET /api/build/:id`, 128 connections",
    "`GET /api/project/projects`",
    "Socket.io fan-out",
    "fan-out: events of that build at other users' sockets",
    "16 builds over 8 projects",
    "`kiln api` resident memory, idle",
    "`kiln api` resident memory, peak under the burst",
    "`kiln worker` resident memory, idle",
    "`kiln worker` resident memory, peak under the burst",
    "worker kill -9 mid-build, same host back",
    "worker host gone for good",
]


def test_the_quick_benchmark_prints_every_figure_with_a_number() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| figure | sqlite: Kiln | sqlite: raw | sqlite: ratio |")
    assert not [row for row in rows if "FAILED" in row or "not within" in row], done.stdout
    for name in ROWS:
        matching = [row for row in rows if row.startswith(f"| {name}")]
        assert matching, f"no row {name!r} in:\n{done.stdout}"
        kiln_cell = matching[0].split(" | ")[1]
        assert re.search(r"\d", kiln_cell), f"{name!r} has no number: {matching[0]}"
