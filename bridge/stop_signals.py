"""SIGINT and SIGTERM stop the bridge whichever of its threads the kernel delivers them to.

The kernel may deliver a signal sent to the process to any of its threads. Python runs its
handler only when the main thread next runs Python code, and `ruview-bridge run`'s main
thread waits without a timeout until the bridge stops or restarts. A SIGTERM that landed on
the UDP ingest thread or the health thread was therefore never acted on, and `systemctl stop`
hung until systemd's SIGKILL. CPython's C-level handler writes every signal it catches to the
wakeup fd, on whichever thread caught it. A thread of our own reads that fd and calls back at
once.
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import Callable

from bridge.core.supervisor import name_os_thread

STOP = (signal.SIGINT, signal.SIGTERM)


def on_stop_signals(callback: Callable[[], None]) -> None:
    """Call `callback` for every SIGINT or SIGTERM, from the main thread or from a thread of
    its own (so it must be safe to call twice, and from any thread). Call once, from the main
    thread."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for sig in STOP:
        signal.signal(sig, lambda *_: callback())
    stop_bytes = {int(sig) for sig in STOP}

    def read(reader: socket.socket, writer: socket.socket) -> None:  # holds both open for good
        name_os_thread("stop-signals")
        while True:
            try:
                caught = reader.recv(64)
            except OSError:  # the main thread's handler still works
                return
            if stop_bytes.intersection(caught):
                callback()

    threading.Thread(target=read, args=(reader, writer), name="stop-signals", daemon=True).start()
