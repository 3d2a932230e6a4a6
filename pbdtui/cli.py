"""The ``pbdtui`` command line.

Every command takes ``--config PATH`` (default: ./config.yaml when present,
else built-in defaults). Problems with input (config keys, flags, files,
rows) end the command with a one-line message naming the file, flag or key,
and exit status 2; they never leave a half-written database behind.

Long work shows a progress bar on stderr when stderr is a terminal
(``pbdtui.progress``); piped or captured output gets only the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from engine.config import ConfigError, Settings, load_settings
from engine.store import StoreError

HOUR_MS = 3_600_000
COMPILE_NOTICE = "compiling numba kernels (first run after an install or upgrade, about a minute)..."
RANGE_FORMS = "UTC: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] or 'YYYY-MM-DD HH:MM:SS'"
# engine.sweep.OBJECTIVES, named here so that --help and parse errors need no engine import (a test keeps
# the two the same)
RANK_BY = ("net_pnl", "profit_factor", "sharpe", "sortino", "expectancy", "win_rate", "max_drawdown")


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config
    if path is None and Path("config.yaml").is_file():
        path = "config.yaml"
    return load_settings(path)


# --- shared options -----------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples in the epilog keep their line breaks."""


class _Parser(argparse.ArgumentParser):
    """A mistake on the command line is one line, like every other input error, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _command(sub: Any, name: str, help_text: str, example: str, description: str | None = None
             ) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example."""
    return sub.add_parser(name, help=help_text, description=description or help_text[:1].upper() + help_text[1:],
                          epilog="example:\n" + example, formatter_class=_Formatter)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help="config.yaml to use (default ./config.yaml or built-in defaults)")


def _add_db(p: argparse.ArgumentParser, what: str = "the pbdtui database (SQLite file)") -> None:
    p.add_argument("--db", required=True, metavar="FILE", help=what)


def _add_range(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--from", dest="start", metavar="TIME", default=None,
                   help=f"use {what} from this time on, inclusive (default: from the first stored); {RANGE_FORMS}")
    p.add_argument("--to", dest="end", metavar="TIME", default=None,
                   help=f"use {what} before this time, exclusive (default: through the last stored); a bare "
                        "date means the end of that day, so --to 2026-01-05 includes all of Jan 5")


def _add_instrument(p: argparse.ArgumentParser) -> None:
    from engine.instruments import KNOWN

    p.add_argument("--symbol", metavar="SYMBOL", default=None,
                   help=f"instrument of the data: one of {', '.join(KNOWN)} (tick size and lot step from a "
                        "table), or any symbol with --tick-size and --qty-step (default: the database's own "
                        "instrument, else the config's symbol)")
    p.add_argument("--tick-size", type=float, metavar="PRICE", default=None,
                   help="price increment of --symbol (overrides the table; needed for an unknown symbol)")
    p.add_argument("--qty-step", type=float, metavar="QTY", default=None,
                   help="size increment (lot) of --symbol (overrides the table; needed for an unknown symbol)")


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: a process pool on this machine (default); ray: Ray tasks (pip install "
                        "\".[cluster]\"), on a local Ray instance of --workers CPUs or the cluster at --address")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="with --backend ray: a running Ray cluster (e.g. 10.0.0.5:6379 or auto); the --db path "
                        "must be readable on every node")


def _range(args: argparse.Namespace) -> tuple[int | None, int | None]:
    from engine.timerange import parse_range

    return parse_range(args.start, args.end)


def _stored_instrument(db: str) -> Any:
    """The instrument a database is bound to (None: no such file, or nothing bound yet)."""
    import apsw

    from engine.store import NoTablesError, Store

    if not Path(db).is_file() or Path(db).stat().st_size == 0:  # an empty file: nothing bound yet
        return None
    try:
        with Store(db, readonly=True) as store:
            return store.instrument
    except NoTablesError:
        return None  # another process is creating it: the writer's own open waits for its lock, then binds
    except apsw.Error as exc:
        raise StoreError(f"{db}: not a pbdtui database ({exc})") from exc


def _for_instrument(args: argparse.Namespace, settings: Settings, trading: bool) -> Settings:
    """Settings for the instrument of ``--symbol``, else the database's own, else the config's.

    Args:
        args: with ``db`` and the ``_add_instrument`` flags.
        settings: from the config.
        trading: the command sizes orders (``order_qty`` must fit the lot step).
    """
    from engine import instruments
    from engine.store import instrument_of

    stored = _stored_instrument(args.db)
    if args.symbol is None:
        if args.tick_size is not None or args.qty_step is not None:
            raise ConfigError("--tick-size and --qty-step need --symbol")
        if stored is None or stored == instrument_of(settings):
            return settings
        # the stored ticks only mean prices in the store's own units: follow them
        known = instruments.KNOWN.get(stored.symbol)
        spec = instruments.InstrumentSpec(stored.symbol, stored.tick_size, stored.qty_step,
                                          known.min_qty if known else stored.qty_step)
        from pbdtui.progress import notice

        notice(f"{args.db} holds {stored.symbol} (tick_size {stored.tick_size:g}, qty_step "
               f"{stored.qty_step:g}); using it instead of the config's {settings.symbol}")
        return instruments.apply(settings, spec, trading)
    spec = instruments.resolve(args.symbol, args.tick_size, args.qty_step)
    if stored is not None and (stored.symbol, stored.tick_size, stored.qty_step) != (
            spec.symbol, spec.tick_size, spec.qty_step):
        raise StoreError(f"{args.db}: holds {stored.symbol} (tick_size {stored.tick_size:g}, qty_step "
                         f"{stored.qty_step:g}), not {spec.symbol} (tick_size {spec.tick_size:g}, qty_step "
                         f"{spec.qty_step:g}): pass --symbol {stored.symbol} or use another --db")
    return instruments.apply(settings, spec, trading)


def _need_db(db: str) -> None:
    if Path(db).is_dir():
        raise StoreError(f"{db}: is a folder, not a database file")
    if not Path(db).is_file():
        raise FileNotFoundError(f"{db}: no such database")


def _need_data(db: str, start: int | None, end: int | None, quotes: bool, bars: bool = False) -> None:
    """Refuse to run on data that cannot give a result, saying what is missing.

    A backtest without quotes cannot fill an order and one without trades
    has no bars, so either "succeeded" with 0 trades before; features
    without any tick wrote nothing and said so only as "0 minutes".

    Args:
        db: the database (exists).
        start: ``--from`` in ms, or None.
        end: ``--to`` in ms, or None.
        quotes: the command fills orders, so it needs quotes.
        bars: bar mode: needs ``bars_1m`` rows (with close quotes) instead of ticks.
    """
    from engine.store import Store
    from engine.timerange import range_text

    where = range_text(start, end)
    with Store(db, readonly=True) as store:
        if bars:
            lo, hi = (-(2**62) if start is None else start), (2**62 if end is None else end)
            rows, quoted = store.fetch("SELECT COUNT(*), COUNT(bid_px_close) FROM bars_1m WHERE ts_min>=? AND ts_min<?",
                                       (lo, hi))[0]
            if rows == 0:
                raise StoreError(f"{db}: no bars_1m rows {where}: run `pbdtui features --db {db}` first "
                                 "(bar mode reads the minute tables)")
            if quoted == 0:
                raise StoreError(f"{db}: no quotes {where}: bars_1m has no bid/ask close, and bar mode fills "
                                 "at them (import a quotes file or a Bybit book archive, then rerun features)")
            return
        if store.tick_range(start, end) is None:
            what = "no stored ticks" if start is None and end is None else f"no ticks {where}"
            raise StoreError(f"{db}: {what}: import or synthesize data first")
        if store.count_ticks("trade", start, end) == 0:
            raise StoreError(f"{db}: no trades {where}: minute bars and the value area are built from trades "
                             "(import a trades file)")
        if quotes and store.count_ticks("quote", start, end) == 0:
            raise StoreError(f"{db}: no quotes {where}: orders fill on quotes (import a quotes file or a Bybit "
                             "book archive)")


def _check_out(out: str | None) -> None:
    """Refuse an ``--out`` that cannot be a folder before any work, not after it."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")


def _stored_run_inputs(args: argparse.Namespace, trading: bool) -> tuple[Settings, int | None, int | None]:
    """Settings and --from/--to of a command over a stored database: flags and config first, then the file."""
    start, end = _range(args)
    settings = _settings(args)
    _need_db(args.db)
    return _for_instrument(args, settings, trading), start, end


def _compile_notice(names: Sequence[str]) -> None:
    """Say so when the kernels ``names`` need will be compiled first (a silent minute looks hung)."""
    from engine.kernel_cache import uncompiled
    from pbdtui.progress import notice

    if uncompiled(names):
        notice(COMPILE_NOTICE)


# --- commands -------------------------------------------------------------------------


def _cmd_import(args: argparse.Namespace) -> int:
    from engine import importers
    from engine.store import ARCHIVE_PAGE_SIZE, Store, instrument_of
    from pbdtui.progress import progress

    settings = _for_instrument(args, _settings(args), trading=False)
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
        symbol = importers.file_symbol(path, args.format)
        if symbol is not None and symbol != settings.symbol:
            raise ConfigError(f"{path}: holds {symbol} rows, not {settings.symbol}: pass --symbol {symbol}")

    def bar(path: str) -> Any:
        return progress(f"import {Path(path).name}", "MB", 1e6)

    created = not Path(args.db).exists()
    stored = _stored_instrument(args.db) if not created else None
    jobs: list[tuple[str, Any]] = []
    if args.format == "tardis":
        for kind in ("trades", "quotes"):
            path = getattr(args, kind)
            if path:  # one file at a time, each with its own bar
                jobs.append((path, lambda st, p, u, k=kind: importers.import_tardis(
                    st, settings, **{k: p}, progress=lambda _p: u)[0]))
    else:
        one = importers.import_bybit_trades if args.format == "bybit-trades" else importers.import_bybit_book
        jobs += [(path, lambda st, p, u, f=one: f(st, settings, p, progress=u)) for path in files]
    store = Store(args.db, instrument_of(settings), page_size=ARCHIVE_PAGE_SIZE, background_checkpoint=True)
    try:
        for path, run in jobs:
            with bar(path) as update:
                report = run(store, path, update)
            print(report.summary(), flush=True)  # each file's line as soon as it is done
            if report.rows_ok == 0:
                raise ConfigError(_nothing_valid(path, report, args.format))
    finally:
        empty = store.tick_range() is None
        if empty and stored is None and not created:
            store.unbind()  # a database bound by this import only: free for the right instrument
        store.close()
        if empty and created:  # never leave an empty database bound to a guess behind
            for suffix in ("", "-wal", "-shm"):
                Path(args.db + suffix).unlink(missing_ok=True)
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from engine import download, importers, instruments
    from engine.store import ARCHIVE_PAGE_SIZE, Store, instrument_of
    from engine.timerange import parse_utc
    from pbdtui.progress import progress

    settings = _settings(args)
    for flag, value in (("--from", args.start), ("--to", args.end)):
        parse_utc(value, flag)  # one-line message for a bad date
        if len(value.strip()) != 10:
            raise ConfigError(f"{flag} {value!r}: give a UTC date YYYY-MM-DD (archives are daily)")
    try:
        days = download.dates(args.start.strip(), args.end.strip())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {args.retries}")
    if args.do_import and args.db is None:
        raise ConfigError("--import needs --db FILE")
    if args.db is not None and not args.do_import:
        raise ConfigError("--db is only used with --import")
    if args.db is not None:
        settings = _for_instrument(args, settings, trading=False)
    elif args.symbol is not None:
        settings = instruments.apply(settings, instruments.resolve(args.symbol, args.tick_size, args.qty_step), False)
    base = args.base_url or (settings.archive_trades_url if args.kind == "trades" else settings.archive_book_url)
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"--base-url {base!r}: not an http:// or https:// URL")
    cache = download.cache_folder(args.cache)
    store = Store(args.db, instrument_of(settings), page_size=ARCHIVE_PAGE_SIZE, background_checkpoint=True) if args.do_import else None
    failed: list[str] = []
    rows = 0
    import_seconds = 0.0
    started = time.perf_counter()
    kind = "trades" if args.kind == "trades" else "book"

    # a trade archive to import is checked by the import itself (it inflates every byte with the CRC
    # checks and reads the header), not inflated a second time before it
    checked_by_import = store is not None and kind == "trades"

    def fetch(day: str, update: Any) -> Any:
        """The day's Fetched, or the DownloadError that stopped it."""
        name = download.archive_name(args.kind, settings.symbol, day, args.depth)
        url = download.archive_url(base, args.kind, settings.symbol, day, args.depth)
        try:
            return download.fetch(url, cache / name, kind, retries=args.retries, backoff=args.backoff,
                                  timeout=args.timeout, progress=update, date=day, verify_file=not checked_by_import)
        except download.DownloadError as exc:
            return exc

    # with --import the next day downloads in a thread while this one imports (the socket and
    # zlib release the GIL), so a run costs about the larger of the two, not their sum; its bar is
    # not drawn (one live display at a time), its line is printed when its turn comes
    ahead = ThreadPoolExecutor(max_workers=1) if store is not None else None
    warm = None
    if checked_by_import:  # the import's kernels load while the first archive downloads
        warm = threading.Thread(target=importers.warm_bybit_trades, args=(settings,), name="warm", daemon=True)
        warm.start()
    try:
        next_job = ahead.submit(fetch, days[0], None) if ahead is not None else None
        for k, day in enumerate(days):
            name = download.archive_name(args.kind, settings.symbol, day, args.depth)
            if ahead is not None and next_job is not None:
                got = next_job.result()
                next_job = ahead.submit(fetch, days[k + 1], None) if k + 1 < len(days) else None
            else:
                with progress(f"download {name}", "MB", 1e6) as update:
                    got = fetch(day, update)
            if isinstance(got, download.DownloadError):
                print(f"{day}: failed: {got}", flush=True)
                failed.append(day)
                continue
            if got.status == "cached":
                print(f"{day}: {name} already in {cache}", flush=True)
            else:
                more = f", {got.attempts} requests" if got.attempts > 1 else ""
                print(f"{day}: {got.status} {name} ({got.bytes / 1e6:.1f} MB, {got.seconds:.2f} s{more})", flush=True)
            if store is not None:
                one = importers.import_bybit_trades if args.kind == "trades" else importers.import_bybit_book
                if warm is not None:
                    warm.join()
                try:
                    with progress(f"import {name}", "MB", 1e6) as update:
                        report = one(store, settings, got.path, progress=update)
                except importers.UnreadableFile as exc:  # nothing of it was stored
                    if not checked_by_import:
                        raise
                    print(f"{day}: failed: {download.reject(got, str(exc).removeprefix(f'{got.path}: '))}", flush=True)
                    failed.append(day)
                    continue
                print(report.summary(), flush=True)
                rows += report.rows_ok + report.rows_bad
                import_seconds += report.seconds
    finally:
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)
        if store is not None:
            store.close()
    total = time.perf_counter() - started
    line = f"{len(days) - len(failed)} of {len(days)} file(s) in {cache}"
    if store is not None:
        line += (f"; imported {rows} rows into {args.db} ({total:.1f} s, {rows / max(total, 1e-9) / 1e3:.0f}k rows/s "
                 f"download+import, {rows / max(import_seconds, 1e-9) / 1e3:.0f}k rows/s import)")
    print(line)
    if failed:
        raise ConfigError(f"{len(failed)} date(s) failed: {', '.join(failed)} (see above; run again to resume)")
    return 0


def _nothing_valid(path: str, report: Any, fmt: str) -> str:
    """The error for a file that gave no valid row: how many were rejected and the first reason."""
    what = "messages" if fmt == "bybit-book" else "rows"
    if report.rows_bad == 0:
        return f"{path}: no data {what} after the header; nothing imported"
    hint = ""
    if report.first_problem and ("tick_size" in report.first_problem or "qty_step" in report.first_problem):
        hint = " (is --symbol, --tick-size or --qty-step right for this file?)"
    return (f"{path}: no valid {what}: all {report.rows_bad} were rejected, the first at "
            f"{report.first_problem}{hint}; nothing imported")


def _cmd_synth(args: argparse.Namespace) -> int:
    from engine.kernel_cache import SYNTH
    from engine.store import Store, instrument_of
    from engine.synth import synthesize
    from engine.timerange import parse_utc
    from pbdtui.progress import progress

    settings = _settings(args)
    if not args.days > 0:
        raise ConfigError(f"--days must be positive, got {args.days:g}")
    if args.start is not None and args.start_ms is not None:
        raise ConfigError("give --start or --start-ms, not both")
    start_ms = parse_utc(args.start, "--start") if args.start is not None else args.start_ms
    _compile_notice(SYNTH)
    with Store(args.db, instrument_of(settings)) as store, progress("synth", "h", HOUR_MS) as update:
        report = synthesize(store, settings, days=args.days, seed=args.seed, start_ms=start_ms, progress=update)
    print(report.summary())
    return 0


def _purge_lines(plan: Any, keep_hours: float, db: str, dry_run: bool) -> list[str]:
    from engine.info import size_text
    from engine.store import KIND_DTYPES
    from engine.timerange import utc_text

    head = (f"purge {db}: keep {keep_hours:g} h before {utc_text(plan.now, True)} UTC"
            f" -> cutoff {utc_text(plan.cutoff, True)} UTC")
    total = sum(plan.rows.values())
    if total == 0:
        return [head, "nothing to remove: no raw tick is older than the cutoff"]
    verb = "would remove" if dry_run else "removed"
    rows = " + ".join(f"{n} {kind}s" for kind, n in plan.rows.items())
    raw = sum(n * KIND_DTYPES[kind].itemsize for kind, n in plan.rows.items())
    return [head, f"{verb} {rows} ({size_text(raw)} of tick data) from {utc_text(plan.first_ts, True)} "
                  f"to {utc_text(plan.last_ts, True)} UTC; derived tables (bars_1m, features_1m, runs) are kept"]


def _cmd_purge(args: argparse.Namespace) -> int:
    from engine.info import size_text
    from engine.store import ARCHIVE, Store, instrument_of

    settings = _settings(args)  # config problems first, then files
    _need_db(args.db)
    settings = _for_instrument(args, settings, trading=False)
    hours = args.keep_hours if args.keep_hours is not None else settings.retention_hours
    if hours < 0:
        raise ConfigError(f"--keep-hours must not be negative, got {hours:g}")
    keep_ms = int(round(hours * HOUR_MS))
    # read-write even for --dry-run: nothing is written, and closing removes the -wal/-shm files
    with Store(args.db, instrument_of(settings)) as store:
        if args.keep_hours is None and store.retention() == ARCHIVE:
            raise ConfigError(f"{args.db}: is an archive database (raw ticks are kept for good; the "
                              f"{settings.retention_hours} h retention is for live databases): give --keep-hours "
                              "to purge it anyway, or mark it live with 'pbdtui data retention --db D live'")
        plan = store.plan_purge(keep_ms, now_ms=args.now_ms)
        lines = _purge_lines(plan, hours, args.db, args.dry_run)
        free_pages = store.fetch("PRAGMA freelist_count")[0][0]
        if args.dry_run or (sum(plan.rows.values()) == 0 and free_pages == 0):
            print("\n".join(lines))
            return 0
        before = store.file_bytes()
        dropped, _ = store.purge_raw(keep_ms, now_ms=args.now_ms)
        if dropped != sum(plan.rows.values()):  # one writer at a time: cannot happen unless the file changed under us
            raise StoreError(f"{args.db}: removed {dropped} ticks, expected {sum(plan.rows.values())}")
        store.reclaim_space()  # also pages an earlier purge left free
        after = store.file_bytes()
    print("\n".join(lines))
    print(f"file {size_text(before)} -> {size_text(after)}: {size_text(max(0, before - after))} given back to the disk")
    return 0


def _cmd_retention(args: argparse.Namespace) -> int:
    from engine.store import LIVE, Store

    _need_db(args.db)
    with Store(args.db, readonly=args.set is None) as store:
        if args.set is not None:
            store.set_retention(args.set)
        value = store.retention()
    what = ("raw ticks past retention_hours are purged by the recorder and 'pbdtui data purge'" if value == LIVE
            else "raw ticks are kept for good ('pbdtui data purge' needs --keep-hours)")
    print(f"{args.db}: {value} database: {what}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from engine.info import info_text, store_info
    from engine.store import Store

    settings = _settings(args)
    _need_db(args.db)  # never create a database just to describe it
    if args.gap_minutes < 1:
        raise ConfigError(f"--gap-minutes must be at least 1, got {args.gap_minutes}")
    if args.top < 0:
        raise ConfigError(f"--top must not be negative, got {args.top}")
    # --symbol only checks that the database holds that instrument; the report shows the stored one
    if args.symbol is not None or args.tick_size is not None or args.qty_step is not None:
        settings = _for_instrument(args, settings, trading=False)
    with Store(args.db, readonly=True) as store:
        doc = store_info(store, args.gap_minutes, args.top, settings.rolling_window_minutes)
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
    else:
        sys.stdout.write(info_text(doc))
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from engine.features import compute_features_to_store
    from engine.kernel_cache import EVENTS
    from engine.store import Store, instrument_of
    from pbdtui.progress import progress

    settings, start, end = _stored_run_inputs(args, trading=False)
    _need_data(args.db, start, end, quotes=False)
    _compile_notice(EVENTS)
    with Store(args.db, instrument_of(settings)) as store, progress("features", "h of data", HOUR_MS) as update:
        summary = compute_features_to_store(store, settings, start, end, update)
    print(summary.line())
    return 0


DEMO_LIVE_SPEED = 30.0  # the demo's market: 3 h of trading in 6 min, a pace the live path and the eye follow


def _cmd_demo(args: argparse.Namespace) -> int:
    from engine.store import Store, instrument_of
    from engine.timerange import range_text
    from pbdtui.app import run_demo

    start, end = _range(args)
    settings = _settings(args)
    if args.db is None:
        if args.symbol or args.tick_size or args.qty_step or start is not None or end is not None:
            raise ConfigError("--symbol, --tick-size, --qty-step, --from and --to need --db "
                              "(the generated session is BTCUSDT)")
        from engine.kernel_cache import EVENTS
        from pbdtui.demo import run_live_demo

        speed = DEMO_LIVE_SPEED if args.speed is None else args.speed
        if not speed > 0:
            raise ConfigError(f"--speed must be positive, got {speed:g}")
        _compile_notice(EVENTS)
        from pbdtui.app import DEMO_DAYS
        from pbdtui.demo import streamed_minutes

        days = DEMO_DAYS if args.days is None else args.days
        if not streamed_minutes(settings, days) >= 10:
            raise ConfigError(f"--days {days:g}: the demo streams what follows the {settings.rolling_window_minutes}"
                              f"-minute window and 10 more minutes of history; give at least "
                              f"{(settings.rolling_window_minutes + 20) / 1440:.3f} days")
        return run_live_demo(settings, seed=args.seed, speed=speed, days=days)
    _need_db(args.db)
    settings = _for_instrument(args, settings, trading=True)
    with Store(args.db, instrument_of(settings), readonly=True) as store:
        if store.tick_range(start, end) is None:
            raise StoreError(f"{args.db}: no ticks to replay {range_text(start, end)}")
    return run_demo(settings, db=args.db, speed=600.0 if args.speed is None else args.speed, seed=args.seed,
                    start_ms=start, end_ms=end)


def _cmd_replay(args: argparse.Namespace) -> int:
    from engine.store import Store, instrument_of
    from engine.timerange import range_text
    from pbdtui.app import run_demo

    start, end = _range(args)
    _need_db(args.db)
    settings = _for_instrument(args, _settings(args), trading=True)
    with Store(args.db, instrument_of(settings), readonly=True) as store:
        if store.tick_range(start, end) is None:
            raise StoreError(f"{args.db}: no ticks to replay {range_text(start, end)}")
    return run_demo(settings, db=args.db, speed=args.speed, start_ms=start, end_ms=end, print_report=True)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from engine.backtest import run_backtest_cli
    from engine.kernel_cache import BARS, EVENTS
    from pbdtui.progress import progress

    settings, start, end = _stored_run_inputs(args, trading=True)
    _check_out(args.out)
    _need_data(args.db, start, end, quotes=True, bars=args.mode == "bar")
    _compile_notice(EVENTS if args.mode == "tick" else BARS)
    if args.mode == "bar":  # seconds of work at most: no bar
        return run_backtest_cli(settings, db=args.db, mode=args.mode, out=args.out, start_ms=start, end_ms=end)
    with progress("backtest", "h of data", HOUR_MS) as update:
        return run_backtest_cli(settings, db=args.db, mode=args.mode, out=args.out, start_ms=start, end_ms=end,
                                progress=update)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from engine.kernel_cache import EVENTS, MINUTES
    from engine.sweep import run_sweep_cli
    from pbdtui.progress import progress

    settings, start, end = _stored_run_inputs(args, trading=True)
    _check_out(args.out)
    _need_data(args.db, start, end, quotes=True)
    _compile_notice(EVENTS + MINUTES)
    with progress("sweep", "combinations") as update:
        return run_sweep_cli(settings, db=args.db, grid=args.grid, out=args.out, workers=args.workers,
                             start_ms=start, end_ms=end, progress=update, rank_by=args.rank_by,
                             train_until=args.train_until, backend=args.backend, address=args.address)


def _cmd_walkforward(args: argparse.Namespace) -> int:
    from engine.kernel_cache import EVENTS, MINUTES
    from engine.walkforward import run_walkforward_cli
    from pbdtui.progress import progress

    settings, start, end = _stored_run_inputs(args, trading=True)
    _check_out(args.out)
    _need_data(args.db, start, end, quotes=True)
    _compile_notice(EVENTS + MINUTES)
    with progress("walk-forward", "windows") as update:
        return run_walkforward_cli(settings, db=args.db, grid=args.grid, train_days=args.train_days,
                                   test_days=args.test_days, objective=args.objective, out=args.out,
                                   workers=args.workers, start_ms=start, end_ms=end, progress=update,
                                   backend=args.backend, address=args.address)


# --- the parser -------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pbdtui")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from pbdtui import __version__

        return __version__


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


def _stream(args: argparse.Namespace, settings: Settings, url: str | None, trading: bool) -> int:
    """``collect`` and ``run --paper``: the live driver on the stream at ``url``."""
    from engine.kernel_cache import EVENTS
    from pbdtui.headless import run_collect

    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration must be positive, got {args.duration:g}")
    settings = _for_instrument(args, settings, trading=trading)
    _compile_notice(EVENTS)
    return run_collect(settings, args.db, url, args.duration, trading=trading)


def _cmd_collect(args: argparse.Namespace) -> int:
    return _stream(args, _settings(args), args.ws_url, trading=False)


def _add_collect(sub: Any) -> None:
    col = _command(
        sub, "collect", "record Bybit's public stream and compute features live, without the console",
        "  pbdtui collect --db live.db --duration 3600\n"
        "  pbdtui collect --db test.db --ws-url ws://127.0.0.1:8765/v5/public/linear   # pbdtui exchange-sim",
        description="Record publicTrade, orderbook.1 and tickers of the symbol into --db (ticks committed at\n"
                    "least every second, minutes appended as they close), warm-started from the ticks already\n"
                    "stored. Prints a status line every 5 s; stops on Ctrl-C, SIGTERM or after --duration.")
    _add_db(col, "the database to record into (created when missing)")
    col.add_argument("--ws-url", default=None, metavar="URL",
                     help="mainnet, testnet or any ws:// URL (default: ws_url from the config, mainnet)")
    col.add_argument("--duration", type=float, default=None, metavar="S",
                     help="stop after S seconds (default: run until stopped)")
    _add_instrument(col)
    _add_config(col)
    col.set_defaults(func=_cmd_collect)


MAINNET_CONFIRMATION = "TRADE MAINNET"


def _confirm_mainnet(symbol: str, stdin: Any = None, out: Any = None) -> None:
    """Mainnet needs the operator to type the confirmation on a terminal; anything else refuses."""
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stderr if out is None else out
    if not (stdin.isatty() and out.isatty()):
        raise ConfigError("--mainnet trades real money and needs a typed confirmation on a terminal; no terminal "
                          "here, refusing")
    text = f"{MAINNET_CONFIRMATION} {symbol}"
    print(f"LIVE trading on Bybit MAINNET with real money. Type '{text}' to continue: ", end="", file=out,
          flush=True)
    answer = stdin.readline().strip()
    if answer != text:
        raise ConfigError("mainnet confirmation not given (the text typed differs); nothing was sent")


def _rest_target(args: argparse.Namespace) -> str:
    """The REST base URL of --rest-url / --mainnet / --testnet (testnet by default), checked for mainnet."""
    from engine.adapters.bybit.rest import MAINNET_URL, resolve_rest_url

    try:
        url = resolve_rest_url(args.rest_url or ("mainnet" if args.mainnet else "testnet"))
    except ValueError as exc:
        raise ConfigError(f"--rest-url: {exc}") from None
    if url == MAINNET_URL and not args.mainnet:
        raise ConfigError(f"--rest-url {args.rest_url} is Bybit mainnet: pass --mainnet to trade there")
    return url


def _credentials() -> tuple[str, str]:
    from engine.adapters.bybit.rest import credentials_from_env

    try:
        return credentials_from_env()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.live:
        url = args.ws_url or ("testnet" if args.testnet else ("mainnet" if args.mainnet else None))
        return _stream(args, settings, url, trading=True)
    from engine.adapters.bybit.rest import MAINNET_URL, is_loopback
    from engine.kernel_cache import EVENTS
    from pbdtui.headless import run_live

    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration must be positive, got {args.duration:g}")
    rest_url = _rest_target(args)
    ws_url = args.ws_url or ("mainnet" if args.mainnet else "testnet")
    key, secret = _credentials()
    settings = _for_instrument(args, settings, trading=True)
    if rest_url == MAINNET_URL and not is_loopback(rest_url):
        _confirm_mainnet(settings.symbol)
    _compile_notice(EVENTS)
    try:
        return run_live(settings, args.db, ws_url, rest_url, key, secret, args.duration)
    except ValueError as exc:  # a bad --ws-url
        raise ConfigError(str(exc)) from None


def _cmd_live(args: argparse.Namespace) -> int:
    from engine.adapters.bybit.ws import resolve_url
    from engine.kernel_cache import EVENTS
    from pbdtui.app import run_live

    settings = _settings(args)
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration must be positive, got {args.duration:g}")
    rest_url, key, secret = None, "", ""
    if args.live:  # the same target and safety rules as pbdtui run --live
        from engine.adapters.bybit.rest import MAINNET_URL, is_loopback

        rest_url = _rest_target(args)
        key, secret = _credentials()
        if rest_url == MAINNET_URL and not is_loopback(rest_url):
            _confirm_mainnet(settings.symbol)
    elif args.rest_url:
        raise ConfigError("--rest-url is for --live (paper trading fills on the stream's quotes)")
    default_ws = ("mainnet" if args.mainnet else "testnet") if args.live else settings.ws_url
    url = args.ws_url or ("testnet" if args.testnet else ("mainnet" if args.mainnet else default_ws))
    try:
        url = resolve_url(url)
    except ValueError as exc:
        raise ConfigError(f"--ws-url: {exc}") from None
    db = Path(args.db) if args.db else default_live_db()
    db.parent.mkdir(parents=True, exist_ok=True)
    settings = _for_instrument(args, settings, trading=True)
    _compile_notice(EVENTS)
    return run_live(settings, db, url, trading=not args.signals_only, duration=args.duration, rest_url=rest_url,
                    api_key=key, api_secret=secret)


def default_live_db() -> Path:
    """``$XDG_DATA_HOME/pbdtui/live.db`` (``~/.local/share/pbdtui/live.db``): where ``pbdtui live`` records."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pbdtui" / "live.db"


def _cmd_attach(args: argparse.Namespace) -> int:
    from engine.runtime.control import ControlError
    from pbdtui.attach import run_attach

    try:
        return run_attach(_settings(args), args.db)
    except ControlError as exc:
        raise ConfigError(str(exc)) from None


def _add_attach(sub: Any) -> None:
    att = _command(
        sub, "attach", "the console on a running `pbdtui run` daemon (quitting leaves it trading)",
        "  pbdtui attach\n"
        "  pbdtui attach --db live.db",
        description="Connects to the daemon's control socket (owner-only): shows its profile, position,\n"
                    "signals, fills and alerts as they happen; k and f send the kill switch and flatten to\n"
                    "it. Closing the console or losing the SSH session never stops the daemon.")
    att.add_argument("--db", default=None, metavar="FILE",
                     help="the daemon's database (default: the only daemon running)")
    _add_config(att)
    att.set_defaults(func=_cmd_attach)


def _add_trading_target(parser: Any) -> Any:
    """--paper/--live, --testnet/--mainnet, --ws-url, --rest-url (run and live); returns the mode group."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--paper", action="store_true", help="paper trading on the live quotes (the default)")
    mode.add_argument("--live", action="store_true", help="trade for real through Bybit's REST API")
    net = parser.add_mutually_exclusive_group()
    net.add_argument("--testnet", action="store_true", help="Bybit testnet (the default for --live)")
    net.add_argument("--mainnet", action="store_true",
                     help="Bybit mainnet (the default stream for paper; --live asks for a typed confirmation)")
    parser.add_argument("--ws-url", default=None, metavar="URL",
                        help="any ws:// URL for the public stream (overrides --testnet/--mainnet and the config)")
    parser.add_argument("--rest-url", default=None, metavar="URL",
                        help="Bybit REST base URL for --live: testnet, demo, mainnet or http(s)://... (a loopback "
                             "venue needs no confirmation)")
    return mode


def _add_live(sub: Any) -> None:
    live = _command(
        sub, "live", "the console on Bybit's public stream: paper trading, recording as it goes",
        "  pbdtui live\n"
        "  pbdtui live --db btc-live.db --testnet\n"
        "  pbdtui live --db test.db --ws-url ws://127.0.0.1:8765/v5/public/linear   # pbdtui exchange-sim",
        description="Warm-start from the ticks in --db (signals only), then paper-trade the live stream in the\n"
                    "console: the backtest's fill model on live quotes. Records ticks, minutes and paper fills\n"
                    "into --db. Keys: k kill switch, f flatten, ? help, q quit. --live trades on Bybit's REST API\n"
                    "as `pbdtui run --live` does (testnet by default; --mainnet asks for a typed confirmation;\n"
                    "keys from BYBIT_API_KEY / BYBIT_API_SECRET only).")
    live.add_argument("--db", default=None, metavar="FILE",
                      help="the database to record into and warm-start from (default "
                           "$XDG_DATA_HOME/pbdtui/live.db, ~/.local/share/pbdtui/live.db)")
    mode = _add_trading_target(live)
    mode.add_argument("--signals-only", action="store_true", help="features and signals, no trading")
    live.add_argument("--duration", type=float, default=None, metavar="S",
                      help="end the session after S seconds (default: until q)")
    _add_instrument(live)
    _add_config(live)
    live.set_defaults(func=_cmd_live)


def _add_run(sub: Any) -> None:
    run = _command(
        sub, "run", "headless trading: live feed, engine, paper or live execution and recorder",
        "  pbdtui run --db live.db --paper --duration 3600\n"
        "  pbdtui run --db test.db --ws-url ws://127.0.0.1:8765/v5/public/linear   # pbdtui exchange-sim\n"
        "  BYBIT_API_KEY=... BYBIT_API_SECRET=... pbdtui run --db tn.db --live   # testnet",
        description="Warm-start from the ticks in --db (signals only), then trade the live stream. --paper (the\n"
                    "default): the backtest's fill model on live quotes. --live: orders through Bybit's REST API\n"
                    "(testnet unless --mainnet, which asks for a typed confirmation on a terminal; --rest-url\n"
                    "for a loopback venue), stops on the exchange with every entry, fills polled back,\n"
                    "reconciliation, a latched kill switch, and a control socket <db>.run/control.sock for\n"
                    "pbdtui flatten / status. Keys only from BYBIT_API_KEY / BYBIT_API_SECRET. Records ticks,\n"
                    "minutes and fills (trades_exec, run id paper-<start> or live-<start>); a status line\n"
                    "every 5 s; stops on Ctrl-C, SIGTERM or after --duration (positions stay protected by\n"
                    "their exchange stops).")
    _add_db(run, "the database to record into and warm-start from (created when missing)")
    _add_trading_target(run)
    run.add_argument("--duration", type=float, default=None, metavar="S",
                     help="stop after S seconds (default: run until stopped)")
    _add_instrument(run)
    _add_config(run)
    run.set_defaults(func=_cmd_run)


def _daemon_socket(args: argparse.Namespace, rest_url: str | None) -> Any:
    """The control socket of the running daemon meant (--socket, --db, else the only registered one)."""
    from engine.runtime.control import find_daemons, socket_path

    if args.socket is not None:
        return args.socket
    if args.db is not None:
        path = socket_path(args.db)
        return path if path.exists() else None
    found = find_daemons(rest_url)
    if len(found) > 1:
        raise ConfigError("several daemons are running (" + ", ".join(str(d.get("db")) for d in found)
                          + "): say which with --db")
    return found[0]["socket"] if found else None


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rest-url", default=None, metavar="URL",
                   help="Bybit REST base URL: testnet (default), demo, mainnet or http(s)://...")
    net = p.add_mutually_exclusive_group()
    net.add_argument("--testnet", action="store_true", help="Bybit testnet (the default)")
    net.add_argument("--mainnet", action="store_true", help="Bybit mainnet")
    p.add_argument("--db", default=None, metavar="FILE", help="the database of the daemon to ask (default: the "
                                                             "only running daemon, found in its run directory)")
    p.add_argument("--socket", default=None, metavar="PATH", help="the daemon's control socket")
    _add_config(p)


def _cmd_flatten(args: argparse.Namespace) -> int:
    from pbdtui.headless import flatten_once

    given = args.rest_url is not None or args.mainnet or args.testnet
    rest_url = _rest_target(args) if given else None
    sock = _daemon_socket(args, rest_url)
    if sock is None and rest_url is None:
        rest_url = _rest_target(args)
    return flatten_once(_settings(args), sock, rest_url, _credentials)


def _cmd_status(args: argparse.Namespace) -> int:
    from pbdtui.headless import status_once

    given = args.rest_url is not None or args.mainnet or args.testnet
    rest_url = _rest_target(args) if given else None
    return status_once(_settings(args), _daemon_socket(args, rest_url), rest_url, _credentials)


def _add_flatten_status(sub: Any) -> None:
    fl = _command(sub, "flatten", "close the position: through the running daemon, else directly on Bybit",
                  "  pbdtui flatten                       # the running daemon (testnet if none)\n"
                  "  pbdtui flatten --rest-url http://127.0.0.1:8766",
                  description="Kill switch on, cancel all open orders, close with a reduce-only market order and\n"
                              "read the position until the exchange confirms flat (retried, alerted). Through\n"
                              "the running daemon's control socket when one runs (its kill switch stays on until\n"
                              "reset), else directly via REST with BYBIT_API_KEY / BYBIT_API_SECRET. Exit 0 only\n"
                              "once the exchange confirms flat.")
    _add_target(fl)
    fl.set_defaults(func=_cmd_flatten)
    st = _command(sub, "status", "position, open orders, balance, kill switch and last reconciliation",
                  "  pbdtui status\n  pbdtui status --rest-url http://127.0.0.1:8766",
                  description="The exchange's position, open orders and balance (REST, keys from the\n"
                              "environment) and, when a daemon runs, its kill switch and last reconciliation.")
    _add_target(st)
    st.set_defaults(func=_cmd_status)


def _add_exchange_sim(sub: Any) -> None:
    sim = _command(
        sub, "exchange-sim", "a loopback Bybit public WebSocket on 127.0.0.1 serving stored or simulated ticks",
        "  pbdtui exchange-sim --synth-days 0.1 --seed 3 --speed 10 --fault drop@30s --fault garbage/200\n"
        "  pbdtui exchange-sim --db sim.db --speed 0 --port 8765",
        description="Serve Bybit v5 public frames (publicTrade, orderbook.1, tickers; subscribe acks, pongs)\n"
                    "on 127.0.0.1 from a database or a simulated session, with optional faults. Prints the\n"
                    "URL on its first line, then serves until Ctrl-C or SIGTERM.\n\n"
                    "faults: KIND[:ARG][@AT|/EVERY]; AT/EVERY in data frames (@500, /100) or session time\n"
                    "(@30s, /5m); kinds: drop, stall[:SECONDS], garbage, truncated, duplicate,\n"
                    "reorder[:FRAMES], reset, refuse[:TOPIC_PREFIX] (see loopback/faults.py).")
    sim.add_argument("--db", default=None, metavar="FILE", help="serve this database's ticks")
    sim.add_argument("--synth-days", type=float, default=None, metavar="N",
                     help="serve a simulated session of N days, generated once into ~/.cache/pbdtui (default 1)")
    sim.add_argument("--seed", type=int, default=1, help="seed of the simulated session (default %(default)s)")
    sim.add_argument("--speed", type=float, default=1.0, metavar="X",
                     help="x real time; 0 = as fast as clients read (default %(default)s)")
    sim.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    sim.add_argument("--fault", action="extend", nargs="+", default=[], metavar="KIND",
                     help="inject a fault (repeatable), e.g. drop@30s, stall:5@500, garbage/100, refuse:tickers")
    _add_config(sim)
    sim.set_defaults(func=_cmd_exchange_sim)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pbdtui", formatter_class=_Formatter,
        description="Backtest, replay and inspect an auction-market strategy (value area, order flow)\n"
                    "on Bybit perpetuals, 1-minute bars. Times are UTC.",
        epilog="examples:\n"
               "  pbdtui data synth --db sim.db --days 2\n"
               "  pbdtui backtest --db sim.db --from 2026-01-05T12:00 --to 2026-01-06 --out run1\n"
               "  pbdtui <command> --help   (every command's options, with an example)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (bad rows, every backtest decision) to stderr")
    parser.add_argument("--version", action="version", version=f"pbdtui {_version()}",
                        help="print the version and exit")
    # not required: bare ``pbdtui`` opens the demo in a terminal (what the README promises a
    # newcomer) and prints the help otherwise (a script or a pipe would wait on a screen)
    sub = parser.add_subparsers(dest="command", required=False, metavar="COMMAND")

    data = _command(sub, "data", "import, generate, describe and purge tick data",
                    "  pbdtui data info --db sim.db")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    imp = _command(data_sub, "import", "import ticks from files users already have",
                   "  pbdtui data import --db btc.db --format tardis --trades T.csv.gz --quotes Q.csv.gz\n"
                   "  pbdtui data import --db btc.db --format bybit-trades BTCUSDT2024-12-01.csv.gz\n"
                   "  pbdtui data import --db xrp.db --symbol XRPUSDT --format bybit-book "
                   "2024-12-01_XRPUSDT_ob500.data.zip",
                   description="Import ticks from files users already have. Re-importing a file adds nothing; "
                               "bad rows are skipped, counted and logged with file and line.")
    _add_db(imp, "the database to import into (created when missing)")
    imp.add_argument("--format", required=True, choices=["tardis", "bybit-trades", "bybit-book"],
                     help="tardis: Tardis CSV trades/quotes; bybit-trades: Bybit trade archive (.csv.gz); "
                          "bybit-book: Bybit order-book archive (.data.zip), stored as L1 quotes")
    imp.add_argument("--trades", metavar="FILE", help="trades file (Tardis CSV or Bybit trade archive)")
    imp.add_argument("--quotes", metavar="FILE", help="quotes file (Tardis CSV or Bybit book archive)")
    imp.add_argument("files", nargs="*", metavar="FILE", help="Bybit archive files (trades or book, per --format)")
    _add_instrument(imp)
    _add_config(imp)
    imp.set_defaults(func=_cmd_import)

    dl = _command(data_sub, "download", "fetch Bybit's public daily archives (trades or order book) into a cache",
                  "  pbdtui data download --from 2024-12-01 --to 2024-12-07\n"
                  "  pbdtui data download --from 2024-12-01 --to 2024-12-01 --kind book --import --db btc.db",
                  description="Fetch one archive per UTC date (--from and --to inclusive) into --cache: resumes "
                              "partial files (HTTP Range), retries with exponential backoff, verifies each file "
                              "(gzip/zip integrity, header) and skips those already there; with --import --db, "
                              "imports each file as `pbdtui data import` would.")
    dl.add_argument("--from", dest="start", required=True, metavar="DATE", help="first UTC date, YYYY-MM-DD")
    dl.add_argument("--to", dest="end", required=True, metavar="DATE", help="last UTC date, inclusive")
    dl.add_argument("--kind", choices=["trades", "book"], default="trades",
                    help="trades: SYMBOL<date>.csv.gz; book: <date>_SYMBOL_ob<depth>.data.zip (default %(default)s)")
    dl.add_argument("--depth", type=int, choices=[200, 500], default=200, help="book depth (default %(default)s)")
    dl.add_argument("--import", dest="do_import", action="store_true", help="import each file into --db")
    dl.add_argument("--db", default=None, metavar="FILE", help="database for --import (created when missing)")
    dl.add_argument("--base-url", default=None, metavar="URL",
                    help="archive host and folder (default: archive_trades_url / archive_book_url from the config)")
    dl.add_argument("--cache", default=None, metavar="DIR",
                    help="where the archives go (default ~/.cache/pbdtui/archives; made owner-only)")
    dl.add_argument("--retries", type=int, default=5, help="retries per file (default %(default)s)")
    dl.add_argument("--backoff", type=float, default=1.0, metavar="S",
                    help="first retry delay, doubled each retry (default %(default)s)")
    dl.add_argument("--timeout", type=float, default=30.0, metavar="S", help="socket timeout (default %(default)s)")
    _add_instrument(dl)
    _add_config(dl)
    dl.set_defaults(func=_cmd_download)

    syn = _command(data_sub, "synth", "generate realistic simulated BTCUSDT ticks (offline)",
                   "  pbdtui data synth --db sim.db --days 2 --seed 7 --start 2026-01-05")
    _add_db(syn, "the database to write into (created when missing)")
    syn.add_argument("--days", type=float, default=1.0, help="duration in days, fractions allowed: 0.25 is 6 h (default %(default)s)")
    syn.add_argument("--seed", type=int, default=1, help="random seed: the same seed and days give the same ticks (default %(default)s)")
    syn.add_argument("--start", metavar="TIME", default=None,
                     help="first tick time, UTC date or time (default 2026-01-05 00:00)")
    syn.add_argument("--start-ms", type=int, default=None, metavar="MS",
                     help="first tick time as ms since the epoch (instead of --start)")
    _add_config(syn)
    syn.set_defaults(func=_cmd_synth)

    pur = _command(data_sub, "purge", "drop raw ticks past the retention window and give the space back",
                   "  pbdtui data purge --db btc.db --keep-hours 48 --dry-run\n"
                   "  pbdtui data purge --db btc.db --keep-hours 48",
                   description="Drop raw ticks older than --keep-hours before the newest stored tick "
                               "(or --now-ms); bars_1m, features_1m and runs are kept. Then VACUUM gives the "
                               "space back to the disk (needs free space about the size of the kept data).")
    _add_db(pur)
    pur.add_argument("--keep-hours", type=float, default=None, metavar="HOURS",
                     help="hours of raw ticks to keep (default: retention_hours from the config)")
    pur.add_argument("--now-ms", type=int, default=None, metavar="MS",
                     help="reference time, ms since the epoch (default: the newest stored tick)")
    pur.add_argument("--dry-run", action="store_true", help="print what would be removed and change nothing")
    _add_instrument(pur)
    _add_config(pur)
    pur.set_defaults(func=_cmd_purge)

    ret = _command(data_sub, "retention", "show or set whether a database is live (raw ticks purged) or an archive",
                   "  pbdtui data retention --db btc.db\n"
                   "  pbdtui data retention --db history.db archive",
                   description="A live database (what 'pbdtui collect' and 'run' record into) keeps raw ticks for "
                               "retention_hours (48 h by default): the recorder and 'pbdtui data purge' drop older "
                               "ones. An archive (what 'data import', 'data download --import' and 'data synth' "
                               "create) keeps them for good. New databases are marked by the command that creates "
                               "them.")
    _add_db(ret)
    ret.add_argument("set", nargs="?", choices=("live", "archive"), default=None,
                     help="mark the database live or archive (default: show what it is)")
    ret.set_defaults(func=_cmd_retention)

    inf = _command(data_sub, "info", "describe a database: instrument, time ranges, gaps, sizes",
                   "  pbdtui data info --db btc.db --gap-minutes 5 --top 20",
                   description="Describe a database without changing it: instrument; raw trades and quotes "
                               "(rows, chunks, bytes, first/last UTC); funding; derived tables; imports; "
                               "gaps in the raw data, longest first; file size and free pages.")
    _add_db(inf, "the database to describe (never created)")
    inf.add_argument("--gap-minutes", type=int, default=1, metavar="N",
                     help="report gaps of at least N whole minutes without a trade or quote (default %(default)s)")
    inf.add_argument("--top", type=int, default=10, metavar="K", help="list the K longest gaps (default %(default)s)")
    inf.add_argument("--json", action="store_true", help="print JSON (times as ms and as UTC text)")
    _add_instrument(inf)
    _add_config(inf)
    inf.set_defaults(func=_cmd_info)

    feat = _command(sub, "features", "(re)compute bars_1m and features_1m from stored ticks",
                    "  pbdtui features --db btc.db --from 2026-01-05 --to 2026-01-06",
                    description="(Re)compute bars_1m and features_1m from stored ticks. With --from/--to "
                                "only that range is computed (starting from an empty state, warm-up "
                                "included) and only the rows of its minutes are replaced.")
    _add_db(feat)
    _add_range(feat, "ticks")
    _add_instrument(feat)
    _add_config(feat)
    feat.set_defaults(func=_cmd_features)

    demo = _command(sub, "demo", "the console on a simulated market through the live path (offline), or a replay",
                    "  pbdtui demo\n"
                    "  pbdtui demo --speed 60\n"
                    "  pbdtui demo --db btc.db --from '2026-01-05 08:00' --to '2026-01-05 16:00' --speed 300",
                    description="Without --db: a simulated session is served by the loopback Bybit venue on\n"
                                "127.0.0.1 and traded on paper through the live path (feed client, live clock,\n"
                                "recorder), as `pbdtui live` trades Bybit's stream; the first 4 h 10 min are the\n"
                                "warm-start history. With --db: that database replayed as `pbdtui replay` does.")
    demo.add_argument("--db", default=None, metavar="FILE", help="replay this database instead of generating one")
    demo.add_argument("--speed", type=float, default=None,
                      help=f"x real time (default {DEMO_LIVE_SPEED:g} for the simulated market, 600 for a replay)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated session, without --db (default %(default)s)")
    demo.add_argument("--days", type=float, default=None, metavar="N",
                      help="length of the generated session, without --db (default 0.3: the 4 h window, then 3 h)")
    _add_range(demo, "ticks to replay")
    _add_instrument(demo)
    _add_config(demo)
    demo.set_defaults(func=_cmd_demo)

    rp = _command(sub, "replay", "replay stored ticks in the console as a backtest (paper fills; ends in the report)",
                  "  pbdtui replay --db btc.db\n"
                  "  pbdtui replay --db btc.db --from '2026-01-05 08:00' --to '2026-01-05 16:00' --speed 300",
                  description="Replay recorded or imported ticks through the engine and paper fills in the "
                              "console, paced at --speed x real time (gaps are jumped). Keys: p pause, s step "
                              "a minute, n next trade, g seek, +/- speed, k kill switch, f flatten, ? help. "
                              "The end shows the backtest report of the replayed minutes (also printed on exit).")
    _add_db(rp, "the tick database to replay (never written)")
    rp.add_argument("--speed", type=float, default=600.0, help="replay speed, x real time (default %(default)s)")
    _add_range(rp, "ticks to replay")
    _add_instrument(rp)
    _add_config(rp)
    rp.set_defaults(func=_cmd_replay)

    bt = _command(sub, "backtest", "backtest the strategy on stored data",
                  "  pbdtui backtest --db btc.db --from 2026-01-05 --to 2026-01-07 --out runs/jan5")
    _add_db(bt)
    bt.add_argument("--mode", choices=["tick", "bar"], default="tick",
                    help="tick: replay every trade and quote (spec mode 1); bar: bars_1m/features_1m with a "
                         "bar fill model (mode 2; run `pbdtui features` first). Default %(default)s")
    bt.add_argument("--out", default=None, metavar="DIR",
                    help="directory for report.json, report.txt, trades.csv and decisions.log "
                         "(default ./backtests/<run_id>/)")
    _add_range(bt, "ticks (bar mode: minutes)")
    _add_instrument(bt)
    _add_config(bt)
    bt.set_defaults(func=_cmd_backtest)

    sw = _command(sub, "sweep", "sensitivity sweep of the tick backtest over config keys",
                  "  pbdtui sweep --db btc.db --grid slippage_ticks_entry=0,1 --grid fee_model=taker,maker "
                  "--workers 2 --from 2026-01-05\n"
                  "  pbdtui sweep --db btc.db --grid cooldown_minutes=0,3,10 --rank-by sharpe --train-until 2026-01-06")
    _add_db(sw)
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", required=True,
                    help="a config key and its values (repeat for more keys; all combinations run)")
    sw.add_argument("--out", default=None, metavar="DIR", help="directory for sweep.csv and sweep.json "
                                                               "(default ./sweep_out)")
    sw.add_argument("--workers", type=int, default=None, metavar="N", help="worker processes (default: CPU count)")
    sw.add_argument("--rank-by", default="net_pnl", choices=RANK_BY, metavar="OBJECTIVE",
                    help="sort by net_pnl (default), profit_factor, sharpe, sortino, expectancy, win_rate or "
                         "max_drawdown (smallest first)")
    sw.add_argument("--train-until", default=None, metavar="DATE",
                    help="cut each run at DATE (UTC; a bare date cuts at the end of that day): rank by the "
                         "round trips closed before the cut (train) and show those closed from it on (test) "
                         "beside them")
    _add_backend(sw)
    _add_range(sw, "ticks")
    _add_instrument(sw)
    _add_config(sw)
    sw.set_defaults(func=_cmd_sweep)

    wf = _command(sub, "walkforward", "walk-forward test: choose parameters on rolling train windows, trade them on the next",
                  "  pbdtui walkforward --db btc.db --grid accept_outside_k=2,3 --grid cooldown_minutes=0,5 "
                  "--train-days 7 --test-days 1",
                  description="Rolling windows from the first tick's UTC midnight (or --from): train on "
                              "--train-days, test on the --test-days after, step --test-days. On each window "
                              "the grid's best combination by --objective on train is traded on test; the "
                              "test periods are stitched into the out-of-sample result, shown beside the "
                              "in-sample one. Writes walkforward.csv and walkforward.json.")
    _add_db(wf)
    wf.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", required=True,
                    help="a config key and its values (repeat for more keys; all combinations run per window)")
    wf.add_argument("--train-days", type=float, required=True, metavar="N", help="training window, days (fractions allowed)")
    wf.add_argument("--test-days", type=float, required=True, metavar="M", help="test window and step, days")
    wf.add_argument("--objective", default="net_pnl", choices=RANK_BY, metavar="OBJECTIVE",
                    help=f"what the best combination maximises on train: {', '.join(RANK_BY)} (max_drawdown: "
                         "smallest); default %(default)s")
    wf.add_argument("--out", default=None, metavar="DIR", help="directory for walkforward.csv and walkforward.json "
                                                               "(default ./walkforward_out)")
    wf.add_argument("--workers", type=int, default=None, metavar="N", help="worker processes (default: CPU count)")
    _add_backend(wf)
    _add_range(wf, "ticks")
    _add_instrument(wf)
    _add_config(wf)
    wf.set_defaults(func=_cmd_walkforward)

    _add_exchange_sim(sub)
    _add_collect(sub)
    _add_run(sub)
    _add_flatten_status(sub)
    _add_live(sub)
    _add_attach(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            parser.print_help()
            return 2
        print("pbdtui: no command given: opening the demo (pbdtui demo); pbdtui --help lists the commands",
              file=sys.stderr, flush=True)
        args = parser.parse_args(["demo"])
    from engine.types import (
        EngineError,  # not engine.engine: numba is imported by the commands that need it
    )

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ConfigError, StoreError, EngineError, OSError) as exc:  # OSError: files (missing, no permission, ...)
        print(f"pbdtui: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
