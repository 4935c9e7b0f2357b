// threshold-alert, in AssemblyScript: a binary sensor that is on while a sensor is high (with hysteresis).
//
// The same plugin as plugins/threshold-alert/plugin.c, on the AssemblyScript PDK
// (plugins/pdk/assemblyscript). Config entry data: {"sensor": "sensor.hall_temperature", "high": 26,
// "low": 24, "alert": "binary_sensor.hall_too_warm", "name": "Hall too warm"}. Above `high` the alert
// turns on, below `low` off; between the two it keeps its state. The alert is announced to Home
// Assistant (hc_entity_register) at setup.
import {
  ConfigEntry, ERROR, INVALID, Json, JsonObject, NOT_FOUND, OK, Plugin, entityRegister, log, register, stateSet,
} from "../pdk/assemblyscript/ruview_plugin";
export { alloc, dealloc, setup_entry, receive_event, call_service_handler, teardown } from "../pdk/assemblyscript/ruview_plugin";

function text(data: Json, key: string): string {
  const v = data.get(key);
  const s = v ? v.asString() : null;
  return s === null ? "" : s;
}

function number(data: Json, key: string): f64 {
  const v = data.get(key);
  return v ? v.asNumber() : NaN;
}

class ThresholdAlert extends Plugin {
  sensor: string = "";
  alert: string = "";
  high: f64 = 0;
  low: f64 = 0;
  on: i32 = -1; // unknown

  setupEntry(entry: ConfigEntry): i32 {
    const data = entry.data;
    this.sensor = text(data, "sensor");
    this.alert = text(data, "alert");
    this.high = number(data, "high");
    this.low = number(data, "low");
    this.on = -1;
    if (this.sensor.length == 0 || this.alert.length == 0 || isNaN(this.high) || isNaN(this.low) || this.low > this.high) {
      log(ERROR, "config entry data needs sensor, alert, and numbers high >= low");
      return INVALID;
    }
    const config = new JsonObject().str("entity_id", this.alert).str("device_class", "problem");
    const name = text(data, "name");
    if (name.length > 0) config.str("name", name);
    return entityRegister(config.finish());
  }

  setAlert(on: i32): i32 {
    this.on = on;
    return stateSet(this.alert, on ? "on" : "off", "{\"device_class\":\"problem\"}");
  }

  receiveEvent(eventType: string, data: Json): i32 {
    if (eventType != "state_changed" || text(data, "entity_id") != this.sensor) return OK;
    const next = data.get("new_state");
    if (next === null) return OK;
    const value = number(next, "state");
    if (isNaN(value)) return OK; // unavailable, unknown
    if (value > this.high && this.on != 1) return this.setAlert(1);
    if (value < this.low && this.on != 0) return this.setAlert(0);
    return OK;
  }

  callService(domain: string, service: string, data: Json): i32 {
    if (service != "reset") return NOT_FOUND;
    this.on = -1;
    return OK;
  }
}

register(new ThresholdAlert());
