"""`GET /api/build/:id` under wrk, beside wrk against the ceiling app (benchmarks.ceiling)
served by as many uvicorn processes as the API has."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from benchmarks.table import Figure, ratio
from cli.temporal_server import wait_for_port
from testbed.stack import free_port

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class Load:
    """What wrk reported."""

    requests_per_second: float
    p50: float  # seconds
    p99: float
    errors: int  # non-2xx answers, and connections that failed or timed out

    def describe(self) -> str:
        text = f"{self.requests_per_second:,.0f} req/s, p50 {_ms(self.p50)} / p99 {_ms(self.p99)}"
        return text + (f", {self.errors} errors" if self.errors else "")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def parse_wrk(output: str) -> Load:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    if not (rps and p50 and p99):
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    return Load(float(rps.group(1)), _seconds(p50.group(1)), _seconds(p99.group(1)), errors)


def wrk(url: str, connections: int, seconds: float, headers: dict[str, str]) -> Load:
    threads = min(2, connections)
    command = ["wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s"]
    command += ["--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run(command + [url], capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


@contextmanager
def ceiling_app(processes: int) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "benchmarks.ceiling:app", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log", "--workers", str(processes)]
    server = subprocess.Popen(command)
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield f"http://127.0.0.1:{port}/api/build/1"
    finally:
        server.terminate()
        server.wait(30)


def read_figures(
    url: str, headers: dict[str, str], processes: int, seconds: float, connections: list[int]
) -> list[Figure]:
    kiln = {c: wrk(url, c, seconds, headers) for c in connections}
    with ceiling_app(processes) as ceiling_url:
        ceiling = {c: wrk(ceiling_url, c, seconds, {}) for c in connections}
    return [
        Figure(
            f"`GET /api/build/:id`, {c} connection{'s' if c > 1 else ''} (wrk)",
            kiln[c].describe(),
            ceiling[c].describe() + " (minimal uvicorn app)",
            ratio(kiln[c].requests_per_second, ceiling[c].requests_per_second),
        )
        for c in connections
    ]
