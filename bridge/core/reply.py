"""Answering a request: on a fixed topic, and on the MQTT 5 response topic when given.

Both the bridge API and service calls answer this way (Tasmota PR #25050
answers twice too): the fixed topic keeps MQTT 3.1.1 clients and
`mosquitto_sub` users served; the Response Topic + Correlation Data lets an
MQTT 5 caller match its answer without sharing a topic. A response topic the
caller chose is checked like any topic we did not build: one a broker would
reject, or one where the answer would be taken for a request, a state or a device
command, is not used (the fixed-topic answer still goes out).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from bridge.core.payload import dumps
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.topics import InvalidTopic, check_topic

if TYPE_CHECKING:
    from bridge.extension import ExtensionMqtt

log = logging.getLogger(__name__)


# where devices take commands: Zigbee2MQTT and ESPHome ".../set", Tasmota "cmnd/...", "command" topics
_DEVICE_COMMAND = re.compile(r"(?:^|/)(?:set|cmnd|command)(?:/|$)")


def caller_topic_problem(topic: Any, what: str = "response topic", mqtt: "MqttClient | ExtensionMqtt | None" = None
                         ) -> str | None:
    """Why a topic named by a caller cannot be answered on, or None when it can.

    Any client may name a response topic, so an answer must never land where it would be taken
    for something else: under the bridge's own base topic (a request, an utterance, an intent event,
    a state), on a topic the bridge itself listens on (discovery, a device's state), or on a device's
    command topic. The caller's own inbox ("satellite/7/answer") is what a response topic is for."""
    try:
        check_topic(topic, what)
    except InvalidTopic as exc:
        return str(exc)
    if _DEVICE_COMMAND.search(topic):
        return f"{what} {topic[:100]!r} looks like a device's command topic"
    if mqtt is not None:
        base = mqtt.base_topic
        if topic == base or topic.startswith(base + "/"):
            return f"{what} {topic[:100]!r} is under the bridge's own base topic {base!r}"
        if mqtt.listens_to(topic):
            return f"{what} {topic[:100]!r} is a topic the bridge itself acts on"
    return None


def answer(mqtt: "MqttClient | ExtensionMqtt", request: Message, topic: str | None, body: dict[str, Any]) -> None:
    payload = dumps(body)
    if topic:
        mqtt.publish(topic, payload, qos=1)
    if request.response_topic and request.response_topic != topic:
        problem = caller_topic_problem(request.response_topic, "MQTT 5 response topic", mqtt)
        if problem:
            log.debug("not answering on the request's %s", problem)
            return
        mqtt.publish(request.response_topic, payload, qos=1,
                     correlation_data=request.correlation_data)
