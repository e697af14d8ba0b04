"""A one-line progress bar on stderr (redrawn in place on a terminal, one line per step elsewhere sparingly)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24


class Progress:
    """`update(done, note)` redraws `label [#####.....] done/total note`; `close()` ends the line."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, min_interval_s: float = 0.5) -> None:
        self.label, self.total = label, max(int(total), 0)
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._min_interval = min_interval_s if self._tty else 5.0
        self._last = 0.0
        self._began = time.monotonic()
        self._line = ""

    def text(self, done: int, note: str = "") -> str:
        fraction = min(done / self.total, 1.0) if self.total else 1.0
        filled = round(fraction * BAR_WIDTH)
        elapsed = time.monotonic() - self._began
        return f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} {elapsed:.0f}s {note}"

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
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
