"""Serial resynchronisation: frames among log lines, garbage, splits at any byte."""

from __future__ import annotations

import random
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.nodes import codec
from bridge.nodes.deframer import MAX_LINE, Deframer, LogLine, SerialFrame
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
    assert [i.data for i in items if isinstance(i, SerialFrame)] == [FS]  # VITALS: is it complete?
    items += d.idle()  # the line went quiet: a CRC-less frame that ends the buffer is accepted
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
    """Frames with a CRC survive any noise; a CRC-less frame survives wherever its end is
    confirmed: by a frame, a log line, a line break, or the quiet end of the stream."""
    rng = random.Random(seed)
    pieces = []
    for part in parts:
        if part == "text":
            pieces.append((part, b"I (%d) csi: rx ok\n" % rng.randrange(10**6)))
        elif part == "garbage":  # noise without the 0x11 0xC5 tail: it cannot be mistaken for a frame start
            pieces.append((part, bytes(rng.choice([b for b in range(256) if b not in (0x11, 0xC5)])
                                       for _ in range(rng.randrange(1, 40)))))
        else:
            pieces.append((part, {"fs": FS, "mesh": MESH, "vitals": VITALS}[part]))
    stream, expected = b"", []
    for i, (part, data) in enumerate(pieces):
        stream += data
        following = b"".join(d for _, d in pieces[i + 1:])
        ends_cleanly = (not following or following[:1] in (b"\r", b"\n", b"\x1b")
                        or re.match(rb"[EWIDV] \(", following) or pieces[i + 1][0] != "garbage")
        if part in ("fs", "mesh") or (part == "vitals" and ends_cleanly):
            expected.append(data)
    d = Deframer()
    got = [i.data for i in d.feed(stream) + d.idle() if isinstance(i, SerialFrame)]
    assert got == expected


# ---------------------------------------------------------------- privacy: raw CSI never becomes text

IQ = bytes((i * 37 + 11) % 256 for i in range(128))  # 64 subcarriers of I/Q, every byte value mixed
RAW_IQ = codec.encode_raw_csi(3, 9, IQ)


def _iq_runs(iq: bytes, n: int = 8) -> set[bytes]:
    return {iq[i:i + n] for i in range(len(iq) - n + 1)}


def _leaks(items, iq: bytes) -> list[str]:
    runs = _iq_runs(iq)
    texts = [i.text.encode("utf-8", "surrogateescape") for i in items if isinstance(i, LogLine)]
    latin = [i.text.encode("latin-1", "replace") for i in items if isinstance(i, LogLine)]
    return [t.decode("latin-1") for t in texts + latin if any(r in t for r in runs)]


def test_a_raw_csi_frame_with_a_corrupted_length_puts_no_iq_byte_in_the_log():
    frame = bytearray(RAW_IQ)
    frame[7] = 0x40  # the length byte: now it announces 0x4040 subcarriers
    stream = b"I (10) csi: start\r\n" + bytes(frame) + b"\r\nI (11) csi: next\r\n" + FS
    d = Deframer()
    items = d.feed(stream) + d.idle()
    assert [i.text for i in items if isinstance(i, LogLine)] == ["I (10) csi: start", "I (11) csi: next"]
    assert [i.data for i in items if isinstance(i, SerialFrame)] == [FS]
    assert not _leaks(items, IQ)


@settings(max_examples=400, deadline=None)
@given(iq=st.binary(min_size=16, max_size=256).filter(lambda b: len(b) % 2 == 0),
       field=st.integers(0, 19), value=st.integers(0, 255), cut=st.integers(0, 300),
       before=st.sampled_from([b"", b"\r\n", b"I (1) a: b\n", b"\x1b[0;32mI (2) wifi: up\x1b[0m\r\n"]),
       after=st.sampled_from([b"", b"\r\n", b"\n", b"I (3) c: d\r\n", b"junk\n"]),
       chunk=st.integers(1, 97), with_frame=st.booleans())
def test_no_corruption_of_a_raw_csi_frame_ever_puts_its_iq_on_a_log_line(iq, field, value, cut, before, after,
                                                                        chunk, with_frame):
    frame = bytearray(codec.encode_raw_csi(4, 1, iq))
    frame[field] = value  # corrupt one header field (magic, node, antennas, subcarriers, freq, seq, ...)
    frame = frame[:max(4, len(frame) - cut)] if cut < len(frame) else frame  # and maybe truncate it
    stream = before + bytes(frame) + after + (FS if with_frame else b"")
    d = Deframer()
    items = []
    for i in range(0, len(stream), chunk):
        items += d.feed(stream[i:i + chunk])
    items += d.idle()
    assert not _leaks(items, iq)


def test_only_esp_idf_log_lines_are_passed_on():
    d = Deframer()
    items = d.feed(b"I (1) ok: yes\nrandom text\n\xff\xfe binary\nE (22) bad: thing\r\n"
                   b"\x1b[0;33mW (3) wifi: slow\x1b[0m\n")
    assert [i.text for i in items] == ["I (1) ok: yes", "E (22) bad: thing", "W (3) wifi: slow"]
    assert d.dropped_lines == 2
    local = Deframer(log_lines_only=False)  # the desk monitor shows boot ROM text as well
    assert [i.text for i in local.feed(b"ESP-ROM:esp32c6-20220919\nI (1) a: b\n")] == [
        "ESP-ROM:esp32c6-20220919", "I (1) a: b"]


# ---------------------------------------------------------------- resync: a bad frame costs only its bytes

def test_a_truncated_crc_less_frame_does_not_swallow_the_frames_after_it():
    stream = VITALS[:20] + FS * 300  # edge vitals has no CRC: cut short, then 300 good frames
    d = Deframer()
    frames = [i for i in d.feed(stream) + d.idle() if isinstance(i, SerialFrame)]
    assert [f.data for f in frames] == [FS] * 300


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["vitals", "sync", "fs", "mesh"]), st.integers(0, 60)),
                min_size=1, max_size=12), st.integers(1, 64))
@example([("mesh", 14), ("fs", 0)], 1)  # a cut mesh header's length ran past the end: found by the search
def test_cut_headers_never_decode_as_frames_of_nodes_that_do_not_exist(pieces, chunk):
    known = {VITALS: 2, SYNC: codec.decode(SYNC).node_id, FS: codec.decode(FS).node_id,
             MESH: codec.decode(MESH).node_id}
    source = {"vitals": VITALS, "sync": SYNC, "fs": FS, "mesh": MESH}
    stream = b""
    whole = []
    for kind, cut in pieces:
        data = source[kind]
        if cut and cut < len(data):
            stream += data[:cut]  # a frame cut anywhere: header, middle, CRC
        else:
            stream += data
            whole.append(data)
    stream += b"\r\n"
    d = Deframer()
    items = []
    for i in range(0, len(stream), chunk):
        items += d.feed(stream[i:i + chunk])
    items += d.idle()
    frames = [i for i in items if isinstance(i, SerialFrame)]
    assert {f.frame.node_id for f in frames} <= set(known.values()), "a phantom node came out of cut pieces"
    assert [f.data for f in frames if f.data[:4] in (FS[:4], MESH[:4])] == \
        [w for w in whole if w[:4] in (FS[:4], MESH[:4])], "a frame with a CRC is exact"
    assert len(frames) <= len(pieces)


def test_what_resynchronising_skips_is_counted_to_the_byte():
    d = Deframer()
    bad = bytearray(FS)
    bad[30] ^= 0xFF
    items = d.feed(bytes(bad) + b"\n" + b"I (1) a: after\n")
    assert [i.text for i in items if isinstance(i, LogLine)] == ["I (1) a: after"]
    assert d.skipped_bytes == len(FS) + 1  # the failed frame and the line break that ends the resync
    assert d.dropped_lines == 0 and d.frames == 0 and d.lines == 1


# ---------------------------------------------------------------- over-long lines: dropped, and only they

LONG = b"I (5) csi: " + b"x" * (MAX_LINE + 100)  # a logger's line, but longer than any is passed on


def test_a_line_too_long_that_ends_in_a_carriage_return_costs_only_itself():
    """Issue 34: the resynchronisation after an over-long line outlived it, so the next line lost its
    text up to its first \\n, or was spliced onto the line after it."""
    d = Deframer()
    items = d.feed(LONG + b"\rI (2) a: b") + d.feed(b"c\nI (3) d: e\n")
    assert [i.text for i in items] == ["I (2) a: bc", "I (3) d: e"]
    d = Deframer()
    items = d.feed(LONG + b"\rI (2) a: b\n") + d.feed(b"I (3) d: e\n")
    assert [i.text for i in items] == ["I (2) a: b", "I (3) d: e"]
    assert d.dropped_lines == 1 and d.skipped_bytes == 0  # the long line is counted as text, not as skipped bytes


_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz :=.", max_size=40)
_LOG_LINES = st.builds(lambda n, w: f"I ({n}) tag: {w}".rstrip().encode(), st.integers(0, 10**6), _WORDS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("log"), _LOG_LINES, st.sampled_from([b"\n", b"\r\n"])),
                          st.tuples(st.just("long"), st.integers(MAX_LINE + 1, MAX_LINE + 400).map(lambda n: b"y" * n),
                                    st.sampled_from([b"\r", b"\n", b"\r\n"])),
                          st.tuples(st.just("long"), st.integers(MAX_LINE - 10, MAX_LINE + 400).map(
                              lambda n: LONG[:n]), st.sampled_from([b"\n", b"\r\n"]))),
                max_size=12),
       st.lists(st.integers(0, 20_000), max_size=8))
@example([("long", LONG, b"\r"), ("log", b"I (2) a: b", b"\n"), ("log", b"I (3) d: e", b"\n")], [len(LONG) + 5])
def test_however_the_bytes_arrive_every_short_log_line_comes_out_whole_and_every_long_one_is_dropped(lines, cuts):
    stream = b"".join(text + end for _, text, end in lines)
    d = Deframer()
    items = []
    edges = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    for a, b in zip(edges, edges[1:]):
        items += d.feed(stream[a:b])
    items += d.idle()
    short = [text.decode() for kind, text, _ in lines if len(text) <= MAX_LINE]
    assert [i.text for i in items] == short
    assert d.dropped_lines == sum(len(text) > MAX_LINE for _, text, _ in lines)
