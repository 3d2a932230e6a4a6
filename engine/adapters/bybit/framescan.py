"""Batch fast path of ``frames.FrameDecoder``: the two common frames decoded straight from bytes.

``scan_frames`` reads frames laid end to end in one byte buffer and decodes,
without building a dict or tuple per frame, the two kinds that make almost
all of a BTCUSDT stream:

* an ``orderbook.<depth>.<SYM>`` **snapshot of one bid and one ask** (Bybit's
  linear L1 sends nothing else), into a quote row when the L1 changed;
* a ``publicTrade.<SYM>`` frame whose trades are all valid and carry UUID
  ids, into trade rows.

It accepts only a strict subset of JSON (no blanks, no escapes, ASCII, no
repeated key, unknown keys only with a string, integer, true, false or null
value; prices and sizes as plain decimal text of at most 15 digits) and only
frames that the per-frame path would decode without complaint. Anything else
(tickers, acks, deltas, ``u == 1`` resets, other symbols, any bad or odd
value) stops the scan at that frame: the caller decodes it with
``FrameDecoder.decode`` (which says what is wrong) and resumes after it, so
results, counts and book state are those of frame-by-frame decoding.

Numbers are the per-frame path's: a decimal text of at most 15 digits is an
integer below 2**53 divided by a power of ten at most 1e15, both exact, so
the IEEE quotient is the correctly rounded value ``float(text)`` returns;
ticks and lots are then computed with the same operations, ``np.rint``
rounding half-to-even like ``round``.

A pure kernel (numpy and numba only), like ``engine.kernels``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.types import MAX_PRICE_TICKS, MAX_SIZE_LOTS, SIDE_BUY, SIDE_SELL

GRID_TOLERANCE = 1e-6  # |price / tick_size - round(...)| above this is off the grid (as the CSV importers)
TS_MIN_MS = 1_262_304_000_000  # 2010-01-01: an exchange time before this is absurd
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01

# state slots (int64 array, kept by the caller between calls)
S_TRADES = 0  # trade rows written so far
S_QUOTES = 1  # quote rows written so far
S_HAS_L1 = 2  # 1 when S_L1.. hold the last L1 (the row dedup of the per-frame path)
S_L1 = 3  # 4 slots: bid ticks, bid lots, ask ticks, ask lots
S_BOOK = 7  # 1 when a snapshot was applied by this scan (the caller resets its book to S_L1)
STATE_SIZE = 8

_QUOTE, _COMMA, _COLON = 34, 44, 58
_LBRACE, _RBRACE, _LBRACKET, _RBRACKET = 123, 125, 91, 93
_MASK63 = np.uint64((1 << 63) - 1)
_POW10 = np.array([1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15])  # exact


def _lit(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).copy()


K_TOPIC, K_TYPE, K_TS, K_CTS, K_DATA = _lit("topic"), _lit("type"), _lit("ts"), _lit("cts"), _lit("data")
K_S, K_B, K_A, K_U = _lit("s"), _lit("b"), _lit("a"), _lit("u")
K_T, K_SIDE, K_V, K_P, K_I = _lit("T"), _lit("S"), _lit("v"), _lit("p"), _lit("i")
V_SNAPSHOT, V_BUY, V_SELL = _lit("snapshot"), _lit("Buy"), _lit("Sell")
V_TRUE, V_FALSE, V_NULL = _lit("true"), _lit("false"), _lit("null")
P_TRADE, P_BOOK = _lit("publicTrade."), _lit("orderbook.")


@njit(cache=True, nogil=True)
def _eq(buf, a, b, lit):
    """buf[a:b] == lit."""
    if b - a != len(lit):
        return False
    for k in range(b - a):
        if buf[a + k] != lit[k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _eq2(buf, a, b, head, tail):
    """buf[a:b] == head + tail."""
    n = len(head)
    if b - a != n + len(tail):
        return False
    for k in range(n):
        if buf[a + k] != head[k]:
            return False
    for k in range(len(tail)):
        if buf[a + n + k] != tail[k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _book_topic(buf, a, b, sym):
    """buf[a:b] starts with 'orderbook.' and ends with '.' + sym (as str.startswith/endswith: may overlap)."""
    n, m = len(P_BOOK), len(sym)
    if b - a < n or b - a < m + 1:
        return False
    for k in range(n):
        if buf[a + k] != P_BOOK[k]:
            return False
    if buf[b - m - 1] != 46:  # '.'
        return False
    for k in range(m):
        if buf[b - m + k] != sym[k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _string(buf, p, e):
    """A string starting at p: the index of its closing quote, or -1 (escape, control or non-ASCII byte)."""
    if p >= e or buf[p] != _QUOTE:
        return -1
    p += 1
    while p < e:
        c = buf[p]
        if c == _QUOTE:
            return p
        if c < 32 or c >= 127 or c == 92:  # control, non-ASCII (or DEL), backslash
            return -1
        p += 1
    return -1


@njit(cache=True, nogil=True)
def _integer(buf, p, e):
    """A non-negative JSON integer of at most 18 digits at p: (value, end) or (0, -1)."""
    q = p
    value = 0
    while q < e and 48 <= buf[q] <= 57:
        value = value * 10 + (int(buf[q]) - 48)
        q += 1
    if q == p or q - p > 18 or (buf[p] == 48 and q - p > 1):
        return 0, -1
    return value, q


@njit(cache=True, nogil=True)
def _decimal(buf, a, b):
    """Plain decimal text buf[a:b] ('123' or '123.45', at most 15 digits) as float(text); -1.0 if not such text."""
    m = 0
    digits = 0
    frac = -1
    for k in range(a, b):
        c = int(buf[k])
        if 48 <= c <= 57:
            m = m * 10 + (c - 48)
            digits += 1
            if frac >= 0:
                frac += 1
        elif c == 46 and frac < 0 and digits > 0:
            frac = 0
        else:
            return -1.0
    if digits == 0 or digits > 15 or frac == 0:
        return -1.0
    if frac < 0:
        return float(m)
    return m / _POW10[frac]


@njit(cache=True, nogil=True)
def _skip_simple(buf, p, e):
    """Past a string, integer, true, false or null value at p; -1 for anything else."""
    if p >= e:
        return -1
    c = buf[p]
    if c == _QUOTE:
        q = _string(buf, p, e)
        return -1 if q < 0 else q + 1
    if 48 <= c <= 57:
        return _integer(buf, p, e)[1]
    for lit in (V_TRUE, V_FALSE, V_NULL):
        if p + len(lit) <= e and _eq(buf, p, p + len(lit), lit):
            return p + len(lit)
    return -1


@njit(cache=True, nogil=True)
def _level(buf, p, e):
    """'[["price","size"]]' at p: (end, price, size) with -1.0 for an unusable value, or end -1."""
    if p + 2 > e or buf[p] != _LBRACKET or buf[p + 1] != _LBRACKET:
        return -1, -1.0, -1.0
    q = _string(buf, p + 2, e)
    if q < 0 or q + 1 >= e or buf[q + 1] != _COMMA:
        return -1, -1.0, -1.0
    price = _decimal(buf, p + 3, q)
    r = _string(buf, q + 2, e)
    if r < 0 or r + 2 >= e or buf[r + 1] != _RBRACKET or buf[r + 2] != _RBRACKET:
        return -1, -1.0, -1.0
    size = _decimal(buf, q + 3, r)
    return r + 3, price, size


@njit(cache=True, nogil=True)
def _units(x, unit, limit):
    """x (> 0) as a whole number of unit in [1, limit), else -1 (too large, off the grid, below one unit)."""
    ratio = x / unit
    if not ratio < limit:
        return -1
    n = np.rint(ratio)
    if abs(ratio - n) > GRID_TOLERANCE or n < 1:
        return -1
    return np.int64(n)


@njit(cache=True, nogil=True)
def _uuid(buf, a, b):
    """The id of a canonical UUID text buf[a:b] (two 64-bit halves XORed, low 63 bits; ``ids.uuid_id``), or -1."""
    if b - a != 36:
        return -1
    hi = np.uint64(0)
    lo = np.uint64(0)
    nib = 0
    for k in range(36):
        c = int(buf[a + k])
        if k == 8 or k == 13 or k == 18 or k == 23:
            if c != 45:
                return -1
            continue
        if 48 <= c <= 57:
            v = c - 48
        elif 97 <= c <= 102:
            v = c - 87
        elif 65 <= c <= 70:
            v = c - 55
        else:
            return -1
        if nib < 16:
            hi = (hi << np.uint64(4)) | np.uint64(v)
        else:
            lo = (lo << np.uint64(4)) | np.uint64(v)
        nib += 1
    return np.int64((hi ^ lo) & _MASK63)


@njit(cache=True, nogil=True)
def _trade(buf, p, e, sym, tick, step, recv_ms, trades, row):
    """One trade object at p written to trades[row]: its end, or -1 when it is not a valid trade."""
    if p >= e or buf[p] != _LBRACE:
        return -1
    p += 1
    ts = -1
    side = 0
    px = -1
    qty = -1
    tid = -1
    seen = 0
    while True:
        q = _string(buf, p, e)
        if q < 0 or q + 1 >= e or buf[q + 1] != _COLON:
            return -1
        ka, kb = p + 1, q
        p = q + 2
        bit = 0
        if _eq(buf, ka, kb, K_T):
            bit = 1
            ts, p = _integer(buf, p, e)
        elif _eq(buf, ka, kb, K_S):
            bit = 2
            q = _string(buf, p, e)
            if q < 0 or not _eq(buf, p + 1, q, sym):
                return -1
            p = q + 1
        elif _eq(buf, ka, kb, K_SIDE):
            bit = 4
            q = _string(buf, p, e)
            if q < 0:
                return -1
            if _eq(buf, p + 1, q, V_BUY):
                side = SIDE_BUY
            elif _eq(buf, p + 1, q, V_SELL):
                side = SIDE_SELL
            else:
                return -1
            p = q + 1
        elif _eq(buf, ka, kb, K_V) or _eq(buf, ka, kb, K_P):
            is_price = buf[ka] == 112  # 'p'
            bit = 8 if is_price else 16
            q = _string(buf, p, e)
            if q < 0:
                return -1
            x = _decimal(buf, p + 1, q)
            if not x > 0.0:
                return -1
            if is_price:
                px = _units(x, tick, MAX_PRICE_TICKS)
            else:
                qty = _units(x, step, MAX_SIZE_LOTS)
            p = q + 1
        elif _eq(buf, ka, kb, K_I):
            bit = 32
            q = _string(buf, p, e)
            if q < 0:
                return -1
            tid = _uuid(buf, p + 1, q)
            p = q + 1
        else:
            p = _skip_simple(buf, p, e)
        if p < 0 or p >= e or (seen & bit):
            return -1
        seen |= bit
        c = buf[p]
        if c == _COMMA:
            p += 1
            continue
        if c != _RBRACE:
            return -1
        break
    if seen != 63 or not TS_MIN_MS <= ts <= TS_MAX_MS or px < 1 or qty < 1 or tid < 0:
        return -1
    trades[row, 0] = ts
    trades[row, 1] = recv_ms
    trades[row, 2] = px
    trades[row, 3] = qty
    trades[row, 4] = side
    trades[row, 5] = tid
    return p + 1


@njit(cache=True, nogil=True)
def _frame(buf, s, e, recv_ms, sym, tick, step, state, trades, quotes):
    """Decode one frame buf[s:e] into the outputs and state; False (nothing written) when it is not a fast one."""
    if e - s < 2 or buf[s] != _LBRACE or buf[e - 1] != _RBRACE:
        return False
    p = s + 1
    seen = 0
    topic_a = topic_b = -1
    snapshot = False
    ts = cts = -1
    data = 0  # 1: an L1 book object, 2: a trade list
    book_ok = False
    bid = bsz = ask = asz = -1
    n_tr = state[S_TRADES]
    k_tr = 0
    while True:
        q = _string(buf, p, e)
        if q < 0 or q + 1 >= e or buf[q + 1] != _COLON:
            return False
        ka, kb = p + 1, q
        p = q + 2
        bit = 0
        if _eq(buf, ka, kb, K_TOPIC):
            bit = 1
            q = _string(buf, p, e)
            if q < 0:
                return False
            topic_a, topic_b = p + 1, q
            p = q + 1
        elif _eq(buf, ka, kb, K_TYPE):
            bit = 2
            q = _string(buf, p, e)
            if q < 0:
                return False
            snapshot = _eq(buf, p + 1, q, V_SNAPSHOT)
            p = q + 1
        elif _eq(buf, ka, kb, K_TS):
            bit = 4
            ts, p = _integer(buf, p, e)
        elif _eq(buf, ka, kb, K_CTS):
            bit = 8
            cts, p = _integer(buf, p, e)
        elif _eq(buf, ka, kb, K_DATA):
            bit = 16
            if p >= e:
                return False
            if buf[p] == _LBRACE:  # an order book: {"s":..,"b":[[..]],"a":[[..]],"u":..,...}
                data = 1
                p += 1
                dseen = 0
                sym_ok = False
                bid_f = bsz_f = ask_f = asz_f = -1.0
                while True:
                    q = _string(buf, p, e)
                    if q < 0 or q + 1 >= e or buf[q + 1] != _COLON:
                        return False
                    da, db = p + 1, q
                    p = q + 2
                    dbit = 0
                    if _eq(buf, da, db, K_S):
                        dbit = 1
                        q = _string(buf, p, e)
                        if q < 0:
                            return False
                        sym_ok = _eq(buf, p + 1, q, sym)
                        p = q + 1
                    elif _eq(buf, da, db, K_B):
                        dbit = 2
                        p, bid_f, bsz_f = _level(buf, p, e)
                    elif _eq(buf, da, db, K_A):
                        dbit = 4
                        p, ask_f, asz_f = _level(buf, p, e)
                    elif _eq(buf, da, db, K_U):
                        dbit = 8
                        u, p = _integer(buf, p, e)
                        if u == 1:  # a reset: the per-frame path counts and reports it
                            return False
                    else:
                        p = _skip_simple(buf, p, e)
                    if p < 0 or p >= e or (dseen & dbit):
                        return False
                    dseen |= dbit
                    c = buf[p]
                    if c == _COMMA:
                        p += 1
                        continue
                    if c != _RBRACE:
                        return False
                    p += 1
                    break
                if sym_ok and (dseen & 7) == 7 and bid_f > 0.0 and bsz_f > 0.0 and ask_f > 0.0 and asz_f > 0.0:
                    bid = _units(bid_f, tick, MAX_PRICE_TICKS)
                    ask = _units(ask_f, tick, MAX_PRICE_TICKS)
                    bsz = _units(bsz_f, step, MAX_SIZE_LOTS)
                    asz = _units(asz_f, step, MAX_SIZE_LOTS)
                    book_ok = bid > 0 and ask > bid and bsz > 0 and asz > 0
            elif buf[p] == _LBRACKET:  # trades
                data = 2
                p += 1
                if p < e and buf[p] == _RBRACKET:
                    p += 1
                else:
                    while True:
                        if n_tr + k_tr >= len(trades):
                            return False
                        p = _trade(buf, p, e, sym, tick, step, recv_ms, trades, n_tr + k_tr)
                        if p < 0 or p >= e:
                            return False
                        k_tr += 1
                        c = buf[p]
                        if c == _COMMA:
                            p += 1
                            continue
                        if c != _RBRACKET:
                            return False
                        p += 1
                        break
            else:
                return False
        else:
            p = _skip_simple(buf, p, e)
        if p < 0 or p >= e or (seen & bit):
            return False
        seen |= bit
        c = buf[p]
        if c == _COMMA:
            p += 1
            continue
        if c != _RBRACE or p != e - 1:
            return False
        break
    if topic_a < 0:
        return False
    if data == 2 and _eq2(buf, topic_a, topic_b, P_TRADE, sym):
        state[S_TRADES] = n_tr + k_tr
        return True
    if data != 1 or not book_ok or not snapshot or not _book_topic(buf, topic_a, topic_b, sym):
        return False
    if not TS_MIN_MS <= ts <= TS_MAX_MS:
        return False
    if seen & 8:
        if not TS_MIN_MS <= cts <= TS_MAX_MS:
            return False
        ts = cts
    state[S_BOOK] = 1
    if (state[S_HAS_L1] == 1 and state[S_L1] == bid and state[S_L1 + 1] == bsz and state[S_L1 + 2] == ask
            and state[S_L1 + 3] == asz):
        return True
    state[S_HAS_L1] = 1
    state[S_L1] = bid
    state[S_L1 + 1] = bsz
    state[S_L1 + 2] = ask
    state[S_L1 + 3] = asz
    row = state[S_QUOTES]
    quotes[row, 0] = ts
    quotes[row, 1] = recv_ms
    quotes[row, 2] = bid
    quotes[row, 3] = bsz
    quotes[row, 4] = ask
    quotes[row, 5] = asz
    state[S_QUOTES] = row + 1
    return True


@njit(cache=True, nogil=True)
def scan_frames(buf, starts, ends, recv, i0, sym, tick, step, state, trades, quotes):
    """Decode frames i0, i0+1, ... (frame i is buf[starts[i]:ends[i]], received at recv[i]) while they are fast ones.

    Rows go to ``trades``/``quotes`` (int64, 6 columns in ``TRADE_DTYPE``/``QUOTE_DTYPE`` order) from
    ``state[S_TRADES]``/``state[S_QUOTES]`` on; ``quotes`` needs a row per frame. Returns the index of the
    first frame not decoded (``len(starts)`` when all were).
    """
    i = i0
    while i < len(starts):
        if not _frame(buf, starts[i], ends[i], recv[i], sym, tick, step, state, trades, quotes):
            break
        i += 1
    return i
