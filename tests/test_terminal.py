"""End to end in a real terminal: tmux runs ``pbdtui demo``, a person's keys go in, the screen is read back.

The demo streams a simulated market through the loopback venue and trades it
on the loopback Bybit REST exchange through the live path (a 20-minute
window keeps the session short). The test waits for the console to be
READY, switches the kill switch on, flattens (with the confirmation) until
the exchange confirms flat, quits, and checks the screen, the exit status,
the exchange's final position and the session log, as someone at the
keyboard would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")

SESSION = f"pbdtui-test-{os.getpid()}"


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _screen(*flags: str) -> str:
    return _tmux("capture-pane", "-p", *flags, "-t", SESSION)


def _until(condition, what: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _screen()
        if condition(screen):
            return screen
        time.sleep(0.2)  # polling a terminal: there is no event to await
    raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")


@pytest.fixture
def terminal(tmp_path):
    yield tmp_path
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def test_demo_in_a_real_terminal_kill_switch_flatten_and_quit(terminal):
    tmp = terminal
    (tmp / "config.yaml").write_text("rolling_window_minutes: 20\n")
    state = tmp / "state"
    env = {"XDG_STATE_HOME": str(state), "PYTHONPATH": os.pathsep.join(sys.path)}
    exports = " ".join(f"{k}='{v}'" for k, v in env.items())
    command = (f"cd '{tmp}' && {exports} '{sys.executable}' -m pbdtui.cli demo --days 0.05 --seed 91 --speed 20 "
               f"--config config.yaml; echo EXIT=$? > exit.txt; sleep 600")  # Textual draws on stderr: no redirect
    _tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "36", command)

    screen = _until(lambda s: s.startswith(" DEMO") and "READY" in s.splitlines()[0]
                    and "feed ok" in s.splitlines()[0], "READY with the feed up", 300)
    assert "kill off" in screen.splitlines()[0]  # what the demo is: its first alert, read in the session log below

    _tmux("send-keys", "-t", SESSION, "k")
    _until(lambda s: "KILL ON" in s.splitlines()[0], "the kill switch in the status bar", 30)

    _tmux("send-keys", "-t", SESSION, "f")
    _until(lambda s: "Flatten: close the position at market?" in s, "the flatten question", 30)
    _tmux("send-keys", "-t", SESSION, "y")
    screen = _until(lambda s: "FLAT confirmed" in s, "the exchange's flat confirmation", 60)
    assert "position  FLAT" in screen

    _tmux("send-keys", "-t", SESSION, "q")
    deadline = time.monotonic() + 60
    while not (tmp / "exit.txt").exists():
        assert time.monotonic() < deadline, f"the console did not quit; the screen:\n{_screen()}"
        time.sleep(0.2)
    after = _screen("-J")  # the shell's lines after the console, wrapped lines joined
    assert (tmp / "exit.txt").read_text().strip() == "EXIT=0", after
    assert "pbdtui: session log: " in after and "pbdtui: recorded " not in after  # the demo's db is temporary
    assert "the demo exchange's position at the end: 0 (flat)" in after  # flat on the exchange itself
    summary = next(line for line in after.splitlines() if line.startswith("pbdtui: demo session "))
    assert "minutes closed" in summary and "position FLAT" in summary and "realised " in summary, summary
    logs = list((state / "pbdtui" / "logs").glob("demo-*.log"))
    assert len(logs) == 1 and logs[0].stat().st_mode & 0o777 == 0o600
    text = logs[0].read_text()
    assert "DEMO console started" in text and "console closed" in text and "session summary: demo session" in text
    assert "demo: a simulated market" in text  # the first alert says what the demo is (may have scrolled off since)
    assert not Path(tmp / "demo-91-live.db").exists()


def test_attach_in_a_terminal_then_the_terminal_dies_and_the_daemon_trades_on(tmp_path):
    """`pbdtui run --live` (loopback stream + REST, three processes), `pbdtui attach` in tmux, tmux killed."""
    from engine.runtime.control import ControlClient, socket_path

    (tmp_path / "config.yaml").write_text("rolling_window_minutes: 20\n")
    env = os.environ | {"XDG_RUNTIME_DIR": str(tmp_path / "run"), "XDG_STATE_HOME": str(tmp_path / "state"),
                        "BYBIT_API_KEY": "attach-key", "BYBIT_API_SECRET": "attach-secret-71x",
                        "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = [sys.executable, "-m", "pbdtui.cli"]
    src, db = tmp_path / "src.db", tmp_path / "live.db"
    subprocess.run([*cli, "data", "synth", "--db", str(src), "--days", "0.04", "--seed", "5"], env=env, check=True,
                   capture_output=True, cwd=tmp_path)
    procs = []
    try:
        sim = subprocess.Popen([*cli, "exchange-sim", "--db", str(src), "--speed", "30"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(sim)
        ws_url = sim.stdout.readline().strip()
        rest = subprocess.Popen([sys.executable, "-m", "loopback.bybit_rest"], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(rest)
        rest_url = rest.stdout.readline().split(" on ")[1].split(" ")[0]
        daemon = subprocess.Popen([*cli, "run", "--db", str(db), "--live", "--ws-url", ws_url, "--rest-url", rest_url,
                                   "--config", "config.yaml"], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(daemon)
        client = ControlClient(socket_path(db), timeout=10)
        deadline = time.monotonic() + 240
        while not socket_path(db).exists():
            assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.2)

        exports = " ".join(f"{k}='{env[k]}'" for k in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "PYTHONPATH"))
        _tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "36",
              f"cd '{tmp_path}' && {exports} '{sys.executable}' -m pbdtui.cli attach --db '{db}' "
              f"--config config.yaml; sleep 600")
        _until(lambda s: s.startswith(" LIVE"), "the attached console", 120)
        logs = tmp_path / "state" / "pbdtui" / "logs"
        deadline = time.monotonic() + 60  # its first alert says what it is attached to (the panel may scroll it off)
        while not any("alert: " in p.read_text() and "attached to the live daemon" in p.read_text()
                      for p in logs.glob("*.log")):
            assert time.monotonic() < deadline, f"no 'attached to' alert in the session log; the screen:\n{_screen()}"
            time.sleep(0.2)

        def minute() -> int:  # the newest minute the daemon closed (0: none yet)
            return int((client.request("snapshot")["minute"] or {}).get("features", {}).get("ts_min", 0))

        deadline = time.monotonic() + 120
        while not minute():
            assert time.monotonic() < deadline, "the daemon closed no minute"
            time.sleep(0.2)
        before = minute()

        subprocess.run(["tmux", "kill-session", "-t", SESSION], check=True)  # the SSH session dies
        deadline = time.monotonic() + 120
        while minute() <= before:
            assert time.monotonic() < deadline, "the daemon stopped closing minutes"
            time.sleep(0.2)
        assert daemon.poll() is None  # still running, still trading
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(30)
