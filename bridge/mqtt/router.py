"""Topic router: incoming messages to handlers by MQTT filter, run off the network thread.

paho calls `on_message` in its network thread; anything slow there stalls
keep-alives and every other subscription. So the router only matches and
puts each (handler, message) on the inbox of whoever subscribed — the core's
`mqtt-handlers` worker or an extension's own — and returns. Inboxes are
bounded: when one is full the message is dropped and counted, never blocking.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from bridge.core.inbox import Inbox
from bridge.topics import check_filter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    """An incoming MQTT message as handlers see it (protocol-neutral)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    response_topic: str | None = None  # MQTT 5 property
    correlation_data: bytes | None = None  # MQTT 5 property


Handler = Callable[[Message], None]


def filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 §4.7 matching, including the rule that wildcards skip $-topics."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part != "+" and part != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)


@dataclass(slots=True, eq=False)
class Route:
    topic_filter: str
    handler: Handler
    accept_retained: bool
    no_local: bool
    inbox: Inbox
    dropped: int = 0  # messages for this route its full inbox did not take (also in Router.dropped)


@dataclass(frozen=True, slots=True)
class FilterOptions:
    """What to ask the broker for one filter, merged over every route on it."""

    no_local: bool  # MQTT 5: not our own publishes (never on $share filters: a protocol error)
    retain_as_published: bool  # MQTT 5: keep the retain flag, so retained commands can be ignored


MATCH_CACHE = 4096  # topics whose matching routes are remembered (cleared when full or routes change)


class Router:
    """Holds routes and hands matched messages to each route's inbox.

    Which routes a topic matches is worked out once and remembered (a bridge hears the same
    topics again and again), so a message costs the network thread a dict look-up, not a split
    and compare per route; adding or removing a route forgets what was remembered."""

    def __init__(self, default_inbox: Inbox) -> None:
        self.default_inbox = default_inbox
        self._routes: list[Route] = []
        self._lock = threading.Lock()
        self._matches: dict[str, tuple[Route, ...]] = {}
        self.dropped = 0
        self.ignored_retained = 0
        self._told_retained: set[str] = set()

    def add(self, topic_filter: str, handler: Handler, *, accept_retained: bool = True,
            no_local: bool = False, inbox: Inbox | None = None) -> Route:
        check_filter(topic_filter)
        route = Route(topic_filter, handler, accept_retained, no_local, inbox or self.default_inbox)
        with self._lock:
            self._routes.append(route)
            self._matches = {}
        return route

    def remove(self, route: Route) -> None:
        with self._lock:
            if route in self._routes:
                self._routes.remove(route)
                self._matches = {}

    def __len__(self) -> int:
        return len(self._routes)

    def listens_to(self, topic: str) -> bool:
        """Would a message on `topic` reach one of our handlers?"""
        with self._lock:
            return any(filter_matches(r.topic_filter, topic) for r in self._routes)

    def filters(self) -> dict[str, FilterOptions]:
        """Distinct filters to subscribe, each with the options every route on it allows."""
        out: dict[str, FilterOptions] = {}
        with self._lock:
            for r in self._routes:
                old = out.get(r.topic_filter, FilterOptions(True, False))
                shared = r.topic_filter.startswith("$share/")
                out[r.topic_filter] = FilterOptions(old.no_local and r.no_local and not shared,
                                                    old.retain_as_published or not r.accept_retained)
        return out

    def submit(self, message: Message, *, local: bool = False) -> None:
        """Called from the network thread: match, enqueue, return at once. `local`: the message is
        our own (an in-process loopback delivers those), so No Local routes do not hear it."""
        topic = message.topic
        matching = self._matches.get(topic)
        if matching is None:
            matching = self._match(topic)
        if local:
            matching = tuple(r for r in matching if not r.no_local)
        if message.retain:
            routes = [r for r in matching if r.accept_retained]
            if len(routes) < len(matching):
                self._ignored(topic)
            matching = tuple(routes)
        for route in matching:
            if not route.inbox.put(route.handler, message):
                route.dropped += 1
                self.dropped += 1

    def _match(self, topic: str) -> tuple[Route, ...]:
        with self._lock:
            matching = tuple(r for r in self._routes if filter_matches(r.topic_filter, topic))
            if len(self._matches) >= MATCH_CACHE:
                self._matches = {}
            self._matches[topic] = matching
        return matching

    def _ignored(self, topic: str) -> None:
        self.ignored_retained += 1
        if topic not in self._told_retained and len(self._told_retained) < 1000:
            self._told_retained.add(topic)
            log.debug("ignored a retained message on %s: commands are never taken from retained "
                      "messages (clear it with an empty retained publish)", topic[:200])
