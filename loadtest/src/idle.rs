//! The idle-connection holder: opens N client connections through a target (startup
//! message, login — a token for Tollgate, SCRAM for the others), holds them without a
//! query, and measures what they cost the proxy process in memory (Rss and Pss from
//! /proc/PID/smaps_rollup, after minus before, divided by the connections held).
//!
//! It runs in this process on a small tokio runtime with tokio-postgres, so one process
//! holds thousands of sockets cheaply; `main` raises RLIMIT_NOFILE first.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::stream::{self, StreamExt as _};
use serde::{Deserialize, Serialize};

use crate::hermetic;
use crate::procstat::{self, Memory};
use crate::targets::Endpoint;

/// What holding the connections showed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleResult {
    pub requested: u32,
    /// Connections that completed login.
    pub established: u32,
    pub connect_errors: u32,
    /// The first login error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Seconds to open all of them (`connect_concurrency` at a time).
    pub connect_s: f64,
    /// Proxy memory before the first connection and once all are open and settled.
    pub before: Option<Memory>,
    pub after: Option<Memory>,
    pub rss_kib_per_conn: Option<f64>,
    pub pss_kib_per_conn: Option<f64>,
    /// Connections that still answered `SELECT 1` after the hold.
    pub alive_after_hold: u32,
}

impl IdleResult {
    /// Every connection opened and still answered after the hold.
    pub fn clean(&self) -> bool {
        self.established == self.requested && self.alive_after_hold == self.established
    }
}

/// Memory growth per connection, in KiB: (after - before) / n. Negative growth (the
/// allocator returned memory meanwhile) reads as zero.
pub fn per_connection(before: Memory, after: Memory, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / f64::from(n);
    (
        d(after.rss_kib, before.rss_kib),
        d(after.pss_kib, before.pss_kib),
    )
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

async fn connect(
    cfg: tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = cfg.connect(tokio_postgres::NoTls).await?;
    let task = tokio::spawn(async move {
        // An error shows up at the client's next call.
        let _ = connection.await;
    });
    Ok((client, task))
}

/// Sleeps on the runtime, waking early with an error on a stop signal.
async fn sleep(d: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        hermetic::check_interrupted()?;
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(50))).await;
    }
}

/// Logs in once and reads from pgbench's tables: proves a target works before a run.
pub fn preflight(ep: &Endpoint) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let (client, task) = connect(ep.pg_config())
            .await
            .with_context(|| format!("logging in to {} on port {}", ep.target, ep.port))?;
        let rows = client
            .simple_query("SELECT count(*) FROM pgbench_branches")
            .await
            .with_context(|| format!("querying through {}", ep.target))?;
        drop(client);
        let _ = task.await;
        if rows.is_empty() {
            bail!("no answer through {}", ep.target);
        }
        Ok(())
    })
}

/// Opens `connections` connections, holds them `hold` long, checks they still answer.
pub fn hold(
    ep: &Endpoint,
    connections: u32,
    concurrency: u32,
    hold: Duration,
) -> anyhow::Result<IdleResult> {
    let rt = runtime()?;
    let result = rt.block_on(async {
        let memory = || ep.proxy_pid.map(procstat::memory).transpose();
        let before = memory()?;
        let start = Instant::now();
        let cfg = ep.pg_config();
        let attempts: Vec<_> = stream::iter(0..connections)
            .map(|_| connect(cfg.clone()))
            .buffer_unordered(concurrency.max(1) as usize)
            .collect()
            .await;
        let connect_s = start.elapsed().as_secs_f64();
        let mut clients = Vec::with_capacity(attempts.len());
        let mut errors = 0;
        let mut first_error = None;
        for a in attempts {
            match a {
                Ok(c) => clients.push(c),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        hermetic::check_interrupted()?;
        // Let the proxy finish whatever it does after a login before measuring.
        sleep(Duration::from_secs(1)).await?;
        let after = memory()?;
        sleep(hold).await?;
        let alive = stream::iter(clients.iter())
            .map(|(c, _)| c.simple_query("SELECT 1"))
            .buffer_unordered(concurrency.max(1) as usize)
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await;
        let established = clients.len() as u32;
        for (client, task) in clients {
            drop(client);
            task.abort();
        }
        let (rss, pss) = match (before, after) {
            (Some(b), Some(a)) if established > 0 => {
                let (r, p) = per_connection(b, a, established);
                (Some(r), Some(p))
            }
            _ => (None, None),
        };
        anyhow::Ok(IdleResult {
            requested: connections,
            established,
            connect_errors: errors,
            first_error,
            connect_s,
            before,
            after,
            rss_kib_per_conn: rss,
            pss_kib_per_conn: pss,
            alive_after_hold: alive as u32,
        })
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_is_the_delta_over_the_count() {
        let before = Memory {
            rss_kib: 10_000,
            pss_kib: 9_000,
        };
        let after = Memory {
            rss_kib: 74_000,
            pss_kib: 59_000,
        };
        assert_eq!(per_connection(before, after, 2000), (32.0, 25.0));
        // Shrinking reads as zero, never as a negative cost.
        assert_eq!(per_connection(after, before, 10), (0.0, 0.0));
        assert_eq!(per_connection(before, after, 0), (0.0, 0.0));
    }
}
