"""The embedded MQTT broker (`mqtt.url: auto` when nothing answers on the port): packets.py
reads and writes MQTT 3.1.1 and 5, broker.py routes; bridge/mqtt/embedded.py runs it."""

from bridge.mqtt.broker.broker import Broker

__all__ = ["Broker"]
