//! Wire protocols, each a sans-IO codec: bytes in, messages out, never a socket.
pub mod pg;
