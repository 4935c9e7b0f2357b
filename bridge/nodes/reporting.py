"""The reporting policy: which of a node's numbers are worth telling anyone about.

A node measures about once a second (ten times with some firmware), and its scores, baseline and
signal strength move a little on every frame. Home Assistant's recorder stores a row whenever an
entity's state changes (identical consecutive states are not new rows; `force_update` is off),
so publishing every wobble cost ~154,000 rows per node per day. ESPresense (skip distance),
ESPHome (delta and throttle filters) and Zigbee2MQTT (a noisy `linkquality` off by default)
solve this at the source; so does this module.

What is published at once, whatever this policy says: presence, occupancy, motion, fall,
calibration, availability and events (the pipeline publishes those on the frame that changes
them). A numeric field named in FIELD_RULES is reported — its published value replaced — only:

- the first time it has a value;
- when its (optionally smoothed) value moved from the reported one by at least `delta`
  (absolute) or `relative` (a fraction of the reported value), and the field was last reported
  at least `min_interval` seconds ago;
- at the `heartbeat`: a value that moved at all since it was reported (at its precision).

Between reports the published state carries the reported value, so the node-state message can
go out again (to refresh `last_seen` and HA's `expire_after`) without changing any entity.
Every field not named here passes through unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class FieldRule:
    """When one numeric field is worth reporting again."""

    delta: float = 0.0  # absolute change that reports (0: not by absolute change)
    relative: float = 0.0  # change as a fraction of the reported value (0: not by relative change)
    smooth: float = 0.0  # exponential average's time constant, seconds (0: the value as measured)
    digits: int = 3  # precision of the reported value

    def moved(self, value: float, shown: float) -> bool:
        change = abs(value - shown)
        if not self.delta and not self.relative:
            return change > 0
        return bool((self.delta and change >= self.delta)
                    or (self.relative and change >= self.relative * abs(shown)))


# The defaults (config: nodes.reporting.fields, per node nodes.devices.<id>.reporting.fields).
FIELD_RULES: dict[str, FieldRule] = {
    # Home Assistant entities (diagnostic ones off by default there, but counted as if on)
    "presence_score": FieldRule(relative=0.5, smooth=30.0, digits=2),
    "baseline": FieldRule(relative=0.2, digits=2),
    # (the real recording's RSSI jumps 20-45 dB between frames now and then, its vital signs by
    # several a minute: two-minute averages and these steps keep them to their heartbeats,
    # python -m bench.ha_recorder)
    "rssi": FieldRule(delta=5.0, smooth=120.0, digits=0),
    "packet_loss": FieldRule(delta=0.005, digits=4),
    "breathing_bpm": FieldRule(delta=3.0, smooth=120.0, digits=1),
    "heart_bpm": FieldRule(delta=6.0, smooth=120.0, digits=0),
    # in the node state only (MQTT, HTTP): quieter messages, not HA rows
    "motion_score": FieldRule(delta=0.1, smooth=10.0),
    "motion_energy": FieldRule(delta=0.1, smooth=10.0),
    "anomaly_score": FieldRule(delta=0.1),
    "env_shift_score": FieldRule(delta=0.1),
    "coherence": FieldRule(delta=0.1, smooth=10.0),
    "noise_floor_dbm": FieldRule(delta=3.0, digits=0),
}
RULE_KEYS = ("delta", "relative", "smooth")  # what config may set per field

REFRESH = 30.0  # s: an unchanged state is published again this often (HA's expire_after is >= 60 s);
# 0: on every beat the node was heard on (the bridge before this policy)
HEARTBEAT = 900.0  # s: 96 a day; six HA numeric entities x 96 = 576 rows at most from heartbeats
MIN_INTERVAL = 60.0  # s: a numeric field reports at most this often


@dataclass(frozen=True, slots=True)
class ReportingPolicy:
    refresh: float = REFRESH
    heartbeat: float = HEARTBEAT  # 0: never
    min_interval: float = MIN_INTERVAL
    rules: Mapping[str, FieldRule] = field(default_factory=lambda: dict(FIELD_RULES))

    @classmethod
    def merged(cls, *layers: Mapping[str, Any] | None) -> "ReportingPolicy":
        """The defaults with each layer over the one before (the section, then the node's own).

        A layer is a plain mapping as config gives it: refresh, heartbeat, min_interval (None:
        not set), fields: {name: {delta, relative, smooth}} (None: not set)."""
        timing: dict[str, float] = {"refresh": REFRESH, "heartbeat": HEARTBEAT, "min_interval": MIN_INTERVAL}
        rules = dict(FIELD_RULES)
        for layer in layers:
            if not layer:
                continue
            timing.update({k: float(layer[k]) for k in timing if layer.get(k) is not None})
            for name, given in (layer.get("fields") or {}).items():
                rule = rules.get(name, FieldRule())
                changes = {k: float(v) for k, v in (given or {}).items() if k in RULE_KEYS and v is not None}
                rules[name] = FieldRule(changes.get("delta", rule.delta), changes.get("relative", rule.relative),
                                        changes.get("smooth", rule.smooth), rule.digits)
        return cls(timing["refresh"], timing["heartbeat"], timing["min_interval"], rules)


class Reporter:
    """One node's reported values: what its published state says, and since when."""

    __slots__ = ("policy", "_avg", "_avg_at", "_shown", "_shown_at")

    def __init__(self, policy: ReportingPolicy) -> None:
        self.policy = policy
        self._avg: dict[str, float] = {}
        self._avg_at: dict[str, float] = {}
        self._shown: dict[str, float] = {}
        self._shown_at: dict[str, float] = {}

    def report(self, fields: dict[str, Any], now: float) -> dict[str, Any]:
        """`fields` with each ruled numeric field replaced by its reported value (in place).

        Runs for every node on every beat it was heard on (255 nodes a second at most), so what
        it reads is bound once and a field the node does not send costs one lookup."""
        policy, shown_now, shown_at, avg = self.policy, self._shown, self._shown_at, self._avg
        min_interval, heartbeat = policy.min_interval, policy.heartbeat
        for key, rule in policy.rules.items():
            value = fields.get(key)
            if value is None or value.__class__ is bool or not isinstance(value, (int, float)):
                if key in shown_now or key in avg:
                    self._forget(key)
                continue
            if rule.smooth:
                value = self._smoothed(key, float(value), rule.smooth, now)
            shown = shown_now.get(key)
            if shown is None:
                fields[key] = self._show(key, value, rule, now)
                continue
            since = now - shown_at[key]
            if since >= min_interval and rule.moved(value, shown):
                fields[key] = self._show(key, value, rule, now)
            elif heartbeat and since >= heartbeat and _rounded(value, rule.digits) != shown:
                fields[key] = self._show(key, value, rule, now)
            else:
                fields[key] = int(shown) if rule.digits <= 0 else shown
        return fields

    def _smoothed(self, key: str, value: float, tau: float, now: float) -> float:
        if not tau:
            return value
        avg = self._avg.get(key)
        if avg is None:
            avg = value
        else:
            avg += (value - avg) * (1.0 - math.exp(min(0.0, self._avg_at[key] - now) / tau))
        self._avg[key], self._avg_at[key] = avg, now
        return avg

    def _show(self, key: str, value: float, rule: FieldRule, now: float) -> float | int:
        shown = self._shown[key] = _rounded(value, rule.digits)
        self._shown_at[key] = now
        return int(shown) if rule.digits <= 0 else shown

    def _forget(self, key: str) -> None:
        for held in (self._avg, self._avg_at, self._shown, self._shown_at):
            held.pop(key, None)


def _rounded(value: float, digits: int) -> float:
    return float(round(value, digits)) if digits > 0 else float(round(value))
