"""A live trading daemon on the two loopback venues under network faults, with the figures of what happened.

``run_faults(source_db, db, plan)`` runs what ``pbdtui run --live`` runs
(``LiveDriver`` in external mode, ``bybit_trader``: ``BybitRest`` over pybit,
``BybitExecution``, ``LiveTrader``) against the loopback public WebSocket
venue serving ``source_db``'s session as fast as the client reads, and the
loopback REST venue filling at that stream's quotes, while:

* the WebSocket venue injects its faults (``loopback.faults`` specs, in
  session time so they land on the same data at any speed): dropped
  connections, stalls longer than the client's silence limit (an outage),
  short stalls (slow frames), garbage and truncated frames, duplicated and
  reordered trades, book resets;
* a seeded injector arms one REST fault at a time on the REST venue, every
  ``rest_every_s`` wall seconds on average: timeouts (the answer held past
  the client's timeout while the request executes), HTTP 503 (executed or
  not), 10006 rate limits with their headers, 10002 timestamp errors,
  garbage bodies (executed or not), on order creation or on the polls;
* the operator (this harness) resets the kill switch once the only reasons
  left are stale-feed latches and the feed is back: a stall latches it, as
  it should, and an unattended run would otherwise stop trading at the first.

``FaultReport`` holds the outcome: faults injected by kind, outages and
their alerts, feed gaps and whether every one is flagged in ``features_1m``,
ticks served against ticks stored (lost, doubled), orders per orderLinkId
and the exchange position's largest size against the largest entry
(duplicated exposure), ``trades_exec`` against the venue's executions,
crashes (an exception out of the daemon or an ``execution_error`` alert),
mismatches, and the time from each REST error or feed reconnect to the next
reconciliation that matched (median, max).

This module is test and benchmark tooling: the engine never imports it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.adapters.bybit.ws import FeedConfig
from engine.engine import client_prefix
from engine.runtime.events import Alert
from engine.runtime.live import FeedChanged, LiveDriver
from engine.runtime.threaded import FeedView
from engine.runtime.trading import _REST_ERRORS, bybit_trader
from engine.store import Store
from loopback.bybit_rest import BybitRestVenue
from loopback.bybit_ws import BybitPublicVenue
from loopback.faults import Fault, parse_faults
from loopback.source import StoreSource

log = logging.getLogger("pbdtui.faultrun")

KEY, SECRET = "faultrun-KEY-5150", "faultrun-SECRET-77xQ"
REST_KINDS = ("timeout", "5xx", "5xx_executed", "rate_limit", "timestamp", "garbage", "garbage_executed")
REST_PATHS = ("/v5/order/create", "/v5/order/create", "/v5/position/list", "/v5/execution/list",
              "/v5/order/realtime", None)
GARBAGE = (b"<html><body>502 Bad Gateway</body></html>", b"", b"[1,2]", b'{"retCode":0,"result":"x"}',
           b'{"retCode":0,"retMsg":"OK","result":{"list":[{"execId":', b'{"retCode":-1,"retMsg":null}')


@dataclass
class FaultPlan:
    """What to inject.

    Args:
        ws: public venue fault specs (``loopback.faults``), e.g. ``drop/7m``.
        stale_after: the feed client's silence limit, wall s (a stall longer than this is an outage).
        rest_every_s: mean wall seconds between two REST faults (0: none).
        rest_timeout: the REST client's timeout, s (a ``timeout`` fault holds the answer longer).
        poll_interval: the trader's wall seconds between polls of the exchange.
        seed: the REST injector's random draws.
        speed: the market's pace, x real time (0: as fast as the client reads). The trader's round
            trips and the REST faults run on the wall clock: a market much faster than them leaves the
            trader too little wall time per minute to trade.
    """

    ws: list[str] = field(default_factory=lambda: [
        "drop/7m", "stall:2.5/17m", "stall:0.3/5m", "garbage/400", "truncated/600", "duplicate/300",
        "reorder/250", "reset/13m"])
    stale_after: float = 1.0
    rest_every_s: float = 0.4
    rest_timeout: float = 0.4
    poll_interval: float = 0.2
    seed: int = 7
    speed: float = 0.0


@dataclass
class FaultReport:
    """The figures of one run (see the module doc)."""

    wall_s: float = 0.0
    market_minutes: int = 0
    injected: dict[str, int] = field(default_factory=dict)  # fault kind -> times it fired
    outages: int = 0  # disconnections and stalls the client saw (disconnected / stale statuses)
    outage_alerts: int = 0  # error alerts the console's FeedView made of them
    reconnects: int = 0
    gaps: int = 0  # gap statuses (outage spans in exchange time)
    gaps_unflagged: list[int] = field(default_factory=list)  # minutes of a gap without feed_gap = 1
    malformed: dict[str, int] = field(default_factory=dict)  # bad frames counted by topic
    ticks_served: int = 0
    ticks_stored: int = 0
    ticks_lost: int = 0
    ticks_tail: int = 0  # served within the reorder grace before the stop (still buffered at the end)
    ticks_doubled: int = 0
    orders: int = 0
    duplicate_orders: int = 0  # orderLinkIds with more than one order on the venue
    create_faults: int = 0  # order creations answered with an HTTP error, 10006 or 10002 (timeouts not counted)
    max_position_lots: int = 0
    max_entry_lots: int = 0
    executions: int = 0  # Trade executions on the venue
    fills_recorded: int = 0  # trades_exec rows of the run
    crashes: int = 0
    crash_texts: list[str] = field(default_factory=list)
    mismatches: int = 0
    reconciliations: int = 0
    rest_errors: int = 0
    recovered: int = 0  # REST errors and outages followed by a matched reconciliation
    unrecovered: int = 0
    reconcile_s: list[float] = field(default_factory=list)  # error or reconnect -> matched reconciliation
    operator_resets: int = 0
    final_matched: bool = False
    engine_lots: int = 0
    venue_lots: int = 0

    @property
    def duplicated_exposure(self) -> bool:
        return self.max_position_lots > self.max_entry_lots or self.duplicate_orders > 0

    def reconcile_stats(self) -> tuple[float, float]:
        """(median, max) seconds from an error or reconnect to the matched reconciliation."""
        if not self.reconcile_s:
            return 0.0, 0.0
        return statistics.median(self.reconcile_s), max(self.reconcile_s)

    def table(self) -> str:
        """The report as a plain-text table."""
        med, top = self.reconcile_stats()
        rows = [("fault kind", "injected")] + sorted((k, str(v)) for k, v in self.injected.items())
        width = max(len(r[0]) for r in rows) + 2
        out = [f"{a:<{width}}{b:>8}" for a, b in rows]
        out += [
            "",
            f"market time               {self.market_minutes} min in {self.wall_s:.1f} s wall",
            f"outages seen / alerted    {self.outages} / {self.outage_alerts} (reconnects {self.reconnects})",
            f"gaps / unflagged minutes  {self.gaps} / {len(self.gaps_unflagged)}",
            f"bad frames by topic       {self.malformed}",
            f"ticks served / stored     {self.ticks_served} / {self.ticks_stored} "
            f"(lost {self.ticks_lost}, doubled {self.ticks_doubled}, in the grace at stop {self.ticks_tail})",
            f"orders / duplicated ids   {self.orders} / {self.duplicate_orders} "
            f"(creations answered with a fault {self.create_faults})",
            f"max position / max entry  {self.max_position_lots} / {self.max_entry_lots} lots",
            f"executions / recorded     {self.executions} / {self.fills_recorded}",
            f"REST errors               {self.rest_errors}",
            f"errors+reconnects recovered {self.recovered} (not {self.unrecovered})",
            f"reconciliation time       median {med:.3f} s, max {top:.3f} s ({len(self.reconcile_s)} measured)",
            f"reconciliations/mismatch  {self.reconciliations} / {self.mismatches}",
            f"crashes                   {self.crashes}",
            f"operator kill resets      {self.operator_resets}",
            f"final                     engine {self.engine_lots} lots, exchange {self.venue_lots} lots, "
            f"matched {self.final_matched}",
        ]
        return "\n".join(out)


class _Watch:
    """The daemon's sink: alerts, feed statuses, REST errors, with their wall times."""

    def __init__(self) -> None:
        self.view = FeedView()
        self.outages = 0
        self.outage_alerts = 0
        self.gap_spans: list[tuple[int, int]] = []
        self.errors: list[float] = []  # monotonic time of each REST error alert
        self.reconnected: list[float] = []  # monotonic time of each subscription after an outage
        self.crash_texts: list[str] = []
        self._down = False

    def __call__(self, event: Any) -> None:
        if isinstance(event, FeedChanged):
            st = event.status
            if st.kind in ("disconnected", "stale"):
                self.outages += 1
                self._down = True
            elif st.kind == "subscribed" and self._down:
                self._down = False
                self.reconnected.append(time.monotonic())
            elif st.kind == "gap" and st.gap_from > 0:
                self.gap_spans.append((st.gap_from, st.gap_to))
            alert = self.view.status(st.kind, st.detail, st.ts)
            if alert is not None and alert.severity == "error" and st.kind in ("disconnected", "stale"):
                self.outage_alerts += 1
        elif isinstance(event, Alert):
            if event.kind in _REST_ERRORS:
                self.errors.append(time.monotonic())
            elif event.kind == "execution_error":
                self.crash_texts.append(event.text)


def _signed_path(executions: list[dict[str, Any]], step: float) -> int:
    """The largest absolute position, in lots, along the venue's executions in order."""
    pos = top = 0
    for e in sorted(executions, key=lambda e: (int(e["execTime"]), e["seq"])):
        if e["execType"] != "Trade":
            continue
        lots = round(float(e["execQty"]) / step)
        pos += lots if e["side"] == "Buy" else -lots
        top = max(top, abs(pos))
    return top


def _inject_rest(venue: BybitRestVenue, plan: FaultPlan, armed: dict[str, int], stop: threading.Event) -> None:
    """Arm REST faults, at most one pending per path (``None``: the next private request, whatever it is).

    A thread of its own: the daemon's event loop is busy with a feed served as fast as it reads, and the
    fault rate must not depend on how busy it is.
    """
    rng = random.Random(plan.seed)
    while not stop.wait(rng.expovariate(1.0 / plan.rest_every_s)):
        path = rng.choice(REST_PATHS)
        if any(f.path == path for f in venue._faults):
            continue  # one pending per path: it fires before the next is armed there (creates wait for an order)
        kind = rng.choice(REST_KINDS)
        executed = kind.endswith("_executed")
        base = kind.removesuffix("_executed")
        options: dict[str, Any] = {}
        if base == "timeout":
            options["hold"] = plan.rest_timeout * 2
        elif base == "rate_limit":
            options["reset_ms"] = 100
        elif base == "garbage":
            base = "body"
            options["body"] = rng.choice(GARBAGE)
            options["execute"] = executed
        elif base == "5xx":
            options["execute"] = executed
        venue.inject(base, path=path, **options)
        armed[f"rest {kind}"] = armed.get(f"rest {kind}", 0) + 1
        venue._faults[-1].msg = f"rest {kind}"  # the label, to count the faults that never fired


def _ws_kind(fault: Fault, stale_after: float) -> str:
    if fault.kind == "stall":
        return "ws stall (outage)" if not fault.arg or float(fault.arg) > stale_after else "ws slow frames"
    return f"ws {fault.kind}"


async def run_faults(source_db: str | Path, db: str | Path, settings: Any, plan: FaultPlan,
                     settle_timeout: float = 60.0, on_progress: Any = None, start_ms: int | None = None) -> FaultReport:
    """Run the daemon over the session of ``source_db`` under ``plan``; the report (see the module doc).

    ``start_ms``: serve the session from there on (``db`` may already hold the ticks before it: the daemon
    warm-starts past its window and trades from the first served minute).
    """
    report = FaultReport()
    watch = _Watch()
    ws_faults = parse_faults(plan.ws)
    rest_counts: dict[str, int] = {}
    started = time.monotonic()
    reconciles: list[tuple[float, bool]] = []  # (monotonic end, matched)
    async with BybitPublicVenue(StoreSource(source_db, start_ms), speed=plan.speed, faults=ws_faults, record=True, seed=plan.seed) as ws:
        venue = BybitRestVenue(api_key=KEY, api_secret=SECRET, quote=ws.quote, market_clock=ws.market_ms).start()
        try:
            config = FeedConfig(url=ws.url, stale_after=plan.stale_after, backoff_initial=0.01, backoff_max=0.1,
                                seed=plan.seed, ping_interval=0.5, flush_interval=0.01)
            driver = LiveDriver(settings, str(db), config, watch, mode="external", run_id="faults",
                                tick_interval=0.05, close_grace_ms=1000, status_interval=1.0, commit_interval=0.2,
                                client_prefix=client_prefix(int(time.time() * 1000)))
            trader = bybit_trader(settings, driver, venue.url, KEY, SECRET, rest_timeout=plan.rest_timeout,
                                  poll_interval=plan.poll_interval)
            reconcile = trader._reconcile

            async def timed_reconcile(why: str, adopt: bool = False) -> bool:
                matched = await reconcile(why, adopt)
                reconciles.append((time.monotonic(), matched))
                return matched

            trader._reconcile = timed_reconcile  # type: ignore[method-assign]
            stop = asyncio.Event()
            task = asyncio.create_task(driver.run(stop), name="faultrun-daemon")
            injector_stop = threading.Event()
            injector = threading.Thread(target=_inject_rest, args=(venue, plan, rest_counts, injector_stop),
                                        name="faultrun-rest-faults", daemon=True)
            if plan.rest_every_s > 0:
                injector.start()
            try:
                while not ws.finished.is_set():
                    if task.done():
                        break
                    # the operator: a stale feed latched the kill switch; the feed is back, so reset it
                    if (trader.started and trader.kill_reasons and set(trader.kill_reasons) <= {"feed_stale"}
                            and watch.view.connected and driver.clock.quiet_ms() < 200):
                        trader.reset_kill()
                        report.operator_resets += 1
                    if on_progress is not None:
                        on_progress(driver, trader)
                    await asyncio.sleep(0.05)
                injector_stop.set()
                if injector.is_alive():
                    await asyncio.to_thread(injector.join)
                for f in venue._faults:  # armed, never fired: not injected
                    rest_counts[f.msg] -= 1
                venue._faults.clear()
                # settle: every order's outcome known, every execution read back, the position reconciled,
                # and every frame sent taken by the client (on a loaded machine it may still be reading its
                # backlog when the venue has sent the last one): its clock has stopped moving for a second
                deadline = time.monotonic() + settle_timeout
                newest, moved = -1, time.monotonic()
                while time.monotonic() < deadline and not task.done():
                    if driver.clock.newest != newest:
                        newest, moved = driver.clock.newest, time.monotonic()
                    trades = [e for e in venue.executions() if e["execType"] == "Trade"]
                    if (time.monotonic() - moved > 1.0 and not trader._queue and not driver.engine.outstanding()
                            and trader.counters["fills"] >= len(trades)
                            and driver.engine.position().qty == round(venue.position()[0] / settings.qty_step)):
                        break
                    await asyncio.sleep(0.05)
                matched = await _final_reconcile(trader)
            finally:
                stop.set()
                try:
                    await asyncio.wait_for(task, 60)
                except Exception as e:  # noqa: BLE001 - a crash of the daemon is what this counts
                    report.crashes += 1
                    report.crash_texts.append(f"{type(e).__name__}: {e}")
            report.final_matched = matched
            report.wall_s = time.monotonic() - started
            feed = driver.feed.counters() if driver.feed is not None else None
            report.reconnects = feed.reconnects if feed is not None else 0
            report.malformed = dict(feed.malformed) if feed is not None else {}
            report.engine_lots = driver.engine.position().qty
            report.venue_lots = round(venue.position()[0] / settings.qty_step)
            report.mismatches = trader.counters["mismatches"]
            report.reconciliations = trader.counters["reconciliations"]
            step = settings.qty_step
            orders = venue.orders()
            plain = [o for o in orders if not o["stopOrderType"]]
            links: dict[str, int] = {}
            for o in plain:
                links[o["orderLinkId"]] = links.get(o["orderLinkId"], 0) + 1
            report.orders = len(plain)
            report.duplicate_orders = sum(1 for n in links.values() if n > 1)
            entries = [o for o in plain if not o["reduceOnly"] and not o["orderLinkId"].startswith("flat-")]
            report.max_entry_lots = max((round(float(o["qty"]) / step) for o in entries), default=0)
            execs = venue.executions()
            report.max_position_lots = _signed_path(execs, step)
            report.executions = sum(1 for e in execs if e["execType"] == "Trade")
            report.create_faults = sum(1 for method, path, code in venue.log if path == "/v5/order/create"
                                       and (code < 0 or code in (10002, 10006)))
            served = ws.served_trades()
        finally:
            venue.stop()
    report.injected = {_ws_kind(f, plan.stale_after): 0 for f in ws_faults}
    for f in ws_faults:
        report.injected[_ws_kind(f, plan.stale_after)] += f.fired
    report.injected.update(rest_counts)
    report.outages = watch.outages
    report.outage_alerts = watch.outage_alerts
    report.gaps = len(watch.gap_spans)
    report.crashes += len(watch.crash_texts)
    report.crash_texts += watch.crash_texts
    with Store(db, readonly=True) as st:
        stored = st.load_ticks("trade")["trade_id"].tolist()
        flagged = {int(r[0]) for r in st.fetch("SELECT ts_min FROM features_1m WHERE feed_gap = 1")}
        minutes = st.fetch("SELECT count(*) FROM features_1m WHERE ts_min >= ?", (start_ms or 0,))[0][0]
        report.fills_recorded = st.fetch("SELECT count(*) FROM trades_exec WHERE run_id = 'faults'")[0][0]
    report.market_minutes = int(minutes)
    # trades served in the reorder grace before the stop are still in the client's buffer when the run ends
    # (a clean stop drops at most that much); they are counted apart, not as lost
    newest = int(served["ts"].max()) if len(served) else 0
    tail = served["ts"] > newest - FeedConfig().grace_ms
    served_ids = {int(t) for t in served["trade_id"][~tail]}
    report.ticks_served = len(served_ids)
    report.ticks_tail = int(tail.sum())
    report.ticks_stored = len(stored)
    report.ticks_doubled = len(stored) - len(set(stored))
    report.ticks_lost = len(served_ids - set(stored))
    last_minute = max(flagged | {0})
    for a, b in watch.gap_spans:
        for m in range(a // 60_000 * 60_000, b // 60_000 * 60_000 + 1, 60_000):
            if m not in flagged and m <= last_minute:
                report.gaps_unflagged.append(m)
    # recovery: each REST error and each reconnect, to the next matched reconciliation after it
    for t in sorted(watch.errors + watch.reconnected):
        after = [end for end, ok in reconciles if ok and end >= t]
        if after:
            report.recovered += 1
            report.reconcile_s.append(after[0] - t)
        else:
            report.unrecovered += 1
    report.rest_errors = len(watch.errors)
    return report


async def _final_reconcile(trader: Any) -> bool:
    assert trader._busy is not None
    async with trader._busy:
        return await trader._reconcile("end of run")
