"""Import an upstream RuView recording (.csi.jsonl) as a capture of real datagrams.

The upstream recorder stored each packet already decoded; replaying it through
the bridge needs the bytes back, so each record is re-encoded into its wire
format with the original spacing. Sequence numbers the recorder did not keep
(raw CSI) are counted per node; device timestamps come from host time.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

import orjson

from bridge.nodes import codec
from bridge.nodes.capture import Datagram


class RecordingError(ValueError):
    pass


def _source(node_id: int) -> str:
    return f"192.0.2.{node_id}:40000"  # documentation range: a label only, never an address used


def recording_datagrams(path: str | Path) -> Iterator[Datagram]:
    path = Path(path)
    start: float | None = None
    raw_seq: dict[int, int] = {}
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = orjson.loads(line)
            t = float(r["timestamp"])
            start = t if start is None else start
            node = int(r["node_id"])
            rel_ms = int((t - start) * 1000)
            magic = int(r["magic"], 16)
            if r.get("type") == "raw_csi":
                raw_seq[node] = raw_seq.get(node, 0) + 1
                data = codec.encode_raw_csi(node, raw_seq[node], bytes.fromhex(r["iq_hex"]),
                                            rssi=int(r["rssi"]))
            elif r.get("type") == "vitals":
                data = codec.encode_edge_vitals(codec.EdgeVitals(
                    node, int(r["flags"]), float(r["breathing_bpm"]), float(r["heartrate_bpm"]),
                    int(r["rssi"]), int(r["n_persons"]), float(r["motion_energy"]),
                    float(r["presence_score"]), rel_ms))
            elif r.get("type") == "feature":
                data = codec.encode_feature_vector(codec.FeatureVector(
                    node, int(r["seq"]), rel_ms * 1000, tuple(float(x) for x in r["features"])))
            elif magic == codec.COMPRESSED_CSI:
                data = codec.encode_compressed_csi(node, bytes(int(r["size"]) - 10))
            else:
                raise RecordingError(f"{path}: line {number}: unknown record type {r.get('type')!r}")
        except RecordingError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{path}: line {number}: {exc}") from None
        yield Datagram(t - start, _source(node), data)
