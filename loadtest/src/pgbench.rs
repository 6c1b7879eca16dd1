//! Running pgbench against a target and reading what it reports: its summary on stdout and
//! its per-transaction logs (`-l --log-prefix`).
//!
//! A run lasts warm-up + measured seconds (`-T`). Only transactions that completed inside
//! the measured window count: TPS is their number divided by the window, latency
//! percentiles come from their latencies, and the proxy's CPU time is sampled at the two
//! ends of the same window. pgbench's own summary (whole run, warm-up included) is kept for
//! cross-checking and for the failed-transaction count.
//!
//! Per-transaction log line (pgbench 15, "Per-Transaction Logging" in the pgbench docs):
//! `client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]`,
//! where `time` is the latency in µs, or `failed` / `serialization` / `deadlock` for a
//! failed transaction and `skipped` for one skipped by `--latency-limit`, and
//! `time_epoch`.`time_us` is when the transaction completed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::hermetic;
use crate::procstat;
use crate::scenario::{Scenario, Script};
use crate::stats::percentile;
use crate::targets::Endpoint;

/// What pgbench printed about the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// "number of transactions actually processed".
    pub processed: Option<u64>,
    /// "number of failed transactions".
    pub failed: Option<u64>,
    /// "tps = ...".
    pub tps: Option<f64>,
    /// "latency average = ... ms".
    pub latency_avg_ms: Option<f64>,
    /// "Run was aborted": some client hit a non-retriable error and stopped.
    pub aborted: bool,
}

fn number_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?;
    rest.split_whitespace().next()
}

/// Parses pgbench's summary (stdout) and error output (stderr).
pub fn parse_summary(stdout: &str, stderr: &str) -> Summary {
    let mut s = Summary::default();
    for line in stdout.lines().map(str::trim) {
        if let Some(v) = number_after(line, "number of transactions actually processed:") {
            // "30995" or, with -t, "30995/40000".
            s.processed = v.split('/').next().and_then(|n| n.parse().ok());
        } else if let Some(v) = number_after(line, "number of failed transactions:") {
            s.failed = v.parse().ok();
        } else if let Some(v) = number_after(line, "tps =") {
            s.tps = v.parse().ok();
        } else if let Some(v) = number_after(line, "latency average =") {
            s.latency_avg_ms = v.parse().ok();
        }
    }
    s.aborted = stderr.contains("Run was aborted") || stdout.contains("Run was aborted");
    s
}

/// How a logged transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
}

/// One line of a per-transaction log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    /// Completion time, µs since the Unix epoch.
    pub end_us: u64,
    /// Latency in µs (0 for failed and skipped transactions).
    pub latency_us: u64,
    pub outcome: Outcome,
}

/// Parses one per-transaction log line.
pub fn parse_log_line(line: &str) -> anyhow::Result<Transaction> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 {
        bail!("expected at least 6 fields, got {}: {line:?}", f.len());
    }
    let (latency_us, outcome) = match f[2] {
        "failed" | "serialization" | "deadlock" => (0, Outcome::Failed),
        "skipped" => (0, Outcome::Skipped),
        t => (
            t.parse()
                .with_context(|| format!("latency {t:?} is not a number"))?,
            Outcome::Ok,
        ),
    };
    let epoch: u64 = f[4]
        .parse()
        .with_context(|| format!("time_epoch {:?} is not a number", f[4]))?;
    let us: u64 = f[5]
        .parse()
        .with_context(|| format!("time_us {:?} is not a number", f[5]))?;
    Ok(Transaction {
        end_us: epoch * 1_000_000 + us,
        latency_us,
        outcome,
    })
}

/// Reads every log file pgbench wrote for `prefix` (`PREFIX.PID` for the first thread,
/// `PREFIX.PID.N` for the others) and removes it.
pub fn read_logs(prefix: &Path) -> anyhow::Result<Vec<Transaction>> {
    let dir = prefix.parent().context("log prefix has no directory")?;
    let stem = format!(
        "{}.",
        prefix
            .file_name()
            .context("log prefix has no file name")?
            .to_string_lossy()
    );
    let mut out = Vec::new();
    let mut files = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if !name.is_some_and(|n| n.starts_with(&stem)) {
            continue;
        }
        files += 1;
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                parse_log_line(line)
                    .with_context(|| format!("{} line {}", path.display(), i + 1))?,
            );
        }
        let _ = fs::remove_file(&path);
    }
    if files == 0 {
        bail!("pgbench wrote no per-transaction log {}*", stem);
    }
    Ok(out)
}

/// Latency percentiles of the transactions in a window, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

/// What happened inside a time window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Successful transactions completed in the window.
    pub transactions: u64,
    pub failed: u64,
    pub latency: Option<Latency>,
}

/// The transactions that completed in `[start_us, end_us)`.
pub fn window(records: &[Transaction], start_us: u64, end_us: u64) -> Window {
    let mut lat: Vec<u64> = Vec::new();
    let mut failed = 0;
    for r in records {
        if r.end_us < start_us || r.end_us >= end_us {
            continue;
        }
        match r.outcome {
            Outcome::Ok => lat.push(r.latency_us),
            Outcome::Failed => failed += 1,
            Outcome::Skipped => {}
        }
    }
    lat.sort_unstable();
    let latency = if lat.is_empty() {
        None
    } else {
        let sum: u128 = lat.iter().map(|&l| u128::from(l)).sum();
        Some(Latency {
            p50_us: percentile(&lat, 0.50).unwrap_or(0) as f64,
            p99_us: percentile(&lat, 0.99).unwrap_or(0) as f64,
            p999_us: percentile(&lat, 0.999).unwrap_or(0) as f64,
            mean_us: sum as f64 / lat.len() as f64,
            max_us: lat.last().copied().unwrap_or(0) as f64,
        })
    };
    Window {
        transactions: lat.len() as u64,
        failed,
        latency,
    }
}

/// The figures of one pgbench run, as stored in report.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgbenchResult {
    /// The command line (the password travels in PGPASSWORD and is not shown).
    pub command: String,
    pub exit_code: Option<i32>,
    /// pgbench's own summary of the whole run (warm-up included).
    pub summary: Summary,
    /// Length of the measured window, s.
    pub window_s: f64,
    /// Successful transactions completed in the window.
    pub transactions: u64,
    /// `transactions / window_s`.
    pub tps: f64,
    /// Failed transactions over the whole run (the larger of the log's and the summary's
    /// count).
    pub failed: u64,
    pub latency: Option<Latency>,
    /// utime + stime the proxy process used during the window, s (none for direct).
    pub proxy_cpu_s: Option<f64>,
    /// Proxy CPU per transaction in the window, µs.
    pub cpu_us_per_tx: Option<f64>,
    /// Context switches of the proxy's threads per transaction in the window (none for
    /// direct).
    #[serde(default)]
    pub switches_per_tx: Option<f64>,
    /// Last lines of pgbench's stderr when it did not exit cleanly.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
}

impl PgbenchResult {
    /// True when the run completed: exit 0, nothing aborted, no failed transaction.
    pub fn clean(&self) -> bool {
        self.exit_code == Some(0) && !self.summary.aborted && self.failed == 0
    }
}

fn epoch_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Builds the pgbench command for a scenario against an endpoint.
pub fn command(
    pgbench: &Path,
    ep: &Endpoint,
    s: &Scenario,
    threads: u32,
    total_s: u64,
    log_prefix: &Path,
) -> Command {
    let mut cmd = Command::new(pgbench);
    cmd.args([
        "-n",
        "-h",
        &ep.host,
        "-p",
        &ep.port.to_string(),
        "-U",
        &ep.user,
    ]);
    match s.script {
        Script::SelectOnly => cmd.arg("-S"),
        Script::TpcbLike => cmd.args(["-b", "tpcb-like"]),
    };
    cmd.args(["-M", s.mode.as_str()]);
    if s.connect {
        cmd.arg("-C");
    }
    cmd.args([
        "-c",
        &s.clients.to_string(),
        "-j",
        &threads.to_string(),
        "-T",
        &total_s.to_string(),
        "-l",
    ])
    .arg(format!("--log-prefix={}", log_prefix.display()))
    .arg(&ep.dbname);
    hermetic::clear_libpq_env(&mut cmd);
    cmd.env("PGPASSWORD", &ep.password)
        .env("PGSSLMODE", "disable")
        .env("PGAPPNAME", "pgbench");
    cmd
}

/// Shows a command line the way a user would type it.
pub fn display_command(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .map(|a| crate::report::shell_quote(&a.to_string_lossy())),
    );
    parts.join(" ")
}

/// One pgbench run to do.
pub struct RunSpec<'a> {
    pub scenario: &'a Scenario,
    /// `-j`.
    pub threads: u32,
    /// Discarded seconds at the start.
    pub warmup: Duration,
    /// The measured window after the warm-up.
    pub measured: Duration,
    /// Names the run's files in the work directory.
    pub tag: &'a str,
}

/// Runs one pgbench and measures it. `dir` holds its logs and output while it runs.
pub fn run(
    pgbench: &Path,
    ep: &Endpoint,
    spec: &RunSpec<'_>,
    dir: &Path,
) -> anyhow::Result<PgbenchResult> {
    let (s, threads, warmup, measured, tag) = (
        spec.scenario,
        spec.threads,
        spec.warmup,
        spec.measured,
        spec.tag,
    );
    let total_s = (warmup + measured).as_secs().max(1);
    let log_prefix: PathBuf = dir.join(format!("pgbench-{tag}"));
    let stdout_path = dir.join(format!("pgbench-{tag}.out"));
    let stderr_path = dir.join(format!("pgbench-{tag}.err"));
    let mut cmd = command(pgbench, ep, s, threads, total_s, &log_prefix);
    let shown = display_command(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).context("creating pgbench stdout file")?)
        .stderr(fs::File::create(&stderr_path).context("creating pgbench stderr file")?);

    let start_wall = SystemTime::now();
    let start = Instant::now();
    let mut child = hermetic::Foreground::spawn(&mut cmd).context("starting pgbench")?;

    let cpu = |pid: Option<u32>| -> anyhow::Result<Option<(Duration, u64)>> {
        pid.map(|pid| Ok((procstat::cpu_time(pid)?, procstat::context_switches(pid)?)))
            .transpose()
    };
    let mut exited = child.wait_until(start + warmup)?;
    let cpu_start = if exited.is_none() {
        cpu(ep.proxy_pid)?
    } else {
        None
    };
    if exited.is_none() {
        exited = child.wait_until(start + warmup + measured)?;
    }
    let cpu_end = if exited.is_none() {
        cpu(ep.proxy_pid)?
    } else {
        None
    };
    let status = match exited {
        Some(s) => s,
        None => child
            .wait_until(Instant::now() + measured + Duration::from_secs(60))?
            .context("pgbench did not exit within a minute after its -T duration (killed it)")?,
    };
    hermetic::check_interrupted()?;

    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = fs::remove_file(&stdout_path);
    let _ = fs::remove_file(&stderr_path);
    let summary = parse_summary(&stdout, &stderr);
    let records = read_logs(&log_prefix).unwrap_or_default();

    let win_start = epoch_us(start_wall) + warmup.as_micros() as u64;
    let win_end = win_start + measured.as_micros() as u64;
    let w = window(&records, win_start, win_end);
    let failed_in_logs = records
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .count() as u64;
    let window_s = measured.as_secs_f64();
    let (proxy_cpu_s, switches) = match (cpu_start, cpu_end) {
        (Some((a, sa)), Some((b, sb))) => (
            Some(b.saturating_sub(a).as_secs_f64()),
            Some(sb.saturating_sub(sa)),
        ),
        _ => (None, None),
    };
    let cpu_us_per_tx = match proxy_cpu_s {
        Some(c) if w.transactions > 0 => Some(c * 1e6 / w.transactions as f64),
        _ => None,
    };
    let switches_per_tx = match switches {
        Some(n) if w.transactions > 0 => Some(n as f64 / w.transactions as f64),
        _ => None,
    };
    let stderr_tail = if status.success() && !summary.aborted {
        String::new()
    } else {
        tail(&stderr, 15)
    };
    Ok(PgbenchResult {
        command: shown,
        exit_code: status.code(),
        failed: failed_in_logs.max(summary.failed.unwrap_or(0)),
        summary,
        window_s,
        transactions: w.transactions,
        tps: w.transactions as f64 / window_s,
        latency: w.latency,
        proxy_cpu_s,
        cpu_us_per_tx,
        switches_per_tx,
        stderr_tail,
    })
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real pgbench 15.18 output (Debian 15.18-0+deb12u1).
    const SELECT_PREPARED: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: prepared
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 30995
number of failed transactions: 0 (0.000%)
latency average = 0.256 ms
initial connection time = 26.679 ms
tps = 15629.238854 (without initial connection time)
";

    const CHURN: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 183
number of failed transactions: 0 (0.000%)
latency average = 21.892 ms
average connection time = 10.266 ms
tps = 91.357482 (including reconnection times)
";

    const ABORTED_STDOUT: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: bad.sql
scaling factor: 1
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 0
number of failed transactions: 0 (NaN%)
";
    const ABORTED_STDERR: &str =
        "pgbench: error: client 0 script 0 aborted in command 0 query 0: ERROR:  division by zero
pgbench: error: client 1 script 0 aborted in command 0 query 0: ERROR:  division by zero
pgbench: error: Run was aborted; the above results are incomplete.
";

    #[test]
    fn summary_of_a_clean_run() {
        let s = parse_summary(SELECT_PREPARED, "");
        assert_eq!(
            s,
            Summary {
                processed: Some(30995),
                failed: Some(0),
                tps: Some(15629.238854),
                latency_avg_ms: Some(0.256),
                aborted: false,
            }
        );
        let c = parse_summary(CHURN, "");
        assert_eq!(c.processed, Some(183));
        assert_eq!(c.tps, Some(91.357482));
    }

    #[test]
    fn summary_of_an_aborted_run() {
        let s = parse_summary(ABORTED_STDOUT, ABORTED_STDERR);
        assert!(s.aborted);
        assert_eq!(s.processed, Some(0));
        assert_eq!(s.failed, Some(0));
        assert_eq!(s.tps, None);
        // A run that could not even connect prints no summary at all.
        let none = parse_summary(
            "",
            "pgbench: error: connection to server at \"127.0.0.1\", port 54998 failed: Connection refused\n",
        );
        assert_eq!(none.processed, None);
        assert!(!none.aborted);
    }

    #[test]
    fn log_lines() {
        // Real lines from `pgbench -l` (15.18), then the failed and skipped forms.
        assert_eq!(
            parse_log_line("1 2 93 0 1795738863 103757").unwrap(),
            Transaction {
                end_us: 1_795_738_863_103_757,
                latency_us: 93,
                outcome: Outcome::Ok
            }
        );
        let f = parse_log_line("3 17 failed 0 1795738863 113535").unwrap();
        assert_eq!((f.outcome, f.latency_us), (Outcome::Failed, 0));
        let f = parse_log_line("3 18 serialization 0 1795738863 113535 0 1").unwrap();
        assert_eq!(f.outcome, Outcome::Failed);
        let s = parse_log_line("0 5 skipped 0 1795738863 113535 1200").unwrap();
        assert_eq!(s.outcome, Outcome::Skipped);
        assert!(parse_log_line("1 2 93 0 1795738863").is_err());
        assert!(parse_log_line("1 2 x93 0 1795738863 1").is_err());
    }

    #[test]
    fn window_keeps_only_what_completed_inside() {
        let t = |end_us, latency_us, outcome| Transaction {
            end_us,
            latency_us,
            outcome,
        };
        let recs = vec![
            t(999, 500, Outcome::Ok),  // warm-up: dropped
            t(1000, 100, Outcome::Ok), // first µs of the window
            t(1500, 300, Outcome::Ok),
            t(1600, 0, Outcome::Failed),
            t(1999, 200, Outcome::Ok),
            t(2000, 900, Outcome::Ok), // first µs after the window
        ];
        let w = window(&recs, 1000, 2000);
        assert_eq!(w.transactions, 3);
        assert_eq!(w.failed, 1);
        let l = w.latency.unwrap();
        assert_eq!((l.p50_us, l.p99_us, l.max_us), (200.0, 300.0, 300.0));
        assert_eq!(l.mean_us, 200.0);
        assert_eq!(window(&recs, 5000, 6000).latency, None);
    }

    #[test]
    fn logs_are_read_from_every_thread_file_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("pgbench-x");
        fs::write(
            dir.path().join("pgbench-x.123"),
            "0 1 50 0 10 0\n0 2 60 0 10 5\n",
        )
        .unwrap();
        fs::write(dir.path().join("pgbench-x.123.1"), "1 1 70 0 10 9\n").unwrap();
        fs::write(dir.path().join("pgbench-y.123"), "garbage\n").unwrap();
        let recs = read_logs(&prefix).unwrap();
        assert_eq!(recs.len(), 3);
        assert!(!dir.path().join("pgbench-x.123").exists());
        assert!(dir.path().join("pgbench-y.123").exists());
        assert!(read_logs(&dir.path().join("pgbench-z")).is_err());
    }
}
