"""An asyncio loop on a daemon thread of its own, for the parts that are asyncio servers (the
embedded broker, the HTTP API, HomeKit) inside a bridge whose core is threads.

`start(setup)` runs the loop and then `setup()` on it, and raises what setup raised (a port that is
taken) in the caller; `stop(teardown)` runs `teardown()` there, then stops the loop and joins.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Coroutine

from bridge.core.supervisor import name_os_thread


class LoopThread:
    def __init__(self, name: str, loop: asyncio.AbstractEventLoop | None = None,
                 exception_handler: Callable[[asyncio.AbstractEventLoop, dict], None] | None = None) -> None:
        self.name = name
        self.loop = loop or asyncio.new_event_loop()
        if exception_handler is not None:
            self.loop.set_exception_handler(exception_handler)
        self._thread: threading.Thread | None = None

    def start(self, setup: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 10.0) -> Any:
        def run() -> None:
            name_os_thread(self.name)
            asyncio.set_event_loop(self.loop)
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(setup(), self.loop).result(timeout)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
            raise

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn on the loop (from any thread); nothing once it is stopped."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.call_later, delay, fn, *args)

    def stop(self, teardown: Callable[[], Coroutine[Any, Any, Any]] | None = None, timeout: float = 5.0) -> bool:
        """Tear down and stop; False if teardown did not finish within timeout (stopped anyway)."""
        if self._thread is None:
            return True
        finished = True
        if teardown is not None:
            try:
                asyncio.run_coroutine_threadsafe(teardown(), self.loop).result(timeout)
            except Exception:
                finished = False
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        self._thread = None
        return finished
