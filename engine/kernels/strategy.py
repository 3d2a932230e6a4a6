"""Signal engine and risk: decisions out as intents (ARCHITECTURE.md, "Intents out, fills in").

spec.md sections 6-8 with the conventions of SPEC_NOTES.md "Signals". The
same functions serve every driver: ``decide`` runs at each minute close (tick
backtest, replay, live) or for each stored minute (bar backtest) and emits
intents (enter / exit / flatten with side, quantity, stop, target, tag);
``on_time`` rolls the risk day and charges the paper model's funding;
``watch_quote`` (external mode) turns a crossed stop or target into an exit
intent. Nothing here writes the position: fills do, through
``engine.kernels.position.apply_fill`` (the paper model in
``engine.kernels.paper``, exchange fills through ``Engine.apply_fill``).

Prices are int64 ticks; targets are kept doubled (``*2``) because the POC
is a bin centre that can fall on a half tick.
"""

from __future__ import annotations

import math

from numba import njit

from engine.kernels.paper import slip
from engine.kernels.params import (
    P_ACCEPT_K,
    P_AMBIG_MAX,
    P_BREAKOUT_TARGET_MULT,
    P_COOLDOWN_MIN,
    P_FAIL_LOOKBACK,
    P_FLIP,
    P_FUNDING_DEFAULT,
    P_FUNDING_REPLAY,
    P_HTF_BIAS,
    P_MAX_HOLD_MIN,
    P_MIN_RR,
    P_OF_BREAKOUT,
    P_OF_ENTRY,
    P_OF_FAIL,
    P_QIMB_BREAKOUT,
    P_QIMB_ENTRY,
    P_QIMB_FAIL,
    P_QTY,
    P_QTY_STEP,
    P_RESET_HOUR,
    P_RETEST,
    P_RETEST_BUFFER,
    P_RETEST_WINDOW,
    P_SLIP_ENTRY,
    P_STOP_BUFFER,
    P_TARGET,
    P_TICK,
    P_USE_QIMB,
)
from engine.kernels.position import apply_funding, start_risk_day
from engine.kernels.state import (
    C_INTENTS,
    LB_CLOSE,
    LB_HIGH,
    LB_LOW,
    LB_SIZE,
    LB_VAH,
    LB_VAL,
    LB_VALID,
    NO_MINUTE,
    SF_FUNDING_RATE,
    SI_DAY,
    SI_ENTRIES_PAUSED,
    SI_ENTRY_TS,
    SI_EXIT_SENT,
    SI_FLATTEN,
    SI_INTENTS,
    SI_KILL_DAILY,
    SI_KILL_MANUAL,
    SI_LAST_EXIT_MIN,
    SI_MODE,
    SI_NBARS,
    SI_NEXT_DAY,
    SI_NEXT_FUNDING,
    SI_PEND_ACTION,
    SI_PEND_REASON,
    SI_PEND_SEQ,
    SI_PEND_STOP,
    SI_PEND_TAG,
    SI_PEND_TARGET,
    SI_PEND_TS,
    SI_POS,
    SI_Q_ASK,
    SI_Q_BID,
    SI_Q_TS,
    SI_RECON_BLOCK,
    SI_RETEST_DIR,
    SI_RETEST_UNTIL,
    SI_STOP,
    SI_TAG,
    SI_TARGET,
)
from engine.types import (
    ACCEPT_ABOVE,
    ACCEPT_ABOVE_PENDING,
    ACCEPT_BELOW,
    ACCEPT_BELOW_PENDING,
    ACCEPT_INSIDE,
    ACCEPT_INVALID,
    ACTION_ENTER_LONG,
    ACTION_ENTER_SHORT,
    ACTION_EXIT,
    ACTION_HOLD,
    CONFIRM_OF,
    CONFIRM_QIMB,
    EXIT_FLATTEN,
    EXIT_SIGNAL,
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TIME,
    INTENT_ENTER,
    INTENT_EXIT,
    INTENT_FLATTEN,
    MODE_PAPER,
    MODE_SIGNALS,
    READY,
    REASON_BREAKIN,
    REASON_BREAKOUT,
    REASON_CONFLICT,
    REASON_COOLDOWN,
    REASON_DAILY_LOSS_KILL,
    REASON_ENTRIES_PAUSED,
    REASON_FAILBREAK,
    REASON_FLIP,
    REASON_HTF_BIAS,
    REASON_IN_POSITION,
    REASON_MANUAL_KILL,
    REASON_NO_SETUP,
    REASON_NOT_CONFIRMED,
    REASON_PENDING_ORDER,
    REASON_RECONCILE_MISMATCH,
    REASON_RETEST_PENDING,
    REASON_REWARD_RISK,
    REASON_TARGET_PASSED,
    REASON_TIME_STOP,
    SETUP_BREAKIN,
    SETUP_BREAKOUT,
    SETUP_FAILBREAK,
    SIDE_BUY,
    SIDE_SELL,
)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
FUNDING_MS = 8 * 3_600_000


# --- intents -----------------------------------------------------------------


@njit(cache=True, nogil=True)
def emit_intent(si, intents, counts, kind, side, qty, stop, target2, tag, reason, ts):
    """Write one intent record; returns its seq (the caller checked the buffer has room)."""
    si[SI_INTENTS] += 1
    n = counts[C_INTENTS]
    r = intents[n:n + 1]
    r["kind"][0] = kind
    r["side"][0] = side
    r["qty"][0] = qty
    r["stop"][0] = stop
    r["target2"][0] = target2
    r["tag"][0] = tag
    r["reason"][0] = reason
    r["decision_ts"][0] = ts
    r["seq"][0] = si[SI_INTENTS]
    counts[C_INTENTS] = n + 1
    return si[SI_INTENTS]


@njit(cache=True, nogil=True)
def _exit_intent(si, intents, counts, reason, ts):
    """An exit intent for the whole open position, unless one is already out (sent once)."""
    pos = si[SI_POS]
    if pos == 0 or si[SI_EXIT_SENT] != 0:
        return 0
    si[SI_EXIT_SENT] = 1
    return emit_intent(si, intents, counts, INTENT_EXIT, SIDE_SELL if pos > 0 else SIDE_BUY, abs(pos), 0, 0,
                       si[SI_TAG], reason, ts)


@njit(cache=True, nogil=True)
def watch_quote(si, p, ts, bid, ask, intents, counts):
    """External mode, on every quote: a stop or target crossed emits one exit intent.

    The exchange holds the stop (it travels with the entry), so this is the
    engine's own exit for the target and a backstop for the stop; the exits
    are reduce-only, so one that arrives after the exchange's stop filled
    cannot open a position. Nothing here writes the position.
    """
    pos = si[SI_POS]
    if pos == 0 or si[SI_EXIT_SENT] != 0:
        return
    reason = 0
    if pos > 0:
        if si[SI_STOP] > 0 and bid <= si[SI_STOP]:
            reason = EXIT_STOP
        elif si[SI_TARGET] > 0 and 2 * bid >= si[SI_TARGET]:
            reason = EXIT_TARGET
    else:
        if si[SI_STOP] > 0 and ask >= si[SI_STOP]:
            reason = EXIT_STOP
        elif si[SI_TARGET] > 0 and 2 * ask <= si[SI_TARGET]:
            reason = EXIT_TARGET
    if reason != 0:
        _exit_intent(si, intents, counts, reason, ts)


@njit(cache=True, nogil=True)
def on_time(si, sf, p, ts):
    """Roll the risk day and charge funding at 00/08/16 UTC for an open position.

    Called for every event, so it returns after two comparisons unless a day
    or funding boundary has passed.
    """
    if ts < si[SI_NEXT_DAY] and ts < si[SI_NEXT_FUNDING]:
        return
    reset = int(p[P_RESET_HOUR]) * 3_600_000
    if ts >= si[SI_NEXT_DAY]:
        day = (ts - reset) // DAY_MS
        if day != si[SI_DAY]:
            si[SI_DAY] = day
            start_risk_day(si, sf)
        si[SI_NEXT_DAY] = (day + 1) * DAY_MS + reset
    if si[SI_NEXT_FUNDING] == NO_MINUTE:
        si[SI_NEXT_FUNDING] = (ts // FUNDING_MS + 1) * FUNDING_MS
        return
    if ts >= si[SI_NEXT_FUNDING]:
        # the paper model charges funding; an exchange reports its own (Engine.apply_funding)
        charge = si[SI_POS] != 0 and si[SI_MODE] == MODE_PAPER
        if charge and si[SI_Q_TS] < 0:
            return  # no quote since a long gap: charge on the first event that has a mid
        # one charge per boundary crossed (a data gap can cross several)
        crossed = (ts - si[SI_NEXT_FUNDING]) // FUNDING_MS + 1
        if charge:
            rate = p[P_FUNDING_DEFAULT]
            if p[P_FUNDING_REPLAY] != 0.0 and not math.isnan(sf[SF_FUNDING_RATE]):
                rate = sf[SF_FUNDING_RATE]
            mid = (si[SI_Q_BID] + si[SI_Q_ASK]) * p[P_TICK] / 2.0
            # position in signed lots: the same integer as the old direction * order lots
            apply_funding(sf, crossed * si[SI_POS] * p[P_QTY_STEP] * mid * rate)
        si[SI_NEXT_FUNDING] += crossed * FUNDING_MS


# --- signals -------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _lb(st, i_bar, back, col):
    return st.lb[(i_bar - back) % LB_SIZE, col]


@njit(cache=True, nogil=True)
def _is_outside(st, i_bar, back, up):
    """Close of bar ``i_bar - back`` beyond its own boundary (above VAH when up)."""
    if back > i_bar or st.lb[(i_bar - back) % LB_SIZE, LB_VALID] == 0:
        return False
    c = _lb(st, i_bar, back, LB_CLOSE)
    if up:
        return c > _lb(st, i_bar, back, LB_VAH)
    return c < _lb(st, i_bar, back, LB_VAL)


@njit(cache=True, nogil=True)
def _run_length(st, i_bar, back, up):
    """Consecutive outside closes ending at bar ``i_bar - back`` (capped by the ring)."""
    n = 0
    while back + n < LB_SIZE - 1 and _is_outside(st, i_bar, back + n, up):
        n += 1
    return n


@njit(cache=True, nogil=True)
def _failed_attempt(st, p, i_bar, up):
    """Length of the newest outside run in the last ``failbreak_lookback`` closes; 0 if none or accepted.

    An attempt fails only if no run in the look-back reached ``accept_outside_k``
    (each run is followed to its start, also beyond the look-back).
    """
    lookback = int(p[P_FAIL_LOOKBACK])
    k = int(p[P_ACCEPT_K])
    newest = 0
    back = 1
    while back <= lookback:
        if _is_outside(st, i_bar, back, up):
            # the whole run through this close, also beyond the look-back
            start = back
            while _is_outside(st, i_bar, back + 1, up) and back + 1 < LB_SIZE - 1:
                back += 1
            length = back - start + 1
            # ... and forward (towards t) it cannot extend: start is its newest close
            if length >= k:
                return 0
            if newest == 0:
                newest = length
        back += 1
    return newest


@njit(cache=True, nogil=True)
def _attempt_extreme(st, p, i_bar, up):
    """Highest high (up) or lowest low of the failed attempt, bars t-lookback..t."""
    lookback = int(p[P_FAIL_LOOKBACK])
    ext = _lb(st, i_bar, 0, LB_HIGH if up else LB_LOW)
    for back in range(1, min(lookback, i_bar) + 1):
        v = _lb(st, i_bar, back, LB_HIGH if up else LB_LOW)
        if (up and v > ext) or (not up and v < ext):
            ext = v
    return ext


@njit(cache=True, nogil=True)
def decide(st, p, t, feat, sig, intents, counts):
    """Evaluate the setups for the bar just closed and choose an action.

    ``feat`` is the one-row feature record of minute t, whose bar is already in
    the look-back ring at row ``(nbars - 1) % LB_SIZE``. Writes ``sig`` (one
    row); unless in signals mode, emits the decision's intents into ``intents``
    (at ``counts[C_INTENTS]``; the caller keeps room for two) and leaves it as
    the outstanding order that the paper model fills.
    """
    si = st.si
    i_bar = si[SI_NBARS] - 1
    decision_ts = t + MINUTE_MS - 1
    sig["ts_min"][0] = t
    sig["breakin_long"][0] = 0
    sig["breakin_short"][0] = 0
    sig["breakout_long"][0] = 0
    sig["breakout_short"][0] = 0
    sig["failbreak_long"][0] = 0
    sig["failbreak_short"][0] = 0
    sig["action"][0] = ACTION_HOLD
    valid = st.lb[i_bar % LB_SIZE, LB_VALID] == 1
    k = int(p[P_ACCEPT_K])
    run_up = _run_length(st, i_bar, 0, True)
    run_dn = _run_length(st, i_bar, 0, False)
    if not valid:
        acc = ACCEPT_INVALID
    elif run_up >= k:
        acc = ACCEPT_ABOVE
    elif run_up > 0:
        acc = ACCEPT_ABOVE_PENDING
    elif run_dn >= k:
        acc = ACCEPT_BELOW
    elif run_dn > 0:
        acc = ACCEPT_BELOW_PENDING
    else:
        acc = ACCEPT_INSIDE
    sig["acceptance_state"][0] = acc

    # --- setups on the price pattern, then confirmation ---
    raw_any = False
    conflict = False
    biased = False
    long_tag = 0
    short_tag = 0
    long_stop = 0
    short_stop = 0
    long_t2 = 0
    short_t2 = 0
    long_edge = short_edge = 0
    long_run = short_run = 0
    long_bits = short_bits = 0
    if valid:
        close = _lb(st, i_bar, 0, LB_CLOSE)
        high = _lb(st, i_bar, 0, LB_HIGH)
        low = _lb(st, i_bar, 0, LB_LOW)
        vah = _lb(st, i_bar, 0, LB_VAH)
        val = _lb(st, i_bar, 0, LB_VAL)
        poc2 = feat["poc2"][0]
        buf = int(p[P_STOP_BUFFER])
        of = feat["of"][0]
        vol = feat["volume"][0]
        # order flow is trusted only with trades and a low ambiguous share (SPEC_NOTES)
        of_ok = vol > 0 and feat["amb_qty"][0] / vol <= p[P_AMBIG_MAX]
        qimb = feat["qimb"][0]
        q_ok = p[P_USE_QIMB] != 0.0 and not math.isnan(qimb)
        # which confirmation passed, per setup and side (CONFIRM_* bits; 0: not confirmed)
        bits_in_long = _bits(of_ok and of > p[P_OF_ENTRY], q_ok and qimb > p[P_QIMB_ENTRY])
        bits_in_short = _bits(of_ok and of < -p[P_OF_ENTRY], q_ok and qimb < -p[P_QIMB_ENTRY])
        bits_bo_long = _bits(of_ok and of >= p[P_OF_BREAKOUT], q_ok and qimb >= p[P_QIMB_BREAKOUT])
        bits_bo_short = _bits(of_ok and of <= -p[P_OF_BREAKOUT], q_ok and qimb <= -p[P_QIMB_BREAKOUT])
        bits_fail_short = _bits(of_ok and of <= p[P_OF_FAIL], q_ok and qimb <= p[P_QIMB_FAIL])
        bits_fail_long = _bits(of_ok and of >= -p[P_OF_FAIL], q_ok and qimb >= -p[P_QIMB_FAIL])
        inside = val <= close <= vah
        prev_inside = False
        if i_bar >= 1 and st.lb[(i_bar - 1) % LB_SIZE, LB_VALID] == 1:
            pc = _lb(st, i_bar, 1, LB_CLOSE)
            prev_inside = _lb(st, i_bar, 1, LB_VAL) <= pc <= _lb(st, i_bar, 1, LB_VAH)
        tgt_mode = int(p[P_TARGET])
        # Setup A: one-bar failed auction back into value
        a_long = prev_inside and low < val and close > val and inside
        a_short = prev_inside and high > vah and close < vah and inside
        # Setup C: failed breakout (attempt in the look-back, no acceptance)
        attempt_up = _failed_attempt(st, p, i_bar, True)
        attempt_dn = _failed_attempt(st, p, i_bar, False)
        c_short = high > vah and close < vah and inside and attempt_up > 0
        c_long = low < val and close > val and inside and attempt_dn > 0
        # Setup B: acceptance outside value
        b_long = run_up >= k
        b_short = run_dn >= k
        raw_any = a_long or a_short or b_long or b_short or c_long or c_short
        a_long = a_long and bits_in_long != 0
        a_short = a_short and bits_in_short != 0
        c_long = c_long and bits_fail_long != 0
        c_short = c_short and bits_fail_short != 0
        b_long = b_long and bits_bo_long != 0
        b_short = b_short and bits_bo_short != 0
        sig["breakin_long"][0] = a_long
        sig["breakin_short"][0] = a_short
        sig["breakout_long"][0] = b_long
        sig["breakout_short"][0] = b_short
        sig["failbreak_long"][0] = c_long
        sig["failbreak_short"][0] = c_short
        # priority C, A, B on each side
        if c_long:
            long_tag = SETUP_FAILBREAK
            long_stop = _attempt_extreme(st, p, i_bar, False) - buf
            long_t2 = poc2 if tgt_mode == 1 else (2 * vah if tgt_mode == 2 else 0)
            long_edge, long_run, long_bits = val, attempt_dn, bits_fail_long
        elif a_long:
            long_tag = SETUP_BREAKIN
            long_stop = low - buf
            long_t2 = poc2 if tgt_mode == 1 else (2 * vah if tgt_mode == 2 else 0)
            long_edge, long_run, long_bits = val, 0, bits_in_long
        elif b_long:
            long_tag = SETUP_BREAKOUT
            long_stop = vah - buf
            mult = p[P_BREAKOUT_TARGET_MULT]
            long_t2 = 2 * (vah + int(round(mult * (vah - val)))) if mult > 0 and tgt_mode != 0 else 0
            long_edge, long_run, long_bits = vah, run_up, bits_bo_long
        if c_short:
            short_tag = SETUP_FAILBREAK
            short_stop = _attempt_extreme(st, p, i_bar, True) + buf
            short_t2 = poc2 if tgt_mode == 1 else (2 * val if tgt_mode == 2 else 0)
            short_edge, short_run, short_bits = vah, attempt_up, bits_fail_short
        elif a_short:
            short_tag = SETUP_BREAKIN
            short_stop = high + buf
            short_t2 = poc2 if tgt_mode == 1 else (2 * val if tgt_mode == 2 else 0)
            short_edge, short_run, short_bits = vah, 0, bits_in_short
        elif b_short:
            short_tag = SETUP_BREAKOUT
            short_stop = val + buf
            mult = p[P_BREAKOUT_TARGET_MULT]
            short_t2 = 2 * (val - int(round(mult * (vah - val)))) if mult > 0 and tgt_mode != 0 else 0
            short_edge, short_run, short_bits = val, run_dn, bits_bo_short
        if tgt_mode == 3:
            # target: naked_poc, the nearest open naked POC beyond the close (none when there is none)
            long_t2 = feat["npoc_above2"][0]
            short_t2 = feat["npoc_below2"][0]
        # C and A outrank B across sides too: a reversal setup beats a continuation;
        # two setups of the same rank on opposite sides contradict each other: no entry
        if long_tag != 0 and short_tag != 0:
            if _rank(long_tag) < _rank(short_tag):
                short_tag = 0
            elif _rank(short_tag) < _rank(long_tag):
                long_tag = 0
            else:
                long_tag = 0
                short_tag = 0
                conflict = True
        # breakout retest mode: the breakout arms a retest instead of entering; a
        # later minute that pulls back to the boundary and closes beyond it enters
        if p[P_RETEST] != 0.0:
            d = si[SI_RETEST_DIR]
            if d != 0 and (t > si[SI_RETEST_UNTIL] or (d > 0 and close <= vah) or (d < 0 and close >= val)):
                si[SI_RETEST_DIR] = 0
                d = 0
            retest_long = d > 0 and low <= vah + int(p[P_RETEST_BUFFER]) and close > vah
            retest_short = d < 0 and high >= val - int(p[P_RETEST_BUFFER]) and close < val
            if long_tag == SETUP_BREAKOUT:
                if d <= 0 and not retest_long:
                    si[SI_RETEST_DIR] = 1
                    si[SI_RETEST_UNTIL] = t + int(p[P_RETEST_WINDOW]) * MINUTE_MS
                long_tag = 0
            if short_tag == SETUP_BREAKOUT:
                if d >= 0 and not retest_short:
                    si[SI_RETEST_DIR] = -1
                    si[SI_RETEST_UNTIL] = t + int(p[P_RETEST_WINDOW]) * MINUTE_MS
                short_tag = 0
            if long_tag == 0 and short_tag == 0:
                mult = p[P_BREAKOUT_TARGET_MULT]
                if retest_long:
                    long_tag = SETUP_BREAKOUT
                    long_stop = low - buf  # below the pullback low
                    long_t2 = 2 * (vah + int(round(mult * (vah - val)))) if mult > 0 and tgt_mode != 0 else 0
                    if tgt_mode == 3:
                        long_t2 = feat["npoc_above2"][0]
                    long_edge, long_run, long_bits = vah, run_up, bits_bo_long
                elif retest_short:
                    short_tag = SETUP_BREAKOUT
                    short_stop = high + buf
                    short_t2 = 2 * (val - int(round(mult * (vah - val)))) if mult > 0 and tgt_mode != 0 else 0
                    if tgt_mode == 3:
                        short_t2 = feat["npoc_below2"][0]
                    short_edge, short_run, short_bits = val, run_dn, bits_bo_short
        # htf_bias: longs only above the higher-timeframe VAL, shorts only below its VAH
        htf = int(p[P_HTF_BIAS])
        if htf != 0 and (long_tag != 0 or short_tag != 0):
            if htf == 1:
                h_ok = feat["pd_valid"][0] == 1
                h_val = feat["pd_val"][0]
                h_vah = feat["pd_vah"][0]
            else:
                h_ok = feat["dev_valid"][0] == 1
                h_val = feat["dev_val"][0]
                h_vah = feat["dev_vah"][0]
            if long_tag != 0 and not (h_ok and close > h_val):
                long_tag = 0
                biased = True
            if short_tag != 0 and not (h_ok and close < h_vah):
                short_tag = 0
                biased = True

    direction = 1 if long_tag != 0 else (-1 if short_tag != 0 else 0)
    tag = long_tag if direction > 0 else short_tag
    stop = long_stop if direction > 0 else short_stop
    target2 = long_t2 if direction > 0 else short_t2
    expected = 0
    if direction != 0 and si[SI_Q_TS] >= 0:
        if direction > 0:
            expected = si[SI_Q_ASK] + slip(p, si[SI_Q_ASK], P_SLIP_ENTRY)
        else:
            expected = si[SI_Q_BID] - slip(p, si[SI_Q_BID], P_SLIP_ENTRY)
    sig["setup"][0] = tag if direction != 0 else 0
    sig["side"][0] = direction
    sig["boundary"][0] = long_edge if direction > 0 else (short_edge if direction < 0 else 0)
    sig["run_len"][0] = long_run if direction > 0 else (short_run if direction < 0 else 0)
    sig["confirm"][0] = long_bits if direction > 0 else (short_bits if direction < 0 else 0)
    sig["stop"][0] = stop if direction != 0 else 0
    sig["target2"][0] = target2 if direction != 0 else 0
    sig["expected_px"][0] = expected
    reason = READY

    # --- choose the action ---
    pos = si[SI_POS]  # signed lots
    ready = feat["ready"][0]
    held_too_long = pos != 0 and decision_ts - si[SI_ENTRY_TS] >= int(p[P_MAX_HOLD_MIN]) * MINUTE_MS
    blocked = _entry_blocked(p, direction, expected, stop, target2) if direction != 0 else READY
    if si[SI_MODE] == MODE_SIGNALS:
        reason = ready if ready != READY else (_setup_reason(tag) if direction != 0 else REASON_NO_SETUP)
    elif held_too_long:
        # exits run whatever the readiness: a stale feed must not keep a position open
        _submit(si, p, intents, counts, ACTION_EXIT, decision_ts, 0, 0, 0, EXIT_TIME)
        sig["action"][0] = ACTION_EXIT
        reason = REASON_TIME_STOP
    elif ready != READY:
        reason = ready  # SPEC_NOTES: a minute that is not ready holds and says why
    elif si[SI_PEND_ACTION] != 0:
        reason = REASON_PENDING_ORDER
    elif pos != 0:
        if (p[P_FLIP] != 0.0 and direction * pos < 0 and si[SI_KILL_MANUAL] == 0 and si[SI_KILL_DAILY] == 0
                and si[SI_RECON_BLOCK] == 0 and si[SI_ENTRIES_PAUSED] == 0):
            if blocked != READY:
                reason = blocked
            else:
                _submit(si, p, intents, counts, ACTION_ENTER_LONG if direction > 0 else ACTION_ENTER_SHORT,
                        decision_ts, tag, stop, target2, 0)
                sig["action"][0] = ACTION_ENTER_LONG if direction > 0 else ACTION_ENTER_SHORT
                reason = REASON_FLIP
        else:
            reason = REASON_IN_POSITION
    elif si[SI_KILL_MANUAL] != 0:
        reason = REASON_MANUAL_KILL
    elif si[SI_KILL_DAILY] != 0:
        reason = REASON_DAILY_LOSS_KILL
    elif si[SI_RECON_BLOCK] != 0:
        reason = REASON_RECONCILE_MISMATCH
    elif si[SI_ENTRIES_PAUSED] != 0:
        reason = REASON_ENTRIES_PAUSED
    elif si[SI_LAST_EXIT_MIN] != NO_MINUTE and t - si[SI_LAST_EXIT_MIN] < int(p[P_COOLDOWN_MIN]) * MINUTE_MS:
        reason = REASON_COOLDOWN
    elif direction != 0 and blocked != READY:
        reason = blocked
    elif direction != 0:
        action = ACTION_ENTER_LONG if direction > 0 else ACTION_ENTER_SHORT
        _submit(si, p, intents, counts, action, decision_ts, tag, stop, target2, 0)
        si[SI_RETEST_DIR] = 0  # a retest, if armed, is used up by this entry
        sig["action"][0] = action
        reason = _setup_reason(tag)
    elif conflict:
        reason = REASON_CONFLICT
    elif biased:
        reason = REASON_HTF_BIAS
    elif p[P_RETEST] != 0.0 and si[SI_RETEST_DIR] != 0:
        reason = REASON_RETEST_PENDING
    elif raw_any:
        reason = REASON_NOT_CONFIRMED
    else:
        reason = REASON_NO_SETUP
    sig["reason"][0] = reason
    # the direction, as the decision log and the exposure figure read it (the quantity is in the fills)
    sig["position"][0] = 1 if si[SI_POS] > 0 else (-1 if si[SI_POS] < 0 else 0)


@njit(cache=True, nogil=True)
def _bits(of_passed, qimb_passed):
    return (CONFIRM_OF if of_passed else 0) | (CONFIRM_QIMB if qimb_passed else 0)


@njit(cache=True, nogil=True)
def _entry_blocked(p, direction, expected, stop, target2):
    """READY, or why an entry at the ``expected`` fill is not taken (SPEC_NOTES, Signals).

    TARGET_PASSED: the target is at or beyond the expected fill (a long's at or
    below ask + slippage), so the "target" exit would fill at a loss in the
    same instant. REWARD_RISK: with ``min_reward_risk`` on, the distance to the
    target over the distance to the stop, both from the expected fill, is
    below it (a stop already at or beyond the fill has no risk distance and is
    refused too). No target (``target: none``): neither check applies.
    """
    if target2 == 0 or expected == 0:
        return READY
    if (direction > 0 and target2 <= 2 * expected) or (direction < 0 and target2 >= 2 * expected):
        return REASON_TARGET_PASSED
    if p[P_MIN_RR] > 0.0:
        reward2 = abs(target2 - 2 * expected)
        risk2 = 2 * (expected - stop) * direction
        if risk2 <= 0 or reward2 < p[P_MIN_RR] * risk2:
            return REASON_REWARD_RISK
    return READY


@njit(cache=True, nogil=True)
def start_segment(si):
    """Strategy side of a new data segment (SPEC_NOTES, long gaps).

    An entry decided before the gap is cancelled: it would fill on the first
    quote after hours without data, at a price the decision never saw. An
    armed breakout retest is forgotten with the look-backs. Exits, the
    position, its stop and the risk day are kept.
    """
    if si[SI_PEND_ACTION] == ACTION_ENTER_LONG or si[SI_PEND_ACTION] == ACTION_ENTER_SHORT:
        si[SI_PEND_ACTION] = 0
        if si[SI_MODE] == MODE_PAPER:
            si[SI_EXIT_SENT] = 0  # a flip's exit goes with its entry (external: it is already at the venue)
    si[SI_RETEST_DIR] = 0


@njit(cache=True, nogil=True)
def _rank(tag):
    if tag == SETUP_FAILBREAK:
        return 0
    if tag == SETUP_BREAKIN:
        return 1
    return 2


@njit(cache=True, nogil=True)
def _setup_reason(tag):
    if tag == SETUP_FAILBREAK:
        return REASON_FAILBREAK
    if tag == SETUP_BREAKIN:
        return REASON_BREAKIN
    return REASON_BREAKOUT


@njit(cache=True, nogil=True)
def _submit(si, p, intents, counts, action, ts, tag, stop, target2, reason):
    """Emit the intents of a decision and leave it as the outstanding order (``SI_PEND_*``).

    An entry against an open position (a flip) is two intents: exit the
    position, then enter. The paper model fills the outstanding order on the
    next quote; in external mode it stays outstanding until the exchange's
    fills complete it (``Engine.apply_fill``) or the backend ends it
    (``Engine.order_ended``). An exit already out is not sent twice (a time
    stop repeated while the exit waits for its fill updates the order only).
    """
    si[SI_PEND_ACTION] = action
    si[SI_PEND_TS] = ts
    si[SI_PEND_TAG] = tag
    si[SI_PEND_STOP] = stop
    si[SI_PEND_TARGET] = target2
    si[SI_PEND_REASON] = reason
    if action == ACTION_EXIT:
        seq = _exit_intent(si, intents, counts, reason, ts)
    else:
        direction = 1 if action == ACTION_ENTER_LONG else -1
        if si[SI_POS] * direction < 0:
            _exit_intent(si, intents, counts, EXIT_SIGNAL, ts)
        seq = emit_intent(si, intents, counts, INTENT_ENTER, SIDE_BUY if direction > 0 else SIDE_SELL,
                          int(p[P_QTY]), stop, target2, tag, 0, ts)
    if seq != 0:
        si[SI_PEND_SEQ] = seq


@njit(cache=True, nogil=True)
def request_flatten(si, ts, intents, counts):
    """Operator's flatten: one FLATTEN intent; cancel the outstanding entry.

    Paper mode closes on the first quote after ``ts``; external mode leaves
    the closing to the backend (cancel all, reduce-only close, confirm flat).
    """
    pos = si[SI_POS]
    if si[SI_MODE] == MODE_PAPER:
        si[SI_FLATTEN] = max(ts, 1)
    si[SI_PEND_ACTION] = 0
    side = SIDE_SELL if pos > 0 else (SIDE_BUY if pos < 0 else 0)
    return emit_intent(si, intents, counts, INTENT_FLATTEN, side, abs(pos), 0, 0, si[SI_TAG], EXIT_FLATTEN, ts)
