"""`ruview-node mock-board`: a stand-in ESP32-C6 for `flash` and `provision --method nvs`.

It is esp32-mock-bootloader (an emulated ROM bootloader on a loopback TCP port, reached as
`--port socket://127.0.0.1:PORT --before no-reset`) with two things the upstream command
line lacks:

- the bootloader waits 2 s for the host's next SLIP frame, not upstream 0.3.0's 50 ms, which
  esptool 5.6 exceeds while it acknowledges READ_FLASH blocks: with the shipped command
  `provision --method nvs` stops with "Serial data stream stopped" (the tests patch the same
  value, tests/tools/mock_bootloader.py);
- its flash starts with RuView's partition table at 0x8000 (and an empty NVS partition), as
  a board flashed with a release has, so `provision` works without flashing first; `--blank`
  starts from erased flash instead.

The flash lives in the mock's process: it survives reconnects until `mock-board stop`.
esp32-mock-bootloader is a test dependency, not installed with the bridge:
`.venv/bin/pip install 'esp32-mock-bootloader==0.3.0'` (pinned: a private value is raised).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from firmware_tools.partitions import RUVIEW_C6_TABLE, TABLE_OFFSET, build_table

PACKAGE = "esp32-mock-bootloader==0.3.0"
RECV_TIMEOUT = 2.0
CHIP = "esp32c6"
BIND = "127.0.0.1"
_MODULE = "firmware_tools.mock_node"


class MockError(RuntimeError):
    """The mock board cannot start or stop; the message says why and what to do."""


@dataclass(frozen=True)
class MockBoard:
    pid: int
    port: int
    log: str

    @property
    def url(self) -> str:
        return f"socket://{BIND}:{self.port}"


def default_state() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "ruview" / "mock-board.json"


def _server() -> ModuleType:
    try:
        server = importlib.import_module("esp32_mock_bootloader.server")
    except ImportError:
        raise MockError(f"the mock board needs {PACKAGE}, a test dependency: "
                        f"{Path(sys.prefix) / 'bin' / 'pip'} install '{PACKAGE}'") from None
    if not all(hasattr(server, name) for name in ("_CLIENT_RECV_TIMEOUT", "get_flash_image", "run_server")):
        raise MockError(f"this esp32-mock-bootloader is not the one the mock board was written for; "
                        f"install {PACKAGE}")
    return server


def serve(port_file: Path, *, port: int = 0, blank: bool = False, lifetime: float | None = None) -> None:
    """Run the mock bootloader in this process until stopped (or `lifetime` seconds)."""
    server = _server()
    setattr(server, "_CLIENT_RECV_TIMEOUT", RECV_TIMEOUT)   # private in 0.3.0, hence the pin
    if not blank:
        table = build_table(RUVIEW_C6_TABLE)
        server.get_flash_image().data[TABLE_OFFSET:TABLE_OFFSET + len(table)] = table
    server.run_server(port, lifetime, CHIP, BIND, port_file=str(port_file))


def _alive(pid: int) -> bool:
    """True while `pid` is a mock board this module started (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True                   # no /proc (not Linux): trust the pid
    return _MODULE.encode() in cmdline


def status(state: Path) -> MockBoard | None:
    try:
        data = json.loads(state.read_text())
        board = MockBoard(int(data["pid"]), int(data["port"]), str(data["log"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return board if _alive(board.pid) else None


def start(state: Path, *, blank: bool = False, lifetime: float | None = None,
          wait: float = 15.0) -> tuple[MockBoard, bool]:
    """Start a mock board in the background; (the board, False) when one was already running."""
    running = status(state)
    if running:
        return running, False
    _server()                                   # say what is missing before forking
    state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    port_file, log_path = state.with_suffix(".port"), state.with_suffix(".log")
    port_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", _MODULE, "--port-file", str(port_file)]
    command += ["--blank"] if blank else []
    command += ["--lifetime", str(lifetime)] if lifetime else []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + wait
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            said = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise MockError("the mock board did not start" + (": " + " / ".join(said) if said else ""))
        time.sleep(0.05)
    board = MockBoard(proc.pid, int(port_file.read_text()), str(log_path))
    port_file.unlink(missing_ok=True)
    state.write_text(json.dumps({"pid": board.pid, "port": board.port, "url": board.url, "log": board.log,
                                 "blank": blank}) + "\n")
    return board, True


def stop(state: Path, wait: float = 5.0) -> MockBoard | None:
    """Stop the mock board recorded in `state`; None when none was running."""
    board = status(state)
    state.unlink(missing_ok=True)
    if board is None:
        return None
    os.kill(board.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while _alive(board.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(board.pid):
        os.kill(board.pid, signal.SIGKILL)
    return board


def run_foreground(*, blank: bool, say, show_url) -> None:
    """Run in this process, printing the URL once it listens; Ctrl-C stops it."""
    with tempfile.TemporaryDirectory(prefix="ruview-mock-") as folder:
        port_file = Path(folder, "port")

        def announce() -> None:
            while not (port_file.exists() and port_file.read_text().strip()):
                time.sleep(0.05)
            show_url(f"socket://{BIND}:{int(port_file.read_text())}")
            say("Ctrl-C stops it")

        threading.Thread(target=announce, daemon=True).start()
        serve(port_file, blank=blank)


def main(argv: list[str] | None = None) -> None:
    """The background process `start` runs (python -m firmware_tools.mock_node)."""
    parser = argparse.ArgumentParser(prog="python -m firmware_tools.mock_node")
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--blank", action="store_true")
    parser.add_argument("--lifetime", type=float)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(args.port_file, blank=args.blank, lifetime=args.lifetime)
    except MockError as exc:
        print(f"ruview-node mock-board: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
