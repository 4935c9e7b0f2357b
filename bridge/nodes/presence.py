"""Presence against a calibrated per-node baseline.

A node's presence_score is raw phase variance: about 0.7-1.5 in an empty
room and 2-36 with people, differing per node and placement, and noisy
(single frames jump 10x). So the engine works on log(score):

1. smooth: the median of the last `window` seconds of log-scores;
2. baseline: learned at start (a low percentile of the first `warmup`
   seconds), on demand (`calibrate()`: the median over `calibration`
   seconds of an empty room), and tracked slowly while quiet (exponential
   drift with time constant `drift_tau`);
3. decide with hysteresis: present when smoothed - baseline > ln(enter_ratio),
   absent again only after it stays below ln(exit_ratio) for `hold` seconds.

Until a baseline exists presence is None (unknown), never a fake "empty".
Occupancy is presence seen within the last `occupancy_window` seconds.

Starting in an occupied room: the warm-up's low percentile is then a person's
level, and calling that "empty" would hide them for good. So when the node's
own vitals say someone is there (persons > 0) as warm-up ends, the engine does
not take a baseline: it reports present, trusts the vitals until they say the
room is empty, and only then learns the empty-room baseline over `warmup`
seconds (still reporting present meanwhile), after which it decides as usual.
Nodes that send no vitals give no hint and warm up as before.
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


THRESHOLD_RANGES = {  # what config, `/set` and HA number entities accept for the tunable thresholds
    "enter_ratio": (1.1, 100.0), "exit_ratio": (1.0, 100.0), "hold": (0.0, 3600.0)}


@dataclass(slots=True)
class PresenceSettings:
    enter_ratio: float = 3.0
    exit_ratio: float = 1.8
    hold: float = 5.0
    window: float = 2.0
    warmup: float = 10.0
    calibration: float = 30.0
    drift_tau: float = 600.0
    occupancy_window: float = 60.0
    # the ratios in log space, where the engine compares (kept in step by __setattr__)
    ln_enter: float = field(init=False, repr=False, compare=False)
    ln_exit: float = field(init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "enter_ratio":
            object.__setattr__(self, "ln_enter", math.log(value))
        elif name == "exit_ratio":
            object.__setattr__(self, "ln_exit", math.log(value))

    @classmethod
    def merged(cls, base: Mapping[str, Any], override: Mapping[str, Any]) -> "PresenceSettings":
        names = {f.name for f in fields(cls) if f.init}
        values = {k: v for k, v in base.items() if k in names}
        values.update({k: v for k, v in override.items() if k in names and v is not None})
        return cls(**values)


@dataclass
class PresenceDecision:
    present: bool | None
    occupied: bool | None
    smoothed: float | None  # in score units
    baseline: float | None  # in score units
    calibrating: bool


_LOG_FLOOR = math.log(1e-3)  # a score of 0 (no measurement) must not be -inf


@dataclass(slots=True)
class PresenceEngine:
    settings: PresenceSettings = field(default_factory=PresenceSettings)
    present: bool | None = None
    baseline_log: float | None = None
    last_present_at: float | None = None
    _window: deque = field(default_factory=deque)  # (t, log score)
    _sorted: list = field(default_factory=list)
    _learn: list = field(default_factory=list)
    _learn_until: float | None = None
    calibrating: bool = False  # learning the baseline on demand (`calibrate()`)
    _below_since: float | None = None
    _last_t: float | None = None
    _smoothed: float | None = None
    _occupied_start: bool = False  # warm-up ended with someone in the room: waiting for it to empty
    learned: int = 0  # baselines learned so far (warm-up or calibration): the store keeps the newest
    learned_by: str = ""  # how the newest was learned: "calibration" or "warm-up"

    def restore(self, baseline: float) -> None:
        """Start from a stored baseline (score units) instead of warming up: a restart in an
        occupied room must not learn the people as the empty room."""
        self.baseline_log = math.log(baseline) if baseline > 1e-3 else _LOG_FLOOR
        self._learn, self._learn_until, self.calibrating, self._occupied_start = [], None, False, False

    @property
    def baseline(self) -> float | None:
        return math.exp(self.baseline_log) if self.baseline_log is not None else None

    def calibrate(self, now: float) -> None:
        """Relearn the baseline from the next `calibration` seconds (the room should be empty)."""
        self._learn, self._learn_until, self.calibrating = [], now + self.settings.calibration, True

    def update(self, t: float, score: float) -> PresenceDecision:
        self.step(t, score)
        return self.decision(t)

    def step(self, t: float, score: float, occupied_hint: bool | None = None) -> None:
        """Take one score at node time t (seconds); the hot path, so it builds no decision.

        occupied_hint: what the node's vitals last said (persons > 0), None if it sends none.
        """
        s = self.settings
        x = math.log(score) if score > 1e-3 else _LOG_FLOOR
        window, ordered = self._window, self._sorted
        window.append((t, x))
        insort(ordered, x)
        horizon = t - s.window
        while window[0][0] < horizon:
            ordered.remove(window.popleft()[1])
        n = len(ordered)
        mid = n >> 1
        smoothed = self._smoothed = ordered[mid] if n & 1 else (ordered[mid - 1] + ordered[mid]) * 0.5

        if self._occupied_start:
            self.last_present_at = t
            if occupied_hint is False:  # the vitals say the room is empty now: learn it
                self._occupied_start = False
                self._learn, self._learn_until = [], t + s.warmup
            self._last_t = t
            return
        if self._learn_until is None and self.baseline_log is None:
            self._learn_until = t + s.warmup
        if self._learn_until is not None:
            self._learn.append(smoothed)
            if t >= self._learn_until and occupied_hint and not self.calibrating and self.baseline_log is None:
                self._learn, self._learn_until = [], None  # someone is here: this was no empty room
                self._occupied_start, self.present, self.last_present_at = True, True, t
                self._last_t = t
                return
            if t >= self._learn_until:
                learned = sorted(self._learn)
                # warm-up may include people: take a low percentile; calibration is of an empty room
                pick = 0.5 if self.calibrating else 0.1
                pick = 0.5 if self.present else pick  # learned after an occupied start: the room was empty
                self.baseline_log = learned[int(pick * (len(learned) - 1))]
                self.learned += 1
                self.learned_by = "calibration" if self.calibrating else "warm-up"
                self._learn, self._learn_until, self.calibrating = [], None, False
                self._below_since = None
                self.present = smoothed - self.baseline_log > s.ln_enter
                if self.present:
                    self.last_present_at = t
            self._last_t = t
            return

        excess = smoothed - self.baseline_log
        quiet = excess < s.ln_exit
        if excess > s.ln_enter:
            self.present, self._below_since = True, None
        elif self.present:
            if not quiet:
                self._below_since = None
            else:
                if self._below_since is None:
                    self._below_since = t
                if t - self._below_since >= s.hold:
                    self.present, self._below_since = False, None
        if self.present:
            self.last_present_at = t
        elif quiet and self._last_t is not None and t > self._last_t:
            # quiet: follow slow drift of the empty-room level
            self.baseline_log += (smoothed - self.baseline_log) * (1 - math.exp((self._last_t - t) / s.drift_tau))
        self._last_t = t

    def occupied(self, now: float) -> bool | None:
        if self.present is None:
            return None
        return self.present or (self.last_present_at is not None and
                                now - self.last_present_at <= self.settings.occupancy_window)

    def decision(self, now: float) -> PresenceDecision:
        return PresenceDecision(
            self.present, self.occupied(now),
            round(math.exp(self._smoothed), 3) if self._smoothed is not None else None,
            round(math.exp(self.baseline_log), 3) if self.baseline_log is not None else None,
            self.calibrating)
