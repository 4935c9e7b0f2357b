"""The privacy gate: what of a node's data may leave this host (DESIGN.md invariants).

This module is the one home of the rules; MQTT state, Home Assistant
discovery, events, and every later edge (HTTP, HomeKit, plugins, assist) ask
it instead of keeping a copy.

1. Raw and compressed CSI never leave: they stop here, counted, before any
   other stage sees them.
2. Only Anonymous (2) and Restricted (3) nodes are exported; Raw/Derived are
   refused at start by config validation (exit 2), never downgraded silently.
3. Restricted strips breathing, heart rate, anomaly, environment shift and
   coherence from every output, and the entities that would show them are not
   announced. The events themselves still cross, without their scores.
4. A node's class can only move toward more privacy (2 -> 3) at run time.
5. Event names describe ambient awareness, never "intruder" or "threat".
"""

from __future__ import annotations

import threading
from collections import Counter
from enum import IntEnum
from typing import Any, Iterable


class PrivacyClass(IntEnum):
    RAW = 0
    DERIVED = 1
    ANONYMOUS = 2
    RESTRICTED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


EXPORTABLE = (PrivacyClass.ANONYMOUS, PrivacyClass.RESTRICTED)
CLASS_RULE = "raw, derived, anonymous, restricted or 0..3"

# frame kinds that never leave the host (rule 1)
RAW_KINDS = frozenset({"raw_csi", "compressed_csi"})

# node-state and event fields Restricted strips (rule 3)
RESTRICTED_FIELDS = frozenset({
    "breathing_bpm", "heart_bpm", "breathing_valid", "heart_valid", "anomaly", "anomaly_score",
    "env_shift", "env_shift_score", "coherence", "node_coherence",
})

# every event a node can raise, for every exportable class (rule 5 names)
NODE_EVENTS = ("unknown_presence", "presence_cleared", "unexpected_occupancy", "fall_detected",
               "unrecognized_activity_pattern", "node_rebooted")


class PrivacyError(ValueError):
    pass


def parse_class(value: Any) -> PrivacyClass:
    """A class from its name or number; a JSON/YAML boolean is never a number."""
    if isinstance(value, str) and value.upper() in PrivacyClass.__members__:
        return PrivacyClass[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return PrivacyClass(value)
    raise PrivacyError(f"expected {CLASS_RULE}")


def export_refusal(cls: PrivacyClass) -> str | None:
    """Why a class may not be exported (rule 2), or None when it may."""
    if cls in EXPORTABLE:
        return None
    return (f"is {cls.label} ({int(cls)}); only anonymous (2) or restricted (3) may leave this host "
            "(privacy rule 2)")


def allows_field(cls: PrivacyClass, field: str) -> bool:
    return cls < PrivacyClass.RESTRICTED or field not in RESTRICTED_FIELDS


def allows_fields(cls: PrivacyClass, fields: Iterable[str]) -> bool:
    """Whether an output reading these fields (e.g. an HA entity) may exist at this class."""
    return all(allows_field(cls, f) for f in fields)


def events_for(cls: PrivacyClass) -> tuple[str, ...]:
    """The node events a class publishes: all of them; Restricted ones carry no scores."""
    return NODE_EVENTS if cls in EXPORTABLE else ()


def redact(cls: PrivacyClass, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields a class lets out; the input is not modified."""
    if cls < PrivacyClass.RESTRICTED:
        return fields
    return {k: v for k, v in fields.items() if k not in RESTRICTED_FIELDS}


class PrivacyGate:
    """Per-node classes, demotion, and the counters of what the rules stopped."""

    def __init__(self, default: int, per_node: dict[int, int]) -> None:
        for cls in [default, *per_node.values()]:
            reason = export_refusal(PrivacyClass(cls))
            if reason:
                raise PrivacyError(f"class {cls} {reason}")
        self._default = PrivacyClass(default)
        self._classes = {n: PrivacyClass(c) for n, c in per_node.items()}
        self._lock = threading.Lock()
        self.dropped: Counter[str] = Counter()  # frames stopped, by kind
        self.stripped = 0  # fields removed by Restricted

    def class_of(self, node_id: int) -> PrivacyClass:
        return self._classes.get(node_id, self._default)

    def admit(self, kind: str) -> bool:
        """False for frames that must never leave the host (raw and compressed CSI)."""
        if kind in RAW_KINDS:
            self.dropped[kind] += 1
            return False
        return True

    def redact(self, node_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        cls = self.class_of(node_id)
        kept = redact(cls, fields)
        self.stripped += len(fields) - len(kept)
        return kept

    def check_demotion(self, node_id: int, to: object) -> PrivacyClass:
        """The class a demotion would give; raises without changing anything if it is refused."""
        target = parse_class(to)
        reason = export_refusal(target)
        if reason:
            raise PrivacyError(f"node {node_id}: class {target.label} {reason}")
        current = self.class_of(node_id)
        if target < current:
            raise PrivacyError(f"node {node_id} is {current.label}; a class can only move "
                               "toward more privacy (privacy rule 4)")
        return target

    def demote(self, node_id: int, to: object) -> PrivacyClass:
        """Move a node toward more privacy; refuses any move back."""
        with self._lock:
            target = self.check_demotion(node_id, to)
            self._classes[node_id] = target
            return target

    def stats(self) -> dict[str, Any]:
        return {"dropped": dict(self.dropped), "fields_stripped": self.stripped}
