"""The one progress display of every long command (import, synth, features, backtest, sweep).

The engine reports progress through plain ``progress(done, total)``
callbacks and never prints; this module turns them into a ``rich`` progress
bar on stderr (bar, percentage, done/total in the command's unit, elapsed
and remaining time). ``rich`` ships with Textual already, redraws at most
ten times a second from its own thread whatever the update rate, and fits
the bar to the terminal width; a hand-rolled ``\\r`` line was rejected
because it garbles on narrow SSH terminals and cannot show an ETA without
the same bookkeeping.

When stderr is not a terminal (tests, pipes, cron) nothing is displayed and
the engine gets ``None``, so it skips even the bookkeeping.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

Update = Callable[[float, float], None]


class ProgressBar:
    """One task's bar on ``stream`` (a terminal), closed once ``done >= total`` or by ``close``.

    Args:
        label: what is running, e.g. ``features`` or a file name.
        unit: the unit the done/total figures are shown in (``MB``, ``h``, ``combinations``).
        scale: raw units per shown unit (1e6 for bytes shown as MB).
        stream: the terminal to draw on.
    """

    def __init__(self, label: str, unit: str, scale: float, stream: IO[str]):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.unit, self.scale = unit, scale
        self.decimals = 0 if scale == 1 else 1
        console = Console(file=stream, force_terminal=True, highlight=False)
        self.display = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, redirect_stdout=False, redirect_stderr=False,
        )
        self.task = self.display.add_task(label, total=None, detail="")
        self.display.start()
        self.closed = False

    def update(self, done: float, total: float) -> None:
        if self.closed:
            return
        detail = f"{done / self.scale:.{self.decimals}f}/{total / self.scale:.{self.decimals}f} {self.unit}"
        self.display.update(self.task, completed=done, total=total, detail=detail)
        if done >= total:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.display.stop()


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


@contextmanager
def progress(label: str, unit: str = "", scale: float = 1.0, stream: IO[str] | None = None) -> Iterator[Update | None]:
    """A ``(done, total)`` callback drawing a bar while the block runs; None when ``stream`` is no terminal.

    Args:
        label: shown left of the bar.
        unit: shown after the done/total figures.
        scale: raw units per shown unit.
        stream: where to draw (default: sys.stderr at call time).
    """
    stream = sys.stderr if stream is None else stream
    if not is_terminal(stream):
        yield None
        return
    bar = ProgressBar(label, unit, scale, stream)
    try:
        yield bar.update
    finally:
        bar.close()


def notice(text: str, stream: IO[str] | None = None) -> None:
    """One line on stderr, e.g. that kernels are compiling (shown whether or not stderr is a terminal)."""
    print(f"pbdtui: {text}", file=sys.stderr if stream is None else stream, flush=True)
