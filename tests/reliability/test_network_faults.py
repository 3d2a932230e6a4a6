"""Network faults on the live trading path (the short CI version of ``bench/bench_faults.py``).

A live daemon (``LiveDriver`` in external mode + ``bybit_trader``: pybit,
``BybitExecution``, ``LiveTrader``) warm-starts past its 5-minute window on
the session's first minutes and trades the next 14 minutes of simulated
market served by the loopback WebSocket venue at 50x (17 s), against the
loopback REST venue, while both inject faults at rates far above real life
(``loopback.faultrun``): a dropped connection every 3 market minutes, an
outage-long stall every 7, slow frames every 2, garbage, truncated,
duplicated and reordered frames every few hundred, book resets, and a REST
fault armed every 0.3 s of wall time (timeouts of requests that executed,
503 executed or not, 10006 with its headers, 10002, garbage bodies executed
or not) on order creation and on the polls. Every check is on the run's
own record: the venue's served trades and executions, the stored database.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.config import Settings
from engine.store import Store, instrument_of
from engine.synth import synthesize
from loopback.faultrun import FaultPlan, run_faults

START = 1_767_571_200_000
PREFILL_MINUTES = 6  # past the 5-minute window: the daemon may trade from the first served minute
# seed 43: a session that trades (7 entries offline in the 14 minutes served) with over 800 trades a minute
SESSION_MINUTES = PREFILL_MINUTES + 14
SETTINGS = Settings().replace(rolling_window_minutes=5, min_window_coverage=0.0, cooldown_minutes=0,
                              max_hold_minutes=3, qimb_entry_min=0.0, qimb_breakout_min=0.0, accept_outside_k=2,
                              max_daily_loss=1e9, feed_stale_halt_ms=1500)
PLAN = FaultPlan(ws=["drop/3m", "stall:2/7m", "stall:0.2/2m", "garbage/150", "truncated/250", "duplicate/200",
                     "reorder/120", "reset/5m"], stale_after=1.0, rest_every_s=0.3, rest_timeout=0.4, seed=11,
                 speed=50)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    cut = START + PREFILL_MINUTES * 60_000
    with Store(tmp / "src.db", instrument_of(SETTINGS)) as src, Store(tmp / "live.db", instrument_of(SETTINGS)) as db:
        synthesize(src, SETTINGS, days=SESSION_MINUTES / 1440, seed=43, start_ms=START)
        for kind in ("trade", "quote"):
            rows = src.load_ticks(kind)
            db.append_ticks(kind, rows[rows["ts"] < cut], "copy")
    out = asyncio.run(run_faults(tmp / "src.db", tmp / "live.db", SETTINGS, PLAN, settle_timeout=60, start_ms=cut))
    print(out.table())
    return out


def test_every_fault_kind_fired(report):
    fired = {k for k, n in report.injected.items() if n > 0}
    assert {"ws drop", "ws stall (outage)", "ws slow frames", "ws garbage", "ws truncated", "ws duplicate",
            "ws reorder", "ws reset"} <= fired, report.injected
    assert sum(n for k, n in report.injected.items() if k.startswith("rest ")) >= 10, report.injected
    assert report.rest_errors >= 5


def test_no_crash_and_the_position_is_reconciled_at_the_end(report):
    assert report.crashes == 0, report.crash_texts
    assert report.final_matched and report.engine_lots == report.venue_lots
    assert report.mismatches == 0


def test_every_outage_is_alerted_and_every_gap_flagged(report):
    assert report.outages >= report.injected["ws drop"] + report.injected["ws stall (outage)"]
    assert report.outage_alerts == report.outages
    assert report.reconnects >= report.injected["ws drop"]
    assert report.gaps >= 1 and report.gaps_unflagged == []


def test_bad_frames_are_counted_by_topic(report):
    assert sum(report.malformed.values()) >= report.injected["ws garbage"] // 2
    assert set(report.malformed) <= {"frame", "publicTrade", "orderbook", "tickers", "control"}


def test_no_tick_lost_or_doubled(report):
    assert report.ticks_served > 10_000
    assert report.ticks_lost == 0 and report.ticks_doubled == 0


def test_no_duplicated_exposure_and_every_execution_recorded_once(report):
    assert report.orders >= 1, "the session should trade"  # 4 orders in 14 min (the 3 h bench: 11-22)
    assert report.duplicate_orders == 0
    assert report.max_position_lots <= report.max_entry_lots  # never two entries' worth at once
    assert report.fills_recorded == report.executions


def test_every_error_and_reconnect_is_followed_by_a_matched_reconciliation_within_seconds(report):
    assert report.unrecovered == 0
    _, worst = report.reconcile_stats()
    assert worst < 15.0, report.reconcile_s
