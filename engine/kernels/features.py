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
    P_SHAPE_HVN,
    P_SHAPE_LVN_DEPTH,
    P_SHAPE_MIN_BINS,
    P_SHAPE_P_POC,
    P_SHAPE_SKEW,
    P_SHAPE_THIN_VA,
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
    N_NPOC,
    N_PERIODIC,
    N_SESS,
    NO_MINUTE,
    NPOC_KIND,
    NPOC_MAX,
    NPOC_POC2,
    NPOC_START,
    NPOC_WIDTH,
    SESS_BAD,
    SESS_DAY,
    SESS_HI,
    SESS_ID,
    SESS_LO,
    SESS_N,
    SESS_OFF,
    SESS_ROLL,
    SF_M_PXQTY,
    SF_QIMB_EMA,
    SI_COVERED,
    SI_DEV_POC2,
    SI_DEV_VAH,
    SI_DEV_VAL,
    SI_DEV_VALID,
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
    SI_NPOC_N,
    SI_NRET,
    SI_OFFSET,
    SI_PD_POC2,
    SI_PD_VAH,
    SI_PD_VAL,
    SI_PD_VALID,
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
    SI_ROLL_COUNT,
    SI_ROLL_HEAD,
    SI_ROLL_POC2,
    SI_ROLL_TAIL,
    SI_ROLL_VAH,
    SI_ROLL_VAL,
    SI_ROLL_VALID,
    SI_SEG_TS,
    SI_SESS,
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
    SHAPE_B,
    SHAPE_D,
    SHAPE_DOUBLE,
    SHAPE_NONE,
    SHAPE_P,
    SHAPE_THIN,
)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
BLOCK_MS = 4 * 3_600_000


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
def _recentre(si, hist, mhist, hside, mside, b):
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
        tmp_hs = hside[:, lo - old_off:hi - old_off + 1].copy()
        tmp_ms = mside[:, lo - old_off:hi - old_off + 1].copy()
        hist[lo - old_off:hi - old_off + 1] = 0
        mhist[lo - old_off:hi - old_off + 1] = 0
        hside[:, lo - old_off:hi - old_off + 1] = 0
        mside[:, lo - old_off:hi - old_off + 1] = 0
        hist[lo - new_off:hi - new_off + 1] = tmp_h
        mhist[lo - new_off:hi - new_off + 1] = tmp_m
        hside[:, lo - new_off:hi - new_off + 1] = tmp_hs
        mside[:, lo - new_off:hi - new_off + 1] = tmp_ms
    si[SI_OFFSET] = new_off
    return True


@njit(cache=True, nogil=True)
def on_trade(si, sf, hist, mhist, hside, mside, touched, p, ts, px, qty, side):
    """Add a trade to the open minute. Returns False if the histogram cannot hold it.

    ``mside`` keeps the minute's volume at price by inferred side (row 0 buy,
    row 1 sell; ambiguous trades in neither), which joins the rolling
    profile's ``hside`` with the minute (volume at price with delta).
    """
    sign = trade_sign(si, p, ts, px)
    base_bin = int(p[P_BASE_BIN])
    b = px // base_bin
    off = si[SI_OFFSET]
    w = hist.shape[0]
    if off == NO_MINUTE or b < off or b >= off + w:
        if not _recentre(si, hist, mhist, hside, mside, b):
            si[SI_ERROR] = ERR_PRICE_RANGE
            return False
        off = si[SI_OFFSET]
    j = b - off
    if mhist[j] == 0:
        touched[si[SI_TOUCHED_N]] = b
        si[SI_TOUCHED_N] += 1
    mhist[j] += qty
    hist[j] += qty
    if sign > 0:
        mside[0, j] += qty
        hside[0, j] += qty
    elif sign < 0:
        mside[1, j] += qty
        hside[1, j] += qty
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
    """True if the open minute's histogram fits in the FIFO and in the rolling higher-timeframe one."""
    si = st.si
    return (si[SI_FIFO_COUNT] + si[SI_TOUCHED_N] <= st.fifo_bin.shape[0]
            and si[SI_ROLL_COUNT] + si[SI_TOUCHED_N] <= st.roll_bin.shape[0])


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
        for r in range(2):
            st.fifo_side[r, head] = st.mside[r, b - off]
            st.mside[r, b - off] = 0
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
        st.hside[0, b - off] -= st.fifo_side[0, tail]
        st.hside[1, b - off] -= st.fifo_side[1, tail]
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
    # aggregated bin by aggregated bin: a plain running sum, no division per base bin
    total = 0
    for j in range(n):
        first = max((a0 + j) * k, lo) - off
        last = min((a0 + j) * k + k - 1, hi) - off
        v = 0
        for i in range(first, last + 1):
            v += hist[i]
        agg[j] = v
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


# --- profile shape ----------------------------------------------------------------------


@njit(cache=True, nogil=True)
def profile_shape(agg, n, best, bottom, top, p, scr, out):
    """Shape of an aggregated profile ``agg[0:n]`` with POC bin ``best`` and value area ``bottom..top``.

    The quantities, with x_j = j + 0.5 the centre of bin j (bin 0 the lowest)
    and v_j its volume:

    * ``poc_pos`` = (best + 0.5) / n: where the POC sits in the range, 0 bottom .. 1 top;
    * ``skew`` = m3 / m2**1.5 of x weighted by v (m2, m3 the central moments;
      0 when m2 = 0): negative when the volume sits high with a tail below;
    * ``va_frac`` = (top - bottom + 1) / n: the value area's share of the range;
    * ``valley``: for each inner bin j, H_j = min(max v left of j, max v right of j);
      over the bins with H_j >= shape_hvn_frac * v_best (two high-volume nodes,
      one each side), the largest 1 - v_j / H_j; 0 when no bin qualifies.

    The class, first match wins: NONE (n < shape_min_bins); DOUBLE
    (valley >= shape_lvn_depth: a low-volume node between two high-volume
    nodes); THIN (va_frac >= shape_thin_va_frac: volume spread evenly, an
    elongated, trending profile); P (poc_pos >= shape_p_poc_min and
    skew <= -shape_skew_min); b (poc_pos <= 1 - shape_p_poc_min and
    skew >= shape_skew_min); else D (balanced).

    ``out``: float64[4] receives poc_pos, skew, va_frac, valley; returns the SHAPE_* code.
    """
    total = 0.0
    sx = 0.0
    for j in range(n):
        v = float(agg[j])
        total += v
        sx += v * (j + 0.5)
    mean = sx / total
    m2 = 0.0
    m3 = 0.0
    for j in range(n):
        v = float(agg[j])
        d = j + 0.5 - mean
        m2 += v * d * d
        m3 += v * d * d * d
    m2 /= total
    m3 /= total
    skew = m3 / m2 ** 1.5 if m2 > 0.0 else 0.0
    poc_pos = (best + 0.5) / n
    va_frac = (top - bottom + 1) / n
    # right maxima, then one pass from the left
    right = 0
    for j in range(n - 1, -1, -1):
        scr[j] = right
        if agg[j] > right:
            right = agg[j]
    need = p[P_SHAPE_HVN] * agg[best]
    valley = 0.0
    left = 0
    for j in range(n):
        h = min(left, scr[j])
        if h > 0 and h >= need:
            depth = 1.0 - agg[j] / h
            if depth > valley:
                valley = depth
        if agg[j] > left:
            left = agg[j]
    out[0] = poc_pos
    out[1] = skew
    out[2] = va_frac
    out[3] = valley
    if n < p[P_SHAPE_MIN_BINS]:
        return SHAPE_NONE
    if valley >= p[P_SHAPE_LVN_DEPTH]:
        return SHAPE_DOUBLE
    if va_frac >= p[P_SHAPE_THIN_VA]:
        return SHAPE_THIN
    if poc_pos >= p[P_SHAPE_P_POC] and skew <= -p[P_SHAPE_SKEW]:
        return SHAPE_P
    if poc_pos <= 1.0 - p[P_SHAPE_P_POC] and skew >= p[P_SHAPE_SKEW]:
        return SHAPE_B
    return SHAPE_D


# --- sessions: the UTC day and 4-hour block profiles, naked POCs --------------------------
#
# Each session (SESS_DAY, SESS_BLOCK) accumulates the base-bin volume of its
# closed minutes in ``shist[j]`` (its own offset and range, recentred like the
# rolling histogram); it is reset when a minute of the next period closes, and
# at a new data segment. The day's value area is computed every minute with the
# rolling profile's rules (minute t's bin width k and mid for ties): the
# developing POC / VAL / VAH. At a period's end the session's final POC (the
# value of its last minute, computed with that minute's k and mid) joins the
# naked POC table with its bin [poc - w/2, poc + w/2) (w = k * base bin, in
# ticks); an entry leaves it when a later minute trades inside that bin
# (low < poc + w/2 and high >= poc - w/2). A session whose range outgrew the
# histogram is marked bad: no values, no naked POC.


@njit(cache=True, nogil=True)
def _session_reset(st, j, pid):
    si = st.si
    base = SI_SESS + j * SESS_N
    lo = si[base + SESS_LO]
    hi = si[base + SESS_HI]
    off = si[base + SESS_OFF]
    if lo <= hi:
        st.shist[j, lo - off:hi - off + 1] = 0
    si[base + SESS_ID] = pid
    si[base + SESS_LO] = 1
    si[base + SESS_HI] = 0
    si[base + SESS_BAD] = 0


@njit(cache=True, nogil=True)
def _session_add(si, shist, j, b, q):
    """Add ``q`` lots at base bin ``b`` to session ``j`` (arrays, not the state tuple: called per bin)."""
    base = SI_SESS + j * SESS_N
    if si[base + SESS_BAD] != 0:
        return
    w = shist.shape[1]
    off = si[base + SESS_OFF]
    lo = si[base + SESS_LO]
    hi = si[base + SESS_HI]
    if off == NO_MINUTE or b < off or b >= off + w:
        new_lo = b
        new_hi = b
        if lo <= hi:
            new_lo = min(lo, b)
            new_hi = max(hi, b)
        if new_hi - new_lo >= w:
            si[base + SESS_BAD] = 1
            return
        new_off = (new_lo + new_hi) // 2 - w // 2
        if off != NO_MINUTE and lo <= hi:
            tmp = shist[j, lo - off:hi - off + 1].copy()
            shist[j, lo - off:hi - off + 1] = 0
            shist[j, lo - new_off:hi - new_off + 1] = tmp
        si[base + SESS_OFF] = new_off
        off = new_off
    shist[j, b - off] += q
    if lo > hi:
        si[base + SESS_LO] = b
        si[base + SESS_HI] = b
    elif b < lo:
        si[base + SESS_LO] = b
    elif b > hi:
        si[base + SESS_HI] = b


@njit(cache=True, nogil=True)
def _keep_session_va(st, p, j, k, mid2, out, at):
    """Session ``j``'s value area into ``st.si[at:at + 4]`` (POC doubled, VAL, VAH, valid; zeros when invalid).

    The four slots are consecutive in ``engine.kernels.state`` (``SI_DEV_*``, ``SI_ROLL_*``).
    """
    si = st.si
    if _session_va(st, p, j, k, mid2, out):
        si[at] = out[0]
        si[at + 1] = out[1]
        si[at + 2] = out[2]
        si[at + 3] = 1
    else:
        si[at:at + 4] = 0


@njit(cache=True, nogil=True)
def _session_va(st, p, j, k, mid2, out):
    """Value area of session ``j`` into ``out`` (value_area's layout); False when it has none."""
    si = st.si
    base = SI_SESS + j * SESS_N
    lo = si[base + SESS_LO]
    hi = si[base + SESS_HI]
    if si[base + SESS_BAD] != 0 or lo > hi or si[base + SESS_ID] == NO_MINUTE:
        return False
    value_area(st.shist[j], si[base + SESS_OFF], lo, hi, k, int(p[P_BASE_BIN]), mid2, p[P_VA_FRACTION], st.agg,
               out)
    return True


@njit(cache=True, nogil=True)
def _npoc_push(st, poc2, start, kind, width):
    si = st.si
    n = si[SI_NPOC_N]
    if n == NPOC_MAX:
        for i in range(n - 1):
            for c in range(N_NPOC):
                st.npoc[i, c] = st.npoc[i + 1, c]
        n -= 1
    st.npoc[n, NPOC_POC2] = poc2
    st.npoc[n, NPOC_START] = start
    st.npoc[n, NPOC_KIND] = kind
    st.npoc[n, NPOC_WIDTH] = width
    si[SI_NPOC_N] = n + 1


@njit(cache=True, nogil=True)
def _sessions_roll(st, p, t):
    """Before minute ``t`` joins: end every session whose period is over (naked POC, previous day)."""
    si = st.si
    out = np.empty(5, dtype=np.int64)
    for j in range(N_PERIODIC):
        period = DAY_MS if j == SESS_DAY else BLOCK_MS
        pid = t // period
        base = SI_SESS + j * SESS_N
        old = si[base + SESS_ID]
        if old == pid:
            continue
        if old != NO_MINUTE:
            # SI_K and SI_PREV_MID2 are still those of the session's last minute
            if _session_va(st, p, j, si[SI_K], si[SI_PREV_MID2], out):
                _npoc_push(st, out[0], old * period, j, si[SI_K] * int(p[P_BASE_BIN]))
            if j == SESS_DAY:
                ok = old == pid - 1 and si[SI_DEV_VALID] == 1
                si[SI_PD_POC2] = si[SI_DEV_POC2] if ok else 0
                si[SI_PD_VAL] = si[SI_DEV_VAL] if ok else 0
                si[SI_PD_VAH] = si[SI_DEV_VAH] if ok else 0
                si[SI_PD_VALID] = 1 if ok else 0
        _session_reset(st, j, pid)


@njit(cache=True, nogil=True)
def _sessions_close(st, p, t, k, mid2, close, f):
    """Minute ``t`` joins the sessions; its naked POC, developing and previous-day columns into ``f``."""
    si = st.si
    # naked POCs whose bin the minute's trades reached are no longer naked
    n = si[SI_NPOC_N]
    if si[SI_M_N] > 0:
        lo2 = 2 * si[SI_M_LOW]
        hi2 = 2 * si[SI_M_HIGH]
        m = 0
        for i in range(n):
            v = st.npoc[i, NPOC_POC2]
            w = st.npoc[i, NPOC_WIDTH]
            if hi2 < v - w or lo2 >= v + w:
                for c in range(N_NPOC):
                    st.npoc[m, c] = st.npoc[i, c]
                m += 1
        n = m
        si[SI_NPOC_N] = n
    above = 0
    below = 0
    c2 = 2 * close
    for i in range(n):
        v = st.npoc[i, NPOC_POC2]
        if v > c2 and (above == 0 or v < above):
            above = v
        elif v < c2 and (below == 0 or v > below):
            below = v
    f["npoc_n"][0] = n
    f["npoc_above2"][0] = above
    f["npoc_below2"][0] = below
    # the open minute's bins join each session, and the rolling profile's FIFO
    off = si[SI_OFFSET]
    touched = st.touched
    mhist = st.mhist
    shist = st.shist
    roll_base = SI_SESS + SESS_ROLL * SESS_N
    if si[roll_base + SESS_ID] == NO_MINUTE:
        si[roll_base + SESS_ID] = 0  # it has no period: 0 marks it in use
    n_touched = si[SI_TOUCHED_N]
    size = st.roll_bin.shape[0]
    head = si[SI_ROLL_HEAD]
    for i in range(n_touched):
        b = touched[i]
        q = mhist[b - off]
        for j in range(N_SESS):
            _session_add(si, shist, j, b, q)
        st.roll_bin[head] = b
        st.roll_qty[head] = q
        head += 1
        if head == size:
            head = 0
    si[SI_ROLL_HEAD] = head
    si[SI_ROLL_COUNT] += n_touched
    roll_len = st.roll_slot_n.shape[0]
    i_bar = si[SI_NBARS]
    st.roll_slot_n[i_bar % roll_len] = n_touched
    out = np.empty(5, dtype=np.int64)
    _keep_session_va(st, p, SESS_ROLL, k, mid2, out, SI_ROLL_POC2)
    f["roll_poc2"][0] = si[SI_ROLL_POC2]
    f["roll_val"][0] = si[SI_ROLL_VAL]
    f["roll_vah"][0] = si[SI_ROLL_VAH]
    f["roll_valid"][0] = si[SI_ROLL_VALID]
    if i_bar - roll_len + 1 >= 0:
        _roll_pop(st, (i_bar - roll_len + 1) % roll_len)
    _keep_session_va(st, p, SESS_DAY, k, mid2, out, SI_DEV_POC2)
    f["dev_poc2"][0] = si[SI_DEV_POC2]
    f["dev_val"][0] = si[SI_DEV_VAL]
    f["dev_vah"][0] = si[SI_DEV_VAH]
    f["dev_valid"][0] = si[SI_DEV_VALID]
    f["pd_poc2"][0] = si[SI_PD_POC2]
    f["pd_val"][0] = si[SI_PD_VAL]
    f["pd_vah"][0] = si[SI_PD_VAH]
    f["pd_valid"][0] = si[SI_PD_VALID]


@njit(cache=True, nogil=True)
def _roll_pop(st, slot):
    """The bar of ``slot`` (the oldest) leaves the rolling higher-timeframe profile."""
    si = st.si
    base = SI_SESS + SESS_ROLL * SESS_N
    size = st.roll_bin.shape[0]
    n = st.roll_slot_n[slot]
    bad = si[base + SESS_BAD] != 0
    off = si[base + SESS_OFF]
    tail = si[SI_ROLL_TAIL]
    for _ in range(n):
        if not bad:
            st.shist[SESS_ROLL, st.roll_bin[tail] - off] -= st.roll_qty[tail]
        tail += 1
        if tail == size:
            tail = 0
    si[SI_ROLL_TAIL] = tail
    si[SI_ROLL_COUNT] -= n
    st.roll_slot_n[slot] = 0
    if bad:
        return
    lo = si[base + SESS_LO]
    hi = si[base + SESS_HI]
    while lo <= hi and st.shist[SESS_ROLL, lo - off] == 0:
        lo += 1
    while hi >= lo and st.shist[SESS_ROLL, hi - off] == 0:
        hi -= 1
    si[base + SESS_LO] = lo
    si[base + SESS_HI] = hi


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
    _sessions_roll(st, p, t)
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
        # the shape reads the aggregated bins value_area left in st.agg
        width = k * base_bin
        a0 = si[SI_LO] // k
        shape_q = np.empty(4, dtype=np.float64)
        f["shape"][0] = profile_shape(st.agg, si[SI_HI] // k - a0 + 1, (out[0] // width - 1) // 2 - a0,
                                      out[1] // width - a0, out[2] // width - 1 - a0, p, st.scr, shape_q)
        f["shape_poc_pos"][0] = shape_q[0]
        f["shape_skew"][0] = shape_q[1]
        f["shape_va_frac"][0] = shape_q[2]
        f["shape_valley"][0] = shape_q[3]
    else:
        f["poc2"][0] = 0
        f["val"][0] = 0
        f["vah"][0] = 0
        f["va_coverage"][0] = np.nan
        f["va_valid"][0] = 0
        f["shape"][0] = SHAPE_NONE
        f["shape_poc_pos"][0] = np.nan
        f["shape_skew"][0] = np.nan
        f["shape_va_frac"][0] = np.nan
        f["shape_valley"][0] = np.nan
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
    # --- sessions, before the open minute's histogram moves to the FIFO ---
    _sessions_close(st, p, t, k, mid2, close, f)
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
        st.hside[:, si[SI_LO] - off:si[SI_HI] - off + 1] = 0
    for i in range(si[SI_TOUCHED_N]):
        st.mhist[st.touched[i] - off] = 0
        st.mside[0, st.touched[i] - off] = 0
        st.mside[1, st.touched[i] - off] = 0
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
    for j in range(N_SESS):
        _session_reset(st, j, NO_MINUTE)
    si[SI_DEV_VALID] = 0
    si[SI_PD_POC2] = 0
    si[SI_PD_VAL] = 0
    si[SI_PD_VAH] = 0
    si[SI_PD_VALID] = 0
    si[SI_NPOC_N] = 0
    si[SI_ROLL_HEAD] = 0
    si[SI_ROLL_TAIL] = 0
    si[SI_ROLL_COUNT] = 0
    st.roll_slot_n[:] = 0
    si[SI_ROLL_POC2] = 0
    si[SI_ROLL_VAL] = 0
    si[SI_ROLL_VAH] = 0
    si[SI_ROLL_VALID] = 0
    si[SI_SEG_TS] = ts
