"""The daemon's control socket: JSON lines over a Unix socket, owner only.

Where: ``socket_path(db)`` = ``<db>.run/control.sock``, next to the
database, in a directory created with mode 0700 (the socket itself is
0600); a daemon also leaves ``<run dir>/<pid>.json`` (``run_dir()``:
``$XDG_RUNTIME_DIR/pbdtui``, else ``~/.cache/pbdtui/run``; 0700) naming its socket, database and REST
target, so ``pbdtui flatten``/``status`` find a running daemon without
``--db`` (``find_daemons``). A peer whose uid (``SO_PEERCRED``) is not the
daemon's is refused before anything is read.

Protocol: one JSON object per line each way, UTF-8. A request is
``{"cmd": NAME, "id": ANY, ...arguments}``; its answer echoes ``id`` and has
``"ok": true`` plus the command's fields, or ``"ok": false, "error": TEXT``.
Requests on one connection are answered in order.

| cmd | arguments | answer fields |
|---|---|---|
| ``ping`` | | ``pid`` |
| ``status`` | | ``status``: mode, target, position (qty lots, entry, stop ticks), exchange position, kill switch (on, reasons), entries paused, open orders, last reconciliation, counters; ``feed`` and ``recorder`` (their counters: rows delivered, rows committed) |
| ``snapshot`` | | ``status`` plus ``minute`` (the newest closed minute's features, signal, bar), ``alerts`` and ``fills`` (the newest 50 of each), ``feed`` (counters), ``settings`` (symbol, tick size, qty step) |
| ``kill`` | ``reason`` (text, optional) | ``kill`` (the kill switch state) |
| ``reset-kill`` | | ``cleared`` (reasons), ``mismatch`` (the engine's reconciliation block, cleared only by a matching position) |
| ``flatten`` | | ``flat`` (true once the exchange confirms), ``status`` |
| ``pause`` / ``resume`` | | ``entries_paused``: new entries paused or resumed (no latch, no flatten; exits and stops go on) |
| ``subscribe`` | | ``subscribed``: then one line per daemon event until the client closes: ``{"event": TYPE, "data": {...}}`` with TYPE ``MinuteClosed``, ``Filled``, ``Alert``, ``KillSwitchChanged``, ``FeedChanged``, ``LiveStatus``, ``IntentIssued``, ... (the runtime's events as plain JSON) |

Prices are int ticks and quantities int lots, as in the engine; the
``snapshot`` settings give the units. ``ControlClient`` is the client
(``pbdtui flatten``/``status``, the console's attach mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 1 << 16
_SUBSCRIBER_QUEUE = 1000  # events kept for a slow subscriber before it is cut off


class ControlError(RuntimeError):
    """No daemon, a refused connection or a bad answer."""


def socket_path(db: str | os.PathLike[str]) -> Path:
    """The control socket of the daemon recording into ``db``."""
    db = Path(db).resolve()
    return db.with_name(db.name + ".run") / "control.sock"


def run_dir() -> Path:
    """Where running daemons register (see the module doc)."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "pbdtui"
    return Path.home() / ".cache" / "pbdtui" / "run"


def _private_dir(path: Path) -> None:
    """Create ``path`` owner-only, or check an existing one is ours and not open to others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise ControlError(f"{path} belongs to another user: refusing to put a control socket there")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def to_json(value: Any) -> Any:
    """Events and views as plain JSON values (dataclasses by field, numpy scalars by value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def event_json(event: Any) -> dict[str, Any]:
    return {"event": type(event).__name__, "data": to_json(event)}


class ControlServer:
    """The daemon's end: ``await start()``, ``publish(event)`` for subscribers, ``await stop()``.

    Args:
        path: the socket path (``socket_path(db)``).
        handler: ``async (request) -> answer fields`` for every command but ``subscribe``.
        info: written to the registration file (db, target, ...).
        allowed_uid: the only peer uid served (default: ours).
    """

    def __init__(self, path: str | os.PathLike[str], handler: Handler, info: dict[str, Any] | None = None,
                 allowed_uid: int | None = None):
        self.path = Path(path)
        self.handler = handler
        self.info = dict(info or {})
        self.allowed_uid = os.getuid() if allowed_uid is None else allowed_uid
        self.refused = 0
        self._server: asyncio.AbstractServer | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._registration: Path | None = None

    async def start(self) -> ControlServer:
        _private_dir(self.path.parent)
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise ControlError(f"a daemon is already running on {self.path}")
            self.path.unlink()  # a stale socket from a daemon that died
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._register()
        return self

    async def stop(self) -> None:
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._registration is not None:
            with contextlib.suppress(FileNotFoundError):
                self._registration.unlink()

    def publish(self, event: Any) -> None:
        """Send ``event`` to every subscriber (a subscriber too slow to keep up is cut off)."""
        if not self._subscribers:
            return
        line = event_json(event)
        for q in list(self._subscribers):
            try:
                q.put_nowait(line)
            except asyncio.QueueFull:
                self._subscribers.discard(q)

    def _register(self) -> None:
        directory = run_dir()
        try:
            _private_dir(directory)
            reg = directory / f"{os.getpid()}.json"
            tmp = reg.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "socket": str(self.path), **self.info}))
            os.chmod(tmp, 0o600)
            tmp.replace(reg)
            self._registration = reg
        except (OSError, ControlError):
            self._registration = None  # found through --db only

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        try:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except (OSError, AttributeError):
            return False
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid == self.allowed_uid

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self._peer_allowed(writer):
                self.refused += 1
                writer.write(b'{"ok": false, "error": "refused: not the daemon\'s user"}\n')
                await writer.drain()
                return
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await self._answer(writer, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                    return
                if not line:
                    return
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                        raise ValueError("a request is a JSON object with a string 'cmd'")
                except ValueError as e:
                    await self._answer(writer, {"ok": False, "error": f"bad request: {e}"})
                    continue
                if request["cmd"] == "subscribe":
                    await self._subscribe(request, writer)
                    return
                try:
                    answer = {"ok": True, **(await self.handler(request))}
                except Exception as e:  # noqa: BLE001 - one bad command must not end the daemon
                    answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                if "id" in request:
                    answer["id"] = request["id"]
                await self._answer(writer, answer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _subscribe(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_SUBSCRIBER_QUEUE)
        self._subscribers.add(q)
        try:
            await self._answer(writer, {"ok": True, "subscribed": True, **({"id": request["id"]} if "id" in request
                                                                            else {})})
            while True:
                item = await q.get()
                if item is None or q not in self._subscribers:
                    return
                await self._answer(writer, item)
        finally:
            self._subscribers.discard(q)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(json.dumps(obj, default=str).encode() + b"\n")
        await writer.drain()


def _answers(path: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        s.connect(str(path))
        return True
    return False


class ControlClient:
    """A blocking client: ``ControlClient(path).request("status")``; ``events()`` iterates a subscription.

    Raises ``ControlError`` when the daemon cannot be reached or answers ``ok: false``.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 10.0):
        self.path = Path(path)
        self.timeout = timeout

    def _connect(self, timeout: float | None) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(self.path))
        except OSError as e:
            s.close()
            raise ControlError(f"no daemon answers on {self.path}: {e.strerror or e}") from None
        return s

    def request(self, cmd: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one command and return its answer (``ok`` true)."""
        with self._connect(self.timeout if timeout is None else timeout) as s:
            try:
                s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # a refusing daemon answers and closes before reading: its answer is still there to read
            answer = _read_line(s)
        if not answer.get("ok"):
            raise ControlError(f"daemon refused {cmd!r}: {answer.get('error', 'no reason given')}")
        return answer

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Subscribe and yield ``{"event", "data"}`` dicts until the daemon closes the connection."""
        s = self._connect(timeout)
        with s:
            s.sendall(b'{"cmd": "subscribe"}\n')
            f = s.makefile("rb")
            first = json.loads(f.readline() or b"{}")
            if not first.get("ok"):
                raise ControlError(f"subscribe refused: {first.get('error', 'no answer')}")
            for line in f:
                yield json.loads(line)


def _read_line(s: socket.socket) -> dict[str, Any]:
    buf = b""
    while not buf.endswith(b"\n"):
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    if not buf:
        raise ControlError("the daemon closed the connection without an answer")
    return json.loads(buf)


def find_daemons(rest_url: str | None = None) -> list[dict[str, Any]]:
    """Registered daemons whose socket answers (optionally only those trading at ``rest_url``)."""
    directory = run_dir()
    out = []
    for reg in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            info = json.loads(reg.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or "socket" not in info:
            continue
        if not _answers(Path(info["socket"])):
            with contextlib.suppress(OSError):
                reg.unlink()  # a daemon that died without cleaning up
            continue
        if rest_url is not None and info.get("rest_url") != rest_url:
            continue
        out.append(info)
    return out
