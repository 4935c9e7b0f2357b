"""The wire-format.md test vectors, every packet type, and fuzzing of the decoder."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.nodes import codec
from bridge.nodes.codec import DecodeError, decode

FEATURE_STATE_HEX = ("060011c507022a0087d61200000000000000803e0000403f00006841000000000000000000000000"
                     "00000000000000000000000003000000718b9b20")
MESH_DELTA_HEX = "008111c501050200020000003c000000" + FEATURE_STATE_HEX + "f6bd0755"
TIME_SYNC_HEX = "10a111c509010600f26db70100000000c5aca501000000001400000000000000"


def test_crc32_vectors():
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert zlib.crc32(b"\x00") == 0xD202EF8D and zlib.crc32(b"") == 0


def test_feature_state_vector():
    f = decode(bytes.fromhex(FEATURE_STATE_HEX))
    assert isinstance(f, codec.FeatureState)
    assert (f.node_id, f.mode, f.seq, f.ts_us) == (7, 2, 42, 1234567)
    assert (f.motion_score, f.presence_score, f.respiration_bpm) == (0.25, 0.75, 14.5)
    assert f.quality_flags == 3 and f.presence_valid and f.respiration_valid
    assert not f.heartbeat_valid and f.rssi is None
    assert codec.encode_feature_state(f) == bytes.fromhex(FEATURE_STATE_HEX)


def test_feature_state_rssi_variant_and_reserved_variant():
    base = decode(bytes.fromhex(FEATURE_STATE_HEX))
    with_rssi = codec.FeatureState(**{**_fields(base), "rssi": -61})
    data = codec.encode_feature_state(with_rssi)
    assert data[54] == (256 - 61) and data[55] == 0
    assert decode(data).rssi == -61
    # old firmware: a non-zero reserved u16 is not an RSSI
    raw = bytearray(data[:56])
    struct.pack_into("<H", raw, 54, 0x1234)
    assert decode(bytes(raw) + struct.pack("<I", zlib.crc32(raw))).rssi is None


def test_mesh_feature_delta_vector_unwraps_to_feature_state():
    data = bytes.fromhex(MESH_DELTA_HEX)
    assert len(data) == 80 and struct.unpack_from("<I", data, 76)[0] == 0x5507BDF6
    assert decode(data) == decode(bytes.fromhex(FEATURE_STATE_HEX))
    assert codec.encode_mesh(codec.MESH_FEATURE_DELTA, bytes.fromhex(FEATURE_STATE_HEX),
                             epoch=2) == data


def test_time_sync_vector_from_a_live_c6():
    t = decode(bytes.fromhex(TIME_SYNC_HEX))
    assert t == codec.TimeSync(node_id=9, proto_ver=1, flags=6, local_us=28798450,
                               epoch_us=27634885, sequence=20)
    assert codec.encode_time_sync(t) == bytes.fromhex(TIME_SYNC_HEX)


def test_edge_vitals_scaling_round_trip():
    v = codec.EdgeVitals(3, 0b101, 14.25, 72.5, -55, 1, 0.4, 8.5, 123456)
    data = codec.encode_edge_vitals(v)
    assert len(data) == 32
    got = decode(data)
    assert got.breathing_bpm == 14.25 and got.heart_bpm == 72.5
    assert got.presence and got.motion and not got.fall and got.n_persons == 1


def test_feature_vector_fused_wasm_and_raw_headers():
    fv = codec.FeatureVector(2, 17, 99, tuple(float(i) / 8 for i in range(8)))
    assert decode(codec.encode_feature_vector(fv)) == fv
    fused = struct.pack("<IBBHIbBBBffIfffBBHI", codec.FUSED_VITALS, 4, 3, 1500, 720000, -60, 1,
                        2, 90, 0.5, 9.0, 1000, 71.0, 15.0, 120.0, 1, 80, 0, 0)
    f = decode(fused)
    assert isinstance(f, codec.FusedVitals) and f.breathing_bpm == 15.0 and f.heart_bpm == 72.0
    w = codec.WasmOutput(5, 1, ((1, 0.5), (7, 2.0)))
    assert decode(codec.encode_wasm_output(w)) == w
    assert decode(codec.encode_wasm_output(w, legacy_magic=True)) == w  # pre-#928 magic
    raw = decode(codec.encode_raw_csi(1, 9, bytes(128)))
    assert isinstance(raw, codec.RawCsi) and raw.n_subcarriers == 64 and raw.iq_len == 128
    assert not hasattr(raw, "iq")  # I/Q never copied into a frame
    assert decode(codec.encode_compressed_csi(1, b"\x01\x02")).size == 12


def test_mesh_health_and_anomaly():
    h = codec.MeshHealth(6, 3, 10_000_000, 2, 6, 20, -92, 20, 104, 0)
    data = codec.encode_mesh_health(h)
    assert len(data) == 48 and decode(data) == h
    a = codec.MeshAnomaly(6, 3, 5_000_000, 2, 4, 0.875, 0.75)
    data = codec.encode_mesh_anomaly(a)
    assert len(data) == 48 and decode(data) == a and decode(data).fall


@pytest.mark.parametrize("data,reason", [
    (b"", "length"), (b"\x06\x00\x11", "length"),
    (bytes.fromhex(FEATURE_STATE_HEX)[:-1], "length"),
    (bytes.fromhex(FEATURE_STATE_HEX)[:-1] + b"\x00", "crc"),
    (struct.pack("<I", 0xC5110008) + bytes(56), "unknown_magic"),
    (struct.pack("<I", 0xDEADBEEF), "unknown_magic"),
    (bytes.fromhex(MESH_DELTA_HEX)[:19], "mesh_truncated"),
    (bytes.fromhex(MESH_DELTA_HEX)[:60], "mesh_truncated"),
    (bytes.fromhex(MESH_DELTA_HEX)[:-1] + b"\x00", "crc"),
    (bytes.fromhex(MESH_DELTA_HEX).replace(bytes.fromhex("008111c501"), bytes.fromhex("008111c502"), 1),
     "mesh_version"),
    (codec.encode_mesh(0x01, b"sync"), "mesh_type"),
    (codec.encode_mesh(codec.MESH_HEALTH, b"short"), "mesh_truncated"),
    (codec.encode_raw_csi(1, 1, bytes(128))[:-2], "length"),
    (codec.encode_wasm_output(codec.WasmOutput(1, 1, ((1, 1.0),)))[:-1], "length"),
])
def test_bad_datagrams_name_their_reason(data, reason):
    with pytest.raises(DecodeError) as err:
        decode(data)
    assert err.value.reason == reason


VALID = [bytes.fromhex(FEATURE_STATE_HEX), bytes.fromhex(MESH_DELTA_HEX),
         bytes.fromhex(TIME_SYNC_HEX)]
CRC_PROTECTED = VALID[:2]


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_escape_as_anything_but_decode_error(data):
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(CRC_PROTECTED), st.integers(0, 79), st.integers(1, 255))
def test_a_flipped_byte_in_a_crc_frame_is_never_accepted(frame, pos, xor):
    pos %= len(frame)
    mutated = bytearray(frame)
    mutated[pos] ^= xor
    try:
        got = decode(bytes(mutated))
    except DecodeError:
        return
    # CRC-32 detects every single-byte error, and the CRC covers every byte of these frames
    pytest.fail(f"mutated frame at byte {pos} was accepted as {got}")


def _fields(obj) -> dict:
    return obj._asdict()


# ---------------------------------------------------------------- every field, every bit (mutation testing found these)

def test_every_field_of_fused_vitals_and_a_raw_csi_header_is_where_the_format_puts_it():
    fused = struct.pack("<IBBHIbBBBffIfffBBHI", codec.FUSED_VITALS, 4, 0b110, 1500, 720000, -60, 2,
                        3, 90, 0.5, 9.0, 1000, 71.0, 15.0, 120.0, 1, 80, 0, 0)
    assert decode(fused) == codec.FusedVitals(4, 0b110, 15.0, 72.0, -60, 2, 3, 90, 0.5, 9.0, 1000, 71.0, 15.0,
                                              120.0, 1, 80)
    raw = codec.encode_raw_csi(7, 4242, bytes(128), rssi=-61, noise_floor=-93, freq_mhz=5180, n_antennas=2)
    assert decode(raw) == codec.RawCsi(7, 2, 64, 5180, 4242, -61, -93, 128)
    one = codec.encode_raw_csi(3, 1, bytes(60))
    assert decode(one).n_subcarriers == 30 and decode(one).iq_len == 60
    header = struct.pack("<IBBHIIbbBB", codec.RAW_CSI, 1, 2, 16, 2412, 1, -50, -90, 0, 0)
    assert decode(header + bytes(32)).iq_len == 32  # one antenna's worth
    assert decode(header + bytes(64)).iq_len == 64  # both antennas
    for bad in (header + bytes(48), header + bytes(96), header[:19]):
        with pytest.raises(codec.DecodeError, match="length"):
            decode(bad)



def test_vitals_flag_bits_each_mean_one_thing():
    for flags, presence, fall, motion in ((0b001, True, False, False), (0b010, False, True, False),
                                          (0b100, False, False, True), (0b000, False, False, False)):
        v = decode(codec.encode_edge_vitals(codec.EdgeVitals(3, flags, 12.0, 60.0, -50, 1, 0.2, 4.0, 10)))
        assert (v.presence, v.fall, v.motion) == (presence, fall, motion), flags
    got = decode(codec.encode_edge_vitals(codec.EdgeVitals(3, 0, 12.0, 60.0, -47, 2, 0.25, 4.5, 987)))
    assert (got.rssi, got.n_persons, got.motion_energy, got.presence_score, got.timestamp_ms) == (-47, 2, 0.25, 4.5, 987)


def test_length_checks_are_exact_at_the_boundary():
    mesh = bytes.fromhex(MESH_DELTA_HEX)
    with pytest.raises(codec.DecodeError, match="mesh_truncated"):
        decode(mesh[:20])  # the smallest envelope is 20 bytes: a 0-byte payload
    empty = codec.encode_mesh(0x01, b"")
    assert len(empty) == 20
    with pytest.raises(codec.DecodeError, match="mesh_type"):  # 20 bytes get as far as the type
        decode(empty)
    with pytest.raises(codec.DecodeError, match="mesh_truncated"):
        decode(codec.encode_mesh(codec.MESH_HEALTH, bytes(27)))  # one short of a HEALTH payload
    assert codec.encode_mesh(codec.MESH_HEALTH, bytes(256))  # the largest payload is allowed
    with pytest.raises(ValueError):
        codec.encode_mesh(codec.MESH_HEALTH, bytes(257))
    with pytest.raises(codec.DecodeError, match="length"):
        decode(struct.pack("<IBBHIIbbBB", codec.RAW_CSI, 1, 1, 1, 2412, 1, -50, -90, 0, 0)[:19])
    assert decode(struct.pack("<I", codec.TIME_SYNC) + bytes(28)).kind == "time_sync"
    with pytest.raises(codec.DecodeError, match="length"):
        decode(b"\x00\x11\xc5")  # three bytes: not even a magic
