"""What a service call publishes to a discovered device: HA's command rules per platform.

Pure functions from (entity, service data) to the messages to send, so the
exact payloads are easy to test and the same for every caller (service
topics, assist, plugins). Commands are never retained (Tasmota #2053: a
retained command replays on every reconnect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.homeassistant.entities import DiscoveredEntity

COLORS = {  # the CSS names people say most; HA accepts all CSS3 names
    "red": (255, 0, 0), "green": (0, 128, 0), "lime": (0, 255, 0), "blue": (0, 0, 255),
    "white": (255, 255, 255), "warmwhite": (255, 214, 170), "yellow": (255, 255, 0),
    "orange": (255, 165, 0), "purple": (128, 0, 128), "pink": (255, 192, 203),
    "cyan": (0, 255, 255), "magenta": (255, 0, 255), "violet": (238, 130, 238),
    "gold": (255, 215, 0), "teal": (0, 128, 128), "turquoise": (64, 224, 208),
    "indigo": (75, 0, 130), "crimson": (220, 20, 60), "coral": (255, 127, 80),
    "salmon": (250, 128, 114), "lavender": (230, 230, 250), "navy": (0, 0, 128),
}


class CommandError(ValueError):
    pass


@dataclass(frozen=True)
class Command:
    topic: str
    payload: bytes
    qos: int = 0


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _brightness(data: dict[str, Any], scale: int) -> int | None:
    """Brightness in the device's own scale, from brightness (0..255) or brightness_pct."""
    if "brightness_pct" in data:
        pct = _number(data, "brightness_pct", 0, 100)
        return _half_up(pct / 100 * scale)
    if "brightness" in data:
        return _half_up(_number(data, "brightness", 0, 255) / 255 * scale)
    return None


def _number(data: dict[str, Any], key: str, lo: float, hi: float) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise CommandError(f"{key} must be a number {lo:g}..{hi:g}, got {value!r}")
    return value


def _rgb(data: dict[str, Any]) -> tuple[int, int, int] | None:
    if "color_name" in data:
        name = str(data["color_name"]).replace(" ", "").lower()
        if name not in COLORS:
            raise CommandError(f"unknown color_name {data['color_name']!r} (try: {', '.join(COLORS)})")
        return COLORS[name]
    if "rgb_color" in data:
        rgb = data["rgb_color"]
        if not (isinstance(rgb, list) and len(rgb) == 3 and
                all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb)):
            raise CommandError(f"rgb_color must be [r, g, b] of 0..255, got {rgb!r}")
        return tuple(rgb)
    return None


def _text(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


def light_on(e: DiscoveredEntity, data: dict[str, Any]) -> list[Command]:
    scale = int(e.get("brightness_scale", 255))
    brightness, rgb, qos = _brightness(data, scale), _rgb(data), int(e.get("qos", 0))
    transition = _number(data, "transition", 0, 3600) if "transition" in data else None
    if e.is_json_light:
        body: dict[str, Any] = {"state": "ON"}
        if brightness is not None:
            body["brightness"] = brightness
        if rgb is not None:
            body["color"] = {"r": rgb[0], "g": rgb[1], "b": rgb[2]}
        if transition is not None:
            body["transition"] = transition
        return [Command(e.get("command_topic"), orjson.dumps(body), qos)]
    extra: list[Command] = []
    if brightness is not None:
        if not e.get("brightness_command_topic"):
            raise CommandError(f"{e.entity_id} has no brightness control")
        extra.append(Command(e.get("brightness_command_topic"), str(brightness).encode(), qos))
    if rgb is not None:
        if not e.get("rgb_command_topic"):
            raise CommandError(f"{e.entity_id} has no colour control")
        extra.append(Command(e.get("rgb_command_topic"), ",".join(map(str, rgb)).encode(), qos))
    on = Command(e.get("command_topic"), _text(e.get("payload_on", "ON")), qos)
    mode = e.get("on_command_type", "last")
    if mode == "brightness" and brightness is not None:
        return extra
    return [on, *extra] if mode == "first" else [*extra, on]


def light_off(e: DiscoveredEntity, data: dict[str, Any]) -> list[Command]:
    qos = int(e.get("qos", 0))
    if e.is_json_light:
        body: dict[str, Any] = {"state": "OFF"}
        if "transition" in data:
            body["transition"] = _number(data, "transition", 0, 3600)
        return [Command(e.get("command_topic"), orjson.dumps(body), qos)]
    return [Command(e.get("command_topic"), _text(e.get("payload_off", "OFF")), qos)]


def switch_on(e: DiscoveredEntity, data: dict[str, Any]) -> list[Command]:
    return [Command(e.get("command_topic"), _text(e.get("payload_on", "ON")), int(e.get("qos", 0)))]


def switch_off(e: DiscoveredEntity, data: dict[str, Any]) -> list[Command]:
    return [Command(e.get("command_topic"), _text(e.get("payload_off", "OFF")), int(e.get("qos", 0)))]


def fan_on(e: DiscoveredEntity, data: dict[str, Any]) -> list[Command]:
    out = switch_on(e, data)
    if "percentage" in data:
        if not e.get("percentage_command_topic"):
            raise CommandError(f"{e.entity_id} has no speed control")
        pct = _half_up(_number(data, "percentage", 0, 100))
        out.append(Command(e.get("percentage_command_topic"), str(pct).encode(), int(e.get("qos", 0))))
    return out


TURN_ON = {"light": light_on, "switch": switch_on, "fan": fan_on}
TURN_OFF = {"light": light_off, "switch": switch_off, "fan": switch_off}
