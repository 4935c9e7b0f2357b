// A probe of the AssemblyScript PDK (tests/plugins/test_pdk.py): the entry data read back, every hc_*
// call once on the service pdk_probe.check (each answer into sensor.pdk_probe_report), MQTT echoed.
import {
  ConfigEntry, INFO, INVALID, Json, JsonObject, NOT_FOUND, OK, Plugin, entityRegister, eventFire, log, mqttPublish,
  mqttSubscribe, register, serviceCall, stateGet, stateSet,
} from "./ruview_plugin";
export { alloc, dealloc, setup_entry, receive_event, call_service_handler, teardown } from "./ruview_plugin";

function outcome(code: i32): string {
  if (code >= 0) return "ok";
  if (code == -1) return "not found";
  if (code == -3) return "permission denied";
  if (code == -5) return "invalid argument";
  if (code == -6) return "failed";
  return "error " + code.toString();
}

class Probe extends Plugin {
  setupEntry(entry: ConfigEntry): i32 {
    const quote = entry.data.get("quote");
    const list = entry.data.get("list");
    const numbers = new Array<string>();
    if (list) {
      const items = list.items();
      for (let i = 0; i < items.length; i++) numbers.push(items[i].raw);
    }
    const config = new JsonObject().str("quote", quote ? (quote.asString() || "") as string : "")
      .raw("list", "[" + numbers.join(",") + "]").bool("absent", entry.data.get("nope") === null)
      .str("title", entry.title).finish();
    let code = entityRegister(new JsonObject().str("entity_id", "sensor.pdk_probe").str("name", "PDK probe").finish());
    if (code < 0) return code;
    code = mqttSubscribe("probe/in");
    if (code < 0) return code;
    code = stateSet("sensor.pdk_probe", "ready", config);
    if (code < 0) return code;
    const fail = entry.data.get("fail");
    if (fail && fail.asBool() == 1) return -42;
    return OK;
  }

  receiveEvent(eventType: string, data: Json): i32 {
    if (eventType != "mqtt_message") return OK;
    const payload = data.get("payload");
    const text = payload ? payload.asString() : null;
    return mqttPublish("probe/out", "echo:" + (text === null ? "" : text));
  }

  callService(domain: string, service: string, data: Json): i32 {
    if (service == "check") {
      const big = stateGet("sensor.big");
      if (!big.ok) return big.code;
      const padding = big.attributes.get("padding");
      const padded = padding ? padding.asString() : null;
      const bigState = big.state;
      const report = new JsonObject()
        .str("log", outcome(log(INFO, "pdk probe checking")))
        .str("big_state", bigState === null ? "" : bigState)
        .num("big_padding", padded === null ? 0 : padded.length)
        .str("missing", outcome(stateGet("sensor.nothing_here").code))
        .str("denied", outcome(stateGet("lock.front_door").code))
        .str("event", outcome(eventFire("pdk_probe", new JsonObject().num("n", 1).finish())))
        .str("service", outcome(serviceCall("probe", "echo", "{\"from\":\"probe\"}")))
        .str("no_service", outcome(serviceCall("probe", "nowhere", "{}")))
        .str("publish", outcome(mqttPublish("probe/out", "hello", 1, false)))
        .str("reserved", outcome(mqttPublish("ruview/bridge/request/plugin/list", "{}")))
        .str("invalid", outcome(stateSet("not an entity", "x", "{}")))
        .finish();
      return stateSet("sensor.pdk_probe_report", "done", report);
    }
    if (service == "say") {
      const text = data.get("text");
      const said = text ? text.asString() : null;
      if (said === null) return INVALID;
      return stateSet("sensor.pdk_probe_said", said, "{}");
    }
    if (service == "panic") throw new Error("the probe was asked to abort"); // a trap, as in Rust
    return NOT_FOUND;
  }
}

register(new Probe());
