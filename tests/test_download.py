"""``pbdtui data download``: Bybit archives from a loopback HTTP server on 127.0.0.1.

The server serves archives the tests build (a gzip CSV in the trade archive
format, a zip in the ob200 format) and can, per file, cut one response short
(resume with Range), answer 503 once (retry), or serve a corrupt file.
"""

from __future__ import annotations

import gzip
import io
import json
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from engine import download
from engine.config import Settings
from engine.importers import import_bybit_book, import_bybit_trades
from engine.store import Store, instrument_of
from pbdtui.cli import main

BTC = Settings()
HEADER = "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional,RPI"
DAY_S = 86_400


def trade_archive(date: str, n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(date, "s").astype(np.int64)
    ts = t0 + np.sort(rng.integers(0, DAY_S * 10_000, n)) / 10_000
    px = 950_000 + np.cumsum(rng.integers(-3, 4, n))
    lines = [HEADER]
    for i in range(n):
        size = int(rng.integers(1, 50)) / 1000
        price = px[i] / 10
        lines.append(f"{ts[i]:.4f},BTCUSDT,{'Buy' if i % 3 else 'Sell'},{size:g},{price:.1f},ZeroPlusTick,"
                     f"{seed:08x}-0000-4000-8000-{i:012x},{size * price * 1e8:.6g},{size:g},{size * price:.6g},0")
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def book_archive(date: str, n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t0 = int(np.datetime64(date, "ms").astype(np.int64))
    msgs = [{"topic": "orderbook.200.BTCUSDT", "type": "snapshot", "ts": t0 + 5, "cts": t0,
             "data": {"s": "BTCUSDT", "b": [["95000.0", "1.5"], ["94999.9", "2"]],
                      "a": [["95000.1", "0.7"], ["95000.2", "3"]], "u": 1, "seq": 10}}]
    for i in range(1, n):
        bid = 950_000 + int(rng.integers(-2, 3))
        msgs.append({"topic": "orderbook.200.BTCUSDT", "type": "delta", "ts": t0 + 100 * i + 5, "cts": t0 + 100 * i,
                     "data": {"s": "BTCUSDT", "b": [[f"{bid / 10:.1f}", f"{int(rng.integers(1, 900)) / 1000:g}"]],
                              "a": [[f"{(bid + 1) / 10:.1f}", f"{int(rng.integers(1, 900)) / 1000:g}"]],
                              "u": 1 + i, "seq": 10 + i}})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{date}_BTCUSDT_ob200.data", "\n".join(json.dumps(m) for m in msgs) + "\n")
    return buf.getvalue()


class ArchiveServer:
    """A loopback HTTP server: ``files`` by URL path, ``faults`` by URL path (consumed one per request)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                owner.requests.append((self.path, rng))
                fault = owner.faults.get(self.path, [None]).pop(0) if owner.faults.get(self.path) else None
                if self.path not in owner.files:
                    self.send_error(404)
                    return
                if fault == "503":
                    self.send_error(503, "Slow Down")
                    return
                data = owner.files[self.path]
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data) and rng:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault == "truncate":  # half the body, then the connection closes
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with ArchiveServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./config.yaml: built-in BTCUSDT defaults


def _cli(*argv: str) -> int:
    return main(["data", "download", "--backoff", "0.01", *argv])


def test_download_resumes_retries_skips_and_imports_like_direct_import(server, tmp_path, capsys):
    days = ("2024-12-01", "2024-12-02")
    for i, day in enumerate(days):
        server.files[f"/trading/BTCUSDT/BTCUSDT{day}.csv.gz"] = trade_archive(day, 3000, i + 1)
        server.files[f"/orderbook/linear/BTCUSDT/{day}_BTCUSDT_ob200.data.zip"] = book_archive(day, 400, i + 1)
    server.faults["/trading/BTCUSDT/BTCUSDT2024-12-01.csv.gz"] = ["truncate"]
    server.faults["/trading/BTCUSDT/BTCUSDT2024-12-02.csv.gz"] = ["503"]
    server.faults["/orderbook/linear/BTCUSDT/2024-12-01_BTCUSDT_ob200.data.zip"] = ["truncate"]
    cache = tmp_path / "cache"
    db = str(tmp_path / "a.db")
    assert _cli("--from", days[0], "--to", days[1], "--base-url", f"{server.url}/trading", "--cache", str(cache),
                "--import", "--db", db) == 0
    assert _cli("--from", days[0], "--to", days[1], "--kind", "book", "--base-url", f"{server.url}/orderbook/linear",
                "--cache", str(cache), "--import", "--db", db) == 0
    out = capsys.readouterr().out
    assert "2024-12-01: resumed BTCUSDT2024-12-01.csv.gz" in out and "2 requests" in out

    # the cut-short file resumed from where it stopped; the 503 was retried from the start
    reqs = server.requests
    t1 = [r for p, r in reqs if p.endswith("BTCUSDT2024-12-01.csv.gz")]
    half = len(server.files["/trading/BTCUSDT/BTCUSDT2024-12-01.csv.gz"]) // 2
    assert t1 == [None, f"bytes={half}-"]
    assert [r for p, r in reqs if p.endswith("BTCUSDT2024-12-02.csv.gz")] == [None, None]
    for path, data in server.files.items():
        local = cache / path.rsplit("/", 1)[1]
        assert local.read_bytes() == data
        assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert not list(cache.glob("*.part"))

    # the same files imported directly give the same ticks
    with Store(tmp_path / "b.db", instrument_of(BTC)) as direct:
        for day in days:
            import_bybit_trades(direct, BTC, cache / f"BTCUSDT{day}.csv.gz")
            import_bybit_book(direct, BTC, cache / f"{day}_BTCUSDT_ob200.data.zip")
        want = {k: direct.load_ticks(k) for k in ("trade", "quote")}
    with Store(db, readonly=True) as got:
        for kind, rows in want.items():
            assert len(rows) > 0
            assert np.array_equal(got.load_ticks(kind), rows)

    # a second run makes no request and imports nothing new
    before = len(server.requests)
    assert _cli("--from", days[0], "--to", days[1], "--base-url", f"{server.url}/trading", "--cache", str(cache),
                "--import", "--db", db) == 0
    out = capsys.readouterr().out
    assert len(server.requests) == before
    assert out.count("already in") == 2 and "3000 rows, 0 new" in out


def test_corrupt_archive_is_refused_and_not_kept(server, tmp_path, capsys):
    good = trade_archive("2024-12-01", 500, 1)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF  # a flipped byte: inflate error or CRC mismatch
    server.files["/t/BTCUSDT/BTCUSDT2024-12-01.csv.gz"] = bytes(corrupt)
    server.files["/t/BTCUSDT/BTCUSDT2024-12-02.csv.gz"] = gzip.compress(b"id,time,price\n1,2,3\n")
    cache = tmp_path / "cache"
    rc = _cli("--from", "2024-12-01", "--to", "2024-12-03", "--base-url", f"{server.url}/t", "--cache", str(cache))
    captured = capsys.readouterr()
    assert rc == 2
    assert "2024-12-01: failed: BTCUSDT2024-12-01.csv.gz: corrupt archive" in captured.out
    assert "not a Bybit trade archive" in captured.out
    assert "2024-12-03: failed:" in captured.out and "HTTP 404" in captured.out
    assert "3 date(s) failed" in captured.err
    assert list(cache.iterdir()) == []


def test_with_import_the_import_is_the_check_and_a_corrupt_file_stores_nothing(server, tmp_path, capsys):
    """``--import`` inflates each trade archive once: a file the import cannot read whole is deleted, and
    none of its rows stays in the database (one transaction); the good days import as ever."""
    good = trade_archive("2024-12-02", 800, 2)
    truncated_crc = bytearray(trade_archive("2024-12-01", 800, 1))
    truncated_crc[-6] ^= 0xFF  # the CRC trailer: every row inflates, the check fails at the very end
    server.files["/t/BTCUSDT/BTCUSDT2024-12-01.csv.gz"] = bytes(truncated_crc)
    server.files["/t/BTCUSDT/BTCUSDT2024-12-02.csv.gz"] = good
    server.files["/t/BTCUSDT/BTCUSDT2024-12-03.csv.gz"] = gzip.decompress(good)  # plain text under a .gz name
    server.files["/t/BTCUSDT/BTCUSDT2024-12-04.csv.gz"] = gzip.compress(b"id,time,price\n1,2,3\n")
    cache = tmp_path / "cache"
    db = tmp_path / "a.db"
    rc = _cli("--from", "2024-12-01", "--to", "2024-12-04", "--base-url", f"{server.url}/t", "--cache", str(cache),
              "--import", "--db", str(db))
    out = capsys.readouterr().out
    assert rc == 2
    assert "2024-12-01: failed: BTCUSDT2024-12-01.csv.gz: corrupt archive (cannot read:" in out
    assert "2024-12-03: failed: BTCUSDT2024-12-03.csv.gz: corrupt archive (it starts" in out
    assert "2024-12-04: failed: BTCUSDT2024-12-04.csv.gz: corrupt archive (wrong header" in out
    assert sorted(p.name for p in cache.iterdir()) == ["BTCUSDT2024-12-02.csv.gz"]
    with Store(tmp_path / "direct.db", instrument_of(BTC)) as direct:
        import_bybit_trades(direct, BTC, cache / "BTCUSDT2024-12-02.csv.gz")
        want = direct.load_ticks("trade")
    with Store(db, readonly=True) as got:
        assert len(want) == 800 and np.array_equal(got.load_ticks("trade"), want)
        assert [r[0] for r in got.fetch("SELECT rows_ok FROM imports")] == [800]

    # a damaged file in the cache is found by the import too: deleted, and the next run fetches it again
    (cache / "BTCUSDT2024-12-02.csv.gz").write_bytes(bytes(truncated_crc))
    rc = _cli("--from", "2024-12-02", "--to", "2024-12-02", "--base-url", f"{server.url}/t", "--cache", str(cache),
              "--import", "--db", str(db))
    out = capsys.readouterr().out
    assert rc == 2 and "2024-12-02: failed: BTCUSDT2024-12-02.csv.gz: corrupt archive (cannot read:" in out
    assert "in the cache; deleted" in out
    assert list(cache.iterdir()) == []
    assert _cli("--from", "2024-12-02", "--to", "2024-12-02", "--base-url", f"{server.url}/t", "--cache", str(cache),
                "--import", "--db", str(db)) == 0
    assert "800 rows, 0 new" in capsys.readouterr().out


def test_retries_exhausted_names_the_url_and_keeps_the_partial_file(server, tmp_path):
    path = "/t/BTCUSDT/BTCUSDT2024-12-01.csv.gz"
    server.files[path] = trade_archive("2024-12-01", 2000, 1)
    server.faults[path] = ["truncate", "503", "503"]
    dest = tmp_path / "BTCUSDT2024-12-01.csv.gz"
    with pytest.raises(download.DownloadError, match=r"gave up after 3 attempts: HTTP 503"):
        download.fetch(f"{server.url}{path}", dest, "trades", retries=2, backoff=0.01)
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == len(server.files[path]) // 2
    got = download.fetch(f"{server.url}{path}", dest, "trades", retries=2, backoff=0.01)  # the next run resumes
    assert got.status == "resumed" and dest.read_bytes() == server.files[path]


def test_book_zip_without_orderbook_messages_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.data", '{"topic": "publicTrade.BTCUSDT"}\n')
    path = tmp_path / "x.zip"
    path.write_bytes(buf.getvalue())
    with pytest.raises(download.DownloadError, match="not a Bybit book archive"):
        download.verify(path, "book")
    path.write_bytes(buf.getvalue()[:-30])
    with pytest.raises(download.DownloadError, match="corrupt archive"):
        download.verify(path, "book")


def test_dates_and_urls():
    assert download.dates("2024-12-30", "2025-01-02") == ["2024-12-30", "2024-12-31", "2025-01-01", "2025-01-02"]
    assert download.archive_url("https://public.bybit.com/trading/", "trades", "BTCUSDT", "2024-12-01") == \
        "https://public.bybit.com/trading/BTCUSDT/BTCUSDT2024-12-01.csv.gz"
    assert download.archive_url("https://quote-saver.bycsi.com/orderbook/linear", "book", "BTCUSDT", "2024-12-01",
                                500) == \
        "https://quote-saver.bycsi.com/orderbook/linear/BTCUSDT/2024-12-01_BTCUSDT_ob500.data.zip"
    assert main(["data", "download", "--from", "2024-12-02", "--to", "2024-12-01"]) == 2


def test_no_server_is_retried_then_reported(tmp_path):
    with ArchiveServer() as srv:
        url = f"{srv.url}/t/BTCUSDT/BTCUSDT2024-12-01.csv.gz"
    # the server is closed: connection refused on every attempt
    with pytest.raises(download.DownloadError, match=r"gave up after 2 attempts: cannot connect"):
        download.fetch(url, tmp_path / "x.csv.gz", "trades", retries=1, backoff=0.01)
