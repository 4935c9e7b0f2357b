//! __NAME__: a ruview-bridge plugin in Rust (docs/plugins.md), on the PDK in ruview_plugin/.
//!
//! setup_entry makes the plugin from its config entry ({"entry_id","domain","title","data",
//! "options","version"}); receive_event gets what the manifest subscribes to: "state_changed" for
//! subscribed_state_entities, each event type in subscribed_events, "mqtt_message" for
//! subscriptions. Every host call answers a Result (Error::Denied, Error::NotFound ...).
use ruview_plugin::{self as hc, export_plugin, ConfigEntry, Json, Plugin, Result};

struct MyPlugin;

impl Plugin for MyPlugin {
    fn setup_entry(_entry: &ConfigEntry) -> Result<Self> {
        hc::info("__NAME__ ready")?;
        Ok(MyPlugin)
    }

    fn receive_event(&mut self, event_type: &str, data: Json) -> Result<()> {
        if event_type != "state_changed" {
            return Ok(());
        }
        let state = data.get("new_state").and_then(|s| s.get("state")).and_then(|v| v.as_str());
        if state.as_deref() == Some("on") {
            hc::info("something turned on")?;
        }
        Ok(())
    }
}

export_plugin!(MyPlugin);
