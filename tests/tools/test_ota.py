"""`ruview-node ota` against a mock node written from the firmware, streaming to a real bridge:
success only once the node is back, still on the new version and sending frames again; a wrong
PSK, a roll-back (at once or after running the new image), a node that never comes back and
images the node must not get each end with one line and exit 1."""

from __future__ import annotations

import pytest

from firmware_tools.cli import main
from firmware_tools.mock_ota import MockOtaNode
from firmware_tools.node_http import NodeAddress, NodeClient, NodeHttpError
from firmware_tools.node_secrets import PskStore
from firmware_tools.ota_push import ImageError, check_image
from tests.polling import wait_until
from tests.tools.images import app_image

PSK = "c0ffee" * 10


@pytest.fixture
def nodes():
    made: list[MockOtaNode] = []

    def make(**kwargs) -> MockOtaNode:
        kwargs.setdefault("psk", PSK)
        kwargs.setdefault("reboot_delay", 0.3)
        kwargs.setdefault("reboot_gap", 0.8)
        node = MockOtaNode(**kwargs).start()
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "esp32-csi-node.bin"
    path.write_bytes(app_image("1.1.0"))
    return path


def _psk_file(tmp_path, text=PSK + "\n"):
    path = tmp_path / "node.psk"
    path.write_text(text)
    path.chmod(0o600)
    return path


def _ota(image, node, psk_file, *extra):
    return main(["ota", str(image), "--host", node.address, "--psk-file", str(psk_file), "--settle", "0.6",
                 "--timeout", "8", "--http-timeout", "3", *extra])


def test_push_succeeds_once_the_node_is_back_on_the_new_version(nodes, image, tmp_path, capsys):
    node = nodes(version="1.0.0")
    assert _ota(image, node, _psk_file(tmp_path)) == 0          # the PSK file ends with a newline
    out = capsys.readouterr()
    assert f"node {node.address} updated 1.0.0 -> 1.1.0: confirmed" in out.out
    assert node.version == "1.1.0" and node.running_partition == "ota_1" and node.boots == 2
    assert PSK not in out.out + out.err


def test_a_wrong_psk_is_refused_before_the_image_is_sent(nodes, image, tmp_path, capsys):
    node = nodes(version="1.0.0")
    assert _ota(image, node, _psk_file(tmp_path, "0" * 64)) == 1
    err = capsys.readouterr().err
    assert f"node {node.address} refused the PSK (403): update 1.0.0 -> 1.1.0 not sent" in err
    assert node.uploads == 0 and node.boots == 1


def test_an_image_sent_with_a_wrong_psk_is_a_reset_or_a_403_never_success(nodes):
    node = nodes()
    client = NodeClient(NodeAddress("127.0.0.1", node.port), "wrong", timeout=3)
    try:
        answer = client.call("POST", "/ota", app_image("1.1.0", size=600_000),
                             content_type="application/octet-stream")
        assert answer.status == 403 and "Authentication required" in answer.body
    except NodeHttpError as exc:
        assert "closed the connection" in str(exc)
    assert node.uploads == 0


@pytest.mark.parametrize("behaviour, how", [("rollback", "after first running it pending verification"),
                                            ("rollback_at_once", "at once")])
def test_a_roll_back_is_reported(nodes, image, tmp_path, capsys, behaviour, how):
    node = nodes(version="1.0.0", on_update=behaviour, pending_for=0.4)
    assert _ota(image, node, _psk_file(tmp_path), "--settle", "1.5") == 1
    err = capsys.readouterr().err
    assert f"node {node.address} rolled back: 1.0.0 -> 1.1.0 was installed, it runs 1.0.0 again" in err
    assert how in err
    assert wait_until(lambda: node.up and node.version == "1.0.0", 5)


def test_a_node_that_never_comes_back_is_named(nodes, image, tmp_path, capsys):
    node = nodes(version="1.0.0", on_update="never_back")
    assert _ota(image, node, _psk_file(tmp_path), "--timeout", "3") == 1
    assert (f"node {node.address} did not come back within 3 s after taking 1.1.0 (was 1.0.0)"
            in capsys.readouterr().err)


def test_a_node_without_a_psk_on_old_firmware_is_a_warning(nodes, image, tmp_path, capsys):
    node = nodes(psk=None, open_without_psk=True)
    assert _ota(image, node, _psk_file(tmp_path)) == 0
    assert "accepts updates without any PSK" in capsys.readouterr().err


def test_a_node_without_a_psk_on_current_firmware_refuses(nodes, image, tmp_path, capsys):
    node = nodes(psk=None)
    assert _ota(image, node, _psk_file(tmp_path)) == 1
    assert "refused the PSK (403)" in capsys.readouterr().err


def test_images_the_node_must_not_get(tmp_path):
    assert check_image(app_image("2.0.1"), "app.bin") == "2.0.1"
    with pytest.raises(ImageError, match="built for ESP32-S3, not the ESP32-C6"):
        check_image(app_image(chip="esp32s3"), "s3.bin")
    with pytest.raises(ImageError, match="not an ESP-IDF app image"):
        check_image(b"PK\x03\x04" + bytes(100), "x.zip")
    with pytest.raises(ImageError, match="takes at most 921,600"):
        check_image(app_image(size=950_000), "big.bin", 921_600)


def test_the_same_version_is_not_sent(nodes, tmp_path, capsys):
    node = nodes(version="1.1.0")
    path = tmp_path / "same.bin"
    path.write_bytes(app_image("1.1.0"))
    assert _ota(path, node, _psk_file(tmp_path)) == 0
    assert "already runs 1.1.0; nothing sent" in capsys.readouterr().out and node.uploads == 0


def test_push_by_node_name_waits_for_frames_at_the_bridge(mosquitto, node_bridge, nodes, image, tmp_path, capsys):
    bridge, _ext, udp_port = node_bridge(mosquitto)
    node = nodes(node_id=7, version="1.0.0", udp_target=("127.0.0.1", udp_port))
    state = tmp_path / "state"
    PskStore(state).put(7, PSK)
    config = tmp_path / "config.yaml"
    config.write_text(f"mqtt:\n  url: {mosquitto.url}\n")
    assert wait_until(lambda: bridge.extension("nodes").registry.get(7) is not None, 10)
    # the bridge knows a reboot by a boot clock that went back more than 1 s: let it run 2.5 s first
    assert wait_until(lambda: node.frames_sent >= 25, 10)
    code = main(["ota", str(image), "--node", "node_7", "--config", str(config), "--state-dir", str(state),
                 "--node-port", str(node.port), "--settle", "0.5", "--timeout", "10"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "node node_7 (127.0.0.1:%d) updated 1.0.0 -> 1.1.0: confirmed (running 0.5 s, frames resumed)" \
        % node.port in out.out


def test_release_add_checks_the_image_and_list_shows_it(tmp_path, capsys):
    state = tmp_path / "state"
    s3 = tmp_path / "s3.bin"
    s3.write_bytes(app_image("9.9.9", chip="esp32s3"))
    assert main(["release", "add", str(s3), "--state-dir", str(state)]) == 2
    assert "built for ESP32-S3, not the ESP32-C6" in capsys.readouterr().err
    good = tmp_path / "esp32-csi-node.bin"
    good.write_bytes(app_image("1.5.0"))
    assert main(["release", "add", str(good), "--state-dir", str(state)]) == 0
    assert (state / "ota" / "releases" / "1.5.0.bin").read_bytes() == good.read_bytes()
    capsys.readouterr()
    assert main(["release", "list", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out.startswith("1.5.0 ")
