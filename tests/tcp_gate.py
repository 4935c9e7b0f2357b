"""A loopback TCP forwarder the test can shut, to decide when a client may reconnect.

The fault tests kill the broker under the bridge; to check that every change
arrives, the test's own subscriber must be back before the bridge flushes its
outbox. The bridge therefore reaches the broker through this gate, which the
test keeps shut until its subscriber is ready.
"""

from __future__ import annotations

import socket
import threading

from tests.brokers import free_port


class TcpGate:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.is_open = threading.Event()
        self.is_open.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def shut(self) -> None:
        """Refuse new connections and cut the current ones."""
        self.is_open.clear()
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()

    def open(self) -> None:
        self.is_open.set()

    def close(self) -> None:
        self._running = False
        self.shut()
        self._server.close()

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self.is_open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
