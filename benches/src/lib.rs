//! Criterion benches live under benches/; this crate has no library code of its own.
