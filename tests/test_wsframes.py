"""The bulk WebSocket reader: FrameSplitter against a plain reference parser, and BulkReader on a real socket.

The reference (``reference_split``) reads RFC 6455 frames one by one, the
simplest way; the splitter must give the same messages, control frames and
refusal whatever way the stream is cut into reads.
"""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from engine.adapters.wsframes import BulkConnection, FrameSplitter

MAX = 1 << 20


def frame(payload: bytes, op: int = 1, fin: bool = True, rsv: int = 0, mask: bytes | None = None,
          length_form: int | None = None) -> bytes:
    """One frame's bytes; ``length_form`` forces 126 or 127 for a short payload."""
    n = len(payload)
    head = bytes(((0x80 if fin else 0) | (rsv << 4) | op,))
    form = length_form or (n if n < 126 else 126 if n < 65536 else 127)
    m = 0x80 if mask is not None else 0
    if form < 126:
        head += bytes((m | n,))
    elif form == 126:
        head += bytes((m | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((m | 127,)) + n.to_bytes(8, "big")
    if mask is not None:
        payload = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
        head += mask
    return head + payload


def reference_split(stream: bytes, max_size: int = MAX) -> tuple[list[bytes], list[bytes], bytes]:
    """(messages, control frames, refused rest) of a complete stream, frame by frame in plain Python."""
    messages, controls, parts = [], [], None
    p = 0
    while p < len(stream):
        head = p
        if p + 2 > len(stream):
            break
        b0, b1 = stream[p], stream[p + 1]
        n, p = b1 & 0x7F, p + 2
        if n == 126:
            n, p = int.from_bytes(stream[p:p + 2], "big"), p + 2
        elif n == 127:
            n, p = int.from_bytes(stream[p:p + 8], "big"), p + 8
        masked = b1 & 0x80
        p += 4 if masked else 0
        fin, rsv, op = b0 >> 7, (b0 >> 4) & 7, b0 & 0xF
        if n >= 1 << 63 or n > max_size:
            return messages, controls, stream[head:]
        payload, p = stream[p:p + n], p + n
        if op >= 8:
            controls.append(stream[head:p])
            continue
        if masked or rsv or op > 2 or (op == 0) != (parts is not None):
            return messages, controls, stream[head:]
        parts = (parts or []) + [payload]
        if sum(map(len, parts)) > max_size:
            return messages, controls, stream[head:]
        if fin:
            messages.append(b"".join(parts))
            parts = None
    return messages, controls, b""


def split_by(splitter: FrameSplitter, stream: bytes, cuts: list[int]) -> tuple[list[bytes], list[bytes], bytes]:
    """Feed ``stream`` cut at ``cuts``; (messages, control frames, forwarded rest) as the reference gives them."""
    messages, forwarded = [], []
    bounds = [0, *sorted(set(cuts)), len(stream)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        got = splitter.feed(stream[a:b])
        buf = got.buf.tobytes()
        messages += [buf[s:e] for s, e in zip(got.starts.tolist(), got.ends.tolist(), strict=True)]
        forwarded += got.forward
    controls = [f for f in forwarded if not splitter.refused or f[0] & 0xF >= 8]
    rest = b"".join(f for f in forwarded if f not in controls)
    return messages, controls, rest


def mixed_stream() -> bytes:
    """Every length form and its edges, binary, fragments with a ping and a pong between them, a close."""
    out = b""
    for n in (0, 1, 125, 126, 127, 300, 65535, 65536, 70_000):
        out += frame(bytes((48 + n % 10,)) * n)
    out += frame(b'{"short":"in the 126 form"}', length_form=126)
    out += frame(b'{"short":"in the 127 form"}', length_form=127)
    out += frame(b"\x00\x01binary", op=2)
    out += frame(b'{"a":', fin=False) + frame(b"ping!", op=9) + frame(b"1", op=0, fin=False)
    out += frame(b"", op=10) + frame(b"}", op=0)
    out += frame(b"after")
    out += frame((1000).to_bytes(2, "big") + b"bye", op=8)
    return out


def test_every_length_form_fragments_and_interleaved_controls_match_the_reference():
    stream = mixed_stream()
    want = reference_split(stream)
    assert want[0][-2:] == [b'{"a":1}', b"after"] and len(want[1]) == 3 and want[2] == b""
    assert split_by(FrameSplitter(MAX), stream, []) == want
    assert split_by(FrameSplitter(MAX), stream, list(range(0, 2000))) == want  # one byte per read, then the rest
    assert split_by(FrameSplitter(MAX), stream, list(range(0, len(stream), 7))) == want  # 7 bytes per read


def test_a_stream_cut_in_two_at_every_byte_gives_the_same_messages():
    stream = b"".join((
        frame(b'{"topic":"publicTrade.BTCUSDT"}'), frame(b"x" * 130), frame(b"y" * 5, length_form=127),
        frame(b"p", op=9), frame(b"frag", fin=False), frame(b"ment", op=0), frame(b"z" * 200, op=2)))
    want = reference_split(stream)
    for cut in range(len(stream) + 1):
        assert split_by(FrameSplitter(MAX), stream, [cut]) == want, cut


def test_many_frames_in_one_read_cross_the_kernel_batch():
    frames = [f'{{"n":{k}}}'.encode() for k in range(1000)]
    stream = b"".join(map(frame, frames))
    splitter = FrameSplitter(MAX, max_frames=64)  # 16 kernel calls in one read
    got = splitter.feed(stream)
    assert len(got) == 1000 and got.forward == []
    buf = got.buf.tobytes()
    assert [buf[s:e] for s, e in zip(got.starts, got.ends, strict=True)] == frames
    assert splitter.frames == 1000


@pytest.mark.parametrize("bad", [
    frame(b"masked", mask=b"\x01\x02\x03\x04"),  # a server must not mask
    frame(b"rsv", rsv=4),  # compressed, but no extension was negotiated
    frame(b"op", op=3),  # reserved opcode
    frame(b"cont", op=0),  # continuation with no start
    frame(b"y" * 101),  # over max_size (100 here)
    b"\x81\x7f\x80" + bytes(7),  # 64-bit length with the top bit set
])
def test_a_frame_the_reader_refuses_is_forwarded_with_everything_after_it(bad):
    good = frame(b'{"ok":1}')
    stream = good + frame(b"p", op=9) + bad + good
    splitter = FrameSplitter(100)
    messages, controls, rest = split_by(splitter, stream, [3, len(good) + 4])
    assert messages == [b'{"ok":1}'] and controls == [frame(b"p", op=9)]
    assert rest == bad + good and splitter.refused
    assert splitter.feed(good).forward == [good]  # from then on, all goes to websockets (which fails the connection)
    assert (messages, controls, rest) == reference_split(stream, 100)


def test_a_fragmented_message_over_max_size_is_refused():
    stream = frame(b"a" * 60, fin=False) + frame(b"b" * 60, op=0)
    assert split_by(FrameSplitter(100), stream, [10, 70]) == ([], [], frame(b"b" * 60, op=0))
    assert reference_split(stream, 100) == ([], [], frame(b"b" * 60, op=0))


def test_a_big_frame_arriving_in_many_reads_is_not_rescanned_per_read():
    big = frame(b"q" * 500_000)
    splitter = FrameSplitter(MAX)
    reads = [big[k:k + 1000] for k in range(0, len(big), 1000)]
    got = [splitter.feed(r) for r in reads]
    assert [len(g) for g in got[:-1]] == [0] * (len(reads) - 1) and len(got[-1]) == 1
    assert splitter.frames == 1  # scanned once the frame was complete


def test_per_message_deflate_is_undone_with_the_negotiated_extension():
    server = PerMessageDeflate(False, False, 15, 15)
    client = PerMessageDeflate(False, False, 15, 15)
    texts = [json.dumps({"topic": "publicTrade.BTCUSDT", "n": k}).encode() for k in range(20)]
    stream = b"".join(Frame(Opcode.TEXT, t).serialize(mask=False, extensions=[server]) for t in texts)
    stream += frame(b"p", op=9)
    assert stream[0] & 0x40  # RSV1: compressed
    messages, controls, rest = split_by(FrameSplitter(MAX, [client]), stream, [7, 100, 101])
    assert messages == texts and controls == [frame(b"p", op=9)] and rest == b""


# a random stream of valid frames: data messages (maybe fragmented), control frames between any two frames
_payload = st.binary(min_size=0, max_size=300)
_message = st.tuples(st.sampled_from([1, 2]), st.lists(_payload, min_size=1, max_size=4),
                     st.lists(st.tuples(st.sampled_from([9, 10]), st.binary(max_size=20)), max_size=2))


@st.composite
def streams(draw) -> tuple[bytes, list[int]]:
    out = b""
    for op, parts, controls in draw(st.lists(_message, min_size=1, max_size=12)):
        for k, part in enumerate(parts):
            form = draw(st.sampled_from([None, None, 126, 127]))
            out += frame(part, op=op if k == 0 else 0, fin=k == len(parts) - 1, length_form=form)
            if controls and draw(st.booleans()):
                c_op, c_payload = controls.pop()
                out += frame(c_payload, op=c_op)
    cuts = draw(st.lists(st.integers(0, len(out)), max_size=8))
    return out, cuts


@given(streams())
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_splitter_equals_the_reference_parser_on_random_streams_cut_anywhere(case):
    stream, cuts = case
    assert split_by(FrameSplitter(MAX, max_frames=8), stream, cuts) == reference_split(stream)


# --- BulkReader on a real loopback socket --------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_bulk_reader_on_a_socket_answers_pings_assembles_fragments_and_reports_the_close(compression):
    pinged = asyncio.Event()

    async def handler(ws) -> None:  # noqa: ANN001 - a websockets ServerConnection
        assert json.loads(await ws.recv()) == {"op": "subscribe"}
        for k in range(500):
            await ws.send(f'{{"n":{k}}}')
        await ws.send(["{", '"frag', 'mented":1}'])  # one message in three frames
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)  # the client's websockets answered it
        pinged.set()
        await ws.send("x" * 70_000)
        await ws.close(4001, "bye")

    async with serve(handler, "127.0.0.1", 0, compression=compression) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with connect(url, compression=compression, ping_interval=None,
                           create_connection=BulkConnection) as reader:
            ws = reader
            assert bool(ws.protocol.extensions) == (compression is not None)
            await ws.send(json.dumps({"op": "subscribe"}))
            messages = []
            while True:
                await reader.ready.wait()
                if reader.chunks:
                    buf, starts, ends, recv = reader.take()
                    assert len(recv) == len(starts) and recv.dtype == np.int64
                    messages += [buf[s:e].tobytes() for s, e in zip(starts, ends, strict=True)]
                elif reader.done:
                    break
                else:
                    reader.ready.clear()
            with pytest.raises(ConnectionClosed) as closed:
                raise ws.close_exc
    assert pinged.is_set()
    assert messages[:500] == [f'{{"n":{k}}}'.encode() for k in range(500)]
    assert messages[500:] == [b'{"fragmented":1}', b"x" * 70_000]
    assert closed.value.rcvd.code == 4001 and closed.value.rcvd.reason == "bye"


async def test_bulk_reader_pauses_reading_while_the_consumer_is_behind_and_takes_at_most_a_limit():
    async def handler(ws) -> None:  # noqa: ANN001
        for k in range(5000):
            await ws.send(f'{{"n":{k}}}')
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with connect(url, compression=None, ping_interval=None, create_connection=BulkConnection) as reader:
            reader.max_frames = 100  # the server sends before this: the first reads may go over, not later ones
            got: list[bytes] = []
            sizes = []
            while len(got) < 5000:
                await asyncio.wait_for(reader.ready.wait(), 30)
                if reader.paused:
                    assert reader.waiting >= 100  # paused only when that many wait
                buf, starts, ends, _ = reader.take(37)
                sizes.append(len(starts))
                got += [buf[s:e].tobytes() for s, e in zip(starts, ends, strict=True)]
            assert got == [f'{{"n":{k}}}'.encode() for k in range(5000)]
            assert max(sizes) == 37 and not reader.paused and reader.waiting == 0


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="the kernel runs as Python")
def test_warm_up_loads_the_header_kernel():
    from engine.adapters import wsframes

    wsframes.warm_up()
    assert wsframes.scan_headers.signatures


@pytest.mark.parametrize("cut", [None, -2, 5])
async def test_frames_in_the_same_read_as_the_handshake_response_are_not_lost(cut):
    """A raw server writes the 101 response and the first frames in one write (or cut inside the blank line)."""
    from websockets.utils import accept_key

    frames = [f'{{"n":{k}}}'.encode() for k in range(50)]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n\r\n")
        blob = response + b"".join(map(frame, frames))
        if cut is None:
            writer.write(blob)
        else:
            k = len(response) + cut
            writer.write(blob[:k])
            await writer.drain()
            await asyncio.sleep(0)  # hint only: the test holds however the reads fall
            writer.write(blob[k:])
        await writer.drain()
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with connect(url, compression=None, ping_interval=None, close_timeout=0.1,
                           create_connection=BulkConnection) as ws:
            got = []
            while len(got) < len(frames):
                await asyncio.wait_for(ws.ready.wait(), 30)
                buf, starts, ends, _ = ws.take()
                got += [buf[s:e].tobytes() for s, e in zip(starts, ends, strict=True)]
            assert got == frames
