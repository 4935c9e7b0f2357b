"""The reporting policy: numbers only when they moved enough or at a heartbeat; flags at once.

Home Assistant records a row for every change of an entity's state, so what the bridge reports
is what users' databases hold (bench/ha_recorder.py counts it for a day of frames)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bench.ha_recorder import EPOCH, record, run, visits
from bridge.catalog import validate_config
from bridge.config.loader import ConfigError
from bridge.core.directory import NodeDirectory, NodeInfo
from bridge.homeassistant.discovery import node_components
from bridge.nodes import codec
from bridge.nodes.config import NodesConfig
from bridge.nodes.pipeline import NodePipeline
from bridge.nodes.registry import NodeRegistry
from bridge.nodes.reporting import FieldRule, Reporter, ReportingPolicy
from bridge.privacy import PrivacyClass, PrivacyGate
from bridge.topics import Topics


def test_noise_within_the_step_is_not_reported_a_real_change_is_after_min_interval():
    reporter = Reporter(ReportingPolicy(min_interval=60, heartbeat=900,
                                        rules={"rssi": FieldRule(delta=5, digits=0)}))
    assert reporter.report({"rssi": -60}, 0.0) == {"rssi": -60}  # the first value at once
    for t, noisy in enumerate((-62, -58, -63, -57), 1):
        assert reporter.report({"rssi": noisy}, float(t)) == {"rssi": -60}
    assert reporter.report({"rssi": -70}, 30.0) == {"rssi": -60}  # moved, but reported 30 s ago
    assert reporter.report({"rssi": -70}, 61.0) == {"rssi": -70}
    assert isinstance(reporter.report({"rssi": -70.4}, 62.0)["rssi"], int)


def test_a_relative_change_reports_and_the_heartbeat_reports_any_movement():
    reporter = Reporter(ReportingPolicy(min_interval=0, heartbeat=900,
                                        rules={"presence_score": FieldRule(relative=0.5, digits=2)}))
    reporter.report({"presence_score": 1.0}, 0.0)
    assert reporter.report({"presence_score": 1.4}, 1.0)["presence_score"] == 1.0
    assert reporter.report({"presence_score": 1.6}, 2.0)["presence_score"] == 1.6
    assert reporter.report({"presence_score": 1.7}, 800.0)["presence_score"] == 1.6
    assert reporter.report({"presence_score": 1.7}, 903.0)["presence_score"] == 1.7  # heartbeat
    assert reporter.report({"presence_score": 1.701}, 2000.0)["presence_score"] == 1.7  # same at its precision


def test_smoothing_averages_over_time_and_a_vanished_field_starts_afresh():
    reporter = Reporter(ReportingPolicy(min_interval=0, heartbeat=0,
                                        rules={"heart_bpm": FieldRule(delta=6, smooth=120, digits=0)}))
    reporter.report({"heart_bpm": 60.0}, 0.0)
    for t in range(1, 20):  # one wild frame a second cannot drag a two-minute average 6 bpm
        assert reporter.report({"heart_bpm": 60.0 + (30 if t % 5 == 0 else 0)}, float(t))["heart_bpm"] == 60
    assert reporter.report({}, 21.0) == {}
    assert reporter.report({"heart_bpm": 90.0}, 22.0) == {"heart_bpm": 90}
    flags = {"presence": True, "motion": False, "mode": 1}
    assert reporter.report(dict(flags), 23.0) == flags  # fields without a rule pass through


def test_config_sets_the_policy_and_each_node_overrides_it():
    cfg = NodesConfig.model_validate({
        "reporting": {"heartbeat": 600, "fields": {"rssi": {"delta": 8}}},
        "devices": {3: {"reporting": {"min_interval": 5, "fields": {"rssi": {"smooth": 0}}}}}})
    policy = ReportingPolicy.merged(cfg.reporting.model_dump(), cfg.device(3).reporting.model_dump())
    assert (policy.heartbeat, policy.min_interval) == (600, 5)
    assert policy.rules["rssi"] == FieldRule(delta=8, smooth=0, digits=0)
    assert policy.rules["presence_score"] == ReportingPolicy().rules["presence_score"]
    assert ReportingPolicy.merged(cfg.reporting.model_dump(), cfg.device(4).reporting.model_dump()
                                  ).rules["rssi"].smooth == 120


def test_config_refuses_an_unknown_field_and_a_refresh_home_assistant_would_expire():
    with pytest.raises(ConfigError) as raised:
        validate_config({"nodes": {"offline_after": 30, "reporting": {"refresh": 60, "fields": {"rssl": {"delta": 3}}},
                            "devices": {2: {"reporting": {"fields": {"temperature": {"delta": 1}}}}}}})
    text = str(raised.value)
    assert "nodes.reporting.fields.rssl" in text and "one of presence_score" in text
    assert "nodes.devices.2.reporting.fields.temperature" in text
    assert "nodes.reporting.refresh" in text and "less than 60 s" in text


class _Mqtt:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, int, bool]] = []

    def publish(self, topic, payload, qos=0, retain=False, **_):
        self.sent.append((topic, json.loads(payload) if payload else {}, qos, retain))
        return True

    def burst(self):
        from contextlib import nullcontext
        return nullcontext()


def _pipeline(**nodes) -> tuple[NodePipeline, _Mqtt]:
    cfg = NodesConfig.model_validate({"udp": {"enabled": False}, **nodes})
    mqtt = _Mqtt()
    states = SimpleNamespace(set=lambda *a, **k: None, get=lambda *a: None, remove=lambda *a: None)
    ctx = SimpleNamespace(config=cfg, topics=Topics("ruview"), mqtt=mqtt, states=states)
    return NodePipeline(ctx, PrivacyGate(cfg.privacy_class, {}), NodeRegistry({}), NodeDirectory()), mqtt


def _feature(t: float, score: float, seq: int) -> bytes:
    return codec.encode_feature_state(codec.FeatureState(
        5, 0, seq, int(t * 1e6), 1.0, score, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0x01, -55 - seq % 7))


def test_the_beat_publishes_a_node_only_when_what_it_reports_changed_or_the_refresh_is_due():
    pipeline, mqtt = _pipeline(reporting={"refresh": 30})
    states = lambda: [m for m in mqtt.sent if m[0] == "ruview/node/node_5"]  # noqa: E731
    seq = 0
    for second in range(60):  # an empty room, a frame a second, scores and RSSI wobbling
        pipeline.handle([(_feature(second, 1.0 + 0.1 * (second % 3), seq), ("127.0.0.1", 4000))],
                        now=EPOCH + second)
        seq += 1
        pipeline.flush_due(EPOCH + second + 0.5)
    published = states()
    # the first state, the baseline learned after warm-up (presence decided), then refreshes only
    assert 3 <= len(published) <= 5, [(m[1].get("presence"), m[1].get("presence_score")) for m in published]
    assert all(qos == 0 and retain for _, _, qos, retain in published)
    quiet = [m[1] for m in published[-2:]]
    assert {k: v for k, v in quiet[0].items() if k not in ("last_seen", "frames")} == \
        {k: v for k, v in quiet[1].items() if k not in ("last_seen", "frames")}


def test_a_presence_edge_is_published_on_its_frame_while_the_numbers_wait():
    pipeline, mqtt = _pipeline()
    seq = 0
    for second in range(40):
        pipeline.handle([(_feature(second, 1.0, seq), ("127.0.0.1", 4000))], now=EPOCH + second)
        seq += 1
    before = len(mqtt.sent)
    t = 40.0
    while pipeline.views[5].flags.presence is not True:
        pipeline.handle([(_feature(t, 12.0, seq), ("127.0.0.1", 4000))], now=EPOCH + t)
        seq, t = seq + 1, t + 0.1
        assert t < 45
    edge = [m for m in mqtt.sent[before:] if m[0] == "ruview/node/node_5"]
    assert edge and edge[-1][1]["presence"] is True  # published in the call that decided it, no beat


def test_diagnostic_sensors_are_listed_as_such_and_off_by_default_in_home_assistant():
    topics = Topics("ruview")
    components = node_components(topics, NodeInfo(3, "hall", "Hall", PrivacyClass.ANONYMOUS), 60)
    for oid in ("presence_score", "baseline", "rssi", "packet_loss"):
        assert components[oid]["entity_category"] == "diagnostic", oid
        assert components[oid]["enabled_by_default"] is False, oid
    for oid in ("presence", "occupancy", "motion", "breathing", "heart_rate"):
        assert "enabled_by_default" not in components[oid] and "entity_category" not in components[oid], oid


def test_a_day_of_the_visit_scenario_records_few_rows_and_every_edge():
    """The benchmark's count on two simulated hours (`python -m bench.ha_recorder` runs a day)."""
    result = record(run(visits(2, 1.0, 1), 2, None), 2)["node_1"]
    assert result["numeric_rows_per_day"] <= 1000, result
    assert not result["missing"] and result["edges"]["presence"] >= 4, result
