"""Headless commands: the runtime with status lines instead of a screen.

``pbdtui collect`` records Bybit's public stream and computes features
live; it prints a status line every few seconds (minute, last price, lag,
reconnects, gaps) and every alert and feed event as it happens, and stops
cleanly on Ctrl-C, SIGTERM or after ``--duration``, committing what it
received. ``pbdtui run --paper`` adds paper trading; ``pbdtui run --live``
(``run_live``) trades through the Bybit backend with a control socket
(``engine.runtime.control``); ``pbdtui flatten``/``status`` (``flatten_once``,
``status_once``) go through a running daemon's socket, else straight to REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from typing import Any, TextIO

from engine.adapters.bybit.ws import FeedConfig, resolve_url
from engine.records import units_of
from engine.runtime.events import (
    Alert,
    EntriesPausedChanged,
    Filled,
    IntentIssued,
    KillSwitchChanged,
    ReadinessChanged,
)
from engine.runtime.live import FeedChanged, LiveDriver, LiveStatus
from engine.types import REASON_NAMES

_QUIET_FEED = {"malformed", "book_reset"}  # counted in the status line, not printed one by one


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ms / 1000)) if ts_ms > 0 else "--"


def _execution_text(settings: Any, x: dict[str, Any]) -> str:
    """The live part of the status line: LIVE, position, exchange stop, kill switch, last reconciliation."""
    u = units_of(settings)
    qty = x["qty"]
    side = "LONG" if qty > 0 else ("SHORT" if qty < 0 else "FLAT")
    held = f" {u.qty(abs(qty)):g} @ {u.px(x['entry_px']):.{u.px_dec}f}" if qty else ""
    venue = x.get("venue")
    if venue is None:
        stop = "exch --"
    else:
        stop = f"exch {u.qty(venue['qty']):+g}" + (f" stop {u.px(venue['stop']):.{u.px_dec}f}" if venue["stop"]
                                                    else (" NO STOP" if venue["qty"] else ""))
    kill = x["kill"]
    kill_text = f"KILL ({', '.join(kill['reasons'])})" if kill["on"] else "kill off"
    rec = x.get("last_reconciliation")
    rec_text = "recon --" if rec is None else (
        f"recon {time.strftime('%H:%M:%S', time.gmtime(rec['wall_ms'] / 1000))} "
        + ("ok" if rec["matched"] else f"MISMATCH {rec['local_qty']}/{rec['venue_qty']}"))
    if x.get("mismatch"):
        rec_text += " (entries blocked)"
    return (f"LIVE {side}{held} {stop} | {kill_text} | {rec_text} | realized {x['realized']:+.4f} "
            f"day {x['day_pnl']:+.4f} | ")


def status_line(settings: Any, s: LiveStatus) -> str:
    """One line of health figures."""
    u = units_of(settings)
    lags = sorted(s.close_lag_ms)
    close = f"{lags[len(lags) // 2] / 1000:.2f}/{lags[-1] / 1000:.2f} s" if lags else "--"
    feed = s.feed
    ready = REASON_NAMES.get(s.ready, "--") if s.ready >= 0 else "--"
    if s.ready == 1 and s.warmup_left:
        ready = f"WARMUP ({s.warmup_left} min left)"
    price = f"{u.px(s.last_px):.{u.px_dec}f}" if s.last_px > 0 else "--"
    lag = f"{s.lag_ms} ms" if abs(s.lag_ms) < 86_400_000 else "n/a (old data)"
    pos = ""
    if s.execution is not None:
        pos = _execution_text(settings, s.execution)
    elif s.position is not None:
        p = s.position
        side = {1: "LONG", -1: "SHORT"}.get(p.position, "FLAT")
        held = f" {u.qty(abs(p.qty)):g} @ {u.px(p.entry_px):.{u.px_dec}f} stop {u.px(p.stop):.{u.px_dec}f}" \
            if p.position else ""
        kill = " KILL" if p.kill_manual or p.kill_daily else ""
        pos = f"PAPER {side}{held} realized {p.realized:+.4f} day {p.day_pnl:+.4f}{kill} | "
    return (f"{_utc(s.wall_ms)} UTC | {pos}minute {_utc(s.minute)} | last {price} | {ready} | lag {lag} | "
            f"close lag p50/max {close} | reconnects {feed.get('reconnects', 0)} | gaps {feed.get('gaps', 0)} | "
            f"malformed {sum(feed.get('malformed', {}).values())} | dup {feed.get('duplicates', 0)} | "
            f"late {s.late_events} | recorded {s.recorder.get('trades', 0)} trades "
            f"{s.recorder.get('quotes', 0)} quotes {s.recorder.get('minutes', 0)} minutes")


class _Printer:
    def __init__(self, settings: Any, out: TextIO, label: str = "PAPER"):
        self.settings = settings
        self.out = out
        self.label = label

    def __call__(self, event: Any) -> None:
        text = None
        if isinstance(event, LiveStatus):
            text = status_line(self.settings, event)
        elif isinstance(event, Alert):
            text = f"{_utc(event.ts)} {event.severity.upper()}: {event.text}"
        elif isinstance(event, ReadinessChanged) and event.before >= 0:
            text = f"{_utc(event.ts_min + 60_000)} readiness {REASON_NAMES.get(event.before)} -> " \
                   f"{REASON_NAMES.get(event.after)}"
        elif isinstance(event, Filled):
            f = event.fill
            u = units_of(self.settings)
            side = "BUY" if f["side"] > 0 else "SELL"
            what = "ENTRY" if f["opening"] else "EXIT"
            pnl = "" if f["opening"] else f" pnl {f['pnl_realized']:+.4f}"
            text = f"{_utc(f['ts_fill'])} {self.label} {what} {side} {u.qty(f['qty']):g} @ {u.px(f['px']):.{u.px_dec}f}{pnl}"
        elif isinstance(event, KillSwitchChanged):
            text = f"{_utc(event.ts)} KILL SWITCH {'ON' if event.on else 'OFF'}"
        elif isinstance(event, EntriesPausedChanged):
            text = f"{_utc(event.ts)} ENTRIES {'PAUSED' if event.on else 'RESUMED'} by the operator"
        elif isinstance(event, IntentIssued):
            i = event.intent
            text = f"{_utc(i.decision_ts)} intent {i.kind} {'BUY' if i.side > 0 else 'SELL'} {i.qty} lots ({i.client_id})"
        elif isinstance(event, FeedChanged) and event.status.kind not in _QUIET_FEED:
            st = event.status
            text = f"{_utc(st.ts)} feed {st.kind}: {st.detail}"
        if text is not None:
            print(text, file=self.out, flush=True)


def run_collect(settings: Any, db: str, ws_url: str | None, duration: float | None, out: TextIO = sys.stdout,
                feed_config: FeedConfig | None = None, status_interval: float = 5.0, trading: bool = False) -> int:
    """``pbdtui collect`` (and ``pbdtui run --paper`` with ``trading``): record, compute, paper-trade."""
    url = resolve_url(ws_url or settings.ws_url)
    config = feed_config or FeedConfig(url=url)
    if feed_config is not None and ws_url:
        config = FeedConfig(**{**config.__dict__, "url": url})
    printer = _Printer(settings, out)
    run_id = f"paper-{int(time.time())}" if trading else "collect"
    driver = LiveDriver(settings, db, config, printer, trading=trading, status_interval=status_interval,
                        run_id=run_id)
    what = f"paper trading {settings.symbol} (run {run_id})" if trading else f"collecting {settings.symbol}"
    print(f"{what} from {url} into {db}"
          + (f" for {duration:g} s" if duration else " (Ctrl-C stops)"), file=out, flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        await driver.run(stop, duration)

    asyncio.run(main())
    rec = driver.recorder.counters
    fills = f", {rec['fills']} paper fills" if trading else ""
    print(f"stopped: recorded {rec['trades']} trades, {rec['quotes']} quotes, {rec['minutes']} minutes{fills} "
          f"into {db}", file=out, flush=True)
    return 0


# --- live trading ---------------------------------------------------------------------------------


class _Recent:
    """The sink of a live daemon: printed, published to control subscribers, the newest kept for snapshots."""

    def __init__(self, printer: _Printer):
        self.printer = printer
        self.control: Any = None
        self.alerts: deque[dict[str, Any]] = deque(maxlen=50)
        self.fills: deque[dict[str, Any]] = deque(maxlen=50)
        self.minute: Any = None

    def __call__(self, event: Any) -> None:
        from engine.runtime.control import to_json
        from engine.runtime.events import MinuteClosed

        if isinstance(event, Alert):
            self.alerts.append(to_json(event))
        elif isinstance(event, Filled):
            self.fills.append(to_json(event.fill))
        elif isinstance(event, MinuteClosed):
            self.minute = event
        self.printer(event)
        if self.control is not None:
            self.control.publish(event)


def _control_handler(settings: Any, driver: Any, trader: Any, recent: _Recent) -> Any:
    from engine.runtime.control import to_json

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "ping":
            return {"pid": os.getpid()}
        if cmd == "status":
            return {"status": trader.status(), "recorder": dict(driver.recorder.counters),
                    "feed": driver.feed.counters().as_dict() if driver.feed is not None else {}}
        if cmd == "snapshot":
            return {"status": trader.status(), "minute": to_json(recent.minute), "alerts": list(recent.alerts),
                    "fills": list(recent.fills),
                    "feed": driver.feed.counters().as_dict() if driver.feed is not None else {},
                    "settings": {"symbol": settings.symbol, "tick_size": settings.tick_size,
                                 "qty_step": settings.qty_step},
                    # what the console draws (profile, value area, position), for `pbdtui attach`
                    "screen": to_json(driver.runner.snapshot(
                        warming_up=driver.engine.bars_closed < settings.rolling_window_minutes))
                    if driver.feed is not None else None}
        if cmd in ("kill", "reset-kill", "flatten", "pause", "resume") and not trader.started:
            raise RuntimeError("the daemon is still starting (warm start, backend start); try again")
        if cmd == "kill":
            trader.kill("operator", str(request.get("reason") or "operator kill"))
            return {"kill": trader.status()["kill"]}
        if cmd == "reset-kill":
            return trader.reset_kill()
        if cmd == "flatten":
            flat = await trader.flatten()
            return {"flat": flat, "status": trader.status()}
        if cmd in ("pause", "resume"):
            return trader.pause_entries(cmd == "pause")
        raise ValueError(f"unknown command {cmd!r} (ping, status, snapshot, kill, reset-kill, flatten, pause, "
                         "resume, subscribe)")

    return handle


def run_live(settings: Any, db: str, ws_url: str, rest_url: str, api_key: str, api_secret: str,
             duration: float | None, out: TextIO | None = None, feed_config: FeedConfig | None = None,
             status_interval: float = 5.0, poll_interval: float = 1.0, rest_timeout: float = 5.0,
             ready: Any = None) -> int:
    """``pbdtui run --live``: feed + engine (external mode) + Bybit execution + recorder + control socket.

    ``ready`` (a ``threading.Event``, tests) is set once the control socket listens.
    """
    out = sys.stdout if out is None else out
    from engine.engine import client_prefix
    from engine.runtime.control import ControlServer, socket_path
    from engine.runtime.trading import bybit_trader

    url = resolve_url(ws_url)
    config = feed_config or FeedConfig(url=url)
    if feed_config is not None:
        config = FeedConfig(**{**config.__dict__, "url": url})
    start_ms = int(time.time() * 1000)
    run_id = f"live-{start_ms // 1000}"
    recent = _Recent(_Printer(settings, out, label="LIVE"))
    driver = LiveDriver(settings, db, config, recent, mode="external", status_interval=status_interval,
                        run_id=run_id, client_prefix=client_prefix(start_ms))
    trader = bybit_trader(settings, driver, rest_url, api_key, api_secret, rest_timeout=rest_timeout,
                          poll_interval=poll_interval)
    engine = driver.engine
    sock = socket_path(db)
    print(f"LIVE trading {settings.symbol} (run {run_id}) on {trader.target}, feed {url}, into {db}; control socket "
          f"{sock}" + (f"; for {duration:g} s" if duration else " (Ctrl-C stops)"), file=out, flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        control = ControlServer(sock, _control_handler(settings, driver, trader, recent),
                                info={"db": str(db), "rest_url": trader.target, "symbol": settings.symbol})
        await control.start()
        recent.control = control
        if ready is not None:
            ready.set()
        try:
            await driver.run(stop, duration)
        finally:
            await control.stop()

    asyncio.run(main())
    p = engine.position()
    rec = driver.recorder.counters
    held = (f"; the position ({p.qty} lots) stays open, protected by its exchange stop"
            if p.qty else "; flat")
    print(f"stopped: recorded {rec['trades']} trades, {rec['quotes']} quotes, {rec['minutes']} minutes, "
          f"{rec['fills']} fills into {db}{held}", file=out, flush=True)
    return 0


def _print_snapshot(settings: Any, snap: Any, out: TextIO, daemon: dict[str, Any] | None) -> None:
    u = units_of(settings)
    if snap.position is None or snap.position.size == 0:
        print("exchange position: FLAT" if snap.position is not None else "exchange position: unknown",
              file=out)
    else:
        pos = snap.position
        print(f"exchange position: {'LONG' if pos.side == 'Buy' else 'SHORT'} {pos.size} @ {pos.avg_price} stop "
              f"{pos.stop_loss or 'NONE'} take-profit {pos.take_profit or 'none'}", file=out)
    if snap.orders is not None:
        print(f"open orders: {len(snap.orders)}", file=out)
        for o in snap.orders:
            kind = o.stop_order_type or o.order_type
            print(f"  {o.side} {o.qty} {kind} {o.status} trigger {o.trigger_price or '-'} ({o.order_link_id or o.order_id})",
                  file=out)
    if snap.wallet is not None:
        w = snap.wallet
        print(f"balance: USDT wallet {w.usdt_wallet:.4f}, equity {w.usdt_equity:.4f} (unrealised {w.unrealised_pnl:+.4f}); "
              f"account equity {w.total_equity:.4f}, available {w.total_available:.4f} USD", file=out)
    for e in snap.errors:
        print(f"read failed: {e}", file=out)
    if daemon is None:
        print("daemon: none running (kill switch and reconciliation live in the daemon)", file=out)
        return
    st = daemon["status"]
    kill = st["kill"]
    rec = st.get("last_reconciliation")
    print(f"daemon: pid {daemon.get('pid', '?')}, engine position {st['qty']} lots ({u.qty(st['qty']):g}), "
          f"queued {st['queued']}", file=out)
    print("kill switch: " + (f"ON ({'; '.join(f'{k}: {v}' for k, v in kill['reasons'].items())})" if kill["on"]
                             else "off"), file=out)
    print("last reconciliation: " + ("none yet" if rec is None else
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(rec['wall_ms'] / 1000))} UTC ({rec['why']}): "
          + ("matched" if rec["matched"] else f"MISMATCH engine {rec['local_qty']} exchange {rec['venue_qty']}")),
          file=out)


def _direct_backend(settings: Any, rest_url: str, api_key: str, api_secret: str, timeout: float = 5.0) -> Any:
    from engine.adapters.bybit.rest import BybitRest
    from engine.execution.bybit import BybitExecution
    from engine.store import instrument_of

    rest = BybitRest(rest_url, api_key, api_secret, symbol=settings.symbol, timeout=timeout)
    return BybitExecution(rest, instrument_of(settings))


def flatten_once(settings: Any, daemon_socket: Any, rest_url: str | None, credentials: Any,
                 out: TextIO | None = None) -> int:
    """``pbdtui flatten``: through the daemon at ``daemon_socket`` if any, else straight to REST; 0 once flat."""
    out = sys.stdout if out is None else out
    from engine.runtime.control import ControlClient, ControlError

    if daemon_socket is not None:
        print(f"flatten through the running daemon ({daemon_socket})", file=out, flush=True)
        try:
            answer = ControlClient(daemon_socket, timeout=300).request("flatten")
        except ControlError as e:
            print(f"flatten FAILED: {e}", file=out, flush=True)
            return 1
        st = answer["status"]
        if answer["flat"]:
            print(f"FLAT confirmed by the exchange; kill switch ON ({', '.join(st['kill']['reasons'])}) until "
                  "reset", file=out, flush=True)
            return 0
        print("flatten NOT confirmed: the position may be open; see the daemon's alerts", file=out, flush=True)
        return 1
    key, secret = credentials()
    assert rest_url is not None
    backend = _direct_backend(settings, rest_url, key, secret)
    print(f"flatten {settings.symbol} directly on {backend.rest.url} (no daemon running)", file=out, flush=True)
    flat = backend.flatten()
    for alert in backend.poll():
        if hasattr(alert, "severity") and alert.kind in ("flatten", "not_flat") or getattr(
                alert, "severity", "info") in ("error", "critical"):
            print(f"{alert.severity.upper()}: {alert.text}", file=out, flush=True)
    print("FLAT confirmed by the exchange" if flat else "flatten NOT confirmed: the position may be open",
          file=out, flush=True)
    return 0 if flat else 1


def status_once(settings: Any, daemon_socket: Any, rest_url: str | None, credentials: Any,
                out: TextIO | None = None) -> int:
    """``pbdtui status``: the exchange's position, orders and balance, and the daemon's kill switch and reconciliation."""
    out = sys.stdout if out is None else out
    from engine.runtime.control import ControlClient, ControlError

    daemon = None
    if daemon_socket is not None:
        try:
            daemon = ControlClient(daemon_socket, timeout=10).request("status")
        except ControlError as e:
            print(f"daemon: {e}", file=out)
    key, secret = credentials()
    if rest_url is None:
        rest_url = daemon["status"]["target"] if daemon is not None else "testnet"
    backend = _direct_backend(settings, rest_url, key, secret)
    if not backend.start():
        for alert in backend.poll():
            print(f"{alert.severity.upper()}: {alert.text}", file=out)
        return 1
    snap = backend.snapshot()
    print(f"{settings.symbol} on {backend.rest.url}", file=out)
    _print_snapshot(settings, snap, out, daemon)
    out.flush()
    return 0 if not snap.errors else 1
