"""Rooms from the node directory: which nodes make a room, and whether it is occupied.

One home for the rule every edge that speaks of rooms uses (HomeKit's accessories, assist's
"is anyone in the kitchen?"): nodes grouped by their configured room, a node without one a
room of its own named by the node; only nodes that may cross an edge (privacy rule 2) count;
an offline room is unknown, never "empty". Only presence, motion and availability are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from bridge import privacy
from bridge.core.directory import NodeInfo
from bridge.privacy import PrivacyClass


@dataclass(frozen=True)
class RoomView:
    """A room as its nodes' gated state shows it."""

    name: str
    node_ids: tuple[int, ...]
    motion: bool
    occupied: bool
    online: bool
    privacy_class: int  # the most private of its nodes: 3 if any is Restricted
    restricted: bool


def room_of(node: NodeInfo) -> str:
    return (node.room or node.name).strip()[:64] or node.name


def rooms(nodes: Iterable[NodeInfo]) -> dict[str, RoomView]:
    """Room name -> view, for the nodes that may cross an edge (rule 2: one gate, privacy.py)."""
    grouped: dict[str, list[NodeInfo]] = {}
    for node in nodes:
        if privacy.export_refusal(node.privacy_class) is None:
            grouped.setdefault(room_of(node), []).append(node)
    out = {}
    for name, members in grouped.items():
        online = [n for n in members if n.online]
        out[name] = RoomView(
            name=name, node_ids=tuple(sorted(n.node_id for n in members)),
            motion=any(bool((n.state or {}).get("motion")) for n in online),
            occupied=any(bool((n.state or {}).get("occupancy") or (n.state or {}).get("presence")) for n in online),
            online=bool(online),
            privacy_class=int(max(n.privacy_class for n in members)),
            restricted=any(n.privacy_class is PrivacyClass.RESTRICTED for n in members))
    return out
