"""What users ask of the nodes: the `node/*` request verbs and `<base>/node/<name>/set`.

Each runs on the nodes extension's inbox: everything is checked first (a refused request changes
nothing), then committed to the state store (settings.py; a change that cannot be stored is
refused, not applied), then applied through the pipeline, which takes its own lock for the change.
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
from bridge.core.store import StoreError
from bridge.nodes.presence import THRESHOLD_RANGES
from bridge.nodes.registry import Node
from bridge.nodes.settings import NodeSettings, check_field
from bridge.privacy import PrivacyError

log = logging.getLogger("bridge.nodes")


SETTABLE = ("room", "expected_hours", *THRESHOLD_RANGES)  # what node/set and <base>/node/<name>/set change


class NodeControl:
    def __init__(self, ctx: ExtensionContext[NodesConfig], pipeline: NodePipeline, settings: NodeSettings) -> None:
        self.ctx, self.pipeline, self.settings = ctx, pipeline, settings
        self.registry, self.gate = pipeline.registry, pipeline.gate

    def start(self) -> None:
        for verb, handler in (("node/calibrate", self.calibrate), ("node/rename", self.rename),
                              ("node/remove", self.remove), ("node/privacy", self.privacy),
                              ("node/register", self.register), ("node/set", self.set)):
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
        holder = self.registry.name_holder(name)
        if holder is not None and holder != node_id:
            raise ApiError(f"node {holder} has or will have the name {name!r}, or one with the same entity ids "
                           "(- and _ are alike there)")
        return str(name)

    def _store(self, node_id: int, **changes: Any) -> None:
        """Commit before applying: a change the store refuses is answered as an error, not applied."""
        try:
            self.settings.save(node_id, **changes)
        except StoreError as exc:
            raise ApiError(f"not changed: {exc}") from None

    def _checked_settings(self, node: Node | None, node_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """The settable fields of a request, each checked; every problem said at once."""
        changes: dict[str, Any] = {}
        problems: list[str] = []
        for field in SETTABLE:
            if field not in body:
                continue
            if body[field] is None and field in ("room", "expected_hours"):
                changes[field] = None  # cleared
                continue
            try:
                changes[field] = check_field(field, body[field])
            except (ValueError, names.InvalidName) as exc:
                problems.append(f'"{field}" must be {exc}')
        if not problems and any(k in changes for k in ("enter_ratio", "exit_ratio")):
            settings = self.pipeline.engine(node_id).settings
            enter = changes.get("enter_ratio", settings.enter_ratio)
            exit_ = changes.get("exit_ratio", settings.exit_ratio)
            if exit_ > enter:
                problems.append(f'"exit_ratio" ({exit_:g}) must not be above "enter_ratio" ({enter:g})')
        if problems:
            raise ApiError("; ".join(problems))
        return changes

    def _apply_settings(self, node: Node, changes: dict[str, Any]) -> None:
        if "room" in changes:
            with self.pipeline.lock:
                self.registry.configure(node.node_id, name=None, room=changes["room"], clear_room=True)
        if "expected_hours" in changes:
            self.pipeline.set_expected_hours(node.node_id, changes["expected_hours"])
        thresholds = {k: v for k, v in changes.items() if k in THRESHOLD_RANGES}
        if thresholds:
            self.pipeline.set_thresholds(node, thresholds)
        self.pipeline.republish(node)

    # ------------------------------------------------------------ request verbs

    def calibrate(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        return {"node": node.name, "seconds": self.pipeline.calibrate(node)}

    def rename(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request, "from")
        new = self._new_name(request.get("to"), node.node_id)
        old = node.name
        if new != old:
            self._store(node.node_id, name=new)
            self.pipeline.rename(node, new)
        return {"from": old, "to": new}

    def remove(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        try:
            self.settings.forget(node.node_id)
        except StoreError as exc:
            raise ApiError(f"not removed: {exc}") from None
        self.pipeline.remove(node)
        return {"node": node.name}

    def privacy(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self._node_from(request)
        try:
            cls = self.gate.check_demotion(node.node_id, request.get("class"))
        except PrivacyError as exc:
            raise ApiError(str(exc)) from None
        self._store(node.node_id, privacy_class=cls.label)
        self.gate.demote(node.node_id, cls)
        self.pipeline.republish(node)  # the state is redacted as it is built: publish it at the new class
        return {"node": node.name, "privacy_class": cls.label}

    def set(self, request: dict[str, Any]) -> dict[str, Any]:
        """Room, expected hours and presence thresholds of a node, any of them at once."""
        node = self._node_from(request)
        changes = self._checked_settings(node, node.node_id, request)
        if not changes:
            raise ApiError(f"nothing to set: give any of {', '.join(SETTABLE)}")
        self._store(node.node_id, **changes)
        self._apply_settings(node, changes)
        return {"node": node.name, **changes}

    def register(self, request: dict[str, Any]) -> dict[str, Any]:
        """Name, room and class for a node id, seen yet or not (`ruview-node provision --register`).

        Kept in the state store like any other change; the tool also writes config.yaml.
        Everything is checked before anything changes: a refused request changes nothing.
        """
        node_id, name, room = request.get("node_id"), request.get("name"), request.get("room")
        if not isinstance(node_id, int) or not names.is_node_id(node_id):
            raise ApiError(f'"node_id" must be {names.NODE_ID_RULE}')
        if name is not None:
            name = self._new_name(name, node_id)
        if room is not None:
            try:
                room = names.check_room(room)
            except names.InvalidName as exc:
                raise ApiError(f'"room" must be {exc}') from None
        cls = None
        if request.get("privacy_class") is not None:
            try:
                cls = self.gate.check_demotion(node_id, request["privacy_class"])
            except PrivacyError as exc:
                raise ApiError(str(exc)) from None
        changes = {k: v for k, v in (("name", name), ("room", room),
                                     ("privacy_class", cls.label if cls else None)) if v is not None}
        if changes:
            self._store(node_id, **changes)
        if cls is not None:
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
        """The same checks and store as node/set; no one to answer, so a refusal is logged."""
        name = msg.topic.split("/")[-2]
        try:
            body = parse_json(msg.payload)
        except PayloadError as exc:
            log.warning("ignored %s: %s", msg.topic[:200], exc)
            return
        node = self.registry.by_name(name)
        if node is None:
            log.warning("ignored %s: no node named %r", msg.topic[:200], name[:64])
            return
        try:
            if body.get("calibrate") is True:
                seconds = self.pipeline.calibrate(node)
                log.info("calibrating %s: keep the room empty for %.0f s", name, seconds)
            elif any(key in body for key in SETTABLE):
                self.set({**{k: body[k] for k in SETTABLE if k in body}, "node": node.node_id})
        except ApiError as exc:
            log.warning("ignored %s: %s", msg.topic[:200], exc)
