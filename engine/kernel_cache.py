"""Whether the numba kernels a command needs are compiled on disk yet.

``engine.kernels`` points numba's cache at a directory named after a hash of
every kernel source (``engine.kernels._cache_dir``), so after an install or
an upgrade the cache is empty and the first run compiles for 40-60 s. The
CLI asks here first and tells the user, instead of sitting silent; the
engine itself prints nothing.

A kernel is cached once numba has written its index file
(``<module>.<function>-<line>.pyXY.nbi``) under the cache directory. Only
the entry points are checked: compiling one compiles (and caches) everything
it calls. A cached index with a missing type signature still compiles that
signature; that costs seconds, not a minute, and is not reported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# entry-point kernels per driver (module.function as in numba's index file names)
SYNTH = ("synth.synth_block",)
EVENTS = ("loop.run_events",)  # features, tick backtest, console replay
BARS = ("barmode.run_bars",)
MINUTES = ("minutepass.quotes_on_minutes",)


def cache_dir() -> Path:
    """The directory numba caches the kernels in (``NUMBA_CACHE_DIR`` once ``engine.kernels`` set it)."""
    from engine import kernels

    return Path(os.environ.get("NUMBA_CACHE_DIR") or kernels._cache_dir())


def uncompiled(names: Iterable[str], root: str | os.PathLike[str] | None = None) -> list[str]:
    """The kernels of ``names`` (``module.function``) with no index file in the cache yet.

    Args:
        names: entry points, e.g. ``EVENTS``.
        root: the cache directory to look in (default ``cache_dir()``).
    """
    root = cache_dir() if root is None else Path(root)
    if not root.is_dir():
        return list(names)
    present = {p.name.rsplit("-", 1)[0] for p in root.glob("**/*.nbi")}
    return [name for name in names if name not in present]
