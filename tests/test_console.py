"""The console: pure renderers on hand-built inputs, and the app driven through pilot.

The app tests replay a real simulated session (``engine.synth``) from a real
SQLite file through the real engine on the worker thread; nothing is mocked.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from engine.config import Settings
from engine.engine import PositionView
from engine.kernels.features import value_area
from engine.kernels.state import SI_FLATTEN
from engine.store import Store, instrument_of
from engine.synth import synthesize
from engine.types import ACCEPT_BELOW_PENDING, ACTION_HOLD, REASON_NO_SETUP
from pbdtui.app import PbdApp, create_app, demo_database
from pbdtui.consoles import AttachScreen, LiveScreen, ReplayScreen
from pbdtui.messages import MinuteClosed, Snapshot, TicksReplayed
from pbdtui.render import (
    EMPTY_PROFILE,
    profile_rows,
    render_chart,
    render_features,
    render_position,
    render_profile,
    render_signal_line,
    render_status,
)
from pbdtui.screens import ConfirmScreen, HelpScreen, SeekScreen, SummaryScreen, binding_rows
from pbdtui.widgets.features import FeaturesView
from pbdtui.widgets.panels import StatusBar
from pbdtui.widgets.profile import ProfileView
from tests.helpers import pilot_until, random_stream

T_0358 = 1_767_585_480_000  # 2026-01-05 03:58 UTC


# --- the profile renderer ---------------------------------------------------------------


def _hand_profile():
    """Twelve base bins (ticks 100..111), k=2: levels 50..55 hold 2, 3, 6, 4, 1, 1 lots."""
    bins = np.arange(100, 112, dtype=np.int64)
    vols = np.array([1, 1, 2, 1, 3, 3, 2, 2, 1, 0, 0, 1], dtype=np.int64)
    return bins, vols


def test_hand_profile_value_area_matches_the_engine_kernel():
    # the marks the renderer is given below are the engine's own answer
    bins, vols = _hand_profile()
    out = np.zeros(5, np.int64)
    value_area(vols, 100, 100, 111, 2, 1, 0, 0.7, np.zeros(8, np.int64), out)
    assert list(out) == [210, 102, 108, 13, 17]  # poc2, val, vah, included, total


def test_profile_marks_poc_value_area_edges_and_last_price():
    bins, vols = _hand_profile()
    lines = render_profile(bins, vols, k=2, poc2=210, val=102, vah=108, last_px=107,
                           tick_size=0.5, height=10, width=40)
    # bar width 22 = 40 - label 4 - " │" - the widest note "◀ last 53.5" and its space;
    # each bar is its level's volume over the POC's (6 lots), rounded
    assert lines == [
        "55.0 │" + "░" * 4,
        "54.0 │" + "░" * 4,
        "─────┼" + "─" * 22 + " VAH 54.0",
        "53.0 │" + "█" * 15 + " ◀ last 53.5",
        "52.0 │" + "█" * 22 + " POC 52.5",
        "51.0 │" + "█" * 11,
        "─────┼" + "─" * 22 + " VAL 51.0",
        "50.0 │" + "░" * 7,
    ]


def test_profile_merges_levels_when_taller_than_the_box():
    bins, vols = _hand_profile()
    lines = render_profile(bins, vols, k=2, poc2=210, val=102, vah=108, last_px=101,
                           tick_size=0.5, height=6, width=40)
    # 6 levels + 2 VA lines in 6 rows: two levels per row, cut outward from VAL and VAH,
    # so the value area's three levels make one full row and one single-level row. Bars are
    # volume per level: 2/2, 4/1, 9/2, 2/2 lots, scaled to 4.5 -> 22 characters
    assert lines == [
        "54.0 │" + "░" * 5,
        "─────┼" + "─" * 22 + " VAH 54.0",
        "53.0 │" + "█" * 20,
        "51.0 │" + "█" * 22 + " POC 52.5",
        "─────┼" + "─" * 22 + " VAL 51.0",
        "49.0 │" + "░" * 5 + " ◀ last 50.5",
    ]


def test_rows_never_straddle_the_value_area_edges():
    g, rows = profile_rows(0, 19, (5, 12), 8)
    assert g == 3
    assert rows == [(-1, 1), (2, 4), (5, 7), (8, 10), (11, 12), (13, 15), (16, 18), (19, 21)]
    # without a value area rows sit on multiples of g, so they do not move with the range
    assert profile_rows(5, 14, None, 4) == (3, [(3, 5), (6, 8), (9, 11), (12, 14)])


def test_profile_without_value_area_has_no_marks_but_the_last_price():
    bins, vols = _hand_profile()
    lines = render_profile(bins, vols, k=2, poc2=0, val=0, vah=0, last_px=111, tick_size=0.5,
                           height=10, width=30, va_valid=False)
    assert len(lines) == 6
    assert lines[0] == "55.0 │" + "░" * 2 + " ◀ last 55.5"
    assert not any("POC" in x or "VAH" in x or "VAL" in x or "█" in x for x in lines)


def test_empty_profile_says_so():
    empty = np.zeros(0, np.int64)
    assert render_profile(empty, empty, k=1, poc2=0, val=0, vah=0, last_px=-1, tick_size=0.1,
                          height=5, width=40) == [EMPTY_PROFILE]


@pytest.mark.parametrize("height,width", [(3, 20), (10, 30), (28, 52), (44, 110)])
def test_profile_fits_any_box(height, width):
    rng = np.random.default_rng(3)
    bins = np.arange(940_000, 949_000, dtype=np.int64)
    vols = rng.poisson(5, len(bins)).astype(np.int64)
    lines = render_profile(bins, vols, k=106, poc2=2 * 944_500 + 106, val=942_000, vah=946_000,
                           last_px=948_000, tick_size=0.1, height=height, width=width)
    assert 0 < len(lines) <= height
    assert all(len(x) <= width for x in lines)
    if height >= 10:
        text = "\n".join(lines)
        for mark in ("POC", "VAH", "VAL", "◀ last"):
            assert mark in text


# --- the features panel and the header ----------------------------------------------------


def test_features_panel_reads_the_last_minute_and_the_position():
    features = dict(ts_min=T_0358, mid2=1_883_467, sigma=0.0004821, k=116, poc2=1_883_340,
                    val=941_200, vah=942_100, va_valid=1, va_coverage=0.7198, volume=38_374,
                    of=3_405, amb_qty=363, qimb=-0.4737, qimb_ema=-0.2704, ready=0,
                    agree_qty=30_000, agree_den=31_000)
    signal = dict(acceptance_state=ACCEPT_BELOW_PENDING, action=ACTION_HOLD, reason=REASON_NO_SETUP,
                  breakin_long=0, breakin_short=0, breakout_long=0, breakout_short=1,
                  failbreak_long=0, failbreak_short=0)
    position = PositionView(position=-1, entry_px=941_764, entry_ts=T_0358, stop=942_000, target2=0,
                            tag=2, realized=-0.5, fees=0.25, funding=0.0, day_pnl=-0.5,
                            kill_daily=False, kill_manual=False, bid=941_699, ask=941_700)
    styled = render_features(features, signal, position, tick_size=0.1, qty_step=0.001,
                             order_qty=0.001, last_px=941_700, ambiguous_max=0.35)
    assert [str(line.spans[-1].style) for line in styled[1:2]] == ["bold green"]  # READY: spans, not regexes
    lines = [line.plain for line in styled]
    assert lines == [
        "minute    03:58 UTC",
        "ready     READY",
        "mid       94173.35",
        "sigma     4.82 bp/min",
        "bin       11.6  (k 116)",
        "POC       94167.0",
        "VAH       94210.0",
        "VAL       94120.0  cover 72.0%",
        "OF        +3.405  (+0.09 of vol)",
        "qimb      -0.47  ema -0.27",
        "ambiguous 0.9%",
        "agreement 96.8%",
        "accept    BELOW (pending)",
        "signal    HOLD · NO_SETUP",
        "setups    breakout_short",
        "position  SHORT 0.001 @ 94176.4",
        "stop      94200.0",
        "PnL       open +0.01  day -0.50",
        "          realized -0.50  fees 0.25",
    ]


def test_features_panel_before_the_first_close():
    lines = render_features(None, None, None, tick_size=0.1, qty_step=0.001, order_qty=0.001)
    assert [line.plain for line in lines] == ["minute    waiting for the first close"]


def test_position_panel_shows_the_exchange_side_in_live_modes():
    from pbdtui.render import render_position

    position = PositionView(position=1, entry_px=941_764, entry_ts=T_0358, stop=941_000, target2=0, tag=2,
                            realized=0.0, fees=0.1, funding=0.0, day_pnl=0.0, kill_daily=False, kill_manual=True,
                            bid=941_700, ask=941_701)
    exchange = {"venue": {"qty": 1, "entry_px": 941_764, "stop": 941_000, "take_profit": 0}, "outstanding": ["x"],
                "queued": 0, "flattening": True, "mismatch": False, "last_reconciliation": {"matched": True},
                "kill": {"on": True, "reasons": {"flatten": "operator flatten", "operator": "console"}}}
    text = render_position(position, last_px=941_700, ts=T_0358 + 60_000, tick_size=0.1, qty_step=0.001,
                           order_qty=0.001, max_hold_minutes=60, exchange=exchange).plain
    assert "exchange  LONG 0.001" in text and "  stop    94100.0" in text
    assert "orders    1 in flight  FLATTENING" in text and "reconcile ok" in text
    assert "kill by   flatten, operator" in text
    naked = {**exchange, "venue": {"qty": -1, "stop": 0}, "mismatch": True}
    text = render_position(position, last_px=941_700, ts=T_0358, tick_size=0.1, qty_step=0.001, order_qty=0.001,
                           max_hold_minutes=60, exchange=naked).plain
    assert "NONE ON THE EXCHANGE" in text and "MISMATCH: entries blocked" in text


def test_status_bar_live_modes_show_feed_health_and_fit_80_columns():
    from engine.runtime.events import FeedHealth

    ok = FeedHealth(quiet_ms=300, lag_ms=120, reconnects=2, gaps=1, malformed=0, connected=True)
    down = FeedHealth(quiet_ms=16_000, lag_ms=120, reconnects=3, gaps=1, malformed=4, connected=False)
    common = dict(mode="PAPER", ts=T_0358 + 7_500, state="live", speed=1.0, progress=0.0, kill_manual=True,
                  kill_daily=True, day_pnl=-12.5, ready=0, stale_ms=5_000)
    wide = render_status(feed=ok, **common).plain
    assert wide == ("PAPER 2026-01-05 03:58:07 UTC │ feed ok lag 120ms age 0.3s rc 2 gaps 1 │ KILL ON │ "
                    "LOSS LIMIT │ day -12.50 │ READY")
    narrow = render_status(feed=ok, compact=True, **common).plain
    assert narrow == "PAPER 03:58:07Z │ feed ok │ KILL ON │ LOSS LIMIT │ day -12.50 │ READY"
    assert len(narrow) <= 78  # inside the status bar's padding at 80 columns
    bad = render_status(feed=down, compact=True, **common).plain
    assert "FEED DOWN lag 120ms age 16.0s rc 3 gaps 1 bad 4" in bad  # figures shown when they matter
    waiting = FeedHealth(quiet_ms=-1, lag_ms=0, reconnects=0, gaps=0, malformed=0, connected=True, warmup_left=12)
    assert "feed up, waiting for data warm-up 12 min left" in render_status(
        feed=waiting, **{**common, "state": "warm-up"}).plain


# --- the app --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session_db(tmp_path_factory) -> Path:
    """0.2 days of simulated ticks in a real SQLite file: 4 h of warm-up, then 48 minutes."""
    path = tmp_path_factory.mktemp("console") / "session.db"
    settings = Settings()
    with Store(path, instrument_of(settings)) as store:
        synthesize(store, settings, days=0.2, seed=11)
    return path


async def _until(pilot, condition, what: str, timeout: float = 20.0) -> None:
    await pilot_until(pilot, condition, what, timeout)


async def _quit(pilot, app) -> None:
    """``q``; when a paper position happens to be open the console asks first: yes."""
    await pilot.press("q")
    if isinstance(app.screen, ConfirmScreen):
        await pilot.press("y")


# Seconds with warm numba caches; the first run after a kernel edit compiles for a minute or more.
WARM_UP_TIMEOUT = 240.0


def _warmed_up(app: PbdApp) -> bool:
    return (app.mode_screen.snapshot is not None and not app.mode_screen.snapshot.warming_up
            and app.query_one(FeaturesView).features is not None)


def _status(app: PbdApp) -> str:
    return app.query_one(StatusBar).render().plain


def _log_text(app: PbdApp) -> str:
    return "\n".join(app.mode_screen.alert_lines)


@pytest.mark.parametrize("size", [(160, 48), (100, 30)])
async def test_replay_draws_profile_with_value_area_and_last_price(session_db, size):
    app = create_app(Settings(), session_db, speed=60.0)
    async with app.run_test(size=size) as pilot:
        await _until(pilot, lambda: _warmed_up(app), "the warm-up", WARM_UP_TIMEOUT)
        await pilot.pause(0.3)  # a paced step or two after the warm-up
        profile = app.query_one(ProfileView)
        lines = profile.lines()
        text = "\n".join(lines)
        for mark in ("POC ", "VAH ", "VAL ", "◀ last "):
            assert mark in text
        assert len(lines) <= profile.size.height
        assert all(len(x) <= profile.size.width for x in lines)
        features = app.query_one(FeaturesView)
        panel = "\n".join(features.lines())
        assert "POC " in panel and "ready " in panel
        status = _status(app)
        assert status.startswith("REPLAY 2026-01-05 ") and "▶ 60x" in status
        assert "kill off" in status
        await _quit(pilot, app)
    assert app.return_code == 0


async def test_keys_reach_the_engine_on_its_thread(session_db):
    app = create_app(Settings(), session_db, speed=60.0)
    driver = app.driver
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: _warmed_up(app), "the warm-up", WARM_UP_TIMEOUT)

        await pilot.press("k")
        await _until(pilot, lambda: driver.engine.position().kill_manual, "the kill switch in the engine")
        await _until(pilot, lambda: "KILL ON" in _status(app), "the header to show it")

        await pilot.press("p")
        await _until(pilot, lambda: driver.paused, "pause")
        clock = driver.clock
        await pilot.pause(0.3)
        assert driver.clock == clock  # paused: no event time passes

        await pilot.press("f")
        await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await _until(pilot, lambda: app.mode_screen.flatten_requests, "the flatten confirmation")
        # paused, so the request still waits for the next quote inside the engine
        assert driver.engine.state.si[SI_FLATTEN] > 0
        log_text = _log_text(app)
        assert "FLATTEN" in log_text and "KILL SWITCH ON" in log_text

        await pilot.press("plus")
        await _until(pilot, lambda: driver.speed == 120.0, "speed x2")
        await pilot.press("minus", "minus")
        await _until(pilot, lambda: driver.speed == 30.0, "speed /4")

        await pilot.press("p")
        await _until(pilot, lambda: not driver.paused and driver.clock > clock, "resume")
        # the engine serves the request on the next quote and clears it (that flatten closes an
        # open position is tested on the engine itself: test_strategy's kill switch and flatten test)
        await _until(pilot, lambda: driver.engine.state.si[SI_FLATTEN] == 0, "flatten applied")

        await pilot.press("k")  # resetting the kill switch asks first
        await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await _until(pilot, lambda: not driver.engine.position().kill_manual, "kill switch off")

        await _quit(pilot, app)
        await pilot.pause()
    assert app.return_code == 0
    assert app.driver_worker is not None and app.driver_worker.is_finished


def test_high_rate_messages_replace_each_other():
    # the screen draws only the newest snapshot when it falls behind
    empty = np.zeros(0, np.int64)
    position = PositionView(0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, False, False, 0, 0)
    snap = Snapshot(ts=-1, last_px=-1, bins=empty, volumes=empty, k=0, poc2=0, val=0,
                    vah=0, va_valid=False, position=position, speed=1.0, paused=False,
                    warming_up=True, progress=0.0)
    assert TicksReplayed(snap).can_replace(TicksReplayed(snap))
    # every closed minute reaches the signals log: none replaces another
    minute = MinuteClosed({}, {})
    assert not minute.can_replace(MinuteClosed({}, {}))
    assert not minute.can_replace(TicksReplayed(snap))


async def test_replay_error_is_shown_and_the_console_stays_up(session_db):
    # a database of another instrument: the worker fails, the app reports it instead of crashing
    app = create_app(Settings(tick_size=0.5), session_db, speed=60.0)
    async with app.run_test(size=(100, 30)) as pilot:
        await _until(pilot, lambda: app.error is not None, "the worker error", WARM_UP_TIMEOUT)
        log_text = _log_text(app)
        assert "replay stopped" in log_text and "tick_size" in log_text
        await pilot.press("q")
    assert app.return_code == 0


async def test_feed_gap_raises_a_stale_feed_alert_then_recovers(tmp_path):
    # 20 minutes of ticks with nothing in minutes 12 and 13; a 5-minute window so the
    # warm-up ends before the gap (readiness reports WARMUP ahead of FEED_STALE); no coverage
    # floor, else the 2 empty minutes of 5 report INSUFFICIENT_HISTORY ahead of FEED_STALE
    settings = Settings(rolling_window_minutes=5, min_window_coverage=0.0)
    trades, quotes = random_stream(1, 20, gap_minutes=(12, 13))
    path = tmp_path / "gap.db"
    with Store(path, instrument_of(settings)) as store:
        store.append_ticks("trade", trades, "test")
        store.append_ticks("quote", quotes, "test")
    app = create_app(settings, path, speed=3000.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.mode_screen.snapshot is not None and app.mode_screen.snapshot.finished, "the end",
                     WARM_UP_TIMEOUT)
        log_text = _log_text(app)
        assert "FEED STALE" in log_text
        assert log_text.index("FEED STALE") < log_text.index("FEED_STALE -> READY")
        assert "replay finished: 20 minutes" in log_text
        assert "■ finished" in _status(app)


async def test_replay_jumps_a_15_month_gap_instead_of_waiting_it_out(tmp_path):
    # two 20-minute sessions 15 months apart; at 60x a waited-out gap would take 2.5 hours
    settings = Settings(rolling_window_minutes=5, min_window_coverage=0.0)
    start = 1_700_000_000_000 // 60000 * 60000
    first = random_stream(1, 20, start_ms=start)
    second = random_stream(2, 20, start_ms=start + 456 * 86_400_000)
    path = tmp_path / "two.db"
    with Store(path, instrument_of(settings)) as store:
        for part in (first, second):
            store.append_ticks("trade", part[0], "test")
            store.append_ticks("quote", part[1], "test")
    app = create_app(settings, path, speed=60.0 * 20)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.mode_screen.snapshot is not None and app.mode_screen.snapshot.finished, "the end",
                     WARM_UP_TIMEOUT)
        log_text = _log_text(app)
        assert "no data for 455 d" in log_text.replace("\n", " ") and "skipped to" in log_text
        assert "replay finished: 40 minutes" in log_text


def test_demo_session_is_generated_once_then_reused(tmp_path):
    settings = Settings()
    path = demo_database(settings, seed=3, days=0.02, directory=tmp_path)
    assert path == tmp_path / "demo-3.db"
    stamp = path.stat().st_mtime_ns
    assert demo_database(settings, seed=3, days=0.02, directory=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []  # no temporary left
    # a truncated session (e.g. an older, shorter demo) is regenerated
    assert demo_database(settings, seed=3, days=0.03, directory=tmp_path) == path
    assert path.stat().st_mtime_ns != stamp


# --- the console's screens, keys and modes ----------------------------------------------------


def test_status_bar_and_position_panel_render_as_styled_text():
    position = PositionView(position=1, entry_px=941_000, entry_ts=T_0358, stop=940_500, target2=1_884_001,
                            tag=1, realized=-0.5, fees=0.25, funding=0.0, day_pnl=-0.5,
                            kill_daily=False, kill_manual=True, bid=941_200, ask=941_201)
    status = render_status(mode="REPLAY", ts=T_0358 + 7_500, state="paused", speed=600.0, progress=0.5,
                           kill_manual=True, kill_daily=False, day_pnl=-0.5, ready=0)
    assert status.plain == "REPLAY 2026-01-05 03:58:07 UTC │ ⏸ PAUSED 600x 50% │ KILL ON │ day -0.50 │ READY"
    assert any(str(span.style) == "bold white on red" for span in status.spans)  # styled, not regex-coloured
    panel = render_position(position, last_px=941_200, ts=T_0358 + 12 * 60_000, tick_size=0.1, qty_step=0.001,
                            order_qty=0.001, max_hold_minutes=60)
    assert panel.plain.splitlines() == [
        "position  LONG 0.001",
        "entry     94100.0  breakin",
        "stop      94050.0",
        "target    94200.05",
        "open PnL  +0.02",
        "in trade  12m",
        "time stop 48m left",
        "realised  -0.50  fees 0.25",
        "day PnL   -0.50",
        "kill      KILL SWITCH ON: entries off",
    ]


def test_profile_marks_entry_stop_and_target_of_the_open_position():
    bins, vols = _hand_profile()
    lines = render_profile(bins, vols, k=2, poc2=210, val=102, vah=108, last_px=107, tick_size=0.5,
                           height=12, width=60, marks=(("ENTRY", 105), ("STOP", 98), ("TARGET", 0)))
    text = "\n".join(lines)
    assert "ENTRY 52.5" in text and "STOP 49.0" in text  # the stop is below the traded range: still shown
    assert "TARGET" not in text  # no target: not marked


def test_chart_draws_ranges_closes_and_the_value_area_band():
    bars = [(100, 104, 102, 99, 103, 5, True), (0, 0, 0, 99, 103, 0, True), (103, 108, 107, 99, 103, 5, True)]
    text = render_chart(bars, tick_size=1.0, height=10, width=20)
    lines = text.plain.splitlines()
    assert len(lines) == 10 and all(len(x) <= 20 for x in lines)
    assert sum(x.count("●") for x in lines) == 2  # one close per traded minute
    assert any("on grey23" in str(span.style) for span in text.spans)  # the band


def test_signals_log_line_names_the_action_and_its_reason_code():
    features = dict(ts_min=T_0358, ready=0)
    signal = dict(action=ACTION_HOLD, reason=REASON_NO_SETUP, acceptance_state=ACCEPT_BELOW_PENDING,
                  breakout_short=1)
    assert render_signal_line(features, signal).plain == "03:58 HOLD        NO_SETUP           BELOW (pending) breakout_short"


@pytest.mark.parametrize("screen", [ReplayScreen, LiveScreen, AttachScreen])
def test_help_and_palette_list_every_key_binding_of_each_mode(screen):
    names = {"plus": "+", "equals_sign": "=", "minus": "-", "question_mark": "?", "f1": "F1"}
    listed = " ".join(keys for keys, _ in screen.help_rows() + PbdApp.KEYS_HELP)
    ours = [cls for cls in screen.__mro__ if cls.__module__.startswith("pbdtui")]  # not Textual's focus keys
    bindings = [b for cls in ours for b in cls.__dict__.get("BINDINGS", [])] + PbdApp.BINDINGS
    for binding in bindings:
        for key in binding.key.split(","):
            assert names.get(key, key) in listed.replace(",", " ").split(), key
    # every screen key is in the command palette too, and each palette command is an action of the mode
    actions = {action for _, _, action in screen.commands()}
    assert {b.action for cls in ours for b in cls.__dict__.get("BINDINGS", [])} <= actions
    assert all(callable(getattr(screen, f"action_{action}", None)) for action in actions)
    assert ("e" in listed.split()) and (("p," in listed.split()) == (screen is ReplayScreen))
    assert binding_rows([("k", "kill"), ("?, F1", "help")]) == ["    k  kill", "?, F1  help"]


@pytest.mark.parametrize("size,shown,hidden", [
    ((80, 24), ("#status", "#profile", "#position", "#alerts"), ("#chart", "#signals", "#orders", "#features",
                                                                 "#fills")),
    ((200, 60), ("#status", "#profile", "#position", "#alerts", "#chart", "#signals", "#orders", "#features",
                 "#fills"), ()),
])
async def test_layout_puts_status_position_profile_alerts_first(session_db, size, shown, hidden):
    app = create_app(Settings(), session_db, speed=60.0)
    async with app.run_test(size=size) as pilot:
        await _until(pilot, lambda: _warmed_up(app), "the warm-up", WARM_UP_TIMEOUT)
        await _until(pilot, lambda: "POC " in "\n".join(app.query_one(ProfileView).lines()), "the profile drawn")
        for name in shown:
            region = app.query_one(name).region
            assert region.width > 0 and region.height > 0, name
        for name in hidden:
            assert app.query_one(name).region.width == 0, name
        assert app.query_one("#position").region.height >= 5
        await pilot.press("question_mark")
        await _until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        await pilot.press("escape")
        await _quit(pilot, app)
    assert app.return_code == 0


async def test_kill_switch_latches_and_reset_and_flatten_ask_first(session_db):
    app = create_app(Settings(), session_db, speed=60.0)
    driver = app.driver
    async with app.run_test(size=(80, 24)) as pilot:
        await _until(pilot, lambda: _warmed_up(app), "the warm-up", WARM_UP_TIMEOUT)
        await pilot.press("k")  # on at once
        await _until(pilot, lambda: app.mode_screen.kill_on, "the kill switch")
        await pilot.press("k")  # off asks; "n" keeps it on
        await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("n")
        await pilot.pause(0.3)
        assert driver.engine.position().kill_manual and not isinstance(app.screen, ConfirmScreen)
        await pilot.press("e")  # entries paused: at once, no question, separate from the kill switch
        await _until(pilot, lambda: driver.engine.position().entries_paused, "the entries pause in the engine")
        assert not isinstance(app.screen, ConfirmScreen)
        await _until(pilot, lambda: "PAUSED" in _status(app), "the pause in the 80-column status bar")
        await pilot.press("e")
        await _until(pilot, lambda: not driver.engine.position().entries_paused, "entries resumed")
        assert driver.engine.position().kill_manual  # the kill switch is untouched by the pause
        await pilot.press("f")  # flatten asks; escape cancels
        await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert app.mode_screen.flatten_requests == []
        await pilot.press("f", "y")
        await _until(pilot, lambda: app.mode_screen.flatten_requests, "the flatten")
        await pilot.press("f1")
        await _until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help on F1")
        text = "\n".join(str(w.render()) for w in app.screen.query("#keys"))
        assert "kill switch" in text and "seek" in text
        await pilot.press("escape", "q")
    assert app.return_code == 0


async def test_step_seek_and_next_trade_from_the_keyboard(session_db):
    app = create_app(Settings(), session_db, speed=1.0)
    driver = app.driver
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: _warmed_up(app), "the warm-up", WARM_UP_TIMEOUT)
        await pilot.press("p")
        await _until(pilot, lambda: driver.paused, "pause")
        await pilot.pause(0.2)
        before = len(app.mode_screen.minutes)
        await pilot.press("s")
        await _until(pilot, lambda: len(app.mode_screen.minutes) == before + 1 and not app.mode_screen.jumping, "one step")
        await pilot.press("s")
        await _until(pilot, lambda: len(app.mode_screen.minutes) == before + 2 and not app.mode_screen.jumping, "another step")
        target = driver.clock + 20 * 60_000
        await pilot.press("g")
        await _until(pilot, lambda: isinstance(app.screen, SeekScreen), "the seek question")
        await pilot.press(*"nonsense", "enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, SeekScreen)  # a bad time is said, not applied
        app.screen.query_one("#when").value = time.strftime("%Y-%m-%d %H:%M", time.gmtime(target / 1000))
        await pilot.press("enter")
        await _until(pilot, lambda: driver.clock == target and driver.paused and not app.mode_screen.jumping, "the seek", 60.0)
        # every minute closed on the way is in the log, one line each, in order
        assert list(app.mode_screen.minutes)[before:] == list(range(app.mode_screen.minutes[before], target - 60_000 + 1, 60_000))
        fills = driver.runner.fills
        await pilot.press("n")
        await _until(pilot, lambda: (driver.runner.fills > fills or driver.finished) and not app.mode_screen.jumping,
                     "the next trade", 120.0)
        assert driver.paused or driver.finished
        await _quit(pilot, app)
    assert app.return_code == 0


async def test_every_minute_reaches_the_signals_log_and_the_end_shows_the_report(session_db):
    # at full speed many minutes close per slice (240 in the warm-up alone): none may be lost
    app = create_app(Settings(), session_db, speed=100_000.0)
    async with app.run_test(size=(200, 60)) as pilot:
        await _until(pilot, lambda: app.mode_screen.report is not None, "the end", WARM_UP_TIMEOUT)
        await _until(pilot, lambda: isinstance(app.screen, SummaryScreen), "the summary")
        runner = app.driver.runner
        assert len(app.mode_screen.minutes) == runner.minutes == app.mode_screen.report["minutes"]
        assert list(app.mode_screen.minutes) == list(range(app.mode_screen.minutes[0], app.mode_screen.minutes[0] + 60_000 * runner.minutes, 60_000))
        assert len(app.query_one("#signals").lines) == min(runner.minutes, 1000)
        assert "net PnL" in app.mode_screen.report_text or "net" in app.mode_screen.report_text
        await pilot.press("escape")
        await _quit(pilot, app)
    assert app.return_code == 0


# --- market structure view (issue 12) ----------------------------------------------------------


def test_profile_splits_bars_by_side_and_draws_the_developing_poc_path():
    from pbdtui.render import BUY_CHAR, PATH_CHAR, SELL_CHAR

    bins = np.arange(100, 112)
    vols = np.array([1, 2, 3, 5, 8, 13, 8, 5, 3, 2, 1, 1])
    buys, sells = np.array([0, 2, 3, 5, 8, 13, 0, 0, 0, 0, 0, 0]), np.array([0, 0, 0, 0, 0, 0, 8, 5, 3, 2, 1, 1])
    lines = render_profile(bins, vols, k=2, poc2=210, val=104, vah=108, last_px=107, tick_size=0.5, height=12,
                           width=70, sides=(buys, sells), path=(201, 203, 211, 215))
    text = "\n".join(lines)
    # rows at and above 53.0 (bins 106..) traded only sells, rows below only buys; the lowest bin is ambiguous
    for line in lines:
        if line.startswith(("55.0", "54.0", "53.0")):
            assert SELL_CHAR in line and BUY_CHAR not in line
        if line.startswith(("52.0", "51.0")):
            assert BUY_CHAR in line and SELL_CHAR not in line
    # four path points in four columns, one per row they fall in: 100.5 (50.0), 101.5 (51.0), 105.5 and 107.5
    assert text.count(PATH_CHAR) == 4
    assert [line.split("│")[0].count(PATH_CHAR) for line in lines if "│" in line and line[:4].strip()] != []


async def test_structure_key_shows_naked_pocs_and_the_split_profile(session_db):
    app = create_app(Settings(), session_db, speed=60.0)
    async with app.run_test(size=(160, 48)) as pilot:
        await _until(pilot, lambda: _warmed_up(app), "the warm-up", WARM_UP_TIMEOUT)
        profile = app.query_one(ProfileView)
        assert "naked POCs" not in "\n".join(profile.lines())
        await pilot.press("m")
        await _until(pilot, lambda: bool(profile.dev_path), "a developing POC")
        text = "\n".join(profile.lines())
        assert "naked POCs:" in text and "▓" in text and "•" in text and "dPOC " in text
        assert app.mode_screen.snapshot.sides is not None and len(app.mode_screen.snapshot.sides[0]) == len(app.mode_screen.snapshot.bins)
        await pilot.press("m")
        assert "naked POCs" not in "\n".join(profile.lines())
        await pilot.press("q")
        if app.return_code is None:  # a position is open: quitting asks
            await pilot.press("y")
    assert app.return_code == 0


def test_orders_panel_lists_side_type_price_qty_status_and_age():
    from engine.engine import OrderView
    from pbdtui.render import render_orders

    ts = 1_767_571_200_000 + 30 * 60_000
    orders = [OrderView(1, "entry", 0, 1, "queued", ts - 60_000),
              OrderView(-1, "stop", 2 * 950_003, 1, "exchange", ts - 12 * 60_000),
              OrderView(-1, "target", 2 * 950_100 + 1, 1, "working", ts - 12 * 60_000)]
    text = render_orders(orders, ts=ts, tick_size=0.1, qty_step=0.001)
    lines = text.plain.splitlines()
    assert lines[0].split() == ["side", "type", "price", "qty", "status", "age"]
    assert lines[1].split() == ["BUY", "entry", "market", "0.001", "queued", "1m"]
    assert lines[2].split() == ["SELL", "stop", "95000.3", "0.001", "exchange", "12m"]
    assert lines[3].split() == ["SELL", "target", "95010.05", "0.001", "working", "12m"]
    assert any(span.style == "yellow" for span in text.spans)  # a queued order is not at the exchange yet
    assert render_orders((), ts=ts, tick_size=0.1, qty_step=0.001).plain == "no open orders"


def test_status_bar_names_the_network_of_the_live_modes():
    from pbdtui.render import network_name, render_status

    assert [network_name(u) for u in ("wss://stream.bybit.com/v5/public/linear",
                                      "wss://stream-testnet.bybit.com/v5/public/linear",
                                      "https://api-demo.bybit.com", "http://127.0.0.1:8123")] == [
        "mainnet", "testnet", "demo", "loopback"]
    text = render_status(mode="LIVE", ts=-1, state="live", speed=1, progress=0, kill_manual=False,
                         kill_daily=False, day_pnl=0.0, ready=None, network="mainnet", compact=True)
    assert text.plain.startswith("LIVE mainnet ") and len(text.plain) <= 80
    assert any(span.style == "bold red" for span in text.spans)  # real money stands out


def test_no_color_turns_the_console_monochrome_and_words_carry_the_states(session_db, monkeypatch):
    from textual.filter import Monochrome, NoColor

    from pbdtui.render import render_status

    monkeypatch.setenv("NO_COLOR", "1")
    app = create_app(Settings(), session_db)
    assert app.no_color and any(isinstance(f, (Monochrome, NoColor)) for f in app._filters)
    # without colour every state is still said in words
    text = render_status(mode="PAPER", ts=-1, state="live", speed=1, progress=0, kill_manual=True, kill_daily=True,
                         day_pnl=-1.0, ready=None, entries_paused=True)
    assert all(word in text.plain for word in ("KILL ON", "ENTRIES PAUSED", "LOSS LIMIT", "day -1.00"))
