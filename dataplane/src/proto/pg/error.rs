//! Codec stage: the one error type of the PostgreSQL codec.
//!
//! Every error here means the peer sent bytes that do not follow the protocol
//! (<https://www.postgresql.org/docs/current/protocol-message-formats.html>). The session answers
//! with an ErrorResponse carrying [`ProtocolError::SQLSTATE`] and closes the connection, as
//! PostgreSQL itself does.

/// Why a peer's bytes are not a valid PostgreSQL protocol 3.0 message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The length field announces more than the caller's cap; nothing was allocated.
    #[error("message length {len} exceeds the limit of {max} bytes")]
    TooLong {
        /// The length the peer announced.
        len: usize,
        /// The cap it was checked against.
        max: usize,
    },
    /// The length field is below the smallest possible message (it counts itself).
    #[error("invalid message length {0}")]
    BadLength(i32),
    /// The body does not hold the fields its type declares (too short, trailing bytes,
    /// a count or length out of range, a value outside its allowed set).
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A type byte the protocol does not define for this direction.
    #[error("unknown message type byte {0:#04x}")]
    UnknownTag(u8),
    /// A string field is not valid UTF-8 (all our deployments run UTF-8 databases).
    #[error("string field is not valid UTF-8")]
    Utf8,
    /// A start-up packet asks for a protocol other than 3.x and is no known special request.
    #[error("unsupported frontend protocol {}.{}", .0 >> 16, .0 & 0xffff)]
    UnsupportedVersion(u32),
}

impl ProtocolError {
    /// SQLSTATE to report for any of these errors: `protocol_violation`.
    pub const SQLSTATE: &'static str = "08P01";
}
