"""The sensing API's answers, in the seed's shapes, built from the gated node directory.

Pure functions: a `NodeInfo` (whose state the privacy gate has already
redacted) in, a JSON-ready dict out. Whatever a class withholds is `null`
with the reason in `withheld`, so an agent can tell "not allowed" from "not
measured"; the rule itself comes from bridge/privacy.py, never from here.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from bridge import __version__, privacy
from bridge.core.directory import NodeInfo
from bridge.privacy import PrivacyClass

SCHEMA_VERSION = 2
RAW_WITHHELD = ("window: raw CSI amplitudes never leave the bridge host (privacy invariant 1); "
                "use /api/v1/vitals/<node>/latest for what a node senses")
RULE_3 = "withheld: the node is restricted (privacy rule 3)"
SEMANTIC_EVENTS = ("unknown_presence", "unexpected_occupancy", "unrecognized_activity_pattern")


class NodeNotFound(LookupError):
    """No such node; str() says which nodes there are."""


def resolve(nodes, ref: str, default: str | None) -> NodeInfo:
    """A node by id or name (`nodes`: the directory view, with get/by_name/all); `default`
    (what rvagent sends without one) is the configured default node, or the only node there is."""
    if ref == "default":
        if default:
            ref = default
        else:
            everyone = nodes.all()
            if len(everyone) == 1:
                return everyone[0]
            raise NodeNotFound(f"'default' means http.default_node, or the only node; there are "
                               f"{len(everyone)}: {_names(everyone)}")
    node = nodes.get(int(ref)) if ref.isascii() and ref.isdigit() and len(ref) < 12 else None  # "²" is a digit too
    node = node or nodes.by_name(ref)
    if node is None:
        raise NodeNotFound(f"no node {ref[:64]!r} (a name or an id; known: {_names(nodes.all())})")
    return node


def _names(nodes: Iterable[NodeInfo]) -> str:
    return ", ".join(f"{n.name} ({n.node_id})" for n in nodes) or "none yet"


def _state(node: NodeInfo) -> Mapping[str, Any]:
    return node.state or {}


def timestamp_ms(node: NodeInfo) -> int:
    seen = _state(node).get("last_seen")
    if isinstance(seen, str):
        try:
            return int(datetime.fromisoformat(seen).timestamp() * 1000)
        except ValueError:
            pass
    return 0


def confidence(node: NodeInfo) -> float | None:
    """How clearly the presence decision stands, 0..1: the smoothed score's distance from the
    baseline in units of the enter threshold (both on a log scale); null while unknown."""
    s = _state(node)
    score, baseline, present = s.get("presence_score"), s.get("baseline"), s.get("presence")
    enter = (s.get("thresholds") or {}).get("enter_ratio")
    if present is None or not score or not baseline or not enter or enter <= 1:
        return None
    lift = math.log(score / baseline) / math.log(enter)
    return round(min(1.0, max(0.0, lift if present else 1.0 - lift)), 3)


def _withheld(node: NodeInfo, fields: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """{output name: value or None}, {output name: why withheld} for state fields by class."""
    s = _state(node)
    values: dict[str, Any] = {}
    why: dict[str, str] = {}
    for out, field in fields.items():
        if not privacy.allows_field(node.privacy_class, field):
            values[out], why[out] = None, RULE_3
        else:
            values[out] = s.get(field)
    return values, why


def vitals(node: NodeInfo) -> dict[str, Any]:
    """EdgeVitalsMessage, as rvagent's presence and vitals tools read it."""
    s = _state(node)
    values, why = _withheld(node, {"breathing_rate_bpm": "breathing_bpm", "heartrate_bpm": "heart_bpm"})
    out = {"node_id": str(node.node_id), "name": node.name, "room": node.room,
           "timestamp_ms": timestamp_ms(node), "presence": s.get("presence"),
           "n_persons": s.get("persons"), "confidence": confidence(node), **values,
           "motion": s.get("motion"), "online": node.online, "privacy_class": node.privacy_class.label}
    if why:
        out["withheld"] = why
    return out


def bfld_last_scan(node: NodeInfo) -> dict[str, Any]:
    s = _state(node)
    return {"node_id": str(node.node_id), "name": node.name, "timestamp_ns": timestamp_ms(node) * 1_000_000,
            "identity_risk_score": None,  # the bridge never estimates who someone is
            "privacy_class": node.privacy_class.label, "person_count": s.get("persons"),
            "confidence": confidence(node), "presence": s.get("presence")}


def subscription(node: NodeInfo, subscription_id: str, duration_s: float, topics) -> dict[str, Any]:
    return {"subscription_id": subscription_id, "node_id": str(node.node_id), "name": node.name,
            "duration_s": duration_s, "expires_at": int((time.time() + duration_s) * 1000),
            "topic": topics.node_event(node.name),
            "endpoint_hint": f"/api/v1/events/stream?node={node.name}"}


def semantic_events(node: NodeInfo, latest: Mapping[str, Mapping[str, Any]], schedule_aware: bool) -> dict[str, Any]:
    events = {name: dict(latest[name]) if name in latest else None for name in SEMANTIC_EVENTS}
    return {"node_id": str(node.node_id), "name": node.name, "privacy_class": node.privacy_class.label,
            "events": events, "schedule_aware": schedule_aware,
            "redacted_fields": sorted(privacy.RESTRICTED_FIELDS) if node.privacy_class is PrivacyClass.RESTRICTED
            else [], "identity_fields": "never present"}


def node_summary(node: NodeInfo) -> dict[str, Any]:
    """One node as the status page and /api/v1/sensing/latest show it (gated fields only)."""
    s = _state(node)
    keep = ("presence", "occupancy", "motion", "fall", "persons", "presence_score", "baseline", "calibrating",
            "breathing_bpm", "heart_bpm", "rssi", "packet_loss", "last_seen")
    return {"node_id": node.node_id, "name": node.name, "room": node.room, "online": node.online,
            "privacy_class": node.privacy_class.label, "known_only": node.known_only,
            **{k: s.get(k) for k in keep if privacy.allows_field(node.privacy_class, k)}}


def sensing_latest(nodes: list[NodeInfo]) -> dict[str, Any]:
    """The seed's schema v2 surface, without its raw CSI window."""
    return {"schema_version": SCHEMA_VERSION, "captured_at": datetime.now(timezone.utc).isoformat(),
            "window": None, "withheld": [RAW_WITHHELD], "nodes": [node_summary(n) for n in nodes]}


def registry(modules: list[dict[str, Any]], nodes: list[NodeInfo]) -> dict[str, Any]:
    """The edge registry in rvagent's shape: the modules this bridge runs (its WASM plugins) and,
    alongside them as the seed's server did, its nodes — as cogs of category `node`, since
    `registry.cogs` is what rvagent passes on (its category filter tells the two apart)."""
    now = datetime.now(timezone.utc).isoformat()
    plugins = [{"id": m.get("cog_id") or m["id"], "name": m.get("name"), "version": m.get("version"),
                "category": m.get("category") or "plugin", "state": m.get("state"), "domain": m.get("domain")}
               for m in modules]
    node_cogs = [{"id": f"node-{n.node_id}", "name": n.name, "category": "node", "version": None,
                  "node_id": n.node_id, "room": n.room, "online": n.online,
                  "privacy_class": n.privacy_class.label} for n in nodes]
    return {"registry": {"cogs": plugins + node_cogs, "plugins": plugins, "nodes": node_cogs},
            "fetched_at": now, "ttl_seconds": 0, "stale": False, "upstream_url": None, "upstream_sha256": None,
            "source": f"ruview-bridge {__version__} (what runs on this bridge, not an upstream catalogue)"}


def health(bridge_health: Mapping[str, Any], nodes: list[NodeInfo]) -> dict[str, Any]:
    mqtt = bridge_health.get("mqtt", {})
    frames = (bridge_health.get("nodes") or {}).get("frames_per_second")
    return {"status": "ok" if mqtt.get("connected") else "degraded", "version": __version__,
            "uptime_s": bridge_health.get("uptime_s"), "mqtt": {"connected": mqtt.get("connected"),
                                                              "broker": mqtt.get("broker")},
            "nodes": {"count": len(nodes), "online": sum(1 for n in nodes if n.online)},
            "frames_per_second": frames}
