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
Warnings first (``fee_model=maker`` in any combination: the engine fills
every order at market, i.e. as a taker, so maker fees cannot hold), then a
table on stdout ranked by ``--rank-by`` (``OBJECTIVES``: net_pnl by default;
max_drawdown smallest first; an undefined figure ranks last; ties keep
combination order): rank, grid values, trades, net_pnl, gross_pnl, fees,
win_rate, profit_factor, expectancy, sharpe_daily, max_drawdown, exposure,
seconds (``run_tick_on_minutes``'s wall time in its worker, the first one of
each worker including numba's cache load; the groups' minute passes are
timed separately in ``timings``). In ``--out`` (default ``./sweep_out``):
``sweep.csv`` (the same columns in the same order without ``seconds``, plus
``run_id``) and ``sweep.json`` (grids, base settings, ``rank_by``,
``warnings``, one full report per combination without the equity curve,
with its ``index`` and ``rank``, the feature groups, and a separate
``timings`` field). Everything except ``timings`` and the printed seconds is
deterministic: the same data, config and grids write the same bytes.

Out of sample (``--train-until DATE``)
--------------------------------------
Each combination still runs once over all the data; its report is also cut
(``engine.report.slice_result``) at the instant DATE names (UTC; a bare date
cuts at the end of that day, so the whole day is train). Train: the minutes
before the cut and the round trips whose closing fill is before it. Test:
the minutes from the cut on and the round trips closed from it on, also one
entered before the cut (a position open at the cut is train's open
position, valued at its last minute's mid, and test's round trip). Rows are ranked by the train figure and show train and test figures
side by side (``train_*``/``test_*``; sweep.json adds ``train_report`` and
``test_report``), so a combination that only fits the training data shows.
Why one run cut in two rather than two runs: the features and the strategy
only look back, so the test period cannot see the future either way, and
cut from one run it starts warm (value area, position and risk state carry
over, as they would live) instead of losing its first
``rolling_window_minutes`` to warm-up. ``runs`` rows are the whole runs'.
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
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.config import ConfigError, Settings, parse_value
from engine.kernels.params import FEATURE_KEYS
from engine.private import private_dir, write_private_text
from engine.store import Store, StoreError, instrument_of
from engine.timerange import iso_text, parse_utc, range_text

INSTRUMENT_KEYS = frozenset({"symbol", "tick_size", "qty_step", "instrument"})
RESULT_COLUMNS = ("trades", "net_pnl", "gross_pnl", "fees", "win_rate", "profit_factor", "expectancy",
                  "sharpe_daily", "max_drawdown", "exposure")
SPLIT_COLUMNS = ("trades", "net_pnl", "profit_factor", "sharpe_daily", "max_drawdown")  # train and test side by side
DEFAULT_OUT = "sweep_out"
# --rank-by name -> (report key, higher is better). Ties keep combination order.
OBJECTIVES: dict[str, tuple[str, bool]] = {
    "net_pnl": ("net_pnl", True),
    "profit_factor": ("profit_factor", True),
    "sharpe": ("sharpe_daily", True),
    "sortino": ("sortino_daily", True),
    "expectancy": ("expectancy", True),
    "win_rate": ("win_rate", True),
    "max_drawdown": ("max_drawdown", False),
}


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
    rank_by: str = "net_pnl"
    warnings: list[str] = field(default_factory=list)
    split_ms: int | None = None  # --train-until: train is before it, test from it on
    train_reports: list[dict[str, Any]] | None = None
    test_reports: list[dict[str, Any]] | None = None

    def ranked(self) -> list[int]:
        """Combination indices, best first by ``rank_by`` (on the train period when split)."""
        return ranking(self.train_reports if self.train_reports is not None else self.reports, self.rank_by)


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


# --- ranking, warnings, the train/test split ------------------------------------------


def objective_value(rep: dict[str, Any], rank_by: str) -> float | None:
    """The report's figure for ``rank_by``; a profit factor with wins and no loss is infinite."""
    key, _ = OBJECTIVES[rank_by]
    value = rep.get(key)
    if value is None and key == "profit_factor" and rep.get("trades") and not rep.get("gross_losses"):
        return float("inf")
    return value


def ranking(reports: Sequence[dict[str, Any]], rank_by: str) -> list[int]:
    """Indices of ``reports`` best first; undefined figures (None) last; ties in combination order."""
    if rank_by not in OBJECTIVES:
        raise ConfigError(f"--rank-by: unknown objective '{rank_by}' (one of {', '.join(OBJECTIVES)})")
    _, higher = OBJECTIVES[rank_by]

    def key(i: int) -> tuple[int, float, int]:
        v = objective_value(reports[i], rank_by)
        return (1, 0.0, i) if v is None else (0, -v if higher else v, i)

    return sorted(range(len(reports)), key=key)


def sweep_warnings(combos: Sequence[Settings]) -> list[str]:
    """Assumptions that cannot hold in some combinations (one line per kind, with how many)."""
    from engine.report import fee_warning

    makers = [s for s in combos if s.fee_model == "maker"]
    if not makers:
        return []
    return [f"{len(makers)} of {len(combos)} combination(s): {fee_warning(makers[0])}"]


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
             window: tuple[int | None, int | None] = (None, None), split_ms: int | None = None,
             keep_equity: bool = False
             ) -> tuple[int, dict[str, Any], float, tuple[dict[str, Any], dict[str, Any]] | None]:
    """Worker: one combination run on its group's minutes; (index, report, seconds, (train, test) reports)."""
    from engine.backtest import run_tick_on_minutes
    from engine.report import report, slice_result

    result = run_tick_on_minutes(_check_instrument(settings), settings, bars, feats, *window)
    rep = report(settings, result)
    rep.pop("equity_curve", None)
    halves = None
    if split_ms is not None:
        # one run over all the data, split at the date: the test period starts warm (profile, position
        # and risk state carry over, as live) and sees nothing later than itself
        halves = tuple(report(settings, slice_result(result, lo, hi, label))
                       for lo, hi, label in ((-(2**62), split_ms, "train"), (split_ms, 2**62, "test")))
        for h in halves:
            if not keep_equity:
                h.pop("equity_curve", None)
            h["events"] = None  # ticks are counted per run, not per period
    return index, rep, result.seconds, halves


# --- parent side ---------------------------------------------------------------


def run_sweep(store: Store, grid: Grid, combos: list[Settings], workers: int | None = None,
              progress: Any = None, start_ms: int | None = None, end_ms: int | None = None,
              split_ms: int | None = None, keep_equity: bool = False, backend: str = "local",
              address: str | None = None) -> SweepResult:
    """Run every combination over the ticks with ``start_ms <= ts < end_ms`` (all when None) in worker
    processes; write one ``runs`` row each (one transaction). ``progress(done, total)`` counts combinations.

    With ``split_ms`` each combination's run is also reported as two periods,
    train (before ``split_ms``) and test (from it on); the ``runs`` rows stay
    those of the whole runs.
    """
    from engine.backtest import run_id_for

    started = time.perf_counter()
    rng = store.tick_range(start_ms, end_ms)
    if rng is None and (start_ms is not None or end_ms is not None):
        raise StoreError(f"{store.path}: no ticks {range_text(start_ms, end_ms)}")
    if rng is None:
        raise StoreError(f"{store.path}: no stored ticks: import or synthesize data first")
    window = (start_ms, end_ms)
    if split_ms is not None and not rng[0] < split_ms <= rng[1]:
        raise ConfigError(f"--train-until: the split at {iso_text(split_ms)} leaves no data on one side: the data "
                          f"runs from {iso_text(rng[0])} to {iso_text(rng[1])}")
    groups = feature_groups(combos)
    workers = min(len(combos), max(1, int(workers or os.cpu_count() or 1)))
    reports: list[dict[str, Any] | None] = [None] * len(combos)
    seconds = [0.0] * len(combos)
    halves: list[Any] = [None] * len(combos)
    group_seconds = [0.0] * len(groups)
    done = 0
    if address is not None and backend != "ray":
        raise ConfigError("--address is for --backend ray")
    if backend == "local":
        results = _local_units(store.path, combos, groups, workers, window, split_ms, keep_equity, group_seconds)
    elif backend == "ray":
        results = _ray_units(store.path, combos, groups, workers, window, split_ms, keep_equity, group_seconds,
                             address)
    else:
        raise ConfigError(f"--backend: unknown backend '{backend}' (local or ray)")
    for index, rep, secs, half in results:
        reports[index] = rep
        seconds[index] = secs
        halves[index] = half
        done += 1
        if progress is not None:
            progress(done, len(combos))
    final = [r for r in reports if r is not None]
    assert len(final) == len(combos)
    with store.write():
        for s, rep in zip(combos, final, strict=True):
            run_id = run_id_for(s, "tick", rng)
            if rep["run_id"] != run_id:
                raise RuntimeError(f"sweep: run id mismatch {rep['run_id']} != {run_id}")
            store.put_run(run_id, "tick", dataclasses.asdict(s), rep, sweep=True)
    return SweepResult(grid=grid, combos=grid.combinations(), reports=final, seconds=seconds, groups=groups,
                       group_seconds=group_seconds, total_seconds=time.perf_counter() - started, workers=workers,
                       data_range=rng, warnings=sweep_warnings(combos), split_ms=split_ms,
                       train_reports=None if split_ms is None else [h[0] for h in halves],
                       test_reports=None if split_ms is None else [h[1] for h in halves])


_Unit = tuple[int, dict[str, Any], float, Any]  # (index, report, seconds, (train, test) reports or None)


def _local_units(db: str, combos: list[Settings], groups: list[list[int]], workers: int,
                 window: tuple[int | None, int | None], split_ms: int | None, keep_equity: bool,
                 group_seconds: list[float]) -> Iterator[_Unit]:
    """The work units on a local process pool, yielded as they finish."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(db,)) as pool:
        try:
            futures = []
            for fut in as_completed([pool.submit(_minutes_of, g, combos[idx[0]], window) for g, idx in enumerate(groups)]):
                g, bars, feats, group_seconds[g] = fut.result()
                # a group's combinations start as soon as its minutes are ready
                futures += [pool.submit(_run_one, i, combos[i], bars, feats, window, split_ms, keep_equity)
                            for i in groups[g]]
            for fut in as_completed(futures):
                yield fut.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _ray_store(db: str) -> None:
    """Ray worker: open (once per worker process) the read-only connection the unit functions use."""
    if _worker_store is None or _worker_store.path != db:
        _init_worker(db)


def _ray_minutes(db: str, group: int, settings: Settings, window: tuple[int | None, int | None]) -> tuple:
    _ray_store(db)
    _, bars, feats, secs = _minutes_of(group, settings, window)
    return bars, feats, secs


def _ray_run(db: str, index: int, settings: Settings, bars: Any, feats: Any, window: tuple[int | None, int | None],
             split_ms: int | None, keep_equity: bool) -> _Unit:
    _ray_store(db)
    return _run_one(index, settings, bars, feats, window, split_ms, keep_equity)


def ray_init_local(workers: int, niceness: int = 0) -> None:
    """Start a local Ray instance of ``workers`` CPUs for a sweep.

    Ray runs its workers at nice 15 (below its own daemons); on a machine
    shared with other work they then get a sliver of a core (the 10-day
    sweep took 1.28x the local pool's time at load 6-13). The instance a
    sweep starts for itself runs them at ``niceness``, by default the local
    pool's.
    """
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             _system_config={"worker_niceness": niceness})


def _ray_units(db: str, combos: list[Settings], groups: list[list[int]], workers: int,
               window: tuple[int | None, int | None], split_ms: int | None, keep_equity: bool,
               group_seconds: list[float], address: str | None) -> Iterator[_Unit]:
    """The same work units as ``_local_units`` as Ray tasks.

    One task per feature group returns its bars and features into Ray's
    object store (``num_returns=3``); every combination of the group is a
    task taking those object refs, so Ray starts it once the minutes exist
    and hands the arrays to each worker from shared memory (no copy per
    combination). Workers open the database by its path: on a cluster it
    must be readable at the same path on every node. Without ``address`` (and
    no Ray running in this process) a local instance of ``workers`` CPUs is
    started and stopped again.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--backend ray needs Ray: pip install \".[cluster]\" (or pip install ray)") from exc
    started_here = False
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray_init_local(workers)
        started_here = True
    try:
        minutes_task = ray.remote(num_cpus=1, num_returns=3)(_ray_minutes)
        run_task = ray.remote(num_cpus=1)(_ray_run)
        group_refs = [minutes_task.remote(db, g, combos[idx[0]], window) for g, idx in enumerate(groups)]
        pending = [run_task.remote(db, i, combos[i], bars, feats, window, split_ms, keep_equity)
                   for (bars, feats, _), idx in zip(group_refs, groups, strict=True) for i in idx]
        for g, (_, _, secs) in enumerate(group_refs):
            group_seconds[g] = ray.get(secs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started_here:
            ray.shutdown()


# --- output ----------------------------------------------------------------------


def _value_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _combo_text(combo: dict[str, Any]) -> str:
    return " ".join(f"{k}={_value_text(v)}" for k, v in combo.items())


def _columns(res: SweepResult, base: tuple[str, ...]) -> tuple[str, ...]:
    """Result columns, with the objective's figure added when it is not among them."""
    key, _ = OBJECTIVES[res.rank_by]
    return base if key in base else (*base, key)


def _rows(res: SweepResult, base: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    """Header and rows in rank order: rank, grid values, figures (train_/test_ side by side when split)."""
    cols = _columns(res, base)
    if res.train_reports is None:
        header = ["rank", *res.grid.keys, *cols]
        sides = [res.reports]
    else:
        assert res.test_reports is not None
        header = ["rank", *res.grid.keys, *(f"train_{c}" for c in cols), *(f"test_{c}" for c in cols)]
        sides = [res.train_reports, res.test_reports]
    rows = []
    for rank, i in enumerate(res.ranked(), start=1):
        row = [str(rank), *(_value_text(res.combos[i][k]) for k in res.grid.keys)]
        for reports in sides:
            row += [_value_text(reports[i][c]) for c in cols]
        rows.append(row)
    return header, rows


def csv_text(res: SweepResult) -> str:
    """``sweep.csv``: every result column, rows in rank order, with the run id of each combination's run."""
    header, rows = _rows(res, RESULT_COLUMNS)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*header, "run_id"])
    for row, i in zip(rows, res.ranked(), strict=True):
        w.writerow([*row, res.reports[i]["run_id"]])
    return buf.getvalue()


def table_text(res: SweepResult) -> str:
    """The printed table, rows in rank order (fewer columns when train and test sit side by side)."""
    header, rows = _rows(res, RESULT_COLUMNS if res.train_reports is None else SPLIT_COLUMNS)
    header.append("seconds")
    for row, i in zip(rows, res.ranked(), strict=True):
        row.append(f"{res.seconds[i]:.2f}")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    nleft = 1 + len(res.grid.keys)

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i == 0 or i >= nleft else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]) + "\n"


def json_doc(res: SweepResult, settings: Settings) -> dict[str, Any]:
    ranks = {i: r for r, i in enumerate(res.ranked(), start=1)}
    combos = []
    for i, (combo, rep) in enumerate(zip(res.combos, res.reports, strict=True)):
        entry = {"index": i, "rank": ranks[i], "params": combo, "report": rep}
        if res.train_reports is not None and res.test_reports is not None:
            entry |= {"train_report": res.train_reports[i], "test_report": res.test_reports[i]}
        combos.append(entry)
    return {
        "grid": [{"key": k, "values": list(v)} for k, v in zip(res.grid.keys, res.grid.values, strict=True)],
        "base_settings": dataclasses.asdict(settings),
        "data_range": list(res.data_range),
        "mode": "tick",
        "rank_by": res.rank_by,
        "objective": OBJECTIVES[res.rank_by][0],
        "warnings": res.warnings,
        "train_until": None if res.split_ms is None else {"ms": res.split_ms, "utc": iso_text(res.split_ms)},
        "combinations": combos,
        "feature_groups": res.groups,
        "timings": {"total_seconds": round(res.total_seconds, 3), "workers": res.workers,
                    "seconds": [round(s, 3) for s in res.seconds],
                    "group_seconds": [round(s, 3) for s in res.group_seconds]},
    }


def write_outputs(res: SweepResult, settings: Settings, out: str | os.PathLike[str]) -> Path:
    path = private_dir(out)  # trading records: owner-only (engine.private)
    write_private_text(path / "sweep.csv", csv_text(res))
    write_private_text(path / "sweep.json", json.dumps(json_doc(res, settings), indent=1, sort_keys=True) + "\n")
    return path


def run_sweep_cli(settings: Settings, db: str, grid: Sequence[str], out: str | None = None,
                  workers: int | None = None, start_ms: int | None = None, end_ms: int | None = None,
                  progress: Any = None, rank_by: str = "net_pnl", train_until: str | None = None,
                  backend: str = "local", address: str | None = None) -> int:
    """``pbdtui sweep``: validate, run, print the warnings and the ranked table, write sweep.csv and sweep.json.

    ``progress(done, total)`` is the caller's display of finished combinations (this prints nothing to stderr).
    """
    parsed, combos = parse_grid(settings, grid)  # before touching the database
    ranking([], rank_by)  # checks the objective's name
    split_ms = None if train_until is None else parse_utc(train_until, "--train-until", end=True)
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not Path(db).exists():
        raise FileNotFoundError(f"{db}: no such database")

    with Store(db, instrument_of(settings)) as store:
        res = run_sweep(store, parsed, combos, workers=workers, progress=progress, start_ms=start_ms, end_ms=end_ms,
                        split_ms=split_ms, backend=backend, address=address)
    res.rank_by = rank_by
    if progress is not None:
        progress(len(combos), len(combos))  # done: the display closes before the table is printed
    path = write_outputs(res, settings, out if out is not None else DEFAULT_OUT)
    for w in res.warnings:
        print(f"warning: {w}")
    if split_ms is not None:
        print(f"train: trades closed before {iso_text(split_ms)}, test: closed from it on; ranked by train {rank_by}")
    else:
        print(f"ranked by {rank_by}")
    sys.stdout.write(table_text(res))
    print(f"{len(combos)} combinations, {len(res.groups)} feature group(s), {res.workers} worker(s), "
          f"{res.total_seconds:.1f} s; wrote {path / 'sweep.csv'} and {path / 'sweep.json'}")
    return 0
