"""Numba kernels: arrays and scalars in, caller-allocated arrays out.

LLVM may rewrite a loop such as ``while ts >= nxt: nxt += STEP`` into a
closed-form trip count that uses 128-bit division helpers (``__udivti3`` and
friends). llvmlite's JIT does not link them on every platform: on this
project's machines the call resolved to a null address and crashed the
process. We register libgcc's implementations once, before any kernel
compiles (rewriting every such loop by hand was rejected: it is an optimizer
decision we cannot see from the source).

Numba's on-disk cache keys each function on its own file only, so a loop in
``loop.py`` would keep a stale inlined copy of ``strategy.decide`` after
``strategy.py`` changed. The cache directory is therefore named after a hash
of every kernel source file: any kernel edit starts a fresh cache.

Loading the first kernel makes numba import its array-math registry, which
probes for a BLAS by importing ``scipy.linalg`` (a second of imports, half
of a daemon's start). No kernel calls BLAS (numba falls back to plain loops
for ``np.dot`` when it has none), so the registry is imported here with
``scipy.linalg`` hidden (not ``scipy``: numba imports that for its version
check when another module imported numba first); both stay importable for
everything else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import sys
from pathlib import Path


def _cache_dir() -> str:
    sources = sorted(Path(__file__).parent.glob("*.py"))
    digest = hashlib.blake2b(digest_size=8)
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pbdtui"
    return str(base / f"numba-{digest.hexdigest()}")


def _set_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return  # the user chose one
    path = _cache_dir()
    os.environ["NUMBA_CACHE_DIR"] = path
    try:  # owner-only before numba makes it with the umask's 0755 (engine.private)
        from engine.private import private_dir

        private_dir(Path(path).parent, tighten=True)
        private_dir(path, tighten=True)
    except OSError:  # a read-only home: numba reports its own cache problem, or runs without
        pass
    if "numba" in sys.modules:  # already configured: point the live config at it
        import numba.core.config

        numba.core.config.CACHE_DIR = path


def _register_int128_helpers() -> None:
    try:
        import llvmlite.binding as llvm

        lib = ctypes.CDLL(ctypes.util.find_library("gcc_s") or "libgcc_s.so.1")
    except OSError:  # no libgcc_s: nothing to register; LLVM may still link its own
        return
    for name in ("__udivti3", "__divti3", "__umodti3", "__modti3"):
        func = getattr(lib, name, None)
        if func is not None:
            llvm.add_symbol(name, ctypes.cast(func, ctypes.c_void_p).value)


def _array_math_without_blas() -> None:
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return  # loaded already (the probe ran, or costs nothing more)
    # the probe's import fails at once: no BLAS (numba itself imports scipy first, for its version, when
    # another module imported numba before this package)
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules["scipy.linalg"]


_set_cache_dir()
_register_int128_helpers()
_array_math_without_blas()
