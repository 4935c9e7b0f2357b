"""A loopback TCP link to the mock bootloader that loses the first flash write, like a cheap
USB-UART bridge garbling 460800 baud, so the flasher's fall back to 115200 can be tested.

The link swallows what the host sends from the first write on, so esptool times out
(a FatalError, as with garbled bytes). Cutting the link instead would raise
SerialException, which esptool's own write loop answers by reconnecting itself.
"""

from __future__ import annotations

import socket
import threading

# SLIP frame start + request direction + FLASH_BEGIN / FLASH_DEFL_BEGIN, and CHANGE_BAUDRATE.
# The link dies as the first write begins: the mock's flash is process-wide, and a deflate
# stream cut half-way would leave it in a state a reset real chip never has.
_WRITE_COMMANDS = (b"\xc0\x00\x02", b"\xc0\x00\x10")
CHANGE_BAUD = b"\xc0\x00\x0f"


class FlakyLink:
    def __init__(self, upstream_port: int, failures: int = 1) -> None:
        self.upstream_port = upstream_port
        self.failures = failures
        self.connections: list[bytearray] = []   # what the host sent on each connection
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                host, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            sent = bytearray()
            self.connections.append(sent)
            fail = len(self.connections) <= self.failures
            threading.Thread(target=self._pump, args=(host, upstream, sent, fail), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, host, None, False), daemon=True).start()

    @staticmethod
    def _pump(src, dst, record, fail) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    record += data
                    if fail and any(c in record for c in _WRITE_COMMANDS):
                        continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
