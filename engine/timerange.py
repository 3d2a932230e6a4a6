"""UTC times as users type them, and back.

Every command that reads stored ticks takes ``--from``/``--to``. Internally a
range is a pair of ms UTC bounds, ``start_ms`` inclusive and ``end_ms``
exclusive (``None``: unbounded), so consecutive ranges never share a tick.

Accepted forms (always UTC; a trailing ``Z`` is allowed after a time):
``2026-01-05``, ``2026-01-05T10:00``, ``2026-01-05 10:00:00``,
``2026-01-05T10:00:00.250Z``. A bare date given as an end (``--to``) means
the end of that day, so ``--from 2026-01-05 --to 2026-01-05`` is the whole
day. Offsets other than UTC (``+02:00``) are refused rather than converted:
a trader reading exchange times in UTC should never get a silent shift.
"""

from __future__ import annotations

import calendar
import re
import time

from engine.config import ConfigError

DAY_MS = 86_400_000

_FORM = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?Z?)?"
)
FORMS_HELP = "YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS[.mmm]][Z] or 'YYYY-MM-DD HH:MM[:SS]', UTC"


def parse_utc(text: str, flag: str, end: bool = False) -> int:
    """``text`` as ms UTC.

    Args:
        text: one of the accepted forms (module docstring).
        flag: the option's name for the error message (e.g. ``--from``).
        end: a bare date means the end of that day (the next midnight,
            exclusive) instead of its start.

    Raises:
        ConfigError: one line naming the flag and the value.
    """
    m = _FORM.fullmatch(text.strip())
    bad = ConfigError(f"{flag} {text!r}: not a UTC date or time (expected {FORMS_HELP})")
    if m is None:
        raise bad
    year, month, day, hour, minute, second, frac = m.groups()
    try:
        hh, mm, ss = int(hour or 0), int(minute or 0), int(second or 0)
        if not (1 <= int(month) <= 12 and 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]
                and hh < 24 and mm < 60 and ss < 60):
            raise bad
    except ValueError as exc:  # year 0 and the like
        raise bad from exc
    ms = calendar.timegm((int(year), int(month), int(day), hh, mm, ss, 0, 0, 0)) * 1000
    if frac:
        ms += int(frac.ljust(3, "0"))
    if end and hour is None:
        ms += DAY_MS
    return ms


def parse_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``--from``/``--to`` values as (start_ms, end_ms); either may be None.

    Raises:
        ConfigError: a bad value, or a start that is not before the end.
    """
    lo = None if start is None else parse_utc(start, "--from")
    hi = None if end is None else parse_utc(end, "--to", end=True)
    if lo is not None and hi is not None and lo >= hi:
        raise ConfigError(f"--from {start!r} is not before --to {end!r}: the range {utc_text(lo)} .. "
                          f"{utc_text(hi)} UTC (--to exclusive) is empty")
    return lo, hi


def utc_text(ts_ms: int, ms: bool = False) -> str:
    """``2026-01-05 10:00:00`` (with ``.mmm`` when ``ms``), UTC: for people."""
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms // 1000))
    return text + f".{ts_ms % 1000:03d}" if ms else text


def iso_text(ts_ms: int, ms: bool = False) -> str:
    """``2026-01-05T10:00:00Z`` (``...00.250Z`` when ``ms``), UTC: for files (JSON, CSV)."""
    return utc_text(ts_ms, ms).replace(" ", "T") + "Z"


def range_text(start_ms: int | None, end_ms: int | None) -> str:
    """The requested range in words, for messages: ``between A and B``, ``from A``, ``before B``."""
    if start_ms is not None and end_ms is not None:
        return f"between {utc_text(start_ms)} and {utc_text(end_ms)} UTC"
    if start_ms is not None:
        return f"from {utc_text(start_ms)} UTC on"
    if end_ms is not None:
        return f"before {utc_text(end_ms)} UTC"
    return "in the database"


def duration_text(ms: int) -> str:
    """``3 d 4 h 5 min``, ``12 min``, ``40 s`` (largest units first, zeros left out)."""
    s = ms // 1000
    d, s = divmod(s, 86_400)
    h, s = divmod(s, 3_600)
    m, s = divmod(s, 60)
    parts = [f"{v} {u}" for v, u in ((d, "d"), (h, "h"), (m, "min")) if v]
    if s and not d and not h:
        parts.append(f"{s} s")
    return " ".join(parts) or f"{ms} ms"
