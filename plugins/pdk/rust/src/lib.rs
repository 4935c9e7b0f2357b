//! The ruview-bridge plugin ABI for Rust (docs/plugins.md): safe wrappers over every `hc_*` host
//! import, the exports as a trait, JSON without std, errors as `Result`.
//!
//! A plugin is a `cdylib` for `wasm32-unknown-unknown` that implements [`Plugin`] and names its
//! type in [`export_plugin!`]:
//!
//! ```ignore
//! use ruview_plugin::{self as hc, export_plugin, ConfigEntry, Json, Plugin, Result};
//! struct Hello;
//! impl Plugin for Hello {
//!     fn setup_entry(entry: &ConfigEntry) -> Result<Self> {
//!         hc::info(&entry.title)?;
//!         Ok(Hello)
//!     }
//! }
//! export_plugin!(Hello);
//! ```
//!
//! This crate uses `core` and `alloc` only. The plugin crate links Rust's standard library for
//! wasm32-unknown-unknown, which imports nothing from the host and brings the allocator the
//! `alloc`/`dealloc` exports hand out (Rust 1.63 cannot build `alloc` without std on stable).
//! Build: plugins/build.sh (rustc alone, no cargo, no network).
#![cfg_attr(not(test), no_std)] // std only for `rustc --test` on the build machine (tests/plugins/test_pdk.py)

extern crate alloc;

pub mod json;

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;

pub use json::Json;

/// No buffer crossing the boundary may be longer (the host refuses it with [`Error::BadPointer`]).
pub const MAX_BUFFER: usize = 65536;

/// The raw imports, module `homecore`. Every one answers a code: >= 0 success, < 0 an [`Error`].
pub mod sys {
    #[link(wasm_import_module = "homecore")]
    extern "C" {
        pub fn hc_log(level: i32, msg: *const u8, msg_len: i32) -> i32;
        pub fn hc_state_get(entity: *const u8, entity_len: i32, out: *mut u8, out_cap: i32) -> i32;
        pub fn hc_state_set(entity: *const u8, entity_len: i32, state: *const u8, state_len: i32,
                            attrs: *const u8, attrs_len: i32) -> i32;
        pub fn hc_event_fire(kind: *const u8, kind_len: i32, data: *const u8, data_len: i32) -> i32;
        pub fn hc_service_call(domain: *const u8, domain_len: i32, service: *const u8, service_len: i32,
                               data: *const u8, data_len: i32) -> i32;
        pub fn hc_entity_register(config: *const u8, config_len: i32) -> i32;
        pub fn hc_mqtt_publish(topic: *const u8, topic_len: i32, payload: *const u8, payload_len: i32,
                               qos: i32, retain: i32) -> i32;
        pub fn hc_mqtt_subscribe(filter: *const u8, filter_len: i32) -> i32;
    }
}

/// What a host call (or a plugin's own handler) answered instead of success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// -1: no such entity or service.
    NotFound,
    /// -2: the answer does not fit (state_get grows its buffer and asks again by itself).
    BufferTooSmall,
    /// -3: the manifest grants no permission for this (counted and audited by the host).
    Denied,
    /// -4: a pointer or length outside the plugin's memory, or over 64 KiB.
    BadPointer,
    /// -5: not UTF-8 or JSON, or not a valid entity id, topic or event type.
    Invalid,
    /// -6: the service's feature could not take the call; the publish was not queued.
    Failed,
    /// -7: more host calls than `limits.host_calls_per_s` allows.
    RateLimited,
    /// Any other negative code (a plugin's own, or one added after this PDK).
    Other(i32),
}

impl Error {
    pub fn from_code(code: i32) -> Error {
        match code {
            -1 => Error::NotFound,
            -2 => Error::BufferTooSmall,
            -3 => Error::Denied,
            -4 => Error::BadPointer,
            -5 => Error::Invalid,
            -6 => Error::Failed,
            -7 => Error::RateLimited,
            other => Error::Other(other),
        }
    }

    /// The ABI's code (what an export answers the host).
    pub fn code(self) -> i32 {
        match self {
            Error::NotFound => -1,
            Error::BufferTooSmall => -2,
            Error::Denied => -3,
            Error::BadPointer => -4,
            Error::Invalid => -5,
            Error::Failed => -6,
            Error::RateLimited => -7,
            Error::Other(code) if code < 0 => code,
            Error::Other(_) => -6,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Error::NotFound => "not found",
            Error::BufferTooSmall => "buffer too small",
            Error::Denied => "permission denied",
            Error::BadPointer => "pointer or length outside the plugin's memory, or over 64 KiB",
            Error::Invalid => "invalid argument",
            Error::Failed => "failed",
            Error::RateLimited => "rate limited",
            Error::Other(_) => "error",
        }
    }
}

pub type Result<T> = core::result::Result<T, Error>;

fn check(code: i32) -> Result<i32> {
    if code >= 0 { Ok(code) } else { Err(Error::from_code(code)) }
}

fn len(s: &[u8]) -> Result<i32> {
    if s.len() > MAX_BUFFER { Err(Error::BadPointer) } else { Ok(s.len() as i32) }
}

// ------------------------------------------------------------------ host imports, safely

/// Log levels, as Python's logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
}

/// A line in the bridge's log.
pub fn log(level: Level, message: &str) -> Result<()> {
    let text = &message.as_bytes()[..message.len().min(MAX_BUFFER)];
    check(unsafe { sys::hc_log(level as i32, text.as_ptr(), text.len() as i32) }).map(|_| ())
}

pub fn debug(message: &str) -> Result<()> { log(Level::Debug, message) }
pub fn info(message: &str) -> Result<()> { log(Level::Info, message) }
pub fn warning(message: &str) -> Result<()> { log(Level::Warning, message) }
pub fn error(message: &str) -> Result<()> { log(Level::Error, message) }

/// An entity's state as `hc_state_get` answers it: `{"state","attributes","last_changed"}`.
pub struct State {
    text: String,
}

impl State {
    pub fn json(&self) -> Json<'_> { Json(&self.text) }
    pub fn state(&self) -> Option<Cow<'_, str>> { self.json().get("state")?.as_str() }
    pub fn attributes(&self) -> Json<'_> { self.json().get("attributes").unwrap_or(Json("")) }
    pub fn last_changed(&self) -> Option<f64> { self.json().get("last_changed")?.as_f64() }
}

/// Read an entity's state (needs `state:read:<glob>`).
pub fn state_get(entity_id: &str) -> Result<State> {
    let id = entity_id.as_bytes();
    let id_len = len(id)?;
    let mut cap = 1024usize;
    loop {
        let mut buf: Vec<u8> = Vec::with_capacity(cap);
        let code = unsafe { sys::hc_state_get(id.as_ptr(), id_len, buf.as_mut_ptr(), cap as i32) };
        if code == -2 && cap < MAX_BUFFER {
            unsafe { buf.set_len(4) };
            let needed = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            cap = needed.max(cap * 2).min(MAX_BUFFER);
            continue;
        }
        let written = check(code)? as usize;
        unsafe { buf.set_len(written.min(cap)) };
        return String::from_utf8(buf).map(|text| State { text }).map_err(|_| Error::Invalid);
    }
}

/// Write `ruview/state/<entity_id>` (needs `state:write:<glob>`); `attributes` is a JSON object.
pub fn state_set(entity_id: &str, state: &str, attributes: &str) -> Result<()> {
    let (e, s, a) = (entity_id.as_bytes(), state.as_bytes(), attributes.as_bytes());
    check(unsafe { sys::hc_state_set(e.as_ptr(), len(e)?, s.as_ptr(), len(s)?, a.as_ptr(), len(a)?) }).map(|_| ())
}

/// Publish `ruview/event/<event_type>` (needs `event:fire:<glob>`); `data` is a JSON object.
pub fn event_fire(event_type: &str, data: &str) -> Result<()> {
    let (t, d) = (event_type.as_bytes(), data.as_bytes());
    check(unsafe { sys::hc_event_fire(t.as_ptr(), len(t)?, d.as_ptr(), len(d)?) }).map(|_| ())
}

/// Call a service through the bridge's registry (needs `service:call:<domain.service glob>`).
/// Queued: a failure of the service itself goes to the bridge's log.
pub fn service_call(domain: &str, service: &str, data: &str) -> Result<()> {
    let (d, s, j) = (domain.as_bytes(), service.as_bytes(), data.as_bytes());
    check(unsafe { sys::hc_service_call(d.as_ptr(), len(d)?, s.as_ptr(), len(s)?, j.as_ptr(), len(j)?) }).map(|_| ())
}

/// Announce a `sensor` or `binary_sensor` to Home Assistant (needs `entity:register`):
/// `{"entity_id","name","device_class","unit_of_measurement","state_class","icon"}`.
pub fn entity_register(config: &str) -> Result<()> {
    let c = config.as_bytes();
    check(unsafe { sys::hc_entity_register(c.as_ptr(), len(c)?) }).map(|_| ())
}

/// Publish on MQTT (needs `mqtt:publish:<filter>`), QoS 0 or 1.
pub fn mqtt_publish(topic: &str, payload: &[u8], qos: u8, retain: bool) -> Result<()> {
    let t = topic.as_bytes();
    check(unsafe {
        sys::hc_mqtt_publish(t.as_ptr(), len(t)?, payload.as_ptr(), len(payload)?, qos as i32, retain as i32)
    })
    .map(|_| ())
}

/// Receive the messages of `filter` as `mqtt_message` events (needs `mqtt:subscribe:<filter>`).
pub fn mqtt_subscribe(filter: &str) -> Result<()> {
    let f = filter.as_bytes();
    check(unsafe { sys::hc_mqtt_subscribe(f.as_ptr(), len(f)?) }).map(|_| ())
}

// ------------------------------------------------------------------ the exports, as a trait

/// The config entry `setup_entry` receives: `{"entry_id","domain","title","data","options","version"}`.
pub struct ConfigEntry<'a> {
    pub entry_id: Cow<'a, str>,
    pub domain: Cow<'a, str>,
    pub title: Cow<'a, str>,
    /// The entry data (`plugins.entries.<domain>`), checked against the manifest's `config_schema`.
    pub data: Json<'a>,
    pub options: Json<'a>,
    pub raw: Json<'a>,
}

impl<'a> ConfigEntry<'a> {
    pub fn parse(text: &'a str) -> ConfigEntry<'a> {
        let raw = Json(text);
        let string = |key: &str| raw.get(key).and_then(|v| v.as_str()).unwrap_or(Cow::Borrowed(""));
        ConfigEntry {
            entry_id: string("entry_id"),
            domain: string("domain"),
            title: string("title"),
            data: raw.get("data").unwrap_or(Json("{}")),
            options: raw.get("options").unwrap_or(Json("{}")),
            raw,
        }
    }
}

/// A plugin: made by `setup_entry` from its config entry, then handed events and service calls
/// one at a time (each plugin runs on a worker of its own).
pub trait Plugin: Sized {
    /// Make the plugin from its config entry; an `Err` is reported as `failed` with its code.
    fn setup_entry(entry: &ConfigEntry) -> Result<Self>;

    /// A state change, an event, `time_changed` or an `mqtt_message` it subscribed to.
    fn receive_event(&mut self, _event_type: &str, _data: Json) -> Result<()> {
        Ok(())
    }

    /// A call of one of its `registered_services`.
    fn call_service(&mut self, _domain: &str, _service: &str, _data: Json) -> Result<()> {
        Err(Error::NotFound)
    }

    /// Before unload.
    fn teardown(&mut self) -> Result<()> {
        Ok(())
    }
}

#[doc(hidden)]
pub mod rt {
    //! What `export_plugin!` expands to call: pointers in, `Result`s out as codes.
    use super::*;

    fn code(result: Result<()>) -> i32 {
        match result {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    }

    /// # Safety
    /// `ptr`/`len` must be a buffer the host wrote (it bounds-checks what it writes).
    pub unsafe fn text<'a>(ptr: *const u8, len: i32) -> Result<&'a str> {
        if len < 0 || len as usize > MAX_BUFFER {
            return Err(Error::BadPointer);
        }
        if len == 0 {
            return Ok("");
        }
        core::str::from_utf8(core::slice::from_raw_parts(ptr, len as usize)).map_err(|_| Error::Invalid)
    }

    /// # Safety
    /// See `text`.
    pub unsafe fn setup_entry<P: Plugin>(slot: &mut Option<P>, ptr: *const u8, len: i32) -> i32 {
        *slot = None;
        code(text(ptr, len).and_then(|t| P::setup_entry(&ConfigEntry::parse(t))).map(|p| *slot = Some(p)))
    }

    /// # Safety
    /// See `text`.
    pub unsafe fn receive_event<P: Plugin>(slot: &mut Option<P>, t: *const u8, tl: i32, d: *const u8, dl: i32) -> i32 {
        code(match slot {
            Some(plugin) => text(t, tl).and_then(|kind| plugin.receive_event(kind, Json(text(d, dl)?))),
            None => Err(Error::Failed),
        })
    }

    /// # Safety
    /// See `text`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn call_service<P: Plugin>(slot: &mut Option<P>, d: *const u8, dl: i32, s: *const u8, sl: i32,
                                          j: *const u8, jl: i32) -> i32 {
        code(match slot {
            Some(plugin) => text(d, dl).and_then(|domain| plugin.call_service(domain, text(s, sl)?, Json(text(j, jl)?))),
            None => Err(Error::Failed),
        })
    }

    pub fn teardown<P: Plugin>(slot: &mut Option<P>) -> i32 {
        let result = slot.as_mut().map_or(Ok(()), |plugin| plugin.teardown());
        *slot = None;
        code(result)
    }
}

/// Export `setup_entry`, `receive_event`, `call_service_handler` and `teardown` for a [`Plugin`].
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        static mut RUVIEW_PLUGIN: Option<$plugin> = None;

        #[no_mangle]
        pub unsafe extern "C" fn setup_entry(ptr: *const u8, len: i32) -> i32 {
            $crate::rt::setup_entry::<$plugin>(&mut RUVIEW_PLUGIN, ptr, len)
        }

        #[no_mangle]
        pub unsafe extern "C" fn receive_event(t: *const u8, tl: i32, d: *const u8, dl: i32) -> i32 {
            $crate::rt::receive_event::<$plugin>(&mut RUVIEW_PLUGIN, t, tl, d, dl)
        }

        #[no_mangle]
        pub unsafe extern "C" fn call_service_handler(d: *const u8, dl: i32, s: *const u8, sl: i32, j: *const u8,
                                                      jl: i32) -> i32 {
            $crate::rt::call_service::<$plugin>(&mut RUVIEW_PLUGIN, d, dl, s, sl, j, jl)
        }

        #[no_mangle]
        pub unsafe extern "C" fn teardown() -> i32 {
            $crate::rt::teardown::<$plugin>(&mut RUVIEW_PLUGIN)
        }
    };
}

// ------------------------------------------------------------------ memory the host writes into

/// `alloc(size) -> ptr`: a buffer for the host to write an event into; 0 when it cannot.
#[export_name = "alloc"]
pub extern "C" fn ruview_alloc(size: i32) -> *mut u8 {
    if size < 0 || size as usize > 16 * MAX_BUFFER {
        return core::ptr::null_mut();
    }
    match Layout::from_size_align((size as usize).max(1), 8) {
        Ok(layout) => unsafe { alloc::alloc::alloc(layout) },
        Err(_) => core::ptr::null_mut(),
    }
}

/// `dealloc(ptr, size)`: give back a buffer from `alloc`.
///
/// # Safety
/// `ptr` and `size` must be what `alloc` handed out and answered.
#[export_name = "dealloc"]
pub unsafe extern "C" fn ruview_dealloc(ptr: *mut u8, size: i32) {
    if !ptr.is_null() && size >= 0 {
        alloc::alloc::dealloc(ptr, Layout::from_size_align_unchecked((size as usize).max(1), 8));
    }
}
