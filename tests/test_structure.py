"""Market structure (issue 12): developing and previous-day value, naked POCs, shape, volume at price by side.

Known answers on hand-built streams; every column against the naive
reference (tests/reference.py) on random streams that cross UTC days and
4-hour blocks; chunking, truncation (no look-ahead) and repeat runs byte for
byte; the two strategy options.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config import Settings
from engine.engine import Engine, concat
from engine.kernels.features import profile_shape
from engine.kernels.params import make_params
from engine.types import (
    ACTION_ENTER_LONG,
    ACTION_ENTER_SHORT,
    REASON_HTF_BIAS,
    REASON_SHAPE,
    SETUP_BREAKIN,
    SHAPE_NAMES,
)
from tests.helpers import quotes, random_stream, run_all, trades
from tests.reference import reference_features
from tests.test_features import _ref_params, assert_matches_reference

DAY0 = 1_700_000_000_000 // 86_400_000 * 86_400_000  # a UTC midnight
M = 60_000

# a stream that starts at 23:30 UTC and crosses a day and several 4-hour blocks, with a 2-minute hole
# the rolling higher-timeframe profile is 90 minutes here (24 h by default), so that minutes leave it
STREAM_SETTINGS = Settings().replace(rolling_window_minutes=20, rebucket_interval_minutes=7, min_window_coverage=0.0,
                                     htf_rolling_minutes=90)


@pytest.fixture(scope="module")
def stream():
    tr, qu = random_stream(3, minutes=300, start_ms=DAY0 - 30 * M, trades_per_min=6, quotes_per_min=10,
                           gap_minutes=(100, 101))
    return tr, qu, run_all(STREAM_SETTINGS, tr, qu)


@pytest.fixture(scope="module")
def reference(stream):
    tr, qu, _ = stream
    return reference_features(tr, qu, _ref_params(STREAM_SETTINGS))


# --- hand-built ----------------------------------------------------------------------


def _shape(vols, **over):
    agg = np.array(vols, dtype=np.int64)
    best = int(np.argmax(agg))  # the first maximum: these toys have one
    # value area grown as the kernel does (ties go up)
    bottom = top = best
    cum, need = agg[best], Settings().va_fraction * agg.sum()
    while cum < need:
        up = agg[top + 1] if top + 1 < len(agg) else -1
        dn = agg[bottom - 1] if bottom > 0 else -1
        if up >= dn:
            top += 1
            cum += up
        else:
            bottom -= 1
            cum += dn
    out = np.zeros(4)
    code = profile_shape(agg, len(agg), best, bottom, top, make_params(Settings().replace(**over)),
                         np.zeros(len(agg), dtype=np.int64), out)
    return SHAPE_NAMES[code], tuple(out)


def test_shape_of_hand_built_profiles():
    name, (pos, skew, va_frac, valley) = _shape([1, 2, 4, 8, 4, 2, 1])
    assert name == "D" and pos == 0.5 and skew == 0.0 and va_frac == 3 / 7 and valley == 0.0
    name, (pos, skew, _, _) = _shape([1, 1, 1, 2, 3, 8, 10, 6])
    assert name == "P" and pos == 6.5 / 8 and skew < -0.25
    name, (pos, skew, _, _) = _shape([6, 10, 8, 3, 2, 1, 1, 1])
    assert name == "b" and pos == 1.5 / 8 and skew > 0.25
    assert _shape([3, 3, 3, 3, 3, 3, 3, 4, 3, 3])[0] == "thin"
    name, (_, _, _, valley) = _shape([1, 6, 8, 6, 1, 0, 1, 5, 7, 5, 1])
    assert name == "double" and valley == 1.0  # an empty bin between nodes of 8 and 7
    # a shallow dip is not a second distribution: 1 - 5/7 = 0.29 < 0.7
    assert _shape([1, 6, 8, 6, 5, 5, 5, 6, 7, 5, 1])[0] != "double"
    # ... unless the threshold says so; and a small node (2 < 0.5 * 8) never counts
    assert _shape([1, 6, 8, 6, 5, 5, 5, 6, 7, 5, 1], shape_lvn_depth=0.25)[0] == "double"
    assert _shape([1, 6, 8, 6, 1, 0, 1, 2, 1, 1, 1])[1][3] == 0.0
    assert _shape([1, 5, 1])[0] == ""  # fewer than shape_min_bins bins


def _hand_built():
    """Minutes relative to DAY0 -> trades (px, qty); no quotes (mid ties go to the lower bin)."""
    rows = {-1: [(90, 1)], 0: [(100, 5)], 1: [(102, 3)], 2: [(102, 4)], 3: [(90, 1)],
            50: [(102, 1)], 100: [(102, 1)], 150: [(102, 1)], 200: [(102, 1)],
            240: [(110, 1)], 250: [(105, 1)], 260: [(101, 1)], 270: [(101, 1), (103, 1)]}
    tr = trades([(DAY0 + m * M + 1000 + i, px, q, 1) for m, prs in rows.items() for i, (px, q) in enumerate(prs)])
    s = Settings().replace(rolling_window_minutes=60, alpha_bin=0.0, min_window_coverage=0.0)
    out = run_all(s, tr, quotes([]))
    by_min = {(int(f["ts_min"]) - DAY0) // M: f for f in out.features}
    return s, tr, out, by_min


def test_developing_poc_path_and_previous_day_on_a_hand_built_day():
    s, tr, out, f = _hand_built()
    # k = 1 (alpha 0): the day's POC is 100 after minute 0, still 100 at minute 1 (5 vs 3), 102 from minute 2 on
    assert [int(f[m]["dev_poc2"]) for m in (-1, 0, 1, 2, 3, 240)] == [181, 201, 201, 205, 205, 205]
    assert (int(f[0]["dev_val"]), int(f[0]["dev_vah"])) == (100, 101)
    assert (int(f[1]["dev_val"]), int(f[1]["dev_vah"])) == (100, 103)  # 5 < 5.6: grows up over the empty 101
    # the previous day (its one minute, at 90) is known from midnight on, not before
    assert int(f[-1]["pd_valid"]) == 0
    assert (int(f[0]["pd_valid"]), int(f[0]["pd_poc2"]), int(f[0]["pd_val"]), int(f[0]["pd_vah"])) == (1, 181, 90, 91)
    assert int(f[270]["pd_poc2"]) == 181
    assert_matches_reference(out, reference_features(tr, quotes([]), _ref_params(s)))


def test_naked_pocs_touched_and_untouched_on_a_hand_built_day():
    s, tr, out, f = _hand_built()
    # at midnight the day (and the 20-24 h block) POC 90 is naked, twice; minute 3 trades at 90
    assert [int(f[m]["npoc_n"]) for m in (-1, 0, 1, 2, 3, 200)] == [0, 2, 2, 2, 0, 0]
    assert int(f[0]["npoc_below2"]) == 181 and int(f[0]["npoc_above2"]) == 0
    # at 04:00 the 00-04 block's POC (102) is naked: 110, 105 and 101 do not reach it
    assert [int(f[m]["npoc_n"]) for m in (240, 250, 260)] == [1, 1, 1]
    assert int(f[240]["npoc_below2"]) == 205 and int(f[260]["npoc_above2"]) == 205
    # a minute trading 101 and 103 spans 102: traded through
    assert int(f[270]["npoc_n"]) == 0
    eng = Engine(s, trading=False)
    concat([eng.feed(tr[tr["ts"] < DAY0 + 261 * M], quotes([])), eng.close_until(DAY0 + 261 * M)])
    assert [(n.poc2, n.start_ms, n.kind) for n in eng.naked_pocs()] == [(205, DAY0, "4h")]


def test_rolling_value_area_holds_the_last_minutes_only_on_a_hand_built_stream():
    # a 3-minute rolling profile, k = 1, no quotes (POC ties go to the lower bin)
    rows = {0: [(100, 5)], 1: [(102, 3)], 2: [(102, 3)], 3: [(104, 1)], 4: [(104, 1)], 5: [(104, 1)], 7: [(90, 1)]}
    tr = trades([(DAY0 + m * M + 1000 + i, px, q, 1) for m, prs in rows.items() for i, (px, q) in enumerate(prs)])
    s = Settings().replace(rolling_window_minutes=60, alpha_bin=0.0, min_window_coverage=0.0, htf_rolling_minutes=3)
    out = run_all(s, tr, quotes([]))
    f = {(int(r["ts_min"]) - DAY0) // M: r for r in out.features}
    # 100 holds 5 until minute 2 joins (102: 6); minute 3 drops 100 (102: 6 vs 104: 1); minute 5 holds only 104
    assert [int(f[m]["roll_poc2"]) for m in range(8)] == [201, 201, 205, 205, 205, 209, 209, 181]
    # minute 2: 6 of 11 lots < 70 %, so the value area grows down over the empty 101 to 100
    assert (int(f[2]["roll_val"]), int(f[2]["roll_vah"])) == (100, 103)
    assert (int(f[3]["roll_val"]), int(f[3]["roll_vah"])) == (102, 103)  # 100 has left: 102 holds 6 of 7 lots
    assert (int(f[5]["roll_val"]), int(f[5]["roll_vah"])) == (104, 105)
    # minute 6 (no trades) holds 104 of minutes 4 and 5; minute 7 holds 104 (minute 5) and 90: the tie goes low
    assert int(f[6]["roll_valid"]) == 1
    # the developing day holds everything: its POC is 102 (6 lots) throughout from minute 2
    assert int(f[7]["dev_poc2"]) == 205
    assert_matches_reference(out, reference_features(tr, quotes([]), _ref_params(s)))


# --- against the naive reference on random streams -----------------------------------------


def test_structure_columns_match_the_reference_across_days_and_blocks(stream, reference):
    tr, qu, out = stream
    assert_matches_reference(out, reference)
    f = out.features
    # the stream exercises what it claims to
    assert f["pd_valid"].sum() > 200 and (f["npoc_n"] > 0).sum() > 20
    assert len(set(f["shape"].tolist())) >= 4
    # the 90-minute rolling value area is neither the day's nor the 20-minute window's
    assert (f["roll_valid"] == 1).all() and (f["roll_poc2"] != f["dev_poc2"]).sum() > 50
    assert (f["roll_poc2"] != f["poc2"]).sum() > 50


def test_structure_matches_reference_with_tick_rule_and_wide_bins():
    s = Settings().replace(rolling_window_minutes=30, use_tick_rule_fallback=True, base_bin_ticks=3, alpha_bin=1.0,
                           min_window_coverage=0.0, shape_min_bins=3, htf_rolling_minutes=45)
    tr, qu = random_stream(8, minutes=280, start_ms=DAY0 - 3 * 60 * M - 10 * M, trades_per_min=5, quotes_per_min=8)
    assert_matches_reference(run_all(s, tr, qu), reference_features(tr, qu, _ref_params(s)))


def test_volume_at_price_by_side_matches_the_reference(stream, reference):
    tr, qu, _ = stream
    # mid-stream (the open minute closed) and at the end
    for cut_min in (150, None):
        eng = Engine(STREAM_SETTINGS, trading=False)
        if cut_min is None:
            concat([eng.feed(tr, qu), eng.finish()])
            row = reference[-1]
        else:
            until = DAY0 - 30 * M + cut_min * M
            concat([eng.feed(tr[tr["ts"] < until], qu[qu["ts"] < until]), eng.close_until(until)])
            row = next(r for r in reference if r["ts_min"] == until - M)
        bins, vols = eng.profile()
        buy, sell = eng.profile_sides()
        got = {int(b): [int(x), int(y)] for b, x, y in zip(bins, buy, sell, strict=True) if x or y}
        assert got == row["sides"]
        assert (buy + sell <= vols).all() and buy.sum() > 0 and sell.sum() > 0


# --- chunking, look-ahead, repeat runs -----------------------------------------------


@pytest.mark.parametrize("chunk", [1, 997])
def test_chunked_feeding_across_sessions_gives_identical_features(stream, chunk):
    tr, qu, whole = stream
    events = sorted([(int(t), 1, i) for i, t in enumerate(tr["ts"])] + [(int(t), 0, i) for i, t in enumerate(qu["ts"])])
    eng = Engine(STREAM_SETTINGS, trading=False)
    outs = []
    step = chunk if chunk > 1 else 1
    for start in range(0, len(events), step):
        part = events[start:start + step]
        outs.append(eng.feed(tr[[i for _, k, i in part if k == 1]], qu[[i for _, k, i in part if k == 0]]))
    outs.append(eng.finish())
    assert concat(outs).features.tobytes() == whole.features.tobytes()


def test_a_small_fifo_grows_and_gives_identical_features(stream):
    tr, qu, whole = stream
    eng = Engine(STREAM_SETTINGS, trading=False, fifo_size=4)
    out = concat([eng.feed(tr, qu), eng.finish()])
    assert len(eng.state.roll_bin) > 4 and len(eng.state.fifo_bin) > 4
    assert out.features.tobytes() == whole.features.tobytes()


def test_values_at_minute_t_depend_only_on_data_up_to_t(stream):
    tr, qu, full = stream
    for cut in (DAY0 + 2 * M, DAY0 + 4 * 60 * M + 3 * M, DAY0 + 200 * M):  # just after midnight, a block, later
        part = run_all(STREAM_SETTINGS, tr[tr["ts"] < cut], qu[qu["ts"] < cut])
        n = len(part.features)
        assert n > 10 and part.features.tobytes() == full.features[:n].tobytes()


def test_repeated_runs_are_byte_identical(stream):
    tr, qu, first = stream
    again = run_all(STREAM_SETTINGS, tr, qu)
    assert again.features.tobytes() == first.features.tobytes() and again.bars.tobytes() == first.bars.tobytes()


# --- strategy options -------------------------------------------------------------------

TRADING = STREAM_SETTINGS.replace(cooldown_minutes=0, qimb_entry_min=0.0, qimb_breakout_min=0.0, accept_outside_k=2,
                                  max_daily_loss=1e9, max_hold_minutes=5)


def _entries(out):
    sig = out.signals
    return np.flatnonzero((sig["action"] == ACTION_ENTER_LONG) | (sig["action"] == ACTION_ENTER_SHORT))


@pytest.fixture(scope="module")
def trading_runs(stream):
    tr, qu, _ = stream
    return {key: run_all(TRADING.replace(**over), tr, qu, trading=True)
            for key, over in (("v0", {}), ("day", {"htf_bias": "day"}), ("prev", {"htf_bias": "prev_day"}),
                              ("naked", {"target": "naked_poc"}),
                              ("shape", {"shape_long": "b/D", "shape_short": "P/D"}),
                              ("shape_breakin", {"shape_long": "b", "shape_short": "P",
                                                 "shape_filter_setups": "breakin"}))}


def test_htf_bias_keeps_only_entries_on_the_right_side_of_the_day_value(trading_runs):
    v0, day = trading_runs["v0"], trading_runs["day"]
    assert len(_entries(v0)) > 5
    assert (day.signals["reason"] == REASON_HTF_BIAS).any()
    f, close = day.features, day.bars["close"]
    for i in _entries(day):
        assert f["dev_valid"][i] == 1
        if day.signals["action"][i] == ACTION_ENTER_LONG:
            assert close[i] > f["dev_val"][i]
        else:
            assert close[i] < f["dev_vah"][i]
    # before the first midnight there is no previous day: no entry at all
    prev = trading_runs["prev"]
    assert all(prev.features["pd_valid"][i] == 1 for i in _entries(prev))
    # the features are the same whatever the strategy reads
    assert day.features.tobytes() == v0.features.tobytes()


def test_naked_poc_target_is_the_nearest_naked_poc_beyond_the_close(trading_runs):
    out = trading_runs["naked"]
    sig, f = out.signals, out.features
    idx = _entries(out)
    assert len(idx) > 0
    for i in idx:
        want = f["npoc_above2"][i] if sig["action"][i] == ACTION_ENTER_LONG else f["npoc_below2"][i]
        assert sig["target2"][i] == want
    assert (sig["target2"][idx] != trading_runs["v0"].signals["target2"][idx]).any()


def test_structure_columns_round_trip_through_features_1m_for_bar_mode(stream, tmp_path):
    from engine.backtest import load_minute_records
    from engine.features import write_minute_tables
    from engine.store import Store, instrument_of

    _, _, out = stream
    with Store(tmp_path / "s.db", instrument_of(STREAM_SETTINGS)) as store:
        write_minute_tables(store, STREAM_SETTINGS, out.bars, out.features)
        _, feats = load_minute_records(store, STREAM_SETTINGS)
        shapes = [r[0] for r in store.fetch("SELECT shape FROM features_1m ORDER BY ts_min")]
    for name in ("dev_val", "dev_vah", "dev_valid", "pd_val", "pd_vah", "pd_valid", "npoc_above2", "npoc_below2",
                 "roll_val", "roll_vah", "roll_valid", "shape"):
        assert (feats[name] == out.features[name]).all(), name
    assert shapes == [SHAPE_NAMES[int(c)] or None for c in out.features["shape"]]


def test_htf_bias_rolling_keeps_only_entries_on_the_right_side_of_the_rolling_value():
    # another stream: on the shared one's 17 entries the 90-minute value never disagrees
    tr, qu = random_stream(4, minutes=300, start_ms=DAY0 - 30 * M, trades_per_min=6, quotes_per_min=10)
    v0 = run_all(TRADING, tr, qu, trading=True)
    roll = run_all(TRADING.replace(htf_bias="rolling"), tr, qu, trading=True)
    assert (roll.signals["reason"] == REASON_HTF_BIAS).any()
    f, close = roll.features, roll.bars["close"]
    idx = _entries(roll)
    assert 0 < len(idx) < len(_entries(v0))
    for i in idx:
        assert f["roll_valid"][i] == 1
        if roll.signals["action"][i] == ACTION_ENTER_LONG:
            assert close[i] > f["roll_val"][i]
        else:
            assert close[i] < f["roll_vah"][i]
    assert roll.features.tobytes() == v0.features.tobytes()


def test_shape_filter_keeps_only_entries_on_the_allowed_shapes(trading_runs):
    v0, out = trading_runs["v0"], trading_runs["shape"]
    sig, f = out.signals, out.features
    names = {code: name for code, name in SHAPE_NAMES.items()}
    idx = _entries(out)
    assert 0 < len(idx) < len(_entries(v0))
    for i in idx:
        allowed = ("b", "D") if sig["action"][i] == ACTION_ENTER_LONG else ("P", "D")
        assert names[int(f["shape"][i])] in allowed
    blocked = sig["reason"] == REASON_SHAPE
    assert blocked.any()
    # a blocked minute had a confirmed setup on a shape its side does not allow: never D, allowed on both
    assert all(names[int(f["shape"][i])] != "D" for i in np.flatnonzero(blocked))
    assert out.features.tobytes() == v0.features.tobytes()
    # restricted to break-ins, other setups pass whatever the shape
    only = trading_runs["shape_breakin"]
    for i in _entries(only):
        if only.signals["setup"][i] == SETUP_BREAKIN:
            want = "b" if only.signals["action"][i] == ACTION_ENTER_LONG else "P"
            assert names[int(only.features["shape"][i])] == want
    assert (only.signals["setup"][_entries(only)] != SETUP_BREAKIN).any()


def test_shape_filter_settings_are_checked_and_coded():
    from engine.config import ConfigError
    from engine.kernels.params import (
        P_SHAPE_LONG,
        P_SHAPE_SETUPS,
        SHAPE_ALL,
        SHAPE_CODES,
        SHAPE_SETUP_CODES,
    )
    from engine.types import SETUP_NAMES

    assert SHAPE_CODES == {name: code for code, name in SHAPE_NAMES.items() if name}
    assert {name: code for code, name in SETUP_NAMES.items() if code in (1, 2, 3)} == {
        k: v for k, v in SHAPE_SETUP_CODES.items() if v}
    p = make_params(Settings().replace(shape_long="b/D", shape_filter_setups="breakin"))
    assert int(p[P_SHAPE_LONG]) == (1 << SHAPE_CODES["b"]) | (1 << SHAPE_CODES["D"])
    assert int(p[P_SHAPE_SETUPS]) == SETUP_BREAKIN
    assert int(make_params(Settings())[P_SHAPE_LONG]) == SHAPE_ALL  # off by default
    with pytest.raises(ConfigError, match="'shape_long': 'B' is not a shape"):
        Settings().replace(shape_long="B/D")
    with pytest.raises(ConfigError, match="htf_bias"):
        Settings().replace(htf_bias="week")


def test_bench_turns_real_bars_into_ticks_the_tardis_importer_takes(tmp_path):
    """bench/bench_structure.py's bars-to-ticks path (its FTX table rests on it): four trades a minute."""
    import importlib.util

    from engine.importers import import_tardis
    from engine.store import Store, instrument_of

    spec = importlib.util.spec_from_file_location("bench_structure", Path(__file__).parents[1] / "bench" /
                                                  "bench_structure.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    src = tmp_path / "bars.csv"
    src.write_text("timestamp,open,high,low,close,volume\n"
                   "2022-01-01 00:00:00.000000,100.0,103.0,99.0,102.0,4.08\n"  # up: open, low, high, close
                   "2022-01-01 00:01:00.000000,102.0,102.0,98.0,98.0,0.098\n")  # down: open, high, low, close
    trades_path, quotes_path, n = bench.ftx_to_tardis(src, tmp_path)
    s = Settings()
    with Store(tmp_path / "t.db", instrument_of(s)) as store:
        import_tardis(store, s, trades=trades_path, quotes=quotes_path)
        (_, tr, qu), = list(store.iter_windows(86_400_000))
    assert n == 2
    assert (tr["px"] // 10).tolist() == [100, 99, 103, 102, 102, 102, 98, 98]  # ticks of 0.1
    assert tr["qty"].tolist() == [10] * 4 + [1] * 4  # 4.08 USD / 102 / 4 = 0.01 BTC = 10 lots; at least one lot
    # the aggressor: up moves buy, down moves sell, unchanged keeps the side; quotes 1 ms before, at the touch
    assert tr["side"].tolist() == [1, -1, 1, -1, -1, -1, -1, -1]
    assert len(qu) == 10 and (qu["ts"][:4] == tr["ts"][:4] - 1).all()
    assert ((qu["ask_px"][:4] == tr["px"][:4]) | (qu["bid_px"][:4] == tr["px"][:4])).all()
