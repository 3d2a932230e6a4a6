"""Pure text renderers for the console: the volume profile, the features panel, the header.

No Textual here: each function takes plain values (ticks, lots, dicts of one
record) and returns strings, so the layout is tested with hand-built inputs
and the widgets stay thin (``pbdtui.widgets``). Prices arrive as int ticks and
become text only here, at the edge.

The profile is drawn as one row per aggregated price level, highest price at
the top, like a ladder::

    94270.0 │░░░
    ────────┼──────────────────────── VAH 94250.0
    94240.0 │████████████
    94220.0 │██████████████████████████ POC 94225.0
    94210.0 │████████████████ ◀ last 94213.4
    ────────┼──────────────────────── VAL 94200.0
    94190.0 │░░

VAH and VAL are edges of the value area (the engine reports the upper edge of
the top bin and the lower edge of the bottom bin), so they are drawn as lines
*between* rows rather than as marks on a row; rows inside the value area are
solid, rows outside are light. When there are more levels than rows, rows
merge ``g`` consecutive levels, cut outward from the value area's edges so no
row is half inside it (``profile_rows``). Cutting at multiples of ``g`` was
tried first: at 100x30 the row holding VAL then also held prices below it,
and a last price under VAL was drawn inside the value area.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rich.text import Text

from engine.types import (
    ACCEPT_NAMES,
    ACTION_NAMES,
    EXIT_NAMES,
    READY,
    REASON_NAMES,
    SETUP_NAMES,
    SIDE_BUY,
)
from engine.units import decimals_of

INSIDE_CHAR = "█"  # bar of a row inside the value area
OUTSIDE_CHAR = "░"  # bar of a row outside it
BUY_CHAR = "█"  # volume at price by side (structure view): inferred buys, then sells, then ambiguous
SELL_CHAR = "▓"
PATH_CHAR = "•"  # the UTC day's developing POC path, oldest column left
PATH_W = 8  # columns of the path strip
AXIS = "│"
LINE = "─"
CROSS = "┼"
LAST_MARK = "◀ last"
EMPTY_PROFILE = "no trades in the window yet"


SIGNAL_FLAGS = ("breakin_long", "breakin_short", "breakout_long", "breakout_short",
                "failbreak_long", "failbreak_short")


class PriceFormat:
    """Prints ticks as prices: whole ticks with the tick's decimals, half ticks with one more."""

    def __init__(self, tick_size: float):
        self.tick = tick_size
        self.dec = decimals_of(tick_size)
        self.dec2 = decimals_of(tick_size / 2)

    def px(self, ticks: int) -> str:
        return f"{ticks * self.tick:.{self.dec}f}"

    def px2(self, doubled_ticks: int) -> str:
        """A doubled tick count (bin centres, mids); a whole tick prints like ``px``."""
        if doubled_ticks % 2 == 0:
            return self.px(doubled_ticks // 2)
        return f"{doubled_ticks * self.tick / 2:.{self.dec2}f}"


# --- volume profile -------------------------------------------------------------


def profile_rows(lo: int, hi: int, va: tuple[int, int] | None, rows: int) -> tuple[int, list[tuple[int, int]]]:
    """Cut levels ``lo..hi`` into at most ``rows`` rows of ``g`` levels; smallest g wins.

    With a value area ``va = (first, last level)``, rows are cut outward from
    its edges so no row straddles VAL or VAH (a straddling row would paint
    prices outside the value area as inside it); the top row of the value
    area may hold fewer than ``g`` levels. Without one, rows are aligned on
    multiples of ``g``.

    Returns:
        (g, [(first level, last level), ...] lowest row first).
    """
    rows = max(1, rows)
    g = max(1, math.ceil((hi - lo + 1) / rows))
    while True:
        cut: list[tuple[int, int]] = []
        if va is None:
            cut = [(q * g, q * g + g - 1) for q in range(lo // g, hi // g + 1)]
        else:
            va_lo, va_hi = va
            below = -(-(va_lo - lo) // g)  # ceil
            cut += [(va_lo - (j + 1) * g, va_lo - j * g - 1) for j in range(below - 1, -1, -1)]
            cut += [(a, min(a + g - 1, va_hi)) for a in range(va_lo, va_hi + 1, g)]
            cut += [(a, a + g - 1) for a in range(va_hi + 1, hi + 1, g)]
        # a value area with levels on both sides needs three rows whatever g is;
        # a smaller box gets those three and the caller crops
        if len(cut) <= rows or g > hi - lo:
            return g, cut
        g += 1


class _Levels:
    """A profile aggregated to levels of ``w`` ticks, with its marks as level numbers."""

    def __init__(self, bins: np.ndarray, volumes: np.ndarray, k: int, base_bin_ticks: int, poc2: int,
                 val: int, vah: int, last_px: int, va_valid: bool, marks: tuple[tuple[str, int], ...] = ()):
        vols = np.asarray(volumes, dtype=np.int64)
        keep = vols > 0
        self.empty = len(vols) == 0 or not keep.any()
        self.w = max(1, int(k)) * base_bin_ticks
        self._k = max(1, int(k))
        if self.empty:
            return
        levels = np.asarray(bins, dtype=np.int64)[keep] // max(1, int(k))
        lo, hi = int(levels.min()), int(levels.max())
        self.poc = poc2 // (2 * self.w) if va_valid else None
        self.va = (val // self.w, (vah - 1) // self.w) if va_valid else None  # vah: exclusive edge
        self.last = last_px // self.w if last_px >= 0 else None
        self.marks = [(name, px, px // self.w) for name, px in marks if px > 0]
        for extra in (self.poc, self.last, *(self.va or ()), *(m[2] for m in self.marks)):  # marks stay on screen
            if extra is not None:
                lo, hi = min(lo, extra), max(hi, extra)
        self.lo, self.hi = lo, hi
        self._levels = levels
        self._vols = vols[keep]

    def sums(self, ranges: list[tuple[int, int]]) -> np.ndarray:
        """Volume in each (first, last) level range."""
        base = min(r[0] for r in ranges)
        top = max(r[1] for r in ranges)
        per_level = np.bincount(self._levels - base, weights=self._vols.astype(np.float64),
                                minlength=top - base + 1)
        cum = np.concatenate([[0.0], np.cumsum(per_level)])
        first = np.array([r[0] for r in ranges]) - base
        last = np.array([r[1] for r in ranges]) - base
        return cum[last + 1] - cum[first]

    def sums_of(self, bins: np.ndarray, values: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
        """Like ``sums`` for another per-bin quantity on the same bins (buy or sell volume)."""
        vols = np.asarray(values, dtype=np.int64)
        keep = vols > 0
        if not keep.any():
            return np.zeros(len(ranges))
        other = _Levels.__new__(_Levels)
        other._levels = np.asarray(bins, dtype=np.int64)[keep] // self._k
        other._vols = vols[keep]
        return other.sums(ranges)

    def layout(self, height: int) -> tuple[int, list[tuple[int, int]]]:
        return profile_rows(self.lo, self.hi, self.va, height - 2 if self.va is not None else height)


def render_profile(
    bins: np.ndarray,
    volumes: np.ndarray,
    *,
    k: int,
    poc2: int,
    val: int,
    vah: int,
    last_px: int,
    tick_size: float,
    height: int,
    width: int,
    base_bin_ticks: int = 1,
    va_valid: bool = True,
    marks: tuple[tuple[str, int], ...] = (),
    sides: tuple[np.ndarray, np.ndarray] | None = None,
    path: tuple[int, ...] = (),
) -> list[str]:
    """The rolling profile as at most ``height`` lines of at most ``width`` characters.

    Args:
        bins: base bins of the profile (``Engine.profile()``); base bin b
            covers ticks [b * base_bin_ticks, (b + 1) * base_bin_ticks).
        volumes: lots per base bin.
        k: bin width in base bins (the engine's applied aggregation); level
            j = b // k covers ticks [j * w, (j + 1) * w) with w = k * base_bin_ticks.
        poc2: twice the POC bin centre, ticks.
        val, vah: lower and upper edge of the value area, ticks.
        last_px: last trade price, ticks (negative: none, no marker).
        tick_size: price of one tick.
        height, width: the space to fill.
        base_bin_ticks: ticks per base bin.
        va_valid: False when the engine has no value area (no POC/VA marks).
        marks: more prices to mark, as (name, ticks): the open position's
            entry, stop and target (a price <= 0 is not marked).
        sides: (buys, sells) in lots per base bin of ``bins`` (volume at
            price by inferred side): each bar is split into buys, sells and
            the ambiguous rest.
        path: the UTC day's developing POC, doubled ticks, oldest first:
            drawn as a strip of PATH_W columns left of the axis, each
            column the last value of its share of the path.

    Returns:
        Lines from the highest price down, trailing spaces stripped. A row's
        label is the lower edge of its price range; its bar is the volume per
        level in the row (the same as the row's volume except for a short
        top row of the value area), scaled to the fullest row.
    """
    if height < 1 or width < 1:
        return []
    lv = _Levels(bins, volumes, k, base_bin_ticks, poc2, val, vah, last_px, va_valid, marks)
    if lv.empty:
        return [EMPTY_PROFILE[:width]]
    fmt = PriceFormat(tick_size)
    w = lv.w
    _, ranges = lv.layout(height)
    row_vol = lv.sums(ranges)
    density = row_vol / np.array([b - a + 1 for a, b in ranges], dtype=np.float64)
    dmax = float(density.max())
    buy_share = sell_share = None
    if sides is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            buy_share = np.nan_to_num(lv.sums_of(bins, sides[0], ranges) / row_vol)[::-1].tolist()
            sell_share = np.nan_to_num(lv.sums_of(bins, sides[1], ranges) / row_vol)[::-1].tolist()
    strip = _path_strip(path, ranges, w) if path else None

    rows = []  # (label, density, inside, notes), top first
    for (first, last), dens in zip(reversed(ranges), reversed(density.tolist()), strict=True):
        inside = lv.va is not None and lv.va[0] <= first and last <= lv.va[1]
        notes = []
        if lv.last is not None and first <= lv.last <= last:
            notes.append(f"{LAST_MARK} {fmt.px(last_px)}")
        if lv.poc is not None and first <= lv.poc <= last:
            notes.append(f"POC {fmt.px2(poc2)}")
        notes += [f"{name} {fmt.px(px)}" for name, px, level in lv.marks if first <= level <= last]
        rows.append((fmt.px(first * w), dens, inside, "  ".join(notes)))

    vah_note = f"VAH {fmt.px(vah)}" if va_valid else ""
    val_note = f"VAL {fmt.px(val)}" if va_valid else ""
    if strip is not None:  # the path strip goes between the label and the axis
        rows = [(f"{label} {strip[i]}", dens, inside, notes) for i, (label, dens, inside, notes) in enumerate(rows)]
    label_w = max(len(r[0]) for r in rows)
    notes_w = max([len(r[3]) for r in rows] + [len(vah_note), len(val_note)])
    bar_w = max(1, width - label_w - 2 - (notes_w + 1 if notes_w else 0))

    def separator(note: str) -> str:
        return f"{LINE * label_w}{LINE}{CROSS}{LINE * bar_w} {note}"

    lines = []
    inside_rows = [i for i, r in enumerate(rows) if r[2]]
    for i, (label, dens, inside, notes) in enumerate(rows):
        if inside_rows and i == inside_rows[0]:
            lines.append(separator(vah_note))
        n = 0 if dens <= 0 else max(1, round(dens / dmax * bar_w))
        bar = (INSIDE_CHAR if inside else OUTSIDE_CHAR) * n
        if buy_share is not None and sell_share is not None:
            nb = min(n, round(buy_share[i] * n))
            ns = min(n - nb, round(sell_share[i] * n))
            bar = BUY_CHAR * nb + SELL_CHAR * ns + OUTSIDE_CHAR * (n - nb - ns)
        # marks follow the bar so the arrow points at it (a fixed notes column
        # left a wide gap after short bars and was hard to read)
        lines.append(f"{label:>{label_w}} {AXIS}{bar} {notes}")
        if inside_rows and i == inside_rows[-1]:
            lines.append(separator(val_note))
    return [line.rstrip()[:width] for line in lines[:height]]


def _path_strip(path: tuple[int, ...], ranges: list[tuple[int, int]], w: int) -> list[str]:
    """PATH_W characters per row (top row first): the path's columns, a PATH_CHAR in the row holding each."""
    cols = min(PATH_W, len(path))
    grid = [[" "] * PATH_W for _ in ranges]
    for c in range(cols):
        value = path[(c + 1) * len(path) // cols - 1]  # the last value of the column's share
        level = value // (2 * w)
        for r, (first, last) in enumerate(reversed(ranges)):
            if first <= level <= last:
                grid[r][PATH_W - cols + c] = PATH_CHAR
                break
    return ["".join(g) for g in grid]


def naked_table(naked: tuple, last_px: int, now_ms: int, tick_size: float, rows: int) -> list[str]:
    """The open naked POCs nearest the last price, one line each: kind, price, distance, age."""
    if rows <= 0:
        return []
    if not naked:
        return ["naked POCs: none open"]
    fmt = PriceFormat(tick_size)
    near = sorted(naked, key=lambda n: abs(n.poc2 - 2 * last_px))[:rows - 1]
    lines = [f"naked POCs: {len(naked)} open, nearest:"]
    for n in near:
        dist = (n.poc2 / 2 - last_px) / last_px * 100 if last_px > 0 else 0.0
        age_min = max(0, (now_ms - n.start_ms) // 60_000)
        lines.append(f"  {n.kind:>3} {fmt.px2(n.poc2)}  {dist:+.2f}%  {age_min // 60}h{age_min % 60:02d}m ago")
    return lines


def profile_title(bins: np.ndarray, volumes: np.ndarray, *, k: int, poc2: int, val: int, vah: int,
                  last_px: int, base_bin_ticks: int, tick_size: float, window_minutes: int,
                  height: int, va_valid: bool, marks: tuple[tuple[str, int], ...] = ()) -> str:
    """The profile panel's title: window, bin width and how many levels one row holds."""
    fmt = PriceFormat(tick_size)
    hours = window_minutes / 60
    span = f"{hours:g}h" if hours >= 1 else f"{window_minutes}m"
    title = f"Volume profile {span} · bin {fmt.px(max(1, int(k)) * base_bin_ticks)}"
    lv = _Levels(bins, volumes, k, base_bin_ticks, poc2, val, vah, last_px, va_valid, marks)
    if not lv.empty and height > 0:
        g, _ = lv.layout(height)
        if g > 1:
            title += f" · {g} bins/row"
    return title


# --- features panel -------------------------------------------------------------


def _signed(x: float, dec: int) -> str:
    return f"{x:+.{dec}f}"


def _hhmm(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%H:%M UTC")


def render_features(
    features: Mapping[str, Any] | None,
    signal: Mapping[str, Any] | None,
    position: Any | None,
    *,
    tick_size: float,
    qty_step: float,
    order_qty: float,
    base_bin_ticks: int = 1,
    last_px: int = -1,
    ambiguous_max: float | None = None,
) -> list[Text]:
    """The latest closed minute's features, the decision, the position and PnL: one styled line per row.

    Args:
        features: one ``FEATURE_DTYPE`` record as a dict (None before the first close).
        signal: one ``SIGNAL_DTYPE`` record as a dict (None when not trading).
        position: an ``engine.engine.PositionView`` (None: unknown).
        tick_size, qty_step: the instrument's units.
        order_qty: position size in coin (the engine's position is a direction).
        base_bin_ticks: ticks per base bin (bin width = k * base_bin_ticks).
        last_px: last trade price in ticks, to mark the open position.
        ambiguous_max: flag the ambiguous fraction above this (config threshold).
    """
    fmt = PriceFormat(tick_size)
    qty_dec = decimals_of(qty_step)
    out: list[Text] = []

    def row(label: str, text: str, style: str = "") -> None:
        line = Text(f"{label:<9} ", style="dim")
        line.append(text, style=style)
        out.append(line)

    if features is None:
        row("minute", "waiting for the first close")
    else:
        f = features
        row("minute", _hhmm(int(f["ts_min"])))
        ready = int(f["ready"])
        row("ready", REASON_NAMES.get(ready, str(ready)), "bold green" if ready == READY else "bold yellow")
        mid2 = int(f["mid2"])
        sigma = float(f["sigma"])
        row("mid", fmt.px2(mid2) if mid2 > 0 else "n/a")
        row("sigma", f"{sigma * 1e4:.2f} bp/min" if math.isfinite(sigma) else "n/a")
        row("bin", f"{fmt.px(int(f['k']) * base_bin_ticks)}  (k {int(f['k'])})")
        if int(f["va_valid"]):
            row("POC", fmt.px2(int(f["poc2"])))
            row("VAH", fmt.px(int(f["vah"])))
            row("VAL", f"{fmt.px(int(f['val']))}  cover {float(f['va_coverage']) * 100:.1f}%")
        else:
            row("VA", "none (empty profile)")
        vol = int(f["volume"])
        of = int(f["of"])
        of_text = _signed(of * qty_step, qty_dec)
        if vol > 0:
            of_text += f"  ({of / vol:+.2f} of vol)"
        row("OF", of_text)
        qimb, ema = float(f["qimb"]), float(f["qimb_ema"])
        row("qimb", (_signed(qimb, 2) if math.isfinite(qimb) else "n/a")
            + (f"  ema {ema:+.2f}" if math.isfinite(ema) else ""))
        if vol > 0:
            amb = int(f["amb_qty"]) / vol
            high = ambiguous_max is not None and amb > ambiguous_max
            row("ambiguous", f"{amb * 100:.1f}%" + ("  HIGH" if high else ""), "bold red" if high else "")
        else:
            row("ambiguous", "n/a (no trades)")
        den = int(f.get("agree_den", 0))
        # inference agreement: the trade-side inference against the exchange's own flag
        row("agreement", f"{int(f.get('agree_qty', 0)) / den * 100:.1f}%" if den > 0 else "n/a")

    if signal is not None:
        s = signal
        row("accept", ACCEPT_NAMES.get(int(s["acceptance_state"]), str(s["acceptance_state"])))
        flags = [name for name in SIGNAL_FLAGS if int(s[name])]
        action = ACTION_NAMES.get(int(s["action"]), "?")
        row("signal", f"{action} · {REASON_NAMES.get(int(s['reason']), '?')}",
            "bold cyan" if action.startswith(("ENTER_", "EXIT")) else "")
        if flags:
            row("setups", ", ".join(flags))

    if position is not None:
        p = position
        if p.position == 0:
            row("position", "flat")
        else:
            side = "LONG" if p.position > 0 else "SHORT"
            row("position", f"{side} {order_qty:.{qty_dec}f} @ {fmt.px(p.entry_px)}", "bold")
            row("stop", fmt.px(p.stop))
        unreal = (p.position * (last_px - p.entry_px) * tick_size * order_qty
                  if p.position != 0 and last_px >= 0 else 0.0)
        row("PnL", f"open {unreal:+.2f}  day {p.day_pnl:+.2f}")
        row("", f"realized {p.realized:+.2f}  fees {p.fees:.2f}")
        if p.kill_daily:
            row("risk", "DAILY LOSS LIMIT: entries off", "bold red")
    return out


# --- header ---------------------------------------------------------------------


def format_clock(ts_ms: int) -> str:
    """Event time as ``YYYY-MM-DD HH:MM:SS UTC`` (``--`` before the first event)."""
    if ts_ms < 0:
        return "----------  --:--:-- UTC"
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- the console's panels (rich.Text: styled spans, tests compare .plain) ---------------

MINUTE_MS = 60_000


def _hms(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%H:%M:%S") if ts_ms >= 0 else "--:--:--"


def _minutes(ms: int) -> str:
    m = max(0, ms) // MINUTE_MS
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"


def render_status(*, mode: str, ts: int, state: str, speed: float, progress: float, kill_manual: bool,
                  kill_daily: bool, day_pnl: float, ready: int | None, feed: Any | None = None,
                  stale_ms: int = 10_000, compact: bool = False, entries_paused: bool = False,
                  network: str = "") -> Text:
    """The status bar: mode, UTC clock of the data, replay state or feed health, kill switch, day PnL, readiness.

    Args:
        mode: ``REPLAY``, ``PAPER`` or ``LIVE``.
        ts: exchange time of the newest event, ms UTC (-1: none yet).
        state: ``replay``, ``paused``, ``warm-up``, ``jump`` or ``finished`` (a replay);
            ``warm-up`` or ``live`` (the live modes).
        speed: x real time.
        progress: fraction of the session replayed, 0..1.
        kill_manual, kill_daily: the operator's kill switch, the daily loss limit.
        day_pnl: today's PnL, quote currency.
        ready: readiness code of the last closed minute (None: none yet).
        feed: the live feed's health (``engine.runtime.events.FeedHealth``); None in a replay.
        stale_ms: wall time without data after which the feed shows as quiet.
        compact: 80 columns: the clock without the date, the feed's figures only when they matter.
        entries_paused: the operator paused new entries (shown only while paused).
        network: where the live modes' data and orders come from (mainnet, testnet, demo, loopback).
    """
    marks = {"replay": "▶", "paused": "⏸", "warm-up": "⏩", "jump": "⏭", "finished": "■"}
    out = Text()
    sep = Text(" │ ", style="dim")
    out.append(mode, style="bold reverse" if mode != "LIVE" else "bold white on red")
    if network:
        out.append(f" {network}", style="bold red" if network == "mainnet" else "bold")
    out.append(" ")
    out.append(((format_clock(ts)[11:19] + "Z") if ts >= 0 else "--:--:--") if compact else format_clock(ts))
    out.append_text(sep)
    if mode == "REPLAY":
        # "replay" goes without saying in a replay (the mode says it): 80 columns are tight
        word = "" if state == "replay" else f" {state.upper() if state == 'paused' else state}"
        out.append(f"{marks.get(state, '')}{word} {speed:g}x {progress * 100:.0f}%",
                   style="bold yellow" if state == "paused" else "")
    else:
        out.append_text(render_feed(feed, stale_ms, compact))
        if state == "warm-up":
            left = getattr(feed, "warmup_left", 0)
            out.append((f" warm-up {left}m" if compact else f" warm-up {left} min left") if left else " warm-up",
                       style="yellow")
    out.append_text(sep)
    out.append("KILL ON" if kill_manual else "kill off", style="bold white on red" if kill_manual else "green")
    if entries_paused:
        out.append_text(sep)
        out.append("ENTRIES PAUSED" if not compact else "PAUSED", style="bold black on yellow")
    if kill_daily:
        out.append_text(sep)
        out.append("LOSS LIMIT", style="bold white on red")
    out.append_text(sep)
    out.append(f"day {day_pnl:+.2f}", style="green" if day_pnl >= 0 else "red")
    if ready is not None:
        out.append_text(sep)
        out.append(REASON_NAMES.get(ready, str(ready)), style="green" if ready == READY else "bold yellow")
    return out


def network_name(url: str) -> str:
    """The network of a Bybit URL (stream or REST): mainnet, testnet, demo, or loopback for 127.0.0.1."""
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host in ("127.0.0.1", "localhost", "::1"):
        return "loopback"
    if "testnet" in host:
        return "testnet"
    return "demo" if "demo" in host else "mainnet"


def render_feed(feed: Any | None, stale_ms: int = 10_000, compact: bool = False) -> Text:
    """Feed health in a few columns: state, lag, age of the newest data, reconnects, gaps, bad frames.

    ``compact`` (80 columns): the figures only when the feed is not ok.
    """
    if feed is None:
        return Text("feed connecting", style="yellow")
    out = Text()
    if not feed.connected and feed.quiet_ms < 0 and not feed.reconnects:
        return out.append("feed connecting", style="yellow")  # the first connection, before any data
    if not feed.connected:
        out.append("FEED DOWN", style="bold white on red")
    elif feed.quiet_ms < 0:
        return out.append("feed up, waiting for data", style="yellow")
    elif feed.quiet_ms > stale_ms:
        out.append(f"FEED QUIET {feed.quiet_ms / 1000:.0f}s", style="bold yellow")
    else:
        out.append("feed ok", style="green")
    # data from another day (a loopback venue replaying a recording) has no meaningful lag
    lag = f"{feed.lag_ms}ms" if abs(feed.lag_ms) < 86_400_000 else "n/a"
    healthy = feed.connected and feed.quiet_ms <= stale_ms
    if compact and healthy:  # 80 columns: the counters are in the alerts log
        return out
    out.append(f" lag {lag} age {feed.quiet_ms / 1000:.1f}s", style="dim" if feed.connected else "")
    if feed.reconnects:
        out.append(f" rc {feed.reconnects}", style="yellow")
    if feed.gaps:
        out.append(f" gaps {feed.gaps}", style="yellow")
    if feed.malformed:
        out.append(f" bad {feed.malformed}", style="yellow")
    return out


def render_position(position: Any | None, *, last_px: int, ts: int, tick_size: float, qty_step: float,
                    order_qty: float, max_hold_minutes: int, exchange: dict[str, Any] | None = None) -> Text:
    """Side, size, entry, stop, target, unrealised and realised PnL, time in trade, time stop left.

    ``exchange`` (live modes, ``LiveTrader.status()``): the exchange's own position and stop, the
    orders in flight, the kill switch's reasons and the last reconciliation.
    """
    fmt = PriceFormat(tick_size)
    qty_dec = decimals_of(qty_step)
    out = Text(no_wrap=True, overflow="ellipsis")

    def row(label: str, value: str, style: str = "") -> None:
        if out.plain:
            out.append("\n")
        out.append(f"{label:<10}", style="dim")
        out.append(value, style=style)

    if position is None:
        row("position", "waiting for the engine")
        return out
    p = position
    if p.position == 0:
        row("position", "FLAT", "bold")
    else:
        long = p.position > 0
        row("position", f"{'LONG' if long else 'SHORT'} {order_qty:.{qty_dec}f}", "bold green" if long else "bold red")
        row("entry", f"{fmt.px(p.entry_px)}  {SETUP_NAMES.get(p.tag, '')}".rstrip())
        row("stop", fmt.px(p.stop) if p.stop > 0 else "none")
        row("target", fmt.px2(p.target2) if p.target2 > 0 else "none")  # doubled ticks, like the POC
        unreal = p.position * (last_px - p.entry_px) * tick_size * order_qty if last_px >= 0 else 0.0
        row("open PnL", f"{unreal:+.2f}", "green" if unreal >= 0 else "red")
        held = ts - p.entry_ts if ts >= 0 else 0
        row("in trade", _minutes(held))
        left = max_hold_minutes * MINUTE_MS - held
        row("time stop", f"{_minutes(left)} left", "bold yellow" if left < 5 * MINUTE_MS else "")
    row("realised", f"{p.realized:+.2f}  fees {p.fees:.2f}", "green" if p.realized >= 0 else "red")
    row("day PnL", f"{p.day_pnl:+.2f}", "green" if p.day_pnl >= 0 else "red")
    if p.kill_daily:
        row("risk", "DAILY LOSS LIMIT: entries off", "bold red")
    if p.kill_manual:
        row("kill", "KILL SWITCH ON: entries off", "bold red")
    if getattr(p, "entries_paused", False):
        row("entries", "PAUSED: no new entries (e resumes)", "bold yellow")
    if exchange is not None:
        _exchange_rows(row, exchange, fmt, qty_step, qty_dec)
    return out


def _exchange_rows(row: Any, ex: dict[str, Any], fmt: PriceFormat, qty_step: float, qty_dec: int) -> None:
    """The exchange's side of the position panel (what Bybit itself holds)."""
    venue = ex.get("venue")
    if venue is None:
        row("exchange", "not read yet", "yellow")
    else:
        lots = int(venue.get("qty", 0))
        side = "FLAT" if lots == 0 else f"{'LONG' if lots > 0 else 'SHORT'} {abs(lots) * qty_step:.{qty_dec}f}"
        row("exchange", side, "bold")
        if lots:
            stop = int(venue.get("stop", 0))
            row("  stop", fmt.px(stop) if stop > 0 else "NONE ON THE EXCHANGE", "" if stop > 0 else "bold red")
            take = int(venue.get("take_profit", 0))
            if take > 0:
                row("  target", fmt.px(take))
    orders = len(ex.get("outstanding", [])) + int(ex.get("queued", 0))
    if orders or ex.get("flattening"):
        row("orders", f"{orders} in flight" + ("  FLATTENING" if ex.get("flattening") else ""), "yellow")
    rec = ex.get("last_reconciliation")
    if ex.get("mismatch"):
        row("reconcile", "MISMATCH: entries blocked", "bold red")
    elif rec:
        row("reconcile", "ok" if rec.get("matched", True) else "MISMATCH", "" if rec.get("matched", True) else "bold red")
    reasons = ex.get("kill", {}).get("reasons", {})
    if reasons:
        row("kill by", ", ".join(sorted(reasons)), "bold red")


ORDER_STATUS_STYLES = {"pending": "yellow", "queued": "yellow", "sending": "yellow", "unknown": "bold red",
                       "failed": "bold red"}


def render_orders(orders: tuple | list, *, ts: int, tick_size: float, qty_step: float) -> Text:
    """Open orders, one a line: side, type (entry, exit, flatten, stop, target), price, quantity, status, age.

    ``orders`` are ``engine.engine.OrderView``; their age is counted from ``ts`` (the data's clock).
    """
    fmt = PriceFormat(tick_size)
    qty_dec = decimals_of(qty_step)
    out = Text(no_wrap=True, overflow="ellipsis")
    if not orders:
        return out.append("no open orders", style="dim")
    # 44 columns: the wide layout's centre panel
    out.append(f"{'side':<5}{'type':<8}{'price':>10} {'qty':>6} {'status':<9}{'age':>5}", style="dim")
    for o in orders:
        out.append("\n")
        out.append(f"{'BUY' if o.side > 0 else 'SELL':<5}", style="green" if o.side > 0 else "red")
        out.append(f"{o.kind:<8}", style="bold" if o.kind in ("entry", "flatten") else "")
        out.append(f"{fmt.px2(o.px2) if o.px2 > 0 else 'market':>10} {o.qty * qty_step:>6.{qty_dec}f} ")
        out.append(f"{o.status[:8]:<9}", style=ORDER_STATUS_STYLES.get(o.status, ""))
        out.append(f"{_minutes(ts - o.ts) if ts >= 0 and o.ts > 0 else '':>5}", style="dim")
    return out


def render_signal_line(features: Mapping[str, Any], signal: Mapping[str, Any]) -> Text:
    """One closed minute in the signals log: time, readiness, acceptance, the action and its reason code."""
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(_hms(int(features["ts_min"]))[:5] + " ", style="dim")
    ready = int(features["ready"])
    action = int(signal.get("action", 0)) if signal else 0
    name = ACTION_NAMES.get(action, "?")
    style = "bold cyan" if name.startswith("ENTER") else "bold" if name.startswith("EXIT") else ""
    out.append(f"{name:<11}", style=style)
    reason = REASON_NAMES.get(int(signal["reason"]), "?") if signal else REASON_NAMES.get(ready, "?")
    out.append(f" {reason:<18}", style="" if ready == READY else "yellow")
    if signal:
        out.append(f" {ACCEPT_NAMES.get(int(signal['acceptance_state']), '?')}", style="dim")
        flags = [n for n in SIGNAL_FLAGS if int(signal.get(n, 0))]
        if flags:
            out.append(" " + ",".join(flags), style="magenta")
    return out


def render_fill_line(fill: Mapping[str, Any], *, tick_size: float, qty_step: float) -> Text:
    """One fill: time, entry or exit, side, size, price, setup or exit reason, PnL of an exit."""
    fmt = PriceFormat(tick_size)
    qty_dec = decimals_of(qty_step)
    qty = f"{fill['qty'] * qty_step:.{qty_dec}f}"
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(_hms(int(fill["ts_fill"])) + " ", style="dim")
    if fill["opening"]:
        what = "LONG" if fill["side"] == SIDE_BUY else "SHORT"
        out.append(f"ENTER {what} {qty} @ {fmt.px(int(fill['px']))} ({SETUP_NAMES.get(fill['tag'], '?')})",
                   style="bold cyan")
    else:
        side = "BUY" if fill["side"] == SIDE_BUY else "SELL"
        pnl = float(fill["pnl_realized"])
        out.append(f"EXIT {side} {qty} @ {fmt.px(int(fill['px']))} ({EXIT_NAMES.get(fill['reason'], '?')}) "
                   f"pnl {pnl:+.2f}", style="bold green" if pnl >= 0 else "bold red")
    return out


def render_chart(bars: list[tuple[int, int, int, int, int, int, bool]], *, tick_size: float,
                 height: int, width: int) -> Text:
    """Recent minutes as a text price chart with the value area as a band.

    Args:
        bars: one tuple per closed minute, oldest first: (low, high, close, val, vah,
            volume, va_valid), prices in ticks; a minute without trades has volume 0.
        tick_size: price of one tick.
        height, width: the space to fill (a price axis takes the left columns).

    Returns:
        ``height`` lines: each column is a minute (the newest on the right), ``│``
        its range, ``●`` its close, the value area's rows shaded (``·`` on empty cells).
    """
    if height < 3 or width < 12:
        return Text("")
    fmt = PriceFormat(tick_size)
    traded = [b for b in bars if b[5] > 0]
    if not traded:
        return Text("no closed minute with trades yet")
    label_w = max(len(fmt.px(max(b[1] for b in traded))), len(fmt.px(min(b[0] for b in traded)))) + 1
    cols = max(1, width - label_w - 1)
    shown = bars[-cols:]
    prices = [b[0] for b in shown if b[5] > 0] + [b[1] for b in shown if b[5] > 0]
    prices += [v for b in shown if b[6] for v in (b[3], b[4])]
    lo, hi = min(prices), max(prices)
    if hi == lo:
        hi = lo + 1
    step = (hi - lo) / (height - 1)

    def row_of(px: int) -> int:  # 0 = top
        return int(round((hi - px) / step))

    out = Text(no_wrap=True, overflow="crop")
    for r in range(height):
        px_row = hi - r * step
        label = fmt.px(int(round(px_row))) if r % max(1, height // 6) == 0 or r == height - 1 else ""
        if r:
            out.append("\n")
        out.append(f"{label:>{label_w - 1}} ", style="dim")
        out.append("┤" if label else "│", style="dim")
        for low, high, close, val, vah, vol, va_ok in shown:
            inside = va_ok and val - step / 2 <= px_row < vah + step / 2
            edge = inside and (abs(px_row - val) < step / 2 or abs(px_row - vah) < step / 2)
            band = "on grey23" if inside else ""
            if vol > 0 and row_of(high) <= r <= row_of(low):
                char = "●" if r == row_of(close) else "│"
                out.append(char, style=f"bold white {band}".strip() if char == "●" else f"cyan {band}".strip())
            else:
                # the band is a background; its edges are dotted too, for terminals without colour
                out.append("·" if edge else " ", style=f"grey50 {band}".strip())
    return out
