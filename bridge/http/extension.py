"""The sensing HTTP API as an extension: the seed's endpoints for MCP agents, the event stream,
and the status page, all from the node directory — the same gated state MQTT publishes."""

from __future__ import annotations

import errno
import threading
from collections import deque
from typing import Any

from bridge.core.directory import NodeChange, NodeEvent, NodeInfo
from bridge.extension import Extension, ExtensionContext
from bridge.http import views
from bridge.http.config import HttpConfig
from bridge.http.server import Api, HttpServer
from bridge.http.stream import Stream

RECENT_EVENTS = 50
STATE_COALESCE = 0.25  # seconds: a node's state on the stream at most this often (it changes per frame)


def _cannot_listen(bind: str, port: int, exc: RuntimeError) -> str:
    """The server's error in the words an operator acts on: what, why, which key."""
    cause = exc.__context__
    why = {errno.EADDRINUSE: ("address in use", "set http.port"),
           errno.EACCES: ("permission denied", "set http.port to 1024 or above"),
           errno.EADDRNOTAVAIL: ("not an address of this host", "set http.bind")}.get(
        getattr(cause, "errno", None) or 0)
    if why is None:
        return str(exc)
    return f"cannot listen on {bind}:{port}: {why[0]}; {why[1]}"


class HttpExtension(Extension[HttpConfig]):
    name = "http"
    Config = HttpConfig

    def start(self, ctx: ExtensionContext[HttpConfig]) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.config
        self.topics = ctx.topics
        self._lock = threading.Lock()
        self._latest: dict[int, dict[str, dict[str, Any]]] = {}  # node id -> event type -> event
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._dirty: dict[int, NodeInfo] = {}  # node states changed since the stream's last flush
        self.directory = ctx.nodes
        self.stream = Stream()
        self.api = Api(self, cfg, self.stream)
        self.server = HttpServer(self.api.app(), cfg.bind, cfg.port, cfg.access_log)
        self._serving = False
        try:
            self.server.start()  # a port that is taken fails this extension's start, and only it
        except RuntimeError as exc:
            raise RuntimeError(_cannot_listen(cfg.bind, cfg.port, exc)) from None
        self._serving = True
        ctx.log.info("sensing HTTP API and status page on http://%s:%d/%s", cfg.bind, self.server.port,
                     " (bearer token required)" if cfg.token is not None else "")
        ctx.nodes.watch(self._on_node)
        ctx.nodes.watch_events(self._on_event)
        ctx.add_info("http", lambda: {"url": f"http://{cfg.bind}:{self.server.port}/",
                                      "token_required": cfg.token is not None})
        ctx.add_health("http", lambda: {"stream_clients": self.stream.clients, "stream_dropped": self.stream.dropped,
                                        "rate_limited": self.api.limiter.refused,
                                        "unauthorized": self.api.unauthorized, **self.api.edge.stats()})

    def stop(self) -> None:
        if getattr(self, "_serving", False):  # after a failed start its loop is stopped already
            self._serving = False
            self.server.stop()

    # ------------------------------------------------------------ what the server reads (any thread)

    def nodes(self) -> list[NodeInfo]:
        """Every node, sorted by id (a copy: the pipeline goes on writing)."""
        return self.ctx.nodes.all()

    def bridge_health(self) -> dict[str, Any]:
        return self.ctx.bridge_health()

    def modules(self) -> list[dict[str, Any]]:
        return self.ctx.modules.all()

    def latest_events(self, node_id: int) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._latest.get(node_id, {}))

    def recent_events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent)

    def schedule_aware(self, node_id: int) -> bool:
        node = self.ctx.nodes.get(node_id)
        return bool(node and node.expected_hours)

    # ------------------------------------------------------------ live (on this extension's inbox)

    def _on_node(self, change: NodeChange) -> None:
        node = change.node
        if change.removed:
            self.server.call(self.stream.publish, "node_removed", node.name, {"node_id": node.node_id,
                                                                              "name": node.name})
            with self._lock:
                self._latest.pop(node.node_id, None)
                self._dirty.pop(node.node_id, None)
            return
        if not self.stream.clients:
            return
        with self._lock:
            first = not self._dirty
            self._dirty[node.node_id] = node
        if first:
            self.server.call_later(STATE_COALESCE, self._flush_states)

    def _flush_states(self) -> None:
        """On the server's loop: the newest state of each node that changed, once."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        for node in dirty.values():
            self.stream.publish("node_state", node.name, views.node_summary(node))

    def _on_event(self, event: NodeEvent) -> None:
        item = {"node_id": event.node.node_id, "room": event.node.room, **event.event}
        with self._lock:
            self._latest.setdefault(event.node.node_id, {})[event.event["event_type"]] = dict(event.event)
            self._recent.appendleft(item)
        self.server.call(self.stream.publish, "node_event", event.node.name, item)
