"""Intents out, fills in (issue 9): intents, engine modes, exchange fills, reconciliation, one way in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from engine.engine import Engine, EngineError, client_prefix, concat
from engine.execution.types import Fill, PositionReport
from engine.runtime import Runner
from engine.runtime.events import Alert, Filled, IntentIssued
from engine.types import (
    ACTION_ENTER_LONG,
    EXIT_RECONCILE,
    EXIT_STOP,
    EXIT_TIME,
    REASON_NAMES,
    SETUP_BREAKIN,
    SIDE_BUY,
    SIDE_SELL,
)
from tests.helpers import quotes, random_stream
from tests.test_pinned import STREAM
from tests.test_strategy import BALANCE, T0, M, Tape, _long_entry_tape, row_at, settings

ENTRY_TS = T0 + 5 * M + 59_999  # the break-in decision of _long_entry_tape


def _entry_minutes():
    """Five balance minutes and the break-in minute (ENTER_LONG decided at its close)."""
    tape = Tape()
    tape.balance(5)
    tape.bar(BALANCE + [(995, 1), (1001, 1)], close_quote=(998, 80, 999, 20))
    return tape.arrays()


def _run(eng, tape):
    tr, qu = tape.arrays()
    return concat([eng.feed(tr, qu), eng.finish()])


# --- intents --------------------------------------------------------------------------


def test_entry_emits_one_enter_intent_with_stop_target_tag_and_client_id():
    eng = Engine(settings(), client_prefix="run7")
    out = _run(eng, _long_entry_tape(after_quotes=((30_000, (993, 5, 994, 5)),)))
    assert len(out.intents) == 1  # the stop exit is the paper venue's stop: it travels with the entry
    (intent,) = eng.intents_of(out.intents)
    assert (intent.kind, intent.side, intent.qty, intent.stop, intent.target2, intent.tag) == \
        ("enter", SIDE_BUY, 1, 993, 2001, SETUP_BREAKIN)
    assert intent.decision_ts == ENTRY_TS and intent.client_id.startswith("run7-")
    assert out.fills[0]["ts_submit"] == intent.decision_ts  # the paper model filled that intent
    assert [int(x) for x in out.fills["reason"]] == [0, EXIT_STOP]


def test_time_stop_emits_an_exit_intent_and_flatten_a_flatten_intent():
    eng = Engine(settings(max_hold_minutes=3))
    out = _run(eng, _long_entry_tape(after_minutes=5))
    kinds = [(i.kind, i.reason) for i in eng.intents_of(out.intents)]
    assert kinds == [("enter", 0), ("exit", EXIT_TIME)]
    exit_intent = eng.intents_of(out.intents)[1]
    assert exit_intent.side == SIDE_SELL and exit_intent.qty == 1
    # flatten: an intent for the whole position, on the side that closes it
    eng = Engine(settings(target="none"))
    _run(eng, _long_entry_tape(after_minutes=2))
    assert eng.position().qty == 1
    flat = eng.flatten()
    assert (flat.kind, flat.side, flat.qty) == ("flatten", SIDE_SELL, 1)


def test_client_ids_are_unique_within_a_run_and_across_restarts():
    tr, qu = random_stream(6, minutes=120, trades_per_min=25, quotes_per_min=40)
    ids = []
    for start_ms in (1_767_600_000_000, 1_767_600_000_001):  # two starts of the same run
        eng = Engine(STREAM.replace(flip_on_signal=True), client_prefix=client_prefix(start_ms))
        out = concat([eng.feed(tr, qu), eng.finish()])
        run_ids = [i.client_id for i in eng.intents_of(out.intents)]
        assert len(run_ids) >= 10 and len(set(run_ids)) == len(run_ids)
        assert all(len(c) <= 36 and c.replace("-", "").replace("_", "").isalnum() for c in run_ids)
        ids += run_ids
    assert len(set(ids)) == len(ids)
    with pytest.raises(ValueError):
        Engine(STREAM, client_prefix="no spaces allowed")


# --- external mode: fills come from the exchange ------------------------------------------


def test_external_mode_publishes_intents_and_the_position_follows_exchange_fills():
    s = settings(order_qty=0.005, target="none")  # 5 lots
    eng = Engine(s, mode="external", client_prefix="x1")
    tr, qu = _entry_minutes()
    out = concat([eng.feed(tr, qu), eng.close_until(T0 + 6 * M)])
    assert len(out.fills) == 0 and row_at(out, 5)[0]["action"] == ACTION_ENTER_LONG
    (enter,) = eng.intents_of(out.intents)
    assert eng.outstanding() == [enter] and enter.qty == 5
    # quotes go by: no paper fill, no position
    t = T0 + 6 * M
    out = eng.feed(None, quotes([(t + 100, 996, 50, 997, 50), (t + 200, 996, 50, 997, 50)]))
    assert len(out.fills) == 0 and eng.position().qty == 0
    # a partial fill, the same execution again (applied once), then the rest at another price
    part = Fill(client_id=enter.client_id, exec_id="e1", ts=t + 300, side=SIDE_BUY, qty=2, px=998, fee=0.01)
    assert len(eng.apply_fill(part)) == 1
    assert len(eng.apply_fill(part)) == 0
    pos = eng.position()
    assert (pos.qty, pos.position, pos.stop, pos.tag) == (2, 1, 993, SETUP_BREAKIN)
    assert eng.outstanding() == [enter]  # 3 lots still to come
    rest = eng.apply_fill(Fill(client_id=enter.client_id, exec_id="e2", ts=t + 400, side=SIDE_BUY, qty=3,
                               px=999, fee=0.015))
    assert rest["opening"][0] == 1 and eng.position().qty == 5 and eng.outstanding() == []
    assert eng.entry_avg == pytest.approx((2 * 998 + 3 * 999) / 5)
    # the stop is crossed: one exit intent for the whole position (not one per quote)
    out = eng.feed(None, quotes([(t + 500, 993, 5, 994, 5), (t + 600, 992, 5, 993, 5)]))
    (exit_,) = eng.intents_of(out.intents)
    assert (exit_.kind, exit_.side, exit_.qty, exit_.reason) == ("exit", SIDE_SELL, 5, EXIT_STOP)
    assert len(out.fills) == 0 and eng.position().qty == 5
    # the exchange fills the exit in two parts
    a = eng.apply_fill(Fill(client_id=exit_.client_id, exec_id="e3", ts=t + 700, side=SIDE_SELL, qty=2, px=992,
                            fee=0.01))
    assert eng.position().qty == 3 and a["opening"][0] == 0 and a["reason"][0] == EXIT_STOP
    b = eng.apply_fill(Fill(client_id=exit_.client_id, exec_id="e4", ts=t + 800, side=SIDE_SELL, qty=3, px=991,
                            fee=0.015))
    assert eng.position().qty == 0 and eng.outstanding() == []
    fills = np.concatenate([part_rows for part_rows in (a, b)])
    gross = ((992 - eng_avg(2 * 998 + 3 * 999, 5)) * 2 + (991 - eng_avg(2 * 998 + 3 * 999, 5)) * 3) * 0.1 * 0.001
    assert fills["pnl_gross"].sum() == pytest.approx(gross, abs=1e-12)
    assert eng.position().realized == pytest.approx(gross - 0.01 - 0.015 - 0.01 - 0.015, abs=1e-12)


def eng_avg(total_px_lots, lots):
    return total_px_lots / lots


def test_external_fill_that_crosses_zero_is_a_close_and_an_open():
    eng = Engine(settings(), mode="external")
    eng.apply_fill(Fill("", "a", 1, SIDE_BUY, 2, 1000, 0.0))
    rows = eng.apply_fill(Fill("", "b", 2, SIDE_SELL, 5, 1010, 0.5))
    assert list(rows["opening"]) == [0, 1] and list(rows["qty"]) == [2, 3]
    assert rows["fee"].sum() == pytest.approx(0.5) and eng.position().qty == -3
    assert eng.position().entry_px == 1010


def test_a_mode_switch_to_paper_after_a_warm_start_makes_no_fills_for_history():
    tr, qu = random_stream(6, minutes=120, trades_per_min=25, quotes_per_min=40)
    s = STREAM.replace(flip_on_signal=True)
    whole = Engine(s)
    ref = concat([whole.feed(tr, qu), whole.finish()])
    cut = int(qu["ts"][len(qu) // 2])
    assert (ref.fills["ts_fill"] < cut).sum() > 3, "the paper run trades in the history"
    eng = Engine(s, mode="signals")
    warm = eng.feed(tr[tr["ts"] < cut], qu[qu["ts"] < cut])
    assert len(warm.fills) == 0 and len(warm.intents) == 0 and eng.position().fees == 0.0
    assert (warm.signals["action"] == 0).all()
    eng.set_mode("paper")
    live = concat([eng.feed(tr[tr["ts"] >= cut], qu[qu["ts"] >= cut]), eng.finish()])
    assert len(live.fills) > 0 and (live.fills["ts_submit"] >= cut).all()


def test_live_driver_warm_start_runs_the_history_in_signals_mode(tmp_path):
    from engine.adapters.bybit.ws import FeedConfig
    from engine.runtime.live import LiveDriver
    from engine.store import Store, instrument_of

    tr, qu = random_stream(6, minutes=120, trades_per_min=25, quotes_per_min=40)
    s = STREAM.replace(flip_on_signal=True)
    db = tmp_path / "warm.db"
    with Store(db, instrument_of(s)) as store:
        store.append_ticks("trade", tr, "test")
        store.append_ticks("quote", qu, "test")
    driver = LiveDriver(s, str(db), FeedConfig(url="ws://127.0.0.1:9"), lambda e: None, trading=True)
    assert driver.warm_start() > 100
    pos = driver.engine.position()
    assert driver.engine.mode == "paper" and pos.qty == 0 and pos.fees == 0.0 and pos.realized == 0.0


# --- reconciliation -----------------------------------------------------------------------


def test_reconciliation_mismatch_blocks_entries_with_a_reason_and_raises_an_alert():
    seen = []
    runner = Runner(settings(), seen.append, mode="external")
    result = runner.reconcile(PositionReport(ts=T0, qty=3, entry_px=1000))
    assert not result.matched and (result.local_qty, result.venue_qty) == (0, 3)
    assert [e.kind for e in seen if isinstance(e, Alert)] == ["mismatch"]
    assert runner.engine.position().qty == 0  # nothing overwritten
    tr, qu = _entry_minutes()
    out = concat([runner.feed(tr, qu), runner.close_until(T0 + 6 * M)])
    sig = row_at(out, 5)[0]
    assert REASON_NAMES[int(sig["reason"])] == "RECONCILE_MISMATCH" and sig["action"] == 0
    assert len(out.intents) == 0 and not any(isinstance(e, IntentIssued) for e in seen)
    # adopting the venue's position: an adjusting fill through the same door; still blocked until a report matches
    adopted = runner.reconcile(PositionReport(ts=T0 + 6 * M, qty=3, entry_px=1000), adopt=True)
    assert len(adopted.fills) == 1 and adopted.fills["reason"][0] == EXIT_RECONCILE
    assert runner.engine.position().qty == 3 and runner.engine.position().mismatch
    assert any(isinstance(e, Filled) and e.fill["reason"] == EXIT_RECONCILE for e in seen)
    again = runner.reconcile(PositionReport(ts=T0 + 6 * M + 1, qty=3, entry_px=1000))
    assert again.matched and not runner.engine.position().mismatch


def test_intents_reach_the_runner_sink_in_external_mode():
    seen = []
    runner = Runner(settings(), seen.append, mode="external", client_prefix="r1")
    tr, qu = _entry_minutes()
    runner.feed(tr, qu)
    runner.close_until(T0 + 6 * M)
    issued = [e.intent for e in seen if isinstance(e, IntentIssued)]
    assert [(i.kind, i.decision_ts) for i in issued] == [("enter", ENTRY_TS)]
    runner.engine.order_ended(issued[0].client_id)  # rejected: no longer outstanding
    assert runner.engine.outstanding() == []


# --- the position function ------------------------------------------------------------------


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([SIDE_BUY, SIDE_SELL]), st.integers(1, 7), st.integers(990, 1010)),
                min_size=1, max_size=30))
def test_position_is_the_sum_of_applied_fills_and_pnl_is_the_cash_flow(fills):
    eng = Engine(settings(max_daily_loss=1e9), mode="external")
    rows = []
    for k, (side, qty, px) in enumerate(fills):
        rows.append(eng.apply_fill(Fill("", f"x{k}", k + 1, side, qty, px, 0.001 * qty)))
    f = np.concatenate(rows)
    signed = np.where(f["side"] == SIDE_BUY, 1, -1) * f["qty"]
    pos = eng.position()
    assert pos.qty == signed.sum() == sum(s * q for s, q, _ in fills)
    assert f["pnl_realized"].sum() == pytest.approx(pos.realized, abs=1e-9)
    # cash flow of every fill + the open position at its average entry = realized gross
    cash = (-signed * f["px"]).sum() * 0.1 * 0.001
    open_value = pos.qty * eng.entry_avg * 0.1 * 0.001
    assert cash + open_value == pytest.approx(f["pnl_gross"].sum(), abs=1e-9)
    assert pos.fees == pytest.approx(f["fee"].sum())


# --- one way in: every driver through the same resume path ------------------------------


class _TinyBuffers(Engine):
    """Allocates a few rows, fills and intents per call: every flush-and-resume path runs."""

    def _alloc(self, rows, fills, minutes=True):
        outs = super()._alloc(min(rows, 2), min(fills, 4), minutes)
        return (*outs[:4], outs[4][:2])


def test_tiny_buffers_give_the_same_rows_in_tick_minute_and_bar_passes():
    tr, qu = random_stream(7, minutes=120, trades_per_min=25, quotes_per_min=40, gap_minutes=(50, 51))
    s = STREAM.replace(flip_on_signal=True)
    ref_engine = Engine(s)
    ref = concat([ref_engine.feed(tr, qu), ref_engine.finish()])
    tiny = _TinyBuffers(s)
    got = concat([tiny.feed(tr, qu), tiny.finish()])
    for name in ("bars", "features", "signals", "fills", "intents"):
        assert getattr(got, name).tobytes() == getattr(ref, name).tobytes(), name
    # the minute pass over those minutes, in slices, with tiny buffers
    passes = []
    for cls in (Engine, _TinyBuffers):
        eng = cls(s, hist_bins=16, fifo_size=16)
        eng.attach_minutes(ref.bars, ref.features)
        parts = [eng.feed_minutes(qu[k:k + 700]) for k in range(0, len(qu), 700)]
        passes.append(concat([*parts, eng.finish()]))
    for out in passes:
        assert out.signals.tobytes() == ref.signals.tobytes()
        assert out.fills.tobytes() == ref.fills.tobytes()
        assert out.bars.tobytes() == ref.bars.tobytes()
    # bar mode
    bars = [cls(s, hist_bins=16, fifo_size=16).run_bars(ref.bars, ref.features) for cls in (Engine, _TinyBuffers)]
    assert len(bars[0].fills) > 0
    for name in ("signals", "fills", "intents"):
        assert getattr(bars[1], name).tobytes() == getattr(bars[0], name).tobytes(), name


def test_one_kind_of_input_per_engine_and_backtest_passes_need_paper():
    eng = Engine(STREAM)
    eng.feed(*random_stream(1, minutes=3))
    with pytest.raises(EngineError):
        eng.run_bars(np.zeros(0, dtype=eng._alloc(0, 0)[0].dtype), np.zeros(0, dtype=eng._alloc(0, 0)[1].dtype))
    ext = Engine(STREAM, mode="external", hist_bins=16, fifo_size=16)
    with pytest.raises(EngineError, match="paper"):
        ext.run_bars(np.zeros(0, dtype=eng._alloc(0, 0)[0].dtype), np.zeros(0, dtype=eng._alloc(0, 0)[1].dtype))
    with pytest.raises(ValueError):
        eng.set_mode("live")
