"""The MQTT topic contract (docs/mqtt-api.md), built from one base topic.

Every feature asks this class for its topics instead of formatting strings,
so the contract lives in one place and a base-topic change cannot miss one.

With `bridge.share_group` set, several bridges share one broker: each instance
has its own `<base>/bridge/<instance>/state|info|health` (and its own Last
Will), and the work any instance may do is subscribed as
`$share/<group>/<filter>` so that the broker hands each message to one of them.

`check_topic` / `check_filter` are the one validation for topics the bridge did
not build itself (response topics, discovered state topics, plugin topics): a
topic with a NUL, a wildcard or over MQTT's 65,535 bytes makes brokers drop the
connection, so it is refused before anything is published, cached or queued.
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535


class InvalidTopic(ValueError):
    """A topic or filter that must not be sent to a broker; str() says why."""


def _checked_text(topic: object, what: str) -> str:
    if not isinstance(topic, str) or not topic:
        raise InvalidTopic(f"{what} must be a non-empty string")
    if "\0" in topic:
        raise InvalidTopic(f"{what} contains a NUL character")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidTopic(f"{what} is not valid UTF-8") from None
    if size > MAX_TOPIC_BYTES:
        raise InvalidTopic(f"{what} is {size} bytes; MQTT allows at most {MAX_TOPIC_BYTES}")
    return topic


def check_topic(topic: object, what: str = "topic") -> str:
    """A topic to publish to: UTF-8, no NUL, no wildcard, not a `$` system topic."""
    topic = _checked_text(topic, what)
    if "+" in topic or "#" in topic:
        raise InvalidTopic(f"{what} {_short(topic)} contains a wildcard (+ or #)")
    if topic.startswith("$"):
        raise InvalidTopic(f"{what} {_short(topic)} is a broker system topic ($...)")
    return topic


def check_filter(topic_filter: object, what: str = "topic filter") -> str:
    """A filter to subscribe to: wildcards only as whole levels, `#` last; `$share/<g>/` allowed."""
    topic_filter = _checked_text(topic_filter, what)
    inner = topic_filter
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3 or not parts[1] or "+" in parts[1] or "#" in parts[1] or not parts[2]:
            raise InvalidTopic(f"{what} {_short(topic_filter)}: expected $share/<group>/<filter>")
        inner = parts[2]
    levels = inner.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
            raise InvalidTopic(f"{what} {_short(topic_filter)}: + and # must fill a whole level, "
                               "and # must come last")
    return topic_filter


def _short(topic: str) -> str:
    return repr(topic if len(topic) <= 80 else topic[:77] + "...")


class Topics:
    def __init__(self, base: str = "ruview", *, instance: str | None = None,
                 share_group: str | None = None) -> None:
        self.base = base
        self.instance = instance
        self.share_group = share_group
        # per-instance bridge topics only when instances share the broker's work
        own = f"{base}/bridge/{instance}" if share_group and instance else f"{base}/bridge"
        self.bridge_state = f"{own}/state"
        self.bridge_info = f"{own}/info"
        self.bridge_health = f"{own}/health"
        self.bridge_nodes = f"{own}/nodes"  # every node, retained (Zigbee2MQTT's bridge/devices)
        self.bridge_log = f"{own}/log"  # the bridge's log lines (Zigbee2MQTT's bridge/logging)
        self.bridge_event = f"{base}/bridge/event"
        self.bridge_request_filter = f"{base}/bridge/request/#"
        self.instance_request_filter = f"{own}/request/#" if share_group else None
        self.state_filter = f"{base}/state/#"
        self.event_filter = f"{base}/event/+"
        self.service_filter = f"{base}/service/+/+"
        self.node_state_filter = f"{base}/node/+"
        self.node_set_filter = f"{base}/node/+/set"
        self.assist_utterance = f"{base}/assist/utterance"
        self.assist_response = f"{base}/assist/response"
        self._own = own

    def shared(self, topic_filter: str) -> str:
        """The filter for work any one instance may do: `$share/<group>/...` when grouped."""
        return f"$share/{self.share_group}/{topic_filter}" if self.share_group else topic_filter

    def bridge_request(self, verb: str) -> str:
        return f"{self.base}/bridge/request/{verb}"

    def bridge_response(self, verb: str, *, instance: bool = False) -> str:
        return f"{self._own if instance else self.base + '/bridge'}/response/{verb}"

    def instance_request(self, verb: str) -> str:
        return f"{self._own}/request/{verb}"

    def request_verb(self, topic: str) -> tuple[str, bool]:
        """(verb, sent to this instance's own request topic) for an incoming request."""
        own = f"{self._own}/request/"
        if self.share_group and topic.startswith(own):
            return topic[len(own):], True
        return topic[len(f"{self.base}/bridge/request/"):], False

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

    def node_set(self, name: str) -> str:
        return f"{self.base}/node/{name}/set"

    def node_log(self, name: str) -> str:
        return f"{self.base}/node/{name}/log"

    def plugin_status(self, domain: str) -> str:
        return f"{self.base}/plugin/{domain}/status"

    def plugin_audit(self, domain: str) -> str:
        return f"{self.base}/plugin/{domain}/audit"

    def assist_intent(self, intent: str) -> str:
        return f"{self.base}/assist/intent/{intent}"

    def suffix(self, topic: str, prefix_filter: str) -> str:
        """The part of `topic` matched by the trailing wildcard of `prefix_filter`."""
        return topic[len(prefix_filter.rstrip("#+")):]


class DiscoveryTopics:
    """Home Assistant's discovery topics under its prefix (HA's layout, not ours)."""

    def __init__(self, prefix: str = "homeassistant") -> None:
        self.prefix = prefix
        self.component_filter = f"{prefix}/+/+/config"  # <component>/<object_id>/config
        self.node_component_filter = f"{prefix}/+/+/+/config"  # <component>/<node_id>/<object_id>
        self.device_filter = f"{prefix}/device/+/config"

    def component(self, platform: str, key: str, object_id: str) -> str:
        return f"{self.prefix}/{platform}/{key}/{object_id}/config"

    def device(self, key: str) -> str:
        return f"{self.prefix}/device/{key}/config"

    def trigger(self, key: str, subtype: str) -> str:
        return f"{self.prefix}/device_automation/{key}/{subtype}/config"

    @staticmethod
    def statestream_filter(base: str) -> str:
        """HA's mqtt_statestream: `<base>/<domain>/<object_id>/state` for every HA entity."""
        return f"{base}/+/+/state"

    def owner_key(self, topic: str) -> str | None:
        """The node-id level (our device key) of a config topic, None if it has none."""
        parts = topic[len(self.prefix) + 1:].split("/")
        if len(parts) == 4:
            return parts[1]
        if len(parts) == 3 and parts[0] == "device":
            return parts[1]
        return None
