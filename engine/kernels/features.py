"""Feature kernels: bars, volatility, bin width, rolling profile, order flow.

Implements spec.md sections 4-5 with the exact conventions of SPEC_NOTES.md.
Everything is incremental: events go in one at a time (``on_trade``,
``on_quote``) and ``close_minute`` finalises a minute when the first event of
a later minute arrives (or when a driver decides the minute is over). A
stream fed in chunks of any size therefore gives the same tables.

The rolling 240-minute profile is a dense base-bin histogram (``hist``)
updated by adding each trade and, when a minute leaves the window,
subtracting that minute's histogram, kept as (bin, qty) entries in a FIFO.
It is never rebuilt from raw ticks. A dict keyed by bin was rejected: numba's
typed dict is ~20x slower per update than an array index, and BTC's 4-hour
range fits easily in 2**20 base bins.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.kernels.params import (
    P_ALPHA_BIN,
    P_BASE_BIN,
    P_BVC_LOOKBACK,
    P_FEED_STALE_MS,
    P_INV_TICK,
    P_K_MAX,
    P_MIN_COVERAGE,
    P_QIMB_EMA_ALPHA,
    P_QUOTE_STALE_MS,
    P_REBUCKET_INTERVAL,
    P_REBUCKET_PCT,
    P_TICK,
    P_TICK_RULE,
    P_VA_FRACTION,
    P_WINDOW,
)
from engine.kernels.state import (
    ERR_PRICE_RANGE,
    LB_CLOSE,
    LB_HIGH,
    LB_LOW,
    LB_POC2,
    LB_SIZE,
    LB_VAH,
    LB_VAL,
    LB_VALID,
    NO_MINUTE,
    SF_M_PXQTY,
    SF_QIMB_EMA,
    SI_COVERED,
    SI_ERROR,
    SI_FIFO_COUNT,
    SI_FIFO_HEAD,
    SI_FIFO_TAIL,
    SI_GAP_FROM,
    SI_GAP_TO,
    SI_HAVE_EMA,
    SI_HI,
    SI_K,
    SI_LAST_TRADE_PX,
    SI_LO,
    SI_M_AGREE,
    SI_M_AGREE_DEN,
    SI_M_AMB,
    SI_M_CLOSE,
    SI_M_HIGH,
    SI_M_LOW,
    SI_M_N,
    SI_M_OF,
    SI_M_OPEN,
    SI_M_VOL,
    SI_NBARS,
    SI_NDP,
    SI_NRET,
    SI_OFFSET,
    SI_PQ_ASK,
    SI_PQ_BID,
    SI_PQ_TS,
    SI_PREV_CLOSE,
    SI_PREV_MID2,
    SI_PROFILE_QTY,
    SI_Q_ASK,
    SI_Q_ASZ,
    SI_Q_BID,
    SI_Q_BSZ,
    SI_Q_TS,
    SI_SEG_TS,
    SI_STARTED,
    SI_TICK_SIGN,
    SI_TOUCHED_N,
)
from engine.types import (
    READY,
    REASON_FEED_GAP,
    REASON_FEED_STALE,
    REASON_INSUFFICIENT_HISTORY,
    REASON_NO_PROFILE,
    REASON_NO_QUOTE,
    REASON_WARMUP,
)

MINUTE_MS = 60_000


@njit(cache=True, nogil=True)
def on_quote(si, ts, bid_px, bid_sz, ask_px, ask_sz):
    """Apply an L1 quote. Keeps the latest quote of an earlier ms for trade alignment."""
    if ts > si[SI_Q_TS]:
        si[SI_PQ_TS] = si[SI_Q_TS]
        si[SI_PQ_BID] = si[SI_Q_BID]
        si[SI_PQ_ASK] = si[SI_Q_ASK]
    si[SI_Q_TS] = ts
    si[SI_Q_BID] = bid_px
    si[SI_Q_BSZ] = bid_sz
    si[SI_Q_ASK] = ask_px
    si[SI_Q_ASZ] = ask_sz


@njit(cache=True, nogil=True)
def trade_sign(si, p, ts, px):
    """Inferred aggressor sign of a trade (+1, -1, or 0 for ambiguous).

    The prevailing quote is the latest with ts strictly earlier than the
    trade's; a quote stamped with the trade's own ms is usually the book after
    it (SPEC_NOTES, order flow).
    """
    if si[SI_Q_TS] >= 0 and si[SI_Q_TS] < ts:
        q_ts = si[SI_Q_TS]
        bid = si[SI_Q_BID]
        ask = si[SI_Q_ASK]
    else:
        q_ts = si[SI_PQ_TS]
        bid = si[SI_PQ_BID]
        ask = si[SI_PQ_ASK]
    sign = 0
    if q_ts >= 0 and ts - q_ts <= p[P_QUOTE_STALE_MS]:
        if px >= ask:
            sign = 1
        elif px <= bid:
            sign = -1
    # tick rule state runs on every trade, whether or not it is used. "A zero
    # change repeating the previous sign" is read as the classic tick rule: the
    # sign of the last non-zero price change (not the previous trade's final,
    # possibly quote-based, sign)
    last = si[SI_LAST_TRADE_PX]
    if last >= 0:
        if px > last:
            si[SI_TICK_SIGN] = 1
        elif px < last:
            si[SI_TICK_SIGN] = -1
    si[SI_LAST_TRADE_PX] = px
    if sign == 0 and p[P_TICK_RULE] != 0.0:
        sign = si[SI_TICK_SIGN]
    return sign


@njit(cache=True, nogil=True)
def _recentre(si, hist, mhist, b):
    """Move the histogram window so base bin ``b`` fits; False if the data cannot fit."""
    w = hist.shape[0]
    lo = si[SI_LO]
    hi = si[SI_HI]
    # the live range is the rolling profile plus the open minute (both inside [lo, hi])
    if lo > hi:
        new_lo = b
        new_hi = b
    else:
        new_lo = min(lo, b)
        new_hi = max(hi, b)
    if new_hi - new_lo >= w:
        return False
    new_off = (new_lo + new_hi) // 2 - w // 2
    old_off = si[SI_OFFSET]
    if old_off != NO_MINUTE and lo <= hi:
        tmp_h = hist[lo - old_off:hi - old_off + 1].copy()
        tmp_m = mhist[lo - old_off:hi - old_off + 1].copy()
        hist[lo - old_off:hi - old_off + 1] = 0
        mhist[lo - old_off:hi - old_off + 1] = 0
        hist[lo - new_off:hi - new_off + 1] = tmp_h
        mhist[lo - new_off:hi - new_off + 1] = tmp_m
    si[SI_OFFSET] = new_off
    return True


@njit(cache=True, nogil=True)
def on_trade(si, sf, hist, mhist, touched, p, ts, px, qty, side):
    """Add a trade to the open minute. Returns False if the histogram cannot hold it."""
    sign = trade_sign(si, p, ts, px)
    base_bin = int(p[P_BASE_BIN])
    b = px // base_bin
    off = si[SI_OFFSET]
    w = hist.shape[0]
    if off == NO_MINUTE or b < off or b >= off + w:
        if not _recentre(si, hist, mhist, b):
            si[SI_ERROR] = ERR_PRICE_RANGE
            return False
        off = si[SI_OFFSET]
    j = b - off
    if mhist[j] == 0:
        touched[si[SI_TOUCHED_N]] = b
        si[SI_TOUCHED_N] += 1
    mhist[j] += qty
    hist[j] += qty
    si[SI_PROFILE_QTY] += qty
    if si[SI_LO] > si[SI_HI]:
        si[SI_LO] = b
        si[SI_HI] = b
    elif b < si[SI_LO]:
        si[SI_LO] = b
    elif b > si[SI_HI]:
        si[SI_HI] = b
    if si[SI_M_N] == 0:
        si[SI_M_OPEN] = px
        si[SI_M_HIGH] = px
        si[SI_M_LOW] = px
    else:
        if px > si[SI_M_HIGH]:
            si[SI_M_HIGH] = px
        if px < si[SI_M_LOW]:
            si[SI_M_LOW] = px
    si[SI_M_CLOSE] = px
    si[SI_M_VOL] += qty
    si[SI_M_N] += 1
    sf[SF_M_PXQTY] += float(px) * float(qty)
    si[SI_M_OF] += sign * qty
    if sign == 0:
        si[SI_M_AMB] += qty
    elif side != 0:
        si[SI_M_AGREE_DEN] += qty
        if side == sign:
            si[SI_M_AGREE] += qty
    si[SI_STARTED] = 1
    return True


@njit(cache=True, nogil=True)
def fifo_room(st):
    """True if the open minute's histogram fits in the FIFO."""
    return st.si[SI_FIFO_COUNT] + st.si[SI_TOUCHED_N] <= st.fifo_bin.shape[0]


@njit(cache=True, nogil=True)
def _push_minute_hist(st, slot):
    """Move the open minute's histogram into the FIFO as the entries of ``slot``."""
    si = st.si
    size = st.fifo_bin.shape[0]
    off = si[SI_OFFSET]
    n = si[SI_TOUCHED_N]
    head = si[SI_FIFO_HEAD]
    for i in range(n):
        b = st.touched[i]
        st.fifo_bin[head] = b
        st.fifo_qty[head] = st.mhist[b - off]
        st.mhist[b - off] = 0
        head += 1
        if head == size:
            head = 0
    si[SI_FIFO_HEAD] = head
    si[SI_FIFO_COUNT] += n
    si[SI_TOUCHED_N] = 0
    st.slot_n[slot] = n


@njit(cache=True, nogil=True)
def _pop_minute_hist(st, slot):
    """Subtract the oldest minute (its entries are at the FIFO tail) from the profile."""
    si = st.si
    size = st.fifo_bin.shape[0]
    off = si[SI_OFFSET]
    n = st.slot_n[slot]
    si[SI_COVERED] -= st.slot_cov[slot]
    st.slot_cov[slot] = 0
    tail = si[SI_FIFO_TAIL]
    for _ in range(n):
        b = st.fifo_bin[tail]
        q = st.fifo_qty[tail]
        st.hist[b - off] -= q
        si[SI_PROFILE_QTY] -= q
        tail += 1
        if tail == size:
            tail = 0
    si[SI_FIFO_TAIL] = tail
    si[SI_FIFO_COUNT] -= n
    st.slot_n[slot] = 0


@njit(cache=True, nogil=True)
def _tighten(st):
    """Shrink [lo, hi] to the bins that still hold volume."""
    si = st.si
    off = si[SI_OFFSET]
    lo = si[SI_LO]
    hi = si[SI_HI]
    while lo <= hi and st.hist[lo - off] == 0:
        lo += 1
    while hi >= lo and st.hist[hi - off] == 0:
        hi -= 1
    si[SI_LO] = lo
    si[SI_HI] = hi


@njit(cache=True, nogil=True)
def value_area(hist, off, lo, hi, k, base_bin, mid2, va_fraction, agg, out):
    """POC / VAL / VAH of the base histogram aggregated to ``k`` base bins.

    Args:
        hist: base histogram, ``hist[b - off]`` is the volume of base bin b.
        lo, hi: lowest and highest base bins holding volume (lo <= hi).
        k: aggregation factor; aggregated bin of b is floor(b / k).
        base_bin: base bin width in ticks.
        mid2: bid + ask in ticks (twice the mid), 0 when unknown: POC ties go
            to the bin centre nearest the mid, then to the lower bin.
        agg: scratch, at least (hi // k - lo // k + 1) long.
        out: int64[5] receives poc2 (twice the POC centre, ticks), val, vah
            (ticks), included volume, total volume.
    """
    a0 = lo // k
    a1 = hi // k
    n = a1 - a0 + 1
    for j in range(n):
        agg[j] = 0
    total = 0
    for b in range(lo, hi + 1):
        v = hist[b - off]
        if v != 0:
            agg[b // k - a0] += v
            total += v
    width = k * base_bin
    best = -1
    best_v = -1
    best_d = 0
    for j in range(n):
        v = agg[j]
        if v > best_v:
            best = j
            best_v = v
            best_d = abs((2 * (a0 + j) + 1) * width - mid2)
        elif v == best_v and mid2 > 0:
            d = abs((2 * (a0 + j) + 1) * width - mid2)
            if d < best_d:
                best = j
                best_d = d
    top = best
    bottom = best
    cum = best_v
    need = va_fraction * total
    while cum < need:
        up_open = top + 1 < n
        down_open = bottom - 1 >= 0
        if not up_open and not down_open:
            break
        if up_open and (not down_open or agg[top + 1] >= agg[bottom - 1]):
            top += 1
            cum += agg[top]
        else:
            bottom -= 1
            cum += agg[bottom]
    out[0] = (2 * (a0 + best) + 1) * width
    out[1] = (a0 + bottom) * width
    out[2] = (a0 + top + 1) * width
    out[3] = cum
    out[4] = total


@njit(cache=True, nogil=True)
def _mid_price(mid2, p):
    """The mid in price units, computed as (bid + ask) / 2 from exactly printed prices."""
    inv = p[P_INV_TICK]
    if inv > 0.0:
        return mid2 / inv / 2.0
    return mid2 * p[P_TICK] / 2.0


@njit(cache=True, nogil=True)
def _std_window(ring, count, cap):
    """Population std of the last min(count, cap) valid values in ``ring``; NaN if < 2."""
    n_take = min(count, cap)
    s = 0.0
    m = 0
    for i in range(n_take):
        v = ring[(count - 1 - i) % cap]
        if not math.isnan(v):
            s += v
            m += 1
    if m < 2:
        return np.nan, m
    mean = s / m
    ss = 0.0
    for i in range(n_take):
        v = ring[(count - 1 - i) % cap]
        if not math.isnan(v):
            ss += (v - mean) * (v - mean)
    return math.sqrt(ss / m), m


@njit(cache=True, nogil=True)
def push_lookback(st, i_bar, close, high, low, vah, val, poc2, valid):
    """Remember bar ``i_bar`` for the setups (tick and bar drivers share this)."""
    row = i_bar % LB_SIZE
    st.lb[row, LB_CLOSE] = close
    st.lb[row, LB_HIGH] = high
    st.lb[row, LB_LOW] = low
    st.lb[row, LB_VAH] = vah
    st.lb[row, LB_VAL] = val
    st.lb[row, LB_POC2] = poc2
    st.lb[row, LB_VALID] = 1 if valid else 0


@njit(cache=True, nogil=True)
def close_minute(st, p, t, bars, feats, n_out):
    """Finalise minute ``t`` into ``bars[n_out]`` and ``feats[n_out]``.

    Returns False (writing nothing) when no bar row is due: before the first
    trade there are no rows. Call only after checking ``fifo_room``.
    """
    si = st.si
    if si[SI_STARTED] == 0:
        return False
    window = int(p[P_WINDOW])
    i_bar = si[SI_NBARS]
    slot = i_bar % window
    # --- bar ---
    b = bars[n_out:n_out + 1]
    b["ts_min"][0] = t
    if si[SI_M_N] > 0:
        b["open"][0] = si[SI_M_OPEN]
        b["high"][0] = si[SI_M_HIGH]
        b["low"][0] = si[SI_M_LOW]
        b["close"][0] = si[SI_M_CLOSE]
    else:
        c = si[SI_PREV_CLOSE]
        b["open"][0] = c
        b["high"][0] = c
        b["low"][0] = c
        b["close"][0] = c
    b["volume"][0] = si[SI_M_VOL]
    b["pxqty"][0] = st.sf[SF_M_PXQTY]
    b["n_trades"][0] = si[SI_M_N]
    has_q = si[SI_Q_TS] >= 0
    b["has_quote"][0] = 1 if has_q else 0
    b["bid_px"][0] = si[SI_Q_BID] if has_q else 0
    b["bid_sz"][0] = si[SI_Q_BSZ] if has_q else 0
    b["ask_px"][0] = si[SI_Q_ASK] if has_q else 0
    b["ask_sz"][0] = si[SI_Q_ASZ] if has_q else 0
    b["quote_ts"][0] = si[SI_Q_TS]
    close = b["close"][0]
    # --- mid, returns, sigma ---
    f = feats[n_out:n_out + 1]
    f["ts_min"][0] = t
    mid2 = si[SI_Q_BID] + si[SI_Q_ASK] if has_q else 0
    f["mid2"][0] = mid2
    r = np.nan
    if i_bar > 0 and mid2 > 0 and si[SI_PREV_MID2] > 0:
        r = math.log(_mid_price(mid2, p) / _mid_price(si[SI_PREV_MID2], p))
    if i_bar > 0:
        st.ret[si[SI_NRET] % window] = r
        si[SI_NRET] += 1
    sigma, _ = _std_window(st.ret, si[SI_NRET], window)
    f["sigma"][0] = sigma
    # --- bin width with rebucketing ---
    base_bin = int(p[P_BASE_BIN])
    k_new = 1
    if not math.isnan(sigma) and mid2 > 0:
        raw = p[P_ALPHA_BIN] * _mid_price(mid2, p) * sigma
        kk = math.floor(raw / (base_bin * p[P_TICK]) + 0.5)
        k_max = p[P_K_MAX]
        if kk > k_max:
            kk = k_max
        if kk < 1:
            kk = 1
        k_new = int(kk)
    if i_bar == 0:
        si[SI_K] = k_new
    else:
        k_old = si[SI_K]
        if abs(k_new - k_old) / k_old >= p[P_REBUCKET_PCT] or (t // MINUTE_MS) % int(p[P_REBUCKET_INTERVAL]) == 0:
            si[SI_K] = k_new
    k = si[SI_K]
    f["k"][0] = k
    # --- profile (holds minutes [t - window + 1, t]) ---
    _tighten(st)
    f["profile_qty"][0] = si[SI_PROFILE_QTY]
    va_valid = si[SI_PROFILE_QTY] > 0 and si[SI_LO] <= si[SI_HI]
    if va_valid:
        out = np.empty(5, dtype=np.int64)
        value_area(st.hist, si[SI_OFFSET], si[SI_LO], si[SI_HI], k, base_bin, mid2, p[P_VA_FRACTION], st.agg, out)
        f["poc2"][0] = out[0]
        f["val"][0] = out[1]
        f["vah"][0] = out[2]
        f["va_coverage"][0] = out[3] / out[4]
        f["va_valid"][0] = 1
    else:
        f["poc2"][0] = 0
        f["val"][0] = 0
        f["vah"][0] = 0
        f["va_coverage"][0] = np.nan
        f["va_valid"][0] = 0
    # --- order flow ---
    f["volume"][0] = si[SI_M_VOL]
    f["of"][0] = si[SI_M_OF]
    f["amb_qty"][0] = si[SI_M_AMB]
    f["agree_qty"][0] = si[SI_M_AGREE]
    f["agree_den"][0] = si[SI_M_AGREE_DEN]
    # --- quote imbalance ---
    qimb = np.nan
    if has_q and si[SI_Q_BSZ] + si[SI_Q_ASZ] > 0:
        qimb = (si[SI_Q_BSZ] - si[SI_Q_ASZ]) / (si[SI_Q_BSZ] + si[SI_Q_ASZ])
    f["qimb"][0] = qimb
    if not math.isnan(qimb):
        if si[SI_HAVE_EMA] == 0:
            st.sf[SF_QIMB_EMA] = qimb
            si[SI_HAVE_EMA] = 1
        else:
            st.sf[SF_QIMB_EMA] += p[P_QIMB_EMA_ALPHA] * (qimb - st.sf[SF_QIMB_EMA])
    f["qimb_ema"][0] = st.sf[SF_QIMB_EMA] if si[SI_HAVE_EMA] == 1 else np.nan
    # --- BVC ---
    buy_frac = 0.5
    if i_bar > 0:
        lookback = int(p[P_BVC_LOOKBACK])
        dp = float(close - si[SI_PREV_CLOSE])
        st.dp[si[SI_NDP] % lookback] = dp
        si[SI_NDP] += 1
        n_take = min(si[SI_NDP], lookback)
        s = 0.0
        for i in range(n_take):
            s += st.dp[(si[SI_NDP] - 1 - i) % lookback]
        mean = s / n_take
        ss = 0.0
        for i in range(n_take):
            d = st.dp[(si[SI_NDP] - 1 - i) % lookback] - mean
            ss += d * d
        std = math.sqrt(ss / n_take)
        if std > 0.0:
            buy_frac = 0.5 * (1.0 + math.erf(dp / std / math.sqrt(2.0)))
    f["bvc_buy_frac"][0] = buy_frac
    f["bvc_net"][0] = si[SI_M_VOL] * (2.0 * buy_frac - 1.0)
    # --- readiness ---
    # a minute touched by a feed gap (live: disconnection or stall) is marked; it counts as a
    # minute without data, whatever arrived in it
    gap = t <= si[SI_GAP_TO] and t + MINUTE_MS - 1 >= si[SI_GAP_FROM]
    f["feed_gap"][0] = 1 if gap else 0
    cov = 1 if si[SI_M_N] > 0 and not gap else 0
    # minutes with data in the window: the closed ones in the FIFO plus minute t
    covered = si[SI_COVERED] + cov
    f["covered"][0] = covered
    f["segment_ts"][0] = si[SI_SEG_TS]
    ready = READY
    if i_bar < window - 1:
        ready = REASON_WARMUP
    elif gap:
        ready = REASON_FEED_GAP
    elif covered < p[P_MIN_COVERAGE] * window - 1e-9:
        ready = REASON_INSUFFICIENT_HISTORY  # history means data, not clock time (SPEC_NOTES)
    elif not va_valid:
        ready = REASON_NO_PROFILE
    elif not has_q:
        ready = REASON_NO_QUOTE
    elif t + MINUTE_MS - 1 - si[SI_Q_TS] > p[P_FEED_STALE_MS]:
        ready = REASON_FEED_STALE
    f["ready"][0] = ready
    push_lookback(st, i_bar, close, b["high"][0], b["low"][0], f["vah"][0], f["val"][0], f["poc2"][0], va_valid)
    # --- roll the window: minute t joins the FIFO, minute t - window + 1 leaves ---
    _push_minute_hist(st, slot)
    st.slot_cov[slot] = cov
    si[SI_COVERED] += cov
    if i_bar - window + 1 >= 0:
        _pop_minute_hist(st, (i_bar - window + 1) % window)
    # --- reset the minute ---
    si[SI_PREV_CLOSE] = close
    si[SI_PREV_MID2] = mid2
    si[SI_NBARS] = i_bar + 1
    si[SI_M_N] = 0
    si[SI_M_VOL] = 0
    si[SI_M_OF] = 0
    si[SI_M_AMB] = 0
    si[SI_M_AGREE] = 0
    si[SI_M_AGREE_DEN] = 0
    st.sf[SF_M_PXQTY] = 0.0
    return True



@njit(cache=True, nogil=True)
def start_segment(st, ts):
    """Forget every feature input: the data from ``ts`` on is computed as if it began there.

    SPEC_NOTES, Bars, "Long gaps": after more than a window without events the
    profile, returns, BVC history, look-backs, quotes and warm-up start empty.
    The caller has closed the previous segment's minutes.
    """
    si = st.si
    off = si[SI_OFFSET]
    if si[SI_LO] <= si[SI_HI]:
        st.hist[si[SI_LO] - off:si[SI_HI] - off + 1] = 0
    for i in range(si[SI_TOUCHED_N]):
        st.mhist[st.touched[i] - off] = 0
    si[SI_TOUCHED_N] = 0
    si[SI_LO] = 1
    si[SI_HI] = 0
    si[SI_PROFILE_QTY] = 0
    si[SI_FIFO_HEAD] = 0
    si[SI_FIFO_TAIL] = 0
    si[SI_FIFO_COUNT] = 0
    st.slot_n[:] = 0
    st.slot_cov[:] = 0
    si[SI_COVERED] = 0
    st.ret[:] = np.nan
    si[SI_NRET] = 0
    st.dp[:] = 0.0
    si[SI_NDP] = 0
    st.lb[:, :] = 0
    si[SI_NBARS] = 0
    si[SI_STARTED] = 0
    si[SI_K] = 0
    si[SI_PREV_CLOSE] = 0
    si[SI_PREV_MID2] = 0
    si[SI_Q_TS] = -1
    si[SI_PQ_TS] = -1
    si[SI_LAST_TRADE_PX] = -1
    si[SI_TICK_SIGN] = 0
    si[SI_HAVE_EMA] = 0
    st.sf[SF_QIMB_EMA] = 0.0
    si[SI_SEG_TS] = ts
