//! Module → kernel messages: [`decode`] turns one stdout line into an [`Inbound`] message.
//!
//! This is the routing hot path. One serde pass walks the top-level object, keeps every known
//! field as a borrowed [`RawValue`] (a slice of the line, validated but not decoded) and skips
//! unknown fields without building anything. String fields are then decoded from their raw
//! slice, borrowing when they contain no escape. Payloads (`payload`, `params`, `result`,
//! `error`, `data`, `items`) stay raw so the kernel forwards them byte for byte.
//!
//! Validation follows the reference kernel's behaviour: the value must be an object (`not an object`), `type`
//! must be one of the accepted strings (`unknown type: …`), and the per-type required fields
//! must be strings of at most [`MAX_FIELD_CHARS`] UTF-16 code units. Unknown extra fields are
//! ignored. For duplicate keys the last one wins, as with `JSON.parse`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::MAX_FIELD_CHARS;

mod scan;

/// One decoded module → kernel message. Borrowed fields point into the decoded line.
///
/// Optional raw fields are `None` when the key is absent and `Some` (possibly the raw text
/// `null`) when it is present, so they can be forwarded exactly as sent.
#[derive(Debug, Clone)]
pub enum Inbound<'a> {
    /// `ready`: the content is ignored (the kernel uses the manifest on disk).
    Ready,
    /// `log`: nothing is validated; a non-string `msg`/`topic` is given as its raw JSON text,
    /// a non-string `level` as `None`.
    Log {
        level: Option<Cow<'a, str>>,
        msg: Option<Cow<'a, str>>,
        data: Option<&'a RawValue>,
        topic: Option<Cow<'a, str>>,
    },
    /// `log-group`: like `log`, plus the raw `items` array.
    LogGroup {
        level: Option<Cow<'a, str>>,
        msg: Option<Cow<'a, str>>,
        data: Option<&'a RawValue>,
        items: Option<&'a RawValue>,
    },
    /// `ack` (ignored by the kernel).
    Ack { id: Option<Cow<'a, str>> },
    /// `nack` (ignored by the kernel).
    Nack {
        id: Option<Cow<'a, str>>,
        error: Option<&'a RawValue>,
    },
    /// `publish`: `topic` validated.
    Publish {
        topic: Cow<'a, str>,
        payload: Option<&'a RawValue>,
    },
    /// `call` (module → kernel call API): `id`, `method` validated.
    Call {
        id: Cow<'a, str>,
        method: Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    /// `call:response` (reply to a kernel → module `call`): `id` validated.
    CallResponse {
        id: Cow<'a, str>,
        result: Option<&'a RawValue>,
        error: Option<&'a RawValue>,
    },
    /// `pong`.
    Pong,
    /// `rpc_request`: `id`, `service`, `method` validated.
    RpcRequest {
        id: Cow<'a, str>,
        service: Cow<'a, str>,
        method: Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    /// `rpc_response`: `id` validated.
    RpcResponse {
        id: Cow<'a, str>,
        result: Option<&'a RawValue>,
        error: Option<&'a RawValue>,
    },
}

/// Raw fields compare by their text.
impl PartialEq for Inbound<'_> {
    fn eq(&self, other: &Self) -> bool {
        fn r<'x>(v: &Option<&'x RawValue>) -> Option<&'x str> {
            v.map(RawValue::get)
        }
        use Inbound as I;
        match (self, other) {
            (I::Ready, I::Ready) | (I::Pong, I::Pong) => true,
            (
                I::Log {
                    level,
                    msg,
                    data,
                    topic,
                },
                I::Log {
                    level: l2,
                    msg: m2,
                    data: d2,
                    topic: t2,
                },
            ) => level == l2 && msg == m2 && r(data) == r(d2) && topic == t2,
            (
                I::LogGroup {
                    level,
                    msg,
                    data,
                    items,
                },
                I::LogGroup {
                    level: l2,
                    msg: m2,
                    data: d2,
                    items: i2,
                },
            ) => level == l2 && msg == m2 && r(data) == r(d2) && r(items) == r(i2),
            (I::Ack { id }, I::Ack { id: i2 }) => id == i2,
            (I::Nack { id, error }, I::Nack { id: i2, error: e2 }) => id == i2 && r(error) == r(e2),
            (
                I::Publish { topic, payload },
                I::Publish {
                    topic: t2,
                    payload: p2,
                },
            ) => topic == t2 && r(payload) == r(p2),
            (
                I::Call { id, method, params },
                I::Call {
                    id: i2,
                    method: m2,
                    params: p2,
                },
            ) => id == i2 && method == m2 && r(params) == r(p2),
            (
                I::CallResponse { id, result, error },
                I::CallResponse {
                    id: i2,
                    result: r2,
                    error: e2,
                },
            )
            | (
                I::RpcResponse { id, result, error },
                I::RpcResponse {
                    id: i2,
                    result: r2,
                    error: e2,
                },
            ) => id == i2 && r(result) == r(r2) && r(error) == r(e2),
            (
                I::RpcRequest {
                    id,
                    service,
                    method,
                    params,
                },
                I::RpcRequest {
                    id: i2,
                    service: s2,
                    method: m2,
                    params: p2,
                },
            ) => id == i2 && service == s2 && method == m2 && r(params) == r(p2),
            _ => false,
        }
    }
}

impl Inbound<'_> {
    /// The wire `type` of this message.
    pub fn type_name(&self) -> &'static str {
        match self {
            Inbound::Ready => "ready",
            Inbound::Log { .. } => "log",
            Inbound::LogGroup { .. } => "log-group",
            Inbound::Ack { .. } => "ack",
            Inbound::Nack { .. } => "nack",
            Inbound::Publish { .. } => "publish",
            Inbound::Call { .. } => "call",
            Inbound::CallResponse { .. } => "call:response",
            Inbound::Pong => "pong",
            Inbound::RpcRequest { .. } => "rpc_request",
            Inbound::RpcResponse { .. } => "rpc_response",
        }
    }
}

/// Why a line was not accepted as a message. `Display` gives the reference's reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The line is not JSON (or not UTF-8): the reference logs it as plain text at warn with
    /// `source: "stdout"`. `text` is the line, decoded lossily.
    InvalidJson { text: String },
    /// Valid JSON that is not an object (arrays give `UnknownType("undefined")` instead).
    NotAnObject,
    /// `type` missing or not an accepted string; holds `String(type)` cut to 50 chars.
    UnknownType(String),
    /// A required field is missing or not a string.
    NotAString {
        ty: &'static str,
        field: &'static str,
    },
    /// A required field is longer than [`MAX_FIELD_CHARS`] UTF-16 code units.
    TooLong {
        ty: &'static str,
        field: &'static str,
        len: usize,
    },
}

impl DecodeError {
    /// True for lines that are not JSON at all (to be logged as plain text, not as an invalid
    /// IPC message).
    pub fn is_plain_text(&self) -> bool {
        matches!(self, DecodeError::InvalidJson { .. })
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::InvalidJson { .. } => f.write_str("invalid JSON"),
            DecodeError::NotAnObject => f.write_str("not an object"),
            DecodeError::UnknownType(t) => write!(f, "unknown type: {t}"),
            DecodeError::NotAString { ty, field } => write!(f, "{ty}: {field} is not a string"),
            DecodeError::TooLong { ty, field, len } => {
                write!(f, "{ty}: {field} exceeds {MAX_FIELD_CHARS} chars ({len})")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one line (already trimmed of surrounding whitespace) into a message.
pub fn decode(line: &[u8]) -> Result<Inbound<'_>, DecodeError> {
    if let Some(ack) = plain_ack(line) {
        return Ok(ack);
    }
    let invalid = || DecodeError::InvalidJson {
        text: String::from_utf8_lossy(line).into_owned(),
    };
    // One UTF-8 check of the whole line: serde_json's `str` reader then trusts it, instead of
    // validating every key, string and raw value (the payload) again one by one.
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(invalid());
    };
    // The common shape in one pass of our own; serde_json for everything else (and the errors).
    let top = match scan::envelope(text) {
        Some(env) => Top::Object(env),
        None => match serde_json::from_str::<Top<'_>>(text) {
            Ok(top) => top,
            Err(_) => return Err(invalid()),
        },
    };
    let env = match top {
        Top::Object(env) => env,
        Top::Array => return Err(DecodeError::UnknownType("undefined".to_owned())),
        Top::Other => return Err(DecodeError::NotAnObject),
    };
    let ty = match env.ty {
        None => return Err(DecodeError::UnknownType("undefined".to_owned())),
        Some(raw) => match raw_str(raw) {
            Some(t) => t,
            None => return Err(DecodeError::UnknownType(non_string_type(raw))),
        },
    };
    let msg = match ty.as_ref() {
        "publish" => Inbound::Publish {
            topic: required("publish", "topic", env.topic)?,
            payload: env.payload,
        },
        "rpc_request" => Inbound::RpcRequest {
            id: required("rpc_request", "id", env.id)?,
            service: required("rpc_request", "service", env.service)?,
            method: required("rpc_request", "method", env.method)?,
            params: env.params,
        },
        "rpc_response" => Inbound::RpcResponse {
            id: required("rpc_response", "id", env.id)?,
            result: env.result,
            error: env.error,
        },
        "call" => Inbound::Call {
            id: required("call", "id", env.id)?,
            method: required("call", "method", env.method)?,
            params: env.params,
        },
        "call:response" => Inbound::CallResponse {
            id: required("call:response", "id", env.id)?,
            result: env.result,
            error: env.error,
        },
        "ready" => Inbound::Ready,
        "pong" => Inbound::Pong,
        "log" => Inbound::Log {
            level: env.level.and_then(raw_str),
            msg: env.msg.and_then(lenient_str),
            data: env.data,
            topic: env.topic.and_then(lenient_str),
        },
        "log-group" => Inbound::LogGroup {
            level: env.level.and_then(raw_str),
            msg: env.msg.and_then(lenient_str),
            data: env.data,
            items: env.items,
        },
        "ack" => Inbound::Ack {
            id: env.id.and_then(raw_str),
        },
        "nack" => Inbound::Nack {
            id: env.id.and_then(raw_str),
            error: env.error,
        },
        _ => return Err(DecodeError::UnknownType(cut_utf16(&ty, 50))),
    };
    Ok(msg)
}

/// `{"type":"ack","id":"<id>"}` byte for byte as the SDKs write it (one per delivery, so half of
/// the lines in a stream) with an id that needs no unescaping: that is valid JSON, decoded here
/// without the general parser. Anything else goes the general way.
#[inline]
fn plain_ack(line: &[u8]) -> Option<Inbound<'_>> {
    let id = line
        .strip_prefix(br#"{"type":"ack","id":""#)?
        .strip_suffix(br#""}"#)?;
    // One branch-free pass (the compiler vectorises it).
    if id.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    }) {
        return None;
    }
    let id = std::str::from_utf8(id).ok()?;
    Some(Inbound::Ack {
        id: Some(Cow::Borrowed(id)),
    })
}

/// Number of UTF-16 code units of `s` (what JavaScript's `length` counts).
pub fn utf16_len(s: &str) -> usize {
    // Every UTF-16 unit needs at least one UTF-8 byte, so short strings need no count.
    if s.len() <= MAX_FIELD_CHARS {
        return s.chars().map(char::len_utf16).sum();
    }
    // Bytes minus continuation bytes gives chars; 4-byte sequences are 2 units.
    s.bytes()
        .map(|b| match b {
            0x80..=0xBF => 0,
            0xF0..=0xFF => 2,
            _ => 1,
        })
        .sum()
}

fn required<'a>(
    ty: &'static str,
    field: &'static str,
    raw: Option<&'a str>,
) -> Result<Cow<'a, str>, DecodeError> {
    let s = raw
        .and_then(raw_str)
        .ok_or(DecodeError::NotAString { ty, field })?;
    if s.len() > MAX_FIELD_CHARS {
        let len = utf16_len(&s);
        if len > MAX_FIELD_CHARS {
            return Err(DecodeError::TooLong { ty, field, len });
        }
    }
    Ok(s)
}

/// Decodes the text of a JSON value that is a string; `None` for any other JSON type.
fn raw_str(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    Some(Cow::Owned(unescape(inner)))
}

/// A string field of a log message: strings decoded, `null` absent, anything else as raw JSON.
fn lenient_str(text: &str) -> Option<Cow<'_, str>> {
    match text {
        "null" => None,
        text if text.starts_with('"') => raw_str(text),
        text => Some(Cow::Borrowed(text)),
    }
}

/// Unescapes the inside of a JSON string literal that serde_json already validated. Lone
/// surrogates (which JSON allows and Rust strings do not) become U+FFFD.
fn unescape(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hi = hex4(&mut chars);
                if (0xD800..0xDC00).contains(&hi) {
                    let mut look = chars.clone();
                    if look.next() == Some('\\') && look.next() == Some('u') {
                        let lo = hex4(&mut look);
                        if (0xDC00..0xE000).contains(&lo) {
                            chars = look;
                            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                            continue;
                        }
                    }
                }
                out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0);
    }
    v
}

/// `String(type)` as JavaScript would print it for a non-string `type`, cut to 50 UTF-16 units.
fn non_string_type(raw: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v) => js_string(&v),
        Err(_) => raw.to_owned(),
    };
    cut_utf16(&text, 50)
}

fn js_string(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Object(_) => "[object Object]".to_owned(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Null => String::new(),
                other => js_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn cut_utf16(s: &str, max: usize) -> String {
    let mut units = 0;
    let mut end = s.len();
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > max {
            end = i;
            break;
        }
    }
    s[..end].to_owned()
}

/// The top-level JSON value of a line, as far as routing cares. Lives on the stack only;
/// boxing the envelope would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Top<'a> {
    Object(Envelope<'a>),
    Array,
    Other,
}

/// Every field any message type uses, kept raw: the JSON text of those read as strings, and
/// the payloads as [`RawValue`]s to forward.
#[derive(Default)]
struct Envelope<'a> {
    ty: Option<&'a str>,
    id: Option<&'a str>,
    topic: Option<&'a str>,
    service: Option<&'a str>,
    method: Option<&'a str>,
    level: Option<&'a str>,
    msg: Option<&'a str>,
    params: Option<&'a RawValue>,
    payload: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    items: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut env = Envelope::default();
        // The text of a value read as a string.
        fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<&'de str, A::Error> {
            Ok(map.next_value::<&'de RawValue>()?.get())
        }
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => env.ty = Some(text(&mut map)?),
                Key::Id => env.id = Some(text(&mut map)?),
                Key::Topic => env.topic = Some(text(&mut map)?),
                Key::Service => env.service = Some(text(&mut map)?),
                Key::Method => env.method = Some(text(&mut map)?),
                Key::Level => env.level = Some(text(&mut map)?),
                Key::Msg => env.msg = Some(text(&mut map)?),
                Key::Params => env.params = Some(map.next_value()?),
                Key::Payload => env.payload = Some(map.next_value()?),
                Key::Result => env.result = Some(map.next_value()?),
                Key::Error => env.error = Some(map.next_value()?),
                Key::Data => env.data = Some(map.next_value()?),
                Key::Items => env.items = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Top::Object(env))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Array)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
}

/// The envelope keys; everything else is skipped.
enum Key {
    Type,
    Id,
    Topic,
    Service,
    Method,
    Params,
    Payload,
    Result,
    Error,
    Level,
    Msg,
    Data,
    Items,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
        Ok(match k {
            "type" => Key::Type,
            "id" => Key::Id,
            "topic" => Key::Topic,
            "service" => Key::Service,
            "method" => Key::Method,
            "params" => Key::Params,
            "payload" => Key::Payload,
            "result" => Key::Result,
            "error" => Key::Error,
            "level" => Key::Level,
            "msg" => Key::Msg,
            "data" => Key::Data,
            "items" => Key::Items,
            _ => Key::Other,
        })
    }
}
