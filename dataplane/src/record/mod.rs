//! Record stage: every session event, hash-chained per session, to zstd Parquet in a
//! Hive-partitioned archive (see README.md for the layout, the schema and queries).
//!
//! ```text
//! session (shard) ─▶ ShardQueue ─▶ recorder thread: chain ─▶ batch ─▶ .partial + .wal ─▶ .parquet
//!                    queue.rs      recorder.rs       chain.rs schema.rs writer.rs wal.rs
//! ```
//!
//! [`read`] and [`verify`] read an archive back and check its hash chains.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod chain;
mod event;
mod layout;
mod queue;
mod read;
mod recorder;
mod recover;
mod rows;
mod schema;
mod verify;
mod wal;
mod writer;

#[cfg(test)]
mod tests;

pub use chain::{HASH_LEN, ZERO_HASH};
pub use event::*;
pub use queue::{channel, ShardQueue};
pub use read::{files, read, read_file, ReadError, Recorded};
pub(crate) use recorder::zstd_level;
pub use recorder::Recorder;
pub use rows::result_rows;
pub use schema::{schema, FORMAT_KEY, FORMAT_VERSION};
pub use verify::{verify, Finding, OpenSession, Problem, VerifyReport};
