"""A minimal progress bar on stderr."""
from __future__ import annotations

import sys
import time


class Progress:
    """Text progress bar: ``label [#####.....] 120/600 loss 0.123 acc 0.98 310 img/s``.

    On a terminal the line is redrawn in place; otherwise (a log file) a line is
    written about every 10 % so logs stay readable.

    Parameters
    ----------
    total : int
        Number of steps.
    label : str
    stream : file, optional
        Default ``sys.stderr``; ``None`` disables output.
    """

    def __init__(self, total, label="", stream=sys.stderr, width=24):
        self.total, self.label, self.stream, self.width = total, label, stream, width
        self.tty = bool(stream) and hasattr(stream, "isatty") and stream.isatty()
        self.start = self.last = time.perf_counter()
        self.done, self.images, self._next_log = 0, 0, 0.1

    def update(self, steps=1, images=0, **metrics):
        self.done += steps
        self.images += images
        if not self.stream:
            return
        now = time.perf_counter()
        frac = self.done / max(1, self.total)
        if self.tty:
            if now - self.last < 0.2 and self.done < self.total:
                return
        elif frac + 1e-9 < self._next_log and self.done < self.total:
            return
        else:
            self._next_log = (int(frac * 10) + 1) / 10
        self.last = now
        self.stream.write(("\r" if self.tty else "") + self.line(metrics, now) + ("" if self.tty else "\n"))
        self.stream.flush()

    def line(self, metrics, now=None):
        now = time.perf_counter() if now is None else now
        filled = int(self.width * self.done / max(1, self.total))
        bar = "#" * filled + "." * (self.width - filled)
        rate = self.images / max(now - self.start, 1e-9)
        text = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        return f"{self.label} [{bar}] {self.done}/{self.total} {text} {rate:.0f} img/s"

    def close(self):
        if self.stream and self.tty:
            self.stream.write("\n")
            self.stream.flush()
