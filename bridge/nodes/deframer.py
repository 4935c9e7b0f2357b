"""Find binary frames inside a serial byte stream that also carries ESP-IDF log lines.

Every RuView magic ends in bytes 0x11 0xC5 (little-endian 0xC511....), and
0xC5 never occurs in ASCII log text, so a candidate frame starts two bytes
before each 0x11 0xC5. A candidate becomes a frame only when its length is
known from its header, all of it has arrived, and `decode()` accepts it
(CRC included where the format has one). Anything else is skipped one byte
at a time, so a corrupted or truncated frame costs only its own bytes.
Bytes between frames are log text, returned line by line.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bridge.nodes import codec
from bridge.nodes.codec import DecodeError, Frame, decode

MAX_FRAME = 2048  # largest raw CSI frame a C6 sends (HE-SU ~1,556 bytes) with room to spare
MAX_LINE = 1024   # a "line" longer than this without a newline is flushed as garbage text
_TAIL = b"\x11\xc5"
_MAGIC_PREFIXES = {struct.pack("<I", m)[:n] for m in codec.MAGICS for n in (1, 2, 3)}


def _partial_magic_len(buf: bytearray) -> int:
    """How many trailing bytes of buf could be the first bytes of a magic still arriving."""
    for n in (3, 2, 1):
        if len(buf) >= n and bytes(buf[-n:]) in _MAGIC_PREFIXES:
            return n
    return 0


@dataclass(frozen=True, slots=True)
class SerialFrame:
    data: bytes
    frame: Frame


@dataclass(frozen=True, slots=True)
class LogLine:
    text: str


def frame_length(buf: bytes | bytearray) -> int | None:
    """Length of the frame starting at buf[0], None if more bytes are needed to tell.

    Raises DecodeError when buf[0:4] is no known magic or the header is impossible.
    """
    if len(buf) < 4:
        return None
    magic = struct.unpack_from("<I", buf)[0]
    fixed = codec.FIXED_SIZES.get(magic)
    if fixed:
        return fixed
    if magic == codec.FUSED_VITALS:
        return 48  # a legacy WASM output on this magic is only recognised over UDP
    if magic == codec.MESH:
        if len(buf) < 16:
            return None
        plen = struct.unpack_from("<H", buf, 12)[0]
        if plen > codec.MAX_MESH_PAYLOAD:
            raise DecodeError("mesh_truncated", "mesh payload length over 256")
        return 16 + plen + 4
    if magic == codec.RAW_CSI:
        if len(buf) < 8:
            return None
        n_ant, n_sub = buf[5], struct.unpack_from("<H", buf, 6)[0]
        return 20 + 2 * n_sub * max(n_ant, 1)
    if magic == codec.WASM_OUTPUT:
        if len(buf) < 8:
            return None
        return 8 + 5 * struct.unpack_from("<H", buf, 6)[0]
    if magic == codec.COMPRESSED_CSI:
        if len(buf) < 10:
            return None
        return 10 + struct.unpack_from("<H", buf, 8)[0]
    raise DecodeError("unknown_magic", f"magic 0x{magic:08X}")


class Deframer:
    """Feed it bytes as they arrive; get back frames and log lines in stream order."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._line = bytearray()
        self.frames = 0
        self.lines = 0
        self.skipped_bytes = 0  # bytes of candidate frames that failed (CRC, length, ...)

    def feed(self, data: bytes) -> list[SerialFrame | LogLine]:
        self._buf += data
        out: list[SerialFrame | LogLine] = []
        while self._buf:
            start = self._next_candidate()
            if start is None:
                # no frame start in sight: all is text but a tail that may begin a magic
                keep = _partial_magic_len(self._buf)
                self._text(self._buf[:len(self._buf) - keep], out)
                del self._buf[:len(self._buf) - keep]
                break
            if start:
                self._text(self._buf[:start], out)
                del self._buf[:start]
            try:
                length = frame_length(self._buf)
            except DecodeError:
                self._skip_one(out)
                continue
            if length is None or len(self._buf) < length:
                if length is not None and length > MAX_FRAME:
                    self._skip_one(out)
                    continue
                break  # wait for the rest
            candidate = bytes(self._buf[:length])
            try:
                frame = decode(candidate)
            except DecodeError:
                self._skip_one(out)
                continue
            out.append(SerialFrame(candidate, frame))
            self.frames += 1
            del self._buf[:length]
        return out

    def _next_candidate(self) -> int | None:
        i = self._buf.find(_TAIL, 2)
        return None if i == -1 else i - 2

    def _skip_one(self, out: list) -> None:
        self.skipped_bytes += 1
        self._text(self._buf[:1], out)
        del self._buf[:1]

    def _text(self, data: bytes | bytearray, out: list) -> None:
        for byte_line in bytes(data).splitlines(keepends=True):
            self._line += byte_line
            if self._line.endswith(b"\n") or len(self._line) > MAX_LINE:
                self._emit_line(out)

    def _emit_line(self, out: list) -> None:
        text = self._line.decode("utf-8", "replace").rstrip("\r\n")
        self._line.clear()
        if text.strip():
            out.append(LogLine(text))
            self.lines += 1
