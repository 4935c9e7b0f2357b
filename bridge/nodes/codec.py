"""RuView node wire formats (../shared/wire-format.md): decode and encode every packet.

`decode(datagram)` returns one frame object or raises DecodeError whose
`reason` is a short counter name (`crc`, `length`, `unknown_magic`, ...), so
ingest can count per source and drop without ever letting an exception out.
Raw and compressed CSI decode to their headers only: the I/Q bytes are never
copied into a frame object, so no later stage can leak them by accident.
The encoders exist for the simulator, the recording importer and the tests.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import ClassVar, Literal, NamedTuple, Protocol

RAW_CSI = 0xC5110001
EDGE_VITALS = 0xC5110002
FEATURE_VECTOR = 0xC5110003
FUSED_VITALS = 0xC5110004  # older firmware also sent WASM output on this magic
COMPRESSED_CSI = 0xC5110005
FEATURE_STATE = 0xC5110006
WASM_OUTPUT = 0xC5110007
MESH = 0xC5118100
TIME_SYNC = 0xC511A110

MESH_FEATURE_DELTA, MESH_HEALTH, MESH_ANOMALY_ALERT = 0x05, 0x06, 0x07
FALL_BIT = 0x08  # feature state quality_flags bit 3: "anomaly triggered (fall)" (wire-format.md)

_FEATURE_STATE = struct.Struct("<IBBHQfffffffffHbBI")  # 60 bytes; bytes 54-55 read as i8 + u8
_EDGE_VITALS = struct.Struct("<IBBHIbB2sffII")  # 32
_FEATURE_VECTOR = struct.Struct("<IBBHq8f")  # 48
_FUSED_VITALS = struct.Struct("<IBBHIbBBBffIfffBBHI")  # 48
_RAW_CSI = struct.Struct("<IBBHIIbbBB")  # 20 + I/Q
_COMPRESSED_CSI = struct.Struct("<IBBHH")  # 10 + payload
_WASM_HEADER = struct.Struct("<IBBH")  # 8 + 5n
_WASM_EVENT = struct.Struct("<Bf")
_MESH_HEADER = struct.Struct("<IBBBBIHH")  # 16 + payload + crc32
_MESH_HEALTH = struct.Struct("<8sQBBBbHHHH")  # 28: envelope of 48 bytes
_MESH_ANOMALY = struct.Struct("<8sQBBHff")  # 28: envelope of 48 bytes
_TIME_SYNC = struct.Struct("<IBBBBQQI4x")  # 32
_MAGIC = struct.Struct("<I")
_CRC = struct.Struct("<I")

MAX_MESH_PAYLOAD = 256


class DecodeError(ValueError):
    """Why a datagram was dropped; `reason` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ------------------------------------------------------------------ frames
# Immutable named tuples: building one is several times cheaper than a frozen
# dataclass, and at 100,000 frames/s that is most of the decode cost.
# Each frame is a NamedTuple of its wire fields (`_...Fields`) and a subclass adding
# its `kind` and flag properties: a NamedTuple body may hold only fields and methods,
# and the subclass (with empty `__slots__`) keeps the instances plain tuples.


class _FeatureStateFields(NamedTuple):
    node_id: int
    mode: int
    seq: int
    ts_us: int
    motion_score: float
    presence_score: float
    respiration_bpm: float
    respiration_conf: float
    heartbeat_bpm: float
    heartbeat_conf: float
    anomaly_score: float
    env_shift_score: float
    node_coherence: float
    quality_flags: int
    rssi: int | None = None  # newer firmware: byte 54 as i8, 0 = not measured


class FeatureState(_FeatureStateFields):
    __slots__ = ()
    kind: ClassVar[Literal["feature_state"]] = "feature_state"

    @property
    def presence_valid(self) -> bool:
        return bool(self.quality_flags & 0x01)

    @property
    def respiration_valid(self) -> bool:
        return bool(self.quality_flags & 0x02)

    @property
    def heartbeat_valid(self) -> bool:
        return bool(self.quality_flags & 0x04)

    @property
    def fall(self) -> bool:
        return bool(self.quality_flags & FALL_BIT)

    @property
    def env_shift(self) -> bool:
        return bool(self.quality_flags & 0x10)

    @property
    def degraded(self) -> bool:
        return bool(self.quality_flags & 0x20)

    @property
    def calibrating(self) -> bool:
        return bool(self.quality_flags & 0x40)

    @property
    def recalibrate(self) -> bool:
        return bool(self.quality_flags & 0x80)


class _VitalsFlags:
    """The flag bits edge vitals and fused vitals share (mixed into both frame classes)."""

    __slots__ = ()

    @property
    def presence(self: _HasFlags) -> bool:
        return bool(self.flags & 0x01)

    @property
    def fall(self: _HasFlags) -> bool:
        return bool(self.flags & 0x02)

    @property
    def motion(self: _HasFlags) -> bool:
        return bool(self.flags & 0x04)


class _HasFlags(Protocol):
    @property
    def flags(self) -> int: ...


class _EdgeVitalsFields(NamedTuple):
    node_id: int
    flags: int
    breathing_bpm: float
    heart_bpm: float
    rssi: int
    n_persons: int
    motion_energy: float
    presence_score: float
    timestamp_ms: int


class EdgeVitals(_EdgeVitalsFields, _VitalsFlags):
    __slots__ = ()
    kind: ClassVar[Literal["vitals"]] = "vitals"


class _FusedVitalsFields(NamedTuple):
    node_id: int
    flags: int
    breathing_bpm: float
    heart_bpm: float
    rssi: int
    n_persons: int
    mmwave_type: int
    fusion_confidence: int
    motion_energy: float
    presence_score: float
    timestamp_ms: int
    mmwave_hr_bpm: float
    mmwave_br_bpm: float
    mmwave_distance_cm: float
    mmwave_targets: int
    mmwave_confidence: int


class FusedVitals(_FusedVitalsFields, _VitalsFlags):
    __slots__ = ()
    kind: ClassVar[Literal["fused_vitals"]] = "fused_vitals"


class _FeatureVectorFields(NamedTuple):
    node_id: int
    seq: int
    timestamp_us: int
    features: tuple[float, ...]


class FeatureVector(_FeatureVectorFields):
    __slots__ = ()
    kind: ClassVar[Literal["feature_vector"]] = "feature_vector"


class _RawCsiFields(NamedTuple):
    node_id: int
    n_antennas: int
    n_subcarriers: int
    freq_mhz: int
    seq: int
    rssi: int
    noise_floor: int
    iq_len: int


class RawCsi(_RawCsiFields):
    """Header only: the I/Q payload stays in the datagram and is never copied."""

    __slots__ = ()
    kind: ClassVar[Literal["raw_csi"]] = "raw_csi"


class _CompressedCsiFields(NamedTuple):
    node_id: int
    size: int


class CompressedCsi(_CompressedCsiFields):
    __slots__ = ()
    kind: ClassVar[Literal["compressed_csi"]] = "compressed_csi"


class _WasmOutputFields(NamedTuple):
    node_id: int
    module_id: int
    events: tuple[tuple[int, float], ...]


class WasmOutput(_WasmOutputFields):
    __slots__ = ()
    kind: ClassVar[Literal["wasm_output"]] = "wasm_output"


class _MeshHealthFields(NamedTuple):
    node_id: int
    epoch: int
    local_time_us: int
    role: int
    channel: int
    bandwidth: int
    noise_floor_dbm: int
    pkt_yield: int
    sync_error_us: int
    health_flags: int


class MeshHealth(_MeshHealthFields):
    __slots__ = ()
    kind: ClassVar[Literal["mesh_health"]] = "mesh_health"


class _MeshAnomalyFields(NamedTuple):
    node_id: int
    epoch: int
    ts_us: int
    severity: int
    reason: int  # 0 none, 1 physics, 2 multi-link, 3 yield collapse, 4 fall, 5 coherence loss
    anomaly_score: float
    motion_score: float


class MeshAnomaly(_MeshAnomalyFields):
    __slots__ = ()
    kind: ClassVar[Literal["mesh_anomaly"]] = "mesh_anomaly"

    @property
    def fall(self) -> bool:
        return self.reason == 4

    @property
    def unrecognized(self) -> bool:  # an anomaly that is not a fall
        return self.reason not in (0, 4)


class _TimeSyncFields(NamedTuple):
    node_id: int
    proto_ver: int
    flags: int
    local_us: int
    epoch_us: int
    sequence: int


class TimeSync(_TimeSyncFields):
    __slots__ = ()
    kind: ClassVar[Literal["time_sync"]] = "time_sync"


Frame = (FeatureState | EdgeVitals | FusedVitals | FeatureVector | RawCsi | CompressedCsi
         | WasmOutput | MeshHealth | MeshAnomaly | TimeSync)


# ------------------------------------------------------------------ decoding

_new_tuple = tuple.__new__  # builds a frame from a field tuple without NamedTuple's Python __new__


def _crc_ok(data: bytes | memoryview, end: int) -> bool:
    return zlib.crc32(data[:end]) == _CRC.unpack_from(data, end)[0]


def _exact(data, size: int, name: str) -> None:
    if len(data) != size:
        raise DecodeError("length", f"{name} must be {size} bytes, got {len(data)}")


def _feature_state(data) -> FeatureState:
    # the hot path (~85% of all frames): one unpack, checks inlined, no per-field rebinding
    if len(data) != 60:
        raise DecodeError("length", f"feature state must be 60 bytes, got {len(data)}")
    fields = _FEATURE_STATE.unpack_from(data)
    if zlib.crc32(data[:56]) != fields[17]:
        raise DecodeError("crc", "feature state CRC32 mismatch")
    # older firmware: bytes 54-55 a reserved u16 (0); newer: rssi i8 (0 = none) + reserved 0
    rssi = fields[15]
    return _new_tuple(FeatureState, fields[1:15] + ((rssi if rssi < 0 and fields[16] == 0 else None),))


def _edge_vitals(data) -> EdgeVitals:
    _exact(data, 32, "edge vitals")
    (_, node_id, flags, br, hr, rssi, persons, _r, motion, presence, ts_ms,
     _r2) = _EDGE_VITALS.unpack_from(data)
    return EdgeVitals(node_id, flags, br / 100, hr / 10000, rssi, persons, motion, presence, ts_ms)


def _fused_or_wasm(data) -> FusedVitals | WasmOutput:
    if len(data) == 48:
        (_, node_id, flags, br, hr, rssi, persons, mtype, fconf, motion, presence, ts_ms,
         mhr, mbr, mdist, mtargets, mconf, _r, _r2) = _FUSED_VITALS.unpack_from(data)
        return FusedVitals(node_id, flags, br / 100, hr / 10000, rssi, persons, mtype, fconf,
                           motion, presence, ts_ms, mhr, mbr, mdist, mtargets, mconf)
    return _wasm(data)  # pre-#928 firmware sent WASM output on this magic


def _feature_vector(data) -> FeatureVector:
    _exact(data, 48, "feature vector")
    _, node_id, _r, seq, ts_us, *features = _FEATURE_VECTOR.unpack_from(data)
    return FeatureVector(node_id, seq, ts_us, tuple(features))


def _raw_csi(data) -> RawCsi:
    if len(data) < 20:
        raise DecodeError("length", f"raw CSI header needs 20 bytes, got {len(data)}")
    _, node_id, n_ant, n_sub, freq, seq, rssi, noise, _ppdu, _flags = _RAW_CSI.unpack_from(data)
    iq_len = len(data) - 20
    if iq_len not in (2 * n_sub, 2 * n_sub * max(n_ant, 1)):
        raise DecodeError("length", f"raw CSI with {n_sub} subcarriers carries {iq_len} I/Q bytes")
    return RawCsi(node_id, n_ant, n_sub, freq, seq, rssi, noise, iq_len)


def _compressed_csi(data) -> CompressedCsi:
    if len(data) < 10:
        raise DecodeError("length", f"compressed CSI header needs 10 bytes, got {len(data)}")
    payload_len = _COMPRESSED_CSI.unpack_from(data)[4]
    if len(data) != 10 + payload_len:
        raise DecodeError("length", f"compressed CSI announces {payload_len} bytes in {len(data)}")
    return CompressedCsi(data[4], len(data))


def _wasm(data) -> WasmOutput:
    if len(data) < 8 or (len(data) - 8) % 5:
        raise DecodeError("length", f"WASM output must be 8 + 5n bytes, got {len(data)}")
    _, node_id, module_id, count = _WASM_HEADER.unpack_from(data)
    if count != (len(data) - 8) // 5:
        raise DecodeError("length", f"WASM output announces {count} events in {len(data)} bytes")
    events = tuple(_WASM_EVENT.unpack_from(data, 8 + 5 * i) for i in range(count))
    return WasmOutput(node_id, module_id, events)


def _time_sync(data) -> TimeSync:
    _exact(data, 32, "time sync")
    _, node_id, ver, flags, _r, local_us, epoch_us, seq = _TIME_SYNC.unpack_from(data)
    return TimeSync(node_id, ver, flags, local_us, epoch_us, seq)


def _mesh(data) -> Frame:
    if len(data) < 20:
        raise DecodeError("mesh_truncated", f"mesh envelope needs 20 bytes, got {len(data)}")
    _, version, msg_type, _role, _auth, epoch, plen, _r = _MESH_HEADER.unpack_from(data)
    if version != 1:
        raise DecodeError("mesh_version", f"mesh version {version} (expected 1)")
    if plen > MAX_MESH_PAYLOAD or 16 + plen + 4 > len(data):
        raise DecodeError("mesh_truncated", f"mesh payload of {plen} bytes in {len(data)}")
    if len(data) != 16 + plen + 4:
        raise DecodeError("length", f"mesh envelope of {plen} payload bytes is {len(data)} long")
    if not _crc_ok(data, 16 + plen):
        raise DecodeError("crc", "mesh envelope CRC32 mismatch")
    payload = bytes(data[16:16 + plen])
    if msg_type == MESH_FEATURE_DELTA:
        if len(payload) < 4 or _MAGIC.unpack_from(payload)[0] != FEATURE_STATE:
            raise DecodeError("mesh_payload", "FEATURE_DELTA does not hold a feature state")
        return _feature_state(payload)
    if msg_type == MESH_HEALTH:
        if plen < _MESH_HEALTH.size:
            raise DecodeError("mesh_truncated", f"HEALTH payload of {plen} bytes")
        nid, local_us, role, chan, bw, noise, pyield, sync_err, hflags, _r = \
            _MESH_HEALTH.unpack_from(payload)
        return MeshHealth(nid[0], epoch, local_us, role, chan, bw, noise, pyield, sync_err, hflags)
    if msg_type == MESH_ANOMALY_ALERT:
        if plen < _MESH_ANOMALY.size:
            raise DecodeError("mesh_truncated", f"ANOMALY_ALERT payload of {plen} bytes")
        nid, ts_us, severity, reason, _r, score, motion = _MESH_ANOMALY.unpack_from(payload)
        return MeshAnomaly(nid[0], epoch, ts_us, severity, reason, score, motion)
    raise DecodeError("mesh_type", f"mesh message type 0x{msg_type:02x} is not sent upstream")


_DECODERS: dict[int, Callable[[bytes | bytearray | memoryview], Frame]] = {
    FEATURE_STATE: _feature_state, EDGE_VITALS: _edge_vitals, FEATURE_VECTOR: _feature_vector,
    FUSED_VITALS: _fused_or_wasm, RAW_CSI: _raw_csi, COMPRESSED_CSI: _compressed_csi,
    WASM_OUTPUT: _wasm, MESH: _mesh, TIME_SYNC: _time_sync,
}

# Sizes the serial deframer may expect for each magic (None = variable; see frame_length).
MAGICS = (RAW_CSI, EDGE_VITALS, FEATURE_VECTOR, FUSED_VITALS, COMPRESSED_CSI, FEATURE_STATE,
          WASM_OUTPUT, MESH, TIME_SYNC)
FIXED_SIZES = {FEATURE_STATE: 60, EDGE_VITALS: 32, FEATURE_VECTOR: 48, TIME_SYNC: 32}


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Decode one datagram; raises DecodeError (never anything else) when it is not valid."""
    if len(data) < 4:
        raise DecodeError("length", f"{len(data)} bytes is shorter than a magic")
    magic = _MAGIC.unpack_from(data)[0]
    decoder = _DECODERS.get(magic)
    if decoder is None:
        raise DecodeError("unknown_magic", f"magic 0x{magic:08X}")
    try:
        return decoder(data)
    except DecodeError:
        raise
    except (struct.error, ValueError, IndexError) as exc:  # belt and braces: never escape
        raise DecodeError("length", str(exc)) from None


# ------------------------------------------------------------------ encoding


def _with_crc(body: bytes) -> bytes:
    return body + _CRC.pack(zlib.crc32(body))


def encode_feature_state(f: FeatureState, *, rssi_variant: bool = True) -> bytes:
    rssi = (f.rssi or 0) if rssi_variant else 0
    body = _FEATURE_STATE.pack(FEATURE_STATE, f.node_id, f.mode, f.seq, f.ts_us, f.motion_score,
                               f.presence_score, f.respiration_bpm, f.respiration_conf,
                               f.heartbeat_bpm, f.heartbeat_conf, f.anomaly_score,
                               f.env_shift_score, f.node_coherence, f.quality_flags, rssi, 0, 0)
    return _with_crc(body[:56])


def encode_edge_vitals(v: EdgeVitals) -> bytes:
    return _EDGE_VITALS.pack(EDGE_VITALS, v.node_id, v.flags, round(v.breathing_bpm * 100),
                             round(v.heart_bpm * 10000), v.rssi, v.n_persons, b"\0\0",
                             v.motion_energy, v.presence_score, v.timestamp_ms, 0)


def encode_feature_vector(v: FeatureVector) -> bytes:
    return _FEATURE_VECTOR.pack(FEATURE_VECTOR, v.node_id, 0, v.seq, v.timestamp_us, *v.features)


def encode_raw_csi(node_id: int, seq: int, iq: bytes, *, rssi: int = -50, noise_floor: int = -95,
                   freq_mhz: int = 2437, n_antennas: int = 1) -> bytes:
    n_sub = len(iq) // 2
    return _RAW_CSI.pack(RAW_CSI, node_id, n_antennas, n_sub, freq_mhz, seq, rssi, noise_floor,
                         0, 0) + iq


def encode_compressed_csi(node_id: int, payload: bytes) -> bytes:
    return _COMPRESSED_CSI.pack(COMPRESSED_CSI, node_id, 0, len(payload), len(payload)) + payload


def encode_wasm_output(w: WasmOutput, *, legacy_magic: bool = False) -> bytes:
    head = _WASM_HEADER.pack(FUSED_VITALS if legacy_magic else WASM_OUTPUT, w.node_id,
                             w.module_id, len(w.events))
    return head + b"".join(_WASM_EVENT.pack(t, v) for t, v in w.events)


def encode_time_sync(t: TimeSync) -> bytes:
    return _TIME_SYNC.pack(TIME_SYNC, t.node_id, t.proto_ver, t.flags, 0, t.local_us, t.epoch_us,
                           t.sequence)


def encode_mesh(msg_type: int, payload: bytes, *, epoch: int = 0, role: int = 2) -> bytes:
    if len(payload) > MAX_MESH_PAYLOAD:
        raise ValueError(f"mesh payload of {len(payload)} bytes exceeds {MAX_MESH_PAYLOAD}")
    return _with_crc(_MESH_HEADER.pack(MESH, 1, msg_type, role, 0, epoch, len(payload), 0) + payload)


def encode_mesh_health(h: MeshHealth) -> bytes:
    payload = _MESH_HEALTH.pack(bytes([h.node_id]) + bytes(7), h.local_time_us, h.role, h.channel,
                                h.bandwidth, h.noise_floor_dbm, h.pkt_yield, h.sync_error_us,
                                h.health_flags, 0)
    return encode_mesh(MESH_HEALTH, payload, epoch=h.epoch)


def encode_mesh_anomaly(a: MeshAnomaly) -> bytes:
    payload = _MESH_ANOMALY.pack(bytes([a.node_id]) + bytes(7), a.ts_us, a.severity, a.reason, 0,
                                 a.anomaly_score, a.motion_score)
    return encode_mesh(MESH_ANOMALY_ALERT, payload, epoch=a.epoch)
