"""The `homekit:` section: the HAP bridge Apple Home pairs with, and what it shows."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

from pydantic import Field

from bridge import names
from bridge.config import ExtensionSection, Problem, Section
from bridge.config.types import Bool, Check, Int, Text, _ip, expected


def _interfaces(v: Any) -> list[str] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(a, str) and a for a in v):
        raise expected("a list of this host's IP addresses to announce on, or null for all")
    return v


def _rooms(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(r, str) and r.strip() and len(r) <= 64 for r in v):
        raise expected("a list of room names (as in nodes.devices.<id>.room, at most 64 characters each)")
    return v


def _node_ids(v: Any) -> list[int]:
    if not isinstance(v, list) or not all(names.is_node_id(n) for n in v):
        raise expected(f"a list of node ids, each {names.NODE_ID_RULE} (ids, not names: a name can change "
                       "with node/rename)")
    return v


Interfaces: TypeAlias = Annotated[list[str] | None, Check(_interfaces, optional=True)]
OptionalAddress: TypeAlias = Annotated[str | None, Check(_ip, optional=True)]
Rooms: TypeAlias = Annotated[list[str], Check(_rooms)]
NodeIds: TypeAlias = Annotated[list[int], Check(_node_ids)]


class ExposeConfig(Section):
    """Which nodes HomeKit shows (docs/homekit.md, "Choosing what HomeKit shows"): every configured
    node (a room or a name of its own), never a node id nobody configured; include_rooms narrows
    that to those rooms, include_nodes adds nodes by id, and the exclusions win over both."""

    include_rooms: Rooms = []  # only the configured nodes in these rooms (default: in any room)
    include_nodes: NodeIds = []  # these as well, configured or not (an id nobody named, say)
    exclude_rooms: Rooms = []  # never these rooms
    exclude_nodes: NodeIds = []  # never these nodes, whatever room they are moved to

    def check(self, root: Any) -> list[Problem]:
        problems: list[Problem] = []
        both = sorted(set(self.include_nodes) & set(self.exclude_nodes))
        if both:
            problems.append(("include_nodes", f"node(s) {', '.join(map(str, both))} also in exclude_nodes; "
                             "exclusion wins: list each node once"))
        rooms = {r.strip().casefold() for r in self.include_rooms} & {r.strip().casefold() for r in self.exclude_rooms}
        if rooms:
            problems.append(("include_rooms", f"room(s) {', '.join(sorted(rooms))} also in exclude_rooms; "
                             "exclusion wins: list each room once"))
        return problems


class HomeKitConfig(ExtensionSection):
    enabled: Bool = False
    name: Annotated[str, Text(r"[A-Za-z0-9][A-Za-z0-9 '._-]{0,63}",
                              "a name of letters, digits, spaces and '._-")] = "RuView Sensing"
    port: Annotated[int, Int(1, 65535)] = 51827  # the seed's
    address: OptionalAddress = None  # the address HomeKit controllers reach; null: this host's
    interfaces: Interfaces = None  # where mDNS announces the bridge; null: every interface
    advertise: Bool = True  # mDNS (_hap._tcp); off, controllers must be told the address
    expose: ExposeConfig = Field(default_factory=ExposeConfig)
