"""Discovery in: the home's other MQTT devices as home state and services.

Every retained config under the discovery prefix (other than our own) adds
an entity; its state topic is followed and mirrored to `<base>/state/<entity_id>`;
`light.*`, `switch.*`, `fan.*` and `homeassistant.*` services publish the
exact command the device expects (commands.py). An empty config removes the
entity. Optionally, HA's mqtt_statestream topics make entities that live only
in HA known by name and state.

Everything here runs on the homeassistant extension's inbox — configs, followed state topics,
and the services, whoever calls them — so it holds no lock.

A foreign config's state topic is a topic we did not build: one with a
wildcard (which would subscribe us to the whole broker) or that a broker would
refuse is not followed, counted and logged once. With a share group, state
topics are followed through `$share/<group>/...`, so each device update is
mirrored into home state by exactly one instance.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from bridge.core.services import ServiceCall, ServiceError
from bridge.homeassistant import commands
from bridge.homeassistant.entities import (DiscoveredEntity, DiscoveryError, TemplateUnsupported,
                                           parse_config, render_value)
from bridge.mqtt.router import Message, Route
from bridge.names import valid_entity_id
from bridge.topics import DiscoveryTopics, InvalidTopic, check_topic

log = logging.getLogger(__name__)

OUR_ORIGIN = "ruview-bridge"


class DeviceRegistry:
    def __init__(self, ctx, cfg) -> None:
        self.ctx = ctx
        self.dt = DiscoveryTopics(cfg.discovery_prefix)
        self.prefix = cfg.discovery_prefix
        self.statestream = cfg.statestream_topic
        self.entities: dict[str, DiscoveredEntity] = {}  # entity_id -> entity
        self._by_config: dict[str, list[str]] = {}  # config topic -> entity ids
        self._payloads: dict[str, bytes] = {}  # config topic -> the payload its entities came from
        self._followed: dict[str, set[str]] = {}  # state topic -> entity ids
        self._routes: dict[str, Route] = {}  # state topic -> our subscription
        self.rejected = 0
        self._told: set[str] = set()

    def start(self) -> None:
        mqtt = self.ctx.mqtt
        for pattern in (self.dt.component_filter, self.dt.node_component_filter):
            mqtt.subscribe(pattern, self._on_config, no_local=True)  # not our own configs (MQTT 5)
        if self.statestream:
            mqtt.subscribe(DiscoveryTopics.statestream_filter(self.statestream), self._on_statestream)
        for domain in ("light", "switch", "fan", "homeassistant"):
            for service in ("turn_on", "turn_off", "toggle"):
                self.ctx.register_service(domain, service, self._call)
        self.ctx.add_info("discovered_entities", lambda: sorted(self.entities))

    def _refuse(self, topic: str, reason: str) -> None:
        self.rejected += 1
        if topic not in self._told and len(self._told) < 1000:
            self._told.add(topic)
            log.warning("ignored discovery config %s: %s", topic[:200], reason)

    # ------------------------------------------------------------ configs

    def _on_config(self, msg: Message) -> None:
        if msg.payload and self._payloads.get(msg.topic) == msg.payload:
            return  # announced again as it was (a device restarting, HA's birth): nothing changes
        self._payloads.pop(msg.topic, None)
        for entity_id in self._by_config.pop(msg.topic, []):
            self._drop(entity_id)
        if not msg.payload:
            return
        try:
            payload = orjson.loads(msg.payload)
            if not isinstance(payload, dict):
                raise DiscoveryError("config is not a JSON object")
            found = parse_config(msg.topic, payload, self.prefix)
        except (orjson.JSONDecodeError, DiscoveryError) as exc:
            self._refuse(msg.topic, str(exc))
            return
        found = [e for e in found if e.origin != OUR_ORIGIN]
        for entity in list(found):
            problem = self._unusable(entity)
            if problem:
                self._refuse(msg.topic, problem)
                found.remove(entity)
        for entity in found:
            if entity.entity_id in self.entities:
                entity.entity_id = self._free_id(entity.entity_id)
            self.entities[entity.entity_id] = entity
            self._follow(entity)
        self._by_config[msg.topic] = [e.entity_id for e in found]
        if found:
            self._payloads[msg.topic] = msg.payload

    def _free_id(self, entity_id: str) -> str:
        n = 2
        while f"{entity_id}_{n}" in self.entities:
            n += 1
        return f"{entity_id}_{n}"

    @staticmethod
    def _unusable(entity: DiscoveredEntity) -> str | None:
        """Why an announced entity cannot be tracked or driven, or None."""
        if not valid_entity_id(entity.entity_id):
            return f"{entity.entity_id[:80]!r} is not a valid entity id"
        for key in ("state_topic", "command_topic", "brightness_command_topic", "rgb_command_topic",
                    "percentage_command_topic"):
            value = entity.get(key)
            if value is None:
                continue
            try:
                check_topic(value, key)
            except InvalidTopic as exc:
                return str(exc)
        return None

    def _follow(self, entity: DiscoveredEntity) -> None:
        topic = entity.get("state_topic")
        if not topic:
            self.ctx.states.set(entity.entity_id, "unknown", self._attributes(entity, {}))
            return
        first = topic not in self._followed
        self._followed.setdefault(topic, set()).add(entity.entity_id)
        if self.ctx.states.get(entity.entity_id) is None:  # as in HA: it exists, its state unknown until told
            self.ctx.states.set(entity.entity_id, "unknown", self._attributes(entity, {}))
        if first:
            self._routes[topic] = self.ctx.mqtt.subscribe(self.ctx.topics.shared(topic), self._on_state)

    def _drop(self, entity_id: str) -> None:
        entity = self.entities.get(entity_id)
        if entity is None:
            return
        self.ctx.states.remove(entity_id)  # first: an entity that is gone has no state left
        del self.entities[entity_id]
        topic = entity.get("state_topic")
        if topic and topic in self._followed:
            self._followed[topic].discard(entity_id)
            if not self._followed[topic]:
                del self._followed[topic]
                route = self._routes.pop(topic, None)
                if route is not None:
                    self.ctx.mqtt.unsubscribe(route)

    # ------------------------------------------------------------ states

    def _on_state(self, msg: Message) -> None:
        ids = list(self._followed.get(msg.topic, ()))
        entities = [self.entities[i] for i in ids if i in self.entities]
        try:
            value_json = orjson.loads(msg.payload) if msg.payload[:1] in (b"{", b"[") else None
        except orjson.JSONDecodeError:
            value_json = None
        for entity in entities:
            try:
                state, extra = self._state_of(entity, msg.payload, value_json)
            except TemplateUnsupported as exc:
                log.debug("%s: template %s not supported; state left as is", entity.entity_id, exc)
                continue
            if state is not None:
                self.ctx.states.set(entity.entity_id, state, self._attributes(entity, extra))

    def _state_of(self, e: DiscoveredEntity, payload: bytes, value_json: Any) -> tuple[str | None, dict]:
        if e.is_json_light:
            if not isinstance(value_json, dict) or "state" not in value_json:
                return None, {}
            extra = {}
            if isinstance(value_json.get("brightness"), (int, float)):
                scale = int(e.get("brightness_scale", 255))
                extra["brightness"] = round(value_json["brightness"] / scale * 255)
            for key in ("color_mode", "color", "color_temp"):
                if key in value_json:
                    extra[key] = value_json[key]
            return ("on" if value_json["state"] == "ON" else "off"), extra
        template = e.get("state_value_template") or e.get("value_template")
        value = render_value(template, payload, value_json)
        if value is None:
            return None, {}
        if e.domain in ("light", "switch", "fan", "binary_sensor", "lock"):
            on = e.get("state_on", e.get("payload_on", "ON"))
            off = e.get("state_off", e.get("payload_off", "OFF"))
            if value == on or str(value) == str(on):
                return "on", {}
            if value == off or str(value) == str(off):
                return "off", {}
            return "unknown", {}
        return str(value), {}

    def _attributes(self, e: DiscoveredEntity, extra: dict[str, Any]) -> dict[str, Any]:
        attrs = {"friendly_name": e.name, "source": e.origin or "mqtt discovery"}
        if e.area:
            attrs["area"] = e.area
        for key in ("device_class", "unit_of_measurement"):
            if e.get(key):
                attrs[key] = e.get(key)
        return {**attrs, **extra}

    def _on_statestream(self, msg: Message) -> None:
        _, domain, object_id, _ = msg.topic.rsplit("/", 3)
        entity_id = f"{domain}.{object_id}"
        if entity_id in self.entities:
            return  # the MQTT device itself is the better source
        try:
            value = orjson.loads(msg.payload) if msg.payload else None
        except orjson.JSONDecodeError:
            value = msg.payload.decode("utf-8", "replace")
        try:
            if value is None:
                self.ctx.states.remove(entity_id)
            else:
                self.ctx.states.set(entity_id, value, {"source": "home assistant"})
        except ValueError as exc:
            log.debug("statestream %s: %s", msg.topic, exc)

    # ------------------------------------------------------------ services

    def _call(self, call: ServiceCall) -> dict[str, Any]:
        ids = call.data.get("entity_id")
        ids = [ids] if isinstance(ids, str) else ids
        if not ids or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ServiceError('"entity_id" must be an entity id or a list of them')
        data = {k: v for k, v in call.data.items() if k != "entity_id"}
        planned: list[commands.Command] = []
        for entity_id in ids:  # plan every message first: one bad entity sends nothing
            entity = self.entities.get(entity_id)
            if entity is None:
                raise ServiceError(f"unknown entity {entity_id!r}")
            if call.domain != "homeassistant" and entity.domain != call.domain:
                raise ServiceError(f"{entity_id} is not a {call.domain}")
            try:
                planned += self._plan(entity, call.service, data)
            except commands.CommandError as exc:
                raise ServiceError(str(exc)) from None
        for cmd in planned:
            self.ctx.mqtt.publish(cmd.topic, cmd.payload, qos=cmd.qos, retain=False)
        return {"entity_id": ids, "published": [c.topic for c in planned]}

    def _plan(self, entity: DiscoveredEntity, service: str, data: dict[str, Any]) -> list[commands.Command]:
        if entity.domain not in commands.TURN_ON:
            raise commands.CommandError(f"{entity.entity_id}: {entity.domain} cannot be turned on/off here")
        if service == "toggle":
            current = self.ctx.states.get(entity.entity_id)
            service = "turn_off" if current is not None and current.state == "on" else "turn_on"
        table = commands.TURN_ON if service == "turn_on" else commands.TURN_OFF
        return table[entity.domain](entity, data)
