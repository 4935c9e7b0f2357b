//! threshold-alert, in Rust: a binary sensor that is on while a sensor is high (with hysteresis).
//!
//! The same plugin as plugins/threshold-alert/plugin.c, on the Rust PDK (plugins/pdk/rust).
//! Config entry data: {"sensor": "sensor.hall_temperature", "high": 26, "low": 24,
//!                     "alert": "binary_sensor.hall_too_warm", "name": "Hall too warm"}.
//! Above `high` the alert turns on, below `low` off; between the two it keeps its state. The
//! alert is announced to Home Assistant (hc_entity_register) at setup.
use ruview_plugin::json::Object;
use ruview_plugin::{self as hc, export_plugin, ConfigEntry, Error, Json, Plugin, Result};

struct ThresholdAlert {
    sensor: String,
    alert: String,
    high: f64,
    low: f64,
    on: Option<bool>, // None: unknown
}

impl ThresholdAlert {
    fn set_alert(&mut self, on: bool) -> Result<()> {
        self.on = Some(on);
        hc::state_set(&self.alert, if on { "on" } else { "off" }, r#"{"device_class":"problem"}"#)
    }
}

impl Plugin for ThresholdAlert {
    fn setup_entry(entry: &ConfigEntry) -> Result<Self> {
        let data = entry.data;
        let text = |key| data.get(key).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        let number = |key| data.get(key).and_then(|v| v.as_f64());
        let plugin = match (text("sensor"), text("alert"), number("high"), number("low")) {
            (Some(sensor), Some(alert), Some(high), Some(low)) if low <= high => ThresholdAlert {
                sensor: sensor.into_owned(), alert: alert.into_owned(), high, low, on: None,
            },
            _ => {
                hc::error("config entry data needs sensor, alert, and numbers high >= low")?;
                return Err(Error::Invalid);
            }
        };
        let mut config = Object::new().str("entity_id", &plugin.alert).str("device_class", "problem");
        if let Some(name) = text("name") {
            config = config.str("name", &name);
        }
        hc::entity_register(&config.finish())?;
        Ok(plugin)
    }

    fn receive_event(&mut self, event_type: &str, data: Json) -> Result<()> {
        if event_type != "state_changed" {
            return Ok(());
        }
        if data.get("entity_id").and_then(|v| v.as_str()).as_deref() != Some(self.sensor.as_str()) {
            return Ok(());
        }
        let value = match data.get("new_state").and_then(|s| s.get("state")).and_then(|v| v.as_f64()) {
            Some(value) => value,
            None => return Ok(()), // unavailable, unknown
        };
        if value > self.high && self.on != Some(true) {
            return self.set_alert(true);
        }
        if value < self.low && self.on != Some(false) {
            return self.set_alert(false);
        }
        Ok(())
    }

    fn call_service(&mut self, _domain: &str, service: &str, _data: Json) -> Result<()> {
        if service != "reset" {
            return Err(Error::NotFound);
        }
        self.on = None;
        Ok(())
    }
}

export_plugin!(ThresholdAlert);
