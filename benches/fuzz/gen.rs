//! Inputs of the wire fuzzer: random bytes, random JSON, and the module → kernel messages of the
//! protocol (publish, rpc_request, rpc_response, log, log-group, ready, pong, ack, nack, call,
//! call:response, and unknown types), valid or mutated: fields dropped or of the wrong type,
//! huge strings, deep nesting, unicode, control characters, 256/257-character names, duplicate
//! keys, truncation, byte flips, two messages on one line. Deterministic for a seed.

use serde_json::{json, Map, Value};

/// SplitMix64: small, fast, and reproducible from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// An index into `weights`, drawn by weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = (self.next() % u64::from(total)) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// What an input was made of (for the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Bytes,
    Json,
    Valid,
    Mutated,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Bytes, Kind::Json, Kind::Valid, Kind::Mutated];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Bytes => "random bytes",
            Kind::Json => "random JSON",
            Kind::Valid => "valid messages",
            Kind::Mutated => "mutated messages",
        }
    }
}

/// The message types a module may send, and a few it may not.
pub const TYPES: [&str; 12] = [
    "publish",
    "rpc_request",
    "rpc_response",
    "log",
    "log-group",
    "ready",
    "pong",
    "ack",
    "nack",
    "call",
    "call:response",
    "unknown",
];
const TYPE_WEIGHTS: [u32; 12] = [24, 12, 8, 10, 5, 3, 5, 8, 4, 8, 4, 3];

/// Topics: the fuzz module's own (allowed), another module's, the kernel's, wildcards, and
/// names at and beyond the 256-character limit. The canary topic is never used.
fn topic(rng: &mut Rng) -> String {
    match rng.below(14) {
        0..=4 => rng
            .pick(&["fuzz.a", "fuzz.b", "fuzz.deep.x.y", "fuzz.back", "events"])
            .to_string(),
        5 => rng
            .pick(&["fuzz.*", "*", "", " ", "fuzz.", ".", "fuzz..a"])
            .to_string(),
        6 => rng
            .pick(&[
                "system:module:ready",
                "system:module:stopped",
                "system:rpc",
                "kernel.permissions.pending",
            ])
            .to_string(),
        7 => "a".repeat(256),
        8 => format!("fuzz.{}", "a".repeat(251)), // 256
        9 => "a".repeat(257),
        10 => "é".repeat(256 + rng.below(2)), // 256 / 257 UTF-16 units, twice the bytes
        11 => "😀".repeat(128 + rng.below(2)), // 256 / 258 UTF-16 units
        12 => format!("fuzz.{}", unicode(rng, 12)),
        _ => format!("fuzz.{}", rng.next() % 1000),
    }
}

fn service(rng: &mut Rng) -> String {
    match rng.below(8) {
        0..=3 => rng.pick(&["echo", "fuzzsvc"]).to_string(),
        4 => rng.pick(&["nope", "", "canary", "system"]).to_string(),
        5 => "s".repeat(256 + rng.below(2)),
        6 => unicode(rng, 8),
        _ => format!("svc{}", rng.below(10)),
    }
}

/// Ids: the kernel's own request ids (`k-<n>`) so responses hit real table entries, uuids,
/// the SDK's, empty and over-long ones.
fn id(rng: &mut Rng) -> String {
    match rng.below(8) {
        0..=2 => format!("k-{}", rng.below(5000)),
        3 => uuid(rng),
        4 => format!("tm-rpc-{}", rng.below(100)),
        5 => "".into(),
        6 => "i".repeat(256 + rng.below(2)),
        _ => unicode(rng, 6),
    }
}

fn uuid(rng: &mut Rng) -> String {
    let a = rng.next();
    let b = rng.next();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xffff,
        b & 0xffff_ffff_ffff
    )
}

const KERNEL_METHODS: [&str; 11] = [
    "module.list",
    "module.commands",
    "service.discover",
    "service.resolve",
    "monitor.snapshot",
    "permissions.check",
    "permissions.request",
    "permissions.pending",
    "config.get",
    "config.set",
    "config.sections",
];

fn method(rng: &mut Rng, kernel: bool) -> String {
    match rng.below(6) {
        0..=3 if kernel => rng.pick(&KERNEL_METHODS).to_string(),
        0..=3 => rng.pick(&["echo", "ping", "get", "m"]).to_string(),
        4 => rng.pick(&["", "m".repeat(257).as_str()]).to_string(),
        _ => unicode(rng, 10),
    }
}

/// A string of `n` characters from awkward corners of Unicode.
pub fn unicode(rng: &mut Rng, n: usize) -> String {
    const CHARS: [char; 22] = [
        'a',
        'Z',
        '.',
        ':',
        '*',
        'é',
        'ß',
        '中',
        '😀',
        '\u{0301}', // combining accent
        '\u{202E}', // right-to-left override
        '\u{200B}', // zero-width space
        '\u{FEFF}', // BOM
        '\u{FFFF}',
        '\u{10FFFF}',
        '\u{0000}',
        '\u{0007}',
        '\u{001B}',
        '\u{007F}',
        '"',
        '\\',
        '\u{2028}',
    ];
    (0..n).map(|_| *rng.pick(&CHARS)).collect()
}

/// A random JSON value (bounded depth and size).
pub fn value(rng: &mut Rng, depth: u32) -> Value {
    let leaf = depth == 0 || rng.chance(55);
    if leaf {
        return match rng.below(10) {
            0 => Value::Null,
            1 => json!(rng.chance(50)),
            2 => json!(rng.next() as i64),
            3 => json!(rng.next()),
            4 => json!((rng.next() as f64) / 7.0 * if rng.chance(50) { -1.0 } else { 1.0 }),
            5 => json!(rng.pick(&[0.0, -0.0, 1e308, -1e-308, f64::MIN_POSITIVE])),
            6 => {
                let n = rng.below(20);
                json!(unicode(rng, n))
            }
            7 => json!("x".repeat(rng.below(300))),
            _ => json!(format!("v{}", rng.below(100))),
        };
    }
    if rng.chance(50) {
        Value::Array((0..rng.below(6)).map(|_| value(rng, depth - 1)).collect())
    } else {
        let mut m = Map::new();
        for _ in 0..rng.below(6) {
            let key = match rng.below(4) {
                0 => unicode(rng, 3),
                _ => format!("k{}", rng.below(20)),
            };
            m.insert(key, value(rng, depth - 1));
        }
        Value::Object(m)
    }
}

/// A valid message of type `ty` (as far as the protocol goes: ids, topics and the rest may
/// still name nothing that exists).
fn message(rng: &mut Rng, ty: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(ty));
    let put = |m: &mut Map<String, Value>, k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    match ty {
        "publish" => {
            put(&mut m, "topic", json!(topic(rng)));
            if rng.chance(90) {
                put(&mut m, "payload", value(rng, 3));
            }
        }
        "rpc_request" => {
            put(&mut m, "id", json!(id(rng)));
            put(&mut m, "service", json!(service(rng)));
            put(&mut m, "method", json!(method(rng, false)));
            if rng.chance(80) {
                put(&mut m, "params", value(rng, 3));
            }
        }
        "rpc_response" | "call:response" => {
            put(&mut m, "id", json!(id(rng)));
            if rng.chance(70) {
                put(&mut m, "result", value(rng, 3));
            } else {
                put(
                    &mut m,
                    "error",
                    json!(format!("Error: {}", unicode(rng, 5))),
                );
            }
        }
        "log" => {
            let level = *rng.pick(&["debug", "info", "warn", "error", "fatal", "trace", ""]);
            put(&mut m, "level", json!(level));
            let n = rng.below(40);
            put(&mut m, "msg", json!(unicode(rng, n)));
            if rng.chance(50) {
                put(&mut m, "data", value(rng, 3));
            }
            if rng.chance(20) {
                put(&mut m, "topic", json!(topic(rng)));
            }
        }
        "log-group" => {
            let items: Vec<Value> = (0..rng.below(5))
                .map(|_| json!({"level": "info", "msg": unicode(rng, 8), "data": value(rng, 2)}))
                .collect();
            put(&mut m, "items", json!(items));
            if rng.chance(30) {
                put(&mut m, "label", json!(unicode(rng, 6)));
            }
        }
        "ready" => {
            if rng.chance(70) {
                put(&mut m, "manifest", value(rng, 3));
            }
        }
        "ack" => put(&mut m, "id", json!(id(rng))),
        "nack" => {
            put(&mut m, "id", json!(id(rng)));
            if rng.chance(50) {
                put(&mut m, "error", json!(unicode(rng, 8)));
            }
        }
        "call" => {
            put(&mut m, "id", json!(id(rng)));
            put(&mut m, "method", json!(method(rng, true)));
            if rng.chance(80) {
                let params = match rng.below(4) {
                    0 => json!({"key": format!("fuzz.k{}", rng.below(5)), "value": value(rng, 2)}),
                    1 => json!({"permissions": {"net": [format!("h{}.example", rng.below(3))]},
                                "reason": unicode(rng, 6)}),
                    2 => json!({"service": service(rng)}),
                    _ => value(rng, 3),
                };
                put(&mut m, "params", params);
            }
        }
        "pong" => {}
        _ => {
            let t = *rng.pick(&[
                "bogus", "Publish", "deliver", "init", "ping", "shutdown", "", "publish ",
            ]);
            put(&mut m, "type", json!(t));
            put(&mut m, "topic", json!(topic(rng)));
        }
    }
    m
}

/// A value of another JSON type than a string field expects.
fn wrong_type(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(42),
        3 => json!(-1.5e300),
        4 => json!([]),
        5 => json!({}),
        6 => json!(["fuzz.a"]),
        _ => json!(18_446_744_073_709_551_615u64),
    }
}

/// `[[[…]]]` or `{"a":{"a":…}}` nested `depth` times, as text.
fn nested(depth: usize, object: bool) -> String {
    if object {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// Mutations of a message at the JSON level, then (sometimes) of its text.
fn mutate(rng: &mut Rng, mut m: Map<String, Value>) -> Vec<u8> {
    let keys: Vec<String> = m.keys().cloned().collect();
    let key = rng.pick(&keys).clone();
    // Raw text spliced in as the value of a field (for what serde_json would not write).
    let mut raw: Option<(String, String)> = None;
    match rng.below(12) {
        0 => {
            m.remove(&key);
        }
        1 | 2 => {
            m.insert(key, wrong_type(rng));
        }
        3 => {
            // Huge strings: mostly some KiB, now and then 1 MiB or beyond `maxMessageBytes`
            // (10 MiB, dropped unread).
            let len = match rng.below(1000) {
                0 => 11 << 20,
                1..=9 => 1 << 20,
                _ => 1024 * (1 + rng.below(32)),
            };
            m.insert(key, json!("x".repeat(len)));
        }
        4 => {
            let depth = *rng.pick(&[64, 127, 128, 129, 1000, 20_000]);
            let field = *rng.pick(&["payload", "params", "result", "data", "manifest", "topic"]);
            raw = Some((field.to_string(), nested(depth, rng.chance(50))));
        }
        5 => {
            let n = 1 + rng.below(300);
            m.insert(key, json!(unicode(rng, n)));
        }
        6 => {
            // Control characters: escaped (valid JSON) or raw (not JSON).
            let c = char::from(rng.below(32) as u8);
            if rng.chance(50) {
                m.insert(key, json!(format!("a{c}b")));
            } else {
                raw = Some((key, format!("\"a{c}b\"")));
            }
        }
        7 => {
            m.insert(format!("extra{}", rng.below(3)), value(rng, 2));
        }
        8 => {
            // A duplicate key: which one wins is the decoder's business, not a crash.
            let dup = rng.pick(&["type", "topic", "id", "payload"]).to_string();
            raw = Some((dup, json!(topic(rng)).to_string()));
        }
        9 => {
            let t = *rng.pick(&["topic", "service", "method", "id"]);
            m.insert(t.into(), json!("t".repeat(255 + rng.below(4))));
        }
        10 => {
            // Lone surrogates and other escapes serde_json never writes.
            let field = *rng.pick(&["topic", "msg", "id", "payload"]);
            let text = *rng.pick(&[r#""\ud800""#, r#""\udfff\ud800""#, r#""\u0000""#, r#""\x""#]);
            raw = Some((field.into(), text.into()));
        }
        _ => {
            m.insert("type".into(), json!(rng.pick(&TYPES).to_string()));
        }
    }
    let mut text = serde_json::to_string(&Value::Object(m)).unwrap_or_default();
    if let Some((k, v)) = raw {
        // Appended as one more member (a duplicate when the key exists).
        text.pop();
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&format!("{}:{v}}}", json!(k)));
    }
    let mut bytes = text.into_bytes();
    if rng.chance(30) {
        mutate_text(rng, &mut bytes);
    }
    bytes
}

/// Text-level damage: truncation, byte flips, insertions, two messages on one line, padding.
fn mutate_text(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.is_empty() {
        return;
    }
    match rng.below(7) {
        0 => {
            let at = rng.below(b.len());
            b.truncate(at);
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
        }
        2 => {
            let at = rng.below(b.len());
            let junk = *rng.pick(&[&b"\x00"[..], b"\xff\xfe", b"\r", b"}", b"\"", b"\xc3"]);
            b.splice(at..at, junk.iter().copied());
        }
        3 => {
            let copy = b.clone();
            b.extend_from_slice(&copy);
        }
        4 => {
            b.splice(0..0, b"\xef\xbb\xbf".iter().copied()); // BOM
        }
        5 => {
            b.splice(0..0, b"  \t".iter().copied());
            b.extend_from_slice(b" \r");
        }
        _ => {
            b.splice(0..0, b"[".iter().copied());
            b.push(b']');
        }
    }
}

/// How often each kind of input and each message type is drawn.
#[derive(Debug, Clone)]
pub struct Mix {
    kinds: [u32; 4],
    types: [u32; 12],
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            kinds: [10, 15, 25, 50],
            types: TYPE_WEIGHTS,
        }
    }
}

impl Mix {
    /// Only the named categories: `bytes`, `json`, `valid`, `mutated` and message types (`ready`,
    /// `call:response`, …; `unknown` for types the kernel does not know). Naming only types
    /// keeps valid and mutated messages of those types.
    pub fn only(names: &[&str]) -> Result<Mix, String> {
        let mut mix = Mix::default();
        let kind = |n: &str| {
            ["bytes", "json", "valid", "mutated"]
                .iter()
                .position(|k| *k == n)
        };
        let kinds: Vec<usize> = names.iter().filter_map(|n| kind(n)).collect();
        let types: Vec<usize> = names
            .iter()
            .filter_map(|n| TYPES.iter().position(|t| t == n))
            .collect();
        if let Some(bad) = names
            .iter()
            .find(|n| kind(n).is_none() && !TYPES.contains(n))
        {
            return Err(format!(
                "unknown input category `{bad}` (bytes, json, valid, mutated, {})",
                TYPES.join(", ")
            ));
        }
        if !types.is_empty() {
            for (i, w) in mix.types.iter_mut().enumerate() {
                if !types.contains(&i) {
                    *w = 0;
                }
            }
        }
        let keep: Vec<usize> = if kinds.is_empty() { vec![2, 3] } else { kinds };
        for (i, w) in mix.kinds.iter_mut().enumerate() {
            if !keep.contains(&i) {
                *w = 0;
            }
        }
        if !types.is_empty() && !keep.iter().any(|k| *k >= 2) {
            mix.kinds[2] = 25;
            mix.kinds[3] = 50;
        }
        Ok(mix)
    }
}

/// One input line (without its `\n`; random bytes may hold newlines of their own).
pub fn input(rng: &mut Rng, mix: &Mix) -> (Kind, Vec<u8>) {
    match rng.weighted(&mix.kinds) {
        0 => {
            let n = rng.below(300);
            let bytes = (0..n).map(|_| rng.next() as u8).collect();
            (Kind::Bytes, bytes)
        }
        1 => {
            let v = value(rng, 4);
            (Kind::Json, serde_json::to_vec(&v).unwrap_or_default())
        }
        2 => {
            let ty = TYPES[rng.weighted(&mix.types)];
            let m = message(rng, ty);
            (
                Kind::Valid,
                serde_json::to_vec(&Value::Object(m)).unwrap_or_default(),
            )
        }
        _ => {
            let ty = TYPES[rng.weighted(&mix.types)];
            let m = message(rng, ty);
            (Kind::Mutated, mutate(rng, m))
        }
    }
}
