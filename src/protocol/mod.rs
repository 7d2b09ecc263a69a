//! Wire protocol: the only code that knows the wire
//! format.
//!
//! Modules speak newline-delimited compact JSON over stdin/stdout. This module holds the three
//! pieces of that contract, shaped for the routing hot path:
//!
//! - [`framing`]: [`LineReader`] splits a module's output into trimmed lines, with a line cap
//!   (oversize lines are dropped and counted, reading goes on).
//! - [`inbound`]: [`decode`] parses only the envelope of a module → kernel line into an
//!   [`Inbound`] message that borrows from the line; payloads stay raw JSON
//!   ([`serde_json::value::RawValue`]) and are never re-encoded. Its [`DecodeError`] carries the
//!   reference's rejection reasons.
//! - [`outbound`]: functions that append one kernel → module message (compact JSON + `\n`) to a
//!   caller-owned `Vec<u8>`, so a module's pending output is one growing buffer written in one
//!   go.

pub mod framing;
pub mod inbound;
pub mod outbound;

pub use framing::LineReader;
pub use inbound::{decode, utf16_len, DecodeError, Inbound};

/// The protocol version sent in `init`.
pub const PROTOCOL_VERSION: &str = "1.0";

/// Maximum length, in UTF-16 code units, of the validated string fields (ids, topic, service,
/// method).
pub const MAX_FIELD_CHARS: usize = 256;

/// Default cap on one line of module output, in bytes.
pub const DEFAULT_MAX_LINE: usize = 10 * 1024 * 1024;

#[cfg(test)]
mod tests;
