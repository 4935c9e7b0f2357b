"""An inbox: a bounded queue of calls and the one worker thread that runs them in order.

Each extension has its own inbox, and the core has one (`mqtt-handlers`).
MQTT messages for an extension's subscriptions, its bus events, node changes,
session callbacks and timers all arrive here, so a slow or failing feature
stalls only itself: never paho's network thread, never the node pipeline,
never another feature. Putting never blocks: a full inbox drops the call and
counts it (`dropped` in bridge/health).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from bridge.core.supervisor import Supervised, Supervisor

log = logging.getLogger(__name__)

_STOP = object()


class Inbox:
    def __init__(self, name: str, supervisor: Supervisor, max_queue: int = 10000) -> None:
        self.name = name
        self._supervisor = supervisor
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._worker: Supervised | None = None
        self.dropped = 0
        self.handled = 0
        self.errors = 0

    def start(self) -> "Inbox":
        if self._worker is None:
            self._stop.clear()
            self._worker = self._supervisor.spawn(self.name, self._run, self._stop)
        return self

    def put(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue fn(*args) for the worker; False (and counted) when the inbox is full."""
        try:
            self._queue.put_nowait((fn, args))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    @property
    def on_worker(self) -> bool:
        return self._worker is not None and self._worker.thread is threading.current_thread()

    def stop(self, timeout: float = 2.0) -> None:
        """Run what is queued, then stop the worker (waits up to timeout)."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._stop.set()
        try:
            self._queue.put((_STOP, ()), timeout=timeout)
        except queue.Full:
            pass
        worker.join(timeout)
        self._supervisor.forget(worker)

    def _run(self) -> None:
        while True:
            fn, args = self._queue.get()
            if fn is _STOP:
                return
            try:
                fn(*args)
                self.handled += 1
            except Exception:  # one failing call must not stop the others
                self.errors += 1
                log.exception("%s: %s failed", self.name, getattr(fn, "__qualname__", fn))

    def stats(self) -> dict[str, int]:
        return {"backlog": self.backlog, "dropped": self.dropped, "handled": self.handled,
                "errors": self.errors}
