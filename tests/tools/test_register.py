"""--register: config.yaml edited in place (comments kept, result validated) and the bridge's
`node/register` request for a node seen or not yet seen."""

from __future__ import annotations

import pytest

import subprocess

from bridge.app import build_bridge
from bridge.catalog import validate_config
from bridge.mqtt.settings import ConnectionSettings
from bridge.nodes.extension import NodesExtension
from bridge.topics import Topics
from firmware_tools.register import (Registration, RegisterError, bridge_connection, register_in_config,
                                     register_with_bridge)
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import Mosquitto, free_port
from tests.test_tls import pki  # noqa: F401  (the private CA fixture)


def _plain(broker) -> tuple[ConnectionSettings, Topics]:
    return ConnectionSettings(host="127.0.0.1", port=broker.port), Topics("ruview")

CONFIG = """\
# living room setup
nodes:
  devices:
    3:
      name: hall        # by the door
      room: Hall
"""


def test_config_is_updated_in_place_and_keeps_comments(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    message = register_in_config(path, Registration(5, "den", "Den", "restricted"))
    assert "node 5 registered" in message
    text = path.read_text()
    assert text.startswith("# living room setup") and "# by the door" in text
    assert "  5:\n      name: den\n      room: Den\n      privacy_class: restricted" in text
    assert "already registered" in register_in_config(path, Registration(5, "den", "Den", "restricted"))


def test_a_registration_that_breaks_the_config_is_refused_and_the_file_kept(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    with pytest.raises(RegisterError, match="would make the config invalid.*share a name"):
        register_in_config(path, Registration(5, "hall", None, None))
    assert path.read_text() == CONFIG and list(tmp_path.iterdir()) == [path]


def test_bridge_register_request_names_a_known_node_and_refuses_conflicts(mosquitto, node_bridge, make_probe):
    bridge, ext, udp_port = node_bridge(mosquitto)
    send_udp(generate(make_nodes(2, "empty", 2, first_id=1), 2), "127.0.0.1", udp_port, speed=0)
    probe = make_probe(mosquitto, "ruview/node/#")
    probe.wait_topic("ruview/node/node_2")
    data = register_with_bridge(*_plain(mosquitto), Registration(2, "study", "Study", "restricted"))
    assert data == {"node_id": 2, "name": "study", "room": "Study", "privacy_class": "restricted", "seen": True}
    state = probe.wait_topic("ruview/node/study").json()
    assert state["room"] == "Study" and state["privacy_class"] == "restricted"
    assert probe.on("ruview/node/node_2")[-1].payload == b""          # old name cleared
    with pytest.raises(RegisterError, match="has or will have the name 'study'"):
        register_with_bridge(*_plain(mosquitto), Registration(1, "study", None, None))
    with pytest.raises(RegisterError, match="privacy rule 4"):
        register_with_bridge(*_plain(mosquitto), Registration(2, None, None, "anonymous"))
    unseen = register_with_bridge(*_plain(mosquitto), Registration(40, "attic", "Attic", None))
    assert unseen["seen"] is False and unseen["privacy_class"] == "anonymous"


def test_no_bridge_answering_is_a_clear_error(mosquitto):
    with pytest.raises(RegisterError, match="no answer from a bridge"):
        register_with_bridge(*_plain(mosquitto), Registration(2, "x", None, None), timeout=1)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_registering_keeps_the_config_files_mode_and_owner(tmp_path, mode):
    import os
    import stat
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG + "mqtt:\n  password: TopSecret\n")
    os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(path, 1234, 1234)  # a config owned by another user (the bridge's service account)
    before = path.stat()
    register_in_config(path, Registration(6, "attic", None, None))
    after = path.stat()
    assert "attic" in path.read_text()
    assert stat.S_IMODE(after.st_mode) == mode
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


def test_register_reaches_the_bridge_with_the_configs_tls_ca_and_credentials(pki, tmp_path):  # noqa: F811
    """The broker takes only TLS with a private CA and a password: register connects as the bridge does,
    from the bridge's own config (it used the system CAs and no credentials)."""
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pki / "passwd"), "bridge", "s3cret-pw"], check=True)
    (pki / "passwd").chmod(0o644)
    broker = Mosquitto(extra_conf=f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
                                  f"keyfile {pki / 'server.key'}\npassword_file {pki / 'passwd'}\n"
                                  "allow_anonymous false\n").start()
    mqtt = {"url": f"mqtts://localhost:{broker.port}", "tls": {"ca": str(pki / "ca.pem")},
            "username": "bridge", "password": "s3cret-pw", "base_topic": "home"}
    udp = free_port()
    config = validate_config({"mqtt": mqtt, "nodes": {"udp": {"bind": "127.0.0.1", "port": udp}}}, "test", env={})
    bridge = build_bridge(config, extensions=[NodesExtension()])
    bridge.start()
    try:
        assert bridge.mqtt.wait_connected(15)
        path = tmp_path / "config.yaml"
        path.write_text(f"mqtt:\n  url: {mqtt['url']}\n  base_topic: home\n  username: bridge\n"
                        f"  password: s3cret-pw\n  tls:\n    ca: {pki / 'ca.pem'}\n")
        path.chmod(0o600)
        settings, topics = bridge_connection(path)
        assert settings.tls and settings.ca == str(pki / "ca.pem") and topics.base == "home"
        data = register_with_bridge(settings, topics, Registration(7, "porch", "Porch", None))
        assert data["node_id"] == 7 and data["name"] == "porch" and data["seen"] is False
        # the same broker without the password: refused, and said so
        path.write_text(path.read_text().replace("  password: s3cret-pw\n", ""))
        with pytest.raises(RegisterError, match="refused the connection"):
            register_with_bridge(*bridge_connection(path), Registration(8, "shed", None, None), timeout=5)
        with pytest.raises(RegisterError, match="expected mqtt://"):
            bridge_connection(path, "http://localhost:1883")
    finally:
        bridge.stop()
        broker.stop()
