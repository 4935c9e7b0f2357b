"""The embedded broker: clients, subscriptions, retained messages and routing, on one asyncio loop.

What a home bridge needs from a broker it starts itself, and no more: MQTT
3.1.1 and 5 on TCP; QoS 0 and 1 (a QoS 2 publish is accepted with its full
handshake and delivered at QoS 1); retained messages (with MQTT 5 message
expiry); Last Will; No Local, Retain As Published and Retain Handling;
`$share/<group>/` shared subscriptions; one username and password, or none.
Sessions are clean: nothing is kept for a client that goes away. Each
connection's packets are handled one by one in arrival order, so a PUBLISH
sent just before DISCONNECT is always delivered; a client only ever receives
retained messages for its own subscriptions; an error a client causes closes
that client's connection with a reason, and is logged in one line.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator

from bridge.mqtt.broker import packets as p
from bridge.mqtt.broker.packets import Malformed, Publish, Subscription
from bridge.mqtt.router import filter_matches
from bridge.topics import InvalidTopic, check_filter

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
MAX_QUEUED = 10000  # packets waiting to be written to one client; beyond that QoS 0 is dropped
RECEIVE_MAXIMUM = 100  # QoS 1/2 publishes a client may have in flight towards us


class _Node:
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subscribers: dict[tuple["Session", str | None], Subscription] = {}


class SubscriptionTree:
    """Topic filters by level, so that routing a message costs its topic's depth, not every filter."""

    def __init__(self) -> None:
        self._root = _Node()

    def add(self, levels: list[str], key: tuple["Session", str | None], sub: Subscription) -> bool:
        node = self._root
        for level in levels:
            node = node.children.setdefault(level, _Node())
        new = key not in node.subscribers
        node.subscribers[key] = sub
        return new

    def remove(self, levels: list[str], key: tuple["Session", str | None]) -> bool:
        path, node = [], self._root
        for level in levels:
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        found = node.subscribers.pop(key, None) is not None
        for parent, level in reversed(path):  # prune empty branches
            child = parent.children[level]
            if child.subscribers or child.children:
                break
            del parent.children[level]
        return found

    def match(self, topic: str) -> Iterator[tuple[tuple["Session", str | None], Subscription]]:
        levels = topic.split("/")
        system = topic.startswith("$")
        stack = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            wild = node.children.get("#")
            if wild is not None and not (system and depth == 0):
                yield from wild.subscribers.items()
            if depth == len(levels):
                yield from node.subscribers.items()
                continue
            exact = node.children.get(levels[depth])
            if exact is not None:
                stack.append((exact, depth + 1))
            plus = node.children.get("+")
            if plus is not None and not (system and depth == 0):
                stack.append((plus, depth + 1))


def _split(topic_filter: str) -> tuple[str | None, str]:
    """($share group or None, the filter proper)."""
    if topic_filter.startswith("$share/"):
        _, group, rest = topic_filter.split("/", 2)
        return group, rest
    return None, topic_filter


@dataclass
class _Retained:
    message: Publish
    expires_at: float | None


class Broker:
    def __init__(self, *, username: str | None = None, password: str | None = None,
                 max_packet: int = 32 * 1024 * 1024, max_level: int = 5) -> None:
        self.username, self.password = username, password
        self.max_level = max_level  # 4: behave like a 3.1.1-only broker (tests of protocol fallback)
        self.max_packet = max_packet
        self.sessions: dict[str, Session] = {}
        self.tree = SubscriptionTree()
        self.retained: dict[str, _Retained] = {}
        self._shared_turn: dict[tuple[str, str], itertools.count] = {}
        self._ids = itertools.count(1)
        self.stats = {"connections": 0, "refused": 0, "received": 0, "sent": 0, "dropped": 0,
                      "protocol_errors": 0}

    # ------------------------------------------------------------ connections

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, reader, writer)
        try:
            await session.run()
        except Exception as exc:  # a bug of ours: one line for the console, the trace at debug
            log.warning("embedded broker: client %s: %s: %s", session.client_id or "?", type(exc).__name__, exc)
            log.debug("embedded broker internal error", exc_info=True)
        finally:
            await session.close()

    def authenticate(self, username: str | None, password: bytes | None) -> bool:
        if self.username is None:
            return True
        user_ok = hmac.compare_digest((username or "").encode(), self.username.encode())
        pass_ok = hmac.compare_digest(password or b"", (self.password or "").encode())
        return user_ok and pass_ok

    def attach(self, session: "Session") -> None:
        old = self.sessions.get(session.client_id)
        if old is not None:
            old.take_over()
        self.sessions[session.client_id] = session
        self.stats["connections"] += 1

    def detach(self, session: "Session") -> None:
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        for topic_filter in list(session.subscriptions):
            self.unsubscribe(session, topic_filter)

    def new_client_id(self) -> str:
        return f"auto-{next(self._ids)}-{int(time.time() * 1000) % 1_000_000}"

    # ------------------------------------------------------------ subscriptions

    def subscribe(self, session: "Session", sub: Subscription) -> tuple[int, list[_Retained]]:
        """Add or replace one subscription: (granted QoS or failure code, retained messages it gets)."""
        try:
            check_filter(sub.topic_filter)
        except InvalidTopic:
            return (p.TOPIC_FILTER_INVALID if session.v5 else 0x80), []
        group, inner = _split(sub.topic_filter)
        if group is not None and sub.no_local:
            return (p.PROTOCOL_ERROR if session.v5 else 0x80), []  # MQTT 5 3.8.3.1: not when shared
        sub.qos = min(sub.qos, 1)
        new = self.tree.add(inner.split("/"), (session, group), sub)
        session.subscriptions[sub.topic_filter] = sub
        due: list[_Retained] = []
        if group is None and (sub.retain_handling == 0 or (sub.retain_handling == 1 and new)):
            now = time.monotonic()  # (a shared subscription never gets retained messages: MQTT 5 4.8.2)
            for topic, held in list(self.retained.items()):
                if held.expires_at is not None and held.expires_at <= now:
                    del self.retained[topic]
                elif filter_matches(inner, topic):
                    due.append(held)
        return sub.qos, due

    def unsubscribe(self, session: "Session", topic_filter: str) -> bool:
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        group, inner = _split(topic_filter)
        return self.tree.remove(inner.split("/"), (session, group))

    # ------------------------------------------------------------ routing

    def route(self, msg: Publish, sender: "Session | None") -> int:
        """Deliver a message to every matching subscriber (one per share group); returns how many."""
        self.stats["received"] += 1
        expiry = p.prop(msg.properties, p.MESSAGE_EXPIRY)
        expires_at = time.monotonic() + expiry if expiry is not None else None
        if msg.retain:
            if msg.payload:
                self.retained[msg.topic] = _Retained(msg, expires_at)
            else:
                self.retained.pop(msg.topic, None)
        best: dict[Session, Subscription] = {}
        groups: dict[tuple[str, str], list[tuple[Session, Subscription]]] = {}
        for (session, group), sub in self.tree.match(msg.topic):
            if group is not None:
                groups.setdefault((group, sub.topic_filter), []).append((session, sub))
            elif not (sub.no_local and session is sender):
                held = best.get(session)  # overlapping filters: one copy, at the highest QoS
                if held is None or sub.qos > held.qos:
                    best[session] = sub
        for session, sub in best.items():
            session.deliver(msg, sub, retained=False, expires_at=expires_at)
        for key, members in groups.items():
            turn = self._shared_turn.setdefault(key, itertools.count())
            session, sub = members[next(turn) % len(members)]
            session.deliver(msg, sub, retained=False, expires_at=expires_at)
        return len(best) + len(groups)


class Session:
    """One client connection, from CONNECT to close."""

    def __init__(self, broker: Broker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.broker, self.reader, self.writer = broker, reader, writer
        self.client_id = ""
        self.v5 = False
        self.will: Publish | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_QUEUED)
        self._inflight: dict[int, bytes] = {}  # our QoS 1 publishes awaiting PUBACK
        self._waiting: deque[tuple[Publish, bool, float | None]] = deque()  # over the client's Receive Maximum
        self._receive_max = 65535
        self._ids = itertools.cycle(range(1, 65536))
        self._qos2: set[int] = set()  # their QoS 2 publishes awaiting PUBREL
        self._attached = False
        self._closed = False
        self._writer_task: asyncio.Task | None = None

    # ------------------------------------------------------------ the connection's life

    async def run(self) -> None:
        try:
            kind, flags, body = await asyncio.wait_for(p.read_packet(self.reader, self.broker.max_packet),
                                                       CONNECT_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, Malformed):
            return
        if kind != p.CONNECT:
            return
        try:
            connect = p.decode_connect(body)
        except Malformed as exc:
            self.broker.stats["protocol_errors"] += 1
            log.debug("embedded broker: malformed CONNECT: %s", exc)
            return
        if not await self._accept(connect):
            return
        keepalive = connect.keepalive * 1.5 if connect.keepalive else None
        while not self._closed:
            try:
                kind, flags, body = await asyncio.wait_for(
                    p.read_packet(self.reader, self.broker.max_packet), keepalive)
            except asyncio.TimeoutError:
                await self._fail(p.KEEP_ALIVE_TIMEOUT, "keep-alive timeout")
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the client went away without DISCONNECT: its will is published
            except Malformed as exc:
                await self._fail(exc.code, str(exc))
                return
            try:
                if not await self._handle(kind, flags, body):
                    return
            except Malformed as exc:
                await self._fail(exc.code, str(exc))
                return

    async def _accept(self, c: p.Connect) -> bool:
        self.v5 = c.level == 5
        if c.level not in (3, 4, 5) or c.level > self.broker.max_level:
            self.broker.stats["refused"] += 1
            # a 3.1.1 CONNACK: every client version can read "unacceptable protocol level"
            await self._write_now(p.connack(False, p.V3_BAD_VERSION))
            return False
        if not self.broker.authenticate(c.username, c.password):
            self.broker.stats["refused"] += 1
            await self._write_now(p.connack(self.v5, p.BAD_CREDENTIALS if self.v5 else p.V3_BAD_CREDENTIALS))
            return False
        assigned = not c.client_id
        if assigned and not c.clean and not self.v5:
            await self._write_now(p.connack(False, p.V3_BAD_CLIENT_ID))
            return False
        self.client_id = self.broker.new_client_id() if assigned else c.client_id
        self.will = c.will
        if c.will is not None:
            try:
                _check_topic_name(c.will.topic)
            except Malformed:
                await self._write_now(p.connack(self.v5, p.TOPIC_NAME_INVALID if self.v5 else p.V3_NOT_AUTHORIZED))
                return False
        self._receive_max = p.prop(c.properties, p.RECEIVE_MAXIMUM, 65535) or 65535
        self.broker.attach(self)
        self._attached = True
        props: p.Properties = []
        if self.v5:
            props = [(p.MAXIMUM_QOS, 1), (p.RETAIN_AVAILABLE, 1), (p.WILDCARD_AVAILABLE, 1),
                     (p.SHARED_AVAILABLE, 1), (p.SUBSCRIPTION_ID_AVAILABLE, 0), (p.TOPIC_ALIAS_MAXIMUM, 0),
                     (p.RECEIVE_MAXIMUM, RECEIVE_MAXIMUM), (p.MAXIMUM_PACKET_SIZE, self.broker.max_packet)]
            if assigned:
                props.append((p.ASSIGNED_CLIENT_ID, self.client_id))
        self._writer_task = asyncio.ensure_future(self._write_loop())
        self._send(p.connack(self.v5, p.SUCCESS, False, props))
        return True

    async def _handle(self, kind: int, flags: int, body: bytes) -> bool:
        """One packet; False when the connection is over."""
        if kind == p.PUBLISH:
            msg = p.decode_publish(flags, body, self.v5)
            _check_topic_name(msg.topic)
            if p.prop(msg.properties, p.TOPIC_ALIAS) is not None:
                raise Malformed("topic aliases are not accepted (Topic Alias Maximum is 0)", p.TOPIC_ALIAS_INVALID)
            if msg.qos == 2:
                assert msg.packet_id is not None  # decode_publish reads one for QoS 1 and 2
                if msg.packet_id not in self._qos2:
                    self._qos2.add(msg.packet_id)
                    self.broker.route(msg, self)
                self._send(p.ack(p.PUBREC, msg.packet_id))
                return True
            self.broker.route(msg, self)
            if msg.qos == 1:
                assert msg.packet_id is not None  # decode_publish reads one for QoS 1 and 2
                self._send(p.ack(p.PUBACK, msg.packet_id))
        elif kind == p.PUBACK:
            self._inflight.pop(p.decode_ack(body), None)
            self._release_waiting()
        elif kind == p.PUBREL:
            packet_id = p.decode_ack(body)
            self._qos2.discard(packet_id)
            self._send(p.ack(p.PUBCOMP, packet_id))
        elif kind in (p.PUBREC, p.PUBCOMP):  # we never send QoS 2; answer a stray PUBREC politely
            if kind == p.PUBREC:
                self._send(p.ack(p.PUBREL, p.decode_ack(body)))
        elif kind == p.SUBSCRIBE:
            if flags != 0x02:
                raise Malformed("SUBSCRIBE with wrong flags")
            packet_id, subs, _props = p.decode_subscribe(body, self.v5)
            granted = [(sub, *self.broker.subscribe(self, sub)) for sub in subs]
            self._send(p.suback(packet_id, [code for _, code, _ in granted], self.v5))
            for sub, _, due in granted:  # then the retained messages, as Mosquitto does
                for held in due:
                    self.deliver(held.message, sub, retained=True, expires_at=held.expires_at)
        elif kind == p.UNSUBSCRIBE:
            if flags != 0x02:
                raise Malformed("UNSUBSCRIBE with wrong flags")
            packet_id, filters = p.decode_unsubscribe(body, self.v5)
            codes = [p.SUCCESS if self.broker.unsubscribe(self, f) else p.NO_SUBSCRIPTION_EXISTED for f in filters]
            self._send(p.unsuback(packet_id, codes, self.v5))
        elif kind == p.PINGREQ:
            self._send(p.pingresp())
        elif kind == p.DISCONNECT:
            if p.decode_disconnect(body) != p.DISCONNECT_WITH_WILL:
                self.will = None  # a clean goodbye: no Last Will
            return False
        elif kind == p.AUTH:
            raise Malformed("enhanced authentication is not supported", p.PROTOCOL_ERROR)
        else:
            raise Malformed(f"unexpected packet type {kind}", p.PROTOCOL_ERROR)
        return True

    async def _fail(self, code: int, reason: str) -> None:
        self.broker.stats["protocol_errors"] += 1
        log.debug("embedded broker: closing %s: %s", self.client_id, reason)
        if self.v5 and self._attached:
            self._send(p.disconnect(code, reason[:200]))

    def take_over(self) -> None:
        """Another connection took this client id: close this one (its will is published)."""
        if self.v5:
            self._send(p.disconnect(p.SESSION_TAKEN_OVER))
        self._closed = True
        self._send_stop()
        self.reader.feed_eof()

    async def close(self) -> None:
        self._closed = True
        if self._attached:
            self._attached = False
            self.broker.detach(self)
            if self.will is not None:
                will, self.will = self.will, None
                self.broker.route(will, None)
        self._send_stop()
        if self._writer_task is not None:
            try:
                await asyncio.wait_for(self._writer_task, 2.0)
            except (asyncio.TimeoutError, ConnectionError, asyncio.CancelledError):
                self._writer_task.cancel()
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        except (ConnectionError, asyncio.TimeoutError, OSError):
            pass

    # ------------------------------------------------------------ sending

    def deliver(self, msg: Publish, sub: Subscription, *, retained: bool, expires_at: float | None) -> None:
        """Queue one message for this client under one of its subscriptions."""
        qos = min(msg.qos, sub.qos)
        if qos and len(self._inflight) >= self._receive_max:
            if len(self._waiting) < MAX_QUEUED:
                self._waiting.append((msg, retained or (sub.retain_as_published and msg.retain), expires_at))
            else:
                self.broker.stats["dropped"] += 1
            return
        self._deliver_now(msg, qos, retained or (sub.retain_as_published and msg.retain), expires_at)

    def _deliver_now(self, msg: Publish, qos: int, retain: bool, expires_at: float | None) -> None:
        props: p.Properties = []
        if self.v5:
            for ident, value in msg.properties:
                if ident == p.MESSAGE_EXPIRY:
                    if expires_at is None:
                        continue
                    left = expires_at - time.monotonic()
                    if left <= 0:
                        return  # expired while waiting: not delivered
                    value = max(1, int(left))
                if ident in p.FORWARDED:
                    props.append((ident, value))
        packet_id = next(self._ids) if qos else None
        while packet_id in self._inflight:
            packet_id = next(self._ids)
        data = p.publish(msg, self.v5, retain=retain, qos=qos, packet_id=packet_id, props=props)
        if self._send(data, droppable=not qos) and packet_id is not None:  # None: QoS 0
            self._inflight[packet_id] = data
        self.broker.stats["sent"] += 1

    def _release_waiting(self) -> None:
        while self._waiting and len(self._inflight) < self._receive_max:
            msg, retain, expires_at = self._waiting.popleft()
            self._deliver_now(msg, 1, retain, expires_at)

    def _send(self, data: bytes, droppable: bool = False) -> bool:
        if self._closed and not data.startswith(bytes([p.DISCONNECT << 4])):
            return False
        try:
            self._out.put_nowait(data)
            return True
        except asyncio.QueueFull:
            self.broker.stats["dropped"] += 1
            if not droppable:  # a client that reads nothing cannot be served: let it go
                self._closed = True
                self.reader.feed_eof()
            return False

    def _send_stop(self) -> None:
        try:
            self._out.put_nowait(None)
        except asyncio.QueueFull:
            if self._writer_task is not None:
                self._writer_task.cancel()

    async def _write_now(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), 2.0)
        except (ConnectionError, asyncio.TimeoutError, OSError):
            pass

    async def _write_loop(self) -> None:
        while True:
            data = await self._out.get()
            if data is None:
                return
            self.writer.write(data)
            while not self._out.empty():  # write what is queued in one go, then wait for the socket
                data = self._out.get_nowait()
                if data is None:
                    await self.writer.drain()
                    return
                self.writer.write(data)
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                self._closed = True
                self.reader.feed_eof()
                return


def _check_topic_name(topic: str) -> None:
    if not topic or "+" in topic or "#" in topic:
        raise Malformed(f"invalid topic name {topic[:80]!r}", p.TOPIC_NAME_INVALID)
