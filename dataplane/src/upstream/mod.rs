//! Upstream connections.
