"""Answering a request: on a fixed topic, and on the MQTT 5 response topic when given.

Both the bridge API and service calls answer this way (Tasmota PR #25050
answers twice too): the fixed topic keeps MQTT 3.1.1 clients and
`mosquitto_sub` users served; the Response Topic + Correlation Data lets an
MQTT 5 caller match its answer without sharing a topic. A response topic the
caller chose is checked like any topic we did not build: one a broker would
reject, or one that does not look like a reply topic, or one the bridge itself
acts on, is not used (the fixed-topic answer still goes out).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bridge.core.payload import dumps
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.topics import InvalidTopic, check_topic

if TYPE_CHECKING:
    from bridge.extension import ExtensionMqtt

log = logging.getLogger(__name__)


# a response topic must look like one: a level that says so ("satellite/7/answer", "inbox/svc", "replies/me")
REPLY_LEVELS = frozenset({"response", "responses", "reply", "replies", "answer", "answers", "inbox"})


def caller_topic_problem(topic: Any, what: str = "response topic", mqtt: "MqttClient | ExtensionMqtt | None" = None
                         ) -> str | None:
    """Why a topic named by a caller cannot be answered on, or None when it can.

    Any client that may publish a request may name a response topic, and the bridge may publish
    where that client may not: an answer must never land where another program would act on it
    (a device's or another bridge's command topic, a restart request, Rhasspy's intents). So a
    response topic is honoured only when it looks like one, with a level such as "answer",
    "response", "reply" or "inbox" ("satellite/7/answer"), and never under the bridge's own base
    topic nor on a topic the bridge itself listens on."""
    try:
        check_topic(topic, what)
    except InvalidTopic as exc:
        return str(exc)
    if not REPLY_LEVELS & set(topic.lower().split("/")):
        return (f"{what} {topic[:100]!r} has no level that marks it as a reply "
                f"({', '.join(sorted(REPLY_LEVELS))}): answers go only to such topics")
    if mqtt is not None:
        base = mqtt.base_topic
        if topic == base or topic.startswith(base + "/"):
            return f"{what} {topic[:100]!r} is under the bridge's own base topic {base!r}"
        if mqtt.listens_to(topic):
            return f"{what} {topic[:100]!r} is a topic the bridge itself acts on"
    return None


_told: set[str] = set()


def _tell(topic: str, problem: str) -> None:
    """Say once per topic (at most 1000) why a caller's response topic is not answered on."""
    if topic in _told or len(_told) >= 1000:
        log.debug("not answering on the request's %s", problem)
        return
    _told.add(topic)
    log.warning("not answering on the request's %s; the answer went to the fixed response topic", problem)


def answer(mqtt: "MqttClient | ExtensionMqtt", request: Message, topic: str | None, body: dict[str, Any]) -> None:
    payload = dumps(body)
    if topic:
        mqtt.publish(topic, payload, qos=1)
    if request.response_topic and request.response_topic != topic:
        problem = caller_topic_problem(request.response_topic, "MQTT 5 response topic", mqtt)
        if problem:
            _tell(request.response_topic, problem)
            return
        mqtt.publish(request.response_topic, payload, qos=1,
                     correlation_data=request.correlation_data)
