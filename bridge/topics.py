"""The MQTT topic contract (docs/mqtt-api.md), built from one base topic.

Every feature asks this class for its topics instead of formatting strings,
so the contract lives in one place and a base-topic change cannot miss one.
"""

from __future__ import annotations

import re

SLUG = re.compile(r"[a-z0-9_][a-z0-9_-]*")


def is_slug(name: str) -> bool:
    """Names that may stand in a topic: no '+', '#', '/', spaces or upper case."""
    return bool(SLUG.fullmatch(name))


class Topics:
    def __init__(self, base: str = "ruview") -> None:
        self.base = base
        self.bridge_state = f"{base}/bridge/state"
        self.bridge_info = f"{base}/bridge/info"
        self.bridge_health = f"{base}/bridge/health"
        self.bridge_event = f"{base}/bridge/event"
        self.bridge_request_filter = f"{base}/bridge/request/#"
        self.state_filter = f"{base}/state/#"
        self.event_filter = f"{base}/event/+"
        self.service_filter = f"{base}/service/+/+"
        self.node_set_filter = f"{base}/node/+/set"

    def bridge_request(self, verb: str) -> str:
        return f"{self.base}/bridge/request/{verb}"

    def bridge_response(self, verb: str) -> str:
        return f"{self.base}/bridge/response/{verb}"

    def state(self, entity_id: str) -> str:
        return f"{self.base}/state/{entity_id}"

    def event(self, event_type: str) -> str:
        return f"{self.base}/event/{event_type}"

    def service(self, domain: str, service: str) -> str:
        return f"{self.base}/service/{domain}/{service}"

    def service_response(self, domain: str, service: str) -> str:
        """Where a service answers a caller that named no response topic."""
        return f"{self.base}/service/{domain}/{service}/response"

    def node(self, name: str) -> str:
        return f"{self.base}/node/{name}"

    def node_availability(self, name: str) -> str:
        return f"{self.base}/node/{name}/availability"

    def node_event(self, name: str) -> str:
        return f"{self.base}/node/{name}/event"

    def suffix(self, topic: str, prefix_filter: str) -> str:
        """The part of `topic` matched by the trailing wildcard of `prefix_filter`."""
        return topic[len(prefix_filter.rstrip("#+")):]
