"""Numba kernel of the store's duplicate check (``engine.store._repeated``).

Ticks are keyed on int64 columns whose first is the exchange time, so two
equal keys always sit in the same run of equal times. On rows sorted by
time (stable, so "earlier" keeps its meaning) each run is checked on its
own: a short run row by row against the distinct keys seen so far in the
run, a long one (a sweep of the book: hundreds of trades in one
millisecond, or a hostile file with one time) through a sort of row hashes.
Linear in the rows where the hash-and-sort of every row it replaced cost
about 60 ms per 262k-row chunk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SHORT_RUN = 32  # runs up to this long compare row by row


@njit(cache=True, nogil=True)
def _same(keys, a, b):  # noqa: ANN001, ANN202
    for j in range(keys.shape[1]):
        if keys[a, j] != keys[b, j]:
            return False
    return True


@njit(cache=True, nogil=True)
def _hash(keys, i):  # noqa: ANN001, ANN202
    h = np.uint64(0)
    for j in range(keys.shape[1]):
        h = (h ^ np.uint64(keys[i, j])) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
    return h


@njit(cache=True, nogil=True)
def repeated_in_runs(keys, out):  # noqa: ANN001, ANN201
    """``out[i]``: row i's key equals an earlier row's; ``keys[:, 0]`` must be non-decreasing.

    Returns the number of repeated rows.
    """
    n = keys.shape[0]
    count = 0
    reps = np.empty(SHORT_RUN, dtype=np.int64)
    a = 0
    while a < n:
        b = a + 1
        while b < n and keys[b, 0] == keys[a, 0]:
            b += 1
        out[a] = False
        if b - a <= SHORT_RUN:
            n_reps = 1
            reps[0] = a
            for i in range(a + 1, b):
                dup = False
                for r in range(n_reps):
                    if _same(keys, reps[r], i):
                        dup = True
                        break
                out[i] = dup
                if dup:
                    count += 1
                else:
                    reps[n_reps] = i
                    n_reps += 1
        else:
            hashes = np.empty(b - a, dtype=np.uint64)
            for i in range(a, b):
                hashes[i - a] = _hash(keys, i)
            order = np.argsort(hashes, kind="mergesort")  # stable: rows of one hash stay in row order
            g = 0
            while g < b - a:
                h = g + 1
                while h < b - a and hashes[order[h]] == hashes[order[g]]:
                    h += 1
                out[a + order[g]] = False
                for x in range(g + 1, h):  # equal hashes: compare exactly with the group's earlier keys
                    i = a + order[x]
                    dup = False
                    for y in range(g, x):
                        k = a + order[y]
                        if not out[k] and _same(keys, k, i):
                            dup = True
                            break
                    out[i] = dup
                    if dup:
                        count += 1
                g = h
        a = b
    return count
