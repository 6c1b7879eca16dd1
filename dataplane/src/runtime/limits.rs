//! Start-up checks for what io_uring needs from the operating system: locked memory for the
//! registered buffers and a kernel that lets this process create rings.
#![allow(unsafe_code)]

/// Why the runtime cannot start; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "RLIMIT_MEMLOCK is {have_kib} KiB but {shards} shard(s) with io_memory_kib = {per_shard_kib} need {need_kib} KiB of locked memory; \
         raise it (`ulimit -l {need_kib}`, LimitMEMLOCK= in the systemd unit, or --ulimit memlock in a container) \
         or lower gateway.io_memory_kib / gateway.shards"
    )]
    Memlock {
        have_kib: u64,
        need_kib: u64,
        shards: usize,
        per_shard_kib: u64,
    },
    #[error(
        "cannot start the io_uring runtime: {0}. Tollgate needs Linux 5.8 or newer with io_uring enabled \
         (check the sysctl kernel.io_uring_disabled, and a container's seccomp profile)"
    )]
    Start(String),
}

/// Locked memory glommio uses per shard beyond the registered buffers (rings and bookkeeping).
const OVERHEAD_PER_SHARD: u64 = 256 * 1024;

/// Checks that RLIMIT_MEMLOCK covers `shards` executors with `io_memory` bytes each, raising
/// the soft limit to the hard limit first when that is enough.
pub fn check_memlock(shards: usize, io_memory: usize) -> Result<(), Error> {
    let need = (shards as u64).saturating_mul(io_memory as u64 + OVERHEAD_PER_SHARD);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        // If the limit cannot be read, let glommio try and report its own failure.
        return Ok(());
    }
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= need {
        return Ok(());
    }
    if lim.rlim_max == libc::RLIM_INFINITY || lim.rlim_max >= need {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(Error::Memlock {
        have_kib: lim.rlim_cur / 1024,
        need_kib: need.div_ceil(1024),
        shards,
        per_shard_kib: io_memory as u64 / 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_needs_pass_and_huge_needs_name_the_fix() {
        check_memlock(1, 64 * 1024).expect("64 KiB fits any sane limit");
        let err = check_memlock(1 << 20, 1 << 30).expect_err("a petabyte does not fit");
        let text = err.to_string();
        assert!(text.contains("ulimit -l"), "{text}");
        assert!(text.contains("io_memory_kib"), "{text}");
    }
}
