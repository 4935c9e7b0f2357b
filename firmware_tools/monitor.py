"""`ruview-node monitor`: the node's console with log levels in colour and binary frames decoded
inline by the bridge's own deframer and decoder, so what you see is what the bridge sees."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable, TextIO

import serial

from bridge.nodes.codec import RawCsi
from bridge.nodes.deframer import Deframer, SerialFrame

_IDF_LINE = re.compile(r"^(?:\x1b\[[0-9;]*m)?([EWIDV]) \((\d+)\) ([^:]+): ?(.*?)(?:\x1b\[0m)?$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_COLOURS = {"E": "\x1b[31m", "W": "\x1b[33m", "I": "\x1b[32m", "D": "\x1b[36m", "V": "\x1b[2m"}
_FRAME_COLOUR, _RESET = "\x1b[35m", "\x1b[0m"


def frame_record(frame) -> dict:
    fields: dict[str, Any] = {}
    for key, value in frame._asdict().items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            fields[f"{key}_bytes"] = len(value)          # I/Q data is summarised, never dumped
        elif isinstance(value, float):
            fields[key] = round(value, 4)
        elif isinstance(value, tuple):
            fields[key] = [frame_record(v) if hasattr(v, "_asdict") else v for v in value]
        else:
            fields[key] = value
    return {"kind": frame.kind, **fields}


def render(item, *, colour: bool, as_json: bool, frames_only: bool) -> str | None:
    if isinstance(item, SerialFrame):
        record = frame_record(item.frame)
        if as_json:
            return json.dumps({"type": "frame", "time": round(time.time(), 3), **record})
        if isinstance(item.frame, RawCsi):
            text = f"[{record['kind']}] node {record.get('node_id')} ({len(item.data)} bytes)"
        else:
            text = f"[{record.pop('kind')}] " + " ".join(f"{k}={v}" for k, v in record.items())
        return f"{_FRAME_COLOUR}{text}{_RESET}" if colour else text
    if frames_only:
        return None
    plain = _ANSI.sub("", item.text)
    match = _IDF_LINE.match(item.text)
    if as_json:
        if match:
            level, ms, tag, message = match.groups()
            return json.dumps({"type": "log", "level": level, "uptime_ms": int(ms), "tag": tag.strip(),
                               "message": _ANSI.sub("", message)})
        return json.dumps({"type": "text", "text": plain})
    if colour and match:
        return f"{_COLOURS[match.group(1)]}{plain}{_RESET}"
    return plain


def monitor(open_port: Callable[[], serial.Serial], out: TextIO, *, colour: bool, as_json: bool,
            frames_only: bool, duration: float | None = None, say: Callable[[str], None] = print) -> int:
    """Print until interrupted (or `duration`); wait for the port to come back after a replug."""
    deadline = None if duration is None else time.monotonic() + duration
    deframer = Deframer(log_lines_only=False)  # a terminal on the desk may show boot ROM text too
    port = None
    shown = 0
    while deadline is None or time.monotonic() < deadline:
        if port is None:
            try:
                port = open_port()
            except (serial.SerialException, OSError) as exc:
                say(f"waiting for the port to come back ({exc})")
                time.sleep(0.5)
                continue
        try:
            data = port.read(port.in_waiting or 1)
        except (serial.SerialException, OSError):
            port.close()
            port = None
            say("the port went away (node reset or unplugged); waiting for it")
            continue
        for item in deframer.feed(data) if data else deframer.idle():
            line = render(item, colour=colour, as_json=as_json, frames_only=frames_only)
            if line is not None:
                out.write(line + "\n")
                shown += 1
        out.flush()
    if port is not None:
        port.close()
    return shown

