"""The outbox on disk: QoS >= 1 messages queued while the broker is away survive a crash.

The outbox (outbox.py) lives in memory; this keeps a copy of each message it holds in the state
store (bridge/core/store.py) until the broker acknowledged it, so a bridge killed with messages
queued sends them at its next start, in order, before anything new.

Disk work never runs on the network thread nor on a publisher's: `keep` and `taken` only append to
a list; the writer, an inbox of its own, commits what gathered in one transaction (one fsync for a
burst). A message the store cannot keep (full disk, read-only directory) stays in memory as before,
is counted (`unsaved`) and said once per outage of the store, not once per message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from bridge.core.inbox import Inbox
from bridge.core.store import StateStore, StoreError
from bridge.core.supervisor import Supervisor
from bridge.mqtt.outbox import Outgoing

log = logging.getLogger(__name__)

BATCH = 500  # messages per transaction at most: a commit stays short (measured in stats: commit_ms_max)
SAVING = 0  # Outgoing.row while its insert is pending
TAKEN = -1  # Outgoing.row of a message the broker took (or that was dropped) before its insert committed


class OutboxKeeper:
    """Writes held messages to the store, forgets them once taken; reads an earlier run's back."""

    def __init__(self, store: StateStore, supervisor: Supervisor) -> None:
        self.store = store
        self._inbox = Inbox("mqtt-outbox", supervisor)
        self._lock = threading.Lock()
        self._unsaved: list[Outgoing] = []
        self._forget: list[int] = []
        self._scheduled = False
        self._told: str | None = None  # the store's trouble we said already
        self.saved = 0
        self.unsaved = 0  # messages the store refused: kept in memory only (lost on a crash)
        self.commits = 0
        self.commit_max = 0.0  # seconds: the longest commit (the writer's, never the network thread's)

    def start(self) -> None:
        self._inbox.start()

    def stop(self) -> None:
        """Commit what is pending, then stop the writer."""
        self._inbox.stop(timeout=10.0)

    def earlier(self) -> list[Outgoing]:
        """What an earlier run queued and the broker never took, oldest first. Not from a store that
        cannot be written: sent, they could not be forgotten and would go again at every start (and
        the directory may be another running bridge's: its messages are its own to send)."""
        try:
            rows = self.store.outbox_pending()
        except Exception as exc:  # a damaged file: the store said so at open; start without them
            log.error("could not read the messages an earlier run queued from %s: %s", self.store.path, exc)
            return []
        if rows and self.store.problem is not None:
            log.warning("%d message(s) an earlier run queued stay in %s until it can be written", len(rows),
                        self.store.path)
            return []
        return [Outgoing(q.topic, q.payload, q.qos, q.retain, row=q.row) for q in rows]

    def keep(self, out: Outgoing) -> None:
        """Save a held message (any thread; no disk work here)."""
        if out.qos == 0 or out.row is not None:
            return
        with self._lock:
            out.row = SAVING
            self._unsaved.append(out)
            self._schedule()

    def taken(self, out: Outgoing) -> None:
        """The broker acknowledged the message, or it was dropped: its row goes (any thread)."""
        row = out.row
        if row is None or row == TAKEN:
            return
        with self._lock:
            if out.row == SAVING:
                out.row = TAKEN  # the writer deletes it right after inserting it
            elif out.row is not None and out.row > 0:
                self._forget.append(out.row)
                out.row = None
                self._schedule()

    def _schedule(self) -> None:
        """Caller holds the lock: one write queued at a time gathers everything until it runs."""
        if not self._scheduled:
            self._scheduled = True
            self._inbox.put(self._write)

    def _write(self) -> None:
        with self._lock:
            batch, self._unsaved = self._unsaved[:BATCH], self._unsaved[BATCH:]
            forget, self._forget = self._forget, []
            self._scheduled = False
            if self._unsaved:
                self._schedule()
        if batch:
            self._insert(batch, forget)
        if forget:
            self._commit(lambda: self.store.outbox_remove(forget), "forget acknowledged messages")

    def _insert(self, batch: list[Outgoing], forget: list[int]) -> None:
        rows: list[int] = []
        ok = self._commit(lambda: rows.extend(self.store.outbox_add(
            [(m.topic, m.payload, m.qos, m.retain) for m in batch])), "keep queued messages")
        with self._lock:
            for n, out in enumerate(batch):
                if not ok:
                    out.row = None
                elif out.row == TAKEN:
                    forget.append(rows[n])
                    out.row = None
                else:
                    out.row = rows[n]
        if ok:
            self.saved += len(batch)
        else:
            self.unsaved += len(batch)

    def _commit(self, write: Any, what: str) -> bool:
        began = time.perf_counter()
        try:
            write()
        except StoreError as exc:
            if self._told is None:
                self._told = str(exc)
                log.error("MQTT outbox: could not %s on disk (%s); they wait in memory only and are lost "
                          "if the bridge stops before the broker takes them", what, exc)
            return False
        spent = time.perf_counter() - began
        self.commits += 1
        self.commit_max = max(self.commit_max, spent)
        if self._told is not None:
            log.info("MQTT outbox: the state store keeps queued messages again")
            self._told = None
        return True

    def stats(self) -> dict[str, Any]:
        return {"saved": self.saved, "unsaved": self.unsaved, "commits": self.commits,
                "commit_ms_max": round(self.commit_max * 1000, 2)}
