"""The real 120 s two-node recording, re-encoded into wire format and decoded back."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from bridge.nodes import codec
from bridge.nodes.capture import CaptureError, Datagram, read_capture, write_capture
from bridge.nodes.recording import recording_datagrams

# the shared recording, gzipped in the repo so any clean checkout has it (tests/data/README.md)
RECORDING = Path(__file__).resolve().parents[1] / "data" / "ruview-2node-120s.csi.jsonl.gz"


def load_recording() -> list:
    return list(recording_datagrams(RECORDING))


@pytest.fixture(scope="module")
def datagrams():
    return load_recording()


def test_every_record_becomes_a_valid_datagram(datagrams):
    kinds = Counter((codec.decode(d.data).kind, codec.decode(d.data).node_id) for d in datagrams)
    assert kinds == Counter({("raw_csi", 1): 2659, ("raw_csi", 2): 2650, ("vitals", 1): 118,
                             ("vitals", 2): 118, ("feature_vector", 1): 118,
                             ("feature_vector", 2): 118, ("compressed_csi", 1): 2})
    assert datagrams[0].t == 0 and 119 < datagrams[-1].t < 121
    assert all(a.t <= b.t for a, b in zip(datagrams, datagrams[1:]))


def test_reencoded_values_match_the_recorder(datagrams):
    records = [json.loads(line) for line in gzip.decompress(RECORDING.read_bytes()).splitlines()]
    for record, d in zip(records, datagrams):
        frame = codec.decode(d.data)
        if record.get("type") == "vitals":
            assert frame.breathing_bpm == pytest.approx(record["breathing_bpm"], abs=0.01)
            assert frame.heart_bpm == pytest.approx(record["heartrate_bpm"], abs=1e-4)
            assert frame.presence_score == pytest.approx(record["presence_score"], rel=1e-6)
            assert frame.flags == record["flags"]
        elif record.get("type") == "raw_csi":
            assert d.data[20:] == bytes.fromhex(record["iq_hex"])
        elif record.get("type") == "feature":
            assert frame.seq == record["seq"]
            assert frame.features == pytest.approx(record["features"], rel=1e-6)


def test_capture_round_trip_and_errors(datagrams, tmp_path):
    path = tmp_path / "rec.capture.jsonl"
    assert write_capture(path, datagrams[:500], source="test") == 500
    assert list(read_capture(path)) == [Datagram(round(d.t, 6), d.src, d.data) for d in datagrams[:500]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ruview_capture": 1}\n{"t": 0, "src": "x", "data": "zz"}\n')
    with pytest.raises(CaptureError, match=r"bad.jsonl: line 2: bad capture record"):
        list(read_capture(bad))
    upstream = tmp_path / "upstream.csi.jsonl"           # a recording is not a capture
    upstream.write_bytes(b"\n".join(gzip.decompress(RECORDING.read_bytes()).splitlines()[:3]))
    with pytest.raises(CaptureError, match="not a ruview capture"):
        list(read_capture(upstream))
