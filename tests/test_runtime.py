"""The headless runtime: clock seam, runner events, alert rules, chunk and clock invariance."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import Settings
from engine.engine import Engine, concat
from engine.runtime import AlertRules, LiveClock, Runner
from engine.runtime.events import Alert, Filled, MinuteClosed, ReadinessChanged
from engine.types import REASON_FEED_STALE, REASON_NAMES
from tests.helpers import random_stream

TRADING = Settings().replace(rolling_window_minutes=8, min_window_coverage=0.0, cooldown_minutes=0,
                             max_hold_minutes=4, qimb_entry_min=0.0, qimb_breakout_min=0.0, accept_outside_k=2,
                             breakout_target_va_multiple=3.0, max_daily_loss=1e9)


@pytest.fixture(scope="module")
def stream():
    return random_stream(5, minutes=90, trades_per_min=25, quotes_per_min=40, gap_minutes=(30, 31, 32))


def _merged(tr, qu):
    """Every event in time order as (kind, record): quotes before trades at equal ms, as the loop does."""
    events = [(int(q["ts"]), 0, i) for i, q in enumerate(qu)] + [(int(t["ts"]), 1, i) for i, t in enumerate(tr)]
    events.sort()
    return events


def _whole(settings, tr, qu):
    eng = Engine(settings)
    return concat([eng.feed(tr, qu), eng.finish()])


def test_trading_run_is_the_same_fed_event_by_event_in_chunks_or_whole(stream):
    tr, qu = stream
    whole = _whole(TRADING, tr, qu)
    assert len(whole.fills) >= 4, "the stream should trade"
    events = _merged(tr, qu)
    for size in (1, 7, 1000):
        eng = Engine(TRADING)
        parts = []
        for k in range(0, len(events), size):
            chunk = events[k:k + size]
            t_idx = [i for _, kind, i in chunk if kind == 1]
            q_idx = [i for _, kind, i in chunk if kind == 0]
            parts.append(eng.feed(tr[t_idx], qu[q_idx]))
        out = concat([*parts, eng.finish()])
        for name in ("bars", "features", "signals", "fills"):
            assert getattr(out, name).tobytes() == getattr(whole, name).tobytes(), (size, name)


def test_minutes_closed_by_the_live_clock_equal_the_batch_close(stream):
    tr, qu = stream
    whole = _whole(TRADING, tr, qu)
    eng = Engine(TRADING)
    parts = []
    events = _merged(tr, qu)
    for n, (ts, kind, i) in enumerate(events):
        parts.append(eng.feed(tr[i:i + 1]) if kind == 1 else eng.feed(None, qu[i:i + 1]))
        nxt = events[n + 1][0] if n + 1 < len(events) else ts
        # the feed is quiet until the next event: the live clock closes what has ended by then
        parts.append(eng.close_until(nxt))
    out = concat([*parts, eng.finish()])
    for name in ("bars", "features", "signals", "fills"):
        assert getattr(out, name).tobytes() == getattr(whole, name).tobytes(), name


def test_no_phantom_minute_after_close_until_and_finish(stream):
    tr, qu = stream
    eng = Engine(TRADING)
    first = eng.feed(tr, qu)
    last_min = max(int(tr["ts"][-1]), int(qu["ts"][-1])) // 60_000 * 60_000
    closed = eng.close_until(last_min + 60_000)  # the clock passed the last minute's end
    assert int(closed.bars["ts_min"][-1]) == last_min
    assert len(eng.finish().bars) == 0
    assert len(first.bars) + len(closed.bars) == len(_whole(TRADING, tr, qu).bars)


def test_live_clock_is_newest_exchange_time_plus_wall_time_since():
    wall = [100.0]
    clock = LiveClock(wall=lambda: wall[0])
    assert clock.now_ms() == -1
    clock.observe(1_000_000)
    wall[0] += 2.5
    assert clock.now_ms() == 1_002_500 and clock.quiet_ms() == 2_500
    clock.observe(999_000)  # older (late) event: the clock does not go back
    assert clock.now_ms() == 1_002_500
    clock.observe(1_003_000)
    assert clock.now_ms() == 1_003_000 and clock.quiet_ms() == 0
    fast = LiveClock(speed=600.0, wall=lambda: wall[0])
    fast.observe(0)
    wall[0] += 1.0
    assert fast.now_ms() == 600_000  # an accelerated replay: ten minutes of event time per second


def test_runner_emits_every_minute_and_fill_in_time_order(stream):
    tr, qu = stream
    seen = []
    runner = Runner(TRADING, seen.append)
    runner.feed(tr, qu)  # one call closes ~90 minutes
    runner.finish()
    minutes = [e for e in seen if isinstance(e, MinuteClosed)]
    whole = _whole(TRADING, tr, qu)
    assert [m.features["ts_min"] for m in minutes] == whole.features["ts_min"].tolist()
    assert sum(isinstance(e, Filled) for e in seen) == len(whole.fills) == runner.fills
    times = [e.fill["ts_fill"] if isinstance(e, Filled) else e.features["ts_min"] + 60_000
             for e in seen if isinstance(e, Filled | MinuteClosed)]
    assert times == sorted(times)


def test_alert_rules_fire_when_a_condition_starts_not_every_minute():
    rules = AlertRules(Settings())
    row = {"ts_min": 0, "ready": 0, "volume": 10, "amb_qty": 0, "va_valid": 1}
    assert [type(e) for e in rules.minute(row)] == [ReadinessChanged]
    stale = dict(row, ready=REASON_FEED_STALE, amb_qty=9)
    kinds = [e.kind for e in rules.minute(stale) if isinstance(e, Alert)]
    assert kinds == ["feed_stale", "ambiguity"]
    assert rules.minute(dict(stale, ts_min=60_000)) == []  # still stale, still ambiguous: nothing new
    back = rules.minute(dict(row, ts_min=120_000, va_valid=0))
    assert [REASON_NAMES[e.after] for e in back if isinstance(e, ReadinessChanged)] == ["READY"]
    assert [e.kind for e in back if isinstance(e, Alert)] == ["no_value_area"]


def test_late_events_are_counted_and_dropped(stream):
    tr, qu = stream
    eng = Engine(TRADING)
    eng.feed(tr[: len(tr) // 2], qu[: len(qu) // 2])
    late = tr[:3].copy()
    out = eng.feed(late, None)
    assert eng.late_events == 3 and len(out.bars) == 0 and np.all(out.fills["fill_id"] >= 0)


def test_minutes_touched_by_a_feed_gap_are_marked_not_entered_and_not_covered(stream):
    tr, qu = stream
    whole = _whole(TRADING, tr, qu)
    t0 = int(whole.bars["ts_min"][0])
    gap_from, gap_to = t0 + 40 * 60_000 + 30_000, t0 + 42 * 60_000 + 5_000  # touches minutes 40, 41, 42
    cut = int(np.searchsorted(tr["ts"], gap_from)), int(np.searchsorted(qu["ts"], gap_from))
    eng = Engine(TRADING.replace(min_window_coverage=0.8))
    parts = [eng.feed(tr[:cut[0]], qu[:cut[1]])]
    eng.mark_feed_gap(gap_from)  # the disconnection is seen: open-ended
    eng.mark_feed_gap(gap_from, gap_to)  # reconnected
    parts += [eng.feed(tr[cut[0]:], qu[cut[1]:]), eng.finish()]
    out = concat(parts)
    i = {int(t): k for k, t in enumerate(out.features["ts_min"])}
    marked = [m for m in range(len(out.features)) if out.features["feed_gap"][m]]
    assert marked == [i[t0 + m * 60_000] for m in (40, 41, 42)]
    assert all(REASON_NAMES[int(out.features["ready"][m])] == "FEED_GAP" for m in marked)
    assert all(int(out.signals["action"][m]) in (0, 3) for m in marked)  # holds (or exits), never enters
    # a marked minute counts as one without data: the next minutes' windows hold 3 fewer covered minutes
    k = i[t0 + 43 * 60_000]
    assert int(out.features["covered"][k]) == int(whole.features["covered"][k]) - 3
    assert REASON_NAMES[int(out.features["ready"][k])] == "INSUFFICIENT_HISTORY"  # 5 of 8 < 0.8
