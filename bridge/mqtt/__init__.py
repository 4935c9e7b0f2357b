"""MQTT transport: connection, outbox, topic routing, embedded broker."""
