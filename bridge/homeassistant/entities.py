"""Other software's HA discovery configs, read into entities we can track and drive.

Zigbee2MQTT, Tasmota, ESPHome and friends announce their entities on the
discovery prefix with HA's schema: full or abbreviated keys, `~` as a topic
base, per-component topics or one device config with `cmps`. `parse_config`
turns one of those messages into `DiscoveredEntity` objects with the keys
expanded, the topics resolved and the defaults HA would apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bridge.homeassistant.abbreviations import (ABBREVIATIONS, DEVICE_ABBREVIATIONS, ORIGIN_ABBREVIATIONS,
                                                REMOVED_ABBREVIATIONS)
from bridge.names import slugify

DOMAINS = ("light", "switch", "fan", "cover", "lock", "climate", "binary_sensor", "sensor")


class DiscoveryError(ValueError):
    pass


@dataclass
class DiscoveredEntity:
    domain: str
    entity_id: str
    unique_id: str | None
    name: str
    config_topic: str
    config: dict[str, Any]  # expanded keys, topics resolved
    device: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None

    @property
    def area(self) -> str | None:
        return self.device.get("suggested_area")

    @property
    def is_json_light(self) -> bool:
        return self.domain == "light" and self.config.get("schema") == "json"

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)


_CONFIG_KEYS = {**REMOVED_ABBREVIATIONS, **ABBREVIATIONS}


def _long(keys: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    return {table.get(k, k): v for k, v in keys.items()}


def expand(config: dict[str, Any]) -> dict[str, Any]:
    """Full key names as HA reads them (the config's, each availability item's, device's and
    origin's: abbreviations.py), and `~` replaced in every *_topic value (HA's rule: at the
    start or end)."""
    out = _long(config, _CONFIG_KEYS)
    base = out.pop("~", None)
    if isinstance(base, str):
        for key, value in out.items():
            if key.endswith("_topic") and isinstance(value, str):
                if value.startswith("~"):
                    out[key] = base + value[1:]
                elif value.endswith("~"):
                    out[key] = value[:-1] + base
    avty = out.get("availability")
    if isinstance(avty, dict):
        out["availability"] = _long(avty, ABBREVIATIONS)
    elif isinstance(avty, list):
        out["availability"] = [_long(a, ABBREVIATIONS) if isinstance(a, dict) else a for a in avty]
    if isinstance(out.get("device"), dict):
        out["device"] = _long(out["device"], DEVICE_ABBREVIATIONS)
    if isinstance(out.get("origin"), dict):
        out["origin"] = _long(out["origin"], ORIGIN_ABBREVIATIONS)
    return out


def parse_config(topic: str, payload: dict[str, Any], prefix: str) -> list[DiscoveredEntity]:
    """Entities announced by one retained config message (several for a device config)."""
    parts = topic[len(prefix) + 1:].split("/")
    if parts[0] == "device":
        root = expand(payload)
        components = root.pop("components", None)
        if not isinstance(components, dict):
            raise DiscoveryError(f"{topic}: device config without cmps")
        shared = {k: v for k, v in root.items() if k not in ("device", "origin")}
        entities = []
        for object_id, comp in components.items():
            if not isinstance(comp, dict):
                continue
            merged = {**shared, **expand(comp), "device": root.get("device", {}),
                      "origin": root.get("origin")}
            domain = merged.get("platform")
            if domain in DOMAINS:
                entities.append(_entity(domain, object_id, merged, topic))
        return entities
    domain = parts[0]
    if domain not in DOMAINS:
        return []
    return [_entity(domain, parts[-2], expand(payload), topic)]


def _entity(domain: str, object_id: str, cfg: dict[str, Any], topic: str) -> DiscoveredEntity:
    found = cfg.get("device")
    device: dict[str, Any] = found if isinstance(found, dict) else {}
    entity_name = cfg.get("name")
    device_name = device.get("name")
    name = " ".join(p for p in (device_name, entity_name) if isinstance(p, str)) or object_id
    suggested = cfg.get("default_entity_id") or (f"{domain}.{cfg['object_id']}" if cfg.get("object_id")
                                                 else f"{domain}.{slugify(name)}")
    entity_id = f"{domain}.{slugify(str(suggested).split('.', 1)[-1])[:200]}"
    if domain in ("light", "switch", "fan", "lock", "cover") and "command_topic" not in cfg:
        raise DiscoveryError(f"{topic}: a {domain} needs a command_topic")
    origin = cfg.get("origin")
    return DiscoveredEntity(domain, entity_id, cfg.get("unique_id"), name, topic, cfg, device,
                            origin.get("name") if isinstance(origin, dict) else None)


_TEMPLATE = re.compile(r"^\{\{\s*(value_json((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:'[^']*'|\"[^\"]*\")\s*\])+)"
                       r"|value)\s*\}\}$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*'([^']*)'\s*\]|\[\s*\"([^\"]*)\"\s*\]")


class TemplateUnsupported(ValueError):
    pass


def render_value(template: str | None, payload: bytes, value_json: Any = None) -> Any:
    """The value HA's value_template would pick, for the plain forms devices use.

    `{{ value }}`, `{{ value_json.a.b }}`, `{{ value_json['a'] }}` are evaluated;
    other Jinja raises TemplateUnsupported (the entity keeps tracking its other topics).
    """
    text = payload.decode("utf-8", "replace")
    if not template:
        return text
    match = _TEMPLATE.match(template.strip())
    if not match:
        raise TemplateUnsupported(template)
    if match[1] == "value":
        return text
    value = value_json
    for step in _STEP.finditer(match[2]):
        key = step[1] or step[2] or step[3]
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value
