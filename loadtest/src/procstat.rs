//! What a proxy process costs, read from /proc: CPU time (`/proc/PID/stat`, utime + stime of
//! all its threads), context switches (`/proc/PID/task/*/status`, voluntary and involuntary,
//! summed over the threads) and memory (`/proc/PID/smaps_rollup`, Rss and Pss).
//!
//! Formats: proc(5). `stat` is one line whose second field, the command name in parentheses,
//! may itself hold spaces and parentheses, so fields are counted from the last `)`.

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// CPU time of a process in clock ticks (`sysconf(_SC_CLK_TCK)` per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    pub utime: u64,
    pub stime: u64,
}

impl CpuTicks {
    pub fn total(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses `/proc/PID/stat`: utime and stime are fields 14 and 15 (1-based), i.e. the 12th
/// and 13th after the `(comm)` field closes.
pub fn parse_stat(text: &str) -> anyhow::Result<CpuTicks> {
    let close = text
        .rfind(')')
        .context("no ')' closing the command name in /proc/PID/stat")?;
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state), so field N is rest[N - 3].
    let field = |n: usize| -> anyhow::Result<u64> {
        let raw = rest
            .get(n - 3)
            .with_context(|| format!("/proc/PID/stat has no field {n}"))?;
        raw.parse()
            .with_context(|| format!("/proc/PID/stat field {n} is not a number: {raw:?}"))
    };
    Ok(CpuTicks {
        utime: field(14)?,
        stime: field(15)?,
    })
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn clock_ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        // Linux has used 100 on every architecture for a long time.
        _ => 100,
    }
}

/// CPU time (user + system, every thread) a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat(&text).with_context(|| format!("parsing {path}"))?;
    let hz = clock_ticks_per_second();
    Ok(Duration::from_secs_f64(ticks.total() as f64 / hz as f64))
}

/// Resident and proportional set size, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// Parses `/proc/PID/smaps_rollup`: the `Rss:` and `Pss:` lines, in kB.
pub fn parse_smaps_rollup(text: &str) -> anyhow::Result<Memory> {
    let mut rss = None;
    let mut pss = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let key = parts.next();
        let value = parts.next().and_then(|v| v.parse::<u64>().ok());
        match key {
            Some("Rss:") => rss = value,
            Some("Pss:") => pss = value,
            _ => {}
        }
    }
    match (rss, pss) {
        (Some(rss_kib), Some(pss_kib)) => Ok(Memory { rss_kib, pss_kib }),
        _ => bail!("no Rss:/Pss: lines in smaps_rollup"),
    }
}

/// Current memory of a process.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_smaps_rollup(&text).with_context(|| format!("parsing {path}"))
}

/// Parses the `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` lines of a
/// `/proc/PID/task/TID/status`: their sum.
pub fn parse_switches(status: &str) -> anyhow::Result<u64> {
    let mut voluntary = None;
    let mut involuntary = None;
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "voluntary_ctxt_switches" => &mut voluntary,
            "nonvoluntary_ctxt_switches" => &mut involuntary,
            _ => continue,
        };
        let n: u64 = value
            .trim()
            .parse()
            .with_context(|| format!("{key} is not a number: {value:?}"))?;
        *slot = Some(n);
    }
    match (voluntary, involuntary) {
        (Some(v), Some(i)) => Ok(v + i),
        _ => bail!("no voluntary_ctxt_switches / nonvoluntary_ctxt_switches lines"),
    }
}

/// Context switches of every live thread of a process so far (a thread that ended takes its
/// count with it: the proxies measured keep their threads for the whole run).
pub fn context_switches(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task
            .with_context(|| format!("reading {dir}"))?
            .path()
            .join("status");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                total +=
                    parse_switches(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            // The thread ended between the listing and the read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_switches_are_the_sum_of_both_kinds() {
        let status =
            "Name:\ttollgate-shard\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1500\n\
                      nonvoluntary_ctxt_switches:\t42\n";
        assert_eq!(parse_switches(status).unwrap(), 1542);
        assert!(parse_switches("Name:\tx\nvoluntary_ctxt_switches:\t3\n").is_err());
        assert!(
            parse_switches("voluntary_ctxt_switches:\tmany\nnonvoluntary_ctxt_switches:\t1\n")
                .is_err()
        );
    }

    #[test]
    fn a_thread_that_sleeps_adds_context_switches() {
        let me = std::process::id();
        let before = context_switches(me).unwrap();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let after = context_switches(me).unwrap();
        assert!(after >= before + 20, "{before} -> {after}");
    }

    #[test]
    fn stat_fields_counted_after_the_command_name() {
        // A real line (tollgate with 3 threads), then the same with a hostile command name.
        let line = "4242 (tollgate) S 4200 4242 4200 0 -1 4194560 1519 0 0 0 731 129 0 0 20 0 3 0 \
                    123456 123863040 3071 18446744073709551615 1 1 0 0 0 0 0 4096 17630 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line).unwrap(),
            CpuTicks {
                utime: 731,
                stime: 129
            }
        );
        let odd = "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat(odd).unwrap().total(), 11);
        assert!(parse_stat("7 (short) R 1 2").is_err());
        assert!(parse_stat("no parenthesis").is_err());
    }

    #[test]
    fn smaps_rollup_rss_and_pss() {
        let text =
            "55d0c0a2e000-7ffc4b1f9000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:               12345 kB\n\
                    Pss:               11000 kB\n\
                    Pss_Anon:           9000 kB\n\
                    Shared_Clean:       2000 kB\n\
                    Anonymous:          9100 kB\n";
        assert_eq!(
            parse_smaps_rollup(text).unwrap(),
            Memory {
                rss_kib: 12345,
                pss_kib: 11000
            }
        );
        assert!(parse_smaps_rollup("Rss: 1 kB\n").is_err());
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        cpu_time(me).unwrap();
        let m = memory(me).unwrap();
        assert!(m.rss_kib > 0);
        assert!(clock_ticks_per_second() > 0);
    }
}
