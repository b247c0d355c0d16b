"""Masking secret values in a stream of output: every occurrence of a value of MIN_LENGTH or more
characters becomes `***`, also when the stream splits it across two chunks.

A stream is masked piece by piece with `split`: what is certainly free of a partial value is
masked and handed on; the shortest tail that could still be the start of a value stays back
until more output arrives (or the stream ends, `final`). Most output ends in a newline that no
value starts with, so almost nothing waits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"
# Shorter values are not masked: masking `1` or `on` would garble every log.
MIN_LENGTH = 4
# Values up to this long have their possible partial starts looked for exactly; longer ones
# keep back a fixed len(value) - 1 bytes (looking exactly would cost too much per chunk).
_EXACT_TAIL = 256


class Masker:
    """Masks a fixed set of values (UTF-8 bytes) in output."""

    def __init__(self, values: Iterable[str]) -> None:
        found = {value.encode() for value in values if len(value) >= MIN_LENGTH}
        # Longest first: where two values start at one place, the longer one is masked whole.
        self._values = sorted(found, key=lambda v: (-len(v), v))
        self._pattern = (
            re.compile(b"|".join(re.escape(value) for value in self._values))
            if self._values
            else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, data: bytes) -> bytes:
        """`data` with every value masked (for a whole text: nothing comes after it)."""
        return self._pattern.sub(MASK, data) if self._pattern is not None else data

    def mask_text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self.mask(text.encode(errors="surrogateescape")).decode(errors="surrogateescape")

    def split(self, data: bytes, *, final: bool = False) -> tuple[bytes, bytes]:
        """(`data` masked up to where a value may still be starting, the raw rest). Feed the
        rest back in front of the next chunk; with `final`, nothing is kept back."""
        if self._pattern is None or final:
            return self.mask(data), b""
        cut = self._hold_from(data)
        out = []
        done = 0
        for match in self._pattern.finditer(data):
            if match.start() >= cut:
                break
            out += [data[done : match.start()], MASK]
            done = match.end()
        # A whole value that runs past the cut is masked whole: the rest starts after it.
        cut = max(cut, done)
        out.append(data[done:cut])
        return b"".join(out), data[cut:]

    def _hold_from(self, data: bytes) -> int:
        """Where the earliest possible partial value at the end of `data` starts (len(data)
        when none may)."""
        size = len(data)
        hold = size
        for value in self._values:
            first = max(0, size - len(value) + 1)
            if first >= hold:
                continue
            if len(value) > _EXACT_TAIL:
                hold = first
                continue
            start = data.find(value[:1], first)
            while 0 <= start < hold:
                if value.startswith(data[start:]):
                    hold = start
                    break
                start = data.find(value[:1], start + 1)
        return hold
