//! Tollgate data plane: a Layer 7 gateway that authenticates every session with an
//! identity-provider token, decides every command with policies kept as code, and alone holds
//! the upstream credentials. The modules follow the data path drawn in DESIGN.md:
//!
//! ```text
//! accept ─▶ shard ─▶ codec ─▶ identity ─▶ analyse ─▶ decide ─▶ (review) ─▶ forward ─▶ mask ─▶ client
//! runtime/  runtime/  proto/   identity/                                    session/ upstream/
//! ```

pub mod config;
pub mod identity;
pub mod policy;
pub mod proto;
pub mod record;
pub mod runtime;
pub mod session;
pub mod sql;
pub mod tls;
pub mod upstream;
