"""The privacy gate: what of a node's data may leave this host (DESIGN.md invariants).

1. Raw and compressed CSI never leave: they stop here, counted, before any
   other stage sees them.
2. Only Anonymous (2) and Restricted (3) nodes are exported; Raw/Derived are
   refused at start by config validation (exit 2), never downgraded silently.
3. Restricted strips breathing, heart rate, anomaly, environment shift and
   coherence from every output.
4. A node's class can only move toward more privacy (2 -> 3) at run time.
"""

from __future__ import annotations

import threading
from collections import Counter
from enum import IntEnum
from typing import Any

from bridge.nodes.codec import CompressedCsi, Frame, RawCsi


class PrivacyClass(IntEnum):
    RAW = 0
    DERIVED = 1
    ANONYMOUS = 2
    RESTRICTED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


RESTRICTED_FIELDS = frozenset({
    "breathing_bpm", "heart_bpm", "breathing_valid", "heart_valid", "anomaly", "anomaly_score",
    "env_shift", "env_shift_score", "coherence", "node_coherence",
})


class PrivacyError(ValueError):
    pass


class PrivacyGate:
    def __init__(self, default: int, per_node: dict[int, int]) -> None:
        for cls in [default, *per_node.values()]:
            if cls < PrivacyClass.ANONYMOUS:
                raise PrivacyError(f"class {cls} may not be exported (privacy rule 2)")
        self._default = PrivacyClass(default)
        self._classes = {n: PrivacyClass(c) for n, c in per_node.items()}
        self._lock = threading.Lock()
        self.dropped: Counter[str] = Counter()  # frames stopped, by kind
        self.stripped = 0  # fields removed by Restricted

    def class_of(self, node_id: int) -> PrivacyClass:
        return self._classes.get(node_id, self._default)

    def admit(self, frame: Frame) -> bool:
        """False for frames that must never leave the host (raw and compressed CSI)."""
        if isinstance(frame, (RawCsi, CompressedCsi)):
            self.dropped[frame.kind] += 1
            return False
        return True

    def redact(self, node_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields this node's class lets out; the input is not modified."""
        if self.class_of(node_id) < PrivacyClass.RESTRICTED:
            return fields
        kept = {k: v for k, v in fields.items() if k not in RESTRICTED_FIELDS}
        self.stripped += len(fields) - len(kept)
        return kept

    def demote(self, node_id: int, to: int) -> PrivacyClass:
        """Move a node toward more privacy; refuses any move back."""
        with self._lock:
            current = self.class_of(node_id)
            if to < current:
                raise PrivacyError(f"node {node_id} is {current.label}; a class can only move "
                                   "toward more privacy (privacy rule 4)")
            self._classes[node_id] = PrivacyClass(to)
            return self._classes[node_id]

    def stats(self) -> dict[str, Any]:
        return {"dropped": dict(self.dropped), "fields_stripped": self.stripped}
