"""Console output: progress bars and tables, drawn by rich.

A :class:`Progress` bar on a terminal is a rich progress bar (bars opened
while another is running share its display, so a calibration bar shows under
the sweep bar).  Where the stream is not a terminal (a log file, a pipe, a
captured stream) it writes a plain line about every 10 % instead; with
``lowbit --quiet`` (:func:`set_quiet`) it writes nothing.  :func:`render_table`
renders a table as plain aligned text (ASCII rules, no colours), the same on
a terminal and in a file.

rich is imported only when a bar is drawn on a terminal or a table is
rendered, so ``import lowbit`` stays light.
"""
from __future__ import annotations

import sys
import time

_QUIET = False
_LIVE = {"progress": None, "open": 0}


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every progress bar of this process (``lowbit --quiet``)."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of ``total`` steps: ``label  120/600  loss 0.1230 acc 0.9800  310 img/s``.

    Parameters
    ----------
    total : int
        Number of steps (0 or None: unknown).
    label : str
    stream : file or None, optional
        Default: ``sys.stderr`` at the time of the call; ``None`` disables output.
    transient : bool
        A sub-step (e.g. calibration inside a sweep): drawn on a terminal and
        removed when done, no plain lines in logs.
    """

    def __init__(self, total, label: str = "", stream="stderr", transient: bool = False):
        self.total, self.label, self.transient = int(total or 0), label, transient
        self.stream = sys.stderr if stream == "stderr" else stream
        if _QUIET:
            self.stream = None
        self.start = time.perf_counter()
        self.done, self.images, self._next_log, self._last_line = 0, 0, 0.1, self.start
        self._bar = self._task = None
        if self.stream is not None and _is_terminal(self.stream):
            self._bar = _shared_bar(self.stream)
            self._task = self._bar.add_task(label, total=self.total or None, metrics="", rate="")
        elif transient:
            self.stream = None

    def update(self, steps: int = 1, images: int = 0, **metrics) -> None:
        """Advance by ``steps`` (``images`` processed), showing ``metrics`` (name: float)."""
        self.done += steps
        self.images += images
        if self.stream is None:
            return
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, metrics=self._metrics(metrics), rate=self._rate(now))
            return
        if self.total:
            frac = self.done / self.total
            if frac + 1e-9 < self._next_log and self.done < self.total:
                return
            self._next_log = (int(frac * 10) + 1) / 10
        elif now - self._last_line < 5.0:
            return
        self._last_line = now
        self.stream.write(self.line(metrics, now) + "\n")
        self.stream.flush()

    def _metrics(self, metrics) -> str:
        return " ".join(f"{k} {v:.4f}" for k, v in metrics.items())

    def _rate(self, now) -> str:
        return f"{self.images / max(now - self.start, 1e-9):,.0f} img/s" if self.images else ""

    def line(self, metrics, now=None) -> str:
        """The plain-text line for logs."""
        now = time.perf_counter() if now is None else now
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        parts = [self.label, count, self._metrics(metrics), self._rate(now) or "0 img/s", f"{now - self.start:.1f} s"]
        return "  ".join(p for p in parts if p)

    def close(self) -> None:
        if self._bar is not None:
            if self.transient:
                self._bar.remove_task(self._task)
            _release_bar()
            self._bar = None
        self.stream = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _shared_bar(stream):
    """The rich progress display of this process, started on first use."""
    if _LIVE["progress"] is None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        console = Console(file=stream, highlight=False)
        bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[metrics]}"), TextColumn("{task.fields[rate]}"),
                           TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        bar.start()
        if "registered" not in _LIVE:  # a bar left open by an exception still gives the cursor back at exit
            import atexit

            atexit.register(lambda: _LIVE["progress"] is not None and _LIVE["progress"].stop())
            _LIVE["registered"] = True
        _LIVE["progress"] = bar
    _LIVE["open"] += 1
    return _LIVE["progress"]


def _release_bar() -> None:
    _LIVE["open"] -= 1
    if _LIVE["open"] <= 0 and _LIVE["progress"] is not None:
        _LIVE["progress"].stop()
        _LIVE["progress"], _LIVE["open"] = None, 0


def _ascii_box():
    from rich.box import Box

    # rich's SIMPLE_HEAD with an ASCII rule: any console encoding can print it
    return Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def render_table(header, rows, align=None) -> str:
    """``header`` and ``rows`` (lists of str) as aligned plain text: header, a rule of dashes, the rows.

    ``align``: one ``"left"``/``"right"`` per column (default: the first left, the others right).
    Cells are shown verbatim (no rich markup is interpreted).
    """
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    align = align or ["left"] + ["right"] * (len(header) - 1)
    table = Table(box=_ascii_box(), show_edge=False, pad_edge=False, highlight=False, collapse_padding=True)
    for title, justify in zip(header, align):
        table.add_column(Text(str(title)), justify=justify, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(str(c)) for c in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, force_terminal=False, force_interactive=False,
            legacy_windows=False, emoji=False, markup=False, highlight=False).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
