"""A naive, independent implementation of SPEC_NOTES.md for the tests.

Written for clarity, not speed: plain Python over lists and dicts, the
profile rebuilt from the raw trades of the window at every minute (the
engine never does that), quotes looked up by scanning. It shares nothing with
``engine.kernels`` but the record dtypes.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np


@dataclass
class RefParams:
    tick: float
    base_bin: int
    alpha: float
    k_max_ticks: int
    rebucket_interval: int
    rebucket_pct: float
    stale_ms: int
    tick_rule: bool
    va_fraction: float
    window: int
    bvc_lookback: int
    feed_stale_ms: int
    min_coverage: float = 0.95
    shape_min_bins: int = 5
    shape_p_poc_min: float = 0.65
    shape_skew_min: float = 0.25
    shape_thin_va_frac: float = 0.60
    shape_hvn_frac: float = 0.50
    shape_lvn_depth: float = 0.70
    htf_rolling_minutes: int = 1440


DAY_MS = 86_400_000
BLOCK_MS = 4 * 3_600_000
NPOC_MAX = 64


def value_area(agg: dict[int, int], width: int, mid2: int, va_fraction: float) -> tuple[int, int, int, int, int]:
    """(poc, bottom, top, included, total) of an aggregated profile {level: volume}, levels in bins of ``width``."""
    total = sum(agg.values())
    best_v = max(agg.values())
    cands = sorted(a for a, v in agg.items() if v == best_v)
    if mid2 > 0 and len(cands) > 1:
        cands.sort(key=lambda a: (abs((2 * a + 1) * width - mid2), a))
    poc = cands[0]
    lo_a, hi_a = min(agg), max(agg)
    top = bottom = poc
    cum = agg[poc]
    while cum < va_fraction * total:
        up = agg.get(top + 1, 0) if top + 1 <= hi_a else None
        dn = agg.get(bottom - 1, 0) if bottom - 1 >= lo_a else None
        if up is None and dn is None:
            break
        if dn is None or (up is not None and up >= dn):
            top += 1
            cum += up
        else:
            bottom -= 1
            cum += dn
    return poc, bottom, top, cum, total


def shape_of(agg: dict[int, int], poc: int, bottom: int, top: int, rp: RefParams) -> tuple[int, float, float, float,
                                                                                             float]:
    """(class, poc_pos, skew, va_frac, valley) of an aggregated profile, as defined in the kernel's docs."""
    a0, a1 = min(agg), max(agg)
    v = [agg.get(a, 0) for a in range(a0, a1 + 1)]
    n = len(v)
    total = float(sum(v))
    mean = sum(x * (j + 0.5) for j, x in enumerate(v)) / total
    m2 = sum(x * (j + 0.5 - mean) ** 2 for j, x in enumerate(v)) / total
    m3 = sum(x * (j + 0.5 - mean) ** 3 for j, x in enumerate(v)) / total
    skew = m3 / m2 ** 1.5 if m2 > 0 else 0.0
    poc_pos = (poc - a0 + 0.5) / n
    va_frac = (top - bottom + 1) / n
    valley = 0.0
    for j in range(n):
        h = min(max(v[:j], default=0), max(v[j + 1:], default=0))
        if h > 0 and h >= rp.shape_hvn_frac * v[poc - a0]:
            valley = max(valley, 1.0 - v[j] / h)
    if n < rp.shape_min_bins:
        cls = 0
    elif valley >= rp.shape_lvn_depth:
        cls = 5
    elif va_frac >= rp.shape_thin_va_frac:
        cls = 4
    elif poc_pos >= rp.shape_p_poc_min and skew <= -rp.shape_skew_min:
        cls = 2
    elif poc_pos <= 1 - rp.shape_p_poc_min and skew >= rp.shape_skew_min:
        cls = 3
    else:
        cls = 1
    return cls, poc_pos, skew, va_frac, valley


def reference_features(trades: np.ndarray, quotes: np.ndarray, rp: RefParams) -> list[dict]:
    """One dict per bar row, values in ticks/lots like the engine's records.

    A gap of more than a window between consecutive events (trades and quotes
    merged) splits the data into segments, each computed as if the data began
    there (SPEC_NOTES, Bars, "Long gaps").
    """
    times = sorted([(int(x), 0) for x in trades["ts"]] + [(int(x), 1) for x in quotes["ts"]])
    cuts = [times[i][0] for i in range(1, len(times)) if times[i][0] - times[i - 1][0] > rp.window * 60000]
    bounds = [-1, *cuts, 2**62]
    rows: list[dict] = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        seg_tr = trades[(trades["ts"] >= lo) & (trades["ts"] < hi)]
        seg_qu = quotes[(quotes["ts"] >= lo) & (quotes["ts"] < hi)]
        seg_rows = _segment(seg_tr, seg_qu, rp)
        first = min([int(x) for x in seg_tr["ts"][:1]] + [int(x) for x in seg_qu["ts"][:1]], default=0)
        for r in seg_rows:
            r["segment_ts"] = first
        rows += seg_rows
    return rows


def _segment(trades: np.ndarray, quotes: np.ndarray, rp: RefParams) -> list[dict]:
    if len(trades) == 0:
        return []
    q_ts = [int(x) for x in quotes["ts"]]
    first_min = int(trades["ts"][0]) // 60000 * 60000
    last_ts = max(int(trades["ts"][-1]), q_ts[-1] if q_ts else -1)
    last_min = last_ts // 60000 * 60000

    def quote_at_or_before(ts):
        i = bisect.bisect_right(q_ts, ts) - 1
        return i

    def quote_strictly_before(ts):
        return bisect.bisect_left(q_ts, ts) - 1

    # trade signs
    signs = []
    prev_px = None
    tick_sign = 0
    for tr in trades:
        ts, px = int(tr["ts"]), int(tr["px"])
        i = quote_strictly_before(ts)
        s = 0
        if i >= 0 and ts - q_ts[i] <= rp.stale_ms:
            if px >= quotes["ask_px"][i]:
                s = 1
            elif px <= quotes["bid_px"][i]:
                s = -1
        if prev_px is not None:
            if px > prev_px:
                tick_sign = 1
            elif px < prev_px:
                tick_sign = -1
        prev_px = px
        if s == 0 and rp.tick_rule:
            s = tick_sign
        signs.append(s)

    by_minute: dict[int, list[int]] = {}
    for idx, tr in enumerate(trades):
        by_minute.setdefault(int(tr["ts"]) // 60000 * 60000, []).append(idx)

    rows = []
    prev_close = None
    mids: list[float | None] = []
    returns: list[float] = []
    dps: list[float] = []
    k = None
    naked: list[tuple[int, int, int, int]] = []  # (poc2, session start, kind, bin width), oldest first
    minutes = list(range(first_min, last_min + 1, 60000))
    for i_bar, t in enumerate(minutes):
        idxs = by_minute.get(t, [])
        row: dict = {"ts_min": t}
        if idxs:
            pxs = [int(trades["px"][j]) for j in idxs]
            row.update(open=pxs[0], high=max(pxs), low=min(pxs), close=pxs[-1])
        else:
            row.update(open=prev_close, high=prev_close, low=prev_close, close=prev_close)
        vol = sum(int(trades["qty"][j]) for j in idxs)
        row["volume"] = vol
        qi = quote_at_or_before(t + 59999)
        if qi >= 0:
            bid, ask = int(quotes["bid_px"][qi]), int(quotes["ask_px"][qi])
            bsz, asz = int(quotes["bid_sz"][qi]), int(quotes["ask_sz"][qi])
            row.update(bid_px=bid, ask_px=ask, bid_sz=bsz, ask_sz=asz, quote_ts=q_ts[qi])
            mid = (bid / round(1 / rp.tick) + ask / round(1 / rp.tick)) / 2
            row["mid2"] = bid + ask
        else:
            row.update(bid_px=None, ask_px=None, bid_sz=None, ask_sz=None, quote_ts=None)
            mid = None
            row["mid2"] = 0
        # sigma
        if i_bar > 0:
            pm = mids[-1]
            returns.append(math.log(mid / pm) if (mid is not None and pm is not None) else float("nan"))
        mids.append(mid)
        last = [r for r in returns[-rp.window:] if not math.isnan(r)]
        sigma = float(np.std(last)) if len(last) >= 2 else float("nan")
        row["sigma"] = sigma
        # k
        if math.isnan(sigma) or mid is None:
            k_new = 1
        else:
            raw = rp.alpha * mid * sigma
            k_new = int(min(max(math.floor(raw / (rp.base_bin * rp.tick) + 0.5), 1), rp.k_max_ticks // rp.base_bin))
        if k is None:
            k = k_new
        elif abs(k_new - k) / k >= rp.rebucket_pct or (t // 60000) % rp.rebucket_interval == 0:
            k = k_new
        row["k"] = k
        # profile from raw trades of [t - window + 1 min, t]
        lo_t = t - (rp.window - 1) * 60000
        hist: dict[int, int] = {}
        sides: dict[int, list[int]] = {}
        for j, tr in enumerate(trades):
            ts = int(tr["ts"])
            if lo_t <= ts < t + 60000:
                b = int(tr["px"]) // rp.base_bin
                a = b // k
                hist[a] = hist.get(a, 0) + int(tr["qty"])
                if signs[j] != 0:
                    sides.setdefault(b, [0, 0])[0 if signs[j] > 0 else 1] += int(tr["qty"])
        row["sides"] = sides
        width = k * rp.base_bin
        if hist:
            poc, bottom, top, cum, total = value_area(hist, width, row["mid2"], rp.va_fraction)
            row.update(poc2=(2 * poc + 1) * width, val=bottom * width, vah=(top + 1) * width,
                       va_coverage=cum / total, va_valid=1)
            cls, *qs = shape_of(hist, poc, bottom, top, rp)
            row.update(shape=cls, shape_poc_pos=qs[0], shape_skew=qs[1], shape_va_frac=qs[2], shape_valley=qs[3])
        else:
            row.update(poc2=0, val=0, vah=0, va_coverage=float("nan"), va_valid=0)
            row.update(shape=0, shape_poc_pos=float("nan"), shape_skew=float("nan"), shape_va_frac=float("nan"),
                       shape_valley=float("nan"))
        # sessions: a session ends at the first row of a later period; its POC (with its last row's k
        # and mid) becomes naked until a later minute's trades span it
        for period, kind in ((DAY_MS, 0), (BLOCK_MS, 1)):
            if rows and rows[-1]["ts_min"] // period != t // period:
                start = rows[-1]["ts_min"] // period * period
                last = rows[-1]
                sess = _session_hist(trades, start, start + period, rp.base_bin, last["k"])
                if sess:
                    w = last["k"] * rp.base_bin
                    poc = value_area(sess, w, last["mid2"], rp.va_fraction)[0]
                    naked.append(((2 * poc + 1) * w, start, kind, w))
                    del naked[:-NPOC_MAX]
        if idxs:
            lo2, hi2 = 2 * row["low"], 2 * row["high"]
            # traded inside the POC's bin [poc2 - w, poc2 + w) / 2
            naked[:] = [e for e in naked if hi2 < e[0] - e[3] or lo2 >= e[0] + e[3]]
        c2 = 2 * row["close"]
        row["npoc_n"] = len(naked)
        row["npoc_above2"] = min([e[0] for e in naked if e[0] > c2], default=0)
        row["npoc_below2"] = max([e[0] for e in naked if e[0] < c2], default=0)
        row["naked"] = list(naked)
        day0 = t // DAY_MS * DAY_MS
        day = _session_hist(trades, day0, t + 60000, rp.base_bin, k)
        if day:
            poc, bottom, top, _, _ = value_area(day, width, row["mid2"], rp.va_fraction)
            row.update(dev_poc2=(2 * poc + 1) * width, dev_val=bottom * width, dev_vah=(top + 1) * width, dev_valid=1)
        else:
            row.update(dev_poc2=0, dev_val=0, dev_vah=0, dev_valid=0)
        # the rolling higher-timeframe profile: the segment's trades of [t - length + 1 min, t]
        roll = _session_hist(trades, t - (rp.htf_rolling_minutes - 1) * 60000, t + 60000, rp.base_bin, k)
        if roll:
            poc, bottom, top, _, _ = value_area(roll, width, row["mid2"], rp.va_fraction)
            row.update(roll_poc2=(2 * poc + 1) * width, roll_val=bottom * width, roll_vah=(top + 1) * width,
                       roll_valid=1)
        else:
            row.update(roll_poc2=0, roll_val=0, roll_vah=0, roll_valid=0)
        prev = [r for r in rows if r["ts_min"] == day0 - 60000]
        if prev and prev[0]["dev_valid"]:
            row.update(pd_poc2=prev[0]["dev_poc2"], pd_val=prev[0]["dev_val"], pd_vah=prev[0]["dev_vah"], pd_valid=1)
        else:
            row.update(pd_poc2=0, pd_val=0, pd_vah=0, pd_valid=0)
        # order flow
        row["of"] = sum(signs[j] * int(trades["qty"][j]) for j in idxs)
        row["amb_qty"] = sum(int(trades["qty"][j]) for j in idxs if signs[j] == 0)
        agree_den = sum(int(trades["qty"][j]) for j in idxs if signs[j] != 0 and trades["side"][j] != 0)
        agree = sum(int(trades["qty"][j]) for j in idxs if signs[j] != 0 and trades["side"][j] == signs[j])
        row["agree_qty"], row["agree_den"] = agree, agree_den
        # qimb
        if qi >= 0 and bsz + asz > 0:
            row["qimb"] = (bsz - asz) / (bsz + asz)
        else:
            row["qimb"] = float("nan")
        # bvc
        if i_bar == 0:
            bf = 0.5
        else:
            dp = float(row["close"] - prev_close)
            dps.append(dp)
            std = float(np.std(dps[-rp.bvc_lookback:]))
            bf = 0.5 * (1 + math.erf(dp / std / math.sqrt(2))) if std > 0 else 0.5
        row["bvc_buy_frac"] = bf
        row["bvc_net"] = vol * (2 * bf - 1)
        # readiness: minutes of the window [t - window + 1, t] with at least one trade
        covered = sum(1 for m in range(t - (rp.window - 1) * 60000, t + 60000, 60000) if by_minute.get(m))
        row["covered"] = covered
        if i_bar < rp.window - 1:
            ready = 1
        elif covered / rp.window < rp.min_coverage and not math.isclose(covered / rp.window, rp.min_coverage):
            ready = 21
        elif not row["va_valid"]:
            ready = 2
        elif qi < 0:
            ready = 3
        elif t + 59999 - q_ts[qi] > rp.feed_stale_ms:
            ready = 4
        else:
            ready = 0
        row["ready"] = ready
        prev_close = row["close"]
        rows.append(row)
    return rows


def _session_hist(trades: np.ndarray, start: int, end: int, base_bin: int, k: int) -> dict[int, int]:
    """{level: volume} of the trades with start <= ts < end, levels of k base bins."""
    out: dict[int, int] = {}
    for tr in trades:
        if start <= int(tr["ts"]) < end:
            a = int(tr["px"]) // base_bin // k
            out[a] = out.get(a, 0) + int(tr["qty"])
    return out
