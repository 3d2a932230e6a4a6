"""A reorder buffer with a watermark: rows of separate topics merged into exchange-time order.

Trades and book updates arrive on separate WebSocket topics, each in its own
order, and the exchange does not interleave them by match time: a trade
stamped 10:00:00.120 can arrive after a quote stamped 10:00:00.150. The
engine needs one stream in exchange time, so rows wait here until the
watermark passes them:

* data watermark: everything ``grace_ms`` older than the newest exchange
  time seen is released (no topic is assumed to lag more than that);
* wall watermark: when no newer exchange time has arrived for ``grace_ms``
  of wall time, everything held is released (a quiet market must not hold
  the last trades back). It never moves past the newest time seen, so an
  accelerated or paused replay (whose exchange clock does not follow the
  wall) releases nothing early.

A row older than the watermark at arrival would have to be inserted into
what was already handed on; it is returned as *late* instead, to be passed
through flagged (the engine counts and drops it), never silently reordered.

Rows are structured arrays with a ``ts`` field (``TRADE_DTYPE`` and the
like), held per kind as the chunks they arrived in: an add is a comparison
with the watermark, a release one concatenation, a stable sort only when a
kind arrived out of order, and a binary search, whatever the rate.

Pure: no I/O and no clock; the caller passes wall time in (seconds, any
monotonic origin). Rejected: a heap of (ts, seq, row) over all topics; each
topic arrives nearly sorted, so per-topic chunks sorted only when a row
arrives out of order cost less and keep equal-ts rows in arrival order.
Rejected too: rows as tuples (the first version): converting every row to a
tuple and back cost more than decoding its frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_TS = -(1 << 62)


class ReorderBuffer:
    """Holds rows (structured arrays with an int64 ``ts`` field, exchange ms) of several kinds.

    Args:
        dtypes: one row dtype per kind (e.g. trades, quotes, funding).
        grace_ms: how far behind the newest exchange time a row may arrive
            and still be put in order.
        max_rows: rows held beyond this are released at once (bounded memory
            whatever the feed does).
    """

    def __init__(self, dtypes: Sequence[np.dtype], grace_ms: int = 200, max_rows: int = 1_000_000):
        if grace_ms < 0:
            raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
        self.dtypes = [np.dtype(d) for d in dtypes]
        self.grace_ms = int(grace_ms)
        self.max_rows = int(max_rows)
        self.pending: list[list[np.ndarray]] = [[] for _ in self.dtypes]
        self._sorted = [True] * len(self.dtypes)
        self._last = [NO_TS] * len(self.dtypes)  # ts of the last row held, per kind
        self.held = 0
        self.max_ts = NO_TS  # newest exchange time seen
        self.max_ts_wall = 0.0  # wall time when max_ts last advanced
        self.watermark = NO_TS  # every row with ts < watermark has been released
        self.late = 0  # rows returned as late, in all

    def add(self, kind: int, rows: np.ndarray, now: float) -> np.ndarray:
        """Take ``rows`` of ``kind`` received at wall time ``now``; returns the late ones (arrival order).

        A row is late when its ts is below the watermark at arrival.
        """
        if not len(rows):
            return rows[:0]
        ts = rows["ts"]
        behind = ts < self.watermark
        late = rows[:0]
        if behind.any():
            late, rows = rows[behind], rows[~behind]
            ts = rows["ts"]
            self.late += len(late)
            if not len(rows):
                return late
        if ts[0] < self._last[kind] or (len(ts) > 1 and bool((ts[1:] < ts[:-1]).any())):
            self._sorted[kind] = False
        self.pending[kind].append(rows)
        top = int(ts.max())
        self._last[kind] = max(self._last[kind], top)
        self.held += len(rows)
        if top > self.max_ts:
            self.max_ts = top
            self.max_ts_wall = now
        return late

    def due(self, now: float) -> int:
        """The watermark a release at ``now`` would reach (exclusive bound)."""
        w = self.max_ts - self.grace_ms + 1
        if now - self.max_ts_wall >= self.grace_ms / 1000.0 or self.held > self.max_rows:
            w = self.max_ts + 1
        return max(w, self.watermark)

    def release(self, now: float, flush: bool = False) -> list[np.ndarray] | None:
        """Rows below the new watermark, per kind and in ts order (equal ts: arrival order).

        Returns None when nothing is released. ``flush`` releases everything
        held (end of the feed).
        """
        w = self.max_ts + 1 if flush else self.due(now)
        if w > self.watermark:
            self.watermark = w
        if not self.held:
            return None
        out: list[np.ndarray] = []
        n = 0
        for kind, held in enumerate(self.pending):
            if not held or (self._sorted[kind] and held[0]["ts"][0] >= w):
                out.append(np.zeros(0, self.dtypes[kind]))
                continue
            rows = held[0] if len(held) == 1 else np.concatenate(held)
            if not self._sorted[kind]:
                rows = rows[np.argsort(rows["ts"], kind="stable")]  # stable: equal ts keep arrival order
                self._sorted[kind] = True
            i = int(np.searchsorted(rows["ts"], w, "left"))
            out.append(rows[:i])
            held[:] = [rows[i:]] if i < len(rows) else []
            n += i
        if not n:
            return None
        self.held -= n
        return out
