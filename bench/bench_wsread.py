"""Splitting received WebSocket bytes into messages: websockets' sans-I/O parser against the bulk reader.

The live client's choice (``engine.adapters.wsframes``): the same server
frames (a simulated session as the venue sends it, unmasked text frames end
to end) are fed in reads of ``--read`` bytes to

* ``websockets``' sans-I/O ``ClientProtocol`` (``receive_data`` then
  ``events_received``: one ``Frame`` per message, then ``str`` decoding as
  the asyncio client does), and
* ``FrameSplitter.feed`` (message spans of the read, no object per frame),

in this process, no socket: messages per CPU second of each.

    PYTHONPATH=. python bench/bench_wsread.py [--minutes 60] [--read 65536] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.client import ClientProtocol  # noqa: E402
from websockets.protocol import State  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from bench._common import emit, loadavg, machine  # noqa: E402
from bench.bench_live import _frames, _session, _ws_frames  # noqa: E402
from engine.adapters.wsframes import FrameSplitter, warm_up  # noqa: E402


def sans_io(blob: bytes, read: int) -> tuple[int, float]:
    proto = ClientProtocol(parse_uri("ws://127.0.0.1/"), max_size=1 << 22)
    proto.state = State.OPEN  # as after the handshake
    proto.parser = proto.parse()  # the frame parser (the handshake's response parser skipped)
    next(proto.parser)
    n = 0
    t0 = time.process_time()
    for k in range(0, len(blob), read):
        proto.receive_data(blob[k:k + read])
        for frame in proto.events_received():
            frame.data.decode()  # the asyncio client hands over str
            n += 1
    return n, time.process_time() - t0


def bulk(blob: bytes, read: int) -> tuple[int, float]:
    splitter = FrameSplitter(1 << 22)
    n = 0
    t0 = time.process_time()
    for k in range(0, len(blob), read):
        n += len(splitter.feed(blob[k:k + read]))
    return n, time.process_time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--read", type=int, default=1 << 16, help="bytes per socket read")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.db"
        _session(src, args.minutes)
        blob = _ws_frames(_frames(src))
    warm_up()
    result: dict = {"machine": machine(), "load_before": loadavg(), "bytes": len(blob), "read_bytes": args.read}
    for name, fn in (("websockets_sans_io", sans_io), ("bulk_splitter", bulk)):
        best = None
        for _ in range(3):
            n, cpu = fn(blob, args.read)
            best = cpu if best is None else min(best, cpu)
        result[name] = {"messages": n, "cpu_s": round(best, 4), "messages_per_cpu_s": round(n / best)}
        print(name, result[name], flush=True)
    result["load_after"] = loadavg()
    emit("wsread", result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
