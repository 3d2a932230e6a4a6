"""Live execution end to end: the loopback stream + the loopback REST venue, both real servers on 127.0.0.1.

A simulated session is served by the loopback public WebSocket as fast as
the client reads; the loopback REST venue fills market orders at that
stream's current quote and stamps them with its time line
(``market_clock``), holds the stops and take-profits and injects failures.
The daemon's parts are the real ones: ``LiveDriver`` (engine in external
mode), ``BybitExecution`` over pybit, ``LiveTrader`` and the control socket.
Waits are on the daemon's own events (``Events.wait_for``), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.adapters.bybit.rest import BybitRest
from engine.adapters.bybit.ws import FeedConfig
from engine.config import ConfigError, Settings
from engine.engine import client_prefix
from engine.execution.bybit import BybitExecution
from engine.execution.types import INTENT_ENTER, Intent
from engine.runtime.control import ControlClient, ControlError, ControlServer, socket_path
from engine.runtime.events import (
    Alert,
    EntriesPausedChanged,
    Filled,
    IntentIssued,
    KillSwitchChanged,
    MinuteClosed,
)
from engine.runtime.live import LiveDriver
from engine.runtime.trading import LiveTrader
from engine.store import Store, instrument_of
from engine.synth import synthesize
from engine.types import REASON_ENTRIES_PAUSED, SIDE_BUY, SIDE_SELL
from loopback.bybit_rest import BybitRestVenue
from loopback.bybit_ws import BybitPublicVenue
from loopback.source import StoreSource
from pbdtui.headless import _control_handler, _Recent

KEY = "lbk-live-KEY-77a1"
SECRET = "lbk-live-SECRET-9Qx2vT4m"
START = 1_767_571_200_000  # 2026-01-05 00:00 UTC
SETTINGS = Settings().replace(rolling_window_minutes=10, min_window_coverage=0.0, cooldown_minutes=0,
                              max_hold_minutes=3, qimb_entry_min=0.0, qimb_breakout_min=0.0, accept_outside_k=2,
                              max_daily_loss=1e9)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("live_trading") / "src.db"
    with Store(path, instrument_of(SETTINGS)) as store:
        synthesize(store, SETTINGS, days=24 / 1440, seed=21, start_ms=START)
    return path


@pytest.fixture(autouse=True)
def _run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


class Events(list):
    """The daemon's sink: keeps every event; ``wait_for`` wakes on each new one."""

    def __init__(self, printer=None):
        super().__init__()
        self._changed: asyncio.Event | None = None
        self.printer = printer

    def __call__(self, event):
        self.append(event)
        if self.printer is not None:
            self.printer(event)
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, predicate, timeout=30.0):
        self._changed = self._changed or asyncio.Event()
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting; last events: {self[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass  # re-check conditions that change without an event (the venue's state)

    def of(self, cls):
        return [e for e in self if isinstance(e, cls)]

    def alerts(self, kind=None):
        return [e for e in self.of(Alert) if kind is None or e.kind == kind]


class Session:
    """One daemon (driver + backend + trader + control socket) on the two loopback venues."""

    def __init__(self, source_db, db, rest_venue=None, speed=0.0, settings=SETTINGS, rest_timeout=2.0,
                 serve_from=None, serve_until=None):
        self.source_db, self.db, self.speed, self.settings = source_db, db, speed, settings
        self.serve_from, self.serve_until = serve_from, serve_until
        if serve_from is not None and not Path(db).exists():
            _prefill(db, source_db, serve_from)
        self.rest_venue = rest_venue
        self.rest_timeout = rest_timeout
        self.events = Events()

    async def __aenter__(self):
        source = StoreSource(self.source_db, self.serve_from, self.serve_until)
        self.ws = BybitPublicVenue(source, speed=self.speed, record=False, seed=3)
        await self.ws.start()
        own = self.rest_venue is None
        if own:
            self.rest_venue = BybitRestVenue(api_key=KEY, api_secret=SECRET).start()
        self.rest_venue._quote_source = self.ws.quote
        self.rest_venue._market_clock = self.ws.market_ms
        self._own_rest = own
        config = FeedConfig(url=self.ws.url, stale_after=2.0, backoff_initial=0.01, backoff_max=0.05, seed=1,
                            grace_ms=200, ping_interval=0.2, flush_interval=0.01)
        recent = _Recent(self.events)
        self.driver = LiveDriver(self.settings, str(self.db), config, recent, mode="external", run_id="live-test",
                                 tick_interval=0.05, close_grace_ms=1000, status_interval=0.5, commit_interval=0.2,
                                 client_prefix=client_prefix(int(time.time() * 1000)))
        rest = BybitRest(self.rest_venue.url, KEY, SECRET, timeout=self.rest_timeout, min_backoff_s=0.01,
                         max_backoff_s=0.5)
        engine = self.driver.engine
        tick = instrument_of(self.settings).tick_size

        def mid():
            p = engine.position()
            return (p.bid + p.ask) / 2 * tick if p.bid > 0 else None

        self.backend = BybitExecution(rest, instrument_of(self.settings), price_source=mid,
                                      clock=self.driver.clock.now_ms, flatten_delay_s=0.01, unknown_grace_ms=5_000)
        self.trader = LiveTrader(self.driver, self.backend, target=rest.url, poll_interval=0.05,
                                 flatten_pause=0.05)
        self.control = ControlServer(socket_path(self.db), _control_handler(self.settings, self.driver,
                                                                            self.trader, recent),
                                     info={"db": str(self.db), "rest_url": rest.url})
        await self.control.start()
        recent.control = self.control
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.driver.run(self.stop))
        return self

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.wait_for(self.task, 60)
        await self.control.stop()
        await self.ws.stop()
        if self._own_rest:
            self.rest_venue.stop()

    async def ask(self, cmd, **args):
        return await asyncio.to_thread(ControlClient(socket_path(self.db), timeout=60).request, cmd, **args)

    def venue_entries(self):
        return [o for o in self.rest_venue.orders() if not o["reduceOnly"] and not o["stopOrderType"]]

    def trade_execs(self):
        return [e for e in self.rest_venue.executions() if e["execType"] == "Trade"]

    def stored_fills(self):
        """trades_exec of this run (committed: the recorder is closed once the session has ended)."""
        with Store(self.db, readonly=True) as st:
            return st.fetch("SELECT trade_id, side, qty, exit_reason FROM trades_exec WHERE run_id='live-test' "
                            "ORDER BY trade_id")


def _prefill(db, source_db, cut):
    """``db`` holds the source's ticks before ``cut``: the daemon warm-starts from them (fast), the stream goes on."""
    with Store(source_db, readonly=True) as src, Store(db, instrument_of(SETTINGS)) as dst:
        for kind in ("trade", "quote"):
            rows = src.load_ticks(kind)
            dst.append_ticks(kind, rows[rows["ts"] < cut], "copy")


def _minute(n):
    return START + n * 60_000


def _venue_lots(venue):
    return round(venue.position()[0] / 0.001)


# --- a session trades on the exchange ---------------------------------------------------------------


async def test_session_enters_with_its_stop_on_the_exchange_exits_and_records_every_fill_once(source_db, tmp_path):
    settings = SETTINGS.replace(feed_stale_halt_ms=3000)
    async with Session(source_db, tmp_path / "live.db", serve_from=_minute(10), settings=settings) as s:
        subscription = asyncio.to_thread(lambda: [e for _, e in zip(range(3), ControlClient(
            socket_path(s.db)).events(timeout=30), strict=False)])
        await asyncio.wait_for(s.ws.finished.wait(), 120)
        await s.events.wait_for(lambda: len(s.trade_execs()) >= 4 and s.trader.counters["fills"]
                                == len(s.trade_execs()) and not s.trader._queue)
        status = (await s.ask("status"))["status"]
        snapshot = await s.ask("snapshot")
        # the stream has ended: the feed goes stale, which latches the kill switch
        await s.events.wait_for(lambda: "feed_stale" in s.trader.kill_reasons, timeout=20)
        streamed = await subscription
    entries = s.venue_entries()
    assert entries, "the session should enter"
    # every entry carried its stop: the exchange held a stop from the instant the position existed
    assert all(o["stopLoss"] for o in entries), [o["stopLoss"] for o in entries]
    exits = [e for e in s.trade_execs() if e["closedSize"] not in ("", "0")]
    assert exits, "and exit"
    by_exchange = [e for e in exits if e["stopOrderType"] in ("TakeProfit", "StopLoss")]
    assert by_exchange, "an exit by the exchange's own take-profit or stop"
    fills = s.stored_fills()
    assert len(fills) == len(s.trade_execs())  # each execution recorded once
    signed = sum(q if side == "BUY" else -q for _, side, q, _ in fills)
    assert round(signed / 0.001) == _venue_lots(s.rest_venue) == s.driver.engine.position().qty
    assert status["mode"] == "LIVE" and status["last_reconciliation"]["matched"]
    assert snapshot["settings"]["symbol"] == "BTCUSDT" and snapshot["fills"]
    assert {e["event"] for e in streamed} <= {"MinuteClosed", "LiveStatus", "FeedChanged", "Alert", "Filled",
                                              "IntentIssued", "ReadinessChanged", "Ticker", "KillSwitchChanged"}
    assert len(streamed) == 3
    assert not s.events.alerts("mismatch"), s.events.alerts("mismatch")
    assert any(isinstance(e, KillSwitchChanged) and e.on for e in s.events)


# --- kill switch ------------------------------------------------------------------------------------


async def test_kill_switch_from_another_shell_blocks_entries_until_the_operator_resets_it(source_db, tmp_path):
    async with Session(source_db, tmp_path / "kill.db", serve_from=_minute(10), serve_until=_minute(13)) as s:
        await s.events.wait_for(lambda: s.trader.started)
        answer = await s.ask("kill", reason="test")
        assert answer["kill"] == {"on": True, "reasons": {"operator": "test"}}
        await asyncio.wait_for(s.ws.finished.wait(), 60)
        await s.events.wait_for(lambda: s.driver.engine.bars_closed >= 12)
        assert s.venue_entries() == []  # the entry due at minute 11 was not taken
        reset = await s.ask("reset-kill")
        status = (await s.ask("status"))["status"]
    assert reset == {"ok": True, "cleared": ["operator"], "mismatch": False}
    assert status["kill"] == {"on": False, "reasons": {}}


async def test_entries_pause_from_another_shell_withholds_entries_without_the_kill_switch(source_db, tmp_path):
    async with Session(source_db, tmp_path / "pause.db", serve_from=_minute(10), serve_until=_minute(13)) as s:
        await s.events.wait_for(lambda: s.trader.started)
        assert (await s.ask("pause"))["entries_paused"] is True
        await asyncio.wait_for(s.ws.finished.wait(), 60)
        await s.events.wait_for(lambda: s.driver.engine.bars_closed >= 12)
        assert s.venue_entries() == []  # the entry due at minute 11 was not taken
        status = (await s.ask("status"))["status"]
        resumed = await s.ask("resume")
    assert status["entries_paused"] and status["kill"] == {"on": False, "reasons": {}}
    reasons = [m.signal["reason"] for m in s.events.of(MinuteClosed) if m.features["ts_min"] >= _minute(10)]
    assert REASON_ENTRIES_PAUSED in reasons
    assert resumed == {"ok": True, "entries_paused": False} and not s.driver.engine.position().entries_paused
    assert [e.on for e in s.events.of(EntriesPausedChanged)] == [True, False]


async def test_open_orders_list_the_stop_the_exchange_holds_on_the_position(source_db, tmp_path):
    async with Session(source_db, tmp_path / "orders.db", speed=30.0, serve_from=_minute(10)) as s:
        await s.events.wait_for(lambda: s.trader.venue is not None and s.trader.venue.qty != 0, 120)
        venue = s.trader.venue
        orders = {o.kind: o for o in s.trader.orders()}
        status = s.trader.status()
    stop = orders["stop"]
    assert (stop.px2, stop.qty, stop.side, stop.status) == (2 * venue.stop, abs(venue.qty),
                                                            SIDE_SELL if venue.qty > 0 else SIDE_BUY, "exchange")
    assert {"side": stop.side, "kind": "stop", "px2": stop.px2, "qty": stop.qty, "status": "exchange",
            "ts": stop.ts} in status["orders"]


async def test_a_position_changed_behind_the_daemon_is_a_mismatch_that_latches_the_kill_switch(source_db, tmp_path):
    async with Session(source_db, tmp_path / "mm.db", serve_from=_minute(10), serve_until=_minute(11)) as s:
        await s.events.wait_for(lambda: s.trader.started and s.trader.counters["polls"] > 2)
        s.rest_venue.force_position(7)
        await s.events.wait_for(lambda: s.events.alerts("mismatch"))
        assert s.driver.engine.position().mismatch and "mismatch" in s.trader.kill_reasons
        s.rest_venue.force_position(0)  # the operator closed it by hand
        await s.events.wait_for(lambda: s.events.alerts("reconciled"))
        status = (await s.ask("status"))["status"]
        assert not status["mismatch"] and status["kill"]["on"]  # resolved, but the kill switch stays latched
        await s.ask("reset-kill")
        assert not s.trader.kill_reasons


def test_daily_loss_latches_the_kill_switch(tmp_path):
    from engine.kernels.state import SI_KILL_DAILY

    driver = LiveDriver(SETTINGS, str(tmp_path / "d.db"), FeedConfig(url="ws://127.0.0.1:1/x"), Events(),
                        mode="external")
    trader = LiveTrader(driver, backend=None)
    trader.started = True
    driver.engine.state.si[SI_KILL_DAILY] = 1
    driver._on_event(Filled(fill={}))
    assert "daily_loss" in trader.kill_reasons and driver.engine.position().kill_manual
    driver.engine.state.si[SI_KILL_DAILY] = 0  # a new day: the engine's own flag clears, the latch does not
    driver._on_event(Filled(fill={}))
    assert trader.kill_reasons and driver.engine.position().kill_manual


# --- restart with an open position, flatten ---------------------------------------------------------


def _first_quote(source_db, at):
    with Store(source_db, readonly=True) as st:
        q = st.load_ticks("quote")
    q = q[q["ts"] >= at][0]
    return q["bid_px"] / 10, q["ask_px"] / 10


@pytest.mark.parametrize("side", [SIDE_BUY, SIDE_SELL], ids=["long", "short"])
async def test_restart_with_an_open_position_adopts_it_and_flatten_ends_flat(source_db, tmp_path, side, monkeypatch,
                                                                              capsys):
    monkeypatch.setenv("BYBIT_API_KEY", KEY)
    monkeypatch.setenv("BYBIT_API_SECRET", SECRET)
    bid, ask = _first_quote(source_db, _minute(10))
    with BybitRestVenue(api_key=KEY, api_secret=SECRET) as venue:
        venue.set_quote(bid, ask)
        # the previous run opened a position with its stop and died
        before = BybitExecution(BybitRest(venue.url, KEY, SECRET), instrument_of(SETTINGS))
        assert before.start()
        stop = (bid - 300) if side == SIDE_BUY else (ask + 300)
        before.submit(Intent(INTENT_ENTER, side, 20, 0, "prev-run-1", stop=round(stop * 10)))
        assert _venue_lots(venue) == (20 if side == SIDE_BUY else -20)
        async with Session(source_db, tmp_path / "restart.db", rest_venue=venue, serve_from=_minute(10),
                           serve_until=_minute(12)) as s:
            await s.events.wait_for(lambda: s.trader.started and s.driver.clock.newest > 0)
            adopted = s.events.alerts("adopted")
            assert adopted and s.driver.engine.position().qty == _venue_lots(venue), s.events.alerts()
            assert s.driver.engine.position().stop == round(stop * 10)  # the exchange's stop, adopted
            assert not s.driver.engine.position().mismatch
            if side == SIDE_BUY:
                answer = await s.ask("flatten")
                assert answer["flat"] is True, ("DIAG", s.backend._floor, s.backend._since, s.driver.clock.now_ms(),
                                                s.ws.market_ms(), [(e["execType"], e.get("execTime"), e.get("orderLinkId")) for e in venue.executions()],
                                                [a.text for a in s.events.alerts()], list(s.trader.reconciliations)[-2:])
                assert answer["status"]["kill"]["on"]  # flatten latches the kill switch
            else:  # as an operator runs it from another shell: the daemon is found in its run directory
                from pbdtui.cli import main

                assert await asyncio.to_thread(main, ["flatten"]) == 0
                assert await asyncio.to_thread(main, ["status"]) == 0
                shown = capsys.readouterr().out
                assert "through the running daemon" in shown and "FLAT confirmed" in shown
                assert "exchange position: FLAT" in shown and "kill switch: ON (flatten" in shown
                assert "last reconciliation: " in shown and "matched" in shown
            assert _venue_lots(venue) == 0 and s.driver.engine.position().qty == 0
            assert not [o for o in venue.orders() if o["orderStatus"] in ("New", "Untriggered")]
        fills = s.stored_fills()
    from engine.types import EXIT_FLATTEN, EXIT_NAMES, EXIT_RECONCILE

    reasons = [r for *_, r in fills]
    assert EXIT_NAMES[EXIT_RECONCILE] in reasons and EXIT_NAMES[EXIT_FLATTEN] in reasons, reasons


async def test_a_flip_sends_its_entry_only_after_the_exit_filled(source_db, tmp_path):
    bid, ask = _first_quote(source_db, _minute(10))
    with BybitRestVenue(api_key=KEY, api_secret=SECRET) as venue:
        venue.set_quote(bid, ask)
        venue.force_position(20, ask)
        async with Session(source_db, tmp_path / "flip.db", rest_venue=venue, serve_from=_minute(10),
                           serve_until=_minute(11)) as s:
            # the feed is on: the venue's fills carry the stream's time line, as the backend reads them
            await s.events.wait_for(lambda: s.trader.started and s.driver.clock.newest > 0
                                    and s.driver.engine.position().qty == 20)
            ts = s.driver.engine.last_event_ts
            short_stop = round((ask + 500) * 10)
            # what the kernel emits for a flip: exit the long, then enter short
            s.driver._on_event(IntentIssued(Intent("exit", SIDE_SELL, 20, ts, "flip-x")))
            s.driver._on_event(IntentIssued(Intent(INTENT_ENTER, SIDE_SELL, 10, ts, "flip-e", stop=short_stop)))
            await s.events.wait_for(lambda: s.driver.engine.position().qty == -10)
            creates = [o["orderLinkId"] for o in sorted(venue.orders(), key=lambda o: int(o["createdTime"]))
                       if o["orderLinkId"].startswith("flip-")]
            refusals = [a for a in s.events.alerts() if a.kind == "refused"]
    assert creates == ["flip-x", "flip-e"] and not refusals  # the entry met a flat exchange position
    assert _venue_lots(venue) == -10 and venue.position()[2] == pytest.approx(short_stop / 10)


def test_flatten_without_a_daemon_goes_straight_to_rest_and_exits_0_once_flat(tmp_path, monkeypatch, capsys):
    from pbdtui.cli import main

    monkeypatch.setenv("BYBIT_API_KEY", KEY)
    monkeypatch.setenv("BYBIT_API_SECRET", SECRET)
    with BybitRestVenue(api_key=KEY, api_secret=SECRET) as venue:
        venue.set_quote(60_000.0, 60_000.1)
        venue.force_position(-15, 60_010.0)
        assert main(["status", "--rest-url", venue.url]) == 0
        shown = capsys.readouterr().out
        assert "SHORT 0.015" in shown and "daemon: none running" in shown
        assert main(["flatten", "--rest-url", venue.url]) == 0
        assert _venue_lots(venue) == 0
        assert "FLAT confirmed" in capsys.readouterr().out
        venue.inject("reject", path="/v5/position/list", count=100)
        venue.force_position(5)
        assert main(["flatten", "--rest-url", venue.url]) == 1  # never confirmed: not 0


# --- injected REST failures on the daemon's first entry ---------------------------------------------


FAULTS = {
    "timeout_that_executed": dict(kind="timeout", hold=1.0),
    "http_503_not_executed": dict(kind="5xx", execute=False),
    "http_503_executed": dict(kind="5xx", execute=True),
    "rate_limit_10006": dict(kind="rate_limit", reset_ms=50),
    "timestamp_10002": dict(kind="timestamp"),
    "insufficient_balance_110007": dict(kind="insufficient_balance"),
    "duplicate_110072": dict(kind="duplicate"),
    "rejected": dict(kind="reject", code=10001, msg="params error"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_injected_failure_on_an_entry_is_handled_without_doubling_or_losing_a_fill(source_db, tmp_path,
                                                                                         fault):
    with BybitRestVenue(api_key=KEY, api_secret=SECRET) as venue:
        venue.inject(path="/v5/order/create", **FAULTS[fault])
        async with Session(source_db, tmp_path / "f.db", rest_venue=venue, serve_from=_minute(10),
                           serve_until=_minute(12), rest_timeout=0.5) as s:
            engine = s.driver.engine
            # the first entry is decided at the close of minute 10; wait until its outcome is known
            await s.events.wait_for(lambda: s.trader.counters["sent"] >= 1 and not engine.outstanding()
                                    and s.trader.counters["fills"] == len(s.trade_execs()), timeout=60)
            link = next(e.intent.client_id for e in s.events if type(e).__name__ == "IntentIssued")
            assert len([o for o in venue.orders() if o["orderLinkId"] == link]) <= 1  # never doubled
            assert engine.position().qty == _venue_lots(venue)
            assert not engine.position().mismatch
            kinds = {a.kind for a in s.events.alerts()}
            assert s.trader.reconciliations[0]["why"] == "start"
            if fault not in ("insufficient_balance_110007", "rejected", "duplicate_110072"):
                # every REST error is followed by a reconciliation
                await s.events.wait_for(lambda: any("REST error" in r["why"] for r in s.trader.reconciliations))
                assert s.trader.reconciliations[-1]["matched"]
        assert len(s.stored_fills()) == len(s.trade_execs())  # none lost, none twice
    expected = {"timeout_that_executed": "timeout", "http_503_not_executed": "http", "http_503_executed": "http",
                "rate_limit_10006": "rate_limited", "timestamp_10002": "timestamp",
                "insufficient_balance_110007": "insufficient_balance", "duplicate_110072": "duplicate_order",
                "rejected": "rejected"}[fault]
    assert expected in kinds, kinds
    if fault in ("insufficient_balance_110007", "rejected"):
        assert [o for o in venue.orders() if o["orderLinkId"] == link] == []  # refused: never on the book
    else:
        assert len([o for o in venue.orders() if o["orderLinkId"] == link]) == 1  # placed once


# --- control socket ---------------------------------------------------------------------------------


async def test_control_socket_is_owner_only_and_refuses_another_uid(tmp_path):
    async def handler(request):
        return {"echo": request["cmd"]}

    path = socket_path(tmp_path / "x.db")
    server = await ControlServer(path, handler).start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        answer = await asyncio.to_thread(ControlClient(path).request, "status", id=7)
        assert answer == {"ok": True, "echo": "status", "id": 7}
        def raw(line):
            import socket

            with socket.socket(socket.AF_UNIX) as sk:
                sk.connect(str(path))
                sk.sendall(line)
                return sk.makefile("rb").readline()

        assert b"bad request" in await asyncio.to_thread(raw, b"not json\n")
        with pytest.raises(ControlError, match="already running"):
            await ControlServer(path, handler).start()
        server.allowed_uid = os.getuid() + 1  # as if the peer were another user
        with pytest.raises(ControlError, match="refused"):
            await asyncio.to_thread(ControlClient(path).request, "status")
        assert server.refused >= 1  # (the "already running" probe may be served after the uid change too)
    finally:
        await server.stop()
    assert not path.exists()


# --- safety -----------------------------------------------------------------------------------------


class _Terminal:
    def __init__(self, text):
        self.text = text

    def isatty(self):
        return True

    def readline(self):
        return self.text + "\n"

    def write(self, s):
        return len(s)

    def flush(self):
        pass


def test_mainnet_needs_a_typed_confirmation_on_a_terminal(monkeypatch, tmp_path, capsys):
    from pbdtui.cli import _confirm_mainnet, main

    with pytest.raises(ConfigError, match="no terminal"):
        _confirm_mainnet("BTCUSDT", stdin=open(os.devnull), out=_Terminal(""))
    with pytest.raises(ConfigError, match="not given"):
        _confirm_mainnet("BTCUSDT", stdin=_Terminal("yes"), out=_Terminal(""))
    _confirm_mainnet("BTCUSDT", stdin=_Terminal("TRADE MAINNET BTCUSDT"), out=_Terminal(""))
    monkeypatch.setenv("BYBIT_API_KEY", KEY)
    monkeypatch.setenv("BYBIT_API_SECRET", SECRET)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    assert main(["run", "--db", str(tmp_path / "m.db"), "--live", "--mainnet"]) == 2
    assert "typed confirmation" in capsys.readouterr().err
    assert main(["run", "--db", str(tmp_path / "m.db"), "--live", "--rest-url", "https://api.bybit.com"]) == 2
    assert "pass --mainnet" in capsys.readouterr().err
    monkeypatch.delenv("BYBIT_API_SECRET")
    assert main(["run", "--db", str(tmp_path / "m.db"), "--live"]) == 2
    assert "BYBIT_API_SECRET" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()


def test_the_secret_never_appears_in_output_logs_tracebacks_or_the_database(source_db, tmp_path):
    """``pbdtui -v run --live`` as a process on the two loopback venues; then ``status`` with a wrong secret."""
    db = tmp_path / "secret.db"
    _prefill(db, source_db, _minute(10))
    loop = asyncio.new_event_loop()
    ws = BybitPublicVenue(StoreSource(source_db, _minute(10), _minute(12)), speed=0, seed=3)
    url = loop.run_until_complete(ws.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    env = {**os.environ, "BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET, "PYTHONPATH": str(ROOT),
           "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    try:
        with BybitRestVenue(api_key=KEY, api_secret=SECRET, quote=ws.quote, market_clock=ws.market_ms) as venue:
            run = subprocess.run([sys.executable, "-m", "pbdtui.cli", "-v", "run", "--db", str(db), "--live",
                                  "--ws-url", url, "--rest-url", venue.url, "--duration", "2"],
                                 env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
            wrong = subprocess.run([sys.executable, "-m", "pbdtui.cli", "-v", "status", "--rest-url", venue.url],
                                   env={**env, "BYBIT_API_SECRET": SECRET + "x"}, capture_output=True, text=True,
                                   timeout=60, cwd=tmp_path)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert run.returncode == 0, run.stderr[-3000:]
    import re

    # the status line: LIVE, the position, the exchange's position and stop, the kill switch, the reconciliation
    assert re.search(r"LIVE (FLAT|LONG|SHORT).* exch .* \| (kill off|KILL \(.*\)) \| recon \d\d:\d\d:\d\d ok",
                     run.stdout), run.stdout[-2000:]
    assert "stopped:" in run.stdout
    assert wrong.returncode != 0
    blobs = [run.stdout, run.stderr, wrong.stdout, wrong.stderr]
    blobs += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    for blob in blobs:
        assert SECRET not in blob
