"""Bybit public frame decoders: every real frame of ../shared/data/bybit_v5, hand-made edge cases, fuzzing.

Each BTCUSDT trade, book level and ticker field of the real capture is
checked against the raw JSON by an independent naive reading (dicts,
``max``/``min``, ``int(hex)`` for ids); other symbols must be ignored.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from engine import ids
from engine.adapters.bybit import frames as F
from engine.adapters.bybit.frames import FrameDecoder
from engine.store import Instrument
from engine.types import SIDE_BUY, SIDE_SELL
from tests.helpers import shared_file

BTC = Instrument("BTCUSDT", 0.1, 0.001)


def capture(rel: str) -> list[tuple[str, int]]:
    """(frame text, receive ms) of every received frame of a capture file."""
    out = []
    with open(shared_file(rel)) as fh:
        for line in fh:
            d = json.loads(line)
            if d["dir"] == "recv":
                out.append((d["raw"], int(d["recv_ts"] * 1000)))
    return out


def naive_fold(text: str) -> int:
    v = int(text.replace("-", ""), 16)
    return ((v >> 64) ^ (v & (2**64 - 1))) & (2**63 - 1)


def naive_l1(bids: dict, asks: dict):
    if not bids or not asks:
        return None
    b, a = max(bids), min(asks)
    return None if b >= a else (b, bids[b], a, asks[a])


# --- the real linear capture -----------------------------------------------------------------


@pytest.mark.realdata
def test_every_btcusdt_frame_of_the_real_capture_decodes_to_the_raw_values():
    frames = capture("bybit_v5/linear_capture.jsonl")
    dec = FrameDecoder(BTC)
    kinds = Counter()
    want_trades, want_quotes, want_funding = [], [], []
    bids: dict = {}
    asks: dict = {}
    last_l1 = None
    merged: dict = {}
    topics = Counter()
    for raw, recv_ms in frames:
        kind = dec.decode(raw, recv_ms)
        kinds[kind] += 1
        msg = json.loads(raw)
        topic = msg.get("topic", "")
        topics[topic] += 1
        if topic == "publicTrade.BTCUSDT":
            for t in msg["data"]:
                want_trades.append((t["T"], recv_ms, round(float(t["p"]) * 10), round(float(t["v"]) * 1000),
                                    SIDE_BUY if t["S"] == "Buy" else SIDE_SELL, naive_fold(t["i"])))
        elif topic == "orderbook.200.BTCUSDT":
            if msg["type"] == "snapshot":
                bids, asks = {}, {}
            for book, key in ((bids, "b"), (asks, "a")):
                for p, s in msg["data"][key]:
                    t, q = int(Decimal(p) / Decimal("0.1")), int(Decimal(s) / Decimal("0.001"))
                    if q:
                        book[t] = q
                    else:
                        book.pop(t, None)
            l1 = naive_l1(bids, asks)
            if l1 is not None and l1 != last_l1:
                last_l1 = l1
                want_quotes.append((msg["cts"], recv_ms, *l1))
        elif topic == "tickers.BTCUSDT":
            merged = dict(msg["data"]) if msg["type"] == "snapshot" else {**merged, **msg["data"]}
            rate = float(msg["data"]["fundingRate"]) if "fundingRate" in msg["data"] else None
            if rate is not None and (not want_funding or want_funding[-1][1] != rate):
                want_funding.append((msg["ts"], rate))
    assert topics["publicTrade.BTCUSDT"] == 16 and topics["orderbook.200.BTCUSDT"] == 414
    assert topics["tickers.BTCUSDT"] == 185
    assert kinds[F.TRADES] == 16 and kinds[F.BOOK] == 414 and kinds[F.TICKER] == 185 and kinds[F.CONTROL] == 17
    others = sum(n for t, n in topics.items() if t and not t.endswith(".BTCUSDT")) + topics["kline.1.BTCUSDT"]
    assert kinds[F.IGNORED] == others == dec.stats.ignored
    assert kinds[F.MALFORMED] == 0 and dec.stats.malformed == {}
    assert dec.take_trades().tolist() == want_trades and len(want_trades) == 56
    assert dec.take_quotes().tolist() == want_quotes and len(want_quotes) > 100
    assert dec.take_funding().tolist() == want_funding == [(want_funding[0][0], 0.0001)]
    assert dec.ticker.fields == merged
    ticker = dec.ticker.ticker()
    assert ticker.mark_price == float(merged["markPrice"]) and ticker.index_price == float(merged["indexPrice"])
    assert ticker.last_price == float(merged["lastPrice"]) and ticker.funding_rate == float(merged["fundingRate"])
    assert ticker.next_funding_time == int(merged["nextFundingTime"]) and ticker.funding_interval_hours == 8
    assert all(c.kind == "subscribe" and c.success for c in dec.controls)


@pytest.mark.realdata
def test_real_orderbook1_capture_decodes_every_symbol_with_its_own_grid():
    frames = capture("bybit_v5/orderbook1_capture.jsonl")
    by_symbol: dict[str, list] = {}
    for raw, recv_ms in frames:
        msg = json.loads(raw)
        if "topic" in msg:
            by_symbol.setdefault(msg["data"]["s"], []).append((raw, recv_ms, msg))
    assert set(by_symbol) == {"BANDUSDT", "RADUSDT", "SNTUSDT", "AIOZUSDT"}
    for symbol, rows in by_symbol.items():
        texts = [lvl for _, _, m in rows for side in ("b", "a") for lvl in m["data"][side]]
        px_dec = max(len(p.split(".")[1]) if "." in p else 0 for p, _ in texts)
        sz_dec = max(len(s.split(".")[1]) if "." in s else 0 for _, s in texts)
        inst = Instrument(symbol, 10.0**-px_dec, 10.0**-sz_dec)
        dec = FrameDecoder(inst)
        want, last = [], None
        for raw, recv_ms, msg in rows:
            assert dec.decode(raw, recv_ms) == F.BOOK, dec.reason
            assert msg["type"] == "snapshot"  # linear L1 is snapshot-only
            (bp, bs), (ap, az) = msg["data"]["b"][0], msg["data"]["a"][0]
            l1 = (int(Decimal(bp) * 10**px_dec), int(Decimal(bs) * 10**sz_dec),
                  int(Decimal(ap) * 10**px_dec), int(Decimal(az) * 10**sz_dec))
            if l1 != last:
                last = l1
                want.append((msg["cts"], recv_ms, *l1))
        assert dec.take_quotes().tolist() == want
        # the other symbols of the file are ignored by this decoder
        other = FrameDecoder(inst)
        for raw, recv_ms in frames:
            other.decode(raw, recv_ms)
        assert other.stats.ignored == len(frames) - len(rows) - other.stats.controls


@pytest.mark.realdata
def test_nautilus_samples_ack_refusal_and_linear_ticker():
    base = "bybit_v5/rest_samples/nautilus/"
    dec = FrameDecoder(BTC)
    assert dec.decode(shared_file(base + "ws_subscription_ack.json").read_text(), 1) == F.CONTROL
    assert dec.decode(shared_file(base + "ws_subscription_failure.json").read_text(), 2) == F.CONTROL
    ack, refusal = dec.controls
    assert (ack.kind, ack.success, ack.req_id, ack.conn_id) == ("subscribe", True, "sub-orderbook-1",
                                                                "cejreaspqfm9se7usbrg-2xh")
    assert (refusal.kind, refusal.success, refusal.message) == ("subscribe", False,
                                                                "Invalid topic: invalid.topic.BTCUSDT")
    assert dec.decode(shared_file(base + "ws_ticker_linear.json").read_text(), 3) == F.TICKER
    assert dec.take_funding().tolist() == [(1673272861686, -0.000212)]
    assert dec.ticker.ticker().next_funding_time == 1673280000000


# --- hand-made frames ----------------------------------------------------------------------------

T0 = 1_786_310_819_000


def book(kind: str, bids, asks, u: int, cts: int, symbol: str = "BTCUSDT") -> str:
    return json.dumps({"topic": f"orderbook.1.{symbol}", "type": kind, "ts": cts + 3,
                       "data": {"s": symbol, "b": [list(x) for x in bids], "a": [list(x) for x in asks], "u": u,
                                "seq": u}, "cts": cts})


def trade(*items, symbol: str = "BTCUSDT") -> str:
    data = [{"T": T0 + k, "s": symbol, "S": "Buy", "v": "0.001", "p": "65000.10",
             "i": f"00000000-0000-0000-0000-00000000000{k}", **item} for k, item in enumerate(items)]
    return json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": T0 + 9, "data": data})


def test_book_quote_only_on_l1_change_deletes_resets_and_flags_crossed():
    dec = FrameDecoder(BTC)
    seq = [
        (book("snapshot", [("100.0", "1")], [("100.2", "2")], 50, T0), F.BOOK),
        (book("delta", [("99.9", "5")], [], 51, T0 + 1), F.BOOK),  # below the top: no row
        (book("delta", [("100.0", "0")], [], 52, T0 + 2), F.BOOK),  # best bid deleted: 99.9 is best
        (book("delta", [("100.2", "1")], [], 53, T0 + 3), F.BOOK_INVALID),  # bid == ask: crossed, no row
        (book("delta", [("100.2", "0")], [("100.2", "0")], 54, T0 + 4), F.BOOK_INVALID),  # asks empty
        (book("delta", [("50.0", "1")], [("50.1", "1")], 1, T0 + 5), F.BOOK),  # u == 1: a reset, not a delta
        (book("snapshot", [("50.0", "1")], [("50.1", "1")], 1, T0 + 6), F.BOOK),  # same L1 again: no row
    ]
    for k, (text, want) in enumerate(seq):
        assert dec.decode(text, 1000 + k) == want, (k, dec.reason)
    assert dec.take_quotes().tolist() == [
        (T0, 1000, 1000, 1000, 1002, 2000), (T0 + 2, 1002, 999, 5000, 1002, 2000),
        (T0 + 5, 1005, 500, 1000, 501, 1000)]
    assert (dec.stats.crossed, dec.stats.empty_side, dec.stats.book_resets) == (1, 1, 2)
    dec.reset_book()  # a new connection: deltas wait for a snapshot
    assert dec.decode(book("delta", [("50.0", "2")], [], 2, T0 + 7), 0) == F.MALFORMED
    assert dec.reason == "orderbook: delta before the first snapshot"


def test_trade_frame_keeps_good_trades_and_counts_the_bad_one():
    dec = FrameDecoder(BTC)
    assert dec.decode(trade({}, {"p": "-1"}, {"S": "Sell", "p": "65000.20"}), 5) == F.MALFORMED
    rows = dec.take_trades()
    assert rows["px"].tolist() == [650001, 650002] and rows["side"].tolist() == [SIDE_BUY, SIDE_SELL]
    assert rows["local_ts"].tolist() == [5, 5] and rows["trade_id"].tolist() == [0, 2]
    assert dec.stats.malformed == {"publicTrade": 1}
    assert dec.reason == "publicTrade: trade 1: 'p' '-1' is not a positive finite number"


@pytest.mark.parametrize("item, reason", [
    ({"p": "65000.15"}, "price 65000.15 is not a multiple of tick_size 0.1"),
    ({"p": 65000.1}, "'p' 65000.1 is not a string"),
    ({"p": "nan"}, "'p' 'nan' is not a positive finite number"),
    ({"v": "0.0004"}, "size 0.0004 is not a multiple of qty_step 0.001"),
    ({"v": "1e30"}, "size 1e30 is too large: at least 1e+09 lots of 0.001"),
    ({"v": "0.0015"}, "size 0.0015 is not a multiple of qty_step 0.001"),  # not rounded (issue 7)
    ({"p": "1e18"}, "price 1e18 is too large: at least 1e+12 ticks of 0.1"),
    ({"T": "1786310819000"}, "'T' '1786310819000' is not a time in ms"),
    ({"T": 17863108}, "'T' 17863108 is not a time in ms"),
    ({"T": True}, "'T' True is not a time in ms"),
    ({"S": "buy"}, "side 'S' 'buy' is not Buy or Sell"),
    ({"S": ["Buy"]}, "side 'S' ['Buy'] is not Buy or Sell"),
    ({"i": ""}, "trade id 'i' '' is not a non-empty string"),
    ({"s": "ETHUSDT"}, "symbol 'ETHUSDT' is not BTCUSDT"),
])
def test_bad_trade_values_are_counted_with_a_one_line_reason(item, reason):
    dec = FrameDecoder(BTC)
    assert dec.decode(trade(item), 1) == F.MALFORMED
    assert dec.reason == f"publicTrade: trade 0: {reason}" and "\n" not in dec.reason
    assert len(dec.take_trades()) == 0


def test_other_symbols_and_topics_are_ignored_and_controls_are_read():
    dec = FrameDecoder(BTC)
    assert dec.decode(trade({}, symbol="ETHUSDT"), 1) == F.IGNORED
    assert dec.decode(book("snapshot", [("1", "1")], [("2", "1")], 5, T0, symbol="ETHUSDT"), 1) == F.IGNORED
    assert dec.decode('{"topic":"kline.1.BTCUSDT","data":[],"ts":1,"type":"snapshot"}', 1) == F.IGNORED
    pong = '{"success":true,"ret_msg":"pong","conn_id":"465772b1","req_id":"","op":"ping"}'
    assert dec.decode(pong, 1) == F.CONTROL
    assert dec.decode('{"args":["1672916271846"],"op":"pong"}', 1) == F.CONTROL
    assert [c.kind for c in dec.controls] == ["pong", "pong"] and all(c.success for c in dec.controls)
    assert dec.stats.ignored == 3 and dec.stats.malformed == {}


def test_ticker_merges_partial_deltas_and_makes_a_funding_row_per_rate_change():
    dec = FrameDecoder(BTC)

    def tick(kind: str, ts: int, **data: str) -> str:
        return json.dumps({"topic": "tickers.BTCUSDT", "type": kind, "data": {"symbol": "BTCUSDT", **data},
                           "cs": 1, "ts": ts})

    dec.decode(tick("snapshot", T0, markPrice="65000.01", fundingRate="0.0001", nextFundingTime="1786320000000"), 1)
    dec.decode(tick("delta", T0 + 100, bid1Price="65000.00"), 2)
    assert not dec.take_funding().tolist()[1:] and dec.ticker_changed
    dec.ticker_changed = False
    dec.decode(tick("delta", T0 + 200, bid1Size="1.5"), 3)
    assert not dec.ticker_changed  # no typed value changed
    dec.decode(tick("delta", T0 + 300, fundingRate="0.0001"), 4)  # same rate: no row
    dec.decode(tick("delta", T0 + 400, fundingRate="-0.00005", markPrice="64999.5"), 5)
    assert dec.decode(tick("delta", T0 + 500, fundingRate="7"), 6) == F.MALFORMED  # absurd: state kept
    assert dec.take_funding().tolist() == [(T0 + 400, -0.00005)]
    t = dec.ticker.ticker()
    assert (t.ts, t.mark_price, t.funding_rate, t.next_funding_time) == (T0 + 400, 64999.5, -0.00005, 1786320000000)
    assert dec.ticker.fields["bid1Size"] == "1.5"


# --- fuzzing --------------------------------------------------------------------------------------

_SAMPLES = [
    trade({}, {"S": "Sell"}),
    book("snapshot", [("100.0", "1")], [("100.2", "2")], 50, T0),
    book("delta", [("100.0", "0"), ("99.9", "3")], [("100.3", "4")], 51, T0 + 1),
    json.dumps({"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", "fundingRate": "0.0001",
                                                                        "markPrice": "1.5"}, "cs": 1, "ts": T0}),
    '{"success":true,"ret_msg":"","conn_id":"c","req_id":"publicTrade.BTCUSDT","op":"subscribe"}',
]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def _mutate(obj, path: list[int], value):
    """Replace the node picked by ``path`` (indexes into dict keys / list items) with ``value``."""
    if not path or not isinstance(obj, (dict, list)) or not obj:
        return value
    keys = list(obj) if isinstance(obj, dict) else list(range(len(obj)))
    key = keys[path[0] % len(keys)]
    obj[key] = _mutate(obj[key], path[1:], value)
    return obj


@seed(20261125)
@hsettings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(_SAMPLES) - 1), st.lists(st.integers(0, 50), max_size=5), _JSON,
       st.integers(0, 400), st.booleans())
def test_mutated_frames_never_raise_and_every_frame_is_accounted_for(which, path, value, cut, truncate):
    dec = FrameDecoder(BTC)
    dec.decode(_SAMPLES[1], 0)  # a book to apply deltas to
    text = _SAMPLES[which]
    if truncate:
        frame: object = text[: cut % len(text)]
    else:
        frame = json.dumps(_mutate(json.loads(text), path, value))
    kind = dec.decode(frame, 1)  # type: ignore[arg-type]
    assert kind in (F.IGNORED, F.TRADES, F.BOOK, F.BOOK_INVALID, F.TICKER, F.CONTROL, F.MALFORMED)
    s = dec.stats
    assert s.frames == 2
    if kind == F.MALFORMED:
        assert s.malformed_total == 1 and dec.reason and "\n" not in dec.reason
    for row in dec.take_trades().tolist():
        assert row[2] > 0 and row[3] > 0 and row[4] in (SIDE_BUY, SIDE_SELL)
    quotes = dec.take_quotes()
    assert (quotes["bid_px"] < quotes["ask_px"]).all()


@hsettings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(
    st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
    st.text(alphabet="0123456789abcdefABCDEF- \t+xg_", min_size=30, max_size=40),
    st.text(max_size=40),
))
def test_scalar_uuid_fold_equals_the_vectorized_one(text):
    raw = text.encode("utf-8")
    buf = np.frombuffer(raw, dtype=np.uint8) if raw else np.zeros(0, np.uint8)
    rows, folded = ids.uuid_ids_of(buf, np.array([0]), np.array([len(raw)]))
    want = int(folded[0]) if rows[0] else None
    assert ids.uuid_id(text) == want == ids.uuid_id(raw)
    if want is not None:
        assert want == naive_fold(text)


_NUM = st.sampled_from(["100.0", "100.1", "100.2", "100.05", "0", "0.0004", "0.001", "-1", "inf", "nan", "1e30",
                        "2", "abc", ""])


@hsettings(max_examples=300, deadline=None, derandomize=True)
@given(_NUM, _NUM, _NUM, _NUM)
def test_l1_snapshot_fast_path_equals_the_general_book_replay(bp, bs, ap, az):
    text = book("snapshot", [(bp, bs)], [(ap, az)], 7, T0)
    dec = FrameDecoder(BTC)
    kind = dec.decode(text, 5)
    bids, asks = F.BookSide(True), F.BookSide(False)
    try:
        want = F.apply_book_message(json.loads(text), BTC, bids, asks, False, 5)
    except F.BadFrame as exc:
        assert kind == F.MALFORMED and dec.reason == f"orderbook: {exc}"
        return
    if isinstance(want, str):
        assert kind == F.BOOK_INVALID and dec.reason == f"orderbook: {want}"
    else:
        assert kind == F.BOOK and dec.take_quotes().tolist() == [(want[0], want[1], *want[2])]
    assert (dec.bids.levels, dec.asks.levels) == (bids.levels, asks.levels)
    assert (dec.bids.best(), dec.asks.best()) == (bids.best(), asks.best())
