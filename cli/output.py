"""What the CLI prints: plain tables for people, the API's JSON with --json."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is never padded."""
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def first_line(text: str | None) -> str:
    line = (text or "").strip().split("\n", 1)[0]
    return line[:60] + "…" if len(line) > 61 else line


def ago(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 60:
        return "just now" if seconds < 10 else f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def took(build: dict[str, Any], now: datetime | None = None) -> str:
    if build.get("status") == "queued" or not build.get("startedAt"):
        return ""
    start = datetime.fromisoformat(build["startedAt"].replace("Z", "+00:00"))
    end_text = build.get("finishedAt")
    end = datetime.fromisoformat(end_text.replace("Z", "+00:00")) if end_text else None
    seconds = int(((end or now or datetime.now(UTC)) - start).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def builds_table(builds: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            f"#{b['id']}",
            b["status"] + (f" ({b['queuePosition']} in queue)" if b.get("queuePosition") else ""),
            b["branch"],
            b["commitHash"][:7],
            took(b),
            ago(b.get("startedAt")),
            first_line(b.get("commit")),
        ]
        for b in builds
    ]
    return table(["BUILD", "STATUS", "BRANCH", "COMMIT", "TOOK", "QUEUED", "MESSAGE"], rows)


def build_details(build: dict[str, Any]) -> str:
    project = build.get("project") or {}
    exit_code = build.get("exitCode")
    pairs = [
        ("Build", f"#{build['id']}"),
        ("Status", build["status"]),
        ("Project", f"{project.get('name', '')} (#{build['projectId']})"),
        ("Exit code", "-" if exit_code is None else str(exit_code)),
        ("Commit", build["commitHash"]),
        ("Message", first_line(build.get("commit"))),
        ("Branch", build["branch"]),
        ("Author", build.get("commitAuthor") or "-"),
        ("Queued", f"{build['startedAt']} ({ago(build['startedAt'])})"),
        ("Finished", build.get("finishedAt") or "-"),
        ("Took", took(build) or "-"),
    ]
    if build.get("queuePosition"):
        pairs.append(("In queue", f"{build['queuePosition']} (1 starts next)"))
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in pairs)


def error(message: str) -> None:
    print(f"kiln: {message}", file=sys.stderr)
