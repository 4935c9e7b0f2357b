"""What users set for a node at run time, kept in the state store (docs/state.md).

Names, rooms, privacy classes, expected hours, thresholds and the calibrated baseline are
committed here before a request is answered "ok" and before the change is applied, and read back
at start before any frame is admitted: a node demoted to `restricted` is restricted from its
first frame after a restart, a renamed node keeps its name, a calibrated node its baseline.

config.yaml stays the operator's: for name, room, expected hours and thresholds the value set at
run time is kept only while the config says what it said when the value was set, so editing
config.yaml afterwards wins. A privacy class is different (privacy rule 4): the stored class
applies whenever it is more private than the config's.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from bridge import names
from bridge.core.store import StoreScope
from bridge.nodes.config import NodesConfig
from bridge.nodes.presence import THRESHOLD_RANGES
from bridge.nodes.schedule import expected_hours
from bridge.privacy import PrivacyClass, PrivacyError, export_refusal, parse_class

log = logging.getLogger("bridge.nodes")

FOLLOWS_CONFIG = ("name", "room", "expected_hours", *THRESHOLD_RANGES)  # config edited since: config wins


def _key(node_id: int) -> str:
    return f"node/{node_id}"


CLEARABLE = ("room", "expected_hours")  # null stored: none, whatever config.yaml says


def check_field(field: str, value: Any) -> Any:
    """A stored or requested value, checked like the request API checks it; ValueError says why."""
    if value is None and field in CLEARABLE:
        return None
    if field == "name":
        return names.check_node_name(value)
    if field == "room":
        return names.check_room(value)
    if field == "privacy_class":
        cls = parse_class(value)
        if export_refusal(cls):
            raise PrivacyError(f"class {cls.label} {export_refusal(cls)}")
        return cls.label
    if field == "expected_hours":
        return expected_hours(value)
    if field in THRESHOLD_RANGES:
        lo, hi = THRESHOLD_RANGES[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"a number {lo:g}..{hi:g}")
        return float(value)
    if field == "baseline":
        if not isinstance(value, dict) or not isinstance(value.get("score"), (int, float)) or \
                not math.isfinite(value["score"]) or not 0 < value["score"] < 1e6 or \
                not isinstance(value.get("taken_at"), (int, float)) or value.get("how") not in ("calibration",
                                                                                                  "warm-up", "drift"):
            raise ValueError("a baseline {score, taken_at, how}")
        return {"score": float(value["score"]), "taken_at": float(value["taken_at"]), "how": value["how"]}
    raise ValueError(f"{field!r} is not a node setting")


class NodeSettings:
    """The nodes feature's scope of the state store, one record per node id."""

    def __init__(self, scope: StoreScope, config: NodesConfig) -> None:
        self.scope, self.config = scope, config

    def _config_value(self, node_id: int, field: str) -> Any:
        device = self.config.devices.get(node_id)
        value = getattr(device, field, None) if device is not None else None
        return value

    def load(self) -> dict[int, dict[str, Any]]:
        """Every node's stored settings that still apply, each field checked; the rest said once."""
        found: dict[int, dict[str, Any]] = {}
        for key, record in self.scope.items().items():
            if not key.startswith("node/"):
                continue
            node_id = int(key[5:]) if key[5:].isdigit() else -1
            if not names.is_node_id(node_id) or not isinstance(record, dict):
                log.warning("state store: ignored %r (not a node's settings)", key[:80])
                continue
            config_then = record.get("config")
            set_in_config: dict[str, Any] = config_then if isinstance(config_then, dict) else {}
            settings: dict[str, Any] = {}
            for field, value in record.items():
                if field == "config":
                    continue
                try:
                    settings[field] = check_field(field, value)
                except (ValueError, names.InvalidName) as exc:
                    log.warning("state store: ignored node %d's %s (%s)", node_id, field, exc)
                    continue
                if field in FOLLOWS_CONFIG and set_in_config.get(field) != self._config_value(node_id, field):
                    del settings[field]  # config.yaml was edited since: it says what the user wants now
            found[node_id] = settings
        return found

    def save(self, node_id: int, **changes: Any) -> None:
        """Commit changes (field=value; None removes a field); raises StoreError, nothing changed."""
        record = dict(self.scope.get(_key(node_id)) or {})
        set_in_config = dict(record.get("config") or {})
        for field, value in changes.items():
            if value is None and field not in CLEARABLE:
                record.pop(field, None)
                set_in_config.pop(field, None)
                continue
            record[field] = value
            if field in FOLLOWS_CONFIG:
                set_in_config[field] = self._config_value(node_id, field)
        record["config"] = set_in_config
        self.scope.put(_key(node_id), record)

    def forget(self, node_id: int) -> None:
        self.scope.delete(_key(node_id))

    def stored_class(self, node_id: int) -> PrivacyClass | None:
        label = (self.scope.get(_key(node_id)) or {}).get("privacy_class")
        return PrivacyClass[label.upper()] if isinstance(label, str) and label.upper() in PrivacyClass.__members__ \
            else None


def baseline_record(score: float, how: str) -> dict[str, Any]:
    return {"score": round(score, 6), "taken_at": round(time.time(), 3), "how": how}
