"""Answering a request: on a fixed topic, and on the MQTT 5 response topic when given.

Both the bridge API and service calls answer this way (Tasmota PR #25050
answers twice too): the fixed topic keeps MQTT 3.1.1 clients and
`mosquitto_sub` users served; the Response Topic + Correlation Data lets an
MQTT 5 caller match its answer without sharing a topic.
"""

from __future__ import annotations

from typing import Any

from bridge.core.payload import dumps
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message


def answer(mqtt: MqttClient, request: Message, topic: str | None, body: dict[str, Any]) -> None:
    payload = dumps(body)
    if topic:
        mqtt.publish(topic, payload, qos=1)
    if request.response_topic and request.response_topic != topic:
        mqtt.publish(request.response_topic, payload, qos=1,
                     correlation_data=request.correlation_data)
