"""Supervised threads: a loop that raises is logged, counted and restarted, never lost.

Every long-running loop of the bridge (MQTT network, handler workers, UDP and
serial readers, the node ticker, health) runs under `Supervisor.spawn`. The
target runs until the stop event is set; if it raises, the error is logged
with its traceback once per crash, counted, and the target starts again after
a backoff that grows to `max_backoff` (and resets after a quiet minute).
`bridge/health` shows each thread's restarts and last error. The operating system sees each
thread under its name too (`top -H`, `ps -L`, /proc/<pid>/task/*/comm), so which loop costs
the CPU can be read from outside.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

QUIET_RESET = 60.0  # seconds without a crash after which the backoff starts small again
PR_SET_NAME = 15  # <linux/prctl.h>
OS_NAME_BYTES = 15  # Linux keeps 15 bytes of a thread's name; Python 3.14 cuts its own names there too


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` in the operating system as well (Linux; elsewhere nothing)."""
    if _libc is not None:
        _libc.prctl(PR_SET_NAME, name.encode()[:OS_NAME_BYTES], 0, 0, 0)


_libc = ctypes.CDLL(None) if sys.platform == "linux" else None  # libc, already loaded; no ldconfig run at start


@dataclass
class Supervised:
    name: str
    stop: threading.Event
    thread: threading.Thread | None = None
    restarts: int = 0
    last_error: str | None = None
    _owner: "Supervisor | None" = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {"alive": self.alive, "restarts": self.restarts, "last_error": self.last_error}


Spawn = Callable[[str, Callable[[], None], threading.Event], Supervised]


class Supervisor:
    def __init__(self, min_backoff: float = 0.1, max_backoff: float = 5.0) -> None:
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self._threads: dict[str, Supervised] = {}
        self._lock = threading.Lock()

    def spawn(self, name: str, target: Callable[[], None], stop: threading.Event) -> Supervised:
        """Run target() on a daemon thread until `stop` is set, restarting it when it raises."""
        handle = Supervised(name, stop, _owner=self)
        with self._lock:
            self._threads[name] = handle
        handle.thread = threading.Thread(target=self._run, args=(handle, target), name=name, daemon=True)
        handle.thread.start()
        return handle

    def forget(self, handle: Supervised) -> None:
        with self._lock:
            if self._threads.get(handle.name) is handle:
                del self._threads[handle.name]

    def _run(self, handle: Supervised, target: Callable[[], None]) -> None:
        name_os_thread(handle.name)
        backoff, last_crash = self.min_backoff, 0.0
        while not handle.stop.is_set():
            try:
                target()
            except Exception as exc:  # the whole point: no loop dies of one bad input
                handle.restarts += 1
                handle.last_error = f"{type(exc).__name__}: {exc}"[:300]
                now = time.monotonic()
                if now - last_crash > QUIET_RESET:
                    backoff = self.min_backoff
                last_crash = now
                log.exception("thread %s failed (restart %d in %.1f s)", handle.name, handle.restarts,
                              backoff)
                handle.stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if not handle.stop.is_set():
                log.warning("thread %s returned while the bridge runs; starting it again", handle.name)
                handle.stop.wait(self.min_backoff)

    def threads(self) -> list[Supervised]:
        with self._lock:
            return list(self._threads.values())

    def stats(self) -> dict[str, Any]:
        return {h.name: h.stats() for h in self.threads()}
