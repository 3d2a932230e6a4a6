"""Server-to-client WebSocket frames read in bulk: every complete message of a read, at once.

``websockets`` parses and delivers one frame at a time (a generator step,
a ``Frame``, a ``str`` and a queue hop each): ~3 us a frame, most of the
live client's time at a replay's or a catch-up's rates. Here a read from the
socket is split into its messages by one pass of a numba kernel over the
frame headers, and the messages are handed on as spans of that read's bytes
(``buf[starts[i]:ends[i]]``), which ``FrameDecoder.decode_spans`` decodes
where they lie; no Python object is made per frame.

``websockets`` keeps what it does well: the opening handshake (TLS, proxy,
extension negotiation), sending, and the control frames. ``BulkConnection``
(its client connection, subclassed) reads the frames after the handshake and
hands to ``websockets``' own parser every control frame (ping: it answers
pong; close: it completes the closing handshake) and everything this reader
does not handle itself (a masked frame, a reserved opcode or bit, an
oversized message: ``websockets`` fails the connection with the right close
code, as it did when it read everything).

``FrameSplitter`` (sans-I/O, no clock) does the splitting:

* frames of any length form (7-bit, 16-bit ``126``, 64-bit ``127``);
* frames split anywhere across reads (the incomplete tail waits for the
  next read);
* fragmented messages (text or binary start, continuations), with control
  frames interleaved between fragments;
* per-message deflate, when the handshake negotiated it (not on loopback):
  data frames then go through the negotiated extensions of ``websockets``.

A read of unfragmented, uncompressed data frames (the exchange's case) is
the fast path: the spans come straight from the kernel. Anything else takes
a per-frame Python loop, for that read only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

# columns of the kernel's per-frame output
F_B0 = 0  # first header byte: FIN, RSV1-3, opcode
F_MASKED = 1  # 1 when the MASK bit is set (a server must not mask)
F_START = 2  # payload start (after the masking key, if any)
F_END = 3  # payload end
F_HEAD = 4  # header start: the frame's raw bytes are buf[F_HEAD:F_END]
F_COLS = 5


@njit(cache=True, nogil=True)
def scan_headers(buf, pos, max_size, out):  # pragma: no cover - compiled; NUMBA_DISABLE_JIT runs it as Python
    """Headers of the complete frames in ``buf`` from ``pos``, into ``out`` rows; returns (frames, end).

    Stops at the first incomplete frame (``end`` is where it starts), when
    ``out`` is full, or after a frame this reader refuses (a 64-bit length
    with its top bit set, or a payload over ``max_size``): that frame's row
    is written with ``F_END`` = -1 and ``end`` is its header start.
    """
    n = len(buf)
    k = 0
    while k < out.shape[0]:
        if pos + 2 > n:
            break
        b0 = np.int64(buf[pos])
        b1 = np.int64(buf[pos + 1])
        length = b1 & 0x7F
        h = pos + 2
        if length == 126:
            if h + 2 > n:
                break
            length = (np.int64(buf[h]) << 8) | np.int64(buf[h + 1])
            h += 2
        elif length == 127:
            if h + 8 > n:
                break
            if buf[h] & 0x80:
                length = -1
            else:
                length = 0
                for q in range(8):
                    length = (length << 8) | np.int64(buf[h + q])
            h += 8
        masked = 1 if b1 & 0x80 else 0
        if masked:
            h += 4
        if length < 0 or length > max_size:
            out[k, F_B0] = b0
            out[k, F_MASKED] = masked
            out[k, F_START] = h
            out[k, F_END] = -1
            out[k, F_HEAD] = pos
            return k + 1, pos
        if h + length > n:
            break
        out[k, F_B0] = b0
        out[k, F_MASKED] = masked
        out[k, F_START] = h
        out[k, F_END] = h + length
        out[k, F_HEAD] = pos
        k += 1
        pos = h + length
    return k, pos


def warm_up() -> None:
    """Load (or compile) the header kernel now, off the event loop (see ``frames.warm_up``)."""
    scan_headers(np.frombuffer(b"\x81\x00", np.uint8), 0, 1, np.empty((1, F_COLS), np.int64))


@dataclass
class Received:
    """What one read held: complete messages as spans of ``buf``, and frames for the protocol library.

    ``buf[starts[i]:ends[i]]`` is message ``i``'s payload (text or binary),
    in arrival order. ``forward`` holds raw bytes for ``websockets``, in
    order: control frames, and from the first frame this reader refuses on,
    everything (it fails the connection).
    """

    buf: np.ndarray  # uint8
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    forward: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.starts)


_NO_SPANS = np.zeros(0, np.int64)


def _frame_size(head: bytes | bytearray) -> int:
    """Header plus payload bytes of the frame starting ``head``; 0 while its header is incomplete."""
    if len(head) < 2:
        return 0
    length, h = head[1] & 0x7F, 2
    if length == 126:
        if len(head) < 4:
            return 0
        length, h = int.from_bytes(head[2:4], "big"), 4
    elif length == 127:
        if len(head) < 10:
            return 0
        length, h = int.from_bytes(head[2:10], "big"), 10
    return h + (4 if head[1] & 0x80 else 0) + length


class FrameSplitter:
    """Splits the byte stream a WebSocket client receives into messages; see the module doc.

    Args:
        max_size: the largest message accepted (bytes); a bigger one is
            forwarded, and so is everything after it.
        extensions: ``websockets`` extensions negotiated by the handshake
            (per-message deflate); their ``decode`` is applied to data
            frames, as ``websockets`` would.
        max_frames: frames scanned per kernel call (the output rows).
    """

    def __init__(self, max_size: int = 1 << 22, extensions: list[Any] | None = None, max_frames: int = 4096):
        self.max_size = int(max_size)
        self.extensions = list(extensions or [])
        self._rows = np.empty((max_frames, F_COLS), np.int64)
        self._tail = bytearray()  # an incomplete frame from the previous reads
        self._need = 0  # bytes the incomplete frame needs in all (0: its header is incomplete)
        self._parts: list[bytes] | None = None  # fragments of a message in progress
        self._parts_size = 0
        self.refused = False  # a frame was refused: everything now goes to ``forward``
        self.frames = 0  # frames read (control frames included)

    def feed(self, data: bytes) -> Received:
        """The messages completed by ``data`` (and what is to be forwarded)."""
        if self.refused:
            return Received(np.zeros(0, np.uint8), _NO_SPANS, _NO_SPANS, [bytes(data)])
        if self._tail:
            self._tail += data
            if len(self._tail) < self._need:  # a big frame still arriving: no rescan per read
                return Received(np.zeros(0, np.uint8), _NO_SPANS, _NO_SPANS, [])
            data, self._tail, self._need = bytes(self._tail), bytearray(), 0
        buf = np.frombuffer(data, np.uint8)
        pos = 0
        spans: list[tuple[np.ndarray, np.ndarray]] = []
        pieces: list[bytes] = []  # slow path: message payloads, laid end to end afterwards
        slow = False
        forward: list[bytes] = []
        while True:
            k, end = scan_headers(buf, pos, self.max_size, self._rows)
            rows = self._rows[:k]
            refused_at = -1
            if k and rows[-1, F_END] < 0:
                refused_at = int(rows[-1, F_HEAD])
                rows = rows[:-1]
            if len(rows):
                self.frames += len(rows)
                b0 = rows[:, F_B0]
                fast = (not slow and self._parts is None and not self.extensions
                        and not rows[:, F_MASKED].any() and bool(((b0 == 0x81) | (b0 == 0x82)).all()))
                if fast:
                    spans.append((rows[:, F_START].copy(), rows[:, F_END].copy()))
                else:
                    if not slow:  # what came before, as pieces too
                        pieces = [data[s:e] for a, b in spans for s, e in zip(a.tolist(), b.tolist(), strict=True)]
                        spans = []
                        slow = True
                    refused_row = self._slow(data, rows, pieces, forward)
                    if refused_row >= 0:
                        refused_at = refused_row
            if refused_at >= 0:
                self.refused = True
                forward.append(data[refused_at:])
                break
            pos = end
            if k < len(self._rows):
                if pos < len(data):
                    self._tail = bytearray(data[pos:])
                    need = _frame_size(self._tail)
                    self._need = need if need <= self.max_size + 14 else 0  # oversized: refused at the next read
                break
        if slow:
            lens = np.fromiter(map(len, pieces), np.int64, len(pieces))
            ends = np.cumsum(lens)
            return Received(np.frombuffer(b"".join(pieces), np.uint8), ends - lens, ends, forward)
        if not spans:
            return Received(buf, _NO_SPANS, _NO_SPANS, forward)
        if len(spans) == 1:
            return Received(buf, spans[0][0], spans[0][1], forward)
        return Received(buf, np.concatenate([s for s, _ in spans]), np.concatenate([e for _, e in spans]), forward)

    def _slow(self, data: bytes, rows: np.ndarray, pieces: list[bytes], forward: list[bytes]) -> int:
        """Frame by frame: fragments, control frames, extensions; returns the header of a refused frame or -1."""
        for b0, masked, start, end, head in rows.tolist():
            fin, rsv, op = b0 >> 7, (b0 >> 4) & 7, b0 & 0xF
            if op >= 8:  # control: websockets answers pings and closes; a bad one it refuses
                forward.append(data[head:end])
                continue
            if masked or op not in (OP_CONT, OP_TEXT, OP_BINARY) or (rsv and not self.extensions):
                return head
            if (op == OP_CONT) != (self._parts is not None):  # a continuation without a start, or a start inside one
                return head
            payload = data[start:end]
            if self.extensions:
                payload = self._inflate(fin, rsv, op, payload)
                if payload is None:
                    return head
            if op != OP_CONT:
                if fin:
                    pieces.append(payload)
                    continue
                self._parts, self._parts_size = [payload], len(payload)
                continue
            assert self._parts is not None
            self._parts.append(payload)
            self._parts_size += len(payload)
            if self._parts_size > self.max_size:
                return head
            if fin:
                pieces.append(b"".join(self._parts))
                self._parts, self._parts_size = None, 0
        return -1

    def _inflate(self, fin: int, rsv: int, op: int, payload: bytes) -> bytes | None:
        """One data frame through the negotiated extensions (per-message deflate); None if they refuse it."""
        from websockets.exceptions import WebSocketException
        from websockets.frames import Frame, Opcode

        frame = Frame(Opcode(op), payload, bool(fin), bool(rsv & 4), bool(rsv & 2), bool(rsv & 1))
        try:
            for ext in reversed(self.extensions):
                frame = ext.decode(frame, max_size=self.max_size)
        except (WebSocketException, ValueError):
            return None
        return bytes(frame.data)


class BulkConnection(ClientConnection):
    """A ``websockets`` client connection whose data frames are read in bulk (``connect(create_connection=...)``).

    The opening handshake is ``websockets``' own: the bytes of the HTTP
    response go to it, exactly up to the blank line that ends it, so the
    stream is cut at the first frame and nothing of it was parsed by
    ``websockets``. From there, every read goes through a ``FrameSplitter``
    (made with the extensions the handshake negotiated) and becomes a chunk
    (its ``Received`` and receive time, ms UTC); control frames and what the
    splitter refuses go to ``websockets`` as before. ``send``, ``close`` and
    the rest are unchanged; ``recv`` gets nothing (use ``take``).

    ``take(limit)`` hands over the messages waiting (at most ``limit``),
    laid end to end. Reading pauses while ``max_frames`` messages wait (the
    consumer is behind) and resumes once ``take`` left fewer. ``ready`` is set when chunks wait or the
    connection ended (``done``; ``close_exc`` then says how).
    """

    max_frames = 4096

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.splitter: FrameSplitter | None = None  # after the handshake
        self._head = b""  # the handshake response so far
        self.chunks: list[tuple[Received, int]] = []
        self.waiting = 0  # messages in chunks
        self.ready = asyncio.Event()
        self.done = False
        self.paused = False

    def data_received(self, data: bytes) -> None:
        splitter = self.splitter
        if splitter is None:
            if self.protocol.state is not State.CONNECTING:  # a failed handshake: websockets has it all
                super().data_received(data)
                return
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                super().data_received(data)  # websockets keeps its own copy of the partial response
                return
            head_bytes, rest = len(self._head) - len(data), self._head[end + 4:]
            self._head = b""
            super().data_received(data[:end + 4 - head_bytes])
            if self.protocol.state is not State.OPEN:
                if rest:
                    super().data_received(rest)
                return
            splitter = self.splitter = FrameSplitter(self.protocol.max_message_size or 1 << 62,
                                                     self.protocol.extensions)
            if not rest:
                return
            data = rest
        rx_ms = int(time.time() * 1000)
        got = splitter.feed(data)
        if len(got):
            self.chunks.append((got, rx_ms))
            self.waiting += len(got)
            self.ready.set()
            if self.waiting >= self.max_frames and not self.paused:
                self.paused = True
                self.transport.pause_reading()
        for raw in got.forward:
            super().data_received(raw)

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self.ready.set()
        super().connection_lost(exc)

    # --- the consumer ---------------------------------------------------------------------------

    def take(self, limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The waiting messages (at most ``limit`` of them, if > 0) as (buf, starts, ends, recv_ms), end to end."""
        chunks: list[tuple[Received, int]] = []
        n = 0
        while self.chunks and (limit <= 0 or n < limit):
            got, rx = self.chunks[0]
            if limit > 0 and n + len(got) > limit:  # the rest of this read stays for the next take
                k = limit - n
                self.chunks[0] = (Received(got.buf, got.starts[k:], got.ends[k:]), rx)
                got = Received(got.buf, got.starts[:k], got.ends[:k])
            else:
                self.chunks.pop(0)
            chunks.append((got, rx))
            n += len(got)
        self.waiting -= n
        if not self.chunks:
            self.ready.clear()
        if self.paused and self.waiting < self.max_frames:
            self.paused = False
            self.transport.resume_reading()
        if not chunks:
            return np.zeros(0, np.uint8), _NO_SPANS, _NO_SPANS, _NO_SPANS
        if len(chunks) == 1:
            got, rx = chunks[0]
            return got.buf, got.starts, got.ends, np.full(len(got), rx, np.int64)
        starts, ends, bufs, base = [], [], [], 0
        for got, _ in chunks:
            lo, hi = int(got.starts[0]), int(got.ends[-1])  # only the messages' range of each read is kept
            bufs.append(got.buf[lo:hi])
            starts.append(got.starts - lo + base)
            ends.append(got.ends - lo + base)
            base += hi - lo
        recv = np.concatenate([np.full(len(got), rx, np.int64) for got, rx in chunks])
        return np.concatenate(bufs), np.concatenate(starts), np.concatenate(ends), recv
