// ruview_plugin.ts - the ruview-bridge plugin ABI for AssemblyScript (docs/plugins.md).
//
// The same surface as the C header and the Rust crate: every hc_* host import behind a function
// that takes strings, the exports driven by a Plugin class, JSON read and written without a
// library. AssemblyScript has no exceptions, so every call answers a code: OK (0) or one of the
// negative codes below (a host call's, or the plugin's own).
//
// A plugin's entry file extends Plugin, registers an instance, and re-exports the ABI:
//
//   import { Plugin, ConfigEntry, Json, register, log, INFO, OK } from "./ruview_plugin";
//   export { alloc, dealloc, setup_entry, receive_event, call_service_handler, teardown } from "./ruview_plugin";
//   class Hello extends Plugin { setupEntry(entry: ConfigEntry): i32 { return log(INFO, entry.title); } }
//   register(new Hello());
//
// Build (plugins/build.sh): asc plugin.ts -O3 --runtime minimal --exportStart _initialize
//   --use abort= -o plugin.wasm. The minimal runtime collects garbage when the host's call is done
// (each export ends with __collect()), so a plugin that runs for months does not grow.

// ------------------------------------------------------------------ codes

export const OK: i32 = 0;
export const NOT_FOUND: i32 = -1; // no such entity / service
export const BUFFER_TOO_SMALL: i32 = -2; // stateGet grows its buffer and asks again by itself
export const DENIED: i32 = -3; // the manifest grants no permission for this (audited)
export const BAD_POINTER: i32 = -4; // outside the plugin's memory, or over 64 KiB
export const INVALID: i32 = -5; // not UTF-8 / JSON / a valid entity id, topic or event type
export const FAILED: i32 = -6; // the service (or publish) failed
export const RATE_LIMITED: i32 = -7; // more host calls than limits.host_calls_per_s allows

export const MAX_BUFFER: i32 = 65536;

// Log levels, as Python's logging.
export const DEBUG: i32 = 10;
export const INFO: i32 = 20;
export const WARNING: i32 = 30;
export const ERROR: i32 = 40;

// ------------------------------------------------------------------ the imports (module "homecore")

@external("homecore", "hc_log")
declare function hc_log(level: i32, msg: usize, len: i32): i32;
@external("homecore", "hc_state_get")
declare function hc_state_get(entity: usize, len: i32, out: usize, cap: i32): i32;
@external("homecore", "hc_state_set")
declare function hc_state_set(entity: usize, len: i32, state: usize, state_len: i32, attrs: usize, attrs_len: i32): i32;
@external("homecore", "hc_event_fire")
declare function hc_event_fire(kind: usize, len: i32, data: usize, data_len: i32): i32;
@external("homecore", "hc_service_call")
declare function hc_service_call(domain: usize, len: i32, service: usize, service_len: i32, data: usize, data_len: i32): i32;
@external("homecore", "hc_entity_register")
declare function hc_entity_register(config: usize, len: i32): i32;
@external("homecore", "hc_mqtt_publish")
declare function hc_mqtt_publish(topic: usize, len: i32, payload: usize, payload_len: i32, qos: i32, retain: i32): i32;
@external("homecore", "hc_mqtt_subscribe")
declare function hc_mqtt_subscribe(filter: usize, len: i32): i32;

function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

function ptr(b: ArrayBuffer): usize {
  return changetype<usize>(b);
}

function length(b: ArrayBuffer): i32 {
  return b.byteLength;
}

function tooLong(b: ArrayBuffer): bool {
  return b.byteLength > MAX_BUFFER;
}

// ------------------------------------------------------------------ host calls

/** A line in the bridge's log. */
export function log(level: i32, message: string): i32 {
  const m = utf8(message);
  return hc_log(level, ptr(m), min(length(m), MAX_BUFFER));
}

/** An entity's state as hc_state_get answers it ({"state","attributes","last_changed"}), or its code. */
export class State {
  constructor(public code: i32, public json: Json) {}
  get ok(): bool { return this.code >= 0; }
  get state(): string | null { const v = this.json.get("state"); return v ? v.asString() : null; }
  get attributes(): Json { const v = this.json.get("attributes"); return v ? v : new Json("{}"); }
}

/** Read an entity's state (needs state:read:<glob>). */
export function stateGet(entityId: string): State {
  const id = utf8(entityId);
  if (tooLong(id)) return new State(BAD_POINTER, new Json(""));
  let cap = 1024;
  while (true) {
    const buf = new ArrayBuffer(cap);
    const code = hc_state_get(ptr(id), length(id), ptr(buf), cap);
    if (code == BUFFER_TOO_SMALL && cap < MAX_BUFFER) {
      const needed = load<u32>(ptr(buf)) as i32;
      cap = min(max(needed, cap * 2), MAX_BUFFER);
      continue;
    }
    if (code < 0) return new State(code, new Json(""));
    return new State(code, new Json(String.UTF8.decodeUnsafe(ptr(buf), min(code, cap) as usize)));
  }
}

/** Write ruview/state/<entityId> (needs state:write:<glob>); attributes is a JSON object. */
export function stateSet(entityId: string, state: string, attributes: string = "{}"): i32 {
  const e = utf8(entityId), s = utf8(state), a = utf8(attributes);
  if (tooLong(e) || tooLong(s) || tooLong(a)) return BAD_POINTER;
  return hc_state_set(ptr(e), length(e), ptr(s), length(s), ptr(a), length(a));
}

/** Publish ruview/event/<eventType> (needs event:fire:<glob>); data is a JSON object. */
export function eventFire(eventType: string, data: string = "{}"): i32 {
  const t = utf8(eventType), d = utf8(data);
  if (tooLong(t) || tooLong(d)) return BAD_POINTER;
  return hc_event_fire(ptr(t), length(t), ptr(d), length(d));
}

/** Call a service through the bridge's registry (needs service:call:<domain.service glob>). */
export function serviceCall(domain: string, service: string, data: string = "{}"): i32 {
  const d = utf8(domain), s = utf8(service), j = utf8(data);
  if (tooLong(d) || tooLong(s) || tooLong(j)) return BAD_POINTER;
  return hc_service_call(ptr(d), length(d), ptr(s), length(s), ptr(j), length(j));
}

/** Announce a sensor or binary_sensor to Home Assistant (needs entity:register). */
export function entityRegister(config: string): i32 {
  const c = utf8(config);
  if (tooLong(c)) return BAD_POINTER;
  return hc_entity_register(ptr(c), length(c));
}

/** Publish on MQTT (needs mqtt:publish:<filter>), QoS 0 or 1. */
export function mqttPublish(topic: string, payload: string, qos: i32 = 0, retain: bool = false): i32 {
  const t = utf8(topic), p = utf8(payload);
  if (tooLong(t) || tooLong(p)) return BAD_POINTER;
  return hc_mqtt_publish(ptr(t), length(t), ptr(p), length(p), qos, retain ? 1 : 0);
}

/** Receive the messages of filter as mqtt_message events (needs mqtt:subscribe:<filter>). */
export function mqttSubscribe(filter: string): i32 {
  const f = utf8(filter);
  if (tooLong(f)) return BAD_POINTER;
  return hc_mqtt_subscribe(ptr(f), length(f));
}

// ------------------------------------------------------------------ JSON

function isSpace(c: i32): bool { return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09; }

function skipSpace(s: string, i: i32): i32 {
  while (i < s.length && isSpace(s.charCodeAt(i))) i++;
  return i;
}

/** The index just past the JSON value that starts at i. */
function valueEnd(s: string, i: i32): i32 {
  const n = s.length;
  if (i >= n) return n;
  const c = s.charCodeAt(i);
  if (c == 0x22) { // "
    for (i++; i < n; i++) {
      const d = s.charCodeAt(i);
      if (d == 0x5c) i++;
      else if (d == 0x22) return i + 1;
    }
    return n;
  }
  if (c == 0x7b || c == 0x5b) { // { [
    let depth = 0;
    for (; i < n; i++) {
      const d = s.charCodeAt(i);
      if (d == 0x22) { i = valueEnd(s, i) - 1; continue; }
      if (d == 0x7b || d == 0x5b) depth++;
      else if (d == 0x7d || d == 0x5d) { depth--; if (depth <= 0) return i + 1; }
    }
    return n;
  }
  while (i < n) {
    const d = s.charCodeAt(i);
    if (d == 0x2c || d == 0x7d || d == 0x5d || isSpace(d)) break;
    i++;
  }
  return i;
}

/** A JSON string body (without quotes) with its escapes resolved. */
export function unescape(body: string): string {
  if (body.indexOf("\\") < 0) return body;
  const parts = new Array<string>();
  let i = 0;
  while (i < body.length) {
    const c = body.charCodeAt(i);
    if (c != 0x5c) { parts.push(String.fromCharCode(c)); i++; continue; }
    const e = i + 1 < body.length ? body.charCodeAt(i + 1) : 0x5c;
    i += 2;
    if (e == 0x6e) parts.push("\n");
    else if (e == 0x74) parts.push("\t");
    else if (e == 0x72) parts.push("\r");
    else if (e == 0x62) parts.push("\b");
    else if (e == 0x66) parts.push("\f");
    else if (e == 0x75) { // \uXXXX (surrogate pairs come as two, and UTF-16 strings keep them as they are)
      const code = i32(parseInt(body.substr(i, 4), 16));
      parts.push(String.fromCharCode(code < 0 ? 0xfffd : code));
      i += 4;
    } else parts.push(String.fromCharCode(e));
  }
  return parts.join("");
}

/** A JSON value's text, read in place (no tree): get(key), asString(), asNumber(), items(). */
export class Json {
  constructor(public text: string) {}

  get raw(): string { return this.text.trim(); }
  get isAbsent(): bool { return this.raw.length == 0; }
  get isNull(): bool { return this.raw == "null"; }

  /** The value of key in this object (top level only), or null. */
  get(key: string): Json | null {
    const s = this.raw;
    if (s.length == 0 || s.charCodeAt(0) != 0x7b) return null;
    let i = 1;
    while (i < s.length) {
      i = skipSpace(s, i);
      if (i >= s.length || s.charCodeAt(i) != 0x22) return null;
      const keyEnd = valueEnd(s, i);
      const colon = skipSpace(s, keyEnd);
      if (colon >= s.length || s.charCodeAt(colon) != 0x3a) return null;
      const v = skipSpace(s, colon + 1);
      const vEnd = valueEnd(s, v);
      if (unescape(s.substring(i + 1, keyEnd - 1)) == key) return new Json(s.substring(v, vEnd));
      i = skipSpace(s, vEnd);
      if (i < s.length && s.charCodeAt(i) == 0x2c) i++;
      else return null;
    }
    return null;
  }

  /** The elements of an array (empty if not an array). */
  items(): Json[] {
    const out = new Array<Json>();
    const s = this.raw;
    if (s.length == 0 || s.charCodeAt(0) != 0x5b) return out;
    let i = 1;
    while (true) {
      i = skipSpace(s, i);
      if (i >= s.length || s.charCodeAt(i) == 0x5d) return out;
      const end = valueEnd(s, i);
      out.push(new Json(s.substring(i, end)));
      i = skipSpace(s, end);
      if (i < s.length && s.charCodeAt(i) == 0x2c) i++;
      else return out;
    }
  }

  /** A string's contents, escapes resolved; null if not a string. */
  asString(): string | null {
    const s = this.raw;
    if (s.length < 2 || s.charCodeAt(0) != 0x22 || s.charCodeAt(s.length - 1) != 0x22) return null;
    return unescape(s.substring(1, s.length - 1));
  }

  /** A number, or a string that holds one (entity states are strings); NaN if neither. */
  asNumber(): f64 {
    let s = this.raw;
    if (s.length >= 2 && s.charCodeAt(0) == 0x22) s = s.substring(1, s.length - 1);
    if (s.length == 0) return NaN;
    let i = 0;
    const n = s.length;
    if (s.charCodeAt(i) == 0x2d || s.charCodeAt(i) == 0x2b) i++;
    let digits = 0;
    while (i < n && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) { i++; digits++; }
    if (i < n && s.charCodeAt(i) == 0x2e) {
      i++;
      while (i < n && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) { i++; digits++; }
    }
    if (digits > 0 && i < n && (s.charCodeAt(i) == 0x65 || s.charCodeAt(i) == 0x45)) {
      i++;
      if (i < n && (s.charCodeAt(i) == 0x2d || s.charCodeAt(i) == 0x2b)) i++;
      let exp = 0;
      while (i < n && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) { i++; exp++; }
      if (exp == 0) return NaN;
    }
    if (digits == 0 || i != n) return NaN;
    const value = parseFloat(s);
    return isFinite(value) ? value : NaN; // 1e400: not a number a plugin can use
  }

  asBool(): i32 { // 1, 0, or -1 when not a boolean
    const s = this.raw;
    return s == "true" ? 1 : s == "false" ? 0 : -1;
  }
}

/** s as a JSON string, quotes included. */
export function quote(s: string): string {
  const parts = new Array<string>();
  parts.push("\"");
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let escaped: string | null = null;
    if (c == 0x22) escaped = "\\\"";
    else if (c == 0x5c) escaped = "\\\\";
    else if (c == 0x0a) escaped = "\\n";
    else if (c == 0x0d) escaped = "\\r";
    else if (c == 0x09) escaped = "\\t";
    else if (c < 0x20) escaped = "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    if (escaped !== null) {
      parts.push(s.substring(start, i));
      parts.push(escaped);
      start = i + 1;
    }
  }
  parts.push(s.substring(start));
  parts.push("\"");
  return parts.join("");
}

function number(v: f64): string {
  if (!isFinite(v)) return "null";
  if (v == Math.floor(v) && Math.abs(v) < 1e15) return (v as i64).toString();
  return v.toString();
}

/** A JSON object being written: new JsonObject().str("entity_id", id).num("high", 26).finish(). */
export class JsonObject {
  parts: string[] = ["{"];

  private key(k: string): void {
    if (this.parts.length > 1) this.parts.push(",");
    this.parts.push(quote(k));
    this.parts.push(":");
  }

  str(k: string, v: string): JsonObject { this.key(k); this.parts.push(quote(v)); return this; }
  num(k: string, v: f64): JsonObject { this.key(k); this.parts.push(number(v)); return this; }
  bool(k: string, v: bool): JsonObject { this.key(k); this.parts.push(v ? "true" : "false"); return this; }
  null(k: string): JsonObject { this.key(k); this.parts.push("null"); return this; }
  /** A value that is JSON text already. */
  raw(k: string, json: string): JsonObject { this.key(k); this.parts.push(json); return this; }
  finish(): string { return this.parts.join("") + "}"; }
}

// ------------------------------------------------------------------ the exports

/** The config entry setup_entry receives: {"entry_id","domain","title","data","options","version"}. */
export class ConfigEntry {
  entryId: string;
  domain: string;
  title: string;
  data: Json;
  options: Json;

  constructor(public raw: Json) {
    const id = raw.get("entry_id"), domain = raw.get("domain"), title = raw.get("title");
    const data = raw.get("data"), options = raw.get("options");
    this.entryId = id ? (id.asString() || "") as string : "";
    this.domain = domain ? (domain.asString() || "") as string : "";
    this.title = title ? (title.asString() || "") as string : "";
    this.data = data ? data : new Json("{}");
    this.options = options ? options : new Json("{}");
  }
}

/** A plugin: set up from its config entry, then handed events and service calls one at a time. */
export abstract class Plugin {
  /** OK, or a negative code (the plugin is then `failed`, with it). */
  abstract setupEntry(entry: ConfigEntry): i32;
  receiveEvent(eventType: string, data: Json): i32 { return OK; }
  callService(domain: string, service: string, data: Json): i32 { return NOT_FOUND; }
  teardown(): i32 { return OK; }
}

let plugin: Plugin | null = null;
let ready = false;

/** The plugin the exports drive (call once, at the top level of the plugin's entry file). */
export function register(p: Plugin): void {
  plugin = p;
}

function text(p: usize, len: i32): string {
  return String.UTF8.decodeUnsafe(p, len as usize);
}

function done(code: i32): i32 {
  __collect(); // nothing of this call is referenced any more but by the plugin's own fields
  return code;
}

export function setup_entry(p: usize, len: i32): i32 {
  const target = plugin;
  if (target === null || len < 0 || len > MAX_BUFFER) return done(FAILED);
  const code = target.setupEntry(new ConfigEntry(new Json(text(p, len))));
  ready = code >= 0;
  return done(code);
}

export function receive_event(t: usize, tl: i32, d: usize, dl: i32): i32 {
  const target = plugin;
  if (target === null || !ready) return done(FAILED);
  if (tl < 0 || dl < 0 || tl > MAX_BUFFER || dl > MAX_BUFFER) return done(BAD_POINTER);
  return done(target.receiveEvent(text(t, tl), new Json(text(d, dl))));
}

export function call_service_handler(d: usize, dl: i32, s: usize, sl: i32, j: usize, jl: i32): i32 {
  const target = plugin;
  if (target === null || !ready) return done(FAILED);
  if (dl < 0 || sl < 0 || jl < 0 || dl > MAX_BUFFER || sl > MAX_BUFFER || jl > MAX_BUFFER) return done(BAD_POINTER);
  return done(target.callService(text(d, dl), text(s, sl), new Json(text(j, jl))));
}

export function teardown(): i32 {
  const target = plugin;
  ready = false;
  return done(target === null ? OK : target.teardown());
}

/** alloc(size) -> ptr: a buffer for the host to write into (outside the garbage collector); 0 for a size
 * the host never needs. Memory past plugins' limits.memory_mb traps here, which ends that call only. */
export function alloc(size: i32): usize {
  if (size < 0 || size > 16 * MAX_BUFFER) return 0;
  return heap.alloc(max(size, 1) as usize);
}

export function dealloc(p: usize, size: i32): void {
  if (p != 0) heap.free(p);
}
