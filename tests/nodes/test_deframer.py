"""Serial resynchronisation: frames among log lines, garbage, splits at any byte."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.nodes import codec
from bridge.nodes.deframer import Deframer, LogLine, SerialFrame
from tests.nodes.test_codec import FEATURE_STATE_HEX, MESH_DELTA_HEX, TIME_SYNC_HEX

FS = bytes.fromhex(FEATURE_STATE_HEX)
MESH = bytes.fromhex(MESH_DELTA_HEX)
SYNC = bytes.fromhex(TIME_SYNC_HEX)
VITALS = codec.encode_edge_vitals(codec.EdgeVitals(2, 1, 15.0, 70.0, -50, 1, 0.2, 9.0, 1000))
RAW = codec.encode_raw_csi(1, 7, bytes(range(128)))


def _run(chunks) -> list:
    d = Deframer()
    out = []
    for chunk in chunks:
        out += d.feed(chunk)
    return out


def test_frames_between_log_lines_in_order():
    stream = (b"I (1234) adaptive_ctrl: medium tick: state=6 yield=20pps\r\n" + FS +
              b"W (1300) wifi: beacon timeout\n" + VITALS + MESH + RAW + SYNC + b"I (1400) done\n")
    items = _run([stream])
    kinds = [type(i).__name__ if isinstance(i, LogLine) else i.frame.kind for i in items]
    assert kinds == ["LogLine", "feature_state", "LogLine", "vitals", "feature_state",
                     "raw_csi", "time_sync", "LogLine"]
    assert items[0].text == "I (1234) adaptive_ctrl: medium tick: state=6 yield=20pps"
    assert items[1].data == FS


def test_every_split_point_gives_the_same_result():
    stream = b"boot ok\n" + FS + b"x\n" + MESH + VITALS
    whole = _run([stream])
    for cut in range(1, len(stream)):
        assert _run([stream[:cut], stream[cut:]]) == whole
    assert _run([bytes([b]) for b in stream]) == whole


def test_corrupted_frame_is_skipped_and_the_next_one_found():
    bad = bytearray(FS)
    bad[30] ^= 0xFF
    truncated = MESH[:50]
    d = Deframer()
    items = d.feed(bytes(bad) + truncated + b"\x00\xff\x11\xc5junk" + FS + VITALS)
    frames = [i for i in items if isinstance(i, SerialFrame)]
    assert [f.data for f in frames] == [FS, VITALS]
    assert d.skipped_bytes > 0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 64))
def test_random_bytes_yield_no_frame_and_no_exception(data, chunk):
    d = Deframer()
    for i in range(0, len(data), chunk):
        for item in d.feed(data[i:i + chunk]):
            # a random stream may only "contain" a frame whose CRC or exact structure checks out
            if isinstance(item, SerialFrame):
                assert codec.decode(item.data) == item.frame


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["fs", "mesh", "vitals", "text", "garbage"]), max_size=20),
       st.integers(0, 2**32 - 1))
def test_valid_frames_survive_any_surrounding_noise(parts, seed):
    rng = random.Random(seed)
    stream, expected = b"", []
    for part in parts:
        if part == "fs":
            stream, expected = stream + FS, expected + [FS]
        elif part == "mesh":
            stream, expected = stream + MESH, expected + [MESH]
        elif part == "vitals":
            stream, expected = stream + VITALS, expected + [VITALS]
        elif part == "text":
            stream += b"I (%d) csi: rx ok\n" % rng.randrange(10**6)
        else:  # noise without the 0x11 0xC5 tail, so it cannot be mistaken for a frame start
            stream += bytes(rng.choice([b for b in range(256) if b not in (0x11, 0xC5)])
                            for _ in range(rng.randrange(1, 40)))
    stream += b"\n"
    got = [i.data for i in _run([stream]) if isinstance(i, SerialFrame)]
    assert got == expected
