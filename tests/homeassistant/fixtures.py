"""Discovery configs as Zigbee2MQTT (per-entity, full keys) and Tasmota / ESPHome (abbreviated,
`~`) publish them, written from their documented formats."""

Z2M_DEVICE_LAMP = {"identifiers": ["zigbee2mqtt_0x00158d0001a2b3c4"], "name": "Living room lamp",
                   "model": "TRADFRI bulb E27 WS opal 980lm", "manufacturer": "IKEA",
                   "suggested_area": "Living room", "via_device": "zigbee2mqtt_bridge_0x00124b0012345678"}
Z2M_ORIGIN = {"name": "Zigbee2MQTT", "sw": "2.12.1", "url": "https://www.zigbee2mqtt.io"}
Z2M_AVAIL = {"availability_mode": "all", "availability": [
    {"topic": "zigbee2mqtt/bridge/state", "value_template": "{{ value_json.state }}"},
    {"topic": "zigbee2mqtt/Living room lamp/availability", "value_template": "{{ value_json.state }}"}]}

CONFIGS = {
    # Zigbee2MQTT JSON-schema light, brightness on a 0..254 scale
    "homeassistant/light/0x00158d0001a2b3c4/light/config": {
        "name": None, "schema": "json", "brightness": True, "brightness_scale": 254,
        "supported_color_modes": ["color_temp", "xy"], "command_topic": "zigbee2mqtt/Living room lamp/set",
        "state_topic": "zigbee2mqtt/Living room lamp", "unique_id": "0x00158d0001a2b3c4_light_zigbee2mqtt",
        "object_id": "living_room_lamp", "default_entity_id": "light.living_room_lamp",
        "device": Z2M_DEVICE_LAMP, "origin": Z2M_ORIGIN, **Z2M_AVAIL},
    # Zigbee2MQTT plug: a switch with raw ON/OFF commands and a JSON state
    "homeassistant/switch/0x00158d0005d6e7f8/switch/config": {
        "name": None, "command_topic": "zigbee2mqtt/Coffee plug/set", "state_topic": "zigbee2mqtt/Coffee plug",
        "value_template": "{{ value_json.state }}", "payload_on": "ON", "payload_off": "OFF",
        "unique_id": "0x00158d0005d6e7f8_switch_zigbee2mqtt", "object_id": "coffee_plug",
        "default_entity_id": "switch.coffee_plug", "origin": Z2M_ORIGIN,
        "device": {"identifiers": ["zigbee2mqtt_0x00158d0005d6e7f8"], "name": "Coffee plug",
                   "suggested_area": "Kitchen"}},
    # Zigbee2MQTT motion sensor: occupancy is a JSON boolean
    "homeassistant/binary_sensor/0x00158d0001d82999/occupancy/config": {
        "name": "Occupancy", "device_class": "occupancy", "value_template": "{{ value_json.occupancy }}",
        "payload_on": True, "payload_off": False, "state_topic": "zigbee2mqtt/hall_pir",
        "unique_id": "0x00158d0001d82999_occupancy_zigbee2mqtt", "object_id": "hall_pir_occupancy",
        "default_entity_id": "binary_sensor.hall_pir_occupancy", "origin": Z2M_ORIGIN,
        "device": {"identifiers": ["zigbee2mqtt_0x00158d0001d82999"], "name": "hall_pir"}},
    "homeassistant/sensor/0x00158d0001d82999/temperature/config": {
        "name": "Temperature", "device_class": "temperature", "unit_of_measurement": "°C",
        "state_class": "measurement", "value_template": "{{ value_json.temperature }}",
        "state_topic": "zigbee2mqtt/hall_pir", "unique_id": "0x00158d0001d82999_temperature_zigbee2mqtt",
        "object_id": "hall_pir_temperature", "origin": Z2M_ORIGIN,
        "device": {"identifiers": ["zigbee2mqtt_0x00158d0001d82999"], "name": "hall_pir"}},
    # Tasmota (HA discovery, SetOption19 1): abbreviated keys, POWER relay
    "homeassistant/switch/A1B2C3_RL_1/config": {
        "name": "Desk fan socket", "cmd_t": "cmnd/tasmota_A1B2C3/POWER", "stat_t": "tele/tasmota_A1B2C3/STATE",
        "val_tpl": "{{value_json.POWER}}", "pl_off": "OFF", "pl_on": "ON",
        "avty_t": "tele/tasmota_A1B2C3/LWT", "pl_avail": "Online", "pl_not_avail": "Offline",
        "uniq_id": "A1B2C3_RL_1", "dev": {"ids": ["A1B2C3"], "name": "Tasmota A1B2C3", "sa": "Office"}},
    # Tasmota dimmer: default-schema light, brightness 0..100 on its own topic
    "homeassistant/light/D4E5F6_LI_1/config": {
        "name": "Hall dimmer", "cmd_t": "cmnd/tasmota_D4E5F6/POWER", "stat_t": "tele/tasmota_D4E5F6/STATE",
        "val_tpl": "{{value_json.POWER}}", "pl_off": "OFF", "pl_on": "ON",
        "bri_cmd_t": "cmnd/tasmota_D4E5F6/Dimmer", "bri_stat_t": "tele/tasmota_D4E5F6/STATE",
        "bri_scl": 100, "bri_val_tpl": "{{value_json.Dimmer}}", "uniq_id": "D4E5F6_LI_1",
        "dev": {"ids": ["D4E5F6"], "name": "Tasmota D4E5F6"}},
    # ESPHome-style fan using "~" as its topic base
    "homeassistant/fan/bedroom-esp/bedroom_fan/config": {
        "~": "bedroom-esp/fan/bedroom_fan", "name": "Bedroom fan", "stat_t": "~/state", "cmd_t": "~/command",
        "pct_cmd_t": "~/speed_level/command", "uniq_id": "ESPfanbedroom_fan", "pl_on": "ON", "pl_off": "OFF",
        "dev": {"ids": ["a0b1c2d3e4f5"], "name": "bedroom-esp", "sw": "esphome v2025.10.0"}},
}

STATES = {
    "zigbee2mqtt/Living room lamp": {"state": "ON", "brightness": 127, "color_mode": "color_temp"},
    "zigbee2mqtt/Coffee plug": {"state": "OFF"},
    "zigbee2mqtt/hall_pir": {"occupancy": True, "temperature": 21.5},
    "tele/tasmota_A1B2C3/STATE": {"POWER": "ON", "Time": "2026-11-22T10:00:00"},
    "bedroom-esp/fan/bedroom_fan/state": "OFF",
}
