"""Download Bybit's public daily archives into a local cache (``pbdtui data download``).

One file per UTC date and kind (``BYBIT.md`` section 5):

- trades: ``{trades_base}/{SYMBOL}/{SYMBOL}{YYYY-MM-DD}.csv.gz`` (gzip CSV with a header line),
- book: ``{book_base}/{SYMBOL}/{YYYY-MM-DD}_{SYMBOL}_ob{DEPTH}.data.zip`` (a zip of one NDJSON member).

Both bases are config keys (``archive_trades_url``, ``archive_book_url``) and
``--base-url`` overrides the one of the kind downloaded, so a mirror or a
loopback server can stand in for Bybit.

How a file arrives:

- It is written to ``NAME.part`` (0600) in the cache folder and renamed to
  ``NAME`` only once it is complete and verified (or, with ``--import``,
  about to be read whole by the import), so a file under its own name is
  whole: one that is already there is skipped without a request.
- A ``.part`` left by a broken connection or an interrupted run is resumed
  with ``Range: bytes=N-``; a server that ignores the range (200 instead of
  206) makes the download start over rather than append a second copy.
- A short body (fewer bytes than ``Content-Length``), a connection error, a
  timeout, 429 or any 5xx is retried with exponential backoff (``backoff``
  seconds doubled each time, ``retries`` times), resuming where it stopped.
  404 is not retried: Bybit has no archive for that date (yet).
- Verification reads the whole file: the gzip stream must decompress with
  its CRC and length intact and start with a header naming the importer's
  columns; the zip must hold one member whose CRC checks and whose first
  line is an ``orderbook.*`` JSON message. A file that fails is deleted and
  reported (``DownloadError``): downloading it again would give the same bytes.
- With ``verify_file=False`` (``data download --import`` of trade archives)
  only the file's first bytes are checked here and the import that follows
  at once is the verification: it inflates every byte with the same CRC and
  length checks and reads the header, in one transaction. A file it cannot
  read is deleted (``reject``) and nothing of it is stored; so is a damaged
  file found in the cache. Inflating each archive twice (check, then
  import) cost 0.24 CPU s per million rows.

Only the standard library is used (``urllib``): one request per file does
not need a connection pool, and the archives are public (no auth).
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import os
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine import gz
from engine.private import FILE_MODE, private_dir

KINDS = ("trades", "book")
BOOK_DEPTHS = (200, 500)
TRADE_HEADER = ("timestamp", "symbol", "side", "size", "price", "trdMatchID")  # importers.BYBIT_TRADE_COLUMNS
READ_BYTES = 1 << 20
MAGIC = {"trades": b"\x1f\x8b", "book": b"PK\x03\x04"}  # the first bytes of a gzip file, of a zip file
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

Progress = Callable[[float, float], None]


class DownloadError(Exception):
    """A file that could not be fetched or did not verify; the message names the URL or the file."""


@dataclass
class Fetched:
    """What happened to one date's file."""

    date: str
    url: str
    path: Path
    status: str  # 'downloaded', 'resumed' or 'cached'
    bytes: int  # bytes transferred by this run (0 when cached)
    attempts: int  # HTTP requests made
    seconds: float


def dates(start: str, end: str) -> list[str]:
    """UTC dates ``start`` to ``end``, both inclusive, as ``YYYY-MM-DD``.

    Raises:
        ValueError: a bad date, or ``end`` before ``start``.
    """
    lo, hi = _dt.date.fromisoformat(start), _dt.date.fromisoformat(end)
    if hi < lo:
        raise ValueError(f"--to {end} is before --from {start}")
    return [(lo + _dt.timedelta(days=i)).isoformat() for i in range((hi - lo).days + 1)]


def archive_name(kind: str, symbol: str, date: str, depth: int = 200) -> str:
    """The archive's file name, e.g. ``BTCUSDT2024-12-01.csv.gz`` or ``2024-12-01_BTCUSDT_ob200.data.zip``."""
    if kind == "trades":
        return f"{symbol}{date}.csv.gz"
    if kind == "book":
        return f"{date}_{symbol}_ob{depth}.data.zip"
    raise ValueError(f"unknown archive kind {kind!r} (one of {', '.join(KINDS)})")


def archive_url(base: str, kind: str, symbol: str, date: str, depth: int = 200) -> str:
    """``{base}/{SYMBOL}/{name}``: the layout of both of Bybit's archive hosts."""
    return f"{base.rstrip('/')}/{symbol}/{archive_name(kind, symbol, date, depth)}"


# --- verification --------------------------------------------------------------------------


def verify(path: Path, kind: str, name: str | None = None) -> None:
    """Check a whole archive (see the module docstring); raises DownloadError naming the file (or ``name``)."""
    try:
        if kind == "trades":
            _verify_gzip_csv(path)
        else:
            _verify_zip(path)
    except (OSError, EOFError, *gz.ERRORS, zipfile.BadZipFile, ValueError) as exc:
        raise DownloadError(f"{name or path.name}: corrupt archive ({exc})") from exc


def _verify_gzip_csv(path: Path) -> None:
    inflater = gz.inflater()
    head = b""
    with open(path, "rb") as fh:
        while True:
            data = fh.read(READ_BYTES)
            if not data:
                break
            while data:
                if inflater.eof:  # a further gzip member
                    inflater = gz.inflater()
                out = inflater.decompress(data)
                if len(head) < 4096:
                    head += out[:4096]
                data = inflater.unused_data if inflater.eof else b""
    if not inflater.eof:
        raise EOFError("the gzip stream ends early (truncated)")
    first = head.split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip()
    names = [n.strip() for n in first.split(",")]
    missing = [c for c in TRADE_HEADER if c not in names]
    if missing:
        raise ValueError(f"header {first[:120]!r} lacks {', '.join(missing)}: not a Bybit trade archive")


def _verify_zip(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) != 1:
            raise ValueError(f"expected one file in the zip, found {len(members)}")
        bad = zf.testzip()  # reads every member and checks its CRC
        if bad is not None:
            raise ValueError(f"member {bad} fails its CRC check")
        with zf.open(members[0]) as fh:
            first = fh.readline(1 << 20)
    try:
        topic = json.loads(first).get("topic")
    except (ValueError, AttributeError):
        topic = None
    if not (isinstance(topic, str) and topic.startswith("orderbook.")):
        raise ValueError(f"first line {first[:80]!r} is not an orderbook.* JSON message: not a Bybit book archive")


# --- fetching ------------------------------------------------------------------------------


def _retry_delays(retries: int, backoff: float) -> Iterator[float]:
    for i in range(retries):
        yield backoff * (2**i)


def fetch(url: str, dest: Path, kind: str, retries: int = 5, backoff: float = 1.0, timeout: float = 30.0,
          progress: Progress | None = None, date: str = "", verify_file: bool = True) -> Fetched:
    """Bring ``url`` to ``dest`` (resuming ``dest.part``), verify it, rename it into place.

    With ``verify_file=False`` only its first bytes are checked: the caller
    reads it whole at once, and ``reject`` s it when it cannot.

    Raises:
        DownloadError: 404, another non-retryable status, retries exhausted, or a corrupt file.
    """
    started = time.perf_counter()
    if dest.is_file():
        return Fetched(date, url, dest, "cached", 0, 0, 0.0)
    part = dest.with_name(dest.name + ".part")
    resumed = part.is_file() and part.stat().st_size > 0
    transferred = 0
    attempts = 0
    delays = _retry_delays(retries, backoff)
    while True:
        attempts += 1
        have = part.stat().st_size if part.is_file() else 0
        try:
            transferred += _get(url, part, have, timeout, progress)
            break
        except _Retry as exc:
            delay = next(delays, None)
            if delay is None:
                raise DownloadError(f"{url}: gave up after {attempts} attempts: {exc}") from None
            if have or part.is_file():
                resumed = True
            time.sleep(delay)
    status = "resumed" if resumed else "downloaded"
    if not verify_file:
        expected = MAGIC[kind]
        with open(part, "rb") as fh:
            magic = fh.read(len(expected))
        if magic != expected:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{dest.name}: corrupt archive (it starts {magic!r}, not as a "
                                f"{'gzip' if kind == 'trades' else 'zip'} file) from {url}; not kept")
    else:
        try:
            verify(part, kind, dest.name)
        except DownloadError as exc:
            part.unlink(missing_ok=True)  # the server's bytes are bad: a resume would only extend them
            raise DownloadError(f"{exc} from {url}; not kept") from None
    os.replace(part, dest)
    return Fetched(date, url, dest, status, transferred, attempts, time.perf_counter() - started)


def reject(got: Fetched, problem: str) -> DownloadError:
    """A file the caller could not read whole (``verify_file=False``, or damaged in the cache): deleted.

    Returns the error to report; the next run downloads the file again.
    """
    got.path.unlink(missing_ok=True)  # the bytes are bad: a resume would only extend them
    where = "in the cache" if got.status == "cached" else f"from {got.url}"
    return DownloadError(f"{got.path.name}: corrupt archive ({problem}) {where}; deleted")


class _Retry(Exception):
    """A failure worth another attempt (what happened is the message)."""


def _get(url: str, part: Path, have: int, timeout: float, progress: Progress | None) -> int:
    """One request; appends to ``part`` from byte ``have``; returns the bytes received."""
    req = urllib.request.Request(url, headers={"User-Agent": "pbdtui", "Accept-Encoding": "identity"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) URLs from the config
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already whole (or longer than the file): verify decides
            return 0
        if exc.code in RETRY_STATUS:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        if exc.code == 404:
            raise DownloadError(f"{url}: not found (HTTP 404): no archive for this date") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Retry(f"cannot connect: {getattr(exc, 'reason', exc)!r}") from None
    got = 0
    with resp:
        if resp.status == 206:
            start = have
        else:  # 200: the server sent the whole file (it ignored the range or none was asked)
            start = 0
        length = resp.headers.get("Content-Length")
        expected = None if length is None else int(length)
        total = None if expected is None else start + expected
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if start else os.O_TRUNC)
        fd = os.open(part, flags, FILE_MODE)
        try:
            while True:
                try:
                    data = resp.read(READ_BYTES)
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                    raise _Retry(f"connection broke after {got} bytes: {exc!r}") from None
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                got += len(data)
                if progress is not None and total:
                    progress(start + got, total)
        finally:
            os.close(fd)
    if expected is not None and got < expected:
        raise _Retry(f"short body: {got} of {expected} bytes")
    return got


DEFAULT_CACHE = "~/.cache/pbdtui/archives"


def cache_folder(path: str | os.PathLike[str] | None = None) -> Path:
    """The archive cache folder (default ``~/.cache/pbdtui/archives``), created or tightened to 0700."""
    return private_dir(Path(os.path.expanduser(str(path if path is not None else DEFAULT_CACHE))), tighten=True)
