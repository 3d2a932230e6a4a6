"""Soak, the short CI version of ``bench/bench_soak.py``: hours of market through the live path at full speed.

Four simulated hours (a random-walk market, 2 trades a second with their
quotes) through ``ThreadedLive`` around ``LiveDriver`` (paper trading, the
console's and ``pbdtui run``'s path) from the loopback venue as fast as it
reads, with a one-hour raw retention purged every 0.2 s of wall time (the
real setting is 48 h every 10 minutes): memory stays within a bound once
warm, the raw tables hold the retention window and what came since the last
purge (the window alone after the session's last purge) while the derived
tables keep every minute, and minute-close latency at the end is that of the
start.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.config import Settings
from engine.store import Store
from loopback.soak import _raw as raw_rows
from loopback.soak import run_soak, write_session

SETTINGS = Settings().replace(retention_hours=1)
HOURS = 4


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("soak")
    write_session(tmp / "src.db", SETTINGS, HOURS, per_second=2, seed=5)
    report = asyncio.run(run_soak(tmp / "src.db", tmp / "live.db", SETTINGS, purge_interval=0.2, sample_s=0.25))
    print(report.table())
    served, _, _, _ = raw_rows(str(tmp / "src.db"))
    return report, tmp / "live.db", served


def test_the_whole_session_went_through(soak):
    report, db, _ = soak
    assert report.error == ""
    assert report.samples[-1].market_h > HOURS - 0.1
    with Store(db, readonly=True) as st:
        minutes = st.fetch("SELECT count(*) FROM bars_1m")[0][0]
        features = st.fetch("SELECT count(*) FROM features_1m")[0][0]
    assert minutes >= HOURS * 60 - 2 and features == minutes  # derived tables keep every minute


def test_raw_tables_are_purged_to_the_retention_window(soak):
    report, _, served = soak
    assert report.purged > 0
    late = [s for s in report.samples if s.market_h > 2 * SETTINGS.retention_hours]
    assert late, report.table()
    # a purge every 0.2 s of wall time: no raw row is older than the last purge's cutoff, which is the
    # retention behind the newest row stored then (how far the market ran since depends on the machine)
    assert all(s.raw_from_h >= s.purged_to_h > 0 for s in late), report.table()
    # the session over, a last purge leaves the retention window and no more
    assert report.samples[-1].raw_span_h <= SETTINGS.retention_hours + 0.001, report.table()
    # what is left is about the retention's share of the session, not the session
    assert report.samples[-1].raw_rows < served * (SETTINGS.retention_hours + 0.5) / HOURS, (served, report.table())


def test_memory_is_flat_once_warm(soak):
    report, _, _ = soak
    warm = [s.rss_mb for s in report.samples if s.market_h >= 1.0]
    assert len(warm) >= 3, report.table()
    assert max(warm) - warm[0] < 40.0, report.table()  # MB over three hours of market at full speed


def test_minute_close_latency_does_not_grow(soak):
    report, _, _ = soak
    first, last = report.latency(True, 0.2), report.latency(False, 0.2)
    assert first["n"] >= 20
    assert last["p50"] <= 2 * first["p50"] + 5.0, (first, last)
