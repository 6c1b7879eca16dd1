//! Runtime: the allocator's settings for a long-running gateway.
//!
//! The binary (and the benches that stand for it) allocate with mimalloc v3. By default it
//! hands memory that has been free for one second back to the kernel. The recorder thread
//! frees and allocates several MiB per batch (Arrow buffers, Parquet pages), and the
//! allocator hands it memory it returned a moment before: every page then faults in again and
//! is zeroed (with transparent huge pages, 2 MiB at a time). Ten seconds, jemalloc's default
//! decay, keeps that memory in use under load and still gives it back once the load is gone.

// Two calls into the allocator's C API, each a store or load of one option.
#![allow(unsafe_code)]

use std::ffi::c_long;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (libmimalloc-sys 0.1.49 names the
/// option in its C header but has no Rust constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before it goes back to the kernel.
const PURGE_DELAY_MS: c_long = 10_000;

/// Applies the gateway's allocator settings. Call it first thing in `main`. An explicit
/// `MIMALLOC_PURGE_DELAY` in the environment wins.
pub fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: setting an option is a store into mimalloc's option table, valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The purge delay mimalloc now uses, in milliseconds.
    fn purge_delay_ms() -> c_long {
        // SAFETY: reading an option is a load from mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn the_purge_delay_is_the_option_we_mean() {
        // mimalloc v3's default purge delay is 1000 ms, and it is option 15: if the enum moved,
        // this reads another option.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            let before = purge_delay_ms();
            assert!(
                before == 1000 || before == PURGE_DELAY_MS,
                "option 15 holds {before}"
            );
        }
        tune_allocator();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
        }
    }
}
