"""Every record layout of the engine, declared once.

Inside the engine prices are int64 ticks (``round(price / tick_size)``) and
sizes are int64 lots (``round(size / qty_step)``), so sums and comparisons are
exact; floats appear at the edges (import, store columns, display). Event
kinds, sides, actions and reasons are module-level ints so kernels can use
them as compile-time constants.
"""

from __future__ import annotations

import numpy as np

# --- raw events ---------------------------------------------------------------

TRADE_DTYPE = np.dtype(
    [
        ("ts", "i8"),  # exchange (matching engine) time, ms UTC
        ("local_ts", "i8"),  # receive time, ms UTC; stored, never used for features
        ("px", "i8"),  # price in ticks
        ("qty", "i8"),  # size in lots of qty_step
        ("side", "i8"),  # exchange's aggressor flag: SIDE_BUY, SIDE_SELL or SIDE_UNKNOWN
        ("trade_id", "i8"),  # exchange id; non-numeric ids are a 63-bit hash of the text
    ]
)

QUOTE_DTYPE = np.dtype(
    [
        ("ts", "i8"),  # exchange time, ms UTC (Bybit cts, Tardis timestamp // 1000)
        ("local_ts", "i8"),  # receive time, ms UTC
        ("bid_px", "i8"),  # best bid, ticks
        ("bid_sz", "i8"),  # best bid size, lots
        ("ask_px", "i8"),  # best ask, ticks
        ("ask_sz", "i8"),  # best ask size, lots
    ]
)

FUNDING_DTYPE = np.dtype(
    [
        ("ts", "i8"),  # time the rate became known, ms UTC
        ("rate", "f8"),  # funding rate per interval (0.0001 = 1 bp)
    ]
)

# Bounds of stored values, relative to the instrument: a price of MAX_PRICE_TICKS ticks or more, or a
# size of MAX_SIZE_LOTS lots or more, is refused by every source (importers, frame decoders). Prices
# then fit int64 ticks with a wide margin (1e18 used to wrap to a negative tick count).
MAX_PRICE_TICKS = 10**12
MAX_SIZE_LOTS = 10**9  # a million BTC at BTCUSDT's 0.001

SIDE_BUY = 1
SIDE_SELL = -1
SIDE_UNKNOWN = 0

# --- per-minute records (kernel outputs, still in ticks and lots) -------------

BAR_DTYPE = np.dtype(
    [
        ("ts_min", "i8"),  # minute start, ms UTC
        ("open", "i8"),  # ticks
        ("high", "i8"),
        ("low", "i8"),
        ("close", "i8"),
        ("volume", "i8"),  # lots
        ("pxqty", "f8"),  # sum(px * qty) in tick-lots, for vwap (exact below 2**53)
        ("n_trades", "i8"),
        ("has_quote", "i8"),  # 1 if a close snapshot exists
        ("bid_px", "i8"),  # close snapshot: latest quote with ts <= ts_min + 59999
        ("bid_sz", "i8"),
        ("ask_px", "i8"),
        ("ask_sz", "i8"),
        ("quote_ts", "i8"),  # exchange time of that quote
    ]
)

FEATURE_DTYPE = np.dtype(
    [
        ("ts_min", "i8"),
        ("mid2", "i8"),  # bid_px + ask_px (twice the mid, ticks); 0 if no snapshot
        ("sigma", "f8"),  # sigma_240; NaN when undefined
        ("k", "i8"),  # applied bin width in base bins
        ("poc2", "i8"),  # twice the POC bin centre, ticks
        ("val", "i8"),  # ticks
        ("vah", "i8"),  # ticks
        ("va_valid", "i8"),  # 0 when the profile is empty
        ("va_coverage", "f8"),
        ("volume", "i8"),  # the minute's traded volume, lots
        ("of", "i8"),  # signed order flow, lots
        ("amb_qty", "i8"),  # volume of sign-0 trades, lots
        ("agree_qty", "i8"),  # non-ambiguous volume whose sign matches the exchange flag
        ("agree_den", "i8"),  # non-ambiguous volume with a known exchange flag
        ("qimb", "f8"),  # NaN when undefined
        ("qimb_ema", "f8"),
        ("bvc_buy_frac", "f8"),
        ("bvc_net", "f8"),  # lots
        ("profile_qty", "i8"),  # total volume in the rolling profile, lots
        ("ready", "i8"),  # READY or the first failing readiness reason
        ("covered", "i8"),  # minutes of the window (minute t included) that hold trades and no feed gap
        ("feed_gap", "i8"),  # 1: a disconnection or stall of the live feed touched this minute
        ("segment_ts", "i8"),  # first event of this minute's segment (a gap > window starts one), ms
        # --- market structure (engine.kernels.features, "Sessions" and "Profile shape") ---
        ("dev_poc2", "i8"),  # the UTC day's developing POC (doubled), VAL, VAH through minute t, ticks
        ("dev_val", "i8"),
        ("dev_vah", "i8"),
        ("dev_valid", "i8"),  # 0: no day profile (or its range outgrew the histogram)
        ("pd_poc2", "i8"),  # the previous UTC day's final value area (doubled POC), ticks
        ("pd_val", "i8"),
        ("pd_vah", "i8"),
        ("pd_valid", "i8"),  # 0: the previous day is not in this segment
        ("shape", "i8"),  # SHAPE_* of the rolling profile
        ("shape_poc_pos", "f8"),  # POC position in the profile's range, 0 bottom .. 1 top; NaN without profile
        ("shape_skew", "f8"),  # volume skewness over the bins (negative: volume on top, tail below)
        ("shape_va_frac", "f8"),  # value-area bins / range bins
        ("shape_valley", "f8"),  # deepest low-volume node between two high-volume nodes, 0 .. 1
        ("npoc_n", "i8"),  # open naked POCs (earlier UTC days and 4-hour blocks not traded since)
        ("npoc_above2", "i8"),  # nearest open naked POC strictly above the close, doubled ticks; 0 none
        ("npoc_below2", "i8"),  # nearest strictly below; 0 none
        ("roll_poc2", "i8"),  # rolling higher-timeframe value area (htf_rolling_minutes, 24 h) through minute t
        ("roll_val", "i8"),
        ("roll_vah", "i8"),
        ("roll_valid", "i8"),  # 0: no rolling profile (or its range outgrew the histogram)
    ]
)

SHAPE_NONE = 0  # no profile, or fewer than shape_min_bins bins
SHAPE_D = 1
SHAPE_P = 2
SHAPE_B = 3  # "b"
SHAPE_THIN = 4
SHAPE_DOUBLE = 5
SHAPE_NAMES = {0: "", 1: "D", 2: "P", 3: "b", 4: "thin", 5: "double"}

SIGNAL_DTYPE = np.dtype(
    [
        ("ts_min", "i8"),
        ("breakin_long", "i1"),
        ("breakin_short", "i1"),
        ("breakout_long", "i1"),
        ("breakout_short", "i1"),
        ("failbreak_long", "i1"),
        ("failbreak_short", "i1"),
        ("acceptance_state", "i8"),  # ACCEPT_* constant
        ("action", "i8"),  # ACTION_* constant
        ("reason", "i8"),  # REASON_* constant
        ("position", "i8"),  # direction of the position after the decision: -1, 0, 1 (its sign, not lots)
        # the minute's best candidate entry (also when it was not taken), for the decision log
        ("setup", "i8"),  # SETUP_* of the candidate; SETUP_NONE when no confirmed setup
        ("side", "i8"),  # 1 long, -1 short, 0 none
        ("boundary", "i8"),  # the value-area edge the setup traded (VAL or VAH), ticks
        ("run_len", "i8"),  # acceptance count: consecutive closes beyond that edge, ending at t
        ("confirm", "i8"),  # CONFIRM_* bits: which confirmation passed for the candidate
        ("stop", "i8"),  # stop, ticks; 0 without a candidate
        ("target2", "i8"),  # target, doubled ticks (the POC can sit on a half tick); 0 none
        ("expected_px", "i8"),  # expected fill at the close snapshot (ask + slip long, bid - slip short)
    ]
)

CONFIRM_OF = 1  # order flow beyond its threshold (and trusted)
CONFIRM_QIMB = 2  # quote imbalance beyond its threshold

FILL_DTYPE = np.dtype(
    [
        ("fill_id", "i8"),  # 1, 2, ... within a run
        ("ts_submit", "i8"),  # decision time, ms
        ("ts_fill", "i8"),  # exchange time of the quote that filled it
        ("side", "i8"),  # SIDE_BUY or SIDE_SELL
        ("qty", "i8"),  # lots
        ("order_type", "i8"),  # ORDER_MARKET or ORDER_LIMIT
        ("px", "i8"),  # fill price, ticks, slippage included
        ("touch_px", "i8"),  # the ask (buy) or bid (sell) it filled against, ticks
        ("mid2", "i8"),  # bid + ask of the filling quote, ticks
        ("fee", "f8"),  # quote currency, positive = paid
        ("funding", "f8"),  # funding paid over the position's life (on the closing fill)
        ("pnl_realized", "f8"),  # net PnL of the round trip (on the closing fill)
        ("pnl_gross", "f8"),  # price PnL of the round trip (on the closing fill)
        ("tag", "i8"),  # SETUP_* of the position
        ("reason", "i8"),  # EXIT_* for closing fills, 0 for entries, EXIT_RECONCILE for reconciliation
        ("opening", "i8"),  # 1 opens or adds to a position, 0 reduces or closes one
        ("level2", "i8"),  # stop or target level that triggered the exit, doubled ticks; 0 otherwise
    ]
)

INTENT_DTYPE = np.dtype(
    [
        ("kind", "i8"),  # INTENT_ENTER, INTENT_EXIT or INTENT_FLATTEN
        ("side", "i8"),  # the order's side: SIDE_BUY or SIDE_SELL (0: flatten while flat)
        ("qty", "i8"),  # lots
        ("stop", "i8"),  # entries: stop price, ticks; 0 otherwise
        ("target2", "i8"),  # entries: target, doubled ticks; 0 none
        ("tag", "i8"),  # SETUP_* of the position it opens or closes
        ("reason", "i8"),  # exits: EXIT_*; 0 for entries
        ("decision_ts", "i8"),  # exchange ms of the decision (minute close + 59 999, or the triggering quote)
        ("seq", "i8"),  # 1, 2, ... per engine: with the engine's client prefix, the client order id
    ]
)

INTENT_ENTER = 1  # open a position (market order, its stop travels with it)
INTENT_EXIT = 2  # close the position (reduce-only market order)
INTENT_FLATTEN = 3  # operator: cancel everything, close, confirm flat
INTENT_KIND_NAMES = {1: "enter", 2: "exit", 3: "flatten"}  # = engine.execution.types INTENT_*

# engine modes (Engine.set_mode): who fills the intents
MODE_SIGNALS = 0  # features and signals only: no intents, no fills (warm start, features command)
MODE_PAPER = 1  # the paper fill model fills intents inline on the quote stream (backtest, sweep, paper)
MODE_EXTERNAL = 2  # intents are published; fills come back from an exchange through Engine.apply_fill
MODE_NAMES = {0: "signals", 1: "paper", 2: "external"}

# --- enums -------------------------------------------------------------------

ACTION_HOLD = 0
ACTION_ENTER_LONG = 1
ACTION_ENTER_SHORT = 2
ACTION_EXIT = 3
ACTION_NAMES = {0: "HOLD", 1: "ENTER_LONG", 2: "ENTER_SHORT", 3: "EXIT"}

SETUP_NONE = 0
SETUP_BREAKIN = 1
SETUP_BREAKOUT = 2
SETUP_FAILBREAK = 3
SETUP_MANUAL = 4
SETUP_NAMES = {0: "", 1: "breakin", 2: "breakout", 3: "failbreak", 4: "manual"}

ACCEPT_INSIDE = 0
ACCEPT_ABOVE_PENDING = 1  # closes above VAH, fewer than accept_outside_k in a row
ACCEPT_ABOVE = 2  # accepted above value
ACCEPT_BELOW_PENDING = -1
ACCEPT_BELOW = -2
ACCEPT_INVALID = 9  # no value area
ACCEPT_NAMES = {
    ACCEPT_INSIDE: "INSIDE",
    ACCEPT_ABOVE_PENDING: "ABOVE (pending)",
    ACCEPT_ABOVE: "ABOVE (accepted)",
    ACCEPT_BELOW_PENDING: "BELOW (pending)",
    ACCEPT_BELOW: "BELOW (accepted)",
    ACCEPT_INVALID: "NO VALUE AREA",
}

ORDER_MARKET = 0
ORDER_LIMIT = 1
ORDER_TYPE_NAMES = {0: "MKT", 1: "LMT"}

EXIT_NONE = 0
EXIT_STOP = 1
EXIT_TARGET = 2
EXIT_TIME = 3
EXIT_SIGNAL = 4  # flip on an opposite signal
# 5: was a daily-loss kill exit; that kill only blocks entries (spec 7.4), it never exits
EXIT_FLATTEN = 6  # operator's flatten command
EXIT_RECONCILE = 7  # an adjusting fill entered by reconciliation with the venue (opening or closing)
# an open position at the end of a backtest is left open and marked to market (no fill)
EXIT_NAMES = {0: "", 1: "stop", 2: "target", 3: "time", 4: "flip", 6: "flatten", 7: "reconcile"}

# Readiness and decision reasons, in the order they are checked.
READY = 0
REASON_WARMUP = 1
REASON_NO_PROFILE = 2
REASON_NO_QUOTE = 3
REASON_FEED_STALE = 4
REASON_DAILY_LOSS_KILL = 5  # spec 7.4: realized loss of the day beyond max_daily_loss
REASON_MANUAL_KILL = 6  # the operator's kill switch
REASON_COOLDOWN = 7
REASON_IN_POSITION = 8
REASON_NO_SETUP = 9
REASON_NOT_CONFIRMED = 10
REASON_BREAKIN = 11
REASON_BREAKOUT = 12
REASON_FAILBREAK = 13
REASON_RETEST_PENDING = 14
REASON_TIME_STOP = 15
REASON_FLIP = 16
REASON_PENDING_ORDER = 17
REASON_CONFLICT = 18  # long and short setups of the same rank in one minute
REASON_TARGET_PASSED = 19  # the target is already reached at the expected fill
REASON_REWARD_RISK = 20  # reward/risk at the expected fill below min_reward_risk
REASON_INSUFFICIENT_HISTORY = 21  # the window holds trades in too few of its minutes
REASON_FEED_GAP = 22  # live: a disconnection or stall touched the minute
REASON_RECONCILE_MISMATCH = 23  # the venue's position differs from ours: entries blocked until it matches
REASON_HTF_BIAS = 24  # htf_bias: the setup is against the higher-timeframe value area
REASON_ENTRIES_PAUSED = 25  # the operator paused new entries (exits still run)
REASON_SHAPE = 26  # shape_long / shape_short: the rolling profile's shape is not one the entry's side allows
REASON_NAMES = {
    0: "READY",
    1: "WARMUP",
    2: "NO_PROFILE",
    3: "NO_QUOTE",
    4: "FEED_STALE",
    5: "DAILY_LOSS_KILL",
    6: "MANUAL_KILL",
    7: "COOLDOWN",
    8: "IN_POSITION",
    9: "NO_SETUP",
    10: "NOT_CONFIRMED",
    11: "BREAKIN",
    12: "BREAKOUT",
    13: "FAILBREAK",
    14: "RETEST_PENDING",
    15: "TIME_STOP",
    16: "FLIP",
    17: "ORDER_PENDING",
    18: "CONFLICTING_SETUPS",
    19: "TARGET_PASSED",
    20: "REWARD_RISK",
    21: "INSUFFICIENT_HISTORY",
    22: "FEED_GAP",
    23: "RECONCILE_MISMATCH",
    24: "HTF_BIAS",
    25: "ENTRIES_PAUSED",
    26: "SHAPE",
}


class EngineError(RuntimeError):
    """The engine cannot go on with this input (e.g. prices outside its range).

    Defined here, not in ``engine.engine``, so that the CLI can catch it
    without importing numba (half a second) for commands that do not use it.
    """
