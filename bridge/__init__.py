"""ruview-bridge: RuView Wi-Fi sensing nodes on MQTT."""

__version__ = "0.1.0"
