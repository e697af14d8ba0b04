"""A one-line progress bar on stderr with a rate and an ETA (redrawn in place on a terminal, a line every few seconds
elsewhere)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """`update(done, note)` redraws `label [#####.....] done/total 12s, 3.4 unit/s, ETA 20s note`; `close()` ends
    the line."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None = None,
        min_interval_s: float = 0.5,
        unit: str = "steps",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit, self._clock = label, max(int(total), 0), unit, clock
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._min_interval = min_interval_s if self._tty else 5.0
        self._last = 0.0
        self._began = clock()
        self._line = ""

    def text(self, done: int, note: str = "") -> str:
        fraction = min(done / self.total, 1.0) if self.total else 1.0
        filled = round(fraction * BAR_WIDTH)
        elapsed = self._clock() - self._began
        timing = duration(elapsed)
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            timing += f", {rate:.3g} {self.unit}/s"
            if done < self.total:
                timing += f", ETA {duration((self.total - done) / rate)}"
        return f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} {timing} {note}"

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self._min_interval and done < self.total:
            return
        self._last = now
        self._line = self.text(done, note).rstrip()
        if self._tty:
            self._stream.write("\r\x1b[K" + self._line)
        else:
            self._stream.write(self._line + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._line:
            self._stream.write("\n")
            self._stream.flush()
