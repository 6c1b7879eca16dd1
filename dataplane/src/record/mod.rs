//! Record: every session event, hash-chained per session, to zstd Parquet (see README.md).

mod event;

pub use event::*;
