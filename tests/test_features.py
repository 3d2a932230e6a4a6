"""Feature engine: known answers, the naive reference, chunking, invariants, real data."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from engine.config import Settings
from engine.engine import Engine, concat
from engine.kernels import features as fk
from engine.kernels.features import value_area
from engine.kernels.params import make_params
from engine.kernels.state import new_state
from engine.types import REASON_NAMES
from engine.units import to_lots, to_ticks
from tests.helpers import quotes, random_stream, run_all, shared_file, trades
from tests.reference import RefParams, reference_features

T0 = 1_700_000_040_000  # a minute boundary


def _ref_params(s: Settings) -> RefParams:
    return RefParams(tick=s.tick_size, base_bin=s.base_bin_ticks, alpha=s.alpha_bin,
                     k_max_ticks=s.bin_width_max_ticks, rebucket_interval=s.rebucket_interval_minutes,
                     rebucket_pct=s.rebucket_change_pct, stale_ms=s.max_quote_staleness_ms,
                     tick_rule=s.use_tick_rule_fallback, va_fraction=s.va_fraction,
                     window=s.rolling_window_minutes, bvc_lookback=s.bvc_lookback,
                     feed_stale_ms=s.feed_stale_halt_ms, min_coverage=s.min_window_coverage,
                     shape_min_bins=s.shape_min_bins, shape_p_poc_min=s.shape_p_poc_min,
                     shape_skew_min=s.shape_skew_min, shape_thin_va_frac=s.shape_thin_va_frac,
                     shape_hvn_frac=s.shape_hvn_frac, shape_lvn_depth=s.shape_lvn_depth,
                     htf_rolling_minutes=s.htf_rolling_minutes)


FIELDS_EXACT = ("ts_min", "open", "high", "low", "close", "volume", "mid2", "k", "poc2", "val", "vah",
                "va_valid", "of", "amb_qty", "agree_qty", "agree_den", "ready", "covered", "segment_ts",
                # market structure (issue 12)
                "dev_poc2", "dev_val", "dev_vah", "dev_valid", "pd_poc2", "pd_val", "pd_vah", "pd_valid", "shape",
                "npoc_n", "npoc_above2", "npoc_below2", "roll_poc2", "roll_val", "roll_vah", "roll_valid")
FIELDS_FLOAT = ("sigma", "va_coverage", "qimb", "bvc_buy_frac", "bvc_net", "shape_poc_pos", "shape_skew",
                "shape_va_frac", "shape_valley")


def assert_matches_reference(out, ref):
    assert len(out.bars) == len(ref)
    for i, r in enumerate(ref):
        b, f = out.bars[i], out.features[i]
        got = {"ts_min": int(b["ts_min"]), "open": int(b["open"]), "high": int(b["high"]), "low": int(b["low"]),
               "close": int(b["close"]), "volume": int(b["volume"])}
        for name in FIELDS_EXACT:
            if name not in got:
                got[name] = int(f[name])
        for name in FIELDS_EXACT:
            assert got[name] == r[name], f"minute {i} ({r['ts_min']}): {name} {got[name]} != {r[name]}"
        for name in FIELDS_FLOAT:
            a, e = float(f[name]), float(r[name])
            if math.isnan(e):
                assert math.isnan(a), f"minute {i}: {name} {a} != NaN"
            else:
                assert a == pytest.approx(e, rel=1e-9, abs=1e-12), f"minute {i}: {name} {a} != {e}"


# --- spec 12.1: alignment and inference -------------------------------------------


def _sign(quote_rows, ts, px, **over):
    s = Settings().replace(**over)
    p = make_params(s)
    state = new_state(s.rolling_window_minutes, s.bvc_lookback, hist_bins=1 << 12, fifo_size=1 << 8)
    for q in quote_rows:
        fk.on_quote(state.si, *q)
    return fk.trade_sign(state.si, p, ts, px)


def test_trade_matches_latest_quote_strictly_before_it():
    rows = [(1000, 100, 5, 101, 5), (1010, 102, 5, 103, 5)]
    # at 1010 the quote of the same ms is the book after the trade: the 1000 quote prevails
    assert _sign(rows, 1010, 101) == 1
    assert _sign(rows, 1011, 101) == -1  # now the 1010 quote prevails: 101 <= bid 102


def test_two_quotes_in_one_ms_then_trade_in_that_ms_uses_the_earlier_ms():
    rows = [(1000, 100, 5, 101, 5), (1005, 98, 5, 99, 5), (1005, 97, 5, 98, 5)]
    assert _sign(rows, 1005, 101) == 1  # prevailing = the 1000 quote
    assert _sign(rows, 1006, 98) == 1  # prevailing = the last 1005 quote (ask 98)


def test_inference_boundaries_at_ask_bid_and_inside():
    rows = [(1000, 100, 5, 102, 5)]
    assert _sign(rows, 1001, 102) == 1  # price == ask
    assert _sign(rows, 1001, 103) == 1  # through the ask
    assert _sign(rows, 1001, 100) == -1  # price == bid
    assert _sign(rows, 1001, 99) == -1
    assert _sign(rows, 1001, 101) == 0  # inside the spread


def test_staleness_limit_is_inclusive():
    rows = [(1000, 100, 5, 101, 5)]
    assert _sign(rows, 1250, 101) == 1  # exactly 250 ms old: still fresh
    assert _sign(rows, 1251, 101) == 0  # 251 ms: stale, ambiguous
    assert _sign([], 1251, 101) == 0  # no quote at all


def test_tick_rule_fallback_signs_ambiguous_trades():
    s = Settings().replace(use_tick_rule_fallback=True)
    p = make_params(s)
    state = new_state(240, 60, hist_bins=1 << 12, fifo_size=1 << 8)
    fk.on_quote(state.si, 1000, 100, 5, 104, 5)
    assert fk.trade_sign(state.si, p, 1001, 102) == 0  # first trade, no previous price
    assert fk.trade_sign(state.si, p, 1002, 103) == 1  # uptick
    assert fk.trade_sign(state.si, p, 1003, 103) == 1  # zero change repeats
    assert fk.trade_sign(state.si, p, 1004, 101) == -1  # downtick
    assert fk.trade_sign(state.si, p, 1005, 100) == -1  # at the bid: quote rule


# --- spec 12.1: toy histograms ---------------------------------------------------------


def _va(vols, k=1, lo_bin=100, mid2=0, frac=0.7):
    hist = np.zeros(64, dtype=np.int64)
    off = lo_bin - 10
    for i, v in enumerate(vols):
        hist[lo_bin + i - off] = v
    nz = [lo_bin + i for i, v in enumerate(vols) if v]
    out = np.zeros(5, dtype=np.int64)
    value_area(hist, off, nz[0], nz[-1], k, 1, mid2, frac, np.zeros(64, dtype=np.int64), out)
    return tuple(int(x) for x in out)


def test_value_area_simple_peak():
    # bins 100..104; POC 102 (10); 10 < 14 = 0.7 * 20, add 103 (5 >= 3): 15 >= 14, stop
    poc2, val, vah, inc, tot = _va([1, 3, 10, 5, 1])
    assert poc2 == 2 * 102 + 1 and (val, vah) == (102, 104) and (inc, tot) == (15, 20)
    # at 80 % it needs one more: 101 (3) beats 104 (1)
    assert _va([1, 3, 10, 5, 1], frac=0.8)[1:4] == (101, 104, 18)


def test_value_area_tie_adds_upper_side():
    poc2, val, vah, inc, tot = _va([0, 4, 10, 4, 0][1:4])  # bins 100,101,102: 4,10,4
    assert (val, vah) == (101, 103) and inc == 14  # POC 101, then the upper 4: 14 >= 12.6


def test_value_area_edge_poc_expands_inward_only():
    poc2, val, vah, inc, tot = _va([10, 3, 2, 1])  # POC at the lowest bin
    assert poc2 == 201 and (val, vah) == (100, 102) and inc == 13  # 10 + 3 >= 11.2


def test_value_area_counts_empty_bins_between():
    poc2, val, vah, inc, tot = _va([5, 0, 10, 0, 0, 6])  # bins 100..105
    # from 102: up 103 (0) vs down 101 (0): tie -> upper; then 104 (0) vs 101 (0) -> upper; 105 (6)
    assert (val, vah) == (102, 106) and inc == 16


def test_poc_tie_goes_to_bin_nearest_mid_then_lower():
    # two equal peaks at 100 and 103
    assert _va([7, 1, 1, 7], mid2=2 * 103)[0] == 2 * 103 + 1
    assert _va([7, 1, 1, 7], mid2=2 * 100)[0] == 2 * 100 + 1
    assert _va([7, 1, 1, 7], mid2=0)[0] == 2 * 100 + 1  # no mid: lower
    assert _va([7, 1, 1, 7], mid2=2 * 102)[0] == 2 * 100 + 1  # equidistant (101.5 vs 103.5 from 102): lower


def test_aggregation_groups_base_bins_by_floor():
    # k = 2: base bins 100..105 -> aggregated 50 (100,101), 51 (102,103), 52 (104,105)
    poc2, val, vah, inc, tot = _va([1, 1, 5, 5, 0, 1], k=2)
    assert poc2 == (2 * 51 + 1) * 2 and val == 102 and vah == 104 + 0 and inc == 10


# --- the whole engine against the naive reference ---------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_matches_naive_reference_small_window(seed):
    s = Settings().replace(rolling_window_minutes=20, rebucket_interval_minutes=7, bvc_lookback=9,
                           alpha_bin=2.0)
    tr, qu = random_stream(seed, minutes=45, gap_minutes=(17, 18, 30))
    out = run_all(s, tr, qu)
    assert_matches_reference(out, reference_features(tr, qu, _ref_params(s)))


def test_engine_matches_reference_with_tick_rule_and_wide_base_bins():
    s = Settings().replace(rolling_window_minutes=15, use_tick_rule_fallback=True, base_bin_ticks=3,
                           max_quote_staleness_ms=50, alpha_bin=1.0)
    tr, qu = random_stream(9, minutes=35)
    out = run_all(s, tr, qu)
    assert_matches_reference(out, reference_features(tr, qu, _ref_params(s)))


def test_engine_matches_reference_default_window_goes_ready():
    s = Settings()
    tr, qu = random_stream(4, minutes=250, trades_per_min=8, quotes_per_min=12)
    out = run_all(s, tr, qu)
    ref = reference_features(tr, qu, _ref_params(s))
    assert_matches_reference(out, ref)
    ready = out.features["ready"]
    assert (ready[:239] == 1).all()  # 239 warm-up minutes
    assert set(ready[239:].tolist()) <= {0, 4} and (ready[239:] == 0).any()  # ready, or stale feed


# --- chunking: live one by one == batch -----------------------------------------------


def _merged_order(tr, qu):
    events = [(int(t), 1, i) for i, t in enumerate(tr["ts"])] + [(int(t), 0, i) for i, t in enumerate(qu["ts"])]
    events.sort()
    return events


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_feeding_gives_identical_tables(chunk):
    s = Settings().replace(rolling_window_minutes=10)
    tr, qu = random_stream(5, minutes=25, trades_per_min=20, quotes_per_min=30)
    whole = run_all(s, tr, qu)
    events = _merged_order(tr, qu)
    eng = Engine(s, trading=False)
    outs = []
    for start in range(0, len(events), chunk):
        part = events[start:start + chunk]
        ti = [i for _, kind, i in part if kind == 1]
        qi = [i for _, kind, i in part if kind == 0]
        outs.append(eng.feed(tr[ti], qu[qi]))
    outs.append(eng.finish())
    got = concat(outs)
    assert got.bars.tobytes() == whole.bars.tobytes()
    assert got.features.tobytes() == whole.features.tobytes()


def test_truncating_later_data_leaves_earlier_minutes_unchanged():
    s = Settings().replace(rolling_window_minutes=10)
    tr, qu = random_stream(6, minutes=30)
    full = run_all(s, tr, qu)
    cut = int(tr["ts"][len(tr) // 2]) // 60000 * 60000
    part = run_all(s, tr[tr["ts"] < cut], qu[qu["ts"] < cut])
    n = len(part.bars)
    assert n > 5
    assert part.features[:n].tobytes() == full.features[:n].tobytes()
    assert part.bars[:n].tobytes() == full.bars[:n].tobytes()


# --- invariants --------------------------------------------------------------------


@hsettings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40 * 60000), st.integers(1000, 1040), st.integers(1, 50)),
             min_size=1, max_size=300),
    st.integers(2, 12),
)
def test_profile_volume_equals_trade_volume_in_window(rows, window):
    s = Settings().replace(rolling_window_minutes=window)
    rows.sort(key=lambda r: r[0])
    tr = trades([(T0 + ts, px, q) for ts, px, q in rows])
    out = run_all(s, tr, quotes([]))
    for f in out.features:
        t = int(f["ts_min"])
        in_window = tr["qty"][(tr["ts"] >= t - (window - 1) * 60000) & (tr["ts"] < t + 60000)].sum()
        assert int(f["profile_qty"]) == int(in_window)
        if f["va_valid"]:
            assert f["va_coverage"] >= s.va_fraction - 1e-12
            assert f["val"] < f["vah"] and f["val"] * 2 < f["poc2"] < f["vah"] * 2


@hsettings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_order_flow_parts_sum_to_volume(seed):
    tr, qu = random_stream(seed, minutes=4, trades_per_min=30)
    out = run_all(Settings().replace(rolling_window_minutes=3), tr, qu)
    f = out.features
    assert (np.abs(f["of"]) + f["amb_qty"] <= out.bars["volume"]).all()
    assert (f["agree_qty"] <= f["agree_den"]).all()
    assert int(out.bars["volume"].sum()) == int(tr["qty"].sum())


def test_gap_minutes_repeat_previous_close_with_zero_volume():
    tr = trades([(T0 + 1000, 500, 2, 1), (T0 + 3 * 60000 + 5, 510, 1, -1)])
    qu = quotes([(T0, 499, 3, 500, 4)])
    out = run_all(Settings(), tr, qu)
    assert list(out.bars["close"]) == [500, 500, 500, 510]
    assert list(out.bars["volume"]) == [2, 0, 0, 1]
    assert (out.bars["n_trades"] == [1, 0, 0, 1]).all()
    assert np.isnan(out.features["qimb"]).sum() == 0


def test_no_rows_before_first_trade_and_rows_to_last_quote():
    qu = quotes([(T0 - 120000, 499, 3, 500, 4), (T0 + 2 * 60000 + 5, 498, 3, 499, 4)])
    tr = trades([(T0 + 10, 500, 2, 1)])
    out = run_all(Settings(), tr, qu)
    assert list(out.bars["ts_min"]) == [T0, T0 + 60000, T0 + 120000]
    assert out.bars["bid_px"][-1] == 498


# --- real data: Binance BTCUSDT windows ---------------------------------------------


def _load_tardis(day):
    import csv

    tpath = shared_file(f"binance_usdm_btcusdt/{day}_trades.csv.gz")
    qpath = shared_file(f"binance_usdm_btcusdt/{day}_quotes.csv.gz")
    with gzip.open(tpath, "rt") as fh:
        rows = list(csv.reader(fh))[1:]
    s = Settings()
    px = to_ticks([float(r[6]) for r in rows], s.tick_size)
    qty = to_lots([float(r[7]) for r in rows], s.qty_step)
    tr = trades([(int(r[2]) // 1000, int(px[i]), int(qty[i]), 1 if r[5] == "buy" else -1)
                 for i, r in enumerate(rows)])
    with gzip.open(qpath, "rt") as fh:
        rows = list(csv.reader(fh))[1:]
    bid, ask = to_ticks([float(r[6]) for r in rows], s.tick_size), to_ticks([float(r[5]) for r in rows], s.tick_size)
    bsz, asz = to_lots([float(r[7]) for r in rows], s.qty_step), to_lots([float(r[4]) for r in rows], s.qty_step)
    qu = quotes([(int(r[2]) // 1000, int(bid[i]), int(bsz[i]), int(ask[i]), int(asz[i])) for i, r in enumerate(rows)])
    return tr[np.argsort(tr["ts"], kind="stable")], qu[np.argsort(qu["ts"], kind="stable")]


@pytest.mark.realdata
@pytest.mark.parametrize("day", ["2023-04-04", "2024-07-18"])
def test_real_binance_window_matches_reference_and_inference_agrees(day):
    tr, qu = _load_tardis(day)
    s = Settings()
    out = run_all(s, tr, qu)
    assert_matches_reference(out, reference_features(tr, qu, _ref_params(s)))
    f = out.features
    agree = f["agree_qty"].sum() / f["agree_den"].sum()
    ambiguous = f["amb_qty"].sum() / out.bars["volume"].sum()
    # SPEC_NOTES measured 99.97-100 % with the strictly-earlier rule; we measured
    # 99.980 % (2023-04-04) and 100.000 % (2024-07-18). The floor leaves room for
    # float noise only: a regression to "at or before" drops it to 71-91 %.
    assert agree > 0.999, f"inferred side agrees with the true aggressor for {agree:.4%}"
    assert ambiguous < 0.02, f"ambiguous volume {ambiguous:.3%}"


# --- readiness needs data coverage; long gaps start a new segment (SPEC_NOTES) ------------


def test_window_with_an_empty_minute_is_not_ready_until_that_minute_leaves_it():
    # 5-minute window, coverage 0.95: every minute of the window must hold trades
    s = Settings().replace(rolling_window_minutes=5)
    rows = [(T0 + m * 60000 + 1000, 500, 1, 1) for m in range(12) if m != 6]
    qu = quotes([(T0 + m * 60000 + 59_000, 499, 3, 500, 4) for m in range(12)])
    out = run_all(s, trades(rows), qu)
    ready = [REASON_NAMES[int(r)] for r in out.features["ready"]]
    # minutes 0-3 warm up; 4-5 ready; 6-10 hold the empty minute 6; 11 is ready again
    assert ready == ["WARMUP"] * 4 + ["READY"] * 2 + ["INSUFFICIENT_HISTORY"] * 5 + ["READY"]
    assert list(out.features["covered"][4:]) == [5, 5, 4, 4, 4, 4, 4, 5]
    # coverage 0.8 accepts one empty minute in five
    out = run_all(s.replace(min_window_coverage=0.8), trades(rows), qu)
    assert (out.features["ready"][4:] == 0).all()


def _two_parts(gap_minutes: int, window: int = 5):
    first = random_stream(1, 8, start_ms=T0)
    second = random_stream(2, 8, start_ms=T0 + (8 + gap_minutes) * 60000)
    return tuple(np.concatenate([a, b]) for a, b in zip(first, second, strict=True))


def test_gap_longer_than_the_window_starts_a_new_segment_as_if_the_data_began_there():
    s = Settings().replace(rolling_window_minutes=5, min_window_coverage=0.0)
    tr, qu = _two_parts(gap_minutes=600)
    out = run_all(s, tr, qu)
    second_start = T0 + 608 * 60000
    # no rows inside the gap
    assert len(out.bars) == 16 and not ((out.bars["ts_min"] > T0 + 7 * 60000)
                                         & (out.bars["ts_min"] < second_start)).any()
    # the second part equals a run on the second part alone, cell for cell
    alone = run_all(s, tr[tr["ts"] >= second_start], qu[qu["ts"] >= second_start])
    assert out.bars[8:].tobytes() == alone.bars.tobytes()
    assert out.features[8:].tobytes() == alone.features.tobytes()
    assert set(out.features["segment_ts"][:8]) == {min(int(tr["ts"][0]), int(qu["ts"][0]))}
    assert [REASON_NAMES[int(r)] for r in out.features["ready"][8:12]] == ["WARMUP"] * 4
    assert_matches_reference(out, reference_features(tr, qu, _ref_params(s)))


def test_gap_of_exactly_the_window_or_less_is_part_of_the_window():
    s = Settings().replace(rolling_window_minutes=5, min_window_coverage=0.0)
    tr, qu = _two_parts(gap_minutes=4)
    out = run_all(s, tr, qu)
    assert len(out.bars) == 20 and len(set(out.features["segment_ts"])) == 1  # 4 empty rows, one segment
    assert_matches_reference(out, reference_features(tr, qu, _ref_params(s)))


def test_fifteen_months_between_two_windows_allocate_nothing_for_the_gap():
    import tracemalloc

    s = Settings().replace(rolling_window_minutes=5, min_window_coverage=0.0)
    tr, qu = _two_parts(gap_minutes=15 * 30 * 24 * 60)
    eng = Engine(s)
    tracemalloc.start()
    out = concat([eng.feed(tr, qu), eng.finish()])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(out.bars) == 16
    assert peak < 20_000_000, f"peak {peak / 1e6:.1f} MB for 16 minutes of data"


@pytest.mark.realdata
def test_real_windows_15_months_apart_are_two_segments_each_as_if_alone():
    parts = [_load_tardis(day) for day in ("2023-04-04", "2024-07-18")]
    tr = np.concatenate([p[0] for p in parts])
    qu = np.concatenate([p[1] for p in parts])
    s = Settings().replace(rolling_window_minutes=3)
    out = run_all(s, tr, qu)
    alone = [run_all(s, *p) for p in parts]
    assert len(out.bars) == sum(len(a.bars) for a in alone) < 30
    n0 = len(alone[0].bars)
    assert out.features[n0:].tobytes() == alone[1].features.tobytes()
    assert out.bars[:n0].tobytes() == alone[0].bars.tobytes()
    assert_matches_reference(out, reference_features(tr, qu, _ref_params(s)))


@pytest.mark.realdata
def test_real_window_with_a_hole_warms_up_on_data_not_clock_minutes():
    tr, qu = _load_tardis("2024-07-18")
    t_first = int(tr["ts"][0]) // 60000 * 60000
    hole = (tr["ts"] >= t_first + 3 * 60000) & (tr["ts"] < t_first + 5 * 60000)
    qhole = (qu["ts"] >= t_first + 3 * 60000) & (qu["ts"] < t_first + 5 * 60000)
    tr, qu = tr[~hole], qu[~qhole]
    s = Settings().replace(rolling_window_minutes=3)
    out = run_all(s, tr, qu)
    names = [REASON_NAMES[int(r)] for r in out.features["ready"]]
    assert "INSUFFICIENT_HISTORY" in names and "READY" in names
    assert_matches_reference(out, reference_features(tr, qu, _ref_params(s)))
