"""An inbox: a bounded queue of calls, its timers, and the one worker thread that runs them in order.

Each extension has its own inbox, and the core has one (`mqtt-handlers`).
MQTT messages for an extension's subscriptions, its bus events, node changes,
session callbacks, service calls and timers all arrive here, so a slow or
failing feature stalls only itself: never paho's network thread, never the
node pipeline, never another feature — and the feature's own state is only
ever touched by this one thread, so it needs no locks.

Putting never blocks: a full inbox drops the call and counts it (`dropped` in
bridge/health) — unless its owner gave it `patience`, a bounded wait for room that a plugin's
inbox uses as back-pressure (see `put`). Timers are a heap the worker waits on, not a thread each.
A put wakes the worker only when it sleeps: one that is busy finds the call when it looks next.
With `linger`, a worker whose calls stream in does not sleep between them: it looks again every
`linger` seconds (for LINGER_LOOKS looks) and so is not woken for each, which costs the putting
thread — paho's network thread, say — a wake-up call and a context switch per message.

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


LINGER_LOOKS = 20  # with `linger`, the worker goes to sleep after this many looks found nothing


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
        self._lock = threading.Lock()  # guards the queue, the timers and the flags below
        # The worker sleeps on the bell (a plain lock, held while nobody rings); a put rings it only
        # when the worker is asleep, so a busy worker costs a producer no wake-up call.
        self._bell = threading.Lock()
        self._bell.acquire()
        self._asleep = False
        self._room = threading.Condition(self._lock)  # producers waiting for room (see `patience`)
        self._room_waiters = 0
        self._stop = threading.Event()
        self._worker: Supervised | None = None
        self._busy = False  # the worker is running a call
        self._stopped = False  # stop() was called: calls put now would never run
        # Back-pressure, for an owner that asks for it (see `put`): 0 patience never waits.
        self.patience = 0.0  # CPU seconds a put may wait for room while the worker finishes no call
        self.wait_cap = 0.0  # seconds a put waits for room at most, however it goes
        self.fast_call = 0.0  # ... and only while the worker's calls take at most this much CPU each
        self.call_cpu = 0.0  # the worker's CPU seconds per call, smoothed (sampled with patience; until a
        # call was measured the worker counts as fast, so a slow one is waited for once, while its
        # first call runs)
        self.linger = 0.0  # seconds between looks for more while calls stream in (0: sleep until rung)
        self._last_call = 0.0  # when the worker last found a call queued
        self.behind = False  # a wait for room ran out: no more waits until the queue is half empty
        self.dropped = 0
        self.waited = 0  # puts that found the queue full and waited for room
        self.handled = 0
        self.errors = 0

    def start(self) -> "Inbox":
        if self._worker is None:
            self._stop.clear()
            self._stopped = False
            self._worker = self._supervisor.spawn(self.name, self._run, self._stop)
        return self

    def put(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue fn(*args) for the worker; False (and counted) when the inbox is full or stopped.

        With `patience`, a put from another thread that finds the queue full waits for the worker
        to work it down by an eighth if the worker is fast: its calls take at most `fast_call`
        seconds of CPU each. That is back-pressure for a worker that keeps up but was out-run for a
        moment (descheduled, or out-competed for the GIL by the putting thread and others): the
        put gives it the time instead of dropping. The wait ends when the worker finished no call
        while this process had `patience` seconds of CPU (a worker stuck in a long call; a machine
        busy with other processes does not count against it), and after `wait_cap` seconds in
        all; one that ends so marks the inbox `behind`: no more waits until the worker has worked
        the queue down to half.
        A slow worker is never waited for, so it cannot pace the thread that puts."""
        with self._lock:
            if len(self._calls) >= self._max_queue or self._stopped:
                if self._stopped or not self._wait_for_room():
                    self.dropped += 1
                    return False
            self._calls.append((fn, args))
            if self._asleep:
                self._asleep = False
                self._bell.release()
        return True

    def _wait_for_room(self) -> bool:
        """With the lock held and the queue full: True once there is room, False when this put
        may not wait (no patience, the worker is behind or not running, or it is the caller)."""
        if not self.patience or self.behind or self.call_cpu > self.fast_call or self._worker is None \
                or self.on_worker:
            return False
        patience = self.patience
        until = time.monotonic() + max(patience, self.wait_cap)
        done, cpu = self.handled + self.errors, time.process_time()
        self._room_waiters += 1
        self.waited += 1
        try:
            while len(self._calls) > self._low_water():
                if self.handled + self.errors != done:  # it is getting through them
                    done, cpu = self.handled + self.errors, time.process_time()
                left = until - time.monotonic()
                if left <= 0 or self._stopped or time.process_time() - cpu >= patience:
                    if len(self._calls) >= self._max_queue or self._stopped:
                        self.behind = True
                        return False
                    return True
                self._room.wait(min(left, patience / 4))
        finally:
            self._room_waiters -= 1
        return True

    def _low_water(self) -> int:
        """Where a put that waited for room goes on: an eighth of the queue free."""
        return self._max_queue - max(1, self._max_queue >> 3)

    def _ring(self) -> None:
        """Wake the worker if it sleeps (the lock is held)."""
        if self._asleep:
            self._asleep = False
            self._bell.release()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Run fn(*args) on the worker after `delay` seconds; `.cancel()` the result to call it off."""
        timer = Timer(time.monotonic() + max(0.0, delay), fn, args)
        with self._lock:
            heapq.heappush(self._timers, (timer.due, next(self._order), timer))
            self._ring()
        return timer

    @property
    def backlog(self) -> int:
        return len(self._calls)

    @property
    def timers(self) -> int:
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            self._stopped = True
            self._calls.append((_STOP, ()))
            self._timers.clear()
            self._room.notify_all()
            self._ring()
        worker.join(timeout)
        self._supervisor.forget(worker)

    def _next(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """The next call to run: a timer whose time has come, else the oldest queued call; sleeps
        on the bell while there is neither."""
        lock, calls, timers = self._lock, self._calls, self._timers
        lock.acquire()
        try:
            self._busy = False
            while True:
                while timers and timers[0][2].cancelled:
                    heapq.heappop(timers)
                now = time.monotonic()
                if timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    self._busy = True
                    return timer.fn, timer.args
                if calls:
                    self._busy = True
                    call = calls.popleft()
                    if self._room_waiters and len(calls) <= self._low_water():
                        self._room.notify_all()
                    if self.behind and len(calls) <= self._max_queue >> 1:
                        self.behind = False
                    if self.linger:
                        self._last_call = now
                    return call
                if self.linger and now - self._last_call < LINGER_LOOKS * self.linger:
                    lock.release()  # calls are streaming in: look again soon, and nobody need ring
                    try:
                        time.sleep(self.linger)
                    finally:
                        lock.acquire()
                    continue
                self._asleep = True
                lock.release()
                try:
                    self._bell.acquire(True, timers[0][0] - now if timers else -1)
                finally:
                    lock.acquire()
                if self._asleep:  # nobody rang: a timer is due
                    self._asleep = False
                else:  # rung: if the wait ended by its timeout meanwhile, the ring is still to take
                    self._bell.acquire(False)
        finally:
            lock.release()

    def _run(self) -> None:
        while True:
            fn, args = self._next()
            if fn is _STOP:
                return
            # the first call (the owner's start) is not measured; then the next seven, then one in
            # eight (the clock is a system call)
            handled = self.handled
            measure = self.patience and handled and (handled < 8 or not handled & 7)
            if measure:
                began = time.thread_time()
            try:
                fn(*args)
                self.handled += 1
            except Exception:  # one failing call must not stop the others
                self.errors += 1
                log.exception("%s: %s failed", self.name, getattr(fn, "__qualname__", fn))
            if measure:  # one long call (a garbage collection in it, say) counts as twice fast_call at most
                took = min(time.thread_time() - began, 2 * self.fast_call)
                self.call_cpu = took if handled == 1 else self.call_cpu + (took - self.call_cpu) * 0.125

    def stats(self) -> dict[str, int]:
        return {"backlog": self.backlog, "dropped": self.dropped, "handled": self.handled,
                "errors": self.errors, "timers": self.timers}
