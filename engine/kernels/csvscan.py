"""Numba kernels of the CSV importers (``engine.importers``): split lines into fields, scan numbers, fold ids.

Each kernel is one pass over the raw bytes of a text block (a uint8 array)
and fills caller-allocated arrays; the importer keeps every decision about
bad rows (which check fails first, the message) in Python. They replace
numpy expressions that made one full-width array per byte column: on a
Bybit trade archive (11 columns, UUID ids) the numpy split, number scans
and UUID fold cost about 3.6 CPU s per million rows, these about 0.2 s
(bench/README.md, "Import at 1 M rows/s"). All are ``nogil``: the importer
parses the next block in a helper thread while the store writes this one.

Results are identical to the numpy versions they replaced (tests compare
them with the plain-Python readings of the same fields: ``float``, ``int``,
``engine.ids.uuid_id``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

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


@njit(cache=True, nogil=True)
def fields_equal(buf, starts, ends, text, out):  # noqa: ANN001, ANN201
    """``out[i]``: field i is exactly the bytes ``text`` (a uint8 array)."""
    m = len(text)
    for i in range(len(starts)):
        s = starts[i]
        same = ends[i] - s == m
        j = 0
        while same and j < m:
            same = buf[s + j] == text[j]
            j += 1
        out[i] = same


NIBBLE = np.full(256, 255, dtype=np.uint8)  # hex digit -> its value, anything else -> 255
for _i, _c in enumerate(b"0123456789abcdef"):
    NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    NIBBLE[_c] = 10 + _i
UUID_HEX_AT = np.array([i for i in range(36) if i not in (8, 13, 18, 23)], dtype=np.int64)  # 32 hex digits


@njit(cache=True, nogil=True)
def fold_uuids(buf, starts, ends, ids, is_uuid):  # noqa: ANN001, ANN201
    """For canonical UUID fields: ``is_uuid[i]`` and ``ids[i]``, the two 64-bit halves XORed, top bit cleared.

    The same value as ``engine.ids.uuid_id`` (``ids`` is left alone for
    other fields). Returns how many fields were UUIDs.
    """
    count = 0
    mask63 = np.uint64(0x7FFFFFFFFFFFFFFF)
    nibble = NIBBLE
    at = UUID_HEX_AT
    for i in range(len(starts)):
        s = starts[i]
        good = (ends[i] - s == 36 and buf[s + 8] == DASH and buf[s + 13] == DASH and buf[s + 18] == DASH
                and buf[s + 23] == DASH)
        if good:
            hi = np.uint64(0)
            lo = np.uint64(0)
            bad = np.uint8(0)
            for k in range(16):
                a = nibble[buf[s + at[k]]]
                b = nibble[buf[s + at[k + 16]]]
                bad |= a | b  # 255 where either is not a hex digit
                hi = (hi << np.uint64(4)) | np.uint64(a)
                lo = (lo << np.uint64(4)) | np.uint64(b)
            good = bad < 16
            if good:
                ids[i] = np.int64((hi ^ lo) & mask63)
                count += 1
        is_uuid[i] = good
    return count
