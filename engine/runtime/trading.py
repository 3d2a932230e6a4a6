"""Live execution in the daemon: intents to an exchange backend, its fills back, reconciliation, kill, flatten.

``LiveTrader(driver, backend)`` joins a ``LiveDriver`` whose engine runs in
external mode to an ``ExecutionBackend`` (``engine.execution.bybit.BybitExecution``):

* **Off the hot path.** Every REST call runs on one worker thread (a
  single-thread executor: the backend's calls stay in order); the event loop
  only awaits it, so the feed, the live clock and the recorder never wait
  for the exchange. Results are applied on the loop thread, through the
  runner (the engine's one door), so the engine is only touched by one
  thread.
* **Intents out.** ``IntentIssued`` events queue the intents; they are sent
  in order. A flip is an exit and an entry: the entry waits until the exit's
  fill has made the position flat (Bybit's one-way mode and the backend's
  flat check would refuse it otherwise); if the position is not flat within
  ``entry_wait_ms`` of wall time the entry is dropped (alert). An entry meets
  the kill switch here too, after the kernel's own check (an entry queued
  before a kill is not sent).
* **Fills in.** ``poll`` every ``poll_interval`` (and at once after a send):
  fills and funding through ``Runner.on_execution`` (deduplicated by
  ``exec_id``), recorded in ``trades_exec``; an order the backend failed or
  the exchange ended is ended in the engine (``Engine.order_ended``).
* **Recovery** at start, before the start reconciliation: executions a
  killed run made but never recorded (``trades_exec.exec_id``: the newest
  recorded is where the search starts) are recorded now, through the same
  door (``_recover``).
* **Reconciliation** at start (an open position on the exchange is adopted
  as an event: an adjusting fill flagged EXIT_RECONCILE, never an
  overwrite), whenever the exchange's position changes, after every feed
  reconnect and after every REST error. A difference is first re-read (a
  fill may have landed between the execution read and the position read);
  if it persists it is a mismatch: an alert, entries blocked by the engine,
  and the kill switch latched.
* **Kill switch latch** (``kill``/``reset_kill``): set by the operator, the
  daily loss limit, a stale feed, a reconciliation mismatch or a flatten;
  it stays on, whatever set it, until the operator resets it.
* **Entries pause** (``pause_entries``): the operator's pause of new
  entries, separate from the kill switch: nothing latches, nothing is
  flattened, and the same command resumes. The engine takes no entry while
  paused (ENTRIES_PAUSED in the signals log) and an entry queued before the
  pause is not sent; exits and the exchange's stops go on as usual.
* **Flatten** (``flatten``): kill switch + the backend's cancel-all,
  reduce-only close and flat confirmation, retried in rounds with an alert
  each time until the exchange confirms flat (or ``flatten_rounds`` pass).

Events (``KillSwitchChanged``, ``Alert``, the runner's ``Filled``) go to the
driver's sink like every other event; ``status()`` is the plain dict the
status line and the control socket show.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.execution.types import (
    INTENT_ENTER,
    INTENT_FLATTEN,
    ExecAlert,
    Fill,
    FundingCharge,
    Intent,
    PositionReport,
)
from engine.runtime.events import Alert, IntentIssued, KillSwitchChanged
from engine.types import SIDE_BUY

log = logging.getLogger("pbdtui.trader")

# backend order states (engine.execution.bybit) after which the engine's intent is over
_ENDED = ("done", "failed")
# alert kinds that are outcomes, not errors of the connection to the exchange (no reconciliation needed)
_NOT_REST_ERRORS = {"started", "recovered", "recovered_fills", "flatten", "duplicate_intent", "stop_moved", "execution", "poll",
                    "target_not_set", "refused", "rules", "reconciled"}
# RestError kinds (engine.adapters.bybit.rest): any of them, even a warning (a failed poll), is followed by a
# reconciliation
_REST_ERRORS = {"timeout", "network", "http", "server", "rate_limited", "timestamp", "auth"}
KILL_REASONS = ("operator", "daily_loss", "feed_stale", "mismatch", "flatten", "start")


class LiveTrader:
    """The execution side of a live daemon (see the module doc).

    Args:
        driver: the ``LiveDriver`` (engine in external mode); the trader hooks into its events.
        backend: the exchange backend (``start``, ``submit``, ``poll``, ``position``, ``flatten``,
            ``order_status``).
        target: where orders go, for the status ("testnet", a loopback URL...).
        poll_interval: seconds between polls of the exchange.
        entry_wait_ms: wall ms a flip's entry waits for its exit to leave the position flat.
        confirm_reads: position re-reads before a difference is declared a mismatch.
        flatten_rounds: backend flatten attempts (each with its own retries) before giving up.
        flatten_pause: seconds between flatten rounds.
    """

    def __init__(self, driver: Any, backend: Any, target: str = "", poll_interval: float = 1.0,
                 entry_wait_ms: int = 30_000, confirm_reads: int = 3, flatten_rounds: int = 5,
                 flatten_pause: float = 1.0):
        self.driver = driver
        self.runner = driver.runner
        self.engine = driver.runner.engine
        self.backend = backend
        self.target = target
        self.poll_interval = poll_interval
        self.entry_wait_ms = entry_wait_ms
        self.confirm_reads = max(1, confirm_reads)
        self.flatten_rounds = max(1, flatten_rounds)
        self.flatten_pause = flatten_pause
        self.kill_reasons: dict[str, str] = {}  # reason -> why; empty: off
        self.venue: PositionReport | None = None  # the exchange's position at the last read
        self.last_reconciliation: dict[str, Any] | None = None
        self.start_reconciliation: dict[str, Any] | None = None  # the first, as the process started
        self.reconciliations: deque[dict[str, Any]] = deque(maxlen=50)  # the newest, oldest first
        self.counters = {"sent": 0, "fills": 0, "funding": 0, "polls": 0, "poll_errors": 0, "dropped": 0,
                         "reconciliations": 0, "mismatches": 0}
        self.started = False
        self.flattening = False
        self.entries_paused = False  # the operator's pause of new entries (not a kill: no latch)
        self._queue: deque[tuple[Intent, float]] = deque()  # (intent, wall time queued)
        self._recheck: list[str] = []  # why a reconciliation is due
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pbdtui-rest")
        self._wake: asyncio.Event | None = None
        self._busy: asyncio.Lock | None = None
        self._flatten_cid = ""
        self._seen_outage = False
        driver.trader = self

    # --- the driver's hooks (loop thread) -------------------------------------------------------

    def on_event(self, event: Any) -> None:
        """Every event of the driver before the sink: intents queued, feed and risk states watched."""
        if isinstance(event, IntentIssued):
            if event.intent.kind != INTENT_FLATTEN:
                self._queue.append((event.intent, time.monotonic()))
                self._poke()
        elif isinstance(event, Alert) and event.kind == "feed_stale":
            self.kill("feed_stale", event.text)
        elif type(event).__name__ == "FeedChanged":
            kind = event.status.kind
            if kind in ("disconnected", "reconnecting", "stale"):
                self._seen_outage = True
            elif kind == "subscribed" and self._seen_outage:
                self._seen_outage = False
                self._recheck.append("feed reconnect")
                self._poke()
        if (self.started and type(event).__name__ in ("Filled", "MinuteClosed") and "daily_loss" not in
                self.kill_reasons and self.engine.position().kill_daily):
            self.kill("daily_loss", "daily loss limit reached")

    def _emit(self, event: Any) -> None:
        self.driver.sink(event)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> bool:
        """Instrument rules and clock (backend ``start``), then the start reconciliation; False: kill latched."""
        self._wake = asyncio.Event()
        self._busy = asyncio.Lock()
        ok = await self._call(self.backend.start)
        self._apply(await self._call(self.backend.poll))
        if not ok:
            self.kill("start", "the execution backend did not start (see the alerts): no entries")
            self.started = True
            return False
        await self._recover()
        await self._reconcile("start", adopt=True)
        self.started = True
        return True

    async def _recover(self) -> None:
        """Executions a killed run made but never recorded, through the one door before the start reconciliation.

        The engine starts flat (the warm start does not trade), so the position
        the dead run held before those executions (the exchange's position now
        minus them) is adopted first, as a restart adopts an open position (an
        EXIT_RECONCILE row, at the exchange's entry price while that position is
        still open, else at the mid); then each execution is applied and
        recorded with its ``exec_id``; the start reconciliation then finds the
        exchange's position. What is lost: the dead run's entry price when the
        position has since closed (the recovered exit's PnL is reckoned from the
        mid at restart).
        """
        recover = getattr(self.backend, "recover", None)
        if recover is None:
            return
        try:
            recorded, since = await asyncio.to_thread(self.driver.recorded_executions)
            fills = await self._call(recover, recorded, since)
            if not fills:
                return
            report = await self._call(self.backend.position)
        except Exception as e:  # noqa: BLE001 - RestError, a database read: the start reconciliation still adopts
            self._alert("recover", f"could not look for executions a previous run did not record: {e}", "error")
            return
        net = sum(f.qty if f.side == SIDE_BUY else -f.qty for f in fills)
        before = report.qty - net
        if before != self.engine.position().qty:
            same = report.qty != 0 and (report.qty > 0) == (before > 0)
            held = PositionReport(ts=fills[0].ts - 1, qty=before, entry_px=report.entry_px if same else 0,
                                  stop=report.stop if same else 0)
            result = self.runner.reconcile(held, adopt=True)
            self.driver.record_fills(result.fills)
            self.runner.reconcile(held)  # matches now: no block left by the adoption
        self._apply(fills)
        self._alert("recovered_fills", f"{len(fills)} execution(s) of a previous run were not recorded (it was "
                                       f"killed): recorded now ({', '.join(f.exec_id for f in fills)})", "warning")

    async def run(self) -> None:
        """Send, poll and reconcile until cancelled."""
        assert self._wake is not None and self._busy is not None
        while True:
            # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancellation that arrives as
            # the event is set, and the daemon would not stop
            wake = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({wake}, timeout=self.poll_interval)
            finally:
                wake.cancel()
            self._wake.clear()
            async with self._busy:
                try:
                    await self._step()
                except Exception as e:  # noqa: BLE001 - the daemon keeps its feed and protection running
                    log.exception("execution step failed")
                    self._alert("execution_error", f"execution step failed: {type(e).__name__}: {e}", "critical")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _step(self) -> None:
        sent = await self._send_queued()
        self.counters["polls"] += 1
        self._apply(await self._call(self.backend.poll))
        self._end_orders()
        if self._recheck:
            why, self._recheck = ", ".join(dict.fromkeys(self._recheck)), []
            await self._reconcile(why)
        if sent or (self._queue and self.engine.position().qty == 0):
            self._poke()  # a flip's entry may go now; a sent order's fill is polled at once

    # --- intents out ---------------------------------------------------------------------------

    async def _send_queued(self) -> int:
        sent = 0
        while self._queue:
            intent, queued = self._queue[0]
            if intent.kind == INTENT_ENTER:
                if self.kill_reasons or self.flattening:
                    self._drop(intent, f"kill switch on ({', '.join(self.kill_reasons) or 'flatten'})")
                    continue
                if self.entries_paused:
                    self._drop(intent, "entries paused by the operator")
                    continue
                pos = self.engine.position().qty
                if pos != 0:
                    if (time.monotonic() - queued) * 1000 > self.entry_wait_ms:
                        self._drop(intent, f"the position ({pos} lots) was not flat {self.entry_wait_ms} ms after "
                                           "the flip's exit")
                        continue
                    return sent  # the flip's exit has not filled yet: the entry waits (and so does what follows)
            self._queue.popleft()
            await self._call(self.backend.submit, intent)
            self.counters["sent"] += 1
            sent += 1
            self._apply(await self._call(self.backend.poll))
        return sent

    def _drop(self, intent: Intent, why: str) -> None:
        self._queue.popleft()
        self.counters["dropped"] += 1
        self.engine.order_ended(intent.client_id)
        self._alert("entry_dropped", f"entry {intent.client_id} not sent: {why}", "warning")

    def _end_orders(self) -> None:
        """Intents whose order the backend failed or the exchange ended: over in the engine too."""
        status = getattr(self.backend, "order_status", None)
        if status is None:
            return
        for intent in self.engine.outstanding():
            if intent.kind != INTENT_FLATTEN and status(intent.client_id) in _ENDED:
                self.engine.order_ended(intent.client_id)

    # --- fills and reports in ------------------------------------------------------------------

    def _apply(self, events: list[Any]) -> None:
        """A poll's events, on the loop thread: fills recorded, reports kept for reconciliation."""
        for event in events:
            if isinstance(event, Fill):
                if self._flatten_cid and event.client_id.startswith("flat-"):
                    event = dataclasses.replace(event, client_id=self._flatten_cid)  # reason EXIT_FLATTEN
                rows = self.runner.apply_fill(event)
                if len(rows):
                    self.counters["fills"] += 1
                    self.driver.record_fills(rows, event.exec_id or None)
            elif isinstance(event, FundingCharge):
                self.counters["funding"] += 1
                self.runner.on_execution(event)
            elif isinstance(event, PositionReport):
                self.venue = event
                if event.qty != self.engine.position().qty or self.engine.position().mismatch:
                    self._recheck.append("position change")
            elif isinstance(event, ExecAlert):
                self.runner.on_execution(event)
                if event.kind in _REST_ERRORS or (event.severity in ("error", "critical")
                                                   and event.kind not in _NOT_REST_ERRORS):
                    self.counters["poll_errors"] += 1
                    self._recheck.append(f"REST error ({event.kind})")

    async def _reconcile(self, why: str, adopt: bool = False) -> bool:
        """The exchange's position against ours; True when they match (see the module doc)."""
        report = None
        for attempt in range(self.confirm_reads):
            try:
                report = await self._call(self.backend.position)
            except Exception as e:  # noqa: BLE001 - RestError and anything else the read raises
                self._alert("reconcile", f"reconciliation ({why}) could not read the position: {e}", "error")
                self._recheck.append("position read failed")
                return False
            self.venue = report
            if report.qty == self.engine.position().qty or adopt:
                break
            if attempt + 1 < self.confirm_reads:  # a fill may have landed between two reads
                self._apply(await self._call(self.backend.poll))
        assert report is not None
        local = self.engine.position().qty
        result = self.runner.reconcile(report, adopt=adopt and report.qty != local)
        if len(result.fills):
            self.driver.record_fills(result.fills)
            self._alert("adopted", f"open position on the exchange adopted at {why}: {report.qty} lots at "
                                   f"{report.entry_px} ticks, exchange stop {report.stop or 'NONE'}",
                        "warning" if report.stop else "critical")
            result = self.runner.reconcile(report)  # the adopted position now matches: entries allowed
        self.counters["reconciliations"] += 1
        self.last_reconciliation = {"ts": report.ts, "wall_ms": int(time.time() * 1000), "why": why,
                                    "matched": result.matched, "local_qty": result.local_qty,
                                    "venue_qty": result.venue_qty}
        self.reconciliations.append(self.last_reconciliation)
        if why == "start":
            self.start_reconciliation = self.last_reconciliation
        if not result.matched:
            self.counters["mismatches"] += 1
            self.kill("mismatch", f"engine {local} lots, exchange {report.qty} lots ({why})")
        return result.matched

    # --- operator commands ---------------------------------------------------------------------

    def kill(self, reason: str, text: str = "") -> None:
        """Latch the kill switch (no new entries) for ``reason``; it stays until ``reset_kill``."""
        was_on = bool(self.kill_reasons)
        self.kill_reasons.setdefault(reason, text or reason)
        self.engine.set_kill_switch(True)
        if not was_on:
            self._emit(KillSwitchChanged(on=True, ts=self.engine.last_event_ts))
            self._alert("kill_switch", f"KILL SWITCH ON ({reason}: {text or reason}); latched until reset",
                        "error" if reason != "operator" else "warning")

    def reset_kill(self) -> dict[str, Any]:
        """The operator's reset: every latched reason cleared; the engine's own blocks (mismatch) stay."""
        cleared = dict(self.kill_reasons)
        self.kill_reasons.clear()
        self.engine.set_kill_switch(False)
        if cleared:
            self._emit(KillSwitchChanged(on=False, ts=self.engine.last_event_ts))
            self._alert("kill_switch", f"kill switch reset by the operator (was: {', '.join(cleared)})", "info")
        return {"cleared": sorted(cleared), "mismatch": self.engine.position().mismatch}

    def pause_entries(self, on: bool) -> dict[str, Any]:
        """Pause new entries (True) or resume them; exits, stops and flatten are not affected."""
        if on != self.entries_paused:
            self.entries_paused = on
            self.runner.pause_entries(on)  # its EntriesPausedChanged is what screens and status lines show
        return {"entries_paused": self.entries_paused}

    async def flatten(self) -> bool:
        """Kill + cancel all + reduce-only close + flat confirmed by the exchange, in rounds; True once flat."""
        assert self._busy is not None
        self.kill("flatten", "operator flatten")
        self.flattening = True
        try:
            async with self._busy:
                intent = self.engine.flatten()  # the engine's outstanding entry is cancelled
                self._flatten_cid = intent.client_id
                while self._queue:
                    self._drop(self._queue[0][0], "flatten")
                for round_ in range(self.flatten_rounds):
                    if round_:
                        await asyncio.sleep(self.flatten_pause)
                    flat = await self._call(self.backend.flatten)
                    self._apply(await self._call(self.backend.poll))
                    if flat and await self._reconcile("flatten"):
                        self.engine.order_ended(intent.client_id)
                        self._alert("flat", "FLAT confirmed by the exchange", "info")
                        return True
                    self._alert("not_flat", f"flatten round {round_ + 1} of {self.flatten_rounds}: flat not "
                                            "confirmed; retrying" if round_ + 1 < self.flatten_rounds else
                                "FLATTEN FAILED: the exchange does not confirm flat; act by hand", "critical")
                return False
        finally:
            self._flatten_cid = ""
            self.flattening = False

    # --- views ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Plain values for the status line and the control socket."""
        p = self.engine.position()
        v = self.venue
        return {
            "mode": "LIVE", "target": self.target, "qty": p.qty, "entry_px": p.entry_px, "stop": p.stop,
            "target2": p.target2, "realized": p.realized, "fees": p.fees, "funding": p.funding,
            "day_pnl": p.day_pnl, "mismatch": p.mismatch,
            "venue": None if v is None else {"ts": v.ts, "qty": v.qty, "entry_px": v.entry_px, "stop": v.stop,
                                             "take_profit": v.take_profit},
            "kill": {"on": bool(self.kill_reasons), "reasons": dict(self.kill_reasons)},
            "entries_paused": self.entries_paused, "orders": [dataclasses.asdict(o) for o in self.orders()],
            "last_reconciliation": self.last_reconciliation, "start_reconciliation": self.start_reconciliation,
            "queued": len(self._queue),
            "outstanding": [i.client_id for i in self.engine.outstanding()], "flattening": self.flattening,
            "counters": dict(self.counters),
        }

    def orders(self) -> list[Any]:
        """Open orders (``engine.engine.OrderView``): the intents in flight with the backend's state of their
        order ("queued": not sent yet), and the stop and take-profit the exchange holds on the position."""
        from engine.engine import OrderView

        state = getattr(self.backend, "order_status", None)
        out = []
        for i in self.engine.outstanding():
            status = (state(i.client_id) if state is not None else None) or "queued"  # not at the backend yet
            out.append(OrderView(i.side, "entry" if i.kind == INTENT_ENTER else i.kind, 0, i.qty, status.lower(),
                                 i.decision_ts))
        v = self.venue
        if v is not None and v.qty != 0:
            close = -1 if v.qty > 0 else 1
            if v.stop:
                out.append(OrderView(close, "stop", 2 * v.stop, abs(v.qty), "exchange", v.ts))
            if v.take_profit:
                out.append(OrderView(close, "target", 2 * v.take_profit, abs(v.qty), "exchange", v.ts))
        return out

    def _alert(self, kind: str, text: str, severity: str) -> None:
        self._emit(Alert(ts=self.engine.last_event_ts, text=text, severity=severity, kind=kind))


def bybit_trader(settings: Any, driver: Any, rest_url: str, api_key: str, api_secret: str, *,
                 rest_timeout: float = 5.0, poll_interval: float = 1.0) -> LiveTrader:
    """A ``LiveTrader`` joining ``driver`` (external mode) to Bybit's REST API at ``rest_url`` through pybit.

    Market orders are priced for the instrument rules from the engine's own mid.
    """
    from engine.adapters.bybit.rest import BybitRest
    from engine.execution.bybit import BybitExecution
    from engine.store import instrument_of

    rest = BybitRest(rest_url, api_key, api_secret, symbol=settings.symbol, timeout=rest_timeout)
    engine = driver.engine
    tick = instrument_of(settings).tick_size

    def mid_price() -> float | None:
        p = engine.position()
        return (p.bid + p.ask) / 2 * tick if p.bid > 0 and p.ask > 0 else None

    backend = BybitExecution(rest, instrument_of(settings), price_source=mid_price, clock=driver.clock.now_ms)
    return LiveTrader(driver, backend, target=rest.url, poll_interval=poll_interval)
