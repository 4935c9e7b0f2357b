"""MQTT 3.1.1 and 5 control packets: read them off a stream, build the ones a broker sends.

Only what a broker needs: it decodes what clients send (CONNECT, PUBLISH,
PUBACK/PUBREC/PUBREL/PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT)
and encodes what it answers. Anything malformed raises `Malformed` with the
MQTT 5 reason code to close the connection with; the caller never sees a
struct error or a UnicodeDecodeError.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15

# MQTT 5 reason codes the broker uses
SUCCESS, NO_MATCHING_SUBSCRIBERS, NO_SUBSCRIPTION_EXISTED = 0x00, 0x10, 0x11
DISCONNECT_WITH_WILL = 0x04
UNSPECIFIED, MALFORMED, PROTOCOL_ERROR, IMPL_SPECIFIC = 0x80, 0x81, 0x82, 0x83
UNSUPPORTED_VERSION, BAD_CLIENT_ID, BAD_CREDENTIALS, NOT_AUTHORIZED = 0x84, 0x85, 0x86, 0x87
KEEP_ALIVE_TIMEOUT, SESSION_TAKEN_OVER, TOPIC_FILTER_INVALID, TOPIC_NAME_INVALID = 0x8D, 0x8E, 0x8F, 0x90
PACKET_TOO_LARGE, QUOTA_EXCEEDED, QOS_NOT_SUPPORTED = 0x95, 0x97, 0x9B
TOPIC_ALIAS_INVALID = 0x94

# MQTT 3.1.1 CONNACK return codes
V3_ACCEPTED, V3_BAD_VERSION, V3_BAD_CLIENT_ID, V3_BAD_CREDENTIALS, V3_NOT_AUTHORIZED = 0, 1, 2, 4, 5

# MQTT 5 property identifiers and their value types
_PROPERTIES: dict[int, str] = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint", 0x11: "u32",
    0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte", 0x18: "u32", 0x19: "byte",
    0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16", 0x22: "u16", 0x23: "u16", 0x24: "byte",
    0x25: "byte", 0x26: "pair", 0x27: "u32", 0x28: "byte", 0x29: "byte", 0x2A: "byte",
}
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION_DATA = 0x01, 0x02, 0x03, 0x08, 0x09
SUBSCRIPTION_ID, SESSION_EXPIRY, ASSIGNED_CLIENT_ID, SERVER_KEEP_ALIVE = 0x0B, 0x11, 0x12, 0x13
AUTH_METHOD, REASON_STRING, RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS = 0x15, 0x1F, 0x21, 0x22, 0x23
MAXIMUM_QOS, RETAIN_AVAILABLE, USER_PROPERTY, MAXIMUM_PACKET_SIZE = 0x24, 0x25, 0x26, 0x27
WILDCARD_AVAILABLE, SUBSCRIPTION_ID_AVAILABLE, SHARED_AVAILABLE = 0x28, 0x29, 0x2A
FORWARDED = (PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION_DATA, USER_PROPERTY)

Properties = list[tuple[int, Any]]


class Malformed(Exception):
    """The peer broke the protocol; close with this MQTT 5 reason code."""

    def __init__(self, reason: str, code: int = MALFORMED) -> None:
        super().__init__(reason)
        self.code = code


# ---------------------------------------------------------------- reading


class Reader:
    """Fields of one packet body, in order; every read is bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Malformed("packet shorter than its fields")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise Malformed("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("string is not valid UTF-8") from None
        if "\0" in text:
            raise Malformed("string contains a NUL character")
        return text

    def properties(self) -> Properties:
        end = self.varint()
        if end > self.remaining():
            raise Malformed("properties longer than the packet")
        stop = self.pos + end
        props: Properties = []
        while self.pos < stop:
            ident = self.varint()
            kind = _PROPERTIES.get(ident)
            if kind is None:
                raise Malformed(f"unknown property 0x{ident:02x}", PROTOCOL_ERROR)
            if kind == "pair":
                props.append((ident, (self.string(), self.string())))
            elif kind == "str":
                props.append((ident, self.string()))
            elif kind == "bin":
                props.append((ident, self.binary()))
            else:
                props.append((ident, {"byte": self.byte, "u16": self.u16, "u32": self.u32,
                                      "varint": self.varint}[kind]()))
        if self.pos != stop:
            raise Malformed("properties overrun their length")
        return props


def prop(props: Properties, ident: int, default: Any = None) -> Any:
    return next((v for i, v in props if i == ident), default)


async def read_packet(stream, max_size: int) -> tuple[int, int, bytes]:
    """(type, flags, body) of the next packet on an asyncio StreamReader."""
    first = await stream.readexactly(1)
    length, shift = 0, 0
    for i in range(4):
        b = (await stream.readexactly(1))[0]
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    else:
        raise Malformed("remaining length longer than 4 bytes")
    if length > max_size:
        raise Malformed(f"packet of {length} bytes is over the limit of {max_size}", PACKET_TOO_LARGE)
    body = await stream.readexactly(length) if length else b""
    return first[0] >> 4, first[0] & 0x0F, body


# ---------------------------------------------------------------- decoded packets


@dataclass
class Connect:
    level: int  # 3 (3.1), 4 (3.1.1) or 5
    client_id: str
    clean: bool
    keepalive: int
    username: str | None = None
    password: bytes | None = None
    will: "Publish | None" = None
    properties: Properties = field(default_factory=list)


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=list)


@dataclass
class Subscription:
    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


def decode_connect(body: bytes) -> Connect:
    r = Reader(body)
    name = r.string()
    level = r.byte()
    if (name, level) not in (("MQTT", 4), ("MQTT", 5), ("MQIsdp", 3)):
        return Connect(level if name in ("MQTT", "MQIsdp") else -1, "", True, 0)  # answered as unsupported
    flags = r.byte()
    if flags & 0x01:
        raise Malformed("reserved CONNECT flag set")
    keepalive = r.u16()
    props = r.properties() if level == 5 else []
    client_id = r.string()
    will = None
    if flags & 0x04:
        will_props = r.properties() if level == 5 else []
        will_qos = (flags >> 3) & 0x03
        if will_qos == 3:
            raise Malformed("will QoS 3")
        will = Publish(r.string(), r.binary(), will_qos, bool(flags & 0x20), properties=will_props)
    elif flags & 0x38:
        raise Malformed("will QoS or retain without a will")
    username = r.string() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    return Connect(level, client_id, bool(flags & 0x02), keepalive, username, password, will, props)


def decode_publish(flags: int, body: bytes, v5: bool) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise Malformed("PUBLISH with QoS 3")
    r = Reader(body)
    topic = r.string()
    packet_id = r.u16() if qos else None
    if packet_id == 0:
        raise Malformed("PUBLISH with packet id 0", PROTOCOL_ERROR)
    props = r.properties() if v5 else []
    return Publish(topic, r.take(r.remaining()), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id, props)


def decode_subscribe(body: bytes, v5: bool) -> tuple[int, list[Subscription], Properties]:
    r = Reader(body)
    packet_id = r.u16()
    props = r.properties() if v5 else []
    subs = []
    while r.remaining():
        topic_filter = r.string()
        options = r.byte()
        if options & (0xC0 if v5 else 0xFC) or (options & 0x03) == 3 or (v5 and (options >> 4) & 0x03 == 3):
            raise Malformed("invalid subscription options")
        subs.append(Subscription(topic_filter, options & 0x03, bool(options & 0x04) and v5,
                                 bool(options & 0x08) and v5, (options >> 4) & 0x03 if v5 else 0))
    if not subs:
        raise Malformed("SUBSCRIBE without a topic filter", PROTOCOL_ERROR)
    return packet_id, subs, props


def decode_unsubscribe(body: bytes, v5: bool) -> tuple[int, list[str]]:
    r = Reader(body)
    packet_id = r.u16()
    if v5:
        r.properties()
    filters = []
    while r.remaining():
        filters.append(r.string())
    if not filters:
        raise Malformed("UNSUBSCRIBE without a topic filter", PROTOCOL_ERROR)
    return packet_id, filters


def decode_ack(body: bytes) -> int:
    """The packet id of a PUBACK / PUBREC / PUBREL / PUBCOMP (reason code and properties ignored)."""
    return Reader(body).u16()


def decode_disconnect(body: bytes) -> int:
    return body[0] if body else SUCCESS


# ---------------------------------------------------------------- writing


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _binary(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def encode_properties(props: Properties) -> bytes:
    out = bytearray()
    for ident, value in props:
        kind = _PROPERTIES[ident]
        out += _varint(ident)
        if kind == "pair":
            out += _string(value[0]) + _string(value[1])
        elif kind == "str":
            out += _string(value)
        elif kind == "bin":
            out += _binary(value)
        elif kind == "byte":
            out.append(value)
        elif kind == "u16":
            out += struct.pack(">H", value)
        elif kind == "u32":
            out += struct.pack(">I", value)
        else:
            out += _varint(value)
    return _varint(len(out)) + bytes(out)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _varint(len(body)) + body


def connack(v5: bool, code: int, session_present: bool = False,
            props: Sequence[tuple[int, Any]] = ()) -> bytes:
    body = bytes([1 if session_present else 0, code])
    return packet(CONNACK, 0, body + (encode_properties(list(props)) if v5 else b""))


def publish(msg: Publish, v5: bool, *, retain: bool, qos: int, packet_id: int | None,
            props: Sequence[tuple[int, Any]] = ()) -> bytes:
    body = _string(msg.topic) + (struct.pack(">H", packet_id) if qos else b"")
    if v5:
        body += encode_properties(list(props))
    flags = (qos << 1) | (1 if retain else 0)
    return packet(PUBLISH, flags, body + msg.payload)


def ack(kind: int, packet_id: int, v5: bool = False, code: int = SUCCESS) -> bytes:
    body = struct.pack(">H", packet_id)
    if v5 and code != SUCCESS:
        body += bytes([code])
    return packet(kind, 0x02 if kind == PUBREL else 0, body)


def suback(packet_id: int, codes: list[int], v5: bool) -> bytes:
    return packet(SUBACK, 0, struct.pack(">H", packet_id) + (b"\0" if v5 else b"") + bytes(codes))


def unsuback(packet_id: int, codes: list[int], v5: bool) -> bytes:
    return packet(UNSUBACK, 0, struct.pack(">H", packet_id) + (b"\0" + bytes(codes) if v5 else b""))


def pingresp() -> bytes:
    return packet(PINGRESP, 0, b"")


def disconnect(code: int, reason: str | None = None) -> bytes:
    """An MQTT 5 DISCONNECT from the server (3.1.1 has none: the server just closes)."""
    props = [(REASON_STRING, reason)] if reason else []
    return packet(DISCONNECT, 0, bytes([code]) + encode_properties(props))
