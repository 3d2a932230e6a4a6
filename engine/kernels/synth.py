"""Numba kernel of the synthetic market (``engine.synth``).

One call generates the trades and L1 quotes of one time block from a state
that carries over between blocks. Three layers:

* a latent efficient price ``x`` (float ticks): an Ornstein-Uhlenbeck process
  around a fair value ``mu`` whose mean-reversion speed, volatility and
  drift come from per-minute regime parameters (``engine.synth`` draws
  them), with a fakeout target set from the recent range when a fakeout
  starts;
* a self-exciting event clock: baseline intensity per minute plus a
  Hawkes-like excitation after every taker order (bigger prints excite
  more), simulated exactly by thinning; the volatility of ``x`` scales with
  the excitation, so bursts are also volatile;
* an L1 book that follows ``x``: quote events shift the book towards ``x``,
  fill a widened spread or change sizes (the side the price is pushing
  into gets thinner, so quote imbalance leads price); taker orders are
  biased towards ``x - mid``, consume the touch, walk deeper levels when
  they exhaust it and emit the resulting quote in their own millisecond.

Sign invariant: a trade is only stamped in a millisecond whose prevailing
quote (the latest one strictly earlier, as the feature engine matches it)
classifies it as its true side; otherwise it moves to the next millisecond.
Prints inside the spread (hidden liquidity) are placed strictly inside that
prevailing quote.

Random numbers come from a splitmix64 generator whose state is an explicit
argument (``rs``, one uint64, seeded per block by ``engine.synth`` from
numpy's PCG64), not numba's per-thread generator: output depends only on
the arguments, whichever thread runs the kernel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.types import SIDE_BUY, SIDE_SELL

# float state ----------------------------------------------------------------
F_T = 0  # clock, ms since run start
F_TX = 1  # time x and mu were last advanced
F_X = 2  # latent efficient price, ticks
F_MU = 3  # fair value x reverts to, ticks
F_MU_SAVED = 4  # fair value before a fakeout
F_EXC = 5  # Hawkes excitation, events per ms
F_REFILL = 6  # pending spread refill time, ms (-1: none)
F_MIN_HI = 7  # high / low of x in the current minute
F_MIN_LO = 8
F_VEL = 9  # drift of mu, ticks per ms (trends)
F_CENTER = 10  # long-run price centre, ticks (trend direction bias)
F_HALF = 11  # half width of the preferred price band, ticks
F_GAUSS = 12  # cached second normal of a Box-Muller pair
F_HAS_GAUSS = 13  # 1.0 when F_GAUSS holds one
F_N = 14

# int state ------------------------------------------------------------------
I_BID = 0
I_ASK = 1
I_BID_SZ = 2
I_ASK_SZ = 3
I_LQ_TS = 4  # ms (relative) of the last emitted quote, -1 before the first
I_LQ_BID = 5  # book of the last emitted quote
I_LQ_ASK = 6
I_PQ_BID = 7  # book of the last quote in an earlier ms than I_LQ_TS (-1: none)
I_PQ_ASK = 8
I_MIN = 9  # minute index whose parameters are applied (-1 before the first)
I_TRADE_ID = 10  # next trade id
I_HIST_POS = 11
I_HIST_CNT = 12
I_LAST_SIDE = 13
I_TREND_DIR = 14
I_N = 15

# per-minute parameter columns -------------------------------------------------
P_REG = 0  # REG_* code
P_SIG = 1  # volatility of x, fraction of price per sqrt(minute)
P_RATE = 2  # mean event rate, events per ms
P_VEL = 3  # trend speed, fraction of price per minute (unsigned)
P_KAPPA = 4  # mean reversion of x to mu, per minute
P_NEWSEG = 5  # 1 on the first minute of a regime segment
P_U = 6  # uniform draw for the segment's direction
P_OVER = 7  # fakeout overshoot beyond the recent range, in sigma-minutes
P_WIDE = 8  # probability that a book shift leaves a spread wider than a tick
P_REFILL = 9  # mean time to refill a widened spread, ms
P_N = 10

REG_BALANCE = 0
REG_TREND = 1
REG_FAKE_UP = 2
REG_FAKE_DOWN = 3
REG_RETURN = 4

HIST_N = 240  # minutes of x high/low kept for fakeout targets
FAKE_LOOKBACK = 90  # minutes whose range a fakeout pokes out of
MARGIN = 4096  # free output rows needed before an event is generated

BRANCH = 0.35  # share of the mean rate expected from excitation: baseline = rate * (1 - BRANCH)
BETA = 1.0 / 1500.0  # excitation decay, per ms
P_TRADE = 0.19  # share of clock events that are taker orders
P_PERSIST = 0.25  # taker repeats the previous side (split meta-orders)
P_HIDDEN = 0.70  # taker in a wide spread fills hidden liquidity inside it
P_SWEEP = 0.20  # taker chasing x sweeps levels up to it
P_IMPROVE = 0.45  # quote event in a wide spread improves it
P_MERGE = 0.55  # refill published in the same snapshot as the sweep
IMPACT = 5.0  # permanent impact of a taker order, per-event sigmas per sqrt(BTC)
DIFFUSE = 0.82  # diffusion scale of x; taker impact supplies the rest of the variance
EXCITE = 1.2  # events excited by a taker order of weight 1 (weight sqrt(size / 0.01 BTC), at most 10)
MAX_LEVELS = 8  # levels a taker order walks at most (the rest is cancelled, IOC)
SWEEP_MAX_LEVEL = 3.0  # BTC: a sweep stops at a level bigger than this
PRESSURE = 4.0  # scales the expected drift (sigma-minutes per minute) into size tilt
MU_DRIFT = 0.15  # per-minute drift of mu in balance, in sigma-minutes
SQRT_MIN = math.sqrt(60_000.0)

# random numbers -------------------------------------------------------------
# splitmix64 on an explicit uint64 state (rs[0]): deterministic whatever
# thread runs the kernel, and cheaper than numba's thread-local generator.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0


@njit(cache=True, nogil=True)
def _u01(rs):
    """Uniform on [0, 1)."""
    s = rs[0] + _GOLDEN
    rs[0] = s
    z = (s ^ (s >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * _TWO_M53


@njit(cache=True, nogil=True)
def _exp1(rs):
    """Exponential with mean 1."""
    return -math.log(1.0 - _u01(rs))


@njit(cache=True, nogil=True)
def _normal(rs, sf):
    """Standard normal (Box-Muller; the second value is cached in sf)."""
    if sf[F_HAS_GAUSS] != 0.0:
        sf[F_HAS_GAUSS] = 0.0
        return sf[F_GAUSS]
    r = math.sqrt(-2.0 * math.log(1.0 - _u01(rs)))
    a = 2.0 * math.pi * _u01(rs)
    sf[F_GAUSS] = r * math.sin(a)
    sf[F_HAS_GAUSS] = 1.0
    return r * math.cos(a)


@njit(cache=True, nogil=True)
def _lognormal_lots(rs, sf, median, sigma, cap):
    q = median * math.exp(sigma * _normal(rs, sf))
    if q < 1.0:
        q = 1.0
    if q > cap:
        q = cap
    return np.int64(q)


@njit(cache=True, nogil=True)
def _taker_lots(rs, sf, lpb):
    """Taker order size: lognormal body plus Pareto tail (0.001 BTC .. 100 BTC)."""
    if _u01(rs) < 0.70:
        q = 0.004 * lpb * math.exp(1.3 * _normal(rs, sf))
    else:
        q = 0.03 * lpb * (1.0 - _u01(rs)) ** (-1.0 / 1.3)
    if q < 1.0:
        q = 1.0
    if q > 100.0 * lpb:
        q = 100.0 * lpb
    return np.int64(q)


@njit(cache=True, nogil=True)
def _latency(rs):
    """Receive delay, ms: 2 ms floor plus a skewed tail (mean about 10 ms, at most 102)."""
    u = _u01(rs)
    return np.int64(2.0 + 3.0 * u / (1.0 - 0.97 * u))


@njit(cache=True, nogil=True)
def _emit_quote(rs, si, ts, start_ms, q_ts, q_lts, q_bp, q_bs, q_ap, q_as, nq):
    if ts > si[I_LQ_TS]:
        if si[I_LQ_TS] >= 0:
            si[I_PQ_BID] = si[I_LQ_BID]
            si[I_PQ_ASK] = si[I_LQ_ASK]
        si[I_LQ_TS] = ts
    si[I_LQ_BID] = si[I_BID]
    si[I_LQ_ASK] = si[I_ASK]
    t_abs = start_ms + ts
    q_ts[nq] = t_abs
    q_lts[nq] = t_abs + _latency(rs)
    q_bp[nq] = si[I_BID]
    q_bs[nq] = si[I_BID_SZ]
    q_ap[nq] = si[I_ASK]
    q_as[nq] = si[I_ASK_SZ]
    return nq + 1


@njit(cache=True, nogil=True)
def _emit_prints(rs, si, ts, lts, px, fill, side, t_ts, t_lts, t_px, t_qty, t_side, t_id, nt):
    """``fill`` lots at ``px`` against 1-3 resting orders: one print each."""
    k = 1
    u = _u01(rs)
    if u < 0.25:
        k = 2
    if u < 0.08:
        k = 3
    if k > fill:
        k = fill
    left = fill
    for j in range(k):
        if j == k - 1:
            piece = left
        else:
            room = left - (k - 1 - j)
            piece = 1 + np.int64(_u01(rs) * room)
            if piece > room:
                piece = room
        t_ts[nt] = ts
        t_lts[nt] = lts
        t_px[nt] = px
        t_qty[nt] = piece
        t_side[nt] = side
        t_id[nt] = si[I_TRADE_ID]
        si[I_TRADE_ID] += 1
        nt += 1
        left -= piece
    return nt


@njit(cache=True, nogil=True)
def _advance_minutes(rs, sf, si, hist, params, m):
    """Close minutes up to ``m`` and apply each one's regime parameters."""
    while si[I_MIN] < m:
        if si[I_MIN] >= 0:
            pos = si[I_HIST_POS]
            hist[pos, 0] = sf[F_MIN_HI]
            hist[pos, 1] = sf[F_MIN_LO]
            si[I_HIST_POS] = (pos + 1) % HIST_N
            if si[I_HIST_CNT] < HIST_N:
                si[I_HIST_CNT] += 1
        si[I_MIN] += 1
        k = si[I_MIN]
        reg = np.int64(params[k, P_REG])
        x = sf[F_X]
        sig_t = params[k, P_SIG] * x  # ticks per sqrt(minute)
        if params[k, P_NEWSEG] > 0.0:
            if reg == REG_TREND:
                # bias the direction back towards the preferred price band
                off = (x - sf[F_CENTER]) / sf[F_HALF]
                off = min(1.0, max(-1.0, off))
                p_up = 0.5 - 0.4 * off
                si[I_TREND_DIR] = 1 if params[k, P_U] < p_up else -1
            elif reg == REG_FAKE_UP or reg == REG_FAKE_DOWN:
                sf[F_MU_SAVED] = sf[F_MU]
                hi = x
                lo = x
                n = min(si[I_HIST_CNT], FAKE_LOOKBACK)
                for j in range(n):
                    p = (si[I_HIST_POS] - 1 - j) % HIST_N
                    hi = max(hi, hist[p, 0])
                    lo = min(lo, hist[p, 1])
                if n < 10:
                    hi = max(hi, x + 2.0 * sig_t)
                    lo = min(lo, x - 2.0 * sig_t)
                if reg == REG_FAKE_UP:
                    sf[F_MU] = hi + params[k, P_OVER] * sig_t
                else:
                    sf[F_MU] = lo - params[k, P_OVER] * sig_t
            elif reg == REG_RETURN:
                sf[F_MU] = sf[F_MU_SAVED]
        if reg == REG_TREND:
            sf[F_VEL] = si[I_TREND_DIR] * params[k, P_VEL] * x / 60_000.0
        else:
            sf[F_VEL] = 0.0
        if reg == REG_BALANCE or reg == REG_RETURN:
            sf[F_MU] += MU_DRIFT * sig_t * _normal(rs, sf)
        sf[F_MIN_HI] = x
        sf[F_MIN_LO] = x


@njit(cache=True, nogil=True)
def synth_block(rs, sf, si, hist, params, start_ms, t_end, lpb, trades, quotes):
    """Generate events from ``sf[F_T]`` up to ``t_end`` (ms since run start).

    Args:
        rs: generator state (uint64[1]); sf, si, hist: float state, int
            state and minute high/low ring (``F_*``, ``I_*``, ``HIST_N`` x 2).
            All updated in place.
        params: per-minute parameters (``P_*`` columns), row = minute index.
        start_ms: absolute time of the run start (added to every ts).
        t_end: block end, ms since run start (exclusive).
        lpb: lots per BTC (1 / qty_step).
        trades, quotes: output buffers (TRADE_DTYPE, QUOTE_DTYPE).

    Returns:
        (trades written, quotes written, done): ``done`` is False when a
        buffer filled up; call again with the same state to continue.
    """
    t_ts = trades["ts"]
    t_lts = trades["local_ts"]
    t_px = trades["px"]
    t_qty = trades["qty"]
    t_side = trades["side"]
    t_id = trades["trade_id"]
    q_ts = quotes["ts"]
    q_lts = quotes["local_ts"]
    q_bp = quotes["bid_px"]
    q_bs = quotes["bid_sz"]
    q_ap = quotes["ask_px"]
    q_as = quotes["ask_sz"]
    cap_t = trades.shape[0] - MARGIN
    cap_q = quotes.shape[0] - MARGIN
    n_min = params.shape[0]
    nt = 0
    nq = 0
    while True:
        if nt >= cap_t or nq >= cap_q:
            return nt, nq, False
        t = sf[F_T]
        m = np.int64(t // 60_000.0)
        if m >= n_min:
            m = n_min - 1
        if m != si[I_MIN]:
            _advance_minutes(rs, sf, si, hist, params, m)
        if si[I_LQ_TS] < 0:
            nq = _emit_quote(rs, si, np.int64(math.floor(t)), start_ms, q_ts, q_lts, q_bp, q_bs, q_ap, q_as, nq)
        lam_mean = params[m, P_RATE]
        lam0 = lam_mean * (1.0 - BRANCH)
        exc = sf[F_EXC]
        lam_bar = lam0 + exc
        tp = t + (1.0 / lam_bar) * _exp1(rs)
        limit = min((m + 1) * 60_000.0, t_end)
        refill = sf[F_REFILL]
        is_refill = False
        if refill >= 0.0 and refill <= tp and refill < limit:
            tp = max(refill, t)
            is_refill = True
            sf[F_REFILL] = -1.0
        elif tp >= limit:
            sf[F_EXC] = exc * math.exp(-BETA * (limit - t))
            sf[F_T] = limit
            if limit >= t_end:
                return nt, nq, True
            continue
        exc = exc * math.exp(-BETA * (tp - t))
        sf[F_EXC] = exc
        sf[F_T] = tp
        if not is_refill and _u01(rs) * lam_bar > lam0 + exc:
            continue  # thinned

        # --- latent price ------------------------------------------------
        ts = np.int64(math.floor(tp))
        dt = tp - sf[F_TX]
        sf[F_TX] = tp
        sig = params[m, P_SIG]
        kap = params[m, P_KAPPA] / 60_000.0
        x = sf[F_X]
        mu = sf[F_MU] + sf[F_VEL] * dt
        sig_ms = sig * x / SQRT_MIN
        vm = math.sqrt((1.0 - BRANCH) * (1.0 + exc / lam0))
        if vm > 3.0:
            vm = 3.0
        x += kap * (mu - x) * dt + DIFFUSE * sig_ms * vm * math.sqrt(dt) * _normal(rs, sf)
        sf[F_MU] = mu
        sf[F_X] = x
        s_ev = sig_ms * math.sqrt(1.0 / lam_mean)
        if s_ev < 0.5:
            s_ev = 0.5
        # expected drift of x over the next minute, in sigma-minutes
        pz = PRESSURE * (kap * (mu - x) + sf[F_VEL]) * 60_000.0 / (sig * x)
        pz = min(2.0, max(-2.0, pz))

        bid = si[I_BID]
        ask = si[I_ASK]
        spread = ask - bid
        dev = x - 0.5 * (bid + ask)
        z = dev / s_ev
        med_sz = 0.5 * lpb

        if not is_refill and _u01(rs) < P_TRADE:
            # --- taker order ---------------------------------------------
            if _u01(rs) < P_PERSIST and si[I_LAST_SIDE] != 0:
                side = si[I_LAST_SIDE]
            else:
                side = SIDE_BUY if _u01(rs) < 0.5 + 0.4 * math.tanh(0.7 * z) else SIDE_SELL
            si[I_LAST_SIDE] = side
            inside = spread >= 2 and _u01(rs) < P_HIDDEN
            if ts > si[I_LQ_TS]:
                pb = si[I_LQ_BID]
                pa = si[I_LQ_ASK]
            else:
                pb = si[I_PQ_BID]
                pa = si[I_PQ_ASK]
            if inside:
                bump = ts <= si[I_LQ_TS]
            elif side == SIDE_BUY:
                bump = pa < 0 or ask < pa
            else:
                bump = pb < 0 or bid > pb
            if bump:
                ts = si[I_LQ_TS] + 1
                if ts >= t_end:
                    continue
                sf[F_T] = float(ts)
            lts = start_ms + ts + _latency(rs)
            total = np.int64(0)
            if inside:
                px = bid + 1 + np.int64(_u01(rs) * (spread - 1))
                qty = min(_taker_lots(rs, sf, lpb), np.int64(0.5 * lpb))
                nt = _emit_prints(rs, si, start_ms + ts, lts, px, qty, side, t_ts, t_lts, t_px, t_qty, t_side, t_id, nt)
                total = qty
            else:
                sweep = side * z > 1.0 and _u01(rs) < P_SWEEP
                remaining = np.int64(0) if sweep else _taker_lots(rs, sf, lpb)
                if side == SIDE_BUY:
                    lvl_px = ask
                    lvl_sz = si[I_ASK_SZ]
                else:
                    lvl_px = bid
                    lvl_sz = si[I_BID_SZ]
                nlev = 0
                while True:
                    stop = False
                    if sweep:
                        beyond = (lvl_px > x) if side == SIDE_BUY else (lvl_px < x)
                        if beyond or nlev >= MAX_LEVELS or lvl_sz > SWEEP_MAX_LEVEL * lpb:
                            # partial fill of the level beyond x (or of a wall) ends the sweep
                            fill = 1 + np.int64(_u01(rs) * 0.5 * min(lvl_sz, SWEEP_MAX_LEVEL * lpb))
                            if fill > lvl_sz:
                                fill = lvl_sz
                            stop = True
                        else:
                            fill = lvl_sz
                    else:
                        fill = min(remaining, lvl_sz)
                        remaining -= fill
                        stop = remaining == 0
                    nt = _emit_prints(rs, si, start_ms + ts, lts, lvl_px, fill, side, t_ts, t_lts, t_px, t_qty, t_side, t_id, nt)
                    total += fill
                    lvl_sz -= fill
                    if lvl_sz == 0:
                        nlev += 1
                        lvl_px += side * (1 + np.int64((0.5) * _exp1(rs)))
                        lvl_sz = _lognormal_lots(rs, sf, 0.08 * lpb, 1.2, 50.0 * lpb)
                        if nlev >= MAX_LEVELS:
                            stop = True  # rest of the order is cancelled (IOC)
                    if stop:
                        break
                if side == SIDE_BUY:
                    si[I_ASK] = lvl_px
                    si[I_ASK_SZ] = lvl_sz
                else:
                    si[I_BID] = lvl_px
                    si[I_BID_SZ] = lvl_sz
                if nlev > 0:
                    if _u01(rs) < P_MERGE:
                        if side == SIDE_BUY:
                            si[I_BID] = si[I_ASK] - 1
                            si[I_BID_SZ] = _lognormal_lots(rs, sf, 0.3 * med_sz, 1.2, 200.0 * lpb)
                        else:
                            si[I_ASK] = si[I_BID] + 1
                            si[I_ASK_SZ] = _lognormal_lots(rs, sf, 0.3 * med_sz, 1.2, 200.0 * lpb)
                    elif sf[F_REFILL] < 0.0:
                        sf[F_REFILL] = ts + (params[m, P_REFILL]) * _exp1(rs)
                nq = _emit_quote(rs, si, ts, start_ms, q_ts, q_lts, q_bp, q_bs, q_ap, q_as, nq)
            # permanent impact and self-excitation
            btc = total / lpb
            x += side * IMPACT * s_ev * math.sqrt(btc)
            wexc = math.sqrt(btc / 0.01)
            if wexc > 10.0:
                wexc = 10.0
            exc += EXCITE * BETA * wexc
            if exc > 20.0 * lam_mean:
                exc = 20.0 * lam_mean
            sf[F_EXC] = exc
        else:
            # --- quote event -------------------------------------------------
            if ts < si[I_LQ_TS]:
                ts = si[I_LQ_TS]  # never before a quote already published
            if spread >= 2 and (is_refill or _u01(rs) < P_IMPROVE):
                gap = spread - 1
                if _u01(rs) < 0.5 + 0.4 * math.tanh(z):
                    if _u01(rs) < 0.75:
                        si[I_BID] = ask - 1
                    else:
                        si[I_BID] = bid + 1 + np.int64(_u01(rs) * gap)
                    si[I_BID_SZ] = _lognormal_lots(rs, sf, 0.3 * med_sz * math.exp(0.5 * pz), 1.2, 200.0 * lpb)
                else:
                    if _u01(rs) < 0.75:
                        si[I_ASK] = bid + 1
                    else:
                        si[I_ASK] = ask - 1 - np.int64(_u01(rs) * gap)
                    si[I_ASK_SZ] = _lognormal_lots(rs, sf, 0.3 * med_sz * math.exp(-0.5 * pz), 1.2, 200.0 * lpb)
                if si[I_ASK] - si[I_BID] >= 2 and sf[F_REFILL] < 0.0:
                    sf[F_REFILL] = tp + (params[m, P_REFILL]) * _exp1(rs)
            elif not is_refill and abs(dev) > 0.5 + 0.6 * s_ev * _u01(rs):
                # the book moves to x
                w = np.int64(1)
                if _u01(rs) < params[m, P_WIDE]:
                    w = 2 + min(np.int64((0.8) * _exp1(rs)), np.int64(3))
                if dev > 0.0:
                    na = np.int64(math.floor(x)) + 1
                    nb = na - w
                else:
                    nb = np.int64(math.ceil(x)) - 1
                    na = nb + w
                si[I_BID] = nb
                si[I_ASK] = na
                si[I_BID_SZ] = _lognormal_lots(rs, sf, med_sz * math.exp(0.6 * pz), 1.1, 100.0 * lpb)
                si[I_ASK_SZ] = _lognormal_lots(rs, sf, med_sz * math.exp(-0.6 * pz), 1.1, 100.0 * lpb)
                if w >= 2 and sf[F_REFILL] < 0.0:
                    sf[F_REFILL] = tp + (params[m, P_REFILL]) * _exp1(rs)
            else:
                # size change at the touch: adds, cancels, partial cancels
                on_bid = _u01(rs) < 0.5
                tilt = 0.6 * pz + 0.3 * math.tanh(z)
                if on_bid:
                    cur = si[I_BID_SZ]
                    target = med_sz * math.exp(tilt)
                else:
                    cur = si[I_ASK_SZ]
                    target = med_sz * math.exp(-tilt)
                lc = math.log(cur)
                lc += 0.15 * (math.log(target) - lc) + 0.45 * _normal(rs, sf)
                new = np.int64(math.exp(lc))
                if new < 1:
                    new = np.int64(1)
                if new > 100.0 * lpb:
                    new = np.int64(100.0 * lpb)
                if new == cur:
                    new = cur + 1
                if on_bid:
                    si[I_BID_SZ] = new
                else:
                    si[I_ASK_SZ] = new
            nq = _emit_quote(rs, si, ts, start_ms, q_ts, q_lts, q_bp, q_bs, q_ap, q_as, nq)

        sf[F_X] = x
        if x > sf[F_MIN_HI]:
            sf[F_MIN_HI] = x
        if x < sf[F_MIN_LO]:
            sf[F_MIN_LO] = x
