// __NAME__: a ruview-bridge plugin in AssemblyScript (docs/plugins.md), on the PDK in ruview_plugin.ts.
//
// setupEntry gets the config entry ({"entry_id","domain","title","data","options","version"});
// receiveEvent gets what the manifest subscribes to: "state_changed" for subscribed_state_entities,
// each event type in subscribed_events, "mqtt_message" for subscriptions. Every host call answers a
// code: OK (0), DENIED, NOT_FOUND ... (see ruview_plugin.ts).
import { ConfigEntry, INFO, Json, OK, Plugin, log, register } from "./ruview_plugin";
export { alloc, dealloc, setup_entry, receive_event, call_service_handler, teardown } from "./ruview_plugin";

class MyPlugin extends Plugin {
  setupEntry(entry: ConfigEntry): i32 {
    log(INFO, "__NAME__ ready");
    return OK;
  }

  receiveEvent(eventType: string, data: Json): i32 {
    if (eventType != "state_changed") return OK;
    const next = data.get("new_state");
    const state = next ? next.get("state") : null;
    const text = state ? state.asString() : null;
    if (text !== null && text == "on") log(INFO, "something turned on");
    return OK;
  }
}

register(new MyPlugin());
