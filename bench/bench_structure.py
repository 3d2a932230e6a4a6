"""Does market structure help? The issue-12 options against v0, by ``pbdtui sweep``, one table per data set.

    python bench/bench_structure.py --db sim7.db --label sim7 --out DIR            # a database (e.g. data synth)
    python bench/bench_structure.py --ftx ../shared/data/bars_1m/X.csv --db ftx.db --label ftx --out DIR
    python bench/bench_structure.py --binance ../shared/data/binance_usdm_btcusdt --db bn.db --label bn --out DIR

Every combination of the grid (default: ``htf_bias`` none / prev_day / day /
rolling x ``target`` tp1 / naked_poc x ``shape_long`` any / b/D x
``shape_short`` any / P/D: 32 runs; v0 is the first) runs through ``pbdtui
sweep`` (features once, then each combination's tick backtest on the stored
minutes; its figures are ``pbdtui backtest``'s). ``--grid KEY=V1,V2`` (repeat)
replaces the default grid; ``--fixed KEY=V`` adds one-value grids (e.g.
``max_daily_loss=1000000``). Written to ``OUT/LABEL/``: the sweep's
``sweep.csv``/``sweep.json``, ``table.md`` (combination order, v0 first, with
the command, data counts, machine and load) and ``command.txt``.

``--ftx``: real 1-minute OHLCV bars (``../shared/data/bars_1m``) turned into
ticks, because no multi-day real tick data of BTCUSDT is at hand: per minute
four trades at open, low, high, close (low before high when the bar closes up,
else high first) at :01, :15, :30, :45 s, each a quarter of the bar's volume
(USD / close, in lots, at least one lot), the aggressor side from the move
since the previous trade (up: buy, down: sell, unchanged: the previous side),
and a quote 1 ms before each trade one tick wide with the trade at the
aggressor's touch, repeated at :59 s so the minute closes with a fresh quote.
Quote sizes are not in the data (both 1 lot), so the quote-imbalance gate is
meaningless there: the FTX runs add ``use_qimb=false`` (say so beside any
figure). The ticks are written as Tardis CSV and imported with ``pbdtui data
import --format tardis``.

``--binance``: the real Binance USD-M windows (Tardis CSV, trades with true
sides and the best bid/offer) imported as they are.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

DEFAULT_GRID = ("htf_bias=none,prev_day,day,rolling", "target=tp1,naked_poc", "shape_long=any,b/D",
                "shape_short=any,P/D")
COLUMNS = ("trades", "net_pnl", "profit_factor", "max_drawdown", "win_rate", "expectancy")


def ftx_to_tardis(src: Path, out_dir: Path, tick: float = 0.1, lot: float = 0.001) -> tuple[Path, Path, int]:
    """Write ``src`` (timestamp,open,high,low,close,volume[USD]) as Tardis trades and quotes CSV (gzip)."""
    trades_path = out_dir / "ftx_trades.csv.gz"
    quotes_path = out_dir / "ftx_quotes.csv.gz"
    n_bars = 0
    prev_px = None
    side = "buy"
    trade_id = 0
    with open(src, newline="") as fh, gzip.open(trades_path, "wt") as tf, gzip.open(quotes_path, "wt") as qf:
        tf.write("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n")
        qf.write("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n")
        for row in csv.DictReader(fh):
            ts = datetime.datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S.%f").replace(
                tzinfo=datetime.UTC)
            t_us = int(ts.timestamp()) * 1_000_000
            o, h, lo, c = (float(row[k]) for k in ("open", "high", "low", "close"))
            path = (o, lo, h, c) if c >= o else (o, h, lo, c)
            lots = max(1, round(float(row["volume"]) / c / lot / 4))
            for j, px in enumerate(path):
                if prev_px is not None and px > prev_px:
                    side = "buy"
                elif prev_px is not None and px < prev_px:
                    side = "sell"
                prev_px = px
                tt = t_us + (1, 15, 30, 45)[j] * 1_000_000
                bid, ask = (px - tick, px) if side == "buy" else (px, px + tick)
                qf.write(f"ftx,BTCUSDT,{tt - 1000},{tt - 1000},1,{ask:.1f},{bid:.1f},1\n")
                trade_id += 1
                tf.write(f"ftx,BTCUSDT,{tt},{tt},{trade_id},{side},{px:.1f},{lots * lot:.3f}\n")
            qf.write(f"ftx,BTCUSDT,{t_us + 59_000_000},{t_us + 59_000_000},1,{ask:.1f},{bid:.1f},1\n")
            n_bars += 1
    return trades_path, quotes_path, n_bars


def _import(db: Path, trades: Path, quotes: Path, cwd: str) -> None:
    _common.timed(_common.pbdtui("data", "import", "--db", str(db), "--format", "tardis", "--symbol", "BTCUSDT",
                                 "--trades", str(trades), "--quotes", str(quotes)), cwd=cwd)


def _fmt(v: str) -> str:
    try:
        return f"{float(v):.2f}"
    except ValueError:
        return v or "-"


def table(out: Path, keys: list[str]) -> str:
    """sweep.csv's rows in combination order (v0 first), from the ranks sweep.json maps to indices."""
    index_of = {c["rank"]: c["index"] for c in json.loads((out / "sweep.json").read_text())["combinations"]}
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    rows.sort(key=lambda r: index_of[int(r["rank"])])
    head = [*keys, *COLUMNS]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join([r[k] for k in keys] + [r["trades"]] + [_fmt(r[c]) for c in COLUMNS[1:]]) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="the database (created by --ftx / --binance)")
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ftx", help="a bars_1m CSV to turn into ticks first")
    ap.add_argument("--binance", help="a folder of DATE_trades.csv.gz / DATE_quotes.csv.gz to import first")
    ap.add_argument("--grid", action="append", help="KEY=V1,V2 (replaces the default grid)")
    ap.add_argument("--fixed", action="append", default=[], help="KEY=V held for every combination")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    db = Path(args.db).resolve()
    out = Path(args.out).resolve() / args.label  # the sweep runs in a clean folder: no relative paths
    out.mkdir(parents=True, exist_ok=True)
    cwd = _common.clean_cwd(db.parent)
    info: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": _common.machine()}
    fixed = list(args.fixed)
    if args.ftx:
        trades, quotes, n = ftx_to_tardis(Path(args.ftx), db.parent)
        _import(db, trades, quotes, cwd)
        info["source"] = f"{args.ftx}: {n} real 1-minute bars turned into ticks (see bench_structure.py)"
        fixed.append("use_qimb=false")
    if args.binance:
        for tr in sorted(Path(args.binance).glob("*_trades.csv.gz")):
            _import(db, tr, tr.with_name(tr.name.replace("_trades", "_quotes")), cwd)
        info["source"] = f"{args.binance}: real Binance USD-M BTCUSDT windows (Tardis CSV)"
    n_trades, n_quotes = _common.db_counts(db)
    grid = list(args.grid or DEFAULT_GRID) + fixed
    cmd = _common.pbdtui("sweep", "--db", str(db), *[a for g in grid for a in ("--grid", g)],
                         "--workers", str(args.workers), "--out", str(out))
    run = _common.timed(cmd, cwd=cwd)
    keys = [g.split("=", 1)[0] for g in (args.grid or DEFAULT_GRID)]
    text = [f"# {args.label}: market-structure options against v0 (first row)", "",
            f"- data: {info.get('source', str(db))}; {n_trades} trades, {n_quotes} quotes",
            f"- command: `{shlex.join(['pbdtui', *cmd[3:]])}`",
            f"- held: {', '.join(fixed) or 'nothing beyond the defaults'}",
            f"- measured {info['date']}, wall {run.wall_s:.1f} s, CPU {run.cpu_s or 0:.1f} s; load average before "
            f"{info['machine'].get('loadavg_at_start')}, after {run.loadavg_after}; "
            f"{info['machine'].get('Model name')}, {info['machine'].get('nproc')} CPUs", "",
            table(out, keys), ""]
    (out / "table.md").write_text("\n".join(text))
    (out / "command.txt").write_text(shlex.join(sys.argv if argv is None else ["bench_structure.py", *argv]) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
