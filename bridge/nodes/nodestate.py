"""One node's live state: the latest frame of each kind, its presence engine, its clock.

The pipeline touches a view for every frame (up to ~100,000/s), so per frame
it only keeps the frame, steps the engine and reads the few flags that are
published at once or raise events. The JSON state is built from the view
only when it is published, at most every publish interval.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from bridge.nodes import codec
from bridge.nodes.codec import FALL_BIT
from bridge.nodes.presence import PresenceEngine
from bridge.nodes.reporting import Reporter, ReportingPolicy


class Flags(NamedTuple):
    """What publishes at once when it changes, and what events are made of."""

    presence: bool | None
    occupancy: bool | None
    calibrating: bool
    motion: bool | None
    fall: bool
    anomaly: bool


URGENT = ("presence", "occupancy", "calibrating", "motion", "fall")
NO_FLAGS = Flags(None, None, False, None, False, False)
MOTION, ANOMALY = (Flags._fields.index(name) for name in ("motion", "anomaly"))
_flags = tuple.__new__  # Flags from a plain tuple, skipping NamedTuple's Python __new__


def frame_fields(frame: codec.Frame) -> dict[str, Any]:
    """The node-state fields a frame contributes (before the privacy gate)."""
    if isinstance(frame, codec.FeatureState):
        fields: dict[str, Any] = {
            "presence_score": round(frame.presence_score, 3),
            "motion_score": round(frame.motion_score, 3),
            "mode": frame.mode, "calibrating": frame.calibrating,
            "anomaly_score": round(frame.anomaly_score, 3),
            "env_shift": frame.env_shift, "env_shift_score": round(frame.env_shift_score, 3),
            "coherence": round(frame.node_coherence, 3),
        }
        if frame.respiration_valid:
            fields["breathing_bpm"] = round(frame.respiration_bpm, 1)
        if frame.heartbeat_valid:
            fields["heart_bpm"] = round(frame.heartbeat_bpm, 1)
        return fields
    if isinstance(frame, (codec.EdgeVitals, codec.FusedVitals)):
        fields = {"motion": frame.motion, "fall": frame.fall,
                  "motion_energy": round(frame.motion_energy, 3), "persons": frame.n_persons}
        if frame.breathing_bpm > 0:
            fields["breathing_bpm"] = round(frame.breathing_bpm, 1)
        if frame.heart_bpm > 0:
            fields["heart_bpm"] = round(frame.heart_bpm, 1)
        return fields
    if isinstance(frame, codec.MeshHealth):
        return {"mesh_role": frame.role, "packet_yield": frame.pkt_yield,
                "noise_floor_dbm": frame.noise_floor_dbm}
    if isinstance(frame, codec.MeshAnomaly):
        return {"anomaly": frame.unrecognized, "anomaly_score": round(frame.anomaly_score, 3)}
    return {}


_VITALS = (codec.EdgeVitals, codec.FusedVitals)


class NodeState:
    __slots__ = ("engine", "latest", "last_kind", "flags", "clock", "clock_offset", "scored_by",
                 "dirty_since", "occupied_hint", "falls", "reporter", "published", "published_at")

    def __init__(self, engine: PresenceEngine, policy: ReportingPolicy | None = None) -> None:
        self.engine = engine
        self.reporter = Reporter(policy or ReportingPolicy())  # what its published numbers say (reporting.py)
        self.published: dict[str, Any] | None = None  # the last state published, but its clock fields
        self.published_at = 0.0
        self.latest: dict[str, codec.Frame] = {}  # kind -> frame, in arrival order
        self.last_kind: str | None = None  # the kind `latest` ends with
        self.flags = NO_FLAGS
        self.clock: float | None = None  # node time (s) of the latest timed frame
        self.clock_offset = 0.0
        self.scored_by: str | None = None  # the frame kind that feeds the engine
        self.dirty_since: float | None = None
        self.occupied_hint: bool | None = None  # the node's vitals: persons > 0 (None: no vitals yet)
        self.falls = 0  # bit per source saying "fall": 1 feature state, 2 vitals, 4 mesh alert

    def add(self, frame: codec.Frame, now: float) -> Flags:
        """Take a frame; returns the flags after it (compare with the previous `flags`)."""
        kind = frame.kind
        latest = self.latest
        if kind is not self.last_kind:  # move it to the end; a repeat of the last kind is already there
            latest.pop(kind, None)      # (pop and insert every frame made the dict resize every few)
            self.last_kind = kind
        latest[kind] = frame
        if self.dirty_since is None:
            self.dirty_since = now
        flags, engine = self.flags, self.engine
        if isinstance(frame, codec.FeatureState):  # kind == "feature_state"
            self.scored_by = kind
            t = self._node_time(frame.ts_us * 1e-6)
            engine.step(t, frame.presence_score, self.occupied_hint)
            falls = self.falls = (self.falls | 1) if frame.quality_flags & FALL_BIT else (self.falls & ~1)
            return _flags(Flags, (engine.present, engine.occupied(t), engine.calibrating,
                                  flags[MOTION], falls != 0, flags[ANOMALY]))
        if isinstance(frame, _VITALS):
            t = self._node_time(frame.timestamp_ms * 1e-3)
            self.occupied_hint = frame.n_persons > 0
            if self.scored_by != "feature_state":  # vitals-only firmware: score from vitals
                self.scored_by = kind
                engine.step(t, frame.presence_score, self.occupied_hint)
            falls = self.falls = (self.falls | 2) if frame.fall else (self.falls & ~2)
            return _flags(Flags, (engine.present, engine.occupied(t), engine.calibrating,
                                  frame.motion, falls != 0, flags[ANOMALY]))
        if isinstance(frame, codec.MeshAnomaly):
            falls = self.falls = (self.falls | 4) if frame.fall else (self.falls & ~4)
            return flags._replace(fall=falls != 0, anomaly=frame.unrecognized)
        return flags

    def _node_time(self, t: float) -> float:
        """The node's own clock, kept monotonic across reboots.

        Device time, not arrival time: network jitter and replay speed then cannot
        bend the engine's windows and hold times.
        """
        if self.clock is None:
            self.clock = t
        elif t + self.clock_offset < self.clock - 1.0:
            self.clock_offset = self.clock - t  # clock restarted (reboot): continue from there
            self.clock = t + self.clock_offset
        # a late datagram, or vitals (ms) a tick behind feature state (us), leaves the clock alone
        elif t + self.clock_offset > self.clock:
            self.clock = t + self.clock_offset
        return self.clock

    def fields(self) -> dict[str, Any]:
        """Everything the view knows, latest frame winning, then the engine's decision."""
        out: dict[str, Any] = {}
        for frame in self.latest.values():
            out.update(frame_fields(frame))
        if self.scored_by is not None:
            d = self.engine.decision(self.clock or 0.0)
            out.update(presence=d.present, occupancy=d.occupied, presence_score=d.smoothed,
                       baseline=d.baseline, calibrating=d.calibrating)
        if "fall" in out or self.falls:
            out["fall"] = self.falls != 0  # any source saying fall, not the latest frame's word
        return out
