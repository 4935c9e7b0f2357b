"""Assist end to end on a real Mosquitto: discovered devices driven by sentences, room presence from
nodes, refusals that act on nothing, German, MQTT 5 response topics, Hermes, follow-ups, a share
group of two bridges, and `ruview-bridge say` as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from bridge.app import build_bridge
from bridge.assist.extension import AssistExtension
from bridge.catalog import validate_config
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.nodes.extension import NodesExtension
from tests.brokers import free_port
from tests.polling import wait_until

KITCHEN_LIGHT = "homeassistant/light/0xkitchen/light/config"
COFFEE_PLUG = "homeassistant/switch/0xcoffee/switch/config"
STEHLAMPE = "homeassistant/light/0xstehlampe/light/config"
Z2M = {"name": "Zigbee2MQTT", "sw": "2.12.1"}


def light(name: str, area: str, key: str) -> dict:
    return {"name": None, "schema": "json", "brightness": True, "brightness_scale": 254,
            "supported_color_modes": ["xy"], "command_topic": f"zigbee2mqtt/{name}/set",
            "state_topic": f"zigbee2mqtt/{name}", "unique_id": f"{key}_light", "origin": Z2M,
            "default_entity_id": f"light.{name.lower().replace(' ', '_')}",
            "device": {"identifiers": [f"z2m_{key}"], "name": name, "suggested_area": area}}


PLUG = {"name": None, "command_topic": "zigbee2mqtt/Coffee plug/set", "state_topic": "zigbee2mqtt/Coffee plug",
        "value_template": "{{ value_json.state }}", "payload_on": "ON", "payload_off": "OFF",
        "unique_id": "0xcoffee_switch", "default_entity_id": "switch.coffee_plug", "origin": Z2M,
        "device": {"identifiers": ["z2m_0xcoffee"], "name": "Coffee plug", "suggested_area": "Kitchen"}}


def assist_config(broker, udp: int, **assist) -> dict:
    return {"mqtt": {"url": broker.url, "reconnect": {"min_delay": 0.2, "max_delay": 1.0}},
            "bridge": {"health_interval": 1, "shutdown_timeout": 3},
            "nodes": {"publish_interval": 0.2, "offline_after": 3, "udp": {"bind": "127.0.0.1", "port": udp},
                      "devices": {1: {"name": "living-node", "room": "Living Room"},
                                  2: {"name": "kitchen-node", "room": "Kitchen"}}},
            "homeassistant": {"collect_seconds": 0, "birth_delay": 0},
            "assist": {"enabled": True, "languages": ["de"], **assist}}


@pytest.fixture
def home(mosquitto, make_probe):
    """The devices a Zigbee2MQTT would have announced, retained, before the bridge starts."""
    devices = make_probe(mosquitto)
    devices.publish(KITCHEN_LIGHT, light("Kitchen light", "Kitchen", "0xkitchen"), retain=True)
    devices.publish(COFFEE_PLUG, PLUG, retain=True)
    devices.publish(STEHLAMPE, light("Stehlampe", "Wohnzimmer", "0xstehlampe"), retain=True)
    return devices


@pytest.fixture
def start_bridge():
    bridges = []

    def start(broker, udp: int | None = None, **assist):
        config = validate_config(assist_config(broker, udp or free_port(), **assist), "test", env={})
        bridge = build_bridge(config, extensions=[NodesExtension(), HomeAssistantExtension(), AssistExtension()])
        bridge.start()
        bridges.append(bridge)
        assert bridge.mqtt.wait_connected(15)
        assert bridge.extension_state["assist"]["state"] == "running", bridge.extension_state
        ext = bridge.extension("assist")
        assert wait_until(lambda: {"light.kitchen_light", "switch.coffee_plug", "light.stehlampe"}
                          <= {e.entity_id for e in ext.home.entities}, 10), ext.home.entities
        return bridge

    yield start
    for bridge in bridges:
        bridge.stop()


def ask(probe, text: str | dict, timeout: float = 5.0) -> dict:
    body = dict(text) if isinstance(text, dict) else {"text": text}
    body.setdefault("id", uuid.uuid4().hex)
    probe.publish("ruview/assist/utterance", body)
    return probe.wait_topic("ruview/assist/response", timeout, match=lambda m: m.json().get("id") == body["id"]).json()


def speech(answer: dict) -> str:
    return answer["speech"]["plain"]["speech"]


def test_a_sentence_drives_the_discovered_light_with_its_exact_command(mosquitto, home, start_bridge, make_probe):
    start_bridge(mosquitto)
    user = make_probe(mosquitto, "ruview/assist/response", "ruview/assist/intent/#", "zigbee2mqtt/+/set")
    # a one-shot mosquitto_pub, as an HA automation or a shell script sends it
    subprocess.run(["mosquitto_pub", "-p", str(mosquitto.port), "-t", "ruview/assist/utterance",
                    "-m", "turn on the kitchen light"], check=True, timeout=10)
    cmd = user.wait_topic("zigbee2mqtt/Kitchen light/set")
    assert cmd.payload == b'{"state":"ON"}' and not cmd.retain
    answer = user.wait_topic("ruview/assist/response").json()
    assert answer["response_type"] == "action_done", answer
    assert answer["intent"] == {"name": "HassTurnOn", "slots": {"name": "Kitchen light"}, "recognizer": "hassil"}
    assert answer["data"]["success"] == [{"type": "entity", "name": "Kitchen light", "id": "light.kitchen_light"}]
    assert speech(answer) == "Turned on the light" and answer["elapsed_ms"] > 0
    event = user.wait_topic("ruview/assist/intent/HassTurnOn").json()
    assert event["slots"] == {"name": "Kitchen light"} and event["targets"] == ["light.kitchen_light"]

    answer = ask(user, "set the kitchen light to 50%")
    assert answer["response_type"] == "action_done", answer
    assert user.wait_topic("zigbee2mqtt/Kitchen light/set",
                           match=lambda m: b"brightness" in m.payload).json() == {"state": "ON", "brightness": 127}


def test_what_nothing_understands_is_refused_and_nothing_else_is_published(mosquitto, home, start_bridge,
                                                                         make_probe):
    bridge = start_bridge(mosquitto)
    watcher = make_probe(mosquitto, "#")
    user = make_probe(mosquitto, "ruview/assist/response")
    answer = ask(user, "play jazz")
    assert answer["response_type"] == "error" and answer["data"]["code"] == "no_intent_match", answer
    assert answer["intent"] is None and speech(answer) == "Sorry, I couldn't understand that"
    # bad input, each answered with an error and no action; the pipeline keeps serving
    user.publish("ruview/assist/utterance", b'{"text": "turn on the kitchen light", "id": ')  # malformed JSON
    user.publish("ruview/assist/utterance", ("turn on the kitchen light " * 200).encode())  # > 4096 bytes
    user.publish("ruview/assist/utterance", b"turn on the kitchen light \xff\xfe")  # not UTF-8
    user.publish("ruview/assist/utterance", {"text": "   ", "id": "blank"})
    user.publish("ruview/assist/utterance", {"text": ["turn on"], "id": "list"})
    refusals = user.wait_for(lambda ms: sum(m.json()["response_type"] == "error" for m in ms) >= 6, what="refusals")
    problems = [m.json()["data"] for m in refusals[1:]]
    assert [p["code"] for p in problems] == ["invalid_utterance"] * 5, problems
    assert "not valid JSON" in problems[0]["error"] and "at most 4096 bytes" in problems[1]["error"]
    assert "UTF-8" in problems[2]["error"] and "empty" in problems[3]["error"] and '"text"' in problems[4]["error"]
    assert ask(user, "turn off the kitchen light")["response_type"] == "action_done"  # and it still serves
    watcher.flush()
    commands = [m for m in watcher.messages if m.topic.startswith("zigbee2mqtt/")]
    assert [(m.topic, m.payload) for m in commands] == [("zigbee2mqtt/Kitchen light/set", b'{"state":"OFF"}')]
    intents = [m.topic for m in watcher.messages if m.topic.startswith("ruview/assist/intent/")]
    assert intents == ["ruview/assist/intent/HassTurnOff"]
    assert bridge.extension("assist").counts["refused"] == 5


def test_is_anyone_in_the_room_is_answered_from_the_nodes(mosquitto, home, start_bridge, make_probe):
    from firmware_tools.simulate import generate, make_nodes, send_udp
    udp = free_port()
    bridge = start_bridge(mosquitto, udp)
    user = make_probe(mosquitto, "ruview/assist/response")
    answer = ask(user, "is anyone in the living room?")
    assert answer["response_type"] == "query_answer", answer
    assert speech(answer) == "I can't tell: the sensor in the Living Room is offline."  # never "empty"

    frames = list(generate(make_nodes(2, "visit", 60), 60))
    send_udp([f for f in frames if f[0] < 30], "127.0.0.1", udp, speed=0)  # someone is in from 18 s
    assert wait_until(lambda: all((bridge.directory.get(i).state or {}).get("occupancy") for i in (1, 2)), 10)
    answer = ask(user, "is anyone in the living room?")
    assert answer["intent"]["name"] == "RuViewRoomPresence" and answer["intent"]["slots"] == {"area": "Living Room"}
    assert speech(answer) == "Yes, someone is in the Living Room."
    assert answer["data"]["success"] == [{"type": "area", "name": "Living Room", "id": "Living Room"}]
    assert speech(ask(user, "which rooms are occupied")) == "Occupied: Kitchen and Living Room."
    assert ask(user, "is anyone in the garage")["data"]["code"] == "no_valid_targets"


def test_german_sentences_drive_devices_and_answer_in_german(mosquitto, home, start_bridge, make_probe):
    start_bridge(mosquitto)
    user = make_probe(mosquitto, "ruview/assist/response", "zigbee2mqtt/+/set")
    answer = ask(user, {"text": "schalte die Stehlampe ein", "language": "de"})
    assert answer["response_type"] == "action_done" and answer["language"] == "de", answer
    assert answer["intent"]["name"] == "HassTurnOn" and answer["intent"]["slots"]["name"] == "Stehlampe"
    assert user.wait_topic("zigbee2mqtt/Stehlampe/set").payload == b'{"state":"ON"}'
    assert speech(answer) == "Licht eingeschaltet"  # home-assistant-intents' German answer
    assert speech(ask(user, {"text": "Käse bitte", "language": "de"})) == "Entschuldigung, das habe ich nicht verstanden"
    for language, why in (("xx", "has no language 'xx'"), ("../intents", "not a language code")):
        refused = ask(user, {"text": "turn on the kitchen light", "language": language})
        assert refused["data"]["code"] == "invalid_utterance" and why in refused["data"]["error"], refused


def test_follow_ups_compounds_and_a_home_that_changes(mosquitto, home, start_bridge, make_probe):
    bridge = start_bridge(mosquitto)
    user = make_probe(mosquitto, "ruview/assist/response", "zigbee2mqtt/+/set")
    answer = ask(user, "hey um turn on the kitchen light and the coffee plug please")
    assert answer["response_type"] == "action_done", answer
    assert [i["slots"]["name"] for i in answer["intents"]] == ["Kitchen light", "Coffee plug"]
    assert {t["id"] for t in answer["data"]["success"]} == {"light.kitchen_light", "switch.coffee_plug"}
    assert user.wait_topic("zigbee2mqtt/Coffee plug/set").payload == b"ON"

    user.clear()
    ask(user, {"text": "turn on the kitchen lihgt", "conversation_id": "c1"})  # a typo in the name
    assert user.wait_topic("zigbee2mqtt/Kitchen light/set").payload == b'{"state":"ON"}'
    answer = ask(user, {"text": "turn it off", "conversation_id": "c1"})
    assert answer["intent"]["name"] == "HassTurnOff" and answer["conversation_id"] == "c1", answer
    assert user.wait_topic("zigbee2mqtt/Kitchen light/set", match=lambda m: b"OFF" in m.payload)
    assert ask(user, {"text": "turn it off", "conversation_id": "other"})["data"]["code"] == "no_intent_match"

    # a device announced while the bridge runs is named at once, without a restart
    home.publish("homeassistant/fan/0xfan/fan/config", {
        "name": None, "command_topic": "zigbee2mqtt/Desk fan/set", "state_topic": "zigbee2mqtt/Desk fan",
        "payload_on": "ON", "payload_off": "OFF", "unique_id": "0xfan_fan", "default_entity_id": "fan.desk_fan",
        "device": {"identifiers": ["z2m_0xfan"], "name": "Desk fan"}}, retain=True)
    ext = bridge.extension("assist")
    assert wait_until(lambda: any(e.entity_id == "fan.desk_fan" for e in ext.home.entities), 5)
    assert ask(user, "turn on the desk fan")["response_type"] == "action_done"
    assert user.wait_topic("zigbee2mqtt/Desk fan/set").payload == b"ON"


def test_mqtt5_response_topic_and_correlation_data_are_honoured(mosquitto, home, start_bridge, make_probe):
    start_bridge(mosquitto)
    user = make_probe(mosquitto, "satellite/7/answer", v5=True)
    user.publish("ruview/assist/utterance", "turn on the coffee plug", response_topic="satellite/7/answer",
                 correlation=b"turn-1")
    reply = user.wait_topic("satellite/7/answer")
    assert reply.correlation_data == b"turn-1" and reply.json()["response_type"] == "action_done"


def test_an_mqtt5_response_topic_never_lands_where_it_would_be_taken_for_something_else(mosquitto, home,
                                                                                      start_bridge, make_probe):
    """Any client names a response topic: an answer on a device's command topic, under the bridge's own
    base topic (the utterance topic, a request, an intent event) or on a topic the bridge follows would be
    a command, a request or a state. Those are not used; the fixed answer topic still gets the answer."""
    start_bridge(mosquitto)
    watcher = make_probe(mosquitto, "#")
    user = make_probe(mosquitto, "ruview/assist/response", v5=True)
    hostile = ["zigbee2mqtt/Kitchen light/set", "ruview/assist/utterance", "ruview/bridge/request/restart",
               "ruview/assist/intent/HassTurnOn", "zigbee2mqtt/Coffee plug", "homeassistant/light/x/light/config",
               "cmnd/tasmota_1/POWER", "upstairs/assist/utterance", "zigbee2mqtt/bridge/request/restart",
               "hermes/intent/HassTurnOn", "frigate/restart", "ruview/bridge/response/x"]
    for i, topic in enumerate(hostile):
        user.publish("ruview/assist/utterance", {"text": "turn on the coffee plug", "id": f"h{i}"},
                     response_topic=topic, correlation=b"c")
        assert user.wait_topic("ruview/assist/response", match=lambda m, i=i: m.json().get("id") == f"h{i}")
    watcher.flush()
    for topic in hostile:
        assert not [m for m in watcher.on(topic) if m.correlation_data == b"c" or b'"speech"' in m.payload], topic
    assert len(watcher.on("zigbee2mqtt/Coffee plug/set")) == len(hostile)  # each acted once, never again


def test_hermes_queries_become_hermes_intents(mosquitto, home, start_bridge, make_probe):
    start_bridge(mosquitto, hermes=True)
    rhasspy = make_probe(mosquitto, "hermes/#", "zigbee2mqtt/+/set")
    rhasspy.publish("hermes/nlu/query", {"input": "turn on the kitchen light", "siteId": "bedroom",
                                         "id": "q1", "sessionId": "bedroom-default-1", "customData": "x"})
    intent = rhasspy.wait_topic("hermes/intent/HassTurnOn").json()
    assert intent["siteId"] == "bedroom" and intent["sessionId"] == "bedroom-default-1" and intent["id"] == "q1"
    assert intent["intent"] == {"intentName": "HassTurnOn", "confidenceScore": 1.0}
    assert intent["slots"][0]["slotName"] == "name" and intent["slots"][0]["value"]["value"] == "Kitchen light"
    assert intent["customData"] == "x"
    end = rhasspy.wait_topic("hermes/dialogueManager/endSession").json()
    assert end == {"sessionId": "bedroom-default-1", "text": "Turned on the light", "customData": "x"}
    assert rhasspy.wait_topic("zigbee2mqtt/Kitchen light/set").payload == b'{"state":"ON"}'
    rhasspy.publish("hermes/nlu/query", {"input": "play jazz", "siteId": "kitchen", "id": "q2"})
    miss = rhasspy.wait_topic("hermes/nlu/intentNotRecognized").json()
    assert miss["siteId"] == "kitchen" and miss["id"] == "q2" and miss["input"] == "play jazz"
    # the same rules as the utterance topic: a control character, a key given twice; and an intent that
    # failed (no such device of that kind) is not announced on hermes/intent/*, where Rhasspy acts
    rhasspy.publish("hermes/nlu/query", {"input": "turn on the\u001fcoffee plug", "siteId": "k", "id": "q3"})
    rhasspy.publish("hermes/nlu/query", b'{"input": "turn on the coffee plug", "input": "x", "id": "q4"}')
    rhasspy.publish("hermes/nlu/query", {"input": "lock the coffee plug", "siteId": "k", "id": "q5"})
    assert rhasspy.wait_topic("hermes/nlu/intentNotRecognized", match=lambda m: m.json().get("id") == "q5")
    rhasspy.flush()
    assert len(rhasspy.on("hermes/error/nlu")) == 2
    assert rhasspy.on("zigbee2mqtt/Coffee plug/set") == []
    assert [m.json()["id"] for m in rhasspy.messages if m.topic.startswith("hermes/intent/")] == ["q1"]


def test_two_bridges_in_one_share_group_answer_each_utterance_once(mosquitto, home, make_probe):
    bridges = []
    try:
        for instance in ("a", "b"):
            raw = assist_config(mosquitto, free_port())
            raw["bridge"].update(share_group="house", instance=instance)
            raw["nodes"]["enabled"] = False
            config = validate_config(raw, "test", env={})
            bridge = build_bridge(config, extensions=[HomeAssistantExtension(), AssistExtension()])
            bridge.start()
            bridges.append(bridge)
            assert bridge.mqtt.wait_connected(15)
            ext = bridge.extension("assist")
            assert wait_until(lambda: len(ext.home.entities) >= 3, 10)
        user = make_probe(mosquitto, "ruview/assist/response", "zigbee2mqtt/+/set")
        ids = [f"u{i}" for i in range(20)]
        for i in ids:
            user.publish("ruview/assist/utterance", {"text": "turn on the coffee plug", "id": i})
        user.wait_for(lambda ms: {m.json()["id"] for m in ms if m.topic == "ruview/assist/response"} >= set(ids),
                      10, "every answer")
        user.flush()
        answers = [m.json()["id"] for m in user.messages if m.topic == "ruview/assist/response"]
        assert sorted(answers) == sorted(ids), "an utterance was answered twice or not at all"
        assert len(user.on("zigbee2mqtt/Coffee plug/set")) == 20
        handled = [b.extension("assist").counts["utterances"] for b in bridges]
        assert sum(handled) == 20 and all(handled), handled  # both took a share
    finally:
        for bridge in bridges:
            bridge.stop()


def test_say_prints_the_answer_of_the_running_bridge(mosquitto, home, start_bridge, make_probe, tmp_path):
    start_bridge(mosquitto)
    devices = make_probe(mosquitto, "zigbee2mqtt/+/set")
    config = tmp_path / "config.yaml"
    config.write_text(f"mqtt:\n  url: {mosquitto.url}\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    said = subprocess.run([sys.executable, "-m", "bridge", "say", "turn on the kitchen light", "-c", str(config)],
                          capture_output=True, text=True, timeout=30, env=env)
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip() == "Turned on the light"
    assert "HassTurnOn" in said.stderr
    assert devices.wait_topic("zigbee2mqtt/Kitchen light/set").payload == b'{"state":"ON"}'
    said = subprocess.run([sys.executable, "-m", "bridge", "say", "schalte die Stehlampe ein", "--language", "de",
                           "-c", str(config)], capture_output=True, text=True, timeout=30, env=env)
    assert said.returncode == 0 and said.stdout.strip() == "Licht eingeschaltet", (said.stdout, said.stderr)
    said = subprocess.run([sys.executable, "-m", "bridge", "say", "play jazz", "-c", str(config)],
                          capture_output=True, text=True, timeout=30, env=env)
    assert said.returncode == 1 and "couldn't understand" in said.stdout
    started = time.monotonic()
    said = subprocess.run([sys.executable, "-m", "bridge", "say", "hello", "--timeout", "1", "-c",
                           str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=30, env=env)
    assert said.returncode == 2 and time.monotonic() - started < 20


def test_the_agent_runner_subprocess_is_asked_checked_restarted_and_bounded(mosquitto, home, start_bridge,
                                                                            make_probe):
    stub = os.path.join(os.path.dirname(__file__), "agent_stub.py")
    bridge = start_bridge(mosquitto, agent={"command": [sys.executable, stub], "timeout": 1.0})
    user = make_probe(mosquitto, "ruview/assist/response", "zigbee2mqtt/+/set")
    answer = ask(user, "start movie time")
    assert answer["response_type"] == "action_done" and answer["intent"]["recognizer"] == "agent", answer
    assert user.wait_topic("zigbee2mqtt/Coffee plug/set").payload == b"ON"
    # the agent too acts only on a command: a statement it maps to the same action is answered, not done
    answer = ask(user, "it is movie time")
    assert answer["response_type"] == "error" and answer["data"]["reason"] == "statement", answer
    # what the agent names must exist in the home; a made-up entity acts on nothing
    assert ask(user, "open the garage")["data"]["code"] == "no_valid_targets"
    assert ask(user, "a topic please")["data"]["code"] == "no_valid_targets"
    assert ask(user, "hmm what now")["data"]["code"] == "no_intent_match"
    slow = ask(user, "be slow", timeout=5)
    assert slow["data"]["code"] == "no_intent_match" and "in time" in speech(slow)
    ext = bridge.extension("assist")
    pid = ext.agent._proc.pid
    ask(user, "crash now")  # the agent dies; the utterance is answered all the same
    assert wait_until(lambda: ext.agent.restarts >= 1 and ext.agent._proc is not None
                      and ext.agent._proc.pid != pid and ext.agent._proc.poll() is None, 10)
    assert ask(user, "movie time again")["response_type"] == "action_done"  # served by the new process
    user.flush()
    assert len(user.on("zigbee2mqtt/Coffee plug/set")) == 2  # nothing else acted
    proc = ext.agent._proc
    bridge.stop_extension("assist")
    assert proc.poll() is not None  # killed with the extension


def test_the_agent_runner_over_mqtt(mosquitto, home, start_bridge, make_probe):
    start_bridge(mosquitto, agent={"topic": "agents/llm", "timeout": 2.0})
    agent = make_probe(mosquitto, "agents/llm")
    user = make_probe(mosquitto, "ruview/assist/response", "zigbee2mqtt/+/set")
    user.publish("ruview/assist/utterance", {"text": "make coffee possible", "id": "m1"})
    request = agent.wait_topic("agents/llm").json()
    assert request["text"] == "make coffee possible" and request["language"] == "en"
    assert {"entity_id": "switch.coffee_plug", "name": "Coffee plug", "domain": "switch", "area": "Kitchen"} \
        in request["home"]["entities"]
    agent.publish("agents/llm/response", {"id": request["id"], "intent": {"name": "HassTurnOn",
                                                                          "slots": {"name": "Coffee plug"}}})
    answer = user.wait_topic("ruview/assist/response", match=lambda m: m.json()["id"] == "m1").json()
    assert answer["response_type"] == "action_done" and answer["intent"]["recognizer"] == "agent"
    assert user.wait_topic("zigbee2mqtt/Coffee plug/set").payload == b"ON"


def test_the_operators_own_sentences_and_patterns(mosquitto, home, start_bridge, make_probe):
    start_bridge(mosquitto, custom=[
        {"intent": "HassTurnOn", "sentences": ["brew [me] a coffee"], "slots": {"name": "Coffee plug"},
         "speech": "Brewing"},
        {"intent": "MovieTime", "patterns": [r"^(let's|lets) watch (?P<title>.+)$"], "language": "en"}])
    user = make_probe(mosquitto, "ruview/assist/response", "ruview/assist/intent/#", "zigbee2mqtt/+/set")
    answer = ask(user, "brew me a coffee")
    assert answer["intent"]["recognizer"] == "custom" and speech(answer) == "Brewing", answer
    assert user.wait_topic("zigbee2mqtt/Coffee plug/set").payload == b"ON"
    answer = ask(user, "let's watch the big lebowski")
    assert answer["response_type"] == "action_done" and answer["intent"]["slots"] == {"title": "the big lebowski"}
    assert user.wait_topic("ruview/assist/intent/MovieTime").json()["slots"]["title"] == "the big lebowski"


def test_areas_colours_questions_and_cancel_all(mosquitto, home, start_bridge, make_probe):
    bridge = start_bridge(mosquitto)
    user = make_probe(mosquitto, "ruview/assist/response", "zigbee2mqtt/+/set", "ruview/event/#")
    answer = ask(user, "turn off the lights in the kitchen")  # area + domain: the light, not the plug
    assert answer["response_type"] == "action_done" and answer["intent"]["slots"] == \
        {"area": "Kitchen", "domain": "light"}, answer
    assert answer["data"]["targets"] == [{"type": "area", "name": "Kitchen", "id": "Kitchen"},
                                         {"type": "domain", "name": "light", "id": "light"}]
    assert [t["id"] for t in answer["data"]["success"]] == ["light.kitchen_light"]
    assert user.wait_topic("zigbee2mqtt/Kitchen light/set").payload == b'{"state":"OFF"}'
    assert ask(user, "set the kitchen light to red")["response_type"] == "action_done"
    assert user.wait_topic("zigbee2mqtt/Kitchen light/set", match=lambda m: b"color" in m.payload).json() == \
        {"state": "ON", "color": {"r": 255, "g": 0, "b": 0}}

    home.publish("zigbee2mqtt/Kitchen light", {"state": "ON", "brightness": 254}, retain=True)
    assert wait_until(lambda: getattr(bridge.states.get("light.kitchen_light"), "state", None) == "on", 5)
    answer = ask(user, "is the kitchen light on?")
    assert answer["response_type"] == "query_answer" and speech(answer) == "Yes", answer
    assert speech(ask(user, "is the kitchen light off")) == "No, on"

    user.clear()
    answer = ask(user, "cancel everything")
    assert answer["intent"]["name"] == "HassCancelAll" and answer["response_type"] == "action_done"
    assert user.wait_topic("ruview/event/homeassistant_stop_all_scripts").json()["data"] == {"source": "assist"}
    assert ask(user, "nevermind")["response_type"] == "action_done"
    assert not user.on("zigbee2mqtt/Kitchen light/set") and not user.on("zigbee2mqtt/Coffee plug/set")


def test_follow_ups_continue_only_what_was_done_for_the_same_satellite(mosquitto, home, start_bridge, make_probe):
    start_bridge(mosquitto)
    user = make_probe(mosquitto, "ruview/assist/response", "ruview/assist/intent/#", "zigbee2mqtt/+/set")
    said = {"conversation_id": "c1", "site_id": "sat-1"}
    assert ask(user, {"text": "turn off the kitchen light", **said})["response_type"] == "action_done"
    assert ask(user, {"text": "it", **said})["response_type"] == "error"  # a bare pronoun is no command
    assert ask(user, {"text": "turn it on", "conversation_id": "c1", "site_id": "sat-2"})["response_type"] == "error"
    # a refused sentence leaves nothing to continue: the contradiction is not borrowed from
    assert ask(user, {"text": "turn on the coffee plug and turn off the coffee plug", **said})["data"]["reason"] \
        == "not_done"
    assert ask(user, {"text": "turn it on", **said})["response_type"] == "action_done"  # still the kitchen light
    assert ask(user, {"text": '{"text": "x"}', **said})["response_type"] == "error"
    user.flush()
    assert [m.payload for m in user.on("zigbee2mqtt/Kitchen light/set")] == [b'{"state":"OFF"}', b'{"state":"ON"}']
    assert user.on("zigbee2mqtt/Coffee plug/set") == []
    events = [m.json() for m in user.messages if m.topic.startswith("ruview/assist/intent/")]
    assert [e["response_type"] for e in events] == ["action_done", "action_done"]  # no event for what failed


def test_them_after_a_compound_is_not_one_target(mosquitto, home, start_bridge, make_probe):
    start_bridge(mosquitto)
    user = make_probe(mosquitto, "ruview/assist/response", "zigbee2mqtt/+/set")
    said = {"conversation_id": "k1", "site_id": "sat-1"}
    assert ask(user, {"text": "turn on the kitchen light and the coffee plug", **said})["response_type"] == "action_done"
    assert ask(user, {"text": "turn them off", **said})["response_type"] == "error"
    user.flush()
    assert [m.payload for m in user.on("zigbee2mqtt/Kitchen light/set")] == [b'{"state":"ON"}']
    assert [m.payload for m in user.on("zigbee2mqtt/Coffee plug/set")] == [b"ON"]
