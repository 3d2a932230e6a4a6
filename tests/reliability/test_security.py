"""Security of the live path: secrets, listening sockets, file modes, the control socket's peers.

``pbdtui -v run --live`` runs as a process of its own on the loopback stream
(``pbdtui exchange-sim``) and the loopback Bybit REST exchange (``python -m
loopback.bybit_rest``), each a process too, with the credentials in the
environment only. While the three run: their process arguments, their
listening sockets (``/proc/net/tcp``, ``/proc/net/tcp6``, matched to each
process's socket inodes) and the modes of the database, its control socket
and the daemon's registration; after a clean stop: its output and every byte
of the database. Failing runs (wrong secret, wrong key, no exchange, a
database that is not one) must not print the credentials either, nor does
the live console (its screens, alerts and log records). The control socket
refuses a peer of another uid even when its file permissions were loosened.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runtime.control import ControlClient, ControlError, socket_path
from tests.reliability.crashkit import REPO, SETTINGS, START, make_source, prefill, write_config

KEY = "sec-KEY-a7c2e9"
SECRET = "sec-SECRET-Vb91xQz4Lm"
CREDENTIALS = (KEY, SECRET)
CLI = [sys.executable, "-m", "pbdtui.cli"]


def _env(work: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "XDG_RUNTIME_DIR": str(work / "run"), "XDG_STATE_HOME": str(work / "state"), **extra}


def _leaks(text: str | bytes) -> list[str]:
    blob = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [c for c in CREDENTIALS if c.encode() in blob]


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m:
            out.add(int(m.group(1)))
    return out


def _listeners(pid: int) -> list[str]:
    """``host:port`` of every TCP socket of ``pid`` in the LISTEN state (IPv4 and IPv6)."""
    inodes = _socket_inodes(pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                local, state, inode = parts[1], parts[3], int(parts[9])
                if state != "0A" or inode not in inodes:
                    continue
                hex_ip, hex_port = local.split(":")
                raw = bytes.fromhex(hex_ip)
                # /proc prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                ip = ipaddress.ip_address(words)
                found.append(f"{ip}:{int(hex_port, 16)}")
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """The three processes, what was seen while they ran, and the daemon's output after a clean stop."""
    work = tmp_path_factory.mktemp("security")
    source = make_source(work / "src.db", 20, seed=8)
    db = work / "live.db"
    prefill(db, source, START + 12 * 60_000)
    config = write_config(work / "config.yaml")
    env = _env(work)
    procs: dict[str, subprocess.Popen] = {}
    seen: dict = {}
    try:
        procs["venue"] = subprocess.Popen([*CLI, "exchange-sim", "--db", str(source), "--speed", "20"], env=env,
                                          cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ws_url = procs["venue"].stdout.readline().strip()
        procs["rest"] = subprocess.Popen([sys.executable, "-m", "loopback.bybit_rest"], env=env, cwd=work,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        rest_url = procs["rest"].stdout.readline().split(" on ")[1].split(" ")[0]
        out, err = open(work / "daemon.out", "wb"), open(work / "daemon.err", "wb")  # noqa: SIM115
        procs["daemon"] = subprocess.Popen([*CLI, "-v", "run", "--db", str(db), "--live", "--ws-url", ws_url,
                                            "--rest-url", rest_url, "--config", str(config)],
                                           env=env, cwd=work, stdout=out, stderr=err)
        out.close()
        err.close()
        client = ControlClient(socket_path(db), timeout=5)
        deadline = time.monotonic() + 600  # a fresh checkout compiles the kernels first
        while True:
            assert procs["daemon"].poll() is None, (work / "daemon.err").read_text()[-3000:]
            try:
                answer = client.request("status")
                if answer["status"]["last_reconciliation"] and answer["feed"].get("trades", 0) > 0:
                    break
            except ControlError:
                pass
            assert time.monotonic() < deadline, "the daemon did not go live"
            time.sleep(0.1)  # another process starting: polled
        seen["status"] = answer
        seen["cmdline"] = {name: Path(f"/proc/{p.pid}/cmdline").read_bytes() for name, p in procs.items()}
        seen["listeners"] = {name: _listeners(p.pid) for name, p in procs.items()}
        registration = work / "run" / "pbdtui" / f"{procs['daemon'].pid}.json"
        paths = {"database": db, "database-wal": Path(f"{db}-wal"), "database-shm": Path(f"{db}-shm"),
                 "control socket": socket_path(db), "control socket directory": socket_path(db).parent,
                 "registration": registration, "registration directory": registration.parent}
        seen["modes"] = {name: stat.S_IMODE(p.stat().st_mode) for name, p in paths.items() if p.exists()}
        procs["daemon"].send_signal(signal.SIGTERM)
        assert procs["daemon"].wait(120) == 0
        seen["output"] = (work / "daemon.out").read_bytes() + (work / "daemon.err").read_bytes()
        seen["database"] = b"".join(p.read_bytes() for p in work.glob("live.db*") if p.is_file())
        seen["work"], seen["rest_url"], seen["ws_url"] = work, rest_url, ws_url
        yield seen
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            p.wait(30)


def test_no_secret_in_the_daemons_output_database_or_process_arguments(daemon):
    assert b"LIVE trading" in daemon["output"]  # the output is the daemon's, verbose
    assert _leaks(daemon["output"]) == []
    assert len(daemon["database"]) > 100_000 and _leaks(daemon["database"]) == []
    for name, cmdline in daemon["cmdline"].items():
        assert _leaks(cmdline) == [], name
    assert b"--live" in daemon["cmdline"]["daemon"]
    assert _leaks(str(daemon["status"])) == []  # nor in what the control socket tells


def test_every_listening_socket_of_the_venue_rest_and_daemon_is_on_loopback(daemon):
    listeners = daemon["listeners"]
    assert listeners["venue"] and listeners["rest"], listeners  # the check sees their sockets
    assert listeners["daemon"] == []  # the daemon listens on its Unix control socket only
    for name, addresses in listeners.items():
        assert all(_is_loopback(a) for a in addresses), (name, addresses)


def test_database_control_socket_and_registration_are_owner_only(daemon):
    modes = daemon["modes"]
    assert {"database", "control socket", "control socket directory", "registration"} <= set(modes), modes
    for name, mode in modes.items():
        want = 0o700 if name.endswith("directory") else 0o600
        assert mode == want, f"{name}: {oct(mode)}"


def test_failing_runs_print_no_secret(daemon):
    """A wrong secret, a wrong key, no exchange at all, a database that is not one: errors, no credentials."""
    work = daemon["work"]
    garbage = work / "garbage.db"
    garbage.write_bytes(b"not a database " * 100)
    runs = {
        "wrong secret": (["-v", "status", "--rest-url", daemon["rest_url"]], {"BYBIT_API_SECRET": SECRET + "x"}),
        "wrong key": (["-v", "run", "--db", str(work / "wk.db"), "--live", "--ws-url", daemon["ws_url"],
                       "--rest-url", daemon["rest_url"], "--duration", "1"], {"BYBIT_API_KEY": KEY + "x"}),
        "no exchange": (["-v", "run", "--db", str(work / "nx.db"), "--live", "--ws-url", daemon["ws_url"],
                         "--rest-url", "http://127.0.0.1:9", "--duration", "1"], {}),
        "not a database": (["-v", "run", "--db", str(garbage), "--live", "--ws-url", daemon["ws_url"],
                            "--rest-url", daemon["rest_url"], "--duration", "1"], {}),
    }
    # the four at once (each is mostly its start); the duration counts from the end of the start, its errors
    procs = {name: subprocess.Popen([*CLI, *args], env=_env(work, **extra), cwd=work, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE) for name, (args, extra) in runs.items()}
    for name, p in procs.items():
        out, err = p.communicate(timeout=300)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        shown = r.stdout + r.stderr
        assert shown, name
        assert _leaks(shown) == [], (name, shown.decode(errors="replace")[-2000:])
        if name in ("wrong secret", "not a database"):
            assert r.returncode != 0, name


async def test_the_live_console_shows_and_logs_no_secret(tmp_path):
    """``pbdtui live --live`` (the console) on the loopback stream and exchange: screens, alerts, log records."""
    from engine.adapters.bybit.ws import FeedConfig
    from loopback.bybit_rest import BybitRestVenue
    from loopback.bybit_ws import BybitPublicVenue
    from loopback.source import StoreSource
    from pbdtui.app import create_live_app
    from pbdtui.screens import ConfirmScreen
    from tests.helpers import pilot_press, pilot_until

    source = make_source(tmp_path / "src.db", 16, seed=8)
    db = tmp_path / "console.db"
    prefill(db, source, START + 12 * 60_000)
    log_file = tmp_path / "session.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")  # as the console's session log (INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    screens = []
    config = FeedConfig(url="ws://127.0.0.1:1/", stale_after=2.0, backoff_initial=0.01, backoff_max=0.05, seed=1,
                        grace_ms=200, flush_interval=0.01)
    try:
        async with BybitPublicVenue(StoreSource(source, start_ms=START + 12 * 60_000), speed=20, seed=3) as venue:
            exchange = BybitRestVenue(api_key=KEY, api_secret=SECRET, quote=venue.quote,
                                      market_clock=venue.market_ms).start()
            exchange.inject("reject", path="/v5/position/list", code=10003, msg="API key is invalid.")
            try:
                app = create_live_app(SETTINGS, db, venue.url, feed_config=config, ui_interval=0.05,
                                      rest_url=exchange.url, api_key=KEY, api_secret=SECRET)
                async with app.run_test(size=(160, 48)) as pilot:
                    trader = app.driver.driver.trader
                    await pilot_until(pilot, lambda: trader.started and app.mode_screen.minutes, "the console live")
                    screens.append(app.export_screenshot())
                    await pilot_press(pilot, "?")
                    await pilot.pause(0.2)
                    screens.append(app.export_screenshot())
                    await pilot_press(pilot, "escape")
                    await pilot_press(pilot, "f")
                    await pilot_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the flatten question")
                    await pilot_press(pilot, "y")
                    await pilot_until(pilot, lambda: any("FLAT" in line for line in app.mode_screen.alert_lines),
                                      "the flatten's answer", 60)
                    screens.append(app.export_screenshot())
                    alerts = list(app.mode_screen.alert_lines)
                    await pilot_press(pilot, "q")
                    await pilot_until(pilot, lambda: app.exiting, "quit", 30)
            finally:
                exchange.stop()
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
    logged = log_file.read_text()
    assert logged and alerts and len(screens) == 3
    for text in [*screens, "\n".join(alerts), logged]:
        assert _leaks(text) == []


def test_the_control_socket_refuses_a_peer_of_another_uid(tmp_path):
    """SO_PEERCRED: a connection from another user is refused before anything is read.

    The socket's own modes (0600 in a 0700 directory) already keep other users out; they are loosened
    here on purpose, so that a process running as ``nobody`` reaches the socket and only the daemon's
    peer-credential check stands between it and the kill switch.
    """
    import asyncio
    import pwd
    import tempfile

    if os.getuid() != 0:
        pytest.skip("needs root: the test runs a client as another user (nobody) to reach the uid check")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this machine")
    from engine.runtime.control import ControlServer

    calls = []

    async def handler(request):
        calls.append(request["cmd"])
        return {"pid": os.getpid()}

    base = Path(tempfile.mkdtemp(prefix="pbdtui-peer-", dir="/tmp"))  # /tmp: reachable by nobody

    def as_nobody(path: Path) -> str:
        """Connect as ``nobody`` from a forked child (this interpreter may not be executable by nobody)."""
        import socket

        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop to nobody, ask for the kill switch, report the answer, exit
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(30)
                    s.connect(str(path))
                    s.sendall(b'{"cmd": "kill"}\n')
                    answer = s.makefile("rb").readline()
                os.write(write, answer or b"(closed)")
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                os.write(write, f"child failed: {e!r}".encode())
            finally:
                os._exit(0)
        os.close(write)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        os.waitpid(pid, 0)
        return b"".join(chunks).decode()

    async def main():
        path = socket_path(base / "x.db")
        server = await ControlServer(path, handler).start()
        try:
            os.chmod(base, 0o711)
            os.chmod(path.parent, 0o711)
            os.chmod(path, 0o666)
            other = await asyncio.to_thread(as_nobody, path)
            ours = await asyncio.to_thread(ControlClient(path).request, "ping")
        finally:
            await server.stop()
        return server, other, ours

    try:
        server, other, ours = asyncio.run(main())
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    assert "refused" in other and '"ok": false' in other, other
    assert server.refused == 1 and calls == ["ping"]  # nobody's "kill" never reached the handler
    assert ours["ok"] is True
