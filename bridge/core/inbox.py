"""An inbox: a bounded queue of calls, its timers, and the one worker thread that runs them in order.

Each extension has its own inbox, and the core has one (`mqtt-handlers`).
MQTT messages for an extension's subscriptions, its bus events, node changes,
session callbacks, service calls and timers all arrive here, so a slow or
failing feature stalls only itself: never paho's network thread, never the
node pipeline, never another feature — and the feature's own state is only
ever touched by this one thread, so it needs no locks.

Putting never blocks: a full inbox drops the call and counts it (`dropped` in
bridge/health). Timers are a heap the worker waits on, not a thread each.

With thread checks on (`RUVIEW_CHECK_THREADS=1`, which the test suite sets),
`assert_on()` records and raises when code meant for an inbox runs on another
thread: the rule above is checked, not hoped for.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable

from bridge.core.supervisor import Supervised, Supervisor

log = logging.getLogger(__name__)

def _STOP() -> None:
    """Put by stop(): the worker returns when it comes to it."""
CHECK_THREADS = os.environ.get("RUVIEW_CHECK_THREADS", "") not in ("", "0")
violations: list[str] = []  # what the thread check caught, for the test suite to fail on


class OffInbox(AssertionError):
    """A call meant for an inbox ran on another thread (raised only with thread checks on)."""


class Timer:
    """A call the inbox runs once its time has come, unless cancelled first."""

    __slots__ = ("due", "fn", "args", "cancelled")

    def __init__(self, due: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.due, self.fn, self.args, self.cancelled = due, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class Inbox:
    def __init__(self, name: str, supervisor: Supervisor, max_queue: int = 10000) -> None:
        self.name = name
        self._supervisor = supervisor
        self._max_queue = max_queue
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._worker: Supervised | None = None
        self._busy = False  # the worker is running a call
        self._stopped = False  # stop() was called: calls put now would never run
        self.dropped = 0
        self.handled = 0
        self.errors = 0

    def start(self) -> "Inbox":
        if self._worker is None:
            self._stop.clear()
            self._stopped = False
            self._worker = self._supervisor.spawn(self.name, self._run, self._stop)
        return self

    def put(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue fn(*args) for the worker; False (and counted) when the inbox is full or stopped."""
        with self._wake:
            if len(self._calls) >= self._max_queue or self._stopped:
                self.dropped += 1
                return False
            self._calls.append((fn, args))
            self._wake.notify()
        return True

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Run fn(*args) on the worker after `delay` seconds; `.cancel()` the result to call it off."""
        timer = Timer(time.monotonic() + max(0.0, delay), fn, args)
        with self._wake:
            heapq.heappush(self._timers, (timer.due, next(self._order), timer))
            self._wake.notify()
        return timer

    @property
    def backlog(self) -> int:
        return len(self._calls)

    @property
    def timers(self) -> int:
        with self._wake:
            return sum(1 for _, _, t in self._timers if not t.cancelled)

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def on_worker(self) -> bool:
        return self._worker is not None and self._worker.thread is threading.current_thread()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running (timers not yet due do not count)."""
        with self._wake:
            return not self._calls and not self._busy

    def assert_on(self, what: str) -> None:
        """With thread checks on, fail loudly when `what` runs on any thread but this worker."""
        if CHECK_THREADS and self._worker is not None and not self.on_worker:
            message = (f"{what} ran on thread {threading.current_thread().name!r}, "
                       f"not on its inbox {self.name!r}")
            violations.append(message)
            raise OffInbox(message)

    def stop(self, timeout: float = 2.0) -> None:
        """Run what is queued (not the timers still waiting), then stop the worker."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._stop.set()
        with self._wake:
            self._stopped = True
            self._calls.append((_STOP, ()))
            self._timers.clear()
            self._wake.notify()
        worker.join(timeout)
        self._supervisor.forget(worker)

    def _next(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        with self._wake:
            self._busy = False
            while True:
                timers = self._timers
                while timers and timers[0][2].cancelled:
                    heapq.heappop(timers)
                now = time.monotonic()
                if timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    self._busy = True
                    return timer.fn, timer.args
                if self._calls:
                    self._busy = True
                    return self._calls.popleft()
                self._wake.wait(timers[0][0] - now if timers else None)

    def _run(self) -> None:
        while True:
            fn, args = self._next()
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
                "errors": self.errors, "timers": self.timers}
