"""``FrameDecoder.decode_many`` (the numba scan of L1 snapshots and trade frames) equals ``decode`` frame by frame.

Compared after every batch: rows, counts, book, last L1, ticker, controls
and reasons, and the kind of every frame the scan hands to ``decode``. On
the real captures of ../shared/data/bybit_v5, on hand-made frames that sit
on the scanner's edges (key order, unknown keys, repeated keys, escapes,
number forms, ids) and on byte-level and JSON-level fuzzing of real-shaped
frames, cut into batches of every size.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from engine.adapters.bybit import frames as F
from engine.adapters.bybit.frames import FrameDecoder
from engine.store import Instrument
from tests.test_bybit_frames import BTC, T0, capture

COMPACT = (",", ":")


@pytest.fixture(autouse=True)
def scan_every_batch(monkeypatch):
    """The scan from one frame on, so that small batches exercise it too (one test keeps the default)."""
    monkeypatch.setattr(FrameDecoder, "scan_min_frames", 1)


def snapshot(bid=("65000.10", "1.250"), ask=("65000.20", "0.004"), cts=T0, u=7, symbol="BTCUSDT", depth=1) -> str:
    return json.dumps({"topic": f"orderbook.{depth}.{symbol}", "type": "snapshot", "ts": cts + 2,
                       "data": {"s": symbol, "b": [list(bid)], "a": [list(ask)], "u": u, "seq": u + 100},
                       "cts": cts}, separators=COMPACT)


def trades(*items, ts=T0, symbol="BTCUSDT") -> str:
    data = [{"T": ts + k, "s": symbol, "S": "Buy" if k % 2 else "Sell", "v": "0.010", "p": "65000.30",
             "L": "PlusTick", "i": f"2a74ac78-691c-5b54-9dbe-5aafe83646{k:02d}", "BT": False, "RPI": False,
             "seq": 10 + k, **item} for k, item in enumerate(items)]
    return json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ts + 9, "data": data},
                      separators=COMPACT)


def observe(dec: FrameDecoder) -> tuple:
    """Everything a caller can see of a decoder (rows taken)."""
    return (dec.take_trades().tolist(), dec.take_quotes().tolist(), dec.take_funding().tolist(), dec.stats,
            dec.bids.levels, dec.asks.levels, dec.bids.best(), dec.asks.best(), dec.have_book, dec.last_l1,
            dec.ticker, dec.ticker_changed, dec.controls, dec.reason, dec.last_rate)


def one_by_one(frames, recv, instrument=BTC, batches=(1 << 30,)) -> tuple[list, list]:
    dec = FrameDecoder(instrument)
    kinds = []
    seen = []
    k = 0
    for size in _sizes(len(frames), batches):
        for i in range(k, k + size):
            kinds.append(dec.decode(frames[i], int(recv[i])))
        k += size
        seen.append(observe(dec))
    return kinds, seen


def batched(frames, recv, instrument=BTC, batches=(1 << 30,)) -> tuple[dict, list]:
    dec = FrameDecoder(instrument)
    slow: dict[int, int] = {}
    seen = []
    k = 0
    for size in _sizes(len(frames), batches):
        dec.decode_many(frames[k:k + size], np.asarray(recv[k:k + size]),
                        on_slow=lambda i, kind, k=k: slow.__setitem__(k + i, kind))
        k += size
        seen.append(observe(dec))
    return slow, seen


def _sizes(n: int, batches) -> list[int]:
    out, k, j = [], 0, 0
    while k < n:
        size = min(batches[j % len(batches)], n - k)
        out.append(size)
        k += size
        j += 1
    return out


def assert_same(frames, recv, instrument=BTC, batches=(1 << 30,)) -> dict:
    """decode_many over ``batches`` equals decode; returns {frame index: kind} of the frames decode handled."""
    kinds, want = one_by_one(frames, recv, instrument, batches)
    slow, got = batched(frames, recv, instrument, batches)
    assert got == want
    for i, kind in enumerate(kinds):  # a frame the scan took is a clean trade or book frame
        assert slow.get(i, kind) == kind
        if i not in slow:
            assert kind in (F.TRADES, F.BOOK), (i, frames[i])
    return slow


# --- real frames ----------------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("batches", [(1 << 30,), (1,), (7, 64, 3)])
def test_real_linear_capture_batch_equals_frame_by_frame(batches):
    frames, recv = zip(*capture("bybit_v5/linear_capture.jsonl"), strict=True)
    slow = assert_same(list(frames), list(recv), BTC, batches)
    mine = [i for i, f in enumerate(frames) if '"publicTrade.BTCUSDT"' in f]
    assert len(mine) == 16 and not set(mine) & set(slow)  # every real BTCUSDT trade frame took the scan


@pytest.mark.realdata
def test_real_orderbook1_capture_batch_equals_frame_by_frame_per_symbol():
    rows = capture("bybit_v5/orderbook1_capture.jsonl")
    frames, recv = [r[0] for r in rows], [r[1] for r in rows]
    grids: dict[str, list[int]] = {}  # symbol -> decimals of price and size (as the per-frame test)
    for raw in frames:
        msg = json.loads(raw)
        if "topic" in msg:
            g = grids.setdefault(msg["data"]["s"], [0, 0])
            for p, z in msg["data"]["b"] + msg["data"]["a"]:
                g[0] = max(g[0], len(p.split(".")[1]) if "." in p else 0)
                g[1] = max(g[1], len(z.split(".")[1]) if "." in z else 0)
    assert len(grids) == 4
    for symbol, (px_dec, sz_dec) in grids.items():
        slow = assert_same(frames, recv, Instrument(symbol, 10.0**-px_dec, 10.0**-sz_dec), (5, 50))
        mine = [i for i, f in enumerate(frames) if f'"s":"{symbol}"' in f]
        assert mine and not set(mine) & set(slow), symbol  # every real L1 snapshot took the scan


# --- hand-made edges --------------------------------------------------------------------------------

EDGES = [
    snapshot(),
    snapshot(),  # the same L1: no row
    snapshot(bid=("65000.1", "1.25")),  # the same values written otherwise: no row
    snapshot(bid=("065000.10", "1.250")),  # leading zero in the text: float() reads it
    snapshot(bid=("65000.15", "1")),  # off the grid
    snapshot(bid=("65000.20", "1")),  # crossed
    snapshot(bid=("65000.10", "0")),  # zero size
    snapshot(bid=("65000.10", "0.0004")),  # below one lot
    snapshot(bid=("1e4", "1")), snapshot(bid=("65000.", "1")), snapshot(bid=(".5", "1")),
    snapshot(bid=("1234567890123456.1", "1")), snapshot(bid=("99999999999.99", "1")),
    snapshot(bid=("100000000000.0", "1")),  # 1e12 ticks: too large
    snapshot(bid=("0.05", "1")),  # below one tick
    snapshot(u=1),  # a reset
    snapshot(cts=T0 + 5, u=2, symbol="ETHUSDT"),
    snapshot(depth=50, cts=T0 + 6),
    snapshot(cts=1_000),  # absurd time
    snapshot().replace('"cts":', '"x":1,"cts":'),  # an unknown key
    snapshot().replace('"seq":', '"seq":1,"seq":'),  # an unknown key twice
    snapshot().replace('"cts":', '"ts":1,"cts":'),  # a known key twice (the last one wins in JSON)
    snapshot().replace('"b":', '"b":[["1.0","1"]],"b":'),
    snapshot().replace(',"cts":1786310819000', ''),  # no cts: ts
    snapshot().replace('"cts":1786310819000', '"cts":null'),
    snapshot().replace('"cts":1786310819000', '"cts":"1786310819000"'),
    snapshot().replace('"cts":1786310819000', '"cts":1786310819000.0'),
    snapshot().replace('"cts":1786310819000', '"cts":01786310819000'),
    snapshot().replace('"u":7', '"u":true'),
    snapshot().replace('"u":7', '"u":-7'),
    snapshot().replace('"type":"snapshot"', '"type":"delta"'),
    snapshot().replace('"BTCUSDT","b"', '"\\u0042TCUSDT","b"'),  # an escape
    snapshot().replace('"seq"', '"s\u00e9q"'),  # non-ASCII
    snapshot().replace(':', ': '),  # blanks
    snapshot() + " ",
    snapshot()[:-1],
    '{"data":{"s":"BTCUSDT","b":[["65000.1","2"]],"a":[["65000.2","2"]]},"cts":1786310819001,'
    '"ts":1786310819003,"type":"snapshot","topic":"orderbook.1.BTCUSDT"}',  # another key order
    trades({}, {}),
    trades(),
    trades({"i": "2A74AC78-691C-5B54-9DBE-5AAFE8364600"}),  # upper-case UUID
    trades({"i": "12345"}), trades({"i": "not-a-uuid"}), trades({"i": ""}),
    trades({"p": "65000.35"}), trades({}, {"p": "-1"}), trades({"v": "0"}), trades({"S": "buy"}),
    trades({"T": 5}), trades({"T": "1786310819000"}), trades({"s": "ETHUSDT"}), trades(symbol="ETHUSDT"),
    trades({"extra": [1]}), trades({"extra": 1.5}), trades({"extra": None, "z": True}),
    trades({}).replace('"p":', '"p":"1","p":'),
    trades({}).replace('"data":', '"data":[],"data":'),
    trades({}).replace('"ts":', '"ts":"x","_":'),
    '{"topic":"publicTrade.BTCUSDT","data":{}}',
    '{"success":true,"ret_msg":"","conn_id":"c","req_id":"publicTrade.BTCUSDT","op":"subscribe"}',
    '{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","fundingRate":"0.0001"},"ts":'
    f'{T0}}}',
    '{"topic":"orderbook.1.BTCUSDT","type":"delta","ts":1786310819100,"data":{"s":"BTCUSDT","b":[["64999.0","1"]],'
    '"a":[],"u":9},"cts":1786310819100}',
    snapshot(cts=T0 + 200),
    "", "{}", "[]", "nul", '{"topic":5}', b'{"topic":"x"}', b'\xff\xfe',
    snapshot(bid=("65000.00", "3")).encode(),  # bytes
]


def test_hand_made_edges_batch_equals_frame_by_frame():
    recv = list(range(1000, 1000 + len(EDGES)))
    for batches in ((1 << 30,), (1,), (2,), (3, 1, 4)):
        assert_same(EDGES, recv, BTC, batches)


def test_small_batches_go_through_decode_by_default(monkeypatch):
    monkeypatch.setattr(FrameDecoder, "scan_min_frames", 8)
    slow = assert_same(EDGES, list(range(len(EDGES))), BTC, (7, 8, 3))
    assert len(slow) < len(EDGES) and set(range(7)) <= set(slow)  # the first 7, clean ones too, by decode


def test_scan_takes_clean_frames_and_hands_the_rest_to_decode():
    slow = assert_same(EDGES, list(range(len(EDGES))))
    fast = {i for i in range(len(EDGES))} - set(slow)
    assert {0, 1, 2, 3, 19, 20, 23, 36, 37, 38, 39} <= fast
    assert not {4, 5, 6, 15, 16, 21, 22, 26, 31, 32, 33, 34, 41, 42} & fast


def test_mixed_str_bytes_and_dict_frames():
    frames = [snapshot(), json.loads(snapshot(bid=("64000.0", "1"))), snapshot(bid=("63000.0", "1")).encode(),
              bytearray(trades({}).encode()), "\ud800", snapshot(bid=("62000.0", "1"))]
    assert_same(frames, [1, 2, 3, 4, 5, 6], BTC, (1 << 30,))


# --- fuzzing --------------------------------------------------------------------------------------

_BASE = [snapshot(), snapshot(bid=("64999.90", "0.500")), trades({}, {}, {}), trades({"S": "Buy"}),
         snapshot(cts=T0 + 1, ask=("65001.00", "2.000")),
         '{"topic":"orderbook.1.BTCUSDT","type":"delta","ts":1786310819100,"data":{"s":"BTCUSDT","b":[],'
         '"a":[["65000.20","0"],["65000.30","1"]],"u":9},"cts":1786310819100}']
_BYTES = b'{}[]":,.-0123456789eE tfnul\\ABSabcdeiopsuvxyz\x00\x7f\xc3'


@seed(20261129)
@hsettings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 3),
                          st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, len(_BYTES) - 1)), max_size=3)),
                min_size=1, max_size=24),
       st.lists(st.integers(1, 9), min_size=1, max_size=4))
def test_byte_fuzzed_frames_batch_equals_frame_by_frame(picks, batches):
    """Real-shaped frames with bytes replaced, inserted or deleted: the scan must refuse what decode refuses."""
    frames = []
    for which, op, edits in picks:
        raw = bytearray(_BASE[which].encode())
        for at, b in edits:
            at %= len(raw)
            if op == 1:
                raw[at] = _BYTES[b]
            elif op == 2:
                raw.insert(at, _BYTES[b])
            elif op == 3:
                del raw[at]
        frames.append(raw.decode("utf-8", "surrogateescape"))
    assert_same(frames, list(range(len(frames))), BTC, tuple(batches))


_NUMTXT = st.sampled_from(["65000.10", "65000.1", "65000.15", "0", "0.000", "0.001", "1", "-1", "1e3", "inf", "nan",
                           "00.1", "65000.10 ", "", "1.", ".1", "9999999999999.9", "123456789012345", "1_0",
                           "65000.100000000000001", "0.0005", "0.0015"])
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**64), st.floats(allow_nan=False), _NUMTXT,
                   st.text(max_size=5), st.lists(_NUMTXT, max_size=3))


@seed(20261130)
@hsettings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_BASE) - 2), st.lists(st.integers(0, 50), max_size=4), _VALUE,
                          st.booleans()), min_size=1, max_size=16),
       st.integers(1, 6))
def test_json_fuzzed_frames_batch_equals_frame_by_frame(picks, batch):
    """One value anywhere in a real-shaped frame replaced (numbers, times, ids, types), compact or not."""
    from tests.test_bybit_frames import _mutate

    frames = []
    for which, path, value, compact in picks:
        obj = _mutate(json.loads(_BASE[which]), path, value)
        frames.append(json.dumps(obj, separators=COMPACT if compact else None))
    assert_same(frames, [7] * len(frames), BTC, (batch,))


def test_long_random_session_batch_equals_frame_by_frame():
    rnd = random.Random(5)
    frames = []
    bid = 650000
    for k in range(3000):
        bid += rnd.choice((-1, 0, 0, 1))
        r = rnd.random()
        if r < 0.7:
            frames.append(snapshot(bid=(f"{bid / 10:.2f}", f"{rnd.randint(1, 3000) / 1000:.3f}"),
                                   ask=(f"{(bid + 1) / 10:.2f}", "1.000"), cts=T0 + k))
        elif r < 0.95:
            frames.append(trades(*[{"p": f"{bid / 10:.2f}"}] * rnd.randint(1, 4), ts=T0 + k))
        else:
            frames.append(rnd.choice(EDGES))
    slow = assert_same(frames, list(range(len(frames))), BTC, (1, 64, 1000))
    assert len(slow) < len(frames) // 10


def test_warm_up_loads_the_scanner_with_the_types_decode_many_uses():
    if not hasattr(F.fs.scan_frames, "signatures"):
        pytest.skip("NUMBA_DISABLE_JIT: nothing to load")
    F.warm_up()
    before = {sig for sig in F.fs.scan_frames.signatures}
    dec = FrameDecoder(BTC)
    dec.decode_many([snapshot(), trades({})] * 8, 5)
    assert before and set(F.fs.scan_frames.signatures) == before  # nothing compiled after the warm-up
