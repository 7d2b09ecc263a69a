//! Unit and property tests of the wire protocol.

mod framing;
mod inbound;
mod outbound;
