"""Numba kernels of the CSV importers (``engine.importers``): split lines into fields, scan numbers, fold ids.

Each kernel is one pass over the raw bytes of a text block (a uint8 array)
and fills caller-allocated arrays; the importer keeps every decision about
bad rows (which check fails first, the message) in Python. They replace
numpy expressions that made one full-width array per byte column: on a
Bybit trade archive (11 columns, UUID ids) the numpy split, number scans
and UUID fold cost about 3.6 CPU s per million rows, these about 0.2 s
(bench/README.md, "Import at 1 M rows/s"). ``bybit_trades`` goes further for
the Bybit trade archives: one pass from bytes to the stored columns for a
block whose every line is a good row (about 0.4 s per million rows instead
of 1.0 for split + scans + checks), and the importer's general path for any
other block. All are ``nogil``: the store writes the previous chunks and
the next block is inflated on other threads meanwhile.

Results are identical to the numpy versions they replaced (tests compare
them with the plain-Python readings of the same fields: ``float``, ``int``,
``engine.ids.uuid_id``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.types import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

COMMA = 44
NEWLINE = 10
CR = 13
DOT = 46
ZERO = 48
DASH = 45


@njit(cache=True, nogil=True)
def split_regular(buf, n_fields, starts, ends):  # noqa: ANN001, ANN201
    """Fill ``starts``/``ends`` ((rows, n_fields), exclusive ends) when every line has ``n_fields`` fields.

    ``buf`` is whole lines, each ending in ``\\n``; ``starts`` has one row
    per ``\\n``. A CR before the ``\\n`` is not part of the last field.
    Returns False (arrays partly filled) when a line has another field
    count or is blank: the caller then takes its general path, which
    reports such lines.
    """
    row = 0
    field = 0
    line_start = 0
    field_start = 0
    last = n_fields - 1
    for i in range(len(buf)):
        c = buf[i]
        if c == COMMA:
            if field == last:
                return False
            starts[row, field] = field_start
            ends[row, field] = i
            field += 1
            field_start = i + 1
        elif c == NEWLINE:
            end = i
            if end > line_start and buf[end - 1] == CR:
                end -= 1
            if field != last or end == line_start:
                return False
            starts[row, field] = field_start
            ends[row, field] = max(end, field_start)
            row += 1
            field = 0
            line_start = i + 1
            field_start = i + 1
    return row == starts.shape[0]


@njit(cache=True, nogil=True)
def scan_numbers(buf, starts, ends, allow_dot, max_digits, val, nfrac, ok, digits_only):  # noqa: ANN001, ANN201
    """Read each field ``buf[starts[i]:ends[i]]`` as ``[0-9]*(.[0-9]*)?``.

    Fills per row: ``val`` the digits as one int64 (dot skipped),
    ``nfrac`` the digits after the dot, ``ok`` (1 to ``max_digits`` digits,
    at most one dot and only when ``allow_dot``, nothing else) and
    ``digits_only`` (only digits, no dot, at most ``max_digits + 1`` of
    them; an empty field counts). ``val`` and ``nfrac`` mean nothing where
    ``ok`` is False. Returns the number of rows not ok.
    """
    n_bad = 0
    for i in range(len(starts)):
        s = starts[i]
        e = ends[i]
        v = 0
        dots = 0
        frac = 0
        digits = 0
        other = False
        for p in range(s, e):
            d = buf[p]
            if ZERO <= d <= ZERO + 9:
                if digits < 19:  # beyond that the row is not ok anyway: keep v from overflowing
                    v = v * 10 + (d - ZERO)
                digits += 1
                if dots:
                    frac += 1
            elif d == DOT and allow_dot:
                dots += 1
            else:
                other = True
        fits = e - s <= max_digits + 1
        good = not other and dots <= 1 and 1 <= digits <= max_digits and fits
        ok[i] = good
        digits_only[i] = not other and dots == 0 and fits
        val[i] = v
        nfrac[i] = frac if dots == 1 else 0
        if not good:
            n_bad += 1
    return n_bad


@njit(cache=True, nogil=True, inline="always")
def _equals(buf, s, e, text):  # noqa: ANN001, ANN201
    """``buf[s:e]`` is exactly the bytes ``text`` (a uint8 array)."""
    m = len(text)
    if e - s != m:
        return False
    for j in range(m):
        if buf[s + j] != text[j]:
            return False
    return True


@njit(cache=True, nogil=True)
def fields_equal(buf, starts, ends, text, out):  # noqa: ANN001, ANN201
    """``out[i]``: field i is exactly the bytes ``text`` (a uint8 array)."""
    for i in range(len(starts)):
        out[i] = _equals(buf, starts[i], ends[i], text)


NIBBLE = np.full(256, 255, dtype=np.uint8)  # hex digit -> its value, anything else -> 255
for _i, _c in enumerate(b"0123456789abcdef"):
    NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    NIBBLE[_c] = 10 + _i
UUID_HEX_AT = np.array([i for i in range(36) if i not in (8, 13, 18, 23)], dtype=np.int64)  # 32 hex digits


@njit(cache=True, nogil=True, inline="always")
def _fold_uuid(buf, s, e):  # noqa: ANN001, ANN201
    """(True, id) when ``buf[s:e]`` is a canonical UUID: its two 64-bit halves XORed, top bit cleared
    (``engine.ids.uuid_id``); (False, 0) otherwise."""
    if not (e - s == 36 and buf[s + 8] == DASH and buf[s + 13] == DASH and buf[s + 18] == DASH
            and buf[s + 23] == DASH):
        return False, np.int64(0)
    hi = np.uint64(0)
    lo = np.uint64(0)
    bad = np.uint8(0)
    for k in range(16):
        a = NIBBLE[buf[s + UUID_HEX_AT[k]]]
        b = NIBBLE[buf[s + UUID_HEX_AT[k + 16]]]
        bad |= a | b  # 255 where either is not a hex digit
        hi = (hi << np.uint64(4)) | np.uint64(a)
        lo = (lo << np.uint64(4)) | np.uint64(b)
    if bad >= 16:
        return False, np.int64(0)
    return True, np.int64((hi ^ lo) & np.uint64(0x7FFFFFFFFFFFFFFF))


@njit(cache=True, nogil=True)
def fold_uuids(buf, starts, ends, ids, is_uuid):  # noqa: ANN001, ANN201
    """For canonical UUID fields: ``is_uuid[i]`` and ``ids[i]`` (``_fold_uuid``); ``ids`` is left alone
    for other fields. Returns how many fields were UUIDs."""
    count = 0
    for i in range(len(starts)):
        good, value = _fold_uuid(buf, starts[i], ends[i])
        if good:
            ids[i] = value
            count += 1
        is_uuid[i] = good
    return count


BUY = np.frombuffer(b"Buy", dtype=np.uint8).copy()  # Bybit's side values
SELL = np.frombuffer(b"Sell", dtype=np.uint8).copy()


@njit(cache=True, nogil=True)
def count_lines(buf):  # noqa: ANN001, ANN201
    """The number of ``\\n`` bytes in ``buf``."""
    n = 0
    for i in range(len(buf)):
        if buf[i] == NEWLINE:
            n += 1
    return n


@njit(cache=True, nogil=True, inline="always")
def _number(buf, s, e, max_digits):  # noqa: ANN001, ANN201
    """``buf[s:e]`` as ``[0-9]+(.[0-9]*)?`` with 1..max_digits digits: (ok, digits as int64, digits after the dot).

    The rule of ``scan_numbers`` with ``allow_dot`` for one field.
    """
    v = 0
    dots = 0
    frac = 0
    digits = 0
    for p in range(s, e):
        d = buf[p]
        if ZERO <= d <= ZERO + 9:
            if digits < 19:
                v = v * 10 + (d - ZERO)
            digits += 1
            if dots:
                frac += 1
        elif d == DOT:
            dots += 1
        else:
            return False, 0, 0
    ok = dots <= 1 and 1 <= digits <= max_digits and e - s <= max_digits + 1
    return ok, v, frac


@njit(cache=True, nogil=True, inline="always")
def _on_grid(buf, s, e, unit, limit, pow10, tolerance):  # noqa: ANN001, ANN201
    """A price or size field as a whole number of ``unit`` (ticks or lots), or -1 when any import check fails.

    The float steps of ``engine.importers._Checks.price``/``size`` exactly:
    digits / 10**frac (correctly rounded), / unit, on the grid within
    ``tolerance``, below ``limit`` and at least one unit.
    """
    ok, v, frac = _number(buf, s, e, 15)
    if not ok:
        return -1
    x = np.float64(v) / pow10[min(frac, 18)]
    ratio = x / unit
    r = np.rint(ratio)
    if not (x > 0) or not (ratio < limit) or abs(ratio - r) > tolerance or not (r >= 1):
        return -1
    return np.int64(r)


@njit(cache=True, nogil=True)
def bybit_trades(buf, n_fields, k_ts, k_symbol, k_side, k_size, k_price, k_id, symbol, lo_ms, hi_ms,  # noqa: ANN001, ANN201
                 tick, step, max_ticks, max_lots, tolerance, pow10, ts, px, qty, side, trade_id):
    """Bybit trade archive rows straight to columns, when every line of the block is a good row.

    One pass over ``buf`` (whole lines, each ending in ``\\n``; one output
    row per line). A good row has ``n_fields`` fields, the configured
    symbol, a timestamp ``[0-9]+(.[0-9]*)?`` in seconds inside
    [lo_ms, hi_ms] as floor ms, a price and a size that pass every check of
    ``_Checks`` (grid, positive, bounds), and a canonical UUID id (folded as
    ``fold_uuids``); side ``Buy``/``Sell``, anything else unknown (not bad).
    Returns the row count, or -1 at the first line that is anything else:
    the caller then parses the block on its general path, which finds and
    reports every bad row (so both paths store the same records).
    """
    n = len(buf)
    if n == 0 or buf[n - 1] != NEWLINE:  # the field scan below stops at a newline: there must be one
        return -1 if n else 0
    last = n_fields - 1
    starts = np.zeros(n_fields, dtype=np.int64)
    ends = np.zeros(n_fields, dtype=np.int64)
    p = 0
    row = 0
    while p < n:
        if row >= len(ts):
            return -1
        for f in range(n_fields):  # the line's fields; p ends past its newline
            starts[f] = p
            c = buf[p]
            while c != COMMA and c != NEWLINE:
                p += 1
                c = buf[p]
            if (c == NEWLINE) != (f == last):
                return -1
            ends[f] = p - 1 if f == last and p > starts[f] and buf[p - 1] == CR else p
            p += 1
        if not _equals(buf, starts[k_symbol], ends[k_symbol], symbol):
            return -1
        ok, v, frac = _number(buf, starts[k_ts], ends[k_ts], 17)
        if not ok:
            return -1
        ms = v * 10 ** (3 - frac) if frac <= 3 else v // 10 ** (frac - 3)
        if ms < lo_ms or ms > hi_ms:
            return -1
        price = _on_grid(buf, starts[k_price], ends[k_price], tick, max_ticks, pow10, tolerance)
        size = _on_grid(buf, starts[k_size], ends[k_size], step, max_lots, pow10, tolerance)
        good, tid = _fold_uuid(buf, starts[k_id], ends[k_id])
        if price < 0 or size < 0 or not good:
            return -1
        sd = SIDE_UNKNOWN
        if _equals(buf, starts[k_side], ends[k_side], BUY):
            sd = SIDE_BUY
        elif _equals(buf, starts[k_side], ends[k_side], SELL):
            sd = SIDE_SELL
        ts[row] = ms
        px[row] = price
        qty[row] = size
        side[row] = sd
        trade_id[row] = tid
        row += 1
    return row if row == len(ts) else -1
