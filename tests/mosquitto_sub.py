"""mosquitto_sub as the tests run it: its output read as it comes, and stopped by SIGKILL only.

mosquitto_sub 2.0 answers SIGTERM, SIGINT and the alarm behind its own -W by calling
libmosquitto from the signal handler. If the signal lands while the library holds a lock (it
takes one for every packet it logs), the handler waits on that lock forever and the process
never exits (eclipse-mosquitto/mosquitto#3175). A fresh-clone CI run of tests/test_readme.py
hung that way on the SIGTERM meant to end its subscriber. So a subscriber here is never sent
those signals and never given -W. It ends on its own by -C or --retained-only, or it is killed
with SIGKILL. Killing it loses nothing: mosquitto_sub flushes each message as it prints it.

`confirm=True` adds -d, so the test can wait for the broker's SUBACK instead of sleeping
before it publishes. The debug lines that -d prints are kept out of `messages`; mosquitto_sub
does not flush them, so it then runs under coreutils' `stdbuf -oL`.

Standard library only: tests/test_readme.py's driver imports it under Debian's bare python3.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

_DEBUG_LINE = re.compile(r"Client \S+ (sending|received) [A-Z]+|Subscribed \(mid: \d+\)")


class MosquittoSub:
    """One mosquitto_sub process. Use it as a context manager: leaving the block kills it."""

    def __init__(self, command: str | Sequence[str], *, confirm: bool = False) -> None:
        args = shlex.split(command) if isinstance(command, str) else list(command)
        if not args or os.path.basename(args[0]) != "mosquitto_sub":
            raise ValueError(f"not a mosquitto_sub command: {command!r}")
        if "-W" in args:
            raise ValueError("-W ends mosquitto_sub with a signal, which can hang it; wait, then kill()")
        self._confirm = confirm
        self._messages: list[str] = []
        self._subscribed = False
        self._changed = threading.Condition()
        if confirm:  # -d's lines are printf'd unflushed: line-buffer stdout, or the SUBACK waits in it
            args = ["stdbuf", "-oL", *args, "-d"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="mosquitto_sub-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self._changed:
                if not self._confirm or not _DEBUG_LINE.match(line):
                    self._messages.append(line)
                elif " received SUBACK" in line:
                    self._subscribed = True
                self._changed.notify_all()
        with self._changed:  # end of output: wake every waiter
            self._changed.notify_all()

    @property
    def messages(self) -> list[str]:
        """The lines printed so far, without -d's debug lines."""
        with self._changed:
            return list(self._messages)

    def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    return ready()
                self._changed.wait(left)
            return True

    def subscribed(self, timeout: float) -> bool:
        """True once the broker acknowledged the subscription (needs confirm=True)."""
        if not self._confirm:
            raise RuntimeError("subscribed() needs MosquittoSub(..., confirm=True)")
        return self._wait(lambda: self._subscribed, timeout)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        """True once predicate(messages so far) holds; False at the timeout or when it exited."""
        return self._wait(lambda: predicate(self._messages), timeout)

    def wait_exit(self, timeout: float) -> int | None:
        """Its exit code once it ended by itself (-C, --retained-only), None while it runs."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        return code

    def kill(self) -> list[str]:
        """SIGKILL (see the module's docstring for why never SIGTERM), then every line it printed."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.messages

    def __enter__(self) -> "MosquittoSub":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
