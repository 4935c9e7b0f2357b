//! JSON both ways, without std: a reader that walks the compact JSON the host sends without
//! copying it (`Json`), and an encoder that writes JSON text into a `String` (`Object`, `Array`).
//!
//! The reader is lazy: `get` scans for a key each time, which is cheap for the small objects a
//! plugin receives and needs no tree, no allocation and no dependency.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt::Write;

/// A JSON value's text, borrowed from the buffer the host wrote (`Json("")` when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Json<'a>(pub &'a str);

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// The index just past the JSON value that starts at `i`.
fn value_end(b: &[u8], mut i: usize) -> usize {
    if i >= b.len() {
        return b.len();
    }
    match b[i] {
        b'"' => {
            i += 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => return i + 1,
                    _ => i += 1,
                }
            }
            b.len()
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = value_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                i += 1;
            }
            i
        }
    }
}

impl<'a> Json<'a> {
    /// The text, trimmed of surrounding whitespace.
    pub fn raw(self) -> &'a str {
        self.0.trim()
    }

    /// Whether the value is missing (a key that was not there).
    pub fn is_absent(self) -> bool {
        self.raw().is_empty()
    }

    pub fn is_null(self) -> bool {
        self.raw() == "null"
    }

    pub fn is_object(self) -> bool {
        self.raw().starts_with('{')
    }

    /// The members of an object, in order, as (raw key, value); nothing if not an object.
    pub fn members(self) -> Members<'a> {
        let text = self.raw();
        let start = if text.starts_with('{') { 1 } else { text.len() };
        Members { text, at: start }
    }

    /// The elements of an array, in order; nothing if not an array.
    pub fn items(self) -> Items<'a> {
        let text = self.raw();
        let start = if text.starts_with('[') { 1 } else { text.len() };
        Items { text, at: start }
    }

    /// The value of `key` in this object (top level only), if there is one.
    pub fn get(self, key: &str) -> Option<Json<'a>> {
        self.members().find(|(k, _)| unescape(k) == key).map(|(_, v)| v)
    }

    /// A string's contents with its escapes resolved (borrowed when it has none).
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        let text = self.raw();
        if text.len() < 2 || !text.starts_with('"') || !text.ends_with('"') {
            return None;
        }
        Some(unescape(&text[1..text.len() - 1]))
    }

    /// A number, or a string that holds one (entity states are strings: "21.5").
    pub fn as_f64(self) -> Option<f64> {
        let text = self.raw();
        let text = if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
            &text[1..text.len() - 1]
        } else {
            text
        };
        let first = text.bytes().next()?;
        if !(first == b'-' || first == b'+' || first.is_ascii_digit()) {
            return None; // "inf", "nan": not JSON numbers
        }
        text.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    pub fn as_i64(self) -> Option<i64> {
        self.raw().parse::<i64>().ok()
    }

    pub fn as_bool(self) -> Option<bool> {
        match self.raw() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

/// The members of a JSON object (`Json::members`).
pub struct Members<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, Json<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.text.as_bytes();
        let i = skip_ws(b, self.at);
        if i >= b.len() || b[i] != b'"' {
            self.at = b.len();
            return None;
        }
        let key_end = value_end(b, i);
        let colon = skip_ws(b, key_end);
        if colon >= b.len() || b[colon] != b':' || key_end < i + 2 {
            self.at = b.len();
            return None;
        }
        let v = skip_ws(b, colon + 1);
        let v_end = value_end(b, v);
        let after = skip_ws(b, v_end);
        self.at = if after < b.len() && b[after] == b',' { after + 1 } else { b.len() };
        Some((&self.text[i + 1..key_end - 1], Json(&self.text[v..v_end])))
    }
}

/// The elements of a JSON array (`Json::items`).
pub struct Items<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Json<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.text.as_bytes();
        let i = skip_ws(b, self.at);
        if i >= b.len() || b[i] == b']' {
            self.at = b.len();
            return None;
        }
        let end = value_end(b, i);
        let after = skip_ws(b, end);
        self.at = if after < b.len() && b[after] == b',' { after + 1 } else { b.len() };
        Some(Json(&self.text[i..end]))
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    if s.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &c in &s[..4] {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// A JSON string body (without quotes) with its escapes resolved.
pub fn unescape(body: &str) -> Cow<'_, str> {
    if !body.contains('\\') {
        return Cow::Borrowed(body);
    }
    let b = body.as_bytes();
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            let next = body[i..].find('\\').map_or(b.len(), |n| i + n);
            out.push_str(&body[i..next]);
            i = next;
            continue;
        }
        let c = b.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        match c {
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'u' => {
                let mut code = hex4(&b[i.min(b.len())..]).unwrap_or(0xfffd);
                i += 4;
                if (0xd800..0xdc00).contains(&code) && b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u') {
                    if let Some(low) = hex4(&b[(i + 2).min(b.len())..]) {
                        code = 0x10000 + ((code - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff);
                        i += 6;
                    }
                }
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            other => out.push(other as char),
        }
    }
    Cow::Owned(out)
}

/// Append `s` to `out` as a JSON string, quotes included.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append a number (`null` for NaN and the infinities, which JSON has not).
pub fn write_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{}", v);
    } else {
        out.push_str("null");
    }
}

/// A JSON object being written: `Object::new().str("entity_id", id).num("high", 26.0).finish()`.
#[derive(Default)]
pub struct Object {
    text: String,
}

impl Object {
    pub fn new() -> Self {
        Object { text: String::from("{") }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        write_str(&mut self.text, key);
        self.text.push(':');
        &mut self.text
    }

    pub fn str(mut self, key: &str, value: &str) -> Self {
        write_str(self.key(key), value);
        self
    }

    pub fn num(mut self, key: &str, value: f64) -> Self {
        write_f64(self.key(key), value);
        self
    }

    pub fn int(mut self, key: &str, value: i64) -> Self {
        let _ = write!(self.key(key), "{}", value);
        self
    }

    pub fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    pub fn null(mut self, key: &str) -> Self {
        self.key(key).push_str("null");
        self
    }

    /// A value that is JSON text already (another `Object`'s or `Array`'s `finish()`).
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key).push_str(json);
        self
    }

    pub fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// A JSON array being written: `Array::new().str("a").num(1.0).finish()`.
#[derive(Default)]
pub struct Array {
    text: String,
}

impl Array {
    pub fn new() -> Self {
        Array { text: String::from("[") }
    }

    fn next(&mut self) -> &mut String {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        &mut self.text
    }

    pub fn str(mut self, value: &str) -> Self {
        write_str(self.next(), value);
        self
    }

    pub fn num(mut self, value: f64) -> Self {
        write_f64(self.next(), value);
        self
    }

    pub fn bool(mut self, value: bool) -> Self {
        self.next().push_str(if value { "true" } else { "false" });
        self
    }

    pub fn raw(mut self, json: &str) -> Self {
        self.next().push_str(json);
        self
    }

    pub fn finish(mut self) -> String {
        self.text.push(']');
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn reads_what_the_host_writes() {
        let event = Json(r#"{"entity_id":"sensor.a","new_state":{"state":"21.5","attributes":{"k":[1,{"x":"}"}]}},"n":-3e2}"#);
        assert_eq!(event.get("entity_id").and_then(|v| v.as_str()).as_deref(), Some("sensor.a"));
        assert_eq!(event.get("new_state").and_then(|s| s.get("state")).and_then(|v| v.as_f64()), Some(21.5));
        assert_eq!(event.get("n").and_then(|v| v.as_f64()), Some(-300.0));
        let k = event.get("new_state").and_then(|s| s.get("attributes")).and_then(|a| a.get("k")).unwrap();
        assert_eq!(k.items().map(|v| v.raw()).collect::<Vec<_>>(), ["1", r#"{"x":"}"}"#]);
        assert!(event.get("missing").is_none() && event.get("state").is_none());
    }

    #[test]
    fn resolves_escapes_and_round_trips_through_the_encoder() {
        let text = r#"a \"q\" \\ \n \u00e9 \ud834\udd1e \u0001"#;
        let value = unescape(text);
        assert_eq!(value, "a \"q\" \\ \n \u{e9} \u{1d11e} \u{1}");
        let written = Object::new().str("v", &value).num("n", f64::NAN).bool("b", true).finish();
        assert_eq!(Json(&written).get("v").and_then(|v| v.as_str()).unwrap(), value);
        assert_eq!(Json(&written).get("n").map(|v| v.is_null()), Some(true));
    }

    #[test]
    fn numbers_are_json_numbers_only() {
        for bad in ["inf", "nan", "\"NaN\"", "1e400", "", "\"\"", "true"] {
            assert_eq!(Json(bad).as_f64(), None, "{}", bad);
        }
        assert_eq!(Json("\"-7\"").as_f64(), Some(-7.0));
    }

    #[test]
    fn never_panics_on_broken_input() {
        let alphabet = b"{}[]\":,\\u0a1 ";
        let mut seed: u32 = 12345;
        for _ in 0..20000 {
            let mut bytes = Vec::new();
            for _ in 0..(seed % 24) {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                bytes.push(alphabet[(seed >> 16) as usize % alphabet.len()]);
            }
            let text = core::str::from_utf8(&bytes).unwrap();
            let j = Json(text);
            let _ = (j.get("a"), j.as_str(), j.as_f64(), j.items().count(), j.members().count());
            for (_, v) in j.members() {
                let _ = v.as_str();
            }
        }
    }
}
