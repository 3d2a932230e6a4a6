"""Synthetic BTCUSDT-perpetual-like market data for offline work.

``synthesize`` writes trades, L1 quotes and funding rates into a store,
block by block (one hour of ticks per block), so memory stays bounded by one
block whatever the duration.

Model
-----
Two semi-Markov chains, drawn per minute up front (cheap: 1,440 rows a day):

* market regime: BALANCE (the latent price mean-reverts around a slowly
  drifting fair value, building a value area; 25 min - 5 h), TREND (the fair
  value moves 5-14 sigma-minutes to a new level over 15 min - 3 h, and the
  following BALANCE accepts it there), FAKEOUT (for 4-11 minutes the fair
  value jumps beyond the range of the last 90 minutes, then RETURN pulls the
  price back to where it was for 10-24 minutes);
* volatility: LOW / NORMAL / HIGH (per-minute return std around 0.025 %,
  0.05 % and 0.09 %; trends and fakeouts add 30-50 %, an intraday cycle
  +-20 %), segments of 30 min - 8 h.

Event intensity follows volatility (about 15 trades and 50 quote updates
per second on average) with Hawkes-like bursts after large prints. The
microstructure (book shifts, spread refills, sweeps, hidden prints inside
the spread, sign-consistent timestamps) lives in ``engine.kernels.synth``.

Determinism: all randomness derives from ``seed`` (numpy PCG64 streams
spawned from ``SeedSequence(seed)`` for the schedule, the funding rates, the
initial book and one kernel generator seed per block), so the same seed and
duration give byte-identical ticks. Each stream is consumed sequentially, so
a shorter run is a prefix of a longer one with the same seed and start.

Blocks are generated in a worker thread (the kernel releases the GIL) while
the calling thread stores the previous block, so generation and SQLite
writes overlap; blocks are still generated and stored strictly in order.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.kernels import synth as k
from engine.store import ARCHIVE
from engine.types import FUNDING_DTYPE, QUOTE_DTYPE, TRADE_DTYPE

DEFAULT_START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
FUNDING_INTERVAL_MS = 8 * HOUR_MS  # 00:00, 08:00, 16:00 UTC
BLOCK_MS = HOUR_MS

RATE_REF = 0.044  # clock events per ms at sigma = SIGMA_REF (before bursts)
SIGMA_REF = 0.0005  # per-minute return std of a normal-volatility minute
PRICE_LOW, PRICE_HIGH = 65_000.0, 95_000.0  # initial price range, USDT

# volatility states: (sigma low, sigma high) per sqrt(minute), drawn per segment
VOL_LEVELS = ((0.00020, 0.00030), (0.00040, 0.00058), (0.00075, 0.00105))
VOL_NEXT = np.array([[0.0, 0.8, 0.2], [0.5, 0.0, 0.5], [0.25, 0.75, 0.0]])
REG_SIGMA_MULT = {k.REG_BALANCE: 1.0, k.REG_TREND: 1.3, k.REG_FAKE_UP: 1.5,
                  k.REG_FAKE_DOWN: 1.5, k.REG_RETURN: 1.2}
REG_KAPPA = {k.REG_BALANCE: 0.05, k.REG_TREND: 0.12, k.REG_FAKE_UP: 0.6,
             k.REG_FAKE_DOWN: 0.6, k.REG_RETURN: 0.3}


@dataclass
class SynthReport:
    """What one ``synthesize`` call generated."""

    days: float
    seed: int
    trades: int
    quotes: int
    seconds: float
    first_ts: int
    last_ts: int
    funding: int = 0

    def summary(self) -> str:
        events = self.trades + self.quotes
        rate = events / self.seconds if self.seconds > 0 else float("inf")
        span_s = max(1.0, (self.last_ts - self.first_ts) / 1000.0)
        return (
            f"synth: {self.days:g} day(s), seed {self.seed}: {self.trades} trades "
            f"({self.trades / span_s:.1f}/s), {self.quotes} quotes ({self.quotes / span_s:.1f}/s), "
            f"{self.funding} funding rates, ts {self.first_ts}..{self.last_ts}; "
            f"{self.seconds:.2f} s, {rate / 1e6:.2f} M events/s"
        )


def _segments(rng: np.random.Generator, n_min: int) -> tuple[np.ndarray, ...]:
    """Per-minute regime code, segment-start flag, direction draw, overshoot, trend speed."""
    reg = np.zeros(n_min, np.int64)
    new = np.zeros(n_min, np.float64)
    u = np.zeros(n_min, np.float64)
    over = np.zeros(n_min, np.float64)
    speed = np.zeros(n_min, np.float64)  # sigma-minutes per minute
    state = k.REG_BALANCE
    i = 0
    while i < n_min:
        if state == k.REG_BALANCE:
            d = int(np.clip(rng.lognormal(math.log(75.0), 0.5), 25, 300))
            nxt = k.REG_TREND if rng.random() < 0.4 else (
                k.REG_FAKE_UP if rng.random() < 0.5 else k.REG_FAKE_DOWN)
        elif state == k.REG_TREND:
            d = int(np.clip(rng.lognormal(math.log(45.0), 0.5), 15, 180))
            speed[i:i + d] = rng.uniform(5.0, 14.0) / d
            nxt = k.REG_BALANCE
        elif state in (k.REG_FAKE_UP, k.REG_FAKE_DOWN):
            d = int(rng.integers(4, 12))
            over[i:i + d] = rng.uniform(0.5, 2.0)
            nxt = k.REG_RETURN
        else:
            d = int(rng.integers(10, 25))
            nxt = k.REG_BALANCE
        reg[i:i + d] = state
        new[i] = 1.0
        u[i:i + d] = rng.random()
        i += d
        state = nxt
    return reg, new, u, over, speed


def _vol_levels(rng: np.random.Generator, n_min: int) -> np.ndarray:
    """Per-minute base sigma from the LOW / NORMAL / HIGH chain."""
    sig = np.zeros(n_min, np.float64)
    state = 1
    i = 0
    while i < n_min:
        d = int(np.clip(rng.lognormal(math.log(120.0), 0.6), 30, 480))
        lo, hi = VOL_LEVELS[state]
        sig[i:i + d] = rng.uniform(lo, hi)
        i += d
        state = int(rng.choice(3, p=VOL_NEXT[state]))
    return sig


def build_schedule(seed_reg: np.random.SeedSequence, seed_vol: np.random.SeedSequence,
                   n_min: int, start_ms: int) -> np.ndarray:
    """The per-minute parameter table the kernel reads (``P_*`` columns)."""
    reg, new, u, over, speed = _segments(np.random.Generator(np.random.PCG64(seed_reg)), n_min)
    base = _vol_levels(np.random.Generator(np.random.PCG64(seed_vol)), n_min)
    minute_abs = start_ms + np.arange(n_min, dtype=np.int64) * MINUTE_MS
    hour = (minute_abs % DAY_MS) / HOUR_MS
    season = 1.0 + 0.2 * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0)  # busiest around 15:00 UTC
    mult = np.array([REG_SIGMA_MULT[int(r)] for r in range(5)])[reg]
    sigma = np.clip(base * mult * season, 0.00015, 0.0015)
    params = np.zeros((n_min, k.P_N), np.float64)
    params[:, k.P_REG] = reg
    params[:, k.P_SIG] = sigma
    params[:, k.P_RATE] = RATE_REF * (sigma / SIGMA_REF) ** 0.7
    params[:, k.P_VEL] = speed * sigma
    params[:, k.P_KAPPA] = np.array([REG_KAPPA[int(r)] for r in range(5)])[reg]
    params[:, k.P_NEWSEG] = new
    params[:, k.P_U] = u
    params[:, k.P_OVER] = over
    params[:, k.P_WIDE] = np.clip(0.05 + 100.0 * sigma, 0.06, 0.20)
    params[:, k.P_REFILL] = 40.0 * np.sqrt(sigma / SIGMA_REF)
    return params


def funding_rates(seed_fund: np.random.SeedSequence, start_ms: int, end_ms: int) -> np.ndarray:
    """Rates at every 00/08/16 UTC boundary in [start_ms, end_ms): AR(1) around 1 bp."""
    rng = np.random.Generator(np.random.PCG64(seed_fund))
    first = -(-start_ms // FUNDING_INTERVAL_MS) * FUNDING_INTERVAL_MS
    ts = np.arange(first, end_ms, FUNDING_INTERVAL_MS, dtype=np.int64)
    out = np.zeros(len(ts), FUNDING_DTYPE)
    out["ts"] = ts
    rate = 0.0001 + 0.0001 * rng.standard_normal()
    for i in range(len(ts)):
        rate = 0.0001 + 0.7 * (rate - 0.0001) + 0.00008 * rng.standard_normal()
        rate = float(np.clip(rate, -0.00375, 0.00375))
        out["rate"][i] = round(rate, 8)
    return out


def _initial_state(rng: np.random.Generator, tick_size: float, lpb: float, start_ms: int):
    sf = np.zeros(k.F_N, np.float64)
    si = np.zeros(k.I_N, np.int64)
    hist = np.zeros((k.HIST_N, 2), np.float64)
    price = rng.uniform(PRICE_LOW, PRICE_HIGH)
    x = price / tick_size
    sf[k.F_X] = sf[k.F_MU] = sf[k.F_MU_SAVED] = x
    sf[k.F_REFILL] = -1.0
    sf[k.F_CENTER] = 0.5 * (PRICE_LOW + PRICE_HIGH) / tick_size
    sf[k.F_HALF] = 0.5 * (PRICE_HIGH - PRICE_LOW) / tick_size
    si[k.I_BID] = int(math.floor(x))
    si[k.I_ASK] = si[k.I_BID] + 1
    si[k.I_BID_SZ] = max(1, int(0.5 * lpb * rng.lognormal(0.0, 1.0)))
    si[k.I_ASK_SZ] = max(1, int(0.5 * lpb * rng.lognormal(0.0, 1.0)))
    si[k.I_LQ_TS] = -1
    si[k.I_PQ_BID] = si[k.I_PQ_ASK] = -1
    si[k.I_MIN] = -1
    si[k.I_TRADE_ID] = (start_ms // 1000) * 1_000_000 + 1
    return sf, si, hist


def synthesize(store: Any, settings: Any, days: float, seed: int,
               start_ms: int | None = None, progress: Callable[[float, float], None] | None = None) -> SynthReport:
    """Generate ``days`` of trades, quotes and funding rates into ``store``.

    Args:
        store: an ``engine.store.Store`` bound to the settings' instrument.
        settings: supplies ``tick_size`` and ``qty_step``.
        days: duration (fractions allowed; 0.05 is 72 minutes).
        seed: all randomness derives from it.
        start_ms: first tick time, ms UTC (default 2026-01-05 00:00 UTC).
        progress: called as ``progress(done_ms, total_ms)`` of event time after each stored block.

    Returns:
        A SynthReport with counts, first/last tick time and wall time.
    """
    if not days > 0:
        raise ValueError(f"days must be positive, got {days}")
    t0 = time.perf_counter()
    start = DEFAULT_START_MS if start_ms is None else int(start_ms)
    total_ms = int(round(days * DAY_MS))
    n_min = max(1, -(-total_ms // MINUTE_MS))
    lpb = 1.0 / settings.qty_step
    ss_reg, ss_vol, ss_fund, ss_init, ss_blocks = np.random.SeedSequence(seed).spawn(5)
    params = build_schedule(ss_reg, ss_vol, n_min, start)
    sf, si, hist = _initial_state(np.random.Generator(np.random.PCG64(ss_init)),
                                  settings.tick_size, lpb, start)
    block_rng = np.random.Generator(np.random.PCG64(ss_blocks))
    rs = np.zeros(1, np.uint64)

    # buffers sized for the busiest block; a fuller block is cut into pieces
    per_min = params[:, k.P_RATE] * MINUTE_MS
    mins_per_block = BLOCK_MS // MINUTE_MS
    busiest = max(float(per_min[i:i + mins_per_block].sum()) for i in range(0, n_min, mins_per_block))
    trades_buf = np.zeros(int(busiest * 0.8) + 4 * k.MARGIN, TRADE_DTYPE)
    quotes_buf = np.zeros(int(busiest * 2.0) + 4 * k.MARGIN, QUOTE_DTYPE)

    def generate(block_end: int) -> list[tuple[np.ndarray, np.ndarray]]:
        # one block: the kernel runs without the GIL while the caller stores the previous one
        rs[0] = np.uint64(block_rng.integers(0, 2**63, dtype=np.int64))
        sf[k.F_HAS_GAUSS] = 0.0
        parts = []
        done = False
        while not done:
            nt, nq, done = k.synth_block(rs, sf, si, hist, params, start, float(block_end), lpb,
                                         trades_buf, quotes_buf)
            parts.append((trades_buf[:nt].copy(), quotes_buf[:nq].copy()))
        return parts

    source = f"synth:seed={seed}"
    store.claim_retention(ARCHIVE)  # a history made on purpose: no live retention purge
    n_trades = n_quotes = 0
    first_ts: int | None = None
    last_ts = start
    block_ends = list(range(BLOCK_MS, total_ms, BLOCK_MS)) + [total_ms]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth") as pool:
        pending = pool.submit(generate, block_ends[0])
        for i in range(len(block_ends)):
            parts = pending.result()
            if i + 1 < len(block_ends):
                pending = pool.submit(generate, block_ends[i + 1])
            for trades, quotes in parts:
                store.append_ticks("trade", trades, source)
                store.append_ticks("quote", quotes, source)
                n_trades += len(trades)
                n_quotes += len(quotes)
                for arr in (trades, quotes):
                    if len(arr):
                        t_first = int(arr["ts"][0])
                        first_ts = t_first if first_ts is None else min(first_ts, t_first)
                        last_ts = max(last_ts, int(arr["ts"][-1]))
            del parts
            if progress is not None:
                progress(block_ends[i], total_ms)

    funding = funding_rates(ss_fund, start, start + total_ms)
    if len(funding):
        store.append_funding(funding)
    return SynthReport(days=days, seed=seed, trades=n_trades, quotes=n_quotes,
                       seconds=time.perf_counter() - t0,
                       first_ts=start if first_ts is None else first_ts, last_ts=last_ts,
                       funding=len(funding))


# --- cached sessions (the demo, the exchange simulator) ----------------------------


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pbdtui`` or ``~/.cache/pbdtui``: generated sessions, archives, numba's cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pbdtui"


def _session_ok(path: Path, settings: Any, days: float) -> bool:
    """The file holds a complete session for this instrument."""
    import apsw

    from engine.store import Store, StoreError, instrument_of

    if not path.is_file():
        return False
    try:
        with Store(path, instrument_of(settings), readonly=True) as store:
            span = store.tick_range()
    except (StoreError, apsw.Error):  # another instrument, or not a database at all
        return False
    return span is not None and span[1] - span[0] >= days * DAY_MS - 2 * 60_000


def session_database(settings: Any, name: str, days: float, seed: int, directory: Path | None = None,
                     log: Callable[[str], Any] | None = None) -> Path:
    """``<directory>/<name>.db`` holding ``days`` of simulated market: reused when complete, else generated.

    Generated under a temporary name and renamed into place when complete,
    so an interrupted run never leaves a file that looks usable; the cache
    folder is owner-only.
    """
    from engine.private import private_dir
    from engine.store import Store, instrument_of

    directory = cache_dir() if directory is None else Path(directory)
    path = directory / f"{name}.db"
    if _session_ok(path, settings, days):
        return path
    private_dir(directory, tighten=directory == cache_dir())
    tmp = directory / f".{name}.{os.getpid()}.tmp.db"
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    if log is not None:
        log(f"pbdtui: generating a simulated session ({days:g} days, seed {seed}) into {path}")
    with Store(tmp, instrument_of(settings)) as store:
        report = synthesize(store, settings, days=days, seed=seed)
    if log is not None:
        log(report.summary())
    # a stale WAL next to the old file would be replayed into the new one
    for p in (Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    os.replace(tmp, path)
    with contextlib.suppress(FileNotFoundError):
        os.replace(f"{tmp}-wal", f"{path}-wal")
    return path
