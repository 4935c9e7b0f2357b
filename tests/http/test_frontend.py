"""The frontend (issue 36) in a real headless browser (Debian's chromium, driven by playwright-core by
the names a screen reader announces): each flow changes the bridge only through its request verbs,
and MQTT shows the change; nothing loads from elsewhere. The login beyond loopback runs in a private
network namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.app import build_bridge
from bridge.catalog import validate_config
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.http.extension import HttpExtension
from bridge.nodes.extension import NodesExtension
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import Mosquitto, free_port, free_port_udp
from tests.polling import wait_until

JS = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS / "frontend.mjs"


def browse(url: str, scenario: str, timeout: float = 120, **spec) -> dict:
    """Run one scenario of tests/js/frontend.mjs against `url`; what the page saw."""
    out = subprocess.run(["node", str(SCRIPT), json.dumps({"url": url, "scenario": scenario, **spec})],
                         capture_output=True, text=True, timeout=timeout, cwd=JS)
    seen = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    assert out.returncode == 0, (seen.get("failure"), seen.get("dom"), seen.get("console"), out.stderr[-2000:])
    assert seen["errors"] == [], seen["errors"]
    assert seen["requests_off_host"] == [], seen["requests_off_host"]  # nothing leaves the page's origin
    refused = [line for line in seen["console"] if "Content Security Policy" in line]
    assert refused == [], refused  # the page needs nothing its CSP forbids (no inline script or style)
    return seen


@pytest.fixture
def frontend(tmp_path):
    """A bridge with the frontend on loopback; `make(broker, **sections)` -> (bridge, url, udp port)."""
    made = []

    def make(broker, *, extensions=(), state_dir=None, udp=None, port=None, env_token=None, **sections):
        udp, port = udp or free_port_udp(), port or free_port()
        raw = {"mqtt": {"url": broker.url, "reconnect": {"min_delay": 0.2, "max_delay": 1.0}},
               "bridge": {"health_interval": 1, "shutdown_timeout": 3, "state_dir": str(state_dir or tmp_path / "state")},
               "nodes": {"publish_interval": 0.2, "udp": {"bind": "127.0.0.1", "port": udp}},
               "homeassistant": {"collect_seconds": 0.3},
               "http": {"enabled": True, "port": port}}
        for key, value in sections.items():
            raw.setdefault(key, {}).update(value)
        config = validate_config(raw, "test", env={"RUVIEW_API_TOKEN": env_token} if env_token else {})
        bridge = build_bridge(config, extensions=[NodesExtension(), HomeAssistantExtension(), HttpExtension(),
                                                  *extensions])
        bridge.start()
        made.append(bridge)
        assert bridge.mqtt.wait_connected(15)
        assert bridge.extension_state["http"]["state"] == "running", bridge.extension_state
        return bridge, f"http://127.0.0.1:{port}/", udp

    yield make
    for bridge in made:
        bridge.stop()


def feed(udp: int, nodes: int, seconds: float, scenario: str = "empty", speed: float = 0) -> None:
    send_udp(generate(make_nodes(nodes, scenario, seconds), seconds), "127.0.0.1", udp, speed=speed)


def listed(probe) -> list[dict]:
    """The newest `ruview/bridge/nodes` the probe has."""
    messages = [m for m in probe.messages if m.topic == "ruview/bridge/nodes" and m.payload]
    return messages[-1].json() if messages else []


def test_rename_a_node_and_set_its_room_in_the_page_and_mqtt_shows_it(mosquitto, frontend, make_probe):
    bridge, url, udp = frontend(mosquitto, nodes={"devices": {1: {"name": "node_1"}}})
    feed(udp, 1, 3)
    nodes = bridge.extension("nodes")
    assert wait_until(lambda: nodes.registry.by_name("node_1") is not None, 10)
    probe = make_probe(mosquitto, "ruview/bridge/nodes", "ruview/node/+")
    seen = browse(url, "rename", node="node_1", to="hall-sensor", room="Hall")
    assert seen["saved"] == "Saved." and seen["hash"] == "#/nodes/hall-sensor", seen
    assert "Hall" in seen["facts"] and "hall-sensor" in seen["table"] and "node_1" not in seen["table"]
    assert wait_until(lambda: any(n["name"] == "hall-sensor" and n["room"] == "Hall" for n in listed(probe)), 10), \
        listed(probe)
    assert wait_until(lambda: any(m.topic == "ruview/node/hall-sensor" and m.payload and m.json().get("room") == "Hall"
                                  for m in probe.messages), 10)


@pytest.mark.parametrize("broker_kept", [True, False], ids=["same-broker", "retained-state-gone"])
def test_a_renamed_node_keeps_its_name_and_room_through_a_bridge_restart(mosquitto, frontend, make_probe, tmp_path,
                                                                          fresh_broker,
                                                                          broker_kept):
    state = tmp_path / "kept"
    bridge, url, udp = frontend(mosquitto, state_dir=state)
    feed(udp, 1, 3)
    assert wait_until(lambda: bridge.extension("nodes").registry.by_name("node_1") is not None, 10)
    seen = browse(url, "rename", node="node_1", to="hall-sensor", room="Hall")
    assert seen["hash"] == "#/nodes/hall-sensor", seen
    bridge.stop()
    restarted = datetime.now(timezone.utc)
    broker = mosquitto if broker_kept else fresh_broker()  # a broker that lost its retained messages
    again, url, udp = frontend(broker, state_dir=state, udp=udp)
    probe = make_probe(broker, "ruview/bridge/nodes")
    feed(udp, 1, 3)  # the node speaks again after the restart
    nodes = again.extension("nodes")
    assert wait_until(lambda: nodes.udp.processed >= 10, 10)

    def heard_again_as_renamed() -> bool:  # in a list this run made (the old one is retained too)
        return any(n["node_id"] == 1 and n["name"] == "hall-sensor" and n["room"] == "Hall" and n["last_seen"]
                   and datetime.fromisoformat(n["last_seen"]) > restarted for n in listed(probe))

    assert wait_until(heard_again_as_renamed, 10), listed(probe)
    assert [(n.name, n.room) for n in again.extension("http").nodes()] == [("hall-sensor", "Hall")]


def test_thresholds_and_expected_hours_set_in_the_page_reach_the_node_and_a_refusal_is_shown(mosquitto, frontend,
                                                                                               make_probe):
    bridge, url, udp = frontend(mosquitto)
    feed(udp, 1, 3)
    assert wait_until(lambda: bridge.extension("nodes").registry.by_name("node_1") is not None, 10)
    probe = make_probe(mosquitto, "ruview/node/node_1")
    seen = browse(url, "settings", node="node_1")
    assert seen["enter_shown"] == "4" and seen["hours_shown"] == "08:00-20:00", seen
    assert seen["refused"] == 'Refused: "exit_ratio" (9) must not be above "enter_ratio" (4)', seen
    assert wait_until(lambda: any(m.payload and m.json().get("thresholds") == {"enter_ratio": 4, "exit_ratio": 2,
                                                                                 "hold": 7} for m in probe.messages), 10)
    node = bridge.extension("http").nodes()[0]
    assert node.expected_hours == ("08:00-20:00",) and node.state["thresholds"]["exit_ratio"] == 2  # not 9


def test_the_log_page_filters_by_feature_and_level_and_shows_lines_live(mosquitto, frontend):
    bridge, url, udp = frontend(mosquitto)
    feed(udp, 1, 3)  # "node node_1 (1) joined": a line from bridge.nodes
    assert wait_until(lambda: any(line.get("logger") == "bridge.nodes" for line in bridge.extension("http").history.logs()),
                      10)
    seen = browse(url, "logs", feature="bridge.nodes")
    assert {line[2] for line in seen["all"]} >= {"bridge.nodes", "bridge.http"}, seen["all"]
    assert seen["feature"] and {line[2] for line in seen["feature"]} == {"bridge.nodes"}, seen["feature"]
    assert all(line[1] in ("warning", "error", "critical") for line in seen["warnings"]), seen["warnings"]
    assert seen["live"][1:] == ["info", "bridge.app", "log level info -> debug"], seen["live"]  # log_level, live


def test_remove_a_node_in_the_page_and_mqtt_forgets_it(mosquitto, frontend, make_probe):
    bridge, url, udp = frontend(mosquitto)
    send_udp(generate(make_nodes(2, "empty", 3), 3), "127.0.0.1", udp, speed=0)
    nodes = bridge.extension("nodes")
    assert wait_until(lambda: nodes.registry.by_name("node_2") is not None, 10)
    probe = make_probe(mosquitto, "ruview/bridge/nodes", "ruview/node/node_2")
    seen = browse(url, "remove", node="node_2")
    assert seen["hash"] == "#/nodes" and "node_2" not in seen["links"] and "node_1" in seen["links"], seen
    assert wait_until(lambda: [n["name"] for n in listed(probe)] == ["node_1"], 10), listed(probe)
    assert wait_until(lambda: any(m.topic == "ruview/node/node_2" and not m.payload for m in probe.messages), 10)


@pytest.fixture
def fresh_broker():
    brokers = []

    def start() -> Mosquitto:
        brokers.append(Mosquitto().start())
        return brokers[-1]

    yield start
    for broker in brokers:
        broker.cleanup()


@pytest.fixture
def frames():
    """Frames of one empty room, sent in real time until the test ends (a node that keeps talking)."""
    stop = threading.Event()
    threads = []

    def start(udp: int, nodes: int = 1, scenario: str = "empty", seconds: float = 600, first_id: int = 1) -> None:
        def run() -> None:
            from itertools import takewhile
            stream = generate(make_nodes(nodes, scenario, seconds, first_id=first_id), seconds)
            send_udp(takewhile(lambda _: not stop.is_set(), stream), "127.0.0.1", udp, speed=1)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


@pytest.mark.slow
def test_calibrate_a_node_in_the_page_and_watch_it_progress_to_the_end(mosquitto, frontend, frames, make_probe):
    bridge, url, udp = frontend(mosquitto, nodes={"presence": {"calibration": 4}})
    frames(udp)
    nodes = bridge.extension("nodes")
    assert wait_until(lambda: (nodes.registry.by_name("node_1") is not None
                               and (bridge.extension("http").nodes()[0].state or {}).get("baseline")), 20)
    probe = make_probe(mosquitto, "ruview/node/node_1")
    seen = browse(url, "calibrate", node="node_1")
    assert seen["during"].startswith("Calibrating: ") and " of 4 s" in seen["during"], seen
    assert 0 < seen["progress_during"] < 100 and seen["progress_after"] == 100, seen
    assert seen["after"].startswith("Calibrated: baseline "), seen
    states = [m.json().get("calibrating") for m in probe.messages if m.payload]
    assert True in states and states[-1] is False, states  # MQTT saw the same calibration start and end


KITCHEN_LIGHT = "homeassistant/light/0xkitchen/light/config"


@pytest.fixture
def whole_home(mosquitto, frontend, make_probe, tmp_path):
    """A bridge with every feature the frontend shows: two nodes (one Restricted), plugins (one signed
    plugin on disk, not loaded), HomeKit on loopback, assist, and a Zigbee2MQTT lamp it discovered."""
    from bridge.assist.extension import AssistExtension
    from bridge.homekit.extension import HomeKitExtension
    from bridge.plugins.extension import PluginsExtension
    from tests.assist.test_assist_mqtt import light
    from tests.plugins.helpers import Publisher

    devices = make_probe(mosquitto)
    devices.publish(KITCHEN_LIGHT, light("Kitchen light", "Kitchen", "0xkitchen"), retain=True)
    publisher = Publisher(tmp_path)
    plugin = publisher.install("threshold-alert", tmp_path / "available")
    bridge, url, udp = frontend(
        mosquitto, extensions=[PluginsExtension(), HomeKitExtension(), AssistExtension()],
        nodes={"devices": {1: {"name": "living_room", "room": "Living room"},
                           2: {"name": "kitchen", "room": "Kitchen", "privacy_class": "restricted",
                               "expected_hours": ["07:00-23:00"]}}},
        homeassistant={"collect_seconds": 0, "birth_delay": 0},
        plugins={"enabled": True, "dirs": [], "trusted_keys": [publisher.public], "watch": False,
                 "cache_dir": str(tmp_path / "cache"), "audit_log": str(tmp_path / "audit.jsonl"),
                 "entries": {"threshold_alert": {"sensor": "sensor.hall_temperature", "high": 26, "low": 24,
                                                 "alert": "binary_sensor.hall_too_warm"}}},
        homekit={"enabled": True, "address": "127.0.0.1", "advertise": False, "port": free_port()},
        assist={"enabled": True})
    for name in ("plugins", "homekit", "assist"):
        assert bridge.extension_state[name]["state"] == "running", bridge.extension_state
    assist = bridge.extension("assist")
    assert wait_until(lambda: "light.kitchen_light" in {e.entity_id for e in assist.home.entities}, 10)
    return bridge, url, udp, plugin


def test_load_and_unload_a_plugin_in_the_page_and_the_audit_chain_is_verified(whole_home, make_probe, mosquitto):
    bridge, url, udp, plugin = whole_home
    probe = make_probe(mosquitto, "ruview/plugin/+/status", "ruview/plugin/+/audit")
    seen = browse(url, "plugins", path=str(plugin), domain="threshold_alert",
                  setting={"label": "On above", "bad": "", "good": 31})
    assert "running" in seen["loaded"] and "trust: signed" in seen["loaded"], seen
    assert "Permissions (its manifest): state:read:sensor.*, state:write:binary_sensor.*, entity:register" \
        in seen["loaded"], seen
    assert seen["load_status"] == "Loaded." and seen["unload_status"] == "Unloaded threshold_alert.", seen
    assert "running" in seen["reloaded"], seen
    # the settings form drawn from the signed config_schema: an empty "On above" refused by the schema
    assert "high: required, and missing" in seen["setting_refused"], seen
    assert seen["setting_saved"].startswith("Saved threshold_alert's settings"), seen
    assert bridge.extension("plugins")._entry_data("threshold_alert")["high"] == 31
    actions = [m.json()["action"] for m in probe.messages if m.topic.endswith("/audit")]
    # the page's clicks were the plugin/* requests, nothing else (a reload, and a save, is an unload and a load)
    assert actions == ["load", "unload", "load", "unload", "load", "unload"], actions
    assert seen["audit"].startswith(f"Chain verified: {len(actions)} records"), (seen, actions)
    assert probe.wait_topic("ruview/plugin/threshold_alert/status", match=lambda m: m.json()["state"] == "stopped")
    assert bridge.extension("plugins").plugins == {}


def test_an_assist_sentence_typed_in_the_page_sends_the_zigbee2mqtt_lamp_its_command(whole_home, make_probe,
                                                                                     mosquitto):
    bridge, url, udp, _ = whole_home
    lamp = make_probe(mosquitto, "zigbee2mqtt/+/set", "ruview/assist/response", "ruview/assist/intent/#")
    seen = browse(url, "assist", sentence="turn on the kitchen light", dry_run=True)
    # first the dry run: what would be done, and nothing done
    assert "would do" in seen["dry"] and "light.turn_on Kitchen light (light.kitchen_light)" in seen["dry"], seen
    dry = [m.json() for m in lamp.messages if m.topic == "ruview/assist/response"][0]
    assert dry["response_type"] == "dry_run" and dry["data"]["would"][0]["entity_id"] == "light.kitchen_light", dry
    command = lamp.wait_topic("zigbee2mqtt/Kitchen light/set")
    assert len([m for m in lamp.messages if m.topic == "zigbee2mqtt/Kitchen light/set"]) == 1  # the real one only
    assert len([m for m in lamp.messages if m.topic.startswith("ruview/assist/intent/")]) == 1
    assert command.payload == b'{"state":"ON"}' and not command.retain
    answer = seen["answer"]
    assert "HassTurnOn" in answer and "name = Kitchen light" in answer, answer
    assert "Kitchen light (light.kitchen_light)" in answer and "Turned on the light" in answer, answer
    assert lamp.wait_topic("ruview/assist/response").json()["intent"]["name"] == "HassTurnOn"  # the MQTT path


def test_the_homekit_page_shows_the_setup_code_and_its_qr_code(whole_home, tmp_path):
    bridge, url, udp, _ = whole_home
    seen = browse(url, "homekit")
    code = json.loads((tmp_path / "state" / "homekit.setup").read_text())["pincode"]
    assert seen["code"] == code and code in seen["qr_alt"], seen
    assert seen["controllers"] == "Not paired yet.", seen


@pytest.mark.slow
def test_a_tour_of_every_page_for_the_docs(whole_home, frames):
    """Every page renders without an error or a request off the origin, and fits a phone's width.
    RUVIEW_SCREENSHOTS=docs writes the docs' pictures (docs/http-*.png)."""
    bridge, url, udp, plugin = whole_home
    shots = Path(os.environ.get("RUVIEW_SCREENSHOTS") or "")
    if shots.parts:  # the docs' pictures: someone walks into the living room (30 s to 70 s); the kitchen stays empty
        frames(udp, 1, "visit", 100)
        frames(udp, 1, "empty", 600, first_id=2)
        http = bridge.extension("http")
        assert wait_until(lambda: any(n.name == "living_room" and (n.state or {}).get("presence") for n in http.nodes()),
                          80)
    else:
        frames(udp, 2)
        assert wait_until(lambda: all((n.state or {}).get("baseline") for n in bridge.extension("http").nodes()), 30)
    assert bridge.api.handle("plugin/load", {"path": str(plugin)})["status"] == "ok"  # a plugin to show
    seen = browse(url, "tour", node="kitchen", sentence="turn on the kitchen light",
                  shots=str(shots.resolve()) if shots.parts else None, timeout=180)
    assert (seen["phone_overflow"], seen["phone_overflow_home"], seen["phone_overflow_nodes"]) == (False, False, False)


# ---------------------------------------------------------------- the guards, without a browser

class Client:
    """A page's requests without the page: its session cookie, and the headers a browser would send."""

    def __init__(self, base: str, host: str | None = None) -> None:
        import http.cookiejar
        import urllib.request
        self.base, self.host = base.rstrip("/"), host
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.csrf: str | None = None

    def call(self, path: str, body: dict | None = None, *, csrf: bool = True, headers: dict | None = None,
             content_type: str = "application/json") -> tuple[int, dict]:
        import urllib.error
        import urllib.request
        head = {**({"Host": self.host} if self.host else {}), **(headers or {})}
        if body is not None:
            head["Content-Type"] = content_type
            if csrf and self.csrf:
                head.setdefault("X-CSRF-Token", self.csrf)
        request = urllib.request.Request(self.base + path, data=None if body is None else json.dumps(body).encode(),
                                         headers=head, method="GET" if body is None else "POST")
        try:
            with self.opener.open(request, timeout=20) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def session(self) -> dict:
        status, body = self.call("/ui/api/session")
        self.csrf = body.get("csrf")
        return body


def test_a_change_from_the_page_is_answered_as_the_same_request_on_mqtt(mosquitto, frontend, make_probe):
    bridge, url, udp = frontend(mosquitto)
    feed(udp, 1, 3)
    assert wait_until(lambda: bridge.extension("nodes").registry.by_name("node_1") is not None, 10)
    page = Client(url)
    assert page.session() == {"login_required": False, "logged_in": True, "csrf": page.csrf} and page.csrf
    probe = make_probe(mosquitto, "ruview/bridge/response/#")
    for verb, body in (("node/rename", {"from": "node_1", "to": "Not A Name", "transaction": "t1"}),
                       ("node/privacy", {"node": "node_1", "class": "raw", "transaction": "t2"}),
                       ("node/calibrate", {"node": "nobody", "transaction": "t3"}),
                       ("no/such_verb", {"transaction": "t4"})):
        status, answer = page.call(f"/ui/api/request/{verb}", body)
        probe.publish(f"ruview/bridge/request/{verb}", body)
        over_mqtt = probe.wait_topic(f"ruview/bridge/response/{verb}",
                                     match=lambda m: m.json().get("transaction") == body["transaction"]).json()
        assert status == 200 and answer == over_mqtt and answer["status"] == "error", (verb, answer, over_mqtt)
    assert bridge.extension("nodes").registry.by_name("node_1") is not None  # nothing changed


def test_changes_without_the_csrf_token_from_another_origin_or_not_json_are_refused(mosquitto, frontend):
    bridge, url, udp = frontend(mosquitto)
    page = Client(url)
    page.session()
    refused = [page.call("/ui/api/request/health_check", {}, csrf=False),
               page.call("/ui/api/request/health_check", {}, headers={"X-CSRF-Token": "guessed"}),
               page.call("/ui/api/request/health_check", {}, headers={"Origin": "http://evil.example"}),
               page.call("/ui/api/request/health_check", {}, content_type="text/plain")]
    assert [status for status, _ in refused] == [403, 403, 403, 415], refused
    assert "CSRF" in refused[0][1]["error"] and "Origin" in refused[2][1]["error"]
    assert page.call("/ui/api/request/health_check", {}) == (200, {"status": "ok", "data": {"healthy": True}})
    stranger = Client(url)  # no session at all: reading needs one too
    assert stranger.call("/ui/api/overview")[0] == 401
    assert stranger.call("/ui/api/request/health_check", {})[0] == 401
    # a page on a rebound DNS name (evil.example -> 127.0.0.1) reaches the port but not the frontend
    rebound = Client(url, host=f"evil.example:{url.rsplit(':', 1)[1].rstrip('/')}")
    status, body = rebound.call("/ui/api/session")
    assert status == 403 and "loopback name" in body["error"], body
    stats = bridge.extension("http").api.sessions
    assert stats.csrf_refused == 3


def test_a_password_kept_as_a_hash_logs_in_and_guessing_is_slowed(mosquitto, frontend, tmp_path):
    made = subprocess.run([sys.executable, "-m", "bridge.http.password"], input="correct horse battery\n",
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert made.returncode == 0 and made.stdout.startswith("scrypt$"), made.stderr
    hashed = made.stdout.strip()
    assert "correct horse" not in hashed
    bridge, url, udp = frontend(mosquitto, http={"password_hash": hashed})
    page = Client(url)
    assert page.session() == {"login_required": True, "logged_in": False, "csrf": None}  # a password: log in
    answers = [page.call("/ui/api/login", {"secret": f"wrong-{i}"})[0] for i in range(6)]
    assert answers == [401] * 5 + [429], answers  # five tries a minute per address
    bridge.extension("http").api.sessions._failures.clear()
    status, body = page.call("/ui/api/login", {"secret": "correct horse battery"})
    assert status == 200 and body["logged_in"] and body["csrf"], body
    page.csrf = body["csrf"]
    assert page.call("/ui/api/overview")[0] == 200
    assert page.call("/ui/api/request/health_check", {})[1]["status"] == "ok"
    with pytest.raises(Exception, match="password_hash"):
        validate_config({"http": {"password_hash": "scrypt$1$2$3$notbase64!$x"}}, "test", env={})


def test_with_a_token_on_loopback_the_page_logs_in_with_it_and_then_reads_what_an_agent_reads(mosquitto, frontend):
    import urllib.error
    import urllib.request
    bridge, url, udp = frontend(mosquitto, env_token="loopback-token-0123456789")
    page = Client(url)
    assert page.session()["login_required"] is True  # a token set: the page asks for it, even on loopback
    assert page.call("/api/v1/status")[0] == 401 and page.call("/ui/api/stream")[0] == 401
    status, body = page.call("/ui/api/login", {"secret": "loopback-token-0123456789"})
    assert status == 200 and body["logged_in"], body
    assert page.call("/api/v1/status")[0] == 200  # the session reads /api/v1 as the bearer token does
    with pytest.raises(urllib.error.HTTPError) as refused:  # and without either, an agent gets 401
        urllib.request.urlopen(url + "api/v1/status", timeout=10)
    assert refused.value.code == 401
    assert bridge.extension("http").api.sessions.logins == 1


def test_what_restricted_withholds_is_said_in_words_for_every_field():
    from bridge import privacy
    from bridge.http.ui import WITHHELD_WORDS, class_explanations
    assert set(WITHHELD_WORDS) == set(privacy.RESTRICTED_FIELDS)
    said = {c["class"]: c["lets_out"] for c in class_explanations()}
    assert "never breathing, heart rate" in said["restricted"] and "breathing and heart rate" in said["anonymous"]
    assert said["raw"].startswith("nothing") and said["derived"].startswith("nothing")


# ---------------------------------------------------------------- beyond loopback: a login, sessions, CSRF

TOKEN = "frontend-login-token-0123456789"
ADDRESS = "10.99.1.1"  # on lo inside a private network namespace
UNSHARE = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
ROOT = Path(__file__).resolve().parents[2]


def _login_scenario() -> dict:
    """In the namespace: a broker, a bridge whose frontend listens on ADDRESS, the browser's login."""
    broker = Mosquitto().start()
    try:
        port = free_port()
        raw = {"mqtt": {"url": broker.url}, "bridge": {"health_interval": 1},
               "nodes": {"udp": {"bind": "127.0.0.1", "port": free_port_udp()}},
               "http": {"enabled": True, "bind": ADDRESS, "port": port}}
        config = validate_config(raw, "test", env={"RUVIEW_API_TOKEN": TOKEN})
        bridge = build_bridge(config, extensions=[NodesExtension(), HttpExtension()])
        bridge.start()
        try:
            assert bridge.mqtt.wait_connected(15) and bridge.extension_state["http"]["state"] == "running"
            shots = os.environ.get("RUVIEW_SCREENSHOTS")
            return browse(f"http://{ADDRESS}:{port}/", "login", secret=TOKEN,
                          shots=str(Path(shots).resolve()) if shots else None)
        finally:
            bridge.stop()
    finally:
        broker.cleanup()


def test_beyond_loopback_the_page_needs_a_login_and_every_change_its_csrf_token():
    if subprocess.run([*UNSHARE, "true"], capture_output=True).returncode != 0:
        pytest.skip("this system allows no network namespace to this user (unshare -n)")
    import shlex
    import sys
    script = (f"ip link set lo up && ip addr add {ADDRESS}/32 dev lo && exec {shlex.quote(sys.executable)} "
              "-m tests.http.test_frontend login")
    out = subprocess.run([*UNSHARE, "sh", "-c", script], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-4000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["nav_hidden"] is True and seen["before"] == 401, seen  # nothing without a login
    assert seen["wrong"] == "that is not this bridge's API token or password", seen
    assert "MQTT connected" in seen["health"], seen  # logged in: the Home page
    assert seen["cookie"] == [{"httpOnly": True, "sameSite": "Strict"}], seen
    assert seen["cookie_visible_to_script"] is False
    status, error = seen["without_csrf"]
    assert status == 403 and "CSRF" in error, seen
    status, answer = seen["with_csrf"]
    assert status == 200 and answer == {"status": "ok", "data": {"healthy": True}}, seen


if __name__ == "__main__":
    import sys
    if sys.argv[1] == "login":
        print(json.dumps(_login_scenario()), flush=True)


def test_on_by_default_a_taken_port_is_a_warning_and_asked_for_it_is_a_failed_start(mosquitto, caplog):
    import socket
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    bridges = []
    try:
        for http in ({"port": taken}, {"port": taken, "enabled": True}):
            raw = {"mqtt": {"url": mosquitto.url}, "nodes": {"udp": {"bind": "127.0.0.1", "port": free_port_udp()}},
                   "http": http}
            config = validate_config(raw, "test", env={})
            assert config.http.enabled is True
            bridge = build_bridge(config, extensions=[NodesExtension(), HttpExtension()])
            bridges.append(bridge)
            bridge.start()
            assert bridge.mqtt.wait_connected(15)
        default, asked = (b.extension_state["http"] for b in bridges)
        assert default["state"] == "running" and asked["state"] == "failed", (default, asked)
        assert f"cannot listen on 127.0.0.1:{taken}: address in use; set http.port" in asked["error"]
        said = [r.getMessage() for r in caplog.records if r.name == "bridge.http" and r.levelname == "WARNING"]
        assert said == [f"http: no web page: cannot listen on 127.0.0.1:{taken}: address in use; set http.port "
                        "(it is on by default; set http.enabled: false to silence this)"], said
        assert bridges[0].info()["http"] == {"url": None, "serving": False,
                                             "why": f"cannot listen on 127.0.0.1:{taken}: address in use; set http.port"}
    finally:
        for bridge in bridges:
            bridge.stop()
        holder.close()


def test_an_assist_dry_run_over_mqtt_says_what_it_would_do_and_does_nothing(whole_home, make_probe, mosquitto):
    bridge, url, udp, _ = whole_home
    user = make_probe(mosquitto, "zigbee2mqtt/+/set", "ruview/assist/response", "ruview/assist/intent/#")
    user.publish("ruview/assist/utterance", {"text": "turn on the kitchen light", "id": "d1", "dry_run": True})
    answer = user.wait_topic("ruview/assist/response", match=lambda m: m.json().get("id") == "d1").json()
    assert answer["response_type"] == "dry_run" and answer["intent"]["name"] == "HassTurnOn", answer
    assert answer["data"]["would"] == [{"service": "light.turn_on", "entity_id": "light.kitchen_light",
                                        "name": "Kitchen light", "data": {}}], answer
    user.publish("ruview/assist/utterance", {"text": "turn on the garage door", "id": "d2", "dry_run": True})
    unknown = user.wait_topic("ruview/assist/response", match=lambda m: m.json().get("id") == "d2").json()
    assert unknown["response_type"] == "error" and unknown["data"]["would"] == [], unknown
    user.publish("ruview/assist/utterance", {"text": "turn on the kitchen light", "id": "d3", "dry_run": "yes"})
    refused = user.wait_topic("ruview/assist/response", match=lambda m: m.json().get("id") == "d3").json()
    assert refused["response_type"] == "error" and '"dry_run" must be true or false' in refused["data"]["error"]
    user.flush()
    assert not [m for m in user.messages if m.topic.startswith(("zigbee2mqtt/", "ruview/assist/intent/"))]
