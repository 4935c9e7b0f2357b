"""The sensing HTTP API as an extension: the seed's endpoints for MCP agents, the event stream,
and the status page, all from the node directory — the same gated state MQTT publishes."""

from __future__ import annotations

import errno
import threading
import uuid
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson

from bridge.core.directory import NodeChange, NodeEvent, NodeInfo
from bridge.extension import Extension, ExtensionContext
from bridge.core.payload import PayloadError, parse_json
from bridge.http import views
from bridge.http.config import HttpConfig
from bridge.http.history import History
from bridge.http.server import Api, HttpServer
from bridge.http.stream import Stream
from bridge.http.ui import pairing_info
from bridge.mqtt.router import Message
from bridge.plugins import audit as plugin_audit

RECENT_EVENTS = 50
STATE_COALESCE = 0.25  # seconds: a node's state on the stream at most this often (it changes per frame)
ASSIST_TIMEOUT = 15.0  # seconds the assist console waits for the answer to a sentence
AUDIT_SHOWN = 50  # the newest audit records the plugins page shows


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
        self.history = History()
        self._firmware: dict[int, dict[str, Any]] = {}  # node id -> firmware and conflict, from bridge/nodes
        self._asked: dict[str, Future[dict[str, Any]]] = {}  # assist console: utterance id -> its answer
        self.stream = Stream()
        self.api = Api(self, cfg, self.stream)
        self.server = HttpServer(self.api.app(), cfg.bind, cfg.port, cfg.access_log)
        self._serving = False
        try:
            self.server.start()  # a port that is taken fails this extension's start, and only it
        except RuntimeError as exc:
            why = _cannot_listen(cfg.bind, cfg.port, exc)
            if cfg.asked_for():
                raise RuntimeError(why) from None
            # on by default, not asked for: a bridge that ran before the frontend existed (beside
            # Grafana, say, on port 3000) keeps running, and says why there is no page
            ctx.log.warning("http: no web page: %s (it is on by default; set http.enabled: false to "
                            "silence this)", why)
            ctx.add_info("http", lambda: {"url": None, "serving": False, "why": why})
            return
        self._serving = True
        ctx.log.info("web page and sensing HTTP API on http://%s:%d/%s", cfg.bind, self.server.port,
                     " (log in with the token; agents send it as a bearer token)" if cfg.login_required() else "")
        ctx.nodes.watch(self._on_node)
        ctx.nodes.watch_events(self._on_event)
        ctx.mqtt.subscribe(ctx.topics.bridge_log, self._on_log, accept_retained=False)
        ctx.mqtt.subscribe(ctx.topics.bridge_nodes, self._on_nodes_list)
        ctx.mqtt.subscribe(ctx.topics.assist_response, self._on_assist_answer, accept_retained=False)
        ctx.add_info("http", lambda: {"url": f"http://{cfg.bind}:{self.server.port}/", "serving": True,
                                      "token_required": cfg.token is not None,
                                      "login_required": cfg.login_required()})
        ctx.add_health("http", lambda: {"stream_clients": self.stream.clients, "stream_dropped": self.stream.dropped,
                                        "rate_limited": self.api.limiter.refused,
                                        "unauthorized": self.api.unauthorized, **self.api.edge.stats(),
                                        "logins": self.api.sessions.logins,
                                        "failed_logins": self.api.sessions.failed_logins,
                                        "csrf_refused": self.api.sessions.csrf_refused,
                                        "wrong_host": self.api.frontend.refused_host})

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

    # ------------------------------------------------------------ what the frontend asks (server's worker threads)

    def node_row(self, node: NodeInfo) -> dict[str, Any]:
        """A node as the frontend's table and page show it (gated fields only)."""
        state = node.state or {}
        listed = self._firmware.get(node.node_id, {})
        return {**views.node_summary(node), "expected_hours": list(node.expected_hours),
                "thresholds": state.get("thresholds"), "firmware": listed.get("firmware"),
                "conflict": bool(listed.get("conflict"))}

    def request(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        """A request verb, as `<base>/bridge/request/<verb>` runs it (blocks: never on a loop or inbox)."""
        return self.ctx.request(verb, body)

    def audit(self) -> dict[str, Any]:
        """The plugins' audit log: its chain checked whole, and its newest records."""
        info = self.ctx.request("info", {})
        path = ((info.get("data") or {}).get("config") or {}).get("plugins", {}).get("audit_log")
        if not path:
            return {"path": None, "verified": None, "problem": "no audit log configured", "records": []}
        file = Path(str(path)).expanduser()
        count, problem = plugin_audit.verify(file)
        records: list[dict[str, Any]] = []
        try:
            with open(file, "rb") as f:
                for line in deque(f, maxlen=AUDIT_SHOWN):
                    try:
                        records.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        pass
        except OSError:
            pass
        return {"path": str(file), "verified": count, "problem": problem, "records": records[::-1]}

    def homekit_pairing(self) -> dict[str, Any]:
        features = self.ctx.bridge_health().get("extensions") or {}
        return pairing_info(self.ctx.state_dir, (features.get("homekit") or {}).get("state") == "running")

    def assist(self, text: str, language: str | None, dry_run: bool = False) -> dict[str, Any]:
        """A sentence as a satellite sends it, on `<base>/assist/utterance`; the answer from
        `<base>/assist/response` (matched by its id), in the request API's shape."""
        features = self.ctx.bridge_health().get("extensions") or {}
        if (features.get("assist") or {}).get("state") != "running":
            return {"status": "error", "data": {}, "error": "assist is not running (assist.enabled: true)"}
        if not self.ctx.mqtt.connected:
            return {"status": "error", "data": {}, "error": "the bridge is not connected to its broker"}
        ask_id = f"http-{uuid.uuid4().hex}"
        answer: Future[dict[str, Any]] = Future()
        with self._lock:
            self._asked[ask_id] = answer
        try:
            body = {"text": text, "id": ask_id, **({"language": language} if language else {}),
                    **({"dry_run": True} if dry_run else {})}
            self.ctx.mqtt.publish(self.ctx.topics.assist_utterance, orjson.dumps(body), qos=1)
            try:
                return {"status": "ok", "data": answer.result(ASSIST_TIMEOUT)}
            except TimeoutError:
                return {"status": "error", "data": {}, "error": f"no answer within {ASSIST_TIMEOUT:g} s"}
        finally:
            with self._lock:
                self._asked.pop(ask_id, None)

    # ------------------------------------------------------------ MQTT (on this extension's inbox)

    def _on_assist_answer(self, msg: Message) -> None:
        try:
            body = parse_json(msg.payload)
        except PayloadError:
            return
        with self._lock:
            waiting = self._asked.get(str(body.get("id")))
        if waiting is not None and not waiting.done():
            waiting.set_result(body)

    def _on_log(self, msg: Message) -> None:
        try:
            line = parse_json(msg.payload)
        except PayloadError:
            return
        self.history.log(line)
        self.server.call(self.stream.publish, "log", "", line, True)

    def _on_nodes_list(self, msg: Message) -> None:
        try:
            listed = parse_json(msg.payload, expect_object=False) if msg.payload else []
        except PayloadError:
            return
        if isinstance(listed, list):
            self._firmware = {n["node_id"]: n for n in listed if isinstance(n, dict) and isinstance(n.get("node_id"), int)}

    # ------------------------------------------------------------ live (on this extension's inbox)

    def _on_node(self, change: NodeChange) -> None:
        node = change.node
        if change.renamed_from:
            self.history.rename(change.renamed_from, node.name)
        sampled = self.history.sample(node.name, node.state) if node.state and not change.removed else None
        if sampled is not None and self.stream.clients:
            point, replaces = sampled
            self.server.call(self.stream.publish, "sample", node.name,
                             {"name": node.name, "point": point, "replaces": replaces}, True)
        if change.removed:
            self.history.forget(node.name)
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
