//! A probe of the Rust PDK (tests/plugins/test_pdk.py): the entry data read back, every hc_* wrapper
//! once on the service pdk_probe.check (each answer into sensor.pdk_probe_report), MQTT echoed.
use ruview_plugin::json::{Array, Object};
use ruview_plugin::{self as hc, export_plugin, ConfigEntry, Error, Json, Plugin, Result};

struct Probe;

fn outcome(result: Result<()>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(e) => e.describe(),
    }
}

impl Plugin for Probe {
    fn setup_entry(entry: &ConfigEntry) -> Result<Self> {
        let quote = entry.data.get("quote").and_then(|v| v.as_str()).unwrap_or_default();
        let mut numbers = Array::new();
        for n in entry.data.get("list").map_or(Vec::new(), |l| l.items().filter_map(|v| v.as_f64()).collect()) {
            numbers = numbers.num(n);
        }
        let config = Object::new().str("quote", &quote).raw("list", &numbers.finish())
            .bool("absent", entry.data.get("nope").is_none()).str("title", &entry.title).finish();
        hc::entity_register(&Object::new().str("entity_id", "sensor.pdk_probe").str("name", "PDK probe").finish())?;
        hc::mqtt_subscribe("probe/in")?;
        hc::state_set("sensor.pdk_probe", "ready", &config)?;
        if entry.data.get("fail").and_then(|v| v.as_bool()) == Some(true) {
            return Err(Error::Other(-42));
        }
        Ok(Probe)
    }

    fn receive_event(&mut self, event_type: &str, data: Json) -> Result<()> {
        if event_type != "mqtt_message" {
            return Ok(());
        }
        let payload = data.get("payload").and_then(|p| p.as_str()).unwrap_or_default();
        let mut echo = String::from("echo:");
        echo.push_str(&payload);
        hc::mqtt_publish("probe/out", echo.as_bytes(), 0, false)
    }

    fn call_service(&mut self, _domain: &str, service: &str, data: Json) -> Result<()> {
        match service {
            "check" => {
                let big = hc::state_get("sensor.big")?;
                let padding = big.attributes().get("padding").and_then(|p| p.as_str()).map_or(0, |p| p.len());
                let report = Object::new()
                    .str("log", outcome(hc::info("pdk probe checking")))
                    .str("big_state", &big.state().unwrap_or_default())
                    .int("big_padding", padding as i64)
                    .str("missing", outcome(hc::state_get("sensor.nothing_here").map(|_| ())))
                    .str("denied", outcome(hc::state_get("lock.front_door").map(|_| ())))
                    .str("event", outcome(hc::event_fire("pdk_probe", &Object::new().int("n", 1).finish())))
                    .str("service", outcome(hc::service_call("probe", "echo", r#"{"from":"probe"}"#)))
                    .str("no_service", outcome(hc::service_call("probe", "nowhere", "{}")))
                    .str("publish", outcome(hc::mqtt_publish("probe/out", b"hello", 1, false)))
                    .str("reserved", outcome(hc::mqtt_publish("ruview/bridge/request/plugin/list", b"{}", 0, false)))
                    .str("invalid", outcome(hc::state_set("not an entity", "x", "{}")))
                    .finish();
                hc::state_set("sensor.pdk_probe_report", "done", &report)
            }
            "say" => {
                let text = data.get("text").and_then(|t| t.as_str()).ok_or(Error::Invalid)?;
                hc::state_set("sensor.pdk_probe_said", &text, "{}")
            }
            "panic" => panic!("the probe was asked to panic"), // a trap: this call ends, the plugin restarts
            _ => Err(Error::NotFound),
        }
    }
}

export_plugin!(Probe);
