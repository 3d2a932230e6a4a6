"""Kill -9 harness for ``pbdtui run --live``: shared by ``test_crash.py`` (short) and ``bench/bench_crash.py`` (long).

One long-lived market in this process: the loopback public WebSocket
(``record=True``: every trade served, with the wall time it was written to
the socket) and the loopback Bybit REST exchange filling at that stream's
quotes, both on 127.0.0.1, on an event loop of their own thread. The daemon
is the real command, ``python -m pbdtui.cli run --live``, a process of its
own: it is started, left to record and trade for a seeded random time, and
killed with SIGKILL, again and again. While it is down the venue's market
waits (``pause_when_idle``), as a stream would go on without us.

``Crash.cycle()`` is one start + kill, with the checks of one kill:

* ``pragma integrity_check`` of the database right after the kill;
* ticks lost: the trades the daemon had received (its feed's delivered
  count, sampled every ``SAMPLE_S`` through the control socket: the stream
  arrives in the order served) but the database does not hold, aged by the
  kill; the recorder commits at least every second, so the oldest may be at
  most 1000 ms old. Frames still in the socket's buffers were never received
  and are not counted (the stream does not resend them: a gap, marked);
* position protected: at the kill, and again just before the restart, an
  open position on the exchange has its stop (``stopLoss`` and an
  ``Untriggered`` conditional order);
* after the restart (``wait_live``): the start reconciliation matched, the
  engine's position equals the exchange's, and every execution the
  exchange made before the kill is in ``trades_exec`` exactly once
  (``exec_id``), recovered by the restart if the dead process had not
  committed it.

Times: restart = spawn to control socket + start reconciliation + feed
subscribed; reconciliation = spawn to the start reconciliation's end (the
daemon's own ``start_reconciliation.wall_ms``).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from engine.config import Settings
from engine.store import Store, instrument_of

REPO = Path(__file__).resolve().parents[2]
KEY = "crash-KEY-5d1f"
SECRET = "crash-SECRET-q8Rw3Zp0"
START = 1_767_571_200_000  # 2026-01-05 00:00 UTC
# a strategy that trades often: a 10-minute window, no cooldown, short holds, loose confirmations; a restart's
# outage (a second or two of wall time, half a minute of market at 30x) is not a feed gap, so a restarted daemon
# may enter at its first minute (a gap minute is never entered on)
CONFIG = {"rolling_window_minutes": 10, "min_window_coverage": 0.0, "cooldown_minutes": 0, "max_hold_minutes": 3,
          "qimb_entry_min": 0.0, "qimb_breakout_min": 0.0, "accept_outside_k": 2, "max_daily_loss": 1e9,
          "feed_stale_halt_ms": 90_000}
SETTINGS = Settings().replace(**CONFIG)
LOST_BUDGET_MS = 1000  # the recorder's promise: at most one second of received ticks
SAMPLE_S = 0.05  # how often the daemon's delivered-trade counter is read


def make_source(path: Path, minutes: float, seed: int = 21) -> Path:
    """A simulated session of ``minutes`` (the market the venue serves)."""
    from engine.synth import synthesize

    with Store(path, instrument_of(SETTINGS)) as store:
        synthesize(store, SETTINGS, days=minutes / 1440, seed=seed, start_ms=START)
    return path


def prefill(db: Path, source: Path, cut: int) -> None:
    """``db`` holds the source's ticks before ``cut``: the first daemon warm-starts past the window (trades at once)."""
    with Store(source, readonly=True) as src, Store(db, instrument_of(SETTINGS)) as dst:
        for kind in ("trade", "quote"):
            rows = src.load_ticks(kind)
            dst.append_ticks(kind, rows[rows["ts"] < cut], "copy")


def write_config(path: Path) -> Path:
    path.write_text("".join(f"{k}: {v}\n" for k, v in CONFIG.items()))
    return path


class Market:
    """The loopback stream and REST exchange, in this process, on their own event loop thread."""

    def __init__(self, source: Path, start_ms: int, speed: float, seed: int = 3):
        from loopback.bybit_rest import BybitRestVenue
        from loopback.bybit_ws import BybitPublicVenue
        from loopback.source import StoreSource

        self.loop = asyncio.new_event_loop()
        self.ws = BybitPublicVenue(StoreSource(source, start_ms), speed=speed, record=True, seed=seed)
        self.ws_url = self.loop.run_until_complete(self.ws.start())
        self.thread = threading.Thread(target=self.loop.run_forever, name="crash-market", daemon=True)
        self.thread.start()
        self.rest = BybitRestVenue(api_key=KEY, api_secret=SECRET, quote=self.ws.quote,
                                   market_clock=self.ws.market_ms).start()
        self.rest_url = self.rest.url

    def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the market's loop thread (the venue's state is only touched there)."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def served(self) -> tuple[np.ndarray, np.ndarray]:
        """(trade ids, wall ms written) of every trade served so far."""
        return self.call(lambda: (self.ws.served_trades()["trade_id"].copy(), self.ws.served_trade_times()))

    def subscribed(self) -> bool:
        return self.call(lambda: any(c.alive and c.topics for c in self.ws.conns))

    def finished(self) -> bool:
        return self.ws.finished.is_set()

    def protection(self) -> tuple[int, bool]:
        """(signed lots on the exchange, protected): flat, or a stop both on the position and as a live order."""
        self.rest.check_triggers()
        size, _avg, stop, _tp = self.rest.position()
        lots = round(size / 0.001)
        if lots == 0:
            return 0, True
        stops = [o for o in self.rest.orders() if o["stopOrderType"] == "StopLoss" and o["orderStatus"] == "Untriggered"]
        return lots, bool(stop) and bool(stops)

    def trade_exec_ids(self) -> list[str]:
        return [e["execId"] for e in self.rest.executions() if e["execType"] == "Trade"]

    def close(self) -> None:
        self.rest.stop()
        asyncio.run_coroutine_threadsafe(self.ws.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class KillRecord:
    """What one kill left behind, and how the restart after it went."""

    n: int
    phase: str  # "starting" (killed before it was live) or "live"
    lived_s: float  # spawn to kill
    integrity: str = ""
    lost_trades: int = 0
    lost_max_ms: int = 0  # age of the oldest lost trade at the kill
    commit_lag_max_ms: int = 0  # while it ran: the longest a received trade waited for its commit
    venue_lots: int = 0
    protected: bool = True  # at the kill and until the restart
    restart_s: float = float("nan")  # the next start: spawn to live
    reconcile_s: float = float("nan")
    reconciled_qty: int | None = None  # the engine's position after the next start
    exec_lost: int = 0  # exchange executions before the kill missing from trades_exec after the restart
    exec_dup: int = 0


@dataclass
class Crash:
    """The kill loop on one database (see the module doc)."""

    market: Market
    workdir: Path
    seed: int = 1
    live_for: tuple[float, float] = (0.2, 3.0)  # s alive after going live before the kill (uniform)
    early_kill: float = 0.15  # share of kills at a random instant of the start (warm start, reconciliation)
    early_for: tuple[float, float] = (0.3, 4.0)  # s after the spawn of an early kill (uniform)
    in_trade: float = 0.0  # share of the other kills that wait (up to in_trade_wait s) for an open position first
    in_trade_wait: float = 10.0
    records: list[KillRecord] = field(default_factory=list)
    final_status: dict[str, Any] | None = None
    final_lots: int = 0  # the exchange's position when final_status was read
    proc: subprocess.Popen | None = None
    spawned: float = 0.0
    spawned_wall_ms: int = 0
    runs: int = 0

    def __post_init__(self) -> None:
        self._execs_at_kill: list[str] = []
        self._samples: list[tuple[float, int, int]] = []
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()
        self._served_at_spawn = 0
        self.db = self.workdir / "live.db"
        self.config = write_config(self.workdir / "config.yaml")
        self.rng = random.Random(self.seed)
        self.env = {**os.environ, "BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET,
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                    "XDG_RUNTIME_DIR": str(self.workdir / "run"), "XDG_STATE_HOME": str(self.workdir / "state")}
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)

    # --- the daemon -------------------------------------------------------------------------------

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "pbdtui.cli", "run", "--db", str(self.db), "--live", "--ws-url",
                self.market.ws_url, "--rest-url", self.market.rest_url, "--config", str(self.config)]

    def spawn(self) -> subprocess.Popen:
        self._stop_sampler()
        self._served_at_spawn = len(self.market.served()[0])
        self.runs += 1
        out = open(self.logs / f"run-{self.runs:03d}.out", "wb")  # noqa: SIM115 - the child owns it
        err = open(self.logs / f"run-{self.runs:03d}.err", "wb")  # noqa: SIM115
        self.spawned, self.spawned_wall_ms = time.monotonic(), int(time.time() * 1000)
        self.proc = subprocess.Popen(self.argv(), env=self.env, cwd=self.workdir, stdout=out, stderr=err)
        out.close()
        err.close()
        self._samples = []
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, args=(self._sampling, self._samples),
                                         name="crash-sampler", daemon=True)
        self._sampler.start()
        return self.proc

    def _sample(self, stop: threading.Event, samples: list[tuple[float, int, int]]) -> None:
        """(wall ms a status request was sent, trades delivered by the feed, trades committed) every ``SAMPLE_S``.

        The stream is delivered in the order it is served, so the daemon's delivered count
        says which served trades it had received, and (to within a sample) when.
        """
        from engine.runtime.control import ControlClient, ControlError, socket_path

        client = ControlClient(socket_path(self.db), timeout=2)
        while not stop.wait(SAMPLE_S):
            sent = time.time() * 1000
            try:
                answer = client.request("status")
            except (ControlError, OSError, ValueError):
                continue
            samples.append((sent, int(answer.get("feed", {}).get("trades", 0)),
                            int(answer.get("recorder", {}).get("trades", 0))))

    def _stop_sampler(self) -> None:
        if getattr(self, "_sampler", None) is not None:
            self._sampling.set()
            self._sampler.join(10)
            self._sampler = None

    def status(self) -> dict[str, Any] | None:
        from engine.runtime.control import ControlClient, ControlError, socket_path

        try:
            return ControlClient(socket_path(self.db), timeout=5).request("status")["status"]
        except (ControlError, OSError, ValueError):
            return None

    def wait_live(self, timeout: float = 180.0) -> dict[str, Any]:
        """Until the daemon has reconciled at start and its feed is subscribed; its status."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) before it was live: "
                                     f"{(self.logs / f'run-{self.runs:03d}.err').read_text()[-3000:]}")
            st = self.status()
            if st is not None and st["last_reconciliation"] is not None and self.market.subscribed():
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon was not live after {timeout:.0f} s (status {st})")
            time.sleep(0.05)  # polling another process: no event to await

    def wait_position(self, timeout: float) -> bool:
        """Until the exchange holds a position (the daemon entered, or still holds what it adopted); False at timeout."""
        deadline = time.monotonic() + timeout
        while not round(self.market.rest.position()[0] / 0.001):
            if time.monotonic() > deadline or self.proc is None or self.proc.poll() is not None:
                return False
            time.sleep(0.05)  # another process's order on the venue: polled
        return True

    def kill(self) -> float:
        """SIGKILL; returns the wall time (epoch ms) it was sent."""
        assert self.proc is not None
        t = time.time() * 1000
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._stop_sampler()
        return t

    def stop(self) -> int:
        """SIGTERM (a clean stop); the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        self._stop_sampler()
        return code

    # --- one kill -----------------------------------------------------------------------------------

    def cycle(self) -> KillRecord:
        """Start (checking the restart after the previous kill), live a random while, SIGKILL, check the remains."""
        pending = [r for r in self.records if r.reconciled_qty is None and r.exec_lost < 0]
        if self.records:
            lots, ok = self.market.protection()  # the whole time it was down: nothing changes the venue meanwhile
            last = self.records[-1]
            last.protected = last.protected and ok and lots == last.venue_lots
        self.spawn()
        early = self.rng.random() < self.early_kill
        in_trade = not early and self.rng.random() < self.in_trade
        if early:
            time.sleep(self.rng.uniform(*self.early_for))  # a random instant of the start: the kill is the event
            live = self.status()
            phase = "live" if live is not None and live["last_reconciliation"] and self.market.subscribed() \
                else "starting"
            if phase == "live":
                self.after_restart(pending, live)
        else:
            self.after_restart(pending, self.wait_live())
            phase = "live"
            if in_trade:  # a kill while a position is open: its stop must hold while the daemon is down
                self.wait_position(self.in_trade_wait)
            time.sleep(self.rng.uniform(*self.live_for))  # the random lifetime: nothing to await
        t_kill = self.kill()
        rec = KillRecord(n=len(self.records) + 1, phase=phase, lived_s=time.monotonic() - self.spawned)
        self.records.append(rec)
        rec.integrity = integrity(self.db)
        rec.lost_trades, rec.lost_max_ms = self.lost(t_kill)
        rec.venue_lots, rec.protected = self.market.protection()
        rec.exec_lost, rec.exec_dup = -1, -1  # known after the restart
        self._execs_at_kill = self.market.trade_exec_ids()
        return rec

    def after_restart(self, pending: list[KillRecord], st: dict[str, Any]) -> None:
        """The kills since the last live start, checked against this start's status and database."""
        if not pending:
            return
        rec = st["start_reconciliation"]  # the later ones may follow trades of this run
        last = pending[-1]
        last.restart_s = time.monotonic() - self.spawned
        last.reconcile_s = (rec["wall_ms"] - self.spawned_wall_ms) / 1000
        # everything the exchange executed before the kill is in trades_exec once: the restart recovers what the
        # dead process had not committed (the recorder commits a fill at once: a short wait)
        deadline = time.monotonic() + 10
        while True:
            lost, dup = exec_diff(self.db, self._execs_at_kill)
            if (not lost and not dup) or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the daemon's commit in another process: polled
        # the start reconciliation's own figure: by the time the status is read the daemon may have traded on
        qty = rec["local_qty"]
        for r in pending:
            r.reconciled_qty = qty if rec["matched"] else None
            r.exec_lost, r.exec_dup = lost, dup

    def wait_until(self, condition: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc is not None and self.proc.poll() is None, f"the daemon exited waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)  # another process's progress: polled

    def lost(self, t_kill_ms: float) -> tuple[int, int]:
        """Trades the daemon had received but the database does not hold, and the age of the oldest at the kill.

        Received: the first ``delivered`` trades served to this run (the daemon's own feed counter,
        sampled). A lost trade's age is reckoned from the request time of the sample *before* the one
        that first counted it, or the receive time of the stored trade just before it, whichever is later:
        an upper bound.
        """
        ids, _at = self.market.served()
        samples = [(t, n) for t, n, _ in self._samples if t < t_kill_ms]
        self.records[-1].commit_lag_max_ms = commit_lag(self._samples, self.spawned_wall_ms)
        if not samples:
            return 0, 0
        base = self._served_at_spawn
        delivered = samples[-1][1]
        received = ids[base:base + delivered]
        stored = stored_trades(self.db)
        missing = np.flatnonzero(~np.isin(received, stored["trade_id"]))
        if not len(missing):
            return 0, 0
        times = np.array([t for t, _ in samples])
        counts = np.array([n for _, n in samples])
        first = int(missing[0])
        # two lower bounds of when the oldest lost trade arrived; the later one is the tighter: the request time of
        # the sample before the one that first counted it, and the receive time (local_ts) of the trade just
        # before it in the stream, which was stored (TCP keeps the order)
        k = int(np.searchsorted(counts, first + 1))
        received_after = times[k - 1] if k > 0 else self.spawned_wall_ms
        if first > 0:
            before = stored["local_ts"][stored["trade_id"] == received[first - 1]]
            if len(before):
                received_after = max(received_after, float(before.max()))
        return len(missing), int(t_kill_ms - received_after)


def commit_lag(samples: list[tuple[float, int, int]], spawned_ms: float) -> int:
    """The longest a delivered trade waited for its commit, over the samples (ms, an upper bound)."""
    if not samples:
        return 0
    times = np.array([t for t, _, _ in samples])
    delivered = np.array([d for _, d, _ in samples])
    worst = 0
    for t, d, c in samples:
        if c >= d:
            continue
        k = int(np.searchsorted(delivered, c + 1))  # the first sample that counted the oldest uncommitted trade
        worst = max(worst, int(t - (times[k - 1] if k > 0 else spawned_ms)))
    return worst


def integrity(db: Path) -> str:
    """``pragma integrity_check`` (a read-write open, as the restart does: the WAL is recovered)."""
    conn = apsw.Connection(str(db))
    try:
        conn.setbusytimeout(10_000)
        return ";".join(str(r[0]) for r in conn.execute("pragma integrity_check"))
    finally:
        conn.close()


def stored_trades(db: Path) -> np.ndarray:
    with Store(db, readonly=True) as st:
        return st.load_ticks("trade")


def exec_diff(db: Path, exec_ids: list[str]) -> tuple[int, int]:
    """(executions of ``exec_ids`` missing from ``trades_exec``, rows recorded more than once)."""
    with Store(db, readonly=True) as st:
        rows = [r[0] for r in st.fetch("SELECT exec_id FROM trades_exec WHERE exec_id IS NOT NULL")]
    counts = Counter(rows)
    return sum(1 for e in exec_ids if e not in counts), sum(n - 1 for n in counts.values() if n > 1)
