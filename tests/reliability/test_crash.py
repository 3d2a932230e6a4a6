"""Crash safety: ``pbdtui run --live`` killed with SIGKILL 20 times while it records and trades.

The market (the loopback stream and the loopback Bybit REST exchange) runs
in this process for the whole module; the daemon is the real command in a
process of its own, restarted after every kill (``crashkit``). The kills
come at seeded random instants: most a random while after the daemon went
live, some during its start (warm start, backend start, reconciliation).
One module-scoped run; each test checks one promise over all the kills.
``bench/bench_crash.py`` is the long version (``--kills N``) with a table.
"""

from __future__ import annotations

import statistics
import time

import pytest

from engine.features import compute_minutes, write_minute_tables
from engine.store import Store, instrument_of
from tests.reliability.crashkit import (
    LOST_BUDGET_MS,
    SETTINGS,
    START,
    Crash,
    Market,
    exec_diff,
    make_source,
    prefill,
)

KILLS = 20
# x real time: a minute of market every 1.3 s; a restart (two seconds of wall time, a minute and a half of market)
# stays under feed_stale_halt_ms, and a short life still trades (faster starves the daemon's CPU on a loaded 2-core box)
SPEED = 45.0
SESSION_MINUTES = 60
PREFILL_MINUTES = 12  # past the 10-minute window: the first daemon trades at once


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    work = tmp_path_factory.mktemp("crash")
    source = make_source(work / "src.db", SESSION_MINUTES)
    cut = START + PREFILL_MINUTES * 60_000
    prefill(work / "live.db", source, cut)
    market = Market(source, cut, speed=SPEED)
    # lives of 0.2-1.5 s once live (a restart costs two seconds: the kills, not the lives, are what is tested), a
    # quarter of them after waiting for an open position (kills with a position open: the stop must hold), and
    # 15% at a random instant of the start
    crash = Crash(market, work, seed=20261129, live_for=(0.2, 1.5), early_kill=0.15, early_for=(0.3, 2.5),
                  in_trade=0.25)
    try:
        # a first clean start: it may compile the kernels (minutes on a fresh checkout), so it runs until it has
        # closed a minute live (every kernel of the live path compiled and cached: no kill below lands in a
        # compile, which would only start over at the next start); not a kill
        crash.spawn()
        crash.wait_live(timeout=900)
        minute = _newest_minute(crash)
        crash.wait_until(lambda: _newest_minute(crash) > minute, "a minute closed live", 900)
        assert crash.stop() == 0
        for _ in range(KILLS):
            crash.cycle()
        # the last restart: reconciled, then it trades on until it has closed new minutes, and stops cleanly
        crash.spawn()
        first = crash.wait_live()
        crash.after_restart([r for r in crash.records if r.exec_lost < 0], first)
        minute = _newest_minute(crash)
        crash.wait_until(lambda: _newest_minute(crash) >= minute + 2 * 60_000, "two more minutes closed", 120)
        deadline = time.monotonic() + 30
        while True:  # the daemon trades on: its status and the exchange read at one moment, agreeing
            final = crash.status()
            lots = crash.market.protection()[0]
            if final["qty"] == lots or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # another process's next poll: polled
        assert crash.stop() == 0
        crash.final_status, crash.final_lots = final, lots
        yield crash
    finally:
        if crash.proc is not None and crash.proc.poll() is None:
            crash.proc.kill()
            crash.proc.wait(30)
        market.close()


def _newest_minute(crash: Crash) -> int:
    with Store(crash.db, readonly=True) as st:
        return int(st.fetch("SELECT COALESCE(MAX(ts_min), 0) FROM bars_1m")[0][0])


def test_twenty_kills_each_leave_a_database_that_passes_its_integrity_check(crashed):
    assert len(crashed.records) == KILLS
    assert [r.integrity for r in crashed.records] == ["ok"] * KILLS
    assert sum(r.phase == "starting" for r in crashed.records) >= 1  # some kills hit the start itself


def test_killed_runs_leave_no_credential_in_their_output_or_the_database(crashed):
    from tests.reliability.crashkit import KEY, SECRET

    blobs = [p.read_bytes() for p in crashed.logs.iterdir()]
    blobs += [p.read_bytes() for p in crashed.workdir.glob("live.db*") if p.is_file()]
    assert len(blobs) >= 2 * KILLS
    assert not [b for b in blobs if KEY.encode() in b or SECRET.encode() in b]


def test_a_kill_loses_at_most_the_last_second_of_received_ticks(crashed):
    ages = [r.lost_max_ms for r in crashed.records]
    assert max(ages) <= LOST_BUDGET_MS, [(r.n, r.lost_trades, r.lost_max_ms) for r in crashed.records]
    ids = [int(i) for i in Store(crashed.db, readonly=True).load_ticks("trade")["trade_id"]]
    assert len(ids) == len(set(ids))  # and nothing the restarts received twice is stored twice


def test_no_execution_is_lost_or_recorded_twice_across_the_kills(crashed):
    executions = crashed.market.trade_exec_ids()
    assert len(executions) >= 4, "the session should trade: entries and exits on the exchange"
    print(f"\n{len(executions)} executions on the exchange")
    # after each restart: everything the exchange executed before the kill is recorded once
    assert [(r.exec_lost, r.exec_dup) for r in crashed.records] == [(0, 0)] * KILLS
    # at the end: every execution of the whole session, once
    assert exec_diff(crashed.db, executions) == (0, 0)


def test_an_open_position_keeps_its_exchange_stop_while_the_daemon_is_down(crashed):
    assert all(r.protected for r in crashed.records), [(r.n, r.venue_lots) for r in crashed.records if not r.protected]
    assert any(r.venue_lots != 0 for r in crashed.records), "no kill found a position open: nothing was tested"


def test_every_restart_reconciles_the_position_and_trades_on(crashed):
    for r in crashed.records:
        assert r.reconciled_qty is not None, f"kill {r.n}: the restart's start reconciliation did not match"
        assert r.reconciled_qty == r.venue_lots, f"kill {r.n}: engine {r.reconciled_qty}, exchange {r.venue_lots}"
    final = crashed.final_status
    assert final["last_reconciliation"]["matched"] and final["qty"] == crashed.final_lots
    restart = [r.restart_s for r in crashed.records if r.restart_s == r.restart_s]
    print(f"\n{KILLS} kills: restart median {statistics.median(restart):.2f} s, max {max(restart):.2f} s; "
          f"reconciliation median {statistics.median(r.reconcile_s for r in crashed.records if r.reconcile_s == r.reconcile_s):.2f} s")


def test_features_after_the_kills_equal_an_offline_pass_over_the_same_ticks(crashed, tmp_path):
    offline = tmp_path / "offline.db"
    with Store(crashed.db, readonly=True) as src, Store(offline, instrument_of(SETTINGS)) as dst:
        dst.append_ticks("trade", src.load_ticks("trade"), "copy")
        dst.append_ticks("quote", src.load_ticks("quote"), "copy")
        dst.append_funding(src.load_funding())
        m = compute_minutes(dst, SETTINGS)
        write_minute_tables(dst, SETTINGS, m.bars, m.features)
    live_bars, live_feats = _tables(crashed.db)
    off_bars, off_feats = _tables(offline)
    assert len(live_bars) >= PREFILL_MINUTES + 10
    # the last run leaves its open minute open; every closed minute equals the offline pass
    assert live_bars == off_bars[:len(live_bars)]
    # the outage marks (feed_gap, and the FEED_GAP readiness they cause) are the live run's knowledge of the
    # kills, which an offline pass cannot have; every other column is equal
    assert [_values(r) for r in live_feats] == [_values(r) for r in off_feats[:len(live_feats)]]
    # (with the crash config a restart's outage is shorter than feed_stale_halt_ms: few minutes, if any, are marked)
    assert all(r["ready_code"] == "FEED_GAP" for r in live_feats if r["feed_gap"] and r["ready_code"] != "WARMUP")


def _tables(db):
    with Store(db, readonly=True) as st:
        bars = st.fetch("SELECT * FROM bars_1m ORDER BY ts_min")
        cols = [r[1] for r in st.fetch("PRAGMA table_info(features_1m)")]
        feats = [dict(zip(cols, r, strict=True)) for r in st.fetch("SELECT * FROM features_1m ORDER BY ts_min")]
    return bars, feats


def _values(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("feed_gap", "ready_code")}


# --- the restart's recovery of executions a killed run had not recorded, step by step --------------------


@pytest.mark.parametrize("recorded_entry", [True, False], ids=["exit-unrecorded", "nothing-recorded"])
async def test_a_restart_records_once_the_executions_a_killed_run_had_not_committed(tmp_path, recorded_entry):
    """The previous run entered (and, in one case, exited) then died before committing; the restart catches up."""
    from engine.adapters.bybit.rest import BybitRest
    from engine.adapters.bybit.ws import FeedConfig
    from engine.execution.bybit import BybitExecution
    from engine.execution.types import INTENT_ENTER, INTENT_EXIT, Intent
    from engine.runtime.live import LiveDriver
    from engine.runtime.trading import LiveTrader
    from engine.types import SIDE_BUY, SIDE_SELL
    from loopback.bybit_rest import BybitRestVenue
    from tests.reliability.crashkit import KEY, SECRET

    source = make_source(tmp_path / "src.db", 3)
    db = tmp_path / "live.db"
    prefill(db, source, START + 3 * 60_000)
    clock = iter(range(START + 3 * 60_000, START + 10 * 60_000, 7))  # the venue stamps the stream's time line
    with BybitRestVenue(api_key=KEY, api_secret=SECRET, market_clock=lambda: next(clock)) as venue:
        venue.set_quote(60_000.0, 60_000.1)
        before = BybitExecution(BybitRest(venue.url, KEY, SECRET), instrument_of(SETTINGS))
        assert before.start()
        before.submit(Intent(INTENT_ENTER, SIDE_BUY, 20, 0, "prev-entry", stop=590_000))
        entry = venue.executions()[-1]
        if recorded_entry:  # the entry was committed; the exit that followed was not
            before.submit(Intent(INTENT_EXIT, SIDE_SELL, 20, 0, "prev-exit"))
            with Store(db) as st:
                st.db.execute("INSERT INTO trades_exec(run_id, trade_id, ts_ms_fill, side, qty, exec_id) "
                              "VALUES ('live-prev', 1, ?, 'BUY', 0.02, ?)", (int(entry["execTime"]), entry["execId"]))
        lots = round(venue.position()[0] / 0.001)
        assert lots == (0 if recorded_entry else 20)

        driver = LiveDriver(SETTINGS, str(db), FeedConfig(url="ws://127.0.0.1:1/x"), lambda e: None,
                            mode="external", run_id="live-next")
        backend = BybitExecution(BybitRest(venue.url, KEY, SECRET), instrument_of(SETTINGS))
        trader = LiveTrader(driver, backend)
        driver.recorder.start()
        try:
            assert await trader.start()
        finally:
            trader.close()
            driver.recorder.close()
        executions = [e["execId"] for e in venue.executions()]
    assert driver.engine.position().qty == lots and trader.last_reconciliation["matched"]
    assert exec_diff(db, executions) == (0, 0)  # each execution once: the missing ones recorded by the restart
    with Store(db, readonly=True) as st:
        rows = st.fetch("SELECT side, qty, exit_reason, exec_id IS NOT NULL FROM trades_exec "
                        "WHERE run_id = 'live-next' ORDER BY trade_id")
    if recorded_entry:
        # the position the dead run held (long 20) adopted first, then its exit applied: flat, as the exchange
        assert rows == [("BUY", 0.02, "reconcile", 0), ("SELL", 0.02, rows[1][2], 1)]
    else:
        assert rows == [("BUY", 0.02, "", 1)]  # the entry itself, no adoption needed
