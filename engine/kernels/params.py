"""The kernel's view of the settings: one float64 vector with named indices.

Kernels take this vector, never the Settings object (numba cannot, and the
engine should not depend on how config is loaded). ``make_params`` reads a
Settings-like object by attribute so this module imports nothing of ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

P_TICK = 0  # tick_size
P_INV_TICK = 1  # 1 / tick_size when that is an integer, else 0 (exact price printing)
P_BASE_BIN = 2  # base_bin_ticks
P_ALPHA_BIN = 3
P_K_MAX = 4  # floor(bin_width_max_ticks / base_bin_ticks)
P_REBUCKET_INTERVAL = 5
P_REBUCKET_PCT = 6
P_QUOTE_STALE_MS = 7  # max_quote_staleness_ms
P_TICK_RULE = 8  # use_tick_rule_fallback
P_VA_FRACTION = 9
P_WINDOW = 10  # rolling_window_minutes
P_QIMB_EMA_ALPHA = 11  # 2 / (qimb_ema_span + 1)
P_BVC_LOOKBACK = 12
P_FEED_STALE_MS = 13  # feed_stale_halt_ms
# signals
P_USE_QIMB = 14
P_AMBIG_MAX = 15
P_QIMB_ENTRY = 16
P_QIMB_BREAKOUT = 17
P_QIMB_FAIL = 18
P_OF_ENTRY = 19  # lots
P_OF_BREAKOUT = 20  # lots
P_OF_FAIL = 21  # lots
P_ACCEPT_K = 22
P_FAIL_LOOKBACK = 23
P_RETEST = 24
P_RETEST_WINDOW = 25
P_RETEST_BUFFER = 26  # ticks
# risk and execution
P_MAX_HOLD_MIN = 27
P_COOLDOWN_MIN = 28
P_STOP_BUFFER = 29  # ticks
P_TARGET = 30  # 0 none, 1 tp1, 2 tp2
P_BREAKOUT_TARGET_MULT = 31
P_FLIP = 32
P_QTY = 33  # lots
P_MAX_DAILY_LOSS = 34  # quote currency
P_RESET_HOUR = 35
P_SLIP_ENTRY = 36  # ticks
P_SLIP_EXIT = 37  # ticks
P_SLIP_BPS = 38
P_FEE_BPS = 39  # the fee rate fills pay (taker or maker per fee_model)
P_FUNDING_DEFAULT = 40
P_FUNDING_REPLAY = 41
P_QTY_STEP = 42
P_TRADING = 43  # the mode asked for at construction (1 trading, 0 signals); kernels read the state's SI_MODE
P_MIN_COVERAGE = 44  # min_window_coverage: share of the window's minutes that must hold trades
P_MIN_RR = 45  # min_reward_risk (0: off)
# profile shape (features)
P_SHAPE_MIN_BINS = 46
P_SHAPE_P_POC = 47
P_SHAPE_SKEW = 48
P_SHAPE_THIN_VA = 49
P_SHAPE_HVN = 50
P_SHAPE_LVN_DEPTH = 51
# market-structure filters (signals)
P_HTF_BIAS = 52  # HTF_* code (0: off)
P_HTF_ROLL_MIN = 53  # htf_rolling_minutes (features: the rolling higher-timeframe profile's length)
P_SHAPE_LONG = 54  # shape_long: bit (1 << SHAPE_*) set for each shape a long entry may see (all bits: off)
P_SHAPE_SHORT = 55  # shape_short, likewise for shorts
P_SHAPE_SETUPS = 56  # shape_filter_setups: 0 every setup, else the SETUP_* the shape filter applies to
N_PARAMS = 57

TARGET_CODES = {"none": 0, "tp1": 1, "tp2": 2, "naked_poc": 3}
HTF_CODES = {"none": 0, "prev_day": 1, "day": 2, "rolling": 3}
# engine.types' SETUP_* and SHAPE_* codes, spelled out here so that this module imports nothing of ours
# (tests/test_structure.py checks they agree)
SHAPE_SETUP_CODES = {"all": 0, "breakin": 1, "breakout": 2, "failbreak": 3}
SHAPE_CODES = {"D": 1, "P": 2, "b": 3, "thin": 4, "double": 5}
SHAPE_ALL = (1 << (max(SHAPE_CODES.values()) + 1)) - 1  # every shape (and none) allowed: the filter is off


def shape_mask(text: str) -> int:
    """``shape_long``/``shape_short`` (``any`` or shape names joined by ``/``, e.g. ``b/D``) as a bit mask."""
    if text == "any":
        return SHAPE_ALL
    mask = 0
    for name in text.split("/"):
        if name not in SHAPE_CODES:
            raise ValueError(f"{name!r} is not a shape ({', '.join(SHAPE_CODES)}, joined by '/', or any)")
        mask |= 1 << SHAPE_CODES[name]
    return mask

# The settings the feature kernels read (P_TICK .. P_FEED_STALE_MS and P_MIN_COVERAGE,
# plus the instrument's units). Combinations that agree on these produce identical
# bars and features, whatever their signal, risk and execution settings.
FEATURE_KEYS = (
    "symbol", "tick_size", "qty_step", "base_bin_ticks", "alpha_bin", "bin_width_max_ticks",
    "rebucket_interval_minutes", "rebucket_change_pct", "max_quote_staleness_ms", "use_tick_rule_fallback",
    "va_fraction", "rolling_window_minutes", "qimb_ema_span", "bvc_lookback", "feed_stale_halt_ms",
    "min_window_coverage", "shape_min_bins", "shape_p_poc_min", "shape_skew_min", "shape_thin_va_frac",
    "shape_hvn_frac", "shape_lvn_depth", "htf_rolling_minutes",
)
# the parameter slots those keys fill
FEATURE_PARAM_SLOTS = (*range(P_FEED_STALE_MS + 1), P_MIN_COVERAGE, *range(P_SHAPE_MIN_BINS, P_SHAPE_LVN_DEPTH + 1),
                       P_HTF_ROLL_MIN)


def _inv_tick(tick: float) -> float:
    inv = 1.0 / tick
    return float(round(inv)) if abs(inv - round(inv)) < 1e-9 * inv else 0.0


def make_params(s: Any, trading: bool = True) -> np.ndarray:
    """The parameter vector for settings ``s`` (a Settings or anything with its attributes)."""
    p = np.zeros(N_PARAMS, dtype=np.float64)
    p[P_TICK] = s.tick_size
    p[P_INV_TICK] = _inv_tick(s.tick_size)
    p[P_BASE_BIN] = s.base_bin_ticks
    p[P_ALPHA_BIN] = s.alpha_bin
    p[P_K_MAX] = max(1, s.bin_width_max_ticks // s.base_bin_ticks)
    p[P_REBUCKET_INTERVAL] = s.rebucket_interval_minutes
    p[P_REBUCKET_PCT] = s.rebucket_change_pct
    p[P_QUOTE_STALE_MS] = s.max_quote_staleness_ms
    p[P_TICK_RULE] = 1.0 if s.use_tick_rule_fallback else 0.0
    p[P_VA_FRACTION] = s.va_fraction
    p[P_WINDOW] = s.rolling_window_minutes
    p[P_QIMB_EMA_ALPHA] = 2.0 / (s.qimb_ema_span + 1.0)
    p[P_BVC_LOOKBACK] = s.bvc_lookback
    p[P_FEED_STALE_MS] = s.feed_stale_halt_ms
    p[P_USE_QIMB] = 1.0 if s.use_qimb else 0.0
    p[P_AMBIG_MAX] = s.ambiguous_trade_frac_max
    p[P_QIMB_ENTRY] = s.qimb_entry_min
    p[P_QIMB_BREAKOUT] = s.qimb_breakout_min
    p[P_QIMB_FAIL] = s.qimb_fail_min
    # whole lots, so "of > 0.7 BTC" means the same here as on the stored of_1m column
    p[P_OF_ENTRY] = round(s.of_entry_min / s.qty_step)
    p[P_OF_BREAKOUT] = round(s.of_breakout_min / s.qty_step)
    p[P_OF_FAIL] = round(s.of_fail_min / s.qty_step)
    p[P_ACCEPT_K] = s.accept_outside_k
    p[P_FAIL_LOOKBACK] = s.failbreak_lookback
    p[P_RETEST] = 1.0 if s.breakout_retest else 0.0
    p[P_RETEST_WINDOW] = s.retest_window_minutes
    p[P_RETEST_BUFFER] = s.retest_buffer_ticks
    p[P_MAX_HOLD_MIN] = s.max_hold_minutes
    p[P_COOLDOWN_MIN] = s.cooldown_minutes
    p[P_STOP_BUFFER] = s.stop_buffer_ticks
    p[P_TARGET] = TARGET_CODES[s.target]
    p[P_BREAKOUT_TARGET_MULT] = s.breakout_target_va_multiple
    p[P_FLIP] = 1.0 if s.flip_on_signal else 0.0
    p[P_QTY] = round(s.order_qty / s.qty_step)
    p[P_MAX_DAILY_LOSS] = s.max_daily_loss
    p[P_RESET_HOUR] = s.daily_reset_hour_utc
    p[P_SLIP_ENTRY] = s.slippage_ticks_entry
    p[P_SLIP_EXIT] = s.slippage_ticks_exit
    p[P_SLIP_BPS] = s.slippage_bps
    p[P_FEE_BPS] = s.taker_fee_bps if s.fee_model == "taker" else s.maker_fee_bps
    p[P_FUNDING_DEFAULT] = s.funding_rate_default
    # SPEC_NOTES: recorded rates when present, else the default ("simple" and
    # "replay" both read so); "flat" ignores recorded rates
    p[P_FUNDING_REPLAY] = 0.0 if s.funding_model == "flat" else 1.0
    p[P_QTY_STEP] = s.qty_step
    p[P_TRADING] = 1.0 if trading else 0.0
    p[P_MIN_COVERAGE] = s.min_window_coverage
    p[P_MIN_RR] = s.min_reward_risk
    p[P_SHAPE_MIN_BINS] = s.shape_min_bins
    p[P_SHAPE_P_POC] = s.shape_p_poc_min
    p[P_SHAPE_SKEW] = s.shape_skew_min
    p[P_SHAPE_THIN_VA] = s.shape_thin_va_frac
    p[P_SHAPE_HVN] = s.shape_hvn_frac
    p[P_SHAPE_LVN_DEPTH] = s.shape_lvn_depth
    p[P_HTF_BIAS] = HTF_CODES[s.htf_bias]
    p[P_HTF_ROLL_MIN] = s.htf_rolling_minutes
    p[P_SHAPE_LONG] = shape_mask(s.shape_long)
    p[P_SHAPE_SHORT] = shape_mask(s.shape_short)
    p[P_SHAPE_SETUPS] = SHAPE_SETUP_CODES[s.shape_filter_setups]
    return p
