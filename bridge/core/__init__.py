"""Home state, events, services and the bridge request API — all carried on MQTT."""
