"""Walk-forward: pick parameters on a training window, trade them on the next, roll on.

``pbdtui walkforward --db D --grid ... --train-days N --test-days M`` cuts
the data (``--from``/``--to``, default all of it) into rolling windows that
start at the first tick's UTC midnight (or at ``--from``): window k trains on
``[origin + k*M, origin + k*M + N)`` days and tests on the M days after it;
the last test window may be shorter (it ends with the data). A window whose
train or test part holds no tick is skipped and listed.

Each window is one ``engine.sweep.run_sweep`` over ``[train start, test end)``
split at the test start (the ``--train-until`` machinery): every combination
runs once, its train figures are the round trips closed before the split and
its test figures those closed from it on. The best combination by the
objective on train (``sweep.ranking``: ties in combination order) is the
window's choice, and its test figures are the window's out-of-sample
result. Why one run split in two rather than a second run on the test
window alone: the test period then starts warm (value area, position and
risk state carry over, as they would live) and still sees nothing later
than itself, since features and the strategy only look back.

Stitched figures (``summary``):

- out of sample: the chosen combinations' test periods one after the other
  (they do not overlap): net PnL, trades, profit factor (sum of the gross
  wins / sum of the gross losses), max drawdown of the round trips' net PnL
  chained in time (the report's own definition), net PnL per day;
- in sample: the same over the chosen combinations' train periods. Train
  windows overlap when N > M, so in-sample sums count some days more than
  once; net PnL per train day is the figure to set beside out-of-sample's.

A strategy that only fits its training data shows as in-sample per day well
above out-of-sample per day.

Outputs in ``--out`` (default ``./walkforward_out``, owner-only):
``walkforward.csv`` (one row per window) and ``walkforward.json`` (grids,
objective, windows with the chosen parameters and train/test figures, the
summary). Both are deterministic (timings only under ``timings`` in the
JSON). The windows' sweeps write their ``runs`` rows like any sweep.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import ConfigError, Settings
from engine.private import private_dir, write_private_text
from engine.store import Store, StoreError, instrument_of
from engine.sweep import OBJECTIVES, Grid, objective_value, parse_grid, ranking, run_sweep
from engine.timerange import DAY_MS, iso_text, range_text

DEFAULT_OUT = "walkforward_out"
FIGURES = ("trades", "net_pnl", "profit_factor", "max_drawdown")


@dataclass
class Window:
    """One train/test window and what it chose."""

    index: int
    train: tuple[int, int]  # ms, [start, end)
    test: tuple[int, int]
    chosen: int  # combination index
    params: dict[str, Any]
    train_report: dict[str, Any]
    test_report: dict[str, Any]
    seconds: float


def windows_of(origin: int, end: int, train_ms: int, test_ms: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Rolling ``(train, test)`` ranges from ``origin``; the last test range is cut at ``end``."""
    out = []
    k = 0
    while origin + k * test_ms + train_ms < end:
        lo = origin + k * test_ms
        mid = lo + train_ms
        out.append(((lo, mid), (mid, min(mid + test_ms, end))))
        k += 1
    return out


def _trip_nets(rep: dict[str, Any]) -> list[float]:
    curve = [e for _, e in rep.get("equity_curve") or []]
    if not curve:
        return []
    return [b - a for a, b in zip([0.0, *curve[:-1]], curve, strict=True)]


def stitch(reports: Sequence[dict[str, Any]], days: float) -> dict[str, Any]:
    """Figures of periods laid end to end (see the module docstring)."""
    nets = [x for rep in reports for x in _trip_nets(rep)]
    equity, peak, drawdown = 0.0, 0.0, 0.0
    for x in nets:
        equity += x
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
    wins = sum(rep.get("gross_wins") or 0.0 for rep in reports)
    losses = sum(rep.get("gross_losses") or 0.0 for rep in reports)
    net = sum(rep.get("net_pnl") or 0.0 for rep in reports)
    pf: float | None = wins / losses if losses else None
    return {
        "trades": sum(int(rep.get("trades") or 0) for rep in reports),
        "net_pnl": round(net, 6),
        "profit_factor": None if pf is None else round(pf, 6),
        "gross_wins": round(wins, 6),
        "gross_losses": round(losses, 6),
        "max_drawdown": round(drawdown, 6),
        "days": round(days, 6),
        "net_pnl_per_day": round(net / days, 6) if days > 0 else None,
    }


def run_walkforward(store: Store, grid: Grid, combos: list[Settings], train_days: float, test_days: float,
                    objective: str = "net_pnl", start_ms: int | None = None, end_ms: int | None = None,
                    workers: int | None = None, progress: Any = None, backend: str = "local",
                    address: str | None = None) -> dict[str, Any]:
    """Run every window (see the module docstring); returns the walkforward.json document (minus settings)."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective: unknown objective '{objective}' (one of {', '.join(OBJECTIVES)})")
    if not (train_days > 0 and test_days > 0):
        raise ConfigError(f"--train-days and --test-days must be positive, got {train_days:g} and {test_days:g}")
    rng = store.tick_range(start_ms, end_ms)
    if rng is None:
        raise StoreError(f"{store.path}: no ticks {range_text(start_ms, end_ms)}")
    origin = start_ms if start_ms is not None else rng[0] // DAY_MS * DAY_MS
    end = end_ms if end_ms is not None else rng[1] + 1
    train_ms, test_ms = round(train_days * DAY_MS), round(test_days * DAY_MS)
    plan = windows_of(origin, end, train_ms, test_ms)
    if not plan:
        raise ConfigError(f"walkforward: the data {range_text(origin, end)} is shorter than one training window "
                          f"({train_days:g} days) plus some test data")
    done: list[Window] = []
    skipped: list[dict[str, Any]] = []
    for k, (train, test) in enumerate(plan):
        if store.tick_range(*train) is None or store.tick_range(*test) is None:
            skipped.append({"index": k, "train": list(train), "test": list(test), "reason": "no ticks"})
            continue
        res = run_sweep(store, grid, combos, workers=workers, start_ms=train[0], end_ms=test[1], split_ms=test[0],
                        keep_equity=True, backend=backend, address=address)
        assert res.train_reports is not None and res.test_reports is not None
        best = ranking(res.train_reports, objective)[0]
        done.append(Window(k, train, test, best, res.combos[best], res.train_reports[best], res.test_reports[best],
                           res.total_seconds))
        if progress is not None:
            progress(k + 1, len(plan))
    if not done:
        raise StoreError(f"{store.path}: no window has ticks in both its train and test parts")
    oos = stitch([w.test_report for w in done], sum(w.test[1] - w.test[0] for w in done) / DAY_MS)
    ins = stitch([w.train_report for w in done], sum(w.train[1] - w.train[0] for w in done) / DAY_MS)
    return {
        "grid": [{"key": k, "values": list(v)} for k, v in zip(grid.keys, grid.values, strict=True)],
        "objective": objective,
        "train_days": train_days,
        "test_days": test_days,
        "data_range": list(rng),
        "windows": [_window_doc(w, objective) for w in done],
        "skipped_windows": skipped,
        "summary": {"in_sample": ins, "out_of_sample": oos},
        "timings": {"window_seconds": [round(w.seconds, 3) for w in done]},
    }


def _slim(rep: dict[str, Any]) -> dict[str, Any]:
    keep = ("trades", "net_pnl", "gross_pnl", "fees", "win_rate", "profit_factor", "gross_wins", "gross_losses",
            "expectancy", "sharpe_daily", "sortino_daily", "max_drawdown", "exposure", "run_id")
    return {k: rep.get(k) for k in keep}


def _window_doc(w: Window, objective: str) -> dict[str, Any]:
    return {
        "index": w.index,
        "train": {"from": iso_text(w.train[0]), "to": iso_text(w.train[1]), "from_ms": w.train[0], "to_ms": w.train[1]},
        "test": {"from": iso_text(w.test[0]), "to": iso_text(w.test[1]), "from_ms": w.test[0], "to_ms": w.test[1]},
        "chosen": w.chosen,
        "params": w.params,
        "train_objective": objective_value(w.train_report, objective),
        "train_report": _slim(w.train_report),
        "test_report": _slim(w.test_report),
    }


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def csv_text(doc: dict[str, Any]) -> str:
    keys = [g["key"] for g in doc["grid"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["window", "train_from", "train_to", "test_from", "test_to", *keys,
                *(f"train_{f}" for f in FIGURES), *(f"test_{f}" for f in FIGURES)])
    for win in doc["windows"]:
        w.writerow([win["index"], win["train"]["from"], win["train"]["to"], win["test"]["from"], win["test"]["to"],
                    *(_text(win["params"][k]) for k in keys),
                    *(_text(win["train_report"][f]) for f in FIGURES), *(_text(win["test_report"][f]) for f in FIGURES)])
    return buf.getvalue()


def table_text(doc: dict[str, Any]) -> str:
    keys = [g["key"] for g in doc["grid"]]
    header = ["window", "test from", "test to", *keys, *(f"train {f}" for f in FIGURES),
              *(f"test {f}" for f in FIGURES)]
    rows = [[str(win["index"]), win["test"]["from"], win["test"]["to"], *(_text(win["params"][k]) for k in keys),
             *(_text(win["train_report"][f]) for f in FIGURES), *(_text(win["test_report"][f]) for f in FIGURES)]
            for win in doc["windows"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    s = doc["summary"]
    out = ["", f"{'':14}{'trades':>8}{'net_pnl':>14}{'net/day':>12}{'profit_factor':>15}{'max_drawdown':>14}{'days':>8}"]
    for label, part in (("in sample", s["in_sample"]), ("out of sample", s["out_of_sample"])):
        out.append(f"{label:14}{part['trades']:>8}{_text(part['net_pnl']):>14}{_text(part['net_pnl_per_day']):>12}"
                   f"{_text(part['profit_factor']):>15}{_text(part['max_drawdown']):>14}{_text(part['days']):>8}")
    return "\n".join(lines + out) + "\n"


def write_outputs(doc: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    path = private_dir(out)
    write_private_text(path / "walkforward.csv", csv_text(doc))
    write_private_text(path / "walkforward.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def run_walkforward_cli(settings: Settings, db: str, grid: Sequence[str], train_days: float, test_days: float,
                        objective: str = "net_pnl", out: str | None = None, workers: int | None = None,
                        start_ms: int | None = None, end_ms: int | None = None, progress: Any = None,
                        backend: str = "local", address: str | None = None) -> int:
    """``pbdtui walkforward``: validate, run every window, print the table and the summary, write the files."""
    parsed, combos = parse_grid(settings, grid)  # before touching the database
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not Path(db).exists():
        raise FileNotFoundError(f"{db}: no such database")
    with Store(db, instrument_of(settings)) as store:
        doc = run_walkforward(store, parsed, combos, train_days, test_days, objective, start_ms, end_ms, workers,
                              progress, backend, address)
    doc["base_settings"] = dataclasses.asdict(settings)
    if progress is not None:
        progress(1, 1)
    path = write_outputs(doc, out if out is not None else DEFAULT_OUT)
    print(f"walk-forward: train {train_days:g} d, test {test_days:g} d, best train {objective} per window")
    sys.stdout.write(table_text(doc))
    for sk in doc["skipped_windows"]:
        print(f"skipped window {sk['index']}: {sk['reason']}")
    print(f"{len(doc['windows'])} window(s) x {len(combos)} combination(s); wrote {path / 'walkforward.csv'} "
          f"and {path / 'walkforward.json'}")
    return 0
