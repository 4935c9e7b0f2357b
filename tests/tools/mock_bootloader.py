"""Run esp32-mock-bootloader as its own process, with the receive timeout read_flash needs.

Upstream 0.3.0 waits 50 ms for the host's next SLIP frame, which esptool 5.6 exceeds
while acknowledging READ_FLASH blocks; 2 s fixes it (see reference/esp32-flashing.md).
Usage: python -m tests.tools.mock_bootloader PORT_FILE [CHIP]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    import esp32_mock_bootloader.server as server

    server._CLIENT_RECV_TIMEOUT = 2.0
    server.run_server(0, chip_mode=sys.argv[2] if len(sys.argv) > 2 else "esp32c6",
                      port_file=sys.argv[1])


class MockBootloader:
    """A mock ROM bootloader process on a free loopback port; flash survives reconnects."""

    def __init__(self, chip: str = "esp32c6") -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="ruview-mock-")
        port_file = Path(self._dir.name, "port")
        root = Path(__file__).resolve().parents[2]
        self.log = open(Path(self._dir.name, "mock.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.tools.mock_bootloader",
                                      str(port_file), chip], cwd=root,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 15
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mock bootloader did not start: " + Path(self.log.name).read_text())
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.url = f"socket://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self._dir.cleanup()


if __name__ == "__main__":
    main()
