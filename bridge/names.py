"""Names: the one home for what a name may be and what is derived from it.

A node's name stands in MQTT topics (`ruview/node/<name>`) and in Home Assistant
entity ids (`binary_sensor.<name>_presence`); both must be valid for every name
we accept, so the node-name rule is the stricter of the two: words of [a-z0-9]
joined by single `-` or `_`. HA's entity-id rule forbids a leading, trailing or
doubled `_`, which a looser slug (`hall-`, `a--b`) would produce.
"""

from __future__ import annotations

import re
import unicodedata
import socket

from slugify import slugify as unicode_slugify

SLUG = re.compile(r"[a-z0-9_][a-z0-9_-]*")  # one topic level we build from a user's word
NODE_NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
NODE_NAME_MAX = 64
NODE_NAME_RULE = ("a name of lower-case letters and digits, in words joined by single - or _ "
                  f"(e.g. living_room), at most {NODE_NAME_MAX} characters")
NODE_ID_MIN, NODE_ID_MAX = 1, 255  # one byte on the wire; 0 means "not set"
NODE_ID_RULE = f"a whole number {NODE_ID_MIN}..{NODE_ID_MAX} (one byte on the wire; 0 is unset)"
IDENTIFIER = re.compile(r"[a-z0-9_]{1,64}")  # event types, service domains and names
IDENTIFIER_RULE = "1..64 of [a-z0-9_]"
# Home Assistant's rule: domain.object_id of [a-z0-9_], no leading/trailing/double "_".
_ENTITY_ID = re.compile(r"(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)")
ENTITY_ID_MAX = 255
# `ruview/bridge/<instance>/...` must not read as one of the bridge's own topics
RESERVED_INSTANCES = frozenset({"state", "info", "health", "event", "request", "response"})


class InvalidName(ValueError):
    """A name that cannot be used; str() says what a valid one looks like."""


def is_slug(text: str) -> bool:
    return isinstance(text, str) and bool(SLUG.fullmatch(text))


def is_node_name(name: object) -> bool:
    return isinstance(name, str) and len(name) <= NODE_NAME_MAX and bool(NODE_NAME.fullmatch(name))


def check_node_name(name: object) -> str:
    if not is_node_name(name):
        raise InvalidName(NODE_NAME_RULE)
    return name  # type: ignore[return-value]


ROOM_MAX = 64
ROOM_RULE = (f"text of 1..{ROOM_MAX} characters, without control, format or direction-override characters, "
             "not starting or ending with a space")


def check_room(room: object) -> str:
    """A room a user may give a node: shown by HA, HomeKit and the frontend, so printable text only
    (no NUL, ESC, right-to-left override or zero-width tricks) and short."""
    if not isinstance(room, str) or not 1 <= len(room) <= ROOM_MAX or room != room.strip() or \
            any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in room):
        raise InvalidName(ROOM_RULE)
    return room


def is_node_id(value: object) -> bool:
    """A node id as JSON or YAML gives it: an int (not a bool, not 4.0) in NODE_ID_MIN..NODE_ID_MAX."""
    return isinstance(value, int) and not isinstance(value, bool) and NODE_ID_MIN <= value <= NODE_ID_MAX


def default_node_name(node_id: int) -> str:
    return f"node_{node_id}"


def object_id(node_name: str) -> str:
    """The entity-id part for a node name (HA object ids have no `-`)."""
    return node_name.replace("-", "_")


def node_entity_id(domain: str, node_name: str, key: str) -> str:
    """`binary_sensor.kitchen_presence`: the one derivation every feature uses."""
    return f"{domain}.{object_id(node_name)}_{key}"


def valid_entity_id(entity_id: object) -> bool:
    return isinstance(entity_id, str) and len(entity_id) <= ENTITY_ID_MAX \
        and bool(_ENTITY_ID.fullmatch(entity_id))


def is_identifier(text: object) -> bool:
    return isinstance(text, str) and bool(IDENTIFIER.fullmatch(text))


def slugify(text: str) -> str:
    """Home Assistant's slugify (homeassistant.util.slugify) for free text such as device names.

    The same library HA calls, with its arguments, so an entity id made here is the one HA makes:
    letters are transliterated, not dropped ("Küche Licht" -> kuche_licht, "Straße" -> strasse),
    and a name with nothing left is "unknown", as in HA."""
    return unicode_slugify(text, separator="_") or "unknown"


def default_instance() -> str:
    """This host's name as a topic level: what `bridge.instance` defaults to."""
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-_")
    return name if name and SLUG.fullmatch(name) and name not in RESERVED_INSTANCES else "bridge"
