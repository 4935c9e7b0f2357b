"""Serial ingest on real pty pairs: frames among log lines, and surviving a replug."""

from __future__ import annotations

import os
import time

from firmware_tools.simulate import generate, make_nodes
from tests.polling import wait_until


def _pty_behind(link):
    master, slave = os.openpty()
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.ttyname(slave), link)
    return master, slave


def _write(master, stream, chunk=97):
    for i, (_, data) in enumerate(stream):
        if i % 20 == 0:
            os.write(master, b"I (%d) csi_collector: tick\r\n" % i)
        for j in range(0, len(data), chunk):
            os.write(master, data[j:j + chunk])
        time.sleep(0.001)


def test_serial_node_frames_logs_and_replug(mosquitto, node_bridge, make_probe, tmp_path):
    link = str(tmp_path / "ttyRUVIEW")
    master, slave = _pty_behind(link)
    probe = make_probe(mosquitto, "ruview/node/#")
    bridge, ext, _ = node_bridge(mosquitto, serial={"desk": {"url": link, "log": True}})
    serial_link = ext.serial[0]
    assert wait_until(lambda: serial_link.connected, 10)
    _write(master, list(generate(make_nodes(1, "visit", 12, first_id=4), 12)))
    probe.wait_topic("ruview/node/node_4", 10)
    log = probe.wait_topic("ruview/node/node_4/log", 10).json()
    assert log["line"].startswith("I (") and log["level"] == "I"
    before = ext.registry.get(4).frames["feature_state"]
    assert before > 40 and ext.pipeline.errors == {}

    # unplug: the device goes away; then a new one appears at the same path
    os.close(master)
    os.close(slave)
    os.remove(link)
    assert wait_until(lambda: not serial_link.connected, 10)
    tried = serial_link.attempts
    assert wait_until(lambda: serial_link.attempts >= tried + 2, 10)  # retries against the missing path
    master, slave = _pty_behind(link)
    assert wait_until(lambda: serial_link.connected and serial_link.opens == 2, 10)
    _write(master, list(generate(make_nodes(1, "empty", 4, first_id=4, seed=3), 4)))
    assert wait_until(lambda: ext.registry.get(4).frames["feature_state"] > before + 10, 10)
    os.close(master)
    os.close(slave)


def test_corrupted_raw_csi_on_a_serial_link_never_reaches_the_log_topic(mosquitto, node_bridge, make_probe,
                                                                        tmp_path):
    """The reported leak: a raw-CSI frame whose length byte is corrupted, then CRLF, with log: true."""
    from bridge.nodes import codec
    from tests.conftest import settled

    link = str(tmp_path / "ttyRUVIEW")
    master, slave = _pty_behind(link)
    everything = make_probe(mosquitto, "#")
    bridge, ext, _ = node_bridge(mosquitto, serial={"desk": {"url": link, "log": True}})
    try:
        assert wait_until(lambda: ext.serial[0].connected, 10)
        _write(master, list(generate(make_nodes(1, "empty", 2, first_id=6), 2)))  # the node is known
        everything.wait_topic("ruview/node/node_6/log", 10)
        iq = bytes((i * 37 + 11) % 256 for i in range(128))
        frame = bytearray(codec.encode_raw_csi(6, 1, iq))
        frame[7] = 0x40
        os.write(master, b"I (500) csi: raw next\r\n" + bytes(frame) + b"\r\n" + b"I (501) csi: after\r\n")
        everything.wait_topic("ruview/node/node_6/log", 10, match=lambda m: m.json()["line"] == "I (501) csi: after")
        settled(bridge)
        everything.flush()
        published = b"\n".join(m.topic.encode() + b" " + m.payload for m in everything.messages)
        runs = {iq[i:i + 8] for i in range(len(iq) - 7)}
        assert not [r for r in runs if r in published or r.hex().encode() in published]
        assert ext.serial[0].deframer.skipped_bytes > 0
    finally:
        os.close(master)
        os.close(slave)
