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

Pure: no I/O and no clock; the caller passes wall time in (seconds, any
monotonic origin). Rejected: a heap of (ts, seq, row) over all topics; each
topic arrives nearly sorted, so per-topic lists sorted only when a row
arrives out of order cost less and keep equal-ts rows in arrival order.
"""

from __future__ import annotations

from bisect import bisect_left
from operator import itemgetter

_TS = itemgetter(0)
NO_TS = -(1 << 62)


class ReorderBuffer:
    """Holds rows (tuples whose first field is the exchange ts, ms) of several kinds.

    Args:
        kinds: number of row kinds (e.g. 3: trades, quotes, funding).
        grace_ms: how far behind the newest exchange time a row may arrive
            and still be put in order.
        max_rows: rows held beyond this are released at once (bounded memory
            whatever the feed does).
    """

    def __init__(self, kinds: int = 3, grace_ms: int = 200, max_rows: int = 1_000_000):
        if grace_ms < 0:
            raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
        self.grace_ms = int(grace_ms)
        self.max_rows = int(max_rows)
        self.pending: list[list[tuple]] = [[] for _ in range(kinds)]
        self._sorted = [True] * kinds
        self.held = 0
        self.max_ts = NO_TS  # newest exchange time seen
        self.max_ts_wall = 0.0  # wall time when max_ts last advanced
        self.watermark = NO_TS  # every row with ts < watermark has been released
        self.late = 0  # rows returned as late, in all

    def add(self, kind: int, rows: list[tuple], now: float) -> list[tuple]:
        """Take ``rows`` of ``kind`` received at wall time ``now``; returns the late ones.

        A row is late when its ts is below the watermark at arrival.
        """
        if not rows:
            return []
        late: list[tuple] = []
        held = self.pending[kind]
        w = self.watermark
        top = self.max_ts
        last = held[-1][0] if held else NO_TS
        in_order = self._sorted[kind]
        for row in rows:
            ts = row[0]
            if ts < w:
                late.append(row)
                continue
            if ts < last:
                in_order = False
            else:
                last = ts
            held.append(row)
            if ts > top:
                top = ts
        self._sorted[kind] = in_order
        self.held += len(rows) - len(late)
        if top > self.max_ts:
            self.max_ts = top
            self.max_ts_wall = now
        self.late += len(late)
        return late

    def due(self, now: float) -> int:
        """The watermark a release at ``now`` would reach (exclusive bound)."""
        w = self.max_ts - self.grace_ms + 1
        if now - self.max_ts_wall >= self.grace_ms / 1000.0 or self.held > self.max_rows:
            w = self.max_ts + 1
        return max(w, self.watermark)

    def release(self, now: float, flush: bool = False) -> list[list[tuple]] | None:
        """Rows below the new watermark, per kind and in ts order (equal ts: arrival order).

        Returns None when nothing is released. ``flush`` releases everything
        held (end of the feed).
        """
        w = self.max_ts + 1 if flush else self.due(now)
        if w > self.watermark:
            self.watermark = w
        if not self.held:
            return None
        out: list[list[tuple]] = []
        n = 0
        for kind, held in enumerate(self.pending):
            if not held or held[0][0] >= w and self._sorted[kind]:
                out.append([])
                continue
            if not self._sorted[kind]:
                held.sort(key=_TS)  # stable: equal ts keep arrival order
                self._sorted[kind] = True
            i = bisect_left(held, w, key=_TS)
            out.append(held[:i])
            del held[:i]
            n += i
        if not n:
            return None
        self.held -= n
        return out
