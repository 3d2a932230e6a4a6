"""Numba kernels: arrays and scalars in, caller-allocated arrays out.

LLVM may rewrite a loop such as ``while ts >= nxt: nxt += STEP`` into a
closed-form trip count that uses 128-bit division helpers (``__udivti3`` and
friends). llvmlite's JIT does not link them on every platform: on this
project's machines the call resolved to a null address and crashed the
process. We register libgcc's implementations once, before any kernel
compiles (rewriting every such loop by hand was rejected: it is an optimizer
decision we cannot see from the source).
"""

from __future__ import annotations

import ctypes
import ctypes.util


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


_register_int128_helpers()
