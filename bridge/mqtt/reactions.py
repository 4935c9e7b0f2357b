"""How the bridge reacts to what the broker does to its session, apart from the network loop.

A link lost is said with its reason and acted on (client.py calls `_lost` when a session ends): a
take-over by another client with our id waits the longest backoff; a message the broker closes the
link for, session after session, is dropped and named (`_refused`) instead of being sent forever;
short sessions in a row are said once. With a share group, the broker must really deliver
`$share/<group>/…`: its CONNACK says so (MQTT 5), or a probe through a shared subscription of our
own must arrive (3.1.1); a broker that cannot is fatal at start (`_fail`), never silence.

A mixin of MqttClient: these run on the network thread (and the probe's verdict on the core inbox)
and use the client's state, declared below for the type checker.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import paho.mqtt.client as paho

from bridge.mqtt.outbox import Outbox, Outgoing
from bridge.mqtt.router import FilterOptions, Route, Router
from bridge.mqtt.settings import BrokerTraits, ConnectionSettings

log = logging.getLogger("bridge.mqtt.client")  # one logger for the connection, as before the split

SHARED_TEST_SECONDS = 3.0  # how long a 3.1.1 broker has to deliver our shared-subscription probe
STRIKES = 3  # sessions in a row the broker closed right after one message: that message goes
TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: another client connected with our client id
STABLE_SECONDS = 30.0  # a session that lasts this long resets the reconnect backoff


class BrokerReactions:
    settings: ConnectionSettings
    router: Router
    state_topic: str
    broker: BrokerTraits
    broker_url: str
    counters: Any
    fatal: str | None
    on_fatal: Callable[[], None]
    _delay: float
    _disconnect_reason: Any
    _inflight: dict[int, Outgoing]
    _last_sent: Outgoing | None
    _lock: Any
    _outbox: Outbox
    _paho: paho.Client
    _retained: dict[str, Outgoing]
    _session_began: float
    _shared_ok: bool
    _short_sessions: int
    _stopping: threading.Event
    _suspect: Outgoing | None
    _suspect_count: int

    if TYPE_CHECKING:  # MqttClient's own
        @property
        def base_topic(self) -> str: ...
        def _new_paho(self) -> paho.Client: ...
        def _queue(self, out: Outgoing) -> None: ...
        def _send(self, out: Outgoing) -> paho.MQTTMessageInfo: ...
        def _subscribe(self, filters: dict[str, FilterOptions]) -> None: ...
        def _wake_network_thread(self) -> None: ...
        def unsubscribe(self, route: Route) -> None: ...

    def _lost(self) -> None:
        """Say why the link went, and act on what it tells: another client with our id (wait
        longer), or a message the broker closes the link for, session after session (drop it)."""
        reason, self._disconnect_reason = self._disconnect_reason, None
        lasted = time.monotonic() - self._session_began
        code = int(getattr(reason, "value", 0) or 0)
        if code == TAKEN_OVER:
            log.error("MQTT broker %s closed our session: another client uses the client id %r (a copied "
                      "config?); set mqtt.client_id apart; waiting %.0f s", self.broker_url,
                      self.settings.client_id, self.settings.max_delay)
            self._delay = self.settings.max_delay
            return
        # A broker handles packets in order: the culprit is the oldest QoS 1 message it never
        # acknowledged (paho sends those again first, at the next CONNACK), else the last we sent.
        suspect = next(iter(self._inflight.values()), None) or self._last_sent
        said = f": {reason}" if reason is not None else ""
        log.warning("lost connection to MQTT broker %s%s (after %.1f s%s)", self.broker_url, said, lasted,
                    f"; the oldest message not acknowledged was to {suspect.topic[:200]}" if suspect else "")
        if lasted > STABLE_SECONDS:  # only a session that lasted resets the backoff
            self._short_sessions, self._suspect, self._suspect_count = 0, None, 0
            self._delay = self.settings.min_delay
            return
        self._short_sessions += 1
        if suspect is not None:  # the same message (not only the same topic) each time
            self._suspect_count = self._suspect_count + 1 if suspect is self._suspect else 1
            self._suspect = suspect
            if self._suspect_count >= STRIKES and suspect.topic != self.state_topic:  # never our own `online`
                self._refused(suspect)
                return
        if self._short_sessions == STRIKES + 1:
            log.error("MQTT broker %s closed our session right after it began %d times in a row: another "
                      "client may be using the client id %r (a copied config? set mqtt.client_id apart), or "
                      "the broker refuses what we send (its log says which); waiting %.0f s between tries",
                      self.broker_url, self._short_sessions, self.settings.client_id, self.settings.max_delay)
        if self._short_sessions > STRIKES:
            self._delay = self.settings.max_delay

    def _refused(self, out: Outgoing) -> None:
        """The broker closed the link right after this message STRIKES sessions in a row: stop
        sending it (from the retained cache, the outbox and paho's queue), and say so."""
        self.counters.dropped_refused += 1
        self._suspect, self._suspect_count = None, 0
        log.error("dropped the message to %s (%d bytes): broker %s closed the connection right after it "
                  "%d times in a row (a topic it refuses, or larger than its max_packet_size)",
                  out.topic[:200], len(out.payload), self.broker_url, STRIKES)
        with self._lock:
            if self._retained.get(out.topic) is out:
                del self._retained[out.topic]
            keep = [m for m in self._inflight.values() if m is not out]
            self._inflight = {}
            self._outbox.remove(out)
            self._paho = self._new_paho()  # paho would send its own queue again: start a clean one
            for m in keep:
                self._queue(m)
        self._last_sent = None

    def _check_shared_subscriptions(self) -> None:
        """With a share group, the broker must deliver `$share/<group>/…` as shared subscriptions:
        some grant the SUBSCRIBE and match the filter literally, and every shared request and
        service call would go unanswered in silence. MQTT 5 brokers say so in CONNACK; a 3.1.1
        broker is asked with a probe through a shared subscription of our own."""
        group = self.settings.share_group
        if not group or self._shared_ok:
            return
        if self.broker.shared_subscriptions is False:
            self._fail(f"broker {self.broker_url} has no shared subscriptions (its CONNACK says so), so "
                       f"bridge.share_group: {group} cannot work: remove bridge.share_group and run one bridge, "
                       "or use a broker with $share (Mosquitto 2, EMQX, HiveMQ, VerneMQ)")
            return
        probe = f"{self.base_topic}/bridge/selftest/{random.getrandbits(64):016x}"
        heard = threading.Event()
        route = self.router.add(f"$share/{group}/{probe}", lambda _msg: heard.set(), accept_retained=False)
        self._subscribe({route.topic_filter: FilterOptions(False, False)})
        self._send(Outgoing(probe, b"probe", 1, False))

        def verdict() -> None:
            self.unsubscribe(route)  # at the broker too: a persistent session would keep it
            if heard.is_set():
                self._shared_ok = True
            else:
                self._fail(f"broker {self.broker_url} does not deliver shared subscriptions ($share/{group}/…: "
                           f"a probe sent through one never arrived in {SHARED_TEST_SECONDS:g} s), so "
                           f"bridge.share_group: {group} cannot work: remove bridge.share_group and run one "
                           "bridge, or use a broker with $share (Mosquitto 2, EMQX, HiveMQ, VerneMQ)")

        self.router.default_inbox.call_later(SHARED_TEST_SECONDS, verdict)

    def _fail(self, why: str) -> None:
        """The broker cannot give what the configuration needs: say it once, and stop (the CLI
        exits 2 with this line); never run on degraded in silence."""
        if self.fatal is None:
            self.fatal = why
            log.error("%s", why)
            self.on_fatal()
        self._stopping.set()
        self._wake_network_thread()
