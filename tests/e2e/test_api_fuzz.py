"""Schemathesis over the running API's /openapi.json, every check, a short run with a fixed
seed (the longer run with other seeds: `testbed/fuzz_api.py`). It fails on any 5xx, any status
the schema does not list, any answer that breaks its declared model, a schema-valid request
refused or a schema-invalid one accepted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Loopback only: nothing the fuzzer makes up (repository URLs, registries) can leave the machine.
ISOLATED = ["unshare", "--user", "--map-root-user", "--net", "sh", "-c"]


def test_schemathesis_finds_nothing_over_the_whole_api() -> None:
    fuzz = f"ip link set lo up && exec {sys.executable} -m testbed.fuzz_api"
    options = "--checks all --max-examples 25 --seed 20261201 --workers 1 --no-color"
    run = subprocess.run(
        [*ISOLATED, f"{fuzz} {options}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "Tested: " in run.stdout, report
