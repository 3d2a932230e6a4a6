"""The ``pbdtui`` command line.

Every command takes ``--config PATH`` (default: ./config.yaml when present,
else built-in defaults). Problems with input (config keys, files, rows) end
the command with a one-line message naming the file and key or line, and
exit status 2; they never leave a half-written database behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from engine.config import ConfigError, Settings, load_settings
from engine.engine import EngineError
from engine.store import StoreError


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config
    if path is None and Path("config.yaml").is_file():
        path = "config.yaml"
    return load_settings(path)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help="config.yaml to use (default ./config.yaml or built-in defaults)")


def _cmd_import(args: argparse.Namespace) -> int:
    from engine import importers
    from engine.store import Store, instrument_of

    settings = _settings(args)
    # every argument and file is checked before the database is opened, so a
    # mistake leaves no empty database behind
    if args.format == "tardis":
        if not args.trades and not args.quotes:
            raise ConfigError("--format tardis needs --trades and/or --quotes")
        files = [f for f in (args.trades, args.quotes) if f]
    elif args.format == "bybit-trades":
        files = list(args.files) + ([args.trades] if args.trades else [])
        if not files:
            raise ConfigError("--format bybit-trades needs a FILE.csv.gz")
    else:
        files = list(args.files) + ([args.quotes] if args.quotes else [])
        if not files:
            raise ConfigError("--format bybit-book needs a FILE.data.zip")
    for path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")
    with Store(args.db, instrument_of(settings)) as store:
        if args.format == "tardis":
            reports = importers.import_tardis(store, settings, trades=args.trades, quotes=args.quotes)
        elif args.format == "bybit-trades":
            reports = [importers.import_bybit_trades(store, settings, f) for f in files]
        else:
            reports = [importers.import_bybit_book(store, settings, f) for f in files]
    for r in reports:
        print(r.summary())
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from engine.store import Store, instrument_of
    from engine.synth import synthesize

    settings = _settings(args)
    with Store(args.db, instrument_of(settings)) as store:
        report = synthesize(store, settings, days=args.days, seed=args.seed, start_ms=args.start_ms)
    print(report.summary())
    return 0


def _cmd_purge(args: argparse.Namespace) -> int:
    from engine.store import Store, instrument_of

    settings = _settings(args)
    hours = args.keep_hours if args.keep_hours is not None else settings.retention_hours
    with Store(args.db, instrument_of(settings)) as store:
        dropped, cutoff = store.purge_raw(hours * 3_600_000, now_ms=args.now_ms)
    print(f"purged {dropped} raw ticks older than {cutoff} ms; derived tables kept")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from engine.features import compute_features_to_store
    from engine.store import Store, instrument_of

    settings = _settings(args)
    with Store(args.db, instrument_of(settings)) as store:
        summary = compute_features_to_store(store, settings)
    print(summary.line())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pbdtui.app import run_demo

    settings = _settings(args)
    return run_demo(settings, db=args.db, speed=args.speed, seed=args.seed)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from engine.backtest import run_backtest_cli

    settings = _settings(args)
    return run_backtest_cli(settings, db=args.db, mode=args.mode, out=args.out)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from engine.sweep import run_sweep_cli

    settings = _settings(args)
    return run_sweep_cli(settings, db=args.db, grid=args.grid, out=args.out, workers=args.workers)


def _cmd_exchange_sim(args: argparse.Namespace) -> int:
    from loopback.cli import run_exchange_sim
    from loopback.faults import FaultError, parse_faults

    if args.db is not None and args.synth_days is not None:
        raise ConfigError("exchange-sim: give --db or --synth-days, not both")
    try:
        faults = parse_faults(args.fault)
    except FaultError as exc:
        raise ConfigError(str(exc)) from None
    return run_exchange_sim(_settings(args), db=args.db, synth_days=args.synth_days, seed=args.seed,
                            speed=args.speed, port=args.port, faults=faults)


def _add_exchange_sim(sub: Any) -> None:
    sim = sub.add_parser(
        "exchange-sim", help="a loopback Bybit public WebSocket (127.0.0.1) serving stored or simulated ticks",
        description="Serve Bybit v5 public frames (publicTrade, orderbook.1, tickers; subscribe acks, pongs) "
                    "on 127.0.0.1 from a database or a simulated session, with optional faults. Prints the "
                    "URL on its first line, then serves until Ctrl-C.",
        epilog="faults: KIND[:ARG][@AT|/EVERY], AT/EVERY in data frames (@500, /100) or session time "
               "(@30s, /5m); kinds: drop, stall[:SECONDS], garbage, truncated, duplicate, reorder[:FRAMES], "
               "reset, refuse[:TOPIC_PREFIX] (see loopback/faults.py).\n"
               "example: pbdtui exchange-sim --synth-days 0.1 --seed 3 --speed 10 --fault drop@30s --fault garbage/200",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sim.add_argument("--db", default=None, help="serve this database's ticks")
    sim.add_argument("--synth-days", type=float, default=None, help="serve a simulated session of N days (default 1)")
    sim.add_argument("--seed", type=int, default=1, help="seed of the simulated session")
    sim.add_argument("--speed", type=float, default=1.0, help="x real time; 0 = as fast as clients read")
    sim.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    sim.add_argument("--fault", action="extend", nargs="+", default=[], metavar="KIND",
                     help="inject a fault (repeatable), e.g. drop@30s, stall@500:5, garbage/100, refuse:tickers")
    _add_config(sim)
    sim.set_defaults(func=_cmd_exchange_sim)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbdtui", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="import, generate and purge tick data")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    imp = data_sub.add_parser("import", help="import ticks from files users already have")
    imp.add_argument("--db", required=True)
    imp.add_argument("--format", required=True, choices=["tardis", "bybit-trades", "bybit-book"])
    imp.add_argument("--trades", help="trades file (Tardis CSV or Bybit archive)")
    imp.add_argument("--quotes", help="quotes file (Tardis CSV)")
    imp.add_argument("files", nargs="*", help="Bybit archive files")
    _add_config(imp)
    imp.set_defaults(func=_cmd_import)

    syn = data_sub.add_parser("synth", help="generate realistic BTCUSDT-like ticks")
    syn.add_argument("--db", required=True)
    syn.add_argument("--days", type=float, default=1.0)
    syn.add_argument("--seed", type=int, default=1)
    syn.add_argument("--start-ms", type=int, default=None, help="first tick time (default 2026-01-05 00:00 UTC)")
    _add_config(syn)
    syn.set_defaults(func=_cmd_synth)

    pur = data_sub.add_parser("purge", help="drop raw ticks past the retention window")
    pur.add_argument("--db", required=True)
    pur.add_argument("--keep-hours", type=int, default=None, help="default: retention_hours from config")
    pur.add_argument("--now-ms", type=int, default=None, help="reference time (default: newest stored tick)")
    _add_config(pur)
    pur.set_defaults(func=_cmd_purge)

    feat = sub.add_parser("features", help="(re)compute bars_1m and features_1m from stored ticks")
    feat.add_argument("--db", required=True)
    _add_config(feat)
    feat.set_defaults(func=_cmd_features)

    demo = sub.add_parser("demo", help="open the console on a simulated session (offline)")
    demo.add_argument("--db", default=None, help="replay this database instead of generating one")
    demo.add_argument("--speed", type=float, default=600.0, help="replay speed (x real time)")
    demo.add_argument("--seed", type=int, default=7)
    _add_config(demo)
    demo.set_defaults(func=_cmd_demo)

    bt = sub.add_parser("backtest", help="backtest the strategy on stored data")
    bt.add_argument("--db", required=True)
    bt.add_argument("--mode", choices=["tick", "bar"], default="tick")
    bt.add_argument("--out", default=None, help="directory for report.json and report.txt")
    _add_config(bt)
    bt.set_defaults(func=_cmd_backtest)

    sw = sub.add_parser("sweep", help="sensitivity sweep over config keys")
    sw.add_argument("--db", required=True)
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", required=True)
    sw.add_argument("--out", default=None)
    sw.add_argument("--workers", type=int, default=None)
    _add_config(sw)
    sw.set_defaults(func=_cmd_sweep)

    _add_exchange_sim(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (ConfigError, StoreError, EngineError, FileNotFoundError) as exc:
        print(f"pbdtui: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
