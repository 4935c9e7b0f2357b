"""The bridge's log on MQTT: every record at or above the bridge's level, as JSON on `<base>/bridge/log`.

Zigbee2MQTT's `bridge/logging`, with three rules of ours:

- **Never block the thread that logs.** `emit` (on whichever thread logged: the node pipeline,
  paho's network thread, an inbox) only formats the line, masks secrets and appends it to a
  bounded queue; the core's inbox publishes the queue. A full queue drops and counts.
- **Never recurse.** A record logged while a log line is being published, on the thread that
  publishes it (the MQTT path saying something about that very publish), is dropped: publishing
  it would log again, and again.
- **A rate cap.** At most `RATE` lines a second (bursts of twice that) reach MQTT; what is over
  is counted and said in one `"N lines dropped"` record once the flood is over.

Secrets are masked as on the console (console.SecretMask), before the line leaves the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable

from bridge.core.payload import dumps
from bridge.core.rate import TokenBucket

RATE = 20.0  # lines a second on MQTT (bursts of 40)
QUEUE = 1000  # lines waiting for the inbox at most
REPORT_AFTER = 1.0  # seconds after the first dropped line that the drops are said


class MqttLogHandler(logging.Handler):
    """Queue each record for `publish(payload)`, which `schedule(fn)` runs on the core's inbox."""

    def __init__(self, publish: Callable[[bytes], Any], schedule: Callable[[Callable[[], None]], bool],
                 call_later: Callable[[float, Callable[[], None]], Any], level: int | str,
                 secrets: list[str], rate: float = RATE) -> None:
        super().__init__(level)
        self._publish, self._schedule, self._call_later = publish, schedule, call_later
        self._secrets = [s for s in secrets if len(s) >= 3]
        self._bucket = TokenBucket(rate)
        self._queue: deque[bytes] = deque()
        self._guard = threading.Lock()  # the queue, the bucket and the counters; held for microseconds
        self._local = threading.local()  # .publishing: this thread is publishing a log line now
        self._scheduled = False  # a flush is on the inbox
        self._report_due = False  # a "lines dropped" report is on the inbox's timers
        self.published = 0
        self.dropped = 0  # in all
        self._unsaid = 0  # dropped since the last report

    # ------------------------------------------------------------ the logging thread

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._local, "publishing", False):
            return  # logged by the act of publishing a log line: publishing it would recurse
        with self._guard:
            admitted = len(self._queue) < QUEUE and self._bucket.take()
            if not admitted:
                self.dropped += 1
                self._unsaid += 1
                report, self._report_due = not self._report_due, True
        if not admitted:  # over the cap: not even formatted
            if report:
                self._call_later(REPORT_AFTER, self._report)
            return
        try:
            payload = self._payload(record)
        except Exception:
            self.handleError(record)
            return
        with self._guard:
            self._queue.append(payload)
            schedule, self._scheduled = not self._scheduled, True
        if schedule and not self._schedule(self._flush):
            with self._guard:  # the inbox is full or stopped: the next line tries again
                self._scheduled = False

    def _payload(self, record: logging.LogRecord) -> bytes:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}: {exc}"
        return dumps(self._line(record.levelname.lower(), record.name, message, record.created))

    def _line(self, level: str, logger: str, message: str, created: float) -> dict[str, Any]:
        for secret in self._secrets:
            if secret in message:
                message = message.replace(secret, "***")
        return {"level": level, "logger": logger, "message": message,
                "time": datetime.fromtimestamp(created, timezone.utc).isoformat()}

    # ------------------------------------------------------------ the core's inbox

    def _flush(self) -> None:
        with self._guard:
            lines, self._queue = list(self._queue), deque()
            self._scheduled = False
        self._send(lines)

    def _report(self) -> None:
        with self._guard:
            unsaid, self._unsaid, self._report_due = self._unsaid, 0, False
        if unsaid:
            self._send([dumps(self._line(
                "warning", __name__, f"{unsaid} log line{'s' if unsaid != 1 else ''} dropped "
                f"(more than {self._bucket.rate:g} a second, or the queue was full)", time.time()))])

    def _send(self, lines: list[bytes]) -> None:
        self._local.publishing = True
        try:
            for payload in lines:
                if self._publish(payload):
                    self.published += 1
        except Exception:
            pass  # the MQTT path failed: saying so here would recurse, and its own log says it
        finally:
            self._local.publishing = False

    def stats(self) -> dict[str, int]:
        return {"published": self.published, "dropped": self.dropped}
