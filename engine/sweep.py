"""Sensitivity sweep: the tick backtest over the cartesian product of config values.

``pbdtui sweep --db D --grid key=v1,v2 [--grid ...]`` parses every grid
(values are YAML scalars), validates every combination with
``Settings.replace`` before any work starts (an unknown key or a bad value
is a ``ConfigError`` naming the key), computes each feature group's minutes
once (``engine.features.compute_minutes``) and runs each combination through
``engine.backtest.run_tick_on_minutes`` and ``engine.backtest.report``: its
signals and fills are byte-identical to ``run_tick``'s, so a sweep row has
exactly the figures ``pbdtui backtest`` would print for the same settings
(and the same run id).

Combinations are ordered as ``itertools.product`` of the grids in the order
given (the first grid varies slowest).

Processes and the database
--------------------------
Combinations run in a ``ProcessPoolExecutor`` with the ``spawn`` start
method (no fork: numba and the importer/synth threads do not survive it),
``workers`` processes (default ``os.cpu_count()``, never more than there are
combinations): one task per feature group (its minutes), then one per
combination, started as soon as its group's minutes are ready. Each worker process opens one
read-only connection (SQLite WAL: readers never block the writer or each
other) when it starts and writes nothing. Reports (minus the equity curve)
go back to the parent, which writes one ``runs`` row per combination
(``mode`` 'tick', the run id of ``run_id_for``; the summary is the report
without ``equity_curve``; ``Store.put_run(..., sweep=True)``), all in one
transaction after every combination has finished, so a failed sweep writes
nothing. A row an earlier sweep wrote is replaced; a row ``pbdtui backtest``
wrote for the same run id (same settings and data, so the same figures) is
kept. A
sweep does NOT write ``signals_1m``, ``trades_exec``, ``bars_1m`` or
``features_1m``: run ``pbdtui backtest`` with the chosen settings for the
trade-level rows.

What is reused across combinations, and what is not
---------------------------------------------------
Combinations are grouped by their *feature key*: the settings the feature
kernels read (``engine.kernels.params.FEATURE_KEYS``: bin width, window,
staleness, ...). Signal, risk and execution keys (slippage, fees,
accept_outside_k, thresholds, cooldown, ...) do not change bars or
features.

* Reused: each group's bars and features are computed once (a
  features-only pass over all trades and quotes, in a worker), then every
  combination of the group runs ``engine.backtest.run_tick_on_minutes``: quotes
  and funding only, through the same ``decide``/``on_quote``/``on_time`` as
  the tick engine, against the stored minutes. Its signals, fills and report
  are byte-identical to ``run_tick``'s (tested), at about half the work
  (trades are not read, the profile is not rebuilt).
* Also reused, per worker process: numba's loaded machine code and the
  SQLite connection; the OS page cache serves every process's reads.
* Not reused: reading the quotes, once per combination.
* ``features_1m``/``bars_1m`` are not written by a sweep.

Output
------
A table on stdout (grid values, trades, net_pnl, gross_pnl, fees, win_rate,
max_drawdown, exposure, seconds: ``run_tick_on_minutes``'s wall time in its
worker, the first one of each worker including numba's cache load; the
groups' minute passes are timed separately in ``timings``), and in ``--out`` (default
``./sweep_out``): ``sweep.csv`` (the same columns without ``seconds``, plus
``run_id``) and ``sweep.json`` (grids, base settings, one full report per
combination without the equity curve, the feature groups, and a separate
``timings`` field). Everything except ``timings`` and the printed seconds is
deterministic: the same data, config and grids write the same bytes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.config import ConfigError, Settings, parse_value
from engine.kernels.params import FEATURE_KEYS
from engine.store import Store, StoreError, instrument_of
from engine.timerange import range_text

INSTRUMENT_KEYS = frozenset({"symbol", "tick_size", "qty_step", "instrument"})
RESULT_COLUMNS = ("trades", "net_pnl", "gross_pnl", "fees", "win_rate", "max_drawdown", "exposure")
DEFAULT_OUT = "sweep_out"


@dataclass(frozen=True)
class Grid:
    """The parsed ``--grid`` options: keys in order and each key's values."""

    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    def combinations(self) -> list[dict[str, Any]]:
        return [dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*self.values)]


@dataclass
class SweepResult:
    """What ``run_sweep`` produced (rows in combination order)."""

    grid: Grid
    combos: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    seconds: list[float]
    groups: list[list[int]]
    group_seconds: list[float]  # each feature group's minutes pass
    total_seconds: float
    workers: int
    data_range: tuple[int, int]


# --- grid parsing ---------------------------------------------------------------


def parse_grid(settings: Settings, specs: Sequence[str]) -> tuple[Grid, list[Settings]]:
    """Parse ``key=v1,v2,...`` specs and validate every combination.

    Returns the grid and the Settings of each combination (product order).

    Raises:
        ConfigError: naming the key, for an unknown key, a key given twice,
            an empty or repeated value, or a value ``Settings.replace``
            rejects in any combination.
    """
    if not specs:
        raise ConfigError("sweep: give at least one --grid key=v1,v2,...")
    known = {f.name for f in dataclasses.fields(Settings)}
    keys: list[str] = []
    values: list[tuple[Any, ...]] = []
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--grid '{spec}': expected key=v1,v2,...")
        key, text = (part.strip() for part in spec.split("=", 1))
        if key not in known:
            raise ConfigError(f"--grid: unknown key '{key}'")
        if key in keys:
            raise ConfigError(f"--grid: key '{key}' is given twice")
        vals = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                raise ConfigError(f"--grid: key '{key}': empty value in '{text}'")
            try:
                vals.append(parse_value(item))
            except yaml.YAMLError as exc:
                raise ConfigError(f"--grid: key '{key}': {item!r} is not a value: {exc}") from exc
        # each key's values on their own first, so the message names the culprit key; the
        # checked values (e.g. 1 -> 1.0 for a float key) are what the rows show
        checked = []
        for v in vals:
            try:
                c = getattr(settings.replace(**{key: v}), key)
            except ConfigError as exc:
                raise ConfigError(f"--grid: {exc}") from exc
            if c in checked:
                raise ConfigError(f"--grid: key '{key}': value {v!r} is given twice")
            checked.append(c)
        if key in INSTRUMENT_KEYS and len(checked) > 1:
            raise ConfigError(f"--grid: key '{key}' cannot vary in a sweep: the stored ticks are in one "
                              "instrument's tick and lot size")
        keys.append(key)
        values.append(tuple(checked))
    grid = Grid(tuple(keys), tuple(values))
    # then every combination (keys can interact, e.g. order_qty and qty_step)
    combos = []
    for combo in grid.combinations():
        try:
            combos.append(settings.replace(**combo))
        except ConfigError as exc:
            raise ConfigError(f"--grid: combination {_combo_text(combo)}: {exc}") from exc
    return grid, combos


def feature_key(settings: Settings) -> tuple[tuple[str, Any], ...]:
    """The settings that can change bars and features (``FEATURE_KEYS``)."""
    return tuple((k, getattr(settings, k)) for k in FEATURE_KEYS)


def feature_groups(combos: Sequence[Settings]) -> list[list[int]]:
    """Indices of combinations sharing a feature key, groups in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(combos):
        groups.setdefault(feature_key(s), []).append(i)
    return list(groups.values())


# --- worker side ---------------------------------------------------------------

_worker_store: Store | None = None


def _init_worker(db: str) -> None:
    """Per worker process: one read-only connection, reused by every combination it runs."""
    global _worker_store
    _worker_store = Store(db, readonly=True)


def _check_instrument(settings: Settings) -> Store:
    assert _worker_store is not None, "sweep worker used without _init_worker"
    if _worker_store.instrument != instrument_of(settings):
        raise StoreError(f"{_worker_store.path}: holds {_worker_store.instrument}, the combination asks for "
                         f"{instrument_of(settings)}")
    return _worker_store


def _minutes_of(group: int, settings: Settings, window: tuple[int | None, int | None] = (None, None)
                ) -> tuple[int, Any, Any, float]:
    """Worker: a feature group's bars and features, computed once; (group, bars, features, seconds)."""
    from engine.features import compute_minutes

    started = time.perf_counter()
    m = compute_minutes(_check_instrument(settings), settings, *window)
    return group, m.bars, m.features, time.perf_counter() - started


def _run_one(index: int, settings: Settings, bars: Any, feats: Any,
             window: tuple[int | None, int | None] = (None, None)) -> tuple[int, dict[str, Any], float]:
    """Worker: one combination run on its group's minutes; (index, report, seconds)."""
    from engine.backtest import report, run_tick_on_minutes

    result = run_tick_on_minutes(_check_instrument(settings), settings, bars, feats, *window)
    rep = report(settings, result)
    rep.pop("equity_curve", None)
    return index, rep, result.seconds


# --- parent side ---------------------------------------------------------------


def run_sweep(store: Store, grid: Grid, combos: list[Settings], workers: int | None = None,
              progress: Any = None, start_ms: int | None = None, end_ms: int | None = None) -> SweepResult:
    """Run every combination over the ticks with ``start_ms <= ts < end_ms`` (all when None) in worker
    processes; write one ``runs`` row each (one transaction). ``progress(done, total)`` counts combinations.
    """
    from engine.backtest import run_id_for

    started = time.perf_counter()
    rng = store.tick_range(start_ms, end_ms)
    if rng is None and (start_ms is not None or end_ms is not None):
        raise StoreError(f"{store.path}: no ticks {range_text(start_ms, end_ms)}")
    if rng is None:
        raise StoreError(f"{store.path}: no stored ticks: import or synthesize data first")
    window = (start_ms, end_ms)
    groups = feature_groups(combos)
    workers = min(len(combos), max(1, int(workers or os.cpu_count() or 1)))
    reports: list[dict[str, Any] | None] = [None] * len(combos)
    seconds = [0.0] * len(combos)
    group_seconds = [0.0] * len(groups)
    ctx = multiprocessing.get_context("spawn")
    done = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(store.path,)) as pool:
        try:
            futures = []
            for fut in as_completed([pool.submit(_minutes_of, g, combos[idx[0]], window) for g, idx in enumerate(groups)]):
                g, bars, feats, group_seconds[g] = fut.result()
                # a group's combinations start as soon as its minutes are ready
                futures += [pool.submit(_run_one, i, combos[i], bars, feats, window) for i in groups[g]]
            for fut in as_completed(futures):
                index, rep, secs = fut.result()
                reports[index] = rep
                seconds[index] = secs
                done += 1
                if progress is not None:
                    progress(done, len(combos))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    final = [r for r in reports if r is not None]
    assert len(final) == len(combos)
    with store.db:
        for s, rep in zip(combos, final, strict=True):
            run_id = run_id_for(s, "tick", rng)
            if rep["run_id"] != run_id:
                raise RuntimeError(f"sweep: run id mismatch {rep['run_id']} != {run_id}")
            store.put_run(run_id, "tick", dataclasses.asdict(s), rep, sweep=True)
    return SweepResult(grid=grid, combos=grid.combinations(), reports=final, seconds=seconds, groups=groups,
                       group_seconds=group_seconds, total_seconds=time.perf_counter() - started, workers=workers, data_range=rng)


# --- output ----------------------------------------------------------------------


def _value_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _combo_text(combo: dict[str, Any]) -> str:
    return " ".join(f"{k}={_value_text(v)}" for k, v in combo.items())


def csv_text(res: SweepResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*res.grid.keys, *RESULT_COLUMNS, "run_id"])
    for combo, rep in zip(res.combos, res.reports, strict=True):
        w.writerow([*(_value_text(combo[k]) for k in res.grid.keys),
                    *(_value_text(rep[c]) for c in RESULT_COLUMNS), rep["run_id"]])
    return buf.getvalue()


def table_text(res: SweepResult) -> str:
    header = [*res.grid.keys, *RESULT_COLUMNS, "seconds"]
    rows = [[*(_value_text(combo[k]) for k in res.grid.keys), *(_value_text(rep[c]) for c in RESULT_COLUMNS),
             f"{secs:.2f}"] for combo, rep, secs in zip(res.combos, res.reports, res.seconds, strict=True)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    nkeys = len(res.grid.keys)

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < nkeys else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]) + "\n"


def json_doc(res: SweepResult, settings: Settings) -> dict[str, Any]:
    return {
        "grid": [{"key": k, "values": list(v)} for k, v in zip(res.grid.keys, res.grid.values, strict=True)],
        "base_settings": dataclasses.asdict(settings),
        "data_range": list(res.data_range),
        "mode": "tick",
        "combinations": [{"params": combo, "report": rep}
                         for combo, rep in zip(res.combos, res.reports, strict=True)],
        "feature_groups": res.groups,
        "timings": {"total_seconds": round(res.total_seconds, 3), "workers": res.workers,
                    "seconds": [round(s, 3) for s in res.seconds],
                    "group_seconds": [round(s, 3) for s in res.group_seconds]},
    }


def write_outputs(res: SweepResult, settings: Settings, out: str | os.PathLike[str]) -> Path:
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "sweep.csv").write_text(csv_text(res))
    (path / "sweep.json").write_text(json.dumps(json_doc(res, settings), indent=1, sort_keys=True) + "\n")
    return path


def run_sweep_cli(settings: Settings, db: str, grid: Sequence[str], out: str | None = None,
                  workers: int | None = None, start_ms: int | None = None, end_ms: int | None = None,
                  progress: Any = None) -> int:
    """``pbdtui sweep``: validate, run, print the table, write sweep.csv and sweep.json.

    ``progress(done, total)`` is the caller's display of finished combinations (this prints nothing to stderr).
    """
    parsed, combos = parse_grid(settings, grid)  # before touching the database
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not Path(db).exists():
        raise FileNotFoundError(f"{db}: no such database")

    with Store(db, instrument_of(settings)) as store:
        res = run_sweep(store, parsed, combos, workers=workers, progress=progress, start_ms=start_ms, end_ms=end_ms)
    if progress is not None:
        progress(len(combos), len(combos))  # done: the display closes before the table is printed
    path = write_outputs(res, settings, out if out is not None else DEFAULT_OUT)
    sys.stdout.write(table_text(res))
    print(f"{len(combos)} combinations, {len(res.groups)} feature group(s), {res.workers} worker(s), "
          f"{res.total_seconds:.1f} s; wrote {path / 'sweep.csv'} and {path / 'sweep.json'}")
    return 0
