"""Answering a request: on a fixed topic, and on the MQTT 5 response topic when given.

Both the bridge API and service calls answer this way (Tasmota PR #25050
answers twice too): the fixed topic keeps MQTT 3.1.1 clients and
`mosquitto_sub` users served; the Response Topic + Correlation Data lets an
MQTT 5 caller match its answer without sharing a topic. A response topic the
caller chose is checked like any topic we did not build: one a broker would
reject is not used (the fixed-topic answer says why).
"""

from __future__ import annotations

import logging
from typing import Any

from bridge.core.payload import dumps
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.topics import InvalidTopic, check_topic

log = logging.getLogger(__name__)


def caller_topic_problem(topic: Any, what: str = "response topic") -> str | None:
    """Why a topic named by a caller cannot be answered on, or None when it can."""
    try:
        check_topic(topic, what)
    except InvalidTopic as exc:
        return str(exc)
    return None


def answer(mqtt: MqttClient, request: Message, topic: str | None, body: dict[str, Any]) -> None:
    payload = dumps(body)
    if topic:
        mqtt.publish(topic, payload, qos=1)
    if request.response_topic and request.response_topic != topic:
        problem = caller_topic_problem(request.response_topic, "MQTT 5 response topic")
        if problem:
            log.debug("not answering on the request's %s", problem)
            return
        mqtt.publish(request.response_topic, payload, qos=1,
                     correlation_data=request.correlation_data)
