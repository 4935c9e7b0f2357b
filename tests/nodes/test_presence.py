"""Presence engine: baseline learning, hysteresis, hold, drift, calibration."""

from __future__ import annotations

import math
import random

from bridge.nodes.presence import PresenceEngine, PresenceSettings


def lognormal(rng, median, spread=0.35):
    return math.exp(rng.gauss(math.log(median), spread))


def run(engine, rng, start, seconds, median, rate=5.0):
    out = []
    for i in range(int(seconds * rate)):
        t = start + i / rate
        out.append((t, engine.update(t, lognormal(rng, median))))
    return out


def edges(decisions):
    prev, found = None, []
    for t, d in decisions:
        if d.present is not None and d.present != prev:
            if prev is not None:
                found.append((t, d.present))
            prev = d.present
    return found


def test_unknown_until_baseline_then_empty():
    rng = random.Random(1)
    engine = PresenceEngine()
    first = run(engine, rng, 0, 9, 1.0)
    assert all(d.present is None and d.occupied is None for _, d in first)
    later = run(engine, rng, 9, 20, 1.0)
    assert later[-1][1].present is False and 0.7 < later[-1][1].baseline < 1.4


def test_enter_and_leave_give_one_edge_each_without_flapping():
    rng = random.Random(7)
    engine = PresenceEngine()
    quiet = run(engine, rng, 0, 30, 1.0)
    visit = run(engine, rng, 30, 40, 8.0, )
    after = run(engine, rng, 70, 40, 1.0)
    found = edges(quiet + visit + after)
    assert [p for _, p in found] == [True, False]
    assert found[0][0] - 30 <= 2.0, "presence must come on within 2 s of the enter"
    assert found[1][0] - 70 >= 5.0  # the hold keeps it on through brief quiet


def test_noisy_spikes_in_an_empty_room_do_not_trigger():
    rng = random.Random(3)
    engine = PresenceEngine()
    out = run(engine, rng, 0, 20, 1.0)
    for i in range(300):  # single-frame 10x spikes now and then
        t = 20 + i / 5
        score = 12.0 if i % 37 == 0 else lognormal(rng, 1.0)
        out.append((t, engine.update(t, score)))
    assert not any(d.present for _, d in out)


def test_on_demand_calibration_uses_the_empty_room_median():
    rng = random.Random(5)
    engine = PresenceEngine(PresenceSettings(calibration=10))
    run(engine, rng, 0, 15, 4.0)  # learned a too-high baseline (room was busy at start)
    engine.calibrate(15)
    out = run(engine, rng, 15, 12, 1.2)
    assert any(d.calibrating for _, d in out[:40]) and not out[-1][1].calibrating
    assert 0.9 < out[-1][1].baseline < 1.6


def test_slow_drift_is_followed_while_quiet():
    rng = random.Random(9)
    engine = PresenceEngine(PresenceSettings(drift_tau=60))
    run(engine, rng, 0, 20, 1.0)
    out = run(engine, rng, 20, 600, 1.6)  # the empty-room level creeps up 60 %
    assert out[-1][1].present is False and out[-1][1].baseline > 1.4


def test_occupancy_lingers_after_presence():
    rng = random.Random(11)
    engine = PresenceEngine(PresenceSettings(occupancy_window=30))
    run(engine, rng, 0, 20, 1.0)
    run(engine, rng, 20, 20, 8.0)
    out = run(engine, rng, 40, 60, 1.0)
    by_time = {round(t): d for t, d in out}
    assert by_time[55].present is False and by_time[55].occupied is True
    assert by_time[99].occupied is False


def test_starting_in_an_occupied_room_the_vitals_keep_it_from_being_called_empty():
    rng = random.Random(4)
    engine = PresenceEngine()
    t = 0.0
    for i in range(100):  # 20 s: someone is in the room from the first frame, and the vitals say so
        t = i / 5
        engine.step(t, lognormal(rng, 8.0), occupied_hint=True)
    d = engine.decision(t)
    assert d.present is True and d.occupied is True and d.baseline is None, d
    for i in range(100, 170):  # they leave; the vitals say the room is empty: the baseline is learned
        t = i / 5
        engine.step(t, lognormal(rng, 1.0), occupied_hint=False)
    d = engine.decision(t)
    assert d.present is False and 0.6 < d.baseline < 1.6, d
    for i in range(170, 220):  # and the next visit is seen against it
        t = i / 5
        engine.step(t, lognormal(rng, 8.0), occupied_hint=True)
    assert engine.decision(t).present is True


def test_without_vitals_the_warm_up_is_unchanged():
    rng = random.Random(4)
    engine = PresenceEngine()
    for i in range(100):
        engine.step(i / 5, lognormal(rng, 8.0))
    assert engine.present is False  # nothing said otherwise: the level it started at is its baseline


# ---------------------------------------------------------------- exact arithmetic (mutation testing found these)

def _settings(**kw):
    return PresenceSettings(**{"window": 2.0, "warmup": 10.0, **kw})


def test_smoothing_is_the_exact_median_of_the_window_for_odd_and_even_counts():
    engine = PresenceEngine(_settings(window=10.0))
    for i, score in enumerate([1.0, 100.0, 4.0]):  # odd: the middle one
        engine.step(i * 0.1, score)
    assert math.isclose(engine.decision(0.2).smoothed, 4.0, rel_tol=1e-3)
    engine.step(0.3, 9.0)  # even: the geometric mean of the two middle ones (median of the logs)
    assert math.isclose(engine.decision(0.3).smoothed, math.exp((math.log(4) + math.log(9)) / 2), rel_tol=1e-3)
    engine.step(0.4, 0.0)  # no measurement: the log floor, not a crash
    assert math.isclose(engine.decision(0.4).smoothed, 4.0, rel_tol=1e-3)


def test_the_window_drops_scores_older_than_it():
    engine = PresenceEngine(_settings(window=1.0))
    engine.step(0.0, 100.0)
    engine.step(1.0, 2.0)  # exactly one window later: the first is still in
    assert engine.decision(1.0).smoothed > 2.5
    engine.step(1.01, 2.0)
    assert math.isclose(engine.decision(1.01).smoothed, 2.0, rel_tol=1e-3)


def test_the_first_baseline_is_the_tenth_percentile_of_warm_up():
    engine = PresenceEngine(_settings(window=0.5, warmup=100.0))  # one score a second: smoothed == score
    for i in range(101):
        engine.step(float(i), 1.0 + i)
    assert math.isclose(engine.decision(100.0).baseline, 11.0, rel_tol=1e-3)  # the 10th of 101 levels


def test_calibration_takes_the_median_of_an_empty_room():
    engine = PresenceEngine(_settings(window=0.5, warmup=2.0, calibration=100.0))
    for i in range(3):
        engine.step(float(i), 1.0)
    engine.calibrate(2.0)
    assert engine.calibrating
    for i in range(100):
        engine.step(3.0 + i, 1.0 + i)
    d = engine.decision(102.0)
    assert not d.calibrating and math.isclose(d.baseline, 50.0, rel_tol=1e-3)  # the middle of 100


def test_a_person_at_the_end_of_warm_up_is_present_against_a_low_baseline():
    engine = PresenceEngine(_settings(window=1.0, warmup=10.0))
    for i in range(90):
        engine.step(i * 0.1, 0.25)  # a quiet node: its empty room scores 0.25
    for i in range(90, 101):
        engine.step(i * 0.1, 2.0)  # someone walks in as warm-up ends (8 x the empty level)
    d = engine.decision(10.0)
    assert d.present is True and math.isclose(d.baseline, 0.25, rel_tol=1e-3)


def test_while_quiet_the_baseline_follows_slow_drift_by_its_time_constant():
    engine = PresenceEngine(_settings(window=0.2, warmup=1.0, drift_tau=100.0, exit_ratio=1.8))
    for i in range(20):
        engine.step(i * 0.1, 1.0)
    assert math.isclose(engine.decision(1.9).baseline, 1.0, rel_tol=1e-3)
    t = 2.0
    while t <= 102.0:  # the empty room drifts up to 1.5 (below the exit ratio: still quiet)
        engine.step(t, 1.5)
        t += 0.1
    expected = math.exp(math.log(1.5) * (1 - math.exp(-100.0 / 100.0)))  # 63 % of the way, in logs
    assert math.isclose(engine.decision(t).baseline, expected, rel_tol=0.02)
    assert engine.present is False


def test_presence_clears_after_exactly_hold_seconds_below_the_exit_line():
    engine = PresenceEngine(_settings(window=0.05, warmup=1.0, hold=5.0))
    for i in range(20):
        engine.step(i * 0.1, 1.0)
    engine.step(2.0, 10.0)
    assert engine.present is True
    engine.step(2.1, 1.0)  # quiet from here
    engine.step(7.0, 1.0)
    assert engine.present is True  # 4.9 s
    engine.step(7.1, 1.0)
    assert engine.present is False  # 5.0 s


def test_thresholds_changed_at_run_time_decide_the_next_frame():
    """`/set` and HA number entities change the settings in place; the engine compares in log
    space, so a threshold kept there must follow the change, not the value it started with."""
    engine = PresenceEngine(_settings(hold=0.0))
    for i in range(60):  # 12 s of an empty room at 1.0: the baseline
        engine.step(i / 5, 1.0)
    assert engine.present is False and math.isclose(engine.decision(12).baseline, 1.0, rel_tol=1e-3)
    engine.settings.enter_ratio = 5.0
    t = 12.0
    for _ in range(20):  # 4x the baseline: above the default 3, below the 5 just set
        t += 0.2
        engine.step(t, 4.0)
    assert engine.present is False
    engine.settings.enter_ratio = 3.5
    engine.step(t + 0.2, 4.0)
    assert engine.present is True
    engine.settings.enter_ratio, engine.settings.exit_ratio = 5.0, 4.5  # now 4x is quiet: no hold, so
    engine.step(t + 0.4, 4.0)                                           # it clears at once
    assert engine.present is False
