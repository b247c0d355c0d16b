"""Figures and the one markdown table the harness prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

NONE = "—"


@dataclass(frozen=True)
class Figure:
    """One measured row for one database: Kiln's value beside its raw reference, as text."""

    name: str
    kiln: str
    raw: str = NONE
    ratio: str = NONE


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile (p99 of 20 samples is the largest)."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def p50_p99(samples: list[float]) -> str:
    """Seconds as `p50 / p99` in milliseconds."""
    return f"{ms(percentile(samples, 0.5))} / {ms(percentile(samples, 0.99))}"


def ratio(kiln: float, raw: float) -> str:
    return f"{kiln / raw:.2f}" if raw else NONE


def markdown(results: dict[str, list[Figure]]) -> str:
    """One table: a row per figure, for each database its Kiln value, raw value and ratio."""
    databases = list(results)
    names: list[str] = []
    for figures in results.values():
        names += [f.name for f in figures if f.name not in names]
    by_db = {db: {f.name: f for f in figures} for db, figures in results.items()}
    header = ["figure"]
    for db in databases:
        header += [f"{db}: Kiln", f"{db}: raw", f"{db}: ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        cells = [name]
        for db in databases:
            figure = by_db[db].get(name, Figure(name, NONE))
            cells += [figure.kiln, figure.raw, figure.ratio]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
