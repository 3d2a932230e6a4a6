"""Backtest driver: the same engine over stored data, plus its report.

Mode ``tick`` (spec 9.1 mode 1, the default) replays stored trades, quotes
and funding through the live engine a day at a time and also rewrites
``bars_1m``/``features_1m`` so every trade can be explained from the stored
tables. Mode ``bar`` (mode 2) runs the same setups over ``bars_1m`` and
``features_1m`` with a bar fill model.

The run id is a digest of the mode, the settings and the data range, so the
same input and config write the same rows; a rerun replaces its own rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.engine import Engine, concat
from engine.features import write_minute_tables
from engine.private import private_dir, write_private_text
from engine.records import fill_rows, signal_rows, units_of
from engine.report import decision_log, headline, report, text_report, trades_csv
from engine.store import (
    SIGNALS_COLUMNS,
    TRADES_EXEC_COLUMNS,
    Store,
    StoreError,
    instrument_of,
)
from engine.timerange import range_text
from engine.types import BAR_DTYPE, FEATURE_DTYPE, REASON_NAMES, SHAPE_NAMES, SHAPE_NONE

decisions_log = logging.getLogger("pbdtui.decisions")  # `pbdtui -v backtest` prints every decision

_REASON_CODES = {name: code for code, name in REASON_NAMES.items()}
_SHAPE_CODES = {name: code for code, name in SHAPE_NAMES.items() if name}


@dataclasses.dataclass
class BacktestResult:
    run_id: str
    mode: str
    signals: np.ndarray
    fills: np.ndarray
    features: np.ndarray
    bars: np.ndarray
    events: int
    seconds: float
    last_mid2: int
    open_position: int
    open_entry_px: int
    window: tuple[int | None, int | None] = (None, None)  # the requested --from/--to (ms; None: open)


def run_id_for(settings: Any, mode: str, data_range: tuple[int, int] | None) -> str:
    blob = json.dumps([mode, dataclasses.asdict(settings), data_range], sort_keys=True)
    return f"{mode}-{hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()}"


def _data_range(store: Store, start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    """The first and last stored tick in the range; no tick to run on is an error."""
    rng = store.tick_range(start_ms, end_ms)
    if rng is None and (start_ms is not None or end_ms is not None):
        raise StoreError(f"{store.path}: no ticks {range_text(start_ms, end_ms)}")
    if rng is None:
        raise StoreError(f"{store.path}: no stored ticks: import or synthesize data first (pbdtui data --help)")
    return rng


def _slices_with_funding(store: Store, with_trades: bool = True, start_ms: int | None = None,
                         end_ms: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Stored tick slices, each with the funding records up to its last event: (trades, quotes, funding, last_ts).

    Funding records after the last tick are dropped: they would only extend the run;
    so are those before ``start_ms``, which belong to data the run does not see.
    """
    funding = store.load_funding()
    f_next = 0 if start_ms is None else int(np.searchsorted(funding["ts"], start_ms, "left"))
    for trades, quotes in store.iter_event_slices(with_trades, start_ms, end_ms):
        last = max(int(trades["ts"][-1]) if len(trades) else -1, int(quotes["ts"][-1]) if len(quotes) else -1)
        f_end = int(np.searchsorted(funding["ts"], last, "right"))
        yield trades, quotes, funding[f_next:f_end], last
        f_next = f_end


def run_tick(store: Store, settings: Any, progress: Callable[[float, float], None] | None = None,
             start_ms: int | None = None, end_ms: int | None = None) -> BacktestResult:
    """Mode 1 over the stored ticks with ``start_ms <= ts < end_ms`` (all when None), chunk by chunk.

    ``progress(done, total)`` gets the event time covered so far, in ms.
    """
    started = time.perf_counter()
    rng = _data_range(store, start_ms, end_ms)
    engine = Engine(settings, trading=True)
    parts = []
    events = 0
    for trades, quotes, funding, last in _slices_with_funding(store, True, start_ms, end_ms):
        parts.append(engine.feed(trades, quotes, funding))
        events += len(trades) + len(quotes)
        if progress is not None:
            progress(last - rng[0], max(1, rng[1] - rng[0]))
    parts.append(engine.finish())
    out = concat(parts)
    pos = engine.position()
    return BacktestResult(
        run_id=run_id_for(settings, "tick", rng), mode="tick", signals=out.signals, fills=out.fills,
        features=out.features, bars=out.bars, events=events, seconds=time.perf_counter() - started,
        last_mid2=pos.bid + pos.ask, open_position=pos.position, open_entry_px=pos.entry_px,
        window=(start_ms, end_ms),
    )


def run_tick_on_minutes(store: Store, settings: Any, bars: np.ndarray, feats: np.ndarray,
                        start_ms: int | None = None, end_ms: int | None = None) -> BacktestResult:
    """Mode 1 with the minutes precomputed (``engine.features.compute_minutes``, same feature settings and range).

    Replays only quotes and funding through the strategy (``kernels.minutepass``);
    signals, fills and the report equal ``run_tick``'s for the same settings.
    """
    started = time.perf_counter()
    rng = _data_range(store, start_ms, end_ms)
    engine = Engine(settings, hist_bins=16, fifo_size=16)  # the minutes are given: no profile to build
    engine.attach_minutes(bars, feats)
    parts = []
    events = store.count_ticks("trade", start_ms, end_ms)  # counted, not read: fills only need quotes
    for _, quotes, fund, _ in _slices_with_funding(store, False, start_ms, end_ms):
        events += len(quotes)
        parts.append(engine.feed_minutes(quotes, fund))
    parts.append(engine.finish())
    out = concat(parts)
    pos = engine.position()
    return BacktestResult(
        run_id=run_id_for(settings, "tick", rng), mode="tick", signals=out.signals, features=feats, bars=bars,
        fills=out.fills, events=events, seconds=time.perf_counter() - started,
        last_mid2=pos.bid + pos.ask, open_position=pos.position, open_entry_px=pos.entry_px,
        window=(start_ms, end_ms),
    )


def load_minute_records(store: Store, settings: Any, start_ms: int | None = None, end_ms: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``bars_1m`` + ``features_1m`` rows with ``start_ms <= ts_min < end_ms`` as engine records (ticks and lots)."""
    rows = store.fetch(
        "SELECT b.ts_min, b.open, b.high, b.low, b.close, b.volume, b.bid_px_close, b.ask_px_close, "
        "b.bid_sz_close, b.ask_sz_close, f.bin_width, f.poc, f.vah, f.val, f.of_1m, "
        "f.ambiguous_trade_frac_1m, f.qimb_close, f.ready_code, b.n_trades, f.dev_vah, f.dev_val, "
        "f.prev_day_vah, f.prev_day_val, f.naked_poc_above, f.naked_poc_below, f.roll_vah, f.roll_val, f.shape "
        "FROM bars_1m b JOIN features_1m f USING (ts_min) WHERE b.ts_min>=? AND b.ts_min<? ORDER BY b.ts_min",
        (-(2**62) if start_ms is None else start_ms, 2**62 if end_ms is None else end_ms),
    )
    if not rows and (start_ms is not None or end_ms is not None):
        raise StoreError(f"{store.path}: no bars_1m/features_1m rows {range_text(start_ms, end_ms)}: run "
                         f"`pbdtui features --db {store.path}` over that range first")
    if not rows:
        raise StoreError(f"{store.path}: no bars_1m/features_1m rows: run `pbdtui features --db {store.path}` first")
    n = len(rows)
    bars = np.zeros(n, dtype=BAR_DTYPE)
    feats = np.zeros(n, dtype=FEATURE_DTYPE)
    tick, step = settings.tick_size, settings.qty_step

    def ticks(x: float | None) -> int:
        return 0 if x is None else int(round(x / tick))

    for i, r in enumerate(rows):
        (ts, o, h, lo, c, vol, bid, ask, bsz, asz, width, poc, vah, val, of, amb, qimb, ready, ntr,
         dvah, dval, pvah, pval, n_up, n_dn, rvah, rval, shape) = r
        vol_lots = int(round(vol / step))
        bars[i] = (ts, ticks(o), ticks(h), ticks(lo), ticks(c), vol_lots, 0.0, ntr, 0 if bid is None else 1,
                   ticks(bid), 0 if bsz is None else int(round(bsz / step)), ticks(ask),
                   0 if asz is None else int(round(asz / step)), ts + 59_999)
        f = feats[i:i + 1]
        f["ts_min"] = ts
        f["mid2"] = ticks(bid) + ticks(ask) if bid is not None else 0
        f["k"] = int(round(width / tick / settings.base_bin_ticks)) if width else 1
        f["va_valid"] = 1 if poc is not None else 0
        f["poc2"] = int(round(2 * poc / tick)) if poc is not None else 0
        f["vah"] = ticks(vah)
        f["val"] = ticks(val)
        f["volume"] = vol_lots
        f["of"] = int(round(of / step)) if of is not None else 0
        f["amb_qty"] = int(round((amb or 0.0) * vol_lots))
        f["qimb"] = np.nan if qimb is None else qimb
        f["ready"] = _REASON_CODES.get(ready, 0)
        # what the market-structure options (htf_bias, target: naked_poc) read
        f["dev_valid"] = 1 if dvah is not None else 0
        f["dev_vah"] = ticks(dvah)
        f["dev_val"] = ticks(dval)
        f["pd_valid"] = 1 if pvah is not None else 0
        f["pd_vah"] = ticks(pvah)
        f["pd_val"] = ticks(pval)
        f["npoc_above2"] = 0 if n_up is None else int(round(2 * n_up / tick))
        f["npoc_below2"] = 0 if n_dn is None else int(round(2 * n_dn / tick))
        f["roll_valid"] = 1 if rvah is not None else 0
        f["roll_vah"] = ticks(rvah)
        f["roll_val"] = ticks(rval)
        f["shape"] = _SHAPE_CODES.get(shape, SHAPE_NONE)
    return bars, feats


def run_bar(store: Store, settings: Any, start_ms: int | None = None, end_ms: int | None = None) -> BacktestResult:
    """Mode 2 over the stored minute rows with ``start_ms <= ts_min < end_ms`` (all when None)."""
    started = time.perf_counter()
    bars, feats = load_minute_records(store, settings, start_ms, end_ms)
    engine = Engine(settings, hist_bins=16, fifo_size=16)
    out = engine.run_bars(bars, feats)
    rng = (int(bars["ts_min"][0]), int(bars["ts_min"][-1]))
    last = bars[-1]
    pos = engine.position()
    return BacktestResult(
        run_id=run_id_for(settings, "bar", rng), mode="bar", signals=out.signals, fills=out.fills,
        features=feats, bars=bars, events=len(bars), seconds=time.perf_counter() - started,
        last_mid2=int(last["bid_px"] + last["ask_px"]), open_position=pos.position,
        open_entry_px=pos.entry_px, window=(start_ms, end_ms),
    )


def save_result(store: Store, settings: Any, result: BacktestResult) -> None:
    """Write signals_1m and trades_exec for the run (and the minute tables in tick mode)."""
    u = units_of(settings)
    with store.write():
        if result.mode == "tick":
            write_minute_tables(store, settings, result.bars, result.features, *result.window)
        store.replace_rows("signals_1m", SIGNALS_COLUMNS, signal_rows(result.signals, result.run_id),
                           "run_id=?", (result.run_id,))
        rows = fill_rows(result.fills, u, result.run_id)
        store.replace_rows("trades_exec", TRADES_EXEC_COLUMNS, rows, "run_id=?", (result.run_id,))
        store.put_run(result.run_id, result.mode, dataclasses.asdict(settings), report(settings, result))


def run_backtest(store: Store, settings: Any, mode: str = "tick", progress: Callable[[float, float], None] | None = None,
                 start_ms: int | None = None, end_ms: int | None = None) -> tuple[BacktestResult, dict[str, Any]]:
    if mode == "tick":
        result = run_tick(store, settings, progress, start_ms, end_ms)
    else:
        result = run_bar(store, settings, start_ms, end_ms)
    save_result(store, settings, result)
    return result, report(settings, result)


DEFAULT_OUT_ROOT = "backtests"  # `pbdtui backtest` without --out writes to ./backtests/<run_id>/
OUTPUT_FILES = ("report.json", "report.txt", "trades.csv", "decisions.log")


def write_outputs(settings: Any, result: BacktestResult, rep: dict[str, Any], out: str | Path) -> Path:
    """Write report.json, report.txt, trades.csv and decisions.log into ``out`` (created); returns it.

    Every file is a function of the result and the settings only, so a rerun
    writes the same bytes.
    """
    path = private_dir(out)  # trading records: owner-only (engine.private)
    lines = decision_log(settings, result)
    for line in lines:
        decisions_log.info(line)
    write_private_text(path / "report.json", json.dumps(rep, indent=1, sort_keys=True) + "\n")
    write_private_text(path / "report.txt", text_report(rep))
    write_private_text(path / "trades.csv", trades_csv(settings, result))
    write_private_text(path / "decisions.log", "\n".join(lines) + "\n")
    return path


def run_backtest_cli(settings: Any, db: str, mode: str, out: str | None, start_ms: int | None = None,
                     end_ms: int | None = None, progress: Callable[[float, float], None] | None = None) -> int:
    """``pbdtui backtest``; ``progress(done, total)`` is the caller's display (it prints nothing itself)."""
    if not Path(db).exists():
        raise FileNotFoundError(f"{db}: no such database")
    with Store(db, instrument_of(settings)) as store:
        result, rep = run_backtest(store, settings, mode, progress, start_ms, end_ms)
    if progress is not None:
        progress(1, 1)  # done: the display closes before the report is printed
    path = write_outputs(settings, result, rep, out if out else Path(DEFAULT_OUT_ROOT) / result.run_id)
    rate = result.events / result.seconds if result.seconds > 0 else 0.0
    print(headline(rep))
    for w in rep["warnings"]:
        print(f"warning: {w}")
    if result.mode == "tick":
        print(f"{result.events} events in {result.seconds:.2f} s ({rate / 1e6:.2f} M/s)")
    else:  # bar mode counts minutes
        print(f"{result.events} minutes in {result.seconds:.2f} s")
    print(f"wrote {', '.join(OUTPUT_FILES)} to {path}")
    return 0
