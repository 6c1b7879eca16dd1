//! Codec stage for PostgreSQL: the frontend/backend protocol 3.0, sans-IO.
//!
//! Bytes in, messages out; nothing here knows about sockets. The layout follows the protocol
//! documentation (<https://www.postgresql.org/docs/current/protocol-message-formats.html>):
//!
//! | file | what it parses |
//! |---|---|
//! | `startup.rs` | the untagged start-up packets: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage |
//! | `frame.rs` | `tag | length | body` framing of every later message — the cheap check run on each read |
//! | `frontend.rs` | client to server: Query, Parse, Bind, Execute, Describe, Close, Sync, COPY, FunctionCall |
//! | `auth.rs` | the authentication exchange: 'R' requests and the 'p' answers |
//! | `backend.rs` | server to client: everything not in the two files below |
//! | `rows.rs` | RowDescription and the lazy DataRow |
//! | `fields.rs` | ErrorResponse / NoticeResponse fields, and the gateway's own errors and notices |
//! | `wire.rs` | the checked reader and the writers all of the above share |
//!
//! Reading a connection is: [`startup`] until a StartupMessage arrives, then [`frame`] on the
//! buffered bytes and [`FrontendMessage::decode`] or [`BackendMessage::decode`] on each frame.
//! Each step returns a message, `Ok(None)` for "need more bytes", or a [`ProtocolError`]; none
//! panics on any input, and every length is checked against a cap before anything is allocated.
//! Decoded messages borrow from the read buffer, so a message forwarded unchanged is forwarded as
//! the bytes that arrived (`&buf[..frame.wire_len()]`); only the gateway's own messages and the
//! rows it rewrites go through the encoders.
//!
//! Text fields must be UTF-8 (our deployments use UTF-8 databases); anything else is
//! [`ProtocolError::Utf8`].

// Tests state their expectations with `unwrap`; production code here never does.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod auth;
mod backend;
mod error;
mod fields;
mod frame;
mod frontend;
mod rows;
mod startup;
mod wire;

#[cfg(test)]
mod proptests;

pub use auth::{
    encode_auth_cleartext, encode_auth_ok, encode_password, encode_sasl_response, password_text,
    Authentication, SaslInitialResponse,
};
pub use backend::{
    encode_backend_key_data, encode_parameter_status, encode_ready_for_query, BackendMessage,
    CopyResponse,
};
pub use error::ProtocolError;
pub use fields::{encode_error, encode_notice, field, Fields, FieldsIter};
pub use frame::{frame, Frame};
pub use frontend::{Bind, FrontendMessage};
pub use rows::{encode_data_row, DataRow, DataRowIter, FieldDescription};
pub use startup::{
    encode_cancel_request, encode_ssl_request, encode_startup, startup, Startup, StartupRequest,
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_CANCEL_KEY_LEN, MAX_STARTUP_LEN,
    MIN_CANCEL_KEY_LEN, PROTOCOL_3_0, SSL_REQUEST_CODE,
};
