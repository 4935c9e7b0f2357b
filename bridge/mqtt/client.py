"""The bridge's one MQTT connection: paho-mqtt 2.x with our own network thread.

We drive paho ourselves rather than with `loop_start()`, through paho's public
API for an outside loop (`socket`, `want_write`, `loop_read`, `loop_write`,
`loop_misc`, as aiomqtt and Home Assistant do), so that the reconnect policy
(exponential backoff with jitter, protocol fallback) and the order of work
after a reconnect are ours, and no private attribute of paho is touched (our
own socket pair wakes the thread; in-flight messages are counted by us): re-subscribe, publish online,
re-publish retained state from the cache, then drain the outbox — and only
then let new publishes through, so nothing overtakes what was queued.
paho's own resend of in-flight QoS 1 messages runs inside the CONNACK
handler, before our drain, which keeps global publish order.

Only the network thread calls paho's publish: other threads append to a
hand-off queue and wake it once per burst, so publishing costs the caller
no paho work and at most one wake-up per burst (bench/nodes_open_loop.py).

Callbacks from paho only set flags or enqueue; they never take our lock
(paho holds its own mutexes while calling them).

Every topic is checked before it is cached or queued (`topics.check_topic`):
a topic the broker would reject as malformed would otherwise be re-sent on
every reconnect and drop the connection each time. The network loop itself
survives any exception: it is logged, counted, and the link is reopened.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.core.inbox import Inbox
from bridge.core.store import StateStore
from bridge.core.supervisor import Supervised, Supervisor
from bridge.mqtt.keeper import OutboxKeeper
from bridge.mqtt.outbox import Outbox, Outgoing
from bridge.mqtt.reactions import STABLE_SECONDS, BrokerReactions
from bridge.mqtt.router import FilterOptions, Message, Route, Router
from bridge.mqtt.settings import BrokerTraits, ConnectionSettings, broker_url
from bridge.topics import check_topic

log = logging.getLogger(__name__)

CONNACK_TIMEOUT = 5.0
READ_BURST = 64  # packets read in one turn while the socket has more (writes and keepalive wait that long)
# The network thread sleeps until its socket or our wake-up socket has something, or paho's
# keepalive falls due (`_idle_timeout`): an idle bridge wakes once per keepalive, not once a second
# (python -m bench.mqtt_idle --seconds 65: 1.00 -> 0.06 wake-ups/s, 0.0107 -> 0.0004 % of a core).
ONLINE = b'{"state":"online"}'
OFFLINE = b'{"state":"offline"}'


def _packet_size(out: Outgoing) -> int:
    """A PUBLISH's size on the wire, near enough from above (fixed header, topic, id, properties)."""
    properties = len(out.response_topic or "") + len(out.correlation_data or b"") + (5 if out.expiry else 0) + 16
    return 5 + 2 + len(out.topic.encode()) + 2 + properties + len(out.payload)


def _no_delay(sock: Any) -> None:
    """Send each packet now: an answer written right after a PUBACK would otherwise wait for the
    broker's delayed ACK (Nagle), 40 ms on Linux; bench/assist.py's round trip went 43 ms -> 1 ms."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a TLS socket is a socket too
    except (AttributeError, OSError):  # not a TCP socket (a test double, a Unix socket)
        pass


@dataclass
class Counters:
    published: int = 0
    received: int = 0
    acked: int = 0
    dropped_offline_qos0: int = 0
    dropped_oversize: int = 0
    dropped_too_large: int = 0  # larger than the broker's Maximum Packet Size: never sent
    dropped_refused: int = 0  # the broker closed the link after it, session after session
    connects: int = 0
    network_errors: int = 0
    send_errors: int = 0
    subscribes: int = 0  # SUBSCRIBE packets sent (a resumed session sends none for what it has)
    wakeups: int = 0  # turns of the network loop (an idle bridge: one per keepalive)


@dataclass(frozen=True, eq=False)
class SessionCallback:
    callback: Callable[[], None]
    inbox: Inbox | None


class MqttClient(BrokerReactions):
    """Connection, LWT, reconnect, outbox and retained cache around one paho client."""

    def __init__(self, settings: ConnectionSettings, router: Router, *, state_topic: str,
                 supervisor: Supervisor | None = None, store: StateStore | None = None) -> None:
        self.settings = settings
        self.router = router
        self.state_topic = state_topic  # <base>/bridge/state
        self._supervisor = supervisor or Supervisor()
        self.counters = Counters()
        # With a store, what the outbox holds is on disk too, until the broker took it (keeper.py)
        self._keeper = OutboxKeeper(store, self._supervisor) if store is not None else None
        self._outbox = Outbox(settings.outbox_size, on_drop=self._forget)
        earlier = self._keeper.earlier() if self._keeper else []
        for out in earlier:  # an earlier run's, first: they go at the first session before anything new
            self._outbox.append(out)
        if earlier:
            log.info("%d QoS 1 message(s) queued by an earlier run go to the broker first", len(earlier))
        self._retained: dict[str, Outgoing] = {}
        self._lock = threading.RLock()
        self._online = False  # new publishes go to the network thread, else to the outbox
        # Publishes waiting for the network thread, which hands them to paho. Calling paho from
        # the publishing thread woke the network thread for about every other message and ran
        # paho's packet code on the node pipeline; this way a burst costs one wake-up
        # (bench/nodes_open_loop.py: 60,000 -> 120,000 datagrams/s without a drop).
        self._handoff: deque[Outgoing] = deque()
        self._bursts = threading.local()  # .depth: this thread is inside burst(), its wake-up waits
        self._link_up = False  # paho's socket is open (CONNACK may still be pending)
        self._session_pending = False
        self._connack_failed: Any = None
        self._link_opened = 0.0
        self._last_read = self._last_write = 0.0  # when we last had paho read / write (keepalive)
        self._stopping = threading.Event()
        self._connected_event = threading.Event()  # online, and every SUBSCRIBE acknowledged
        self._pending_subacks: set[int] = set()
        self._early_subacks: set[int] = set()  # SUBACKs that beat us to recording their mid
        self._suback_lock = threading.Lock()  # never held while calling paho (paho callbacks take it)
        # SUBSCRIBE/UNSUBSCRIBE asked for while online, for the network thread to send: paho is
        # called on that thread only (filter -> its options now, or None: unsubscribe)
        self._subscription_changes: dict[str, FilterOptions | None] = {}
        self._stop_deadline = 0.0
        self._session_starting = False  # between CONNACK and online: new filters are queued as changes
        self._thread: Supervised | None = None
        self._inflight: dict[int, Outgoing] = {}  # QoS >= 1 handed to paho, not yet acknowledged (by mid)
        self.broker = BrokerTraits()
        self._session_began = 0.0
        self._disconnect_reason: Any = None
        self._last_sent: Outgoing | None = None  # the last message given to paho in this session
        self._short_sessions = 0  # sessions in a row that ended before STABLE_SECONDS
        self._suspect: Outgoing | None = None  # the message the last short sessions ended after
        self._suspect_count = 0
        self._told_too_large: set[str] = set()
        self._broker_has: dict[str, FilterOptions] = {}  # what our session at the broker is subscribed to
        self._session_present = False  # the broker kept our session (CONNACK): it has _broker_has
        self._session_url = ""  # the broker of the last session
        self._sub_mids: dict[int, list[str]] = {}  # SUBSCRIBE mid -> its filters, to name a refusal
        self.fatal: str | None = None  # why the bridge cannot work with this broker at all (it stopped)
        self.on_fatal: Callable[[], None] = lambda: None  # the Bridge hears of it (the CLI exits 2)
        self._shared_ok = False
        self._wake_r, self._wake_w = socket.socketpair()  # ours: ends the network thread's wait
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)
        self._session_callbacks: list[SessionCallback] = []
        self._delay = settings.min_delay
        self._first_attempt = True
        self._protocol = paho.MQTTv311 if settings.protocol == "3.1.1" else paho.MQTTv5
        self._broker_index = 0  # which of settings.brokers() we use now
        self._tried = 0  # brokers tried since the last session
        self._paho = self._new_paho()
        self.broker_url = settings.url

    # ------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        return self._online

    @property
    def is_v5(self) -> bool:
        return self._protocol == paho.MQTTv5

    def on_session(self, callback: Callable[[], None], inbox: Inbox | None = None) -> SessionCallback:
        """Run callback (on `inbox`, default the core's) after every successful (re)connect,
        and at once if a session is up already (a feature that starts late misses none)."""
        handle = SessionCallback(callback, inbox)
        with self._lock:
            self._session_callbacks.append(handle)
            if self._online:
                (inbox or self.router.default_inbox).put(callback)
        return handle

    def remove_session_callback(self, handle: SessionCallback) -> None:
        if handle in self._session_callbacks:
            self._session_callbacks.remove(handle)

    def subscribe(self, topic_filter: str, handler: Callable[[Message], None], *,
                  accept_retained: bool = True, no_local: bool = False,
                  inbox: Inbox | None = None) -> Route:
        route = self.router.add(topic_filter, handler, accept_retained=accept_retained,
                                no_local=no_local, inbox=inbox)
        with self._lock:
            if self._online or self._session_starting:  # else the next session subscribes it
                self._change_subscription(topic_filter, self.router.filters()[topic_filter])
        return route

    def unsubscribe(self, route: Route) -> None:
        """Drop a handler; the broker subscription goes with the filter's last handler."""
        self.router.remove(route)
        remaining = self.router.filters()
        with self._lock:
            if self._online or self._session_starting:  # others still listening: their No Local may apply
                self._change_subscription(route.topic_filter, remaining.get(route.topic_filter))

    def _change_subscription(self, topic_filter: str, options: FilterOptions | None) -> None:
        """Queue a SUBSCRIBE (or, with None, an UNSUBSCRIBE) for the network thread (caller holds
        the lock). Until the broker acknowledges it, `wait_connected` waits."""
        self._subscription_changes[topic_filter] = options
        if options is not None:
            self._connected_event.clear()
        self._wake_network_thread()

    def _send_subscription_changes(self) -> None:
        """On the network thread: send what subscribe/unsubscribe queued (caller holds the lock)."""
        changes, self._subscription_changes = self._subscription_changes, {}
        added = {f: o for f, o in changes.items() if o is not None}
        if added:
            self._subscribe(added)
        for topic_filter in (f for f, o in changes.items() if o is None):
            self._paho.unsubscribe(topic_filter)
            self._broker_has.pop(topic_filter, None)

    def republish_retained(self, prefix: str) -> int:
        """Send again every retained message we hold under prefix (e.g. after HA restarts)."""
        with self._lock:
            held = [out for topic, out in self._retained.items() if topic.startswith(prefix)]
        for out in held:
            self.publish(out.topic, out.payload, out.qos, True)
        return len(held)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                expiry: int | None = None, response_topic: str | None = None,
                correlation_data: bytes | None = None, cache: bool = True) -> bool:
        """Send now (through the network thread), or queue in the outbox (QoS >= 1) while disconnected.

        A retained message is kept and sent again after every reconnect (a broker that restarted
        without persistence has lost it), unless `cache` is False: then the publisher re-publishes
        it itself after a reconnect (Home Assistant discovery regenerates its configs rather than
        keeping 13 KB of them per node).

        Returns False only when the message was dropped (QoS 0 while offline).
        Raises InvalidTopic (a ValueError) for a topic no broker may be sent,
        before anything is cached or queued.
        """
        check_topic(topic)
        if response_topic is not None:
            check_topic(response_topic, "response topic")
        if isinstance(payload, str):
            payload = payload.encode()
        out = Outgoing(topic, payload, qos, retain, expiry, response_topic, correlation_data)
        with self._lock:
            if retain:
                if payload and cache:
                    self._retained[topic] = out
                else:
                    self._retained.pop(topic, None)
            if self._online:
                self._handoff.append(out)
                if len(self._handoff) == 1 and not getattr(self._bursts, "depth", 0):
                    self._wake_network_thread()
                return True
            return self._hold(out)

    @contextmanager
    def burst(self) -> Iterator[None]:
        """Publish a burst with one wake-up of the network thread, at its end.

        Without it the first message wakes the network thread, which then competes for the GIL
        with the rest of the burst being built, and hands it over piecemeal.
        """
        bursts = self._bursts
        bursts.depth = getattr(bursts, "depth", 0) + 1
        try:
            yield
        finally:
            bursts.depth -= 1
            if not bursts.depth and self._handoff:
                self._wake_network_thread()

    def _hold(self, out: Outgoing) -> bool:
        """A message that cannot go now: QoS >= 1 waits in the outbox, QoS 0 is dropped and counted."""
        if out.qos == 0:
            self.counters.dropped_offline_qos0 += 1
            return False
        self._queue(out)
        return True

    def _queue(self, out: Outgoing) -> None:
        """Into the outbox, and onto disk with a store."""
        self._outbox.append(out)
        if self._keeper is not None:
            self._keeper.keep(out)

    def _forget(self, out: Outgoing) -> None:
        """The broker took the message, or it was dropped: its copy on disk goes."""
        if self._keeper is not None and out.row is not None:
            self._keeper.taken(out)

    def start(self) -> None:
        self._retained[self.state_topic] = Outgoing(self.state_topic, ONLINE, 1, True)
        if self._keeper is not None:
            self._keeper.start()
        self._thread = self._supervisor.spawn("mqtt-network", self._run, self._stopping)

    @property
    def base_topic(self) -> str:
        return self.state_topic.rsplit("/bridge/", 1)[0]

    def listens_to(self, topic: str) -> bool:
        """Would a message on `topic` reach one of our handlers?"""
        return self.router.listens_to(topic)

    def wait_connected(self, timeout: float) -> bool:
        """Wait until a session is up and the broker acknowledged every subscription sent so far."""
        return self._connected_event.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish offline, give queued messages up to `timeout` to be acknowledged, disconnect.

        The network thread does all of it (`_sign_off`): paho is called on that thread only."""
        deadline = time.monotonic() + timeout
        self._stop_deadline = deadline
        self._stopping.set()
        self._wake_network_thread()
        if self._thread is not None:
            self._thread.join(max(0.5, deadline - time.monotonic() + 1.0))
            self._supervisor.forget(self._thread)
        if self._keeper is not None:
            self._keeper.stop()  # what is still queued stays on disk for the next start

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "connected": self._online,
            "broker": self.broker_url,
            "protocol": "5" if self.is_v5 else "3.1.1",
            "published": c.published,
            "received": c.received,
            "unacknowledged": self._unacked() + len(self._handoff),
            "outbox": len(self._outbox),
            "outbox_dropped": self._outbox.dropped,
            "outbox_superseded": self._outbox.superseded,
            "dropped_offline_qos0": c.dropped_offline_qos0,
            "dropped_oversize": c.dropped_oversize,
            "dropped_too_large": c.dropped_too_large,
            "dropped_refused": c.dropped_refused,
            "connects": c.connects,
            "network_errors": c.network_errors,
            "send_errors": c.send_errors,
            "network_wakeups": c.wakeups,
            **({"outbox_disk": self._keeper.stats()} if self._keeper else {}),
        }

    # ------------------------------------------------------------ paho setup

    def _new_paho(self) -> paho.Client:
        s = self.settings
        kwargs: dict[str, Any] = {"client_id": s.client_id, "protocol": self._protocol}
        if self._protocol == paho.MQTTv311:
            kwargs["clean_session"] = not s.session_expiry  # 3.1.1: the broker decides how long it keeps it
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, **kwargs)
        client.max_inflight_messages_set(20)  # measured: small windows are fastest
        client.will_set(self.state_topic, OFFLINE, qos=1, retain=True)
        if s.username:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            ctx = ssl.create_default_context(cafile=s.ca)
            if s.cert:
                ctx.load_cert_chain(s.cert, s.key)
            if not s.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            client.tls_set_context(ctx)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        # Registering this (paho's hook for external loops) stops publish() from writing to
        # the socket in the caller's thread; it queues, wakes our loop, and the loop writes.
        client.on_socket_register_write = lambda *_: None
        self._connect_to(client, *s.brokers()[self._broker_index])
        return client

    def _connect_to(self, client: paho.Client, host: str, port: int) -> None:
        """Where the next (re)connect goes. With `mqtt.session_expiry` the session is persistent: the broker
        keeps our subscriptions and queues QoS 1 requests and service calls while we are away."""
        expiry = self.settings.session_expiry
        if self._protocol != paho.MQTTv5:
            client.connect_async(host, port, self.settings.keepalive)
            return
        props = None
        if expiry:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        client.connect_async(host, port, self.settings.keepalive, clean_start=not expiry, properties=props)

    def _sub_args(self, filters: dict[str, FilterOptions]) -> tuple:
        if self.is_v5:
            return ([(f, SubscribeOptions(qos=1, noLocal=o.no_local, retainAsPublished=o.retain_as_published))
                     for f, o in filters.items()],)
        return ([(f, 1) for f in filters],)

    def _send(self, out: Outgoing) -> paho.MQTTMessageInfo:
        limit = self.broker.max_packet
        if limit is not None and _packet_size(out) > limit:
            return self._too_large(out, limit)
        props = None
        if self.is_v5 and (out.expiry or out.response_topic or out.correlation_data):
            props = Properties(PacketTypes.PUBLISH)
            if out.expiry:
                props.MessageExpiryInterval = out.expiry
            if out.response_topic:
                props.ResponseTopic = out.response_topic
            if out.correlation_data:
                props.CorrelationData = out.correlation_data
        self.counters.published += 1
        info = self._paho.publish(out.topic, out.payload, out.qos, out.retain, properties=props)
        if out.qos and info.rc == paho.MQTT_ERR_SUCCESS:
            self._inflight[info.mid] = out
        self._last_sent = out
        return info

    def _too_large(self, out: Outgoing, limit: int) -> paho.MQTTMessageInfo:
        """Never send what the broker said it will not take (it would close the link, and we
        would send it again after every reconnect): dropped, counted, named once."""
        self.counters.dropped_too_large += 1
        self._forget(out)
        if self._retained.get(out.topic) is out:
            del self._retained[out.topic]
        if out.topic not in self._told_too_large and len(self._told_too_large) < 1000:
            self._told_too_large.add(out.topic)
            log.error("dropped a %d-byte message to %s: broker %s takes packets of at most %d bytes "
                      "(its MQTT 5 Maximum Packet Size)", len(out.payload), out.topic[:200], self.broker_url, limit)
        info = paho.MQTTMessageInfo(0)
        info.rc = paho.MQTT_ERR_PAYLOAD_SIZE
        return info

    def _hand_over(self) -> None:
        """Give paho what was published since the last call (in order; caller holds the lock)."""
        handoff = self._handoff
        while handoff:
            self._send(handoff.popleft())

    def _wake_network_thread(self) -> None:
        """End the network thread's wait now (a full socket buffer means it is awake already)."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _unacked(self) -> int:
        return len(self._inflight)

    @property
    def backlog(self) -> int:
        """Messages handed over and not yet acknowledged (QoS >= 1) or sent: how far behind the link is."""
        return len(self._handoff) + len(self._inflight)

    def _pump(self, timeout: float) -> int:
        """One turn of paho's outside loop: wait for the socket or a wake-up, then read, write and
        keep the session alive. Returns paho's error code."""
        sock = self._paho.socket()
        if sock is None:
            return paho.MQTT_ERR_NO_CONN
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted wait in the SSL object
        if pending is not None and pending():
            timeout = 0.0
        poller = select.poll()  # not select(): a descriptor past 1023 (a busy HTTP edge) is fine here
        poller.register(sock, select.POLLIN | (select.POLLOUT if self._paho.want_write() else 0))
        poller.register(self._wake_r, select.POLLIN)
        try:
            ready = dict(poller.poll(timeout * 1000))
        except (OSError, ValueError):
            return paho.MQTT_ERR_CONN_LOST
        fd = sock.fileno()
        readable = ready.get(fd, 0) & (select.POLLIN | select.POLLHUP | select.POLLERR)
        writable = ready.get(fd, 0) & select.POLLOUT
        if ready.get(self._wake_r.fileno(), 0):
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass
        self.counters.wakeups += 1
        rc = paho.MQTT_ERR_SUCCESS
        if readable or (pending is not None and pending()):
            rc = self._paho.loop_read()
            # paho reads one packet a call when nothing is in flight: a burst is read on here while the
            # socket has more, rather than one turn of this loop (poll, checks, keepalive) per message
            drained = 1
            while rc == paho.MQTT_ERR_SUCCESS and drained < READ_BURST and (
                    (pending is not None and pending()) or self._readable(poller, fd)):
                rc = self._paho.loop_read()
                drained += 1
            self._last_read = time.monotonic()
        if rc == paho.MQTT_ERR_SUCCESS and (writable or self._paho.want_write()):
            rc = self._paho.loop_write()
            self._last_write = time.monotonic()
        if rc == paho.MQTT_ERR_SUCCESS:
            rc = self._paho.loop_misc()
            now = time.monotonic()
            if now >= min(self._last_read, self._last_write) + self.settings.keepalive:
                self._last_read = self._last_write = now  # paho pinged (or gave up), as it notes itself
        return rc

    @staticmethod
    def _readable(poller: "select.poll", fd: int) -> bool:
        return any(f == fd and e & (select.POLLIN | select.POLLHUP | select.POLLERR) for f, e in poller.poll(0))

    # ------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._connack_failed = reason
        else:
            self._session_present = bool(getattr(flags, "session_present", False))
            self.broker = BrokerTraits.from_connack(properties)
            self._session_pending = True

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self._link_up = False
        if reason is not None and int(getattr(reason, "value", None) or 0):
            self._disconnect_reason = reason

    def _subscribe(self, filters: dict[str, FilterOptions]) -> None:
        """Send SUBSCRIBE (caller holds the lock); `connected` waits for its SUBACK."""
        rc, mid = self._paho.subscribe(*self._sub_args(filters))
        if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
            self._broker_has.update(filters)
            self.counters.subscribes += 1
            self._sub_mids[mid] = list(filters)
            with self._suback_lock:
                if mid in self._early_subacks:
                    self._early_subacks.discard(mid)
                else:
                    self._pending_subacks.add(mid)
                    self._connected_event.clear()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._suback_lock:
            if mid in self._pending_subacks:
                self._pending_subacks.discard(mid)
            elif len(self._early_subacks) < 1000:
                self._early_subacks.add(mid)
            if not self._pending_subacks and self._online and not self._subscription_changes:
                self._connected_event.set()
        asked = self._sub_mids.pop(mid, [])
        for n, code in enumerate(reason_codes or ()):
            if getattr(code, "is_failure", False) or int(getattr(code, "value", 0)) >= 0x80:
                topic_filter = asked[n] if n < len(asked) else "?"
                self._broker_has.pop(topic_filter, None)  # asked again at the next session
                log.warning("broker %s refused the subscription to %s: %s", self.broker_url, topic_filter[:200],
                            code)

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self.counters.acked += 1
        out = self._inflight.pop(mid, None)
        if out is not None and out.row is not None:
            self._forget(out)

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        self.counters.received += 1
        if len(msg.payload) > self.settings.max_payload:
            self.counters.dropped_oversize += 1
            log.warning("dropped %d-byte message on %s (mqtt.max_payload is %d)",
                        len(msg.payload), msg.topic, self.settings.max_payload)
            return
        response_topic = correlation = None
        props = getattr(msg, "properties", None)
        if props is not None:
            response_topic = getattr(props, "ResponseTopic", None)
            correlation = getattr(props, "CorrelationData", None)
        self.router.submit(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain),
                                   response_topic, correlation))

    # ------------------------------------------------------------ network thread

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception:  # one bad message or paho surprise must not end the connection for good
                self.counters.network_errors += 1
                log.exception("MQTT network loop failed; reopening the connection")
                self._drop_link()
        if self._link_up and self._online:
            self._sign_off()
        self._go_offline()
        if self._link_up:
            self._disconnect_cleanly()

    def _sign_off(self) -> None:
        """At stop: what was published before goes out, then `offline`; wait for the broker's
        acknowledgements until the stop deadline."""
        with self._lock:
            self._send_subscription_changes()  # an unsubscribe asked for just before stop goes too
            self._hand_over()
            info = self._send(Outgoing(self.state_topic, OFFLINE, 1, True))
        while time.monotonic() < self._stop_deadline and self._unacked() > 0 and self._link_up:
            if self._pump(0.01) != paho.MQTT_ERR_SUCCESS:
                break
        if info.rc != paho.MQTT_ERR_SUCCESS or not info.is_published():
            log.warning("could not confirm the offline state with the broker")
        pending = len(self._outbox) + self._unacked()
        if pending:
            log.warning("shutting down with %d message(s) not acknowledged by the broker%s", pending,
                        "; kept for the next start" if self._keeper is not None else "")
            if self._keeper is not None:
                for out in list(self._inflight.values()):
                    self._keeper.keep(out)

    def _step(self) -> None:
        if not self._link_up:
            self._go_offline()
            if not self._first_attempt and not self._next_broker():
                wait = self._delay * random.uniform(0.5, 1.0)
                log.info("reconnecting to %s in %.1f s", self.broker_url, wait)
                if self._stopping.wait(wait):
                    return
                self._delay = min(self._delay * 2, self.settings.max_delay)
            self._first_attempt = False
            if not self._open_link():
                return
        if self._online and self._delay != self.settings.min_delay and \
                time.monotonic() - self._session_began > STABLE_SECONDS:
            self._delay = self.settings.min_delay  # only a session that lasted resets the backoff
        if self._handoff or self._subscription_changes:
            with self._lock:
                if self._online:
                    self._send_subscription_changes()
                    self._hand_over()
        rc = self._pump(self._idle_timeout())
        if self._connack_failed is not None:
            self._handle_refusal()
            return
        if self._session_pending:
            self._session_pending = False
            self._session_ready()
        elif not self._online and (rc != paho.MQTT_ERR_SUCCESS or
                                   time.monotonic() - self._link_opened > CONNACK_TIMEOUT):
            self._no_connack()
            return
        if rc != paho.MQTT_ERR_SUCCESS:
            self._link_up = False

    def _drop_link(self) -> None:
        self._link_up = False
        self._session_pending = False
        try:
            self._paho.disconnect()
        except Exception:
            pass

    def _disconnect_cleanly(self) -> None:
        """Queue DISCONNECT and let paho's loop write it (publish no longer writes inline)."""
        self._paho.disconnect()
        for _ in range(20):
            if self._pump(0.05) != paho.MQTT_ERR_SUCCESS:
                break

    def _open_link(self) -> bool:
        try:
            self._paho.reconnect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("cannot reach MQTT broker %s: %s", self.broker_url, exc)
            return False
        _no_delay(self._paho.socket())
        self._link_up = True
        self._link_opened = self._last_read = self._last_write = time.monotonic()
        return True

    def _idle_timeout(self) -> float:
        """Seconds until the network thread must look even if nothing arrives: paho's keepalive (it
        pings when nothing was written or read for `keepalive` s; we note when we last made it read or
        write, never earlier than paho does, so it is due when we wake), or the CONNACK deadline."""
        due = min(self._last_read, self._last_write) + self.settings.keepalive
        if not self._online:
            due = min(due, self._link_opened + CONNACK_TIMEOUT + 0.05)
        return max(0.0, due - time.monotonic())

    def _no_connack(self) -> None:
        """The broker closed or ignored our CONNECT: some 3.1.1-only brokers do this to MQTT 5."""
        self._link_up = False
        try:
            self._paho.disconnect()
        except Exception:
            pass
        if self.settings.protocol == "auto" and self.is_v5:
            log.info("broker %s did not answer an MQTT 5 CONNECT; using 3.1.1", self.broker_url)
            self._switch_protocol(paho.MQTTv311)
        elif self.is_v5:
            log.warning("broker %s closed the connection before accepting it: it may not speak MQTT 5 "
                        "(mqtt.protocol is 5; set it to auto or 3.1.1)", self.broker_url)
        else:
            log.warning("broker %s closed the connection before accepting it (its log says why)",
                        self.broker_url)

    def _handle_refusal(self) -> None:
        reason, self._connack_failed = self._connack_failed, None
        self._link_up = False
        try:
            self._paho.disconnect()
        except Exception:
            pass
        if self.settings.protocol == "auto" and self.is_v5 and int(getattr(reason, "value", 0)) in (1, 132):
            log.info("broker %s does not speak MQTT 5; using 3.1.1", self.broker_url)
            self._switch_protocol(paho.MQTTv311)
            return
        hint = ""
        if "authori" in str(reason).lower() or "password" in str(reason).lower():
            hint = " (check mqtt.username / mqtt.password)"
        elif int(getattr(reason, "value", 0)) in (1, 132):
            hint = " (it may not speak MQTT 5: mqtt.protocol is 5; set it to auto or 3.1.1)"
        log.error("MQTT broker %s refused the connection: %s%s", self.broker_url, reason, hint)

    def _switch_protocol(self, protocol: paho.MQTTProtocolVersion) -> None:
        self._protocol = protocol
        self._paho = self._new_paho()
        leftovers, self._inflight = list(self._inflight.values()), {}  # carried over to the new client
        for out in leftovers:
            self._queue(out)

    def _next_broker(self) -> bool:
        """After a link is lost, the next broker of the cluster at once, without waiting; False
        when every one has been tried since the last session (then the backoff applies)."""
        brokers = self.settings.brokers()
        if len(brokers) < 2 or self._tried >= len(brokers):
            self._tried = 0
            return False
        self._tried += 1
        self._broker_index = (self._broker_index + 1) % len(brokers)
        host, port = brokers[self._broker_index]
        self.broker_url = broker_url(self.settings.tls, host, port)
        self._connect_to(self._paho, host, port)
        log.info("trying MQTT broker %s", self.broker_url)
        return True

    def _go_offline(self) -> None:
        if self._online and not self._stopping.is_set():
            self._lost()
        with self._lock:
            self._online = False
            self._session_starting = False
            while self._handoff:  # published while online, not yet with paho: as if published now
                self._hold(self._handoff.popleft())
            if self._keeper is not None:  # with paho, not acknowledged: kept until they are
                for out in self._inflight.values():
                    self._keeper.keep(out)
        self._connected_event.clear()

    def _session_ready(self) -> None:
        """After CONNACK: subscribe, birth, re-publish retained state, drain outbox, go online."""
        self.counters.connects += 1
        self._session_began = time.monotonic()
        self._tried = 0
        self._last_sent = None
        with self._lock:  # a filter added from now on is queued as a change (no gap to fall into)
            self._subscription_changes.clear()  # a new session subscribes every filter below
            self._session_starting = True
            filters = self.router.filters()
            if not self._session_present or self.broker_url != self._session_url:
                self._broker_has.clear()  # another node of a cluster: ask again, it costs little to be sure
            self._session_url = self.broker_url
            # A session resumed on the same broker has the filters we gave it: asking again is work
            # for the broker, and retained messages sent a second time
            gone = [f for f in self._broker_has if f not in filters]
            filters = {f: o for f, o in filters.items() if self._broker_has.get(f) != o}
        with self._suback_lock:
            self._pending_subacks.clear()
            self._early_subacks.clear()
        with self._lock:
            if filters:
                self._subscribe(filters)
            for topic_filter in gone:
                self._paho.unsubscribe(topic_filter)
                self._broker_has.pop(topic_filter, None)
        with self._lock:
            pending = self._outbox.pending_topics()
            self._resend(self._retained[self.state_topic])
            for topic, out in list(self._retained.items()):
                if topic != self.state_topic and topic not in pending:
                    self._resend(out)
            for out in self._outbox.drain():
                self._resend(out)
            self._online = True
            self._session_starting = False
            for handle in list(self._session_callbacks):
                (handle.inbox or self.router.default_inbox).put(handle.callback)
            with self._suback_lock:
                if not self._pending_subacks and not self._subscription_changes:
                    self._connected_event.set()
        log.info("connected to MQTT broker %s (MQTT %s)", self.broker_url,
                 "5" if self.is_v5 else "3.1.1")
        with self._lock:
            self._check_shared_subscriptions()

    def _resend(self, out: Outgoing) -> None:
        """Send a held message; one paho refuses is dropped (and counted), not retried forever."""
        try:
            self._send(out)
        except (ValueError, TypeError) as exc:
            self.counters.send_errors += 1
            self._forget(out)
            log.error("dropped a held message for %r: %s", out.topic[:80], exc)
            if self._retained.get(out.topic) is out:
                del self._retained[out.topic]
