"""Find binary frames inside a serial byte stream that also carries ESP-IDF log lines.

Every RuView magic ends in bytes 0x11 0xC5 (little-endian 0xC511....), and
0xC5 never occurs in ASCII log text, so a candidate frame starts two bytes
before each 0x11 0xC5. A candidate becomes a frame only when its length is
known from its header, all of it has arrived, and `decode()` accepts it (CRC
included where the format has one). A kind without a CRC is accepted only
when the bytes after it confirm the boundary — another magic, the start of a
log line, or the end of the buffer once the line has gone quiet (`idle()`) —
and no other magic may start inside it, so a truncated frame cannot swallow the
valid frame after it, and cut headers cannot pass for a frame. A candidate that fails costs only its own bytes.

Privacy (invariant 1): bytes skipped while resynchronising are dropped, never
passed on as text — a corrupted raw-CSI frame's I/Q bytes must not reach the
log topic. Text is resumed only after the next line break, and a line is
passed on only if it is what the ESP-IDF logger writes: printable text with
its level prefix (`I (1234) tag: ...`, optionally in ANSI colour).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from bridge.nodes import codec
from bridge.nodes.codec import DecodeError, Frame, decode

MAX_FRAME = 2048  # largest raw CSI frame a C6 sends (HE-SU ~1,556 bytes) with room to spare
MAX_LINE = 1024   # a "line" longer than this without a newline is dropped as garbage
_TAIL = b"\x11\xc5"
_MAGIC_PREFIXES = {struct.pack("<I", m)[:n] for m in codec.MAGICS for n in (1, 2, 3)}
_MAGIC_BYTES = {struct.pack("<I", m) for m in codec.MAGICS}
_CRC_KINDS = {codec.FEATURE_STATE, codec.MESH}  # the formats whose CRC32 proves the boundary
_ANSI = re.compile(rb"\x1b\[[0-9;]*m")
_LOG_LINE = re.compile(r"[EWIDV] \(\d+\) \S")
_LINE_START = re.compile(rb"(?:\x1b\[[0-9;]*m)?[EWIDV] \(")


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


def log_line(raw: bytes) -> str | None:
    """The text of an ESP-IDF log line, or None if these bytes are not one."""
    try:
        text = _ANSI.sub(b"", raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.rstrip("\r\n")
    if not _LOG_LINE.match(text) or not text.isprintable():
        return None
    return text


def _printable_line(raw: bytes) -> str | None:
    text = _ANSI.sub(b"", raw).decode("utf-8", "replace").rstrip("\r\n")
    return text if text.isprintable() else None


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


_LINE_PREFIXES = {bytes([c]) for c in b"EWIDV"} | {bytes([c]) + b" " for c in b"EWIDV"}


def _boundary(after: bytes | bytearray) -> bool | None:
    """Do these bytes start where a frame may end? None: too few bytes to tell yet."""
    after = bytes(after)
    if not after:
        return None
    if after[:1] in (b"\r", b"\n", b"\x1b") or _LINE_START.match(after):
        return True  # a line break or the start of a log line
    if len(after) >= 4:
        return after[:4] in _MAGIC_BYTES
    return None if after in _MAGIC_PREFIXES or after in _LINE_PREFIXES else False


class Deframer:
    """Feed it bytes as they arrive; get back frames and log lines in stream order."""

    def __init__(self, *, log_lines_only: bool = True) -> None:
        """log_lines_only=False passes any printable line on (the local monitor shows boot ROM
        text too); skipped bytes never become text either way."""
        self._log_lines_only = log_lines_only
        self._buf = bytearray()
        self._line = bytearray()
        self._resync = False  # after a failed candidate: drop text up to the next line break
        self._overlong = False  # the rest of a line already dropped as too long: dropped up to its end
        self.frames = 0
        self.lines = 0
        self.skipped_bytes = 0  # bytes dropped while resynchronising (failed candidates, not text)
        self.dropped_lines = 0  # text that is not an ESP-IDF log line

    def feed(self, data: bytes) -> list[SerialFrame | LogLine]:
        self._buf += data
        return self._scan(quiet=False)

    def idle(self) -> list[SerialFrame | LogLine]:
        """The line has been quiet: a CRC-less frame that ends the buffer may now be accepted,
        and a candidate still short of its length is given up (its first byte is skipped and
        the scan goes on, so what followed a cut header is found)."""
        return self._scan(quiet=True) if self._buf else []

    def _scan(self, quiet: bool) -> list[SerialFrame | LogLine]:
        out: list[SerialFrame | LogLine] = []
        buf = self._buf
        while buf:
            start = self._next_candidate()
            if start is None:
                # no frame start in sight: all is text but a tail that may begin a magic
                keep = _partial_magic_len(buf)
                self._text(buf[:len(buf) - keep], out)
                del buf[:len(buf) - keep]
                break
            if start:
                self._text(buf[:start], out)
                del buf[:start]
            try:
                length = frame_length(buf)
            except DecodeError:
                self._reject()
                continue
            if length is not None and length > MAX_FRAME:
                self._reject()
                continue
            if length is None or len(buf) < length:
                if quiet:  # the line went quiet inside it: the rest is not coming, and a
                    self._reject()  # frame behind a cut header must not wait with it
                    continue
                break  # wait for the rest
            candidate = bytes(buf[:length])
            try:
                frame = decode(candidate)
            except DecodeError:
                self._reject()
                continue
            if struct.unpack_from("<I", candidate)[0] not in _CRC_KINDS:
                if any(candidate.find(m, 1) != -1 for m in _MAGIC_BYTES):
                    self._reject()  # another frame starts inside it: this one was cut short
                    continue
                confirmed = _boundary(buf[length:length + 4])
                if confirmed is None and not (quiet and len(buf) == length):
                    break  # wait: the next bytes decide
                if confirmed is False:
                    self._reject()
                    continue
            out.append(SerialFrame(candidate, frame))
            self.frames += 1
            self._resync = False
            del buf[:length]
        return out

    def _next_candidate(self) -> int | None:
        i = self._buf.find(_TAIL, 2)
        return None if i == -1 else i - 2

    def _reject(self) -> None:
        """A candidate failed: drop its first byte and everything up to the next line break."""
        self.skipped_bytes += 1
        del self._buf[:1]
        self._resync = True
        self._overlong = False  # the resync's \n ends that line too
        self._line.clear()

    def _text(self, data: bytes | bytearray, out: list) -> None:
        """Text between frames, cut into lines. A line longer than MAX_LINE is dropped up to its
        own end (a \\r or \\n, whichever comes first once it is too long), and no further: the
        line after it comes out whole however the bytes were split into reads."""
        data = bytes(data)
        if self._resync:
            newline = data.find(b"\n")
            if newline == -1:
                self.skipped_bytes += len(data)
                return
            self.skipped_bytes += newline + 1
            data = data[newline + 1:]
            self._resync = False
        for byte_line in data.splitlines(keepends=True):
            ended = byte_line.endswith((b"\r", b"\n"))
            if self._overlong:
                self._overlong = not ended
                continue
            self._line += byte_line
            if self._line.endswith(b"\n"):
                self._emit_line(out)
            elif len(self._line.rstrip(b"\r")) > MAX_LINE:
                self.dropped_lines += 1
                self._line.clear()
                self._overlong = not ended

    def _emit_line(self, out: list) -> None:
        raw = bytes(self._line)
        self._line.clear()
        if not raw.strip():
            return
        if len(raw.rstrip(b"\r\n")) > MAX_LINE:  # arrived in one read: as long as one cut short
            self.dropped_lines += 1
            return
        text = log_line(raw) if self._log_lines_only else _printable_line(raw)
        if text is None:
            self.dropped_lines += 1
            return
        out.append(LogLine(text))
        self.lines += 1
