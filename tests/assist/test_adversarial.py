"""The adversarial corpus end to end: every case published on a real Mosquitto to a running bridge
with the corpus home discovered over MQTT, judged by the device commands the bridge published.
0 wrong actions; of the cases where an action was the only right outcome, at most 5% refused.

Also the 4096-byte boundary (made here, not in the YAML): one byte more is refused with its id."""

from __future__ import annotations

import uuid

import pytest

from bench.assist_adversarial import LANGUAGES, InProcess, cases, command_of, discovery, home, judge, tally
from bridge.app import build_bridge
from bridge.assist.extension import AssistExtension
from bridge.catalog import validate_config
from bridge.homeassistant.extension import HomeAssistantExtension
from tests.polling import wait_until

RESPONSE = "ruview/assist/response"


@pytest.fixture(scope="module")
def corpus_bridge(request):
    from tests.brokers import Mosquitto  # one broker and one bridge for the whole corpus: it is 700 cases
    from tests.mqtt_probe import Probe

    broker = Mosquitto(extra_conf="set_tcp_nodelay true\n")  # answers in a millisecond, not Nagle's 40
    broker.start()
    the_home = home()
    devices = Probe(broker.port)
    for entity in the_home["entities"]:
        topic, config = discovery(entity)
        devices.publish(topic, config, retain=True)
    config = validate_config({
        "mqtt": {"url": broker.url}, "bridge": {"health_interval": 5},
        "homeassistant": {"collect_seconds": 0, "birth_delay": 0},
        "assist": {"enabled": True, "language": "en", "languages": ["de", "fr", "es"],
                   "satellites": the_home["satellites"]}}, "test", env={})
    bridge = build_bridge(config, extensions=[HomeAssistantExtension(), AssistExtension()])
    bridge.start()
    try:
        assert bridge.mqtt.wait_connected(15)
        ext = bridge.extension("assist")
        wanted = {e["id"] for e in the_home["entities"]}
        assert wait_until(lambda: wanted <= {e.entity_id for e in ext.home.entities}, 15), ext.home.entities
        user = Probe(broker.port)
        user.subscribe(RESPONSE, "corpus/+/set")
        yield user
        user.close()
    finally:
        bridge.stop()
        devices.close()
        broker.stop()


def _ask(user, payload: bytes, case_id: str | None) -> tuple[list[str], dict | None]:
    """Publish one utterance and collect the commands published before its answer (the bridge makes
    its calls, then answers, on one connection: everything it did for the case is in by then)."""
    user.clear()
    user.publish("ruview/assist/utterance", payload)
    answer = user.wait_topic(RESPONSE, 10, match=lambda m: case_id is None or m.json().get("id") == case_id)
    user.flush()
    commands = [command_of(m.topic, m.payload) for m in user.messages if m.topic.startswith("corpus/")]
    return commands, answer.json()


def test_the_corpus_has_what_the_issue_asks_for():
    all_cases = cases()
    assert len(all_cases) >= 400
    by_language = {lang: [c for c in all_cases if c.language == lang] for lang in LANGUAGES}
    assert all(len(by_language[lang]) >= 80 for lang in ("en", "de", "fr")), {k: len(v) for k, v in by_language.items()}
    kinds = {c.kind for c in by_language["en"]}
    for kind in ("question", "statement", "reported", "hypothetical", "conditional", "deferred", "exception",
                 "duplicate", "unknown_name", "unknown_area", "domain", "sign", "injection", "wildcard", "nul",
                 "template", "homoglyph", "zero_width", "rtl", "mixed_language", "caps", "emoji", "compound",
                 "contradiction", "repeat", "too_many_parts"):
        assert kind in kinds, kind


SHARDS = 3  # every third case per shard: the corpus runs on three workers at once


@pytest.mark.slow
@pytest.mark.parametrize("shard", range(SHARDS))
def test_the_adversarial_corpus_causes_no_wrong_action(corpus_bridge, shard):
    results = []
    failures = []
    for i, case in list(enumerate(cases()))[shard::SHARDS]:
        case_id = None if case.raw is not None else f"c{i}-{uuid.uuid4().hex[:6]}"
        commands, answer = _ask(corpus_bridge, case.payload(case_id or ""), case_id)
        verdict = judge(case, commands, answer)
        results.append((case, verdict))
        if verdict != "correct":
            speech = (answer or {}).get("speech", {}).get("plain", {}).get("speech")
            failures.append((verdict, case.language, case.kind, case.said, commands, speech))
    counts = tally(results)
    print("\nassist corpus:", counts, *[f"\n  {f}" for f in failures])
    wrong = [f for f in failures if f[0] == "wrong_action"]
    assert not wrong, wrong
    assert counts["acting_refused"] <= 0.05 * counts["acting"], (counts, [f for f in failures if f[0] == "refused"])
    assert counts["wrong_text"] <= 0.05 * counts["n"], (counts, [f for f in failures if f[0] == "wrong_text"])


@pytest.mark.parametrize("extra, refused", [(0, False), (1, True)])
def test_the_4096_byte_boundary(corpus_bridge, extra, refused):
    head = b'{"id": "edge", "conversation_id": "conv-1", "text": "turn on the desk lamp'
    tail = b'"}'
    payload = head + b" " * (4096 + extra - len(head) - len(tail)) + tail
    assert len(payload) == 4096 + extra
    commands, answer = _ask(corpus_bridge, payload, "edge")
    assert answer["id"] == "edge" and answer["conversation_id"] == "conv-1"
    if refused:
        assert commands == [] and answer["data"]["code"] == "invalid_utterance", answer
    else:
        assert commands == ["light.desk_lamp on"] and answer["response_type"] == "action_done", answer


def test_the_holdout_corpus_written_after_the_rules_causes_no_wrong_action():
    """2,105 sentences four red-team passes wrote against the rules (holdout_*.yaml), in process:
    rules that generalise hold on sentences they were not written against."""
    bridge = InProcess()
    results = [(case, judge(case, *bridge.run(case))) for case in cases(prefix="holdout_")]
    counts = tally(results)
    assert counts["n"] >= 2000
    wrong = [(c.language, c.said, c.site_id) for c, v in results if v == "wrong_action"]
    assert not wrong, wrong
    assert counts["acting_refused"] <= 0.05 * counts["acting"], counts
