"""What users ask of the nodes: the `node/*` request verbs and `<base>/node/<name>/set`.

Each runs on the nodes extension's inbox: everything is checked first (a refused request changes
nothing), then applied through the pipeline, which takes its own lock for the change.
"""

from __future__ import annotations

import logging
from typing import Any

from bridge import names
from bridge.core.api import ApiError
from bridge.core.payload import PayloadError, parse_json
from bridge.extension import ExtensionContext
from bridge.mqtt.router import Message
from bridge.nodes.config import NodesConfig
from bridge.nodes.pipeline import NodePipeline
from bridge.nodes.presence import THRESHOLD_RANGES
from bridge.nodes.registry import Node
from bridge.privacy import PrivacyError

log = logging.getLogger("bridge.nodes")


class NodeControl:
    def __init__(self, ctx: ExtensionContext[NodesConfig], pipeline: NodePipeline) -> None:
        self.ctx, self.pipeline = ctx, pipeline
        self.registry, self.gate = pipeline.registry, pipeline.gate

    def start(self) -> None:
        for verb, handler in (("node/calibrate", self.calibrate), ("node/rename", self.rename),
                              ("node/remove", self.remove), ("node/privacy", self.privacy),
                              ("node/register", self.register)):
            self.ctx.register_request(verb, handler)
        self.ctx.mqtt.subscribe(self.ctx.topics.node_set_filter, self._on_set, accept_retained=False)

    def _node_from(self, request: dict[str, Any], key: str = "node") -> Node:
        ref = request.get(key, request.get("value"))
        node = self.registry.by_name(ref) if isinstance(ref, str) else None
        if node is None and isinstance(ref, int) and not isinstance(ref, bool):
            node = self.registry.get(ref)
        if node is None:
            shown = ref if not isinstance(ref, str) or len(ref) <= 64 else ref[:61] + "..."
            raise ApiError(f"unknown node {shown!r} (a node's name, or its id as a number; known: "
                           f"{', '.join(n.name for n in self.registry.all()) or 'none yet'})")
        return node

    def _new_name(self, name: Any, node_id: int | None) -> str:
        """A name a node may take: valid everywhere it is used, and not another node's."""
        try:
            names.check_node_name(name)
        except names.InvalidName as exc:
            raise ApiError(f"the new name must be {exc}") from None
        holder = self.registry.by_name(name)
        if holder is not None and holder.node_id != node_id:
            raise ApiError(f"a node is already named {name!r}")
        return str(name)

    # ------------------------------------------------------------ request verbs

    def calibrate(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        return {"node": node.name, "seconds": self.pipeline.calibrate(node)}

    def rename(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request, "from")
        new = self._new_name(request.get("to"), node.node_id)
        old = node.name
        if new != old:
            self.pipeline.rename(node, new)
        return {"from": old, "to": new}

    def remove(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        self.pipeline.remove(node)
        return {"node": node.name}

    def privacy(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        try:
            cls = self.gate.demote(node.node_id, request.get("class"))
        except PrivacyError as exc:
            raise ApiError(str(exc)) from None
        self.pipeline.republish(node)  # the state is redacted as it is built: publish it at the new class
        return {"node": node.name, "privacy_class": cls.label}

    def register(self, request: dict[str, Any]) -> dict[str, Any]:
        """Name, room and class for a node id, seen yet or not (`ruview-node provision --register`).

        Applies until the bridge restarts; the tool also writes config.yaml to keep it.
        Everything is checked before anything changes: a refused request changes nothing.
        """
        node_id, name, room = request.get("node_id"), request.get("name"), request.get("room")
        if not isinstance(node_id, int) or not names.is_node_id(node_id):
            raise ApiError(f'"node_id" must be {names.NODE_ID_RULE}')
        if name is not None:
            name = self._new_name(name, node_id)
        if room is not None and (not isinstance(room, str) or len(room) > 64):
            raise ApiError('"room" must be text of at most 64 characters')
        cls = None
        if request.get("privacy_class") is not None:
            try:
                cls = self.gate.check_demotion(node_id, request["privacy_class"])
            except PrivacyError as exc:
                raise ApiError(str(exc)) from None
            self.gate.demote(node_id, cls)
        with self.pipeline.lock:
            node = self.registry.configure(node_id, name=name, room=room)
        if node is not None:
            if name and name != node.name:
                self.pipeline.rename(node, name)
            else:
                self.pipeline.republish(node)
        return {"node_id": node_id, "name": (node.name if node else name) or names.default_node_name(node_id),
                "room": room, "privacy_class": (cls or self.gate.class_of(node_id)).label,
                "seen": node is not None}

    # ------------------------------------------------------------ <base>/node/<name>/set

    def _on_set(self, msg: Message) -> None:
        name = msg.topic.split("/")[-2]
        try:
            body = parse_json(msg.payload)
        except PayloadError as exc:
            log.warning("ignored %s: %s", msg.topic[:200], exc)
            return
        node = self.registry.by_name(name)
        if node is None:
            log.warning("ignored %s: no node named %r", msg.topic[:200], name[:64])
        elif body.get("calibrate") is True:
            seconds = self.pipeline.calibrate(node)
            log.info("calibrating %s: keep the room empty for %.0f s", name, seconds)
        elif any(key in body for key in THRESHOLD_RANGES):
            self.pipeline.set_thresholds(node, body)
