//! The run loop: starts the hermetic environment, checks every target answers, then runs
//! round after round — each scenario against each target, the target order rotated per
//! round — with a progress display, and collects the figures into a [`Report`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::hermetic::{self, Hermetic};
use crate::idle;
use crate::pgbench;
use crate::report::{self, Meta, Report, Run, ScenarioReport, Settings, TargetInfo};
use crate::scenario::{PoolMode, Scenario, ScenarioFile, ScenarioKind};
use crate::targets::TargetKind;

pub struct Options {
    pub quick: bool,
    pub out: PathBuf,
    pub command: String,
    pub scenario_origin: String,
    pub hermetic: hermetic::Options,
}

/// One run to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// 0-based.
    pub round: u32,
    pub scenario: usize,
    pub target: TargetKind,
    /// 0-based position within the round's order for this scenario.
    pub position: u32,
}

/// Every run, in order: rounds, then scenarios, then targets rotated left by the round.
pub fn plan(file: &ScenarioFile) -> Vec<Planned> {
    let mut out = Vec::new();
    for round in 0..file.rounds {
        for (si, s) in file.scenarios.iter().enumerate() {
            let mut targets = file.scenario_targets(s);
            if !targets.is_empty() {
                let by = round as usize % targets.len();
                targets.rotate_left(by);
            }
            for (pos, target) in targets.into_iter().enumerate() {
                out.push(Planned {
                    round,
                    scenario: si,
                    target,
                    position: pos as u32,
                });
            }
        }
    }
    out
}

/// A guess of a run's seconds, for the progress bar's time left.
fn estimate_s(file: &ScenarioFile, s: &Scenario) -> f64 {
    let body = match s.kind {
        ScenarioKind::Pgbench => (file.duration_s(s) + file.warmup_s(s)) as f64 + 1.0,
        ScenarioKind::Idle => f64::from(s.connections) / 150.0 + s.hold_s as f64 + 2.0,
    };
    body + file.pause_s
}

/// The progress display: one bar over the whole plan, its position in planned seconds.
struct Progress {
    bar: ProgressBar,
    state: Arc<Mutex<(f64, f64, Instant)>>, // (planned s before this run, this run's estimate, start)
    done: Arc<AtomicBool>,
    total: f64,
}

fn human(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    fn new(total: f64) -> Progress {
        let bar = ProgressBar::with_draw_target(
            Some((total * 1000.0) as u64),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.green} [{elapsed_precise}] {wide_bar:.cyan/blue} {prefix}\n  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let state = Arc::new(Mutex::new((0.0, 0.0, Instant::now())));
        let done = Arc::new(AtomicBool::new(false));
        let (b, st, d) = (bar.clone(), state.clone(), done.clone());
        let _ = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while !d.load(Ordering::Relaxed) {
                    let (base, est, start) = *st.lock().unwrap_or_else(|p| p.into_inner());
                    let pos = base + start.elapsed().as_secs_f64().min(est);
                    b.set_position((pos * 1000.0) as u64);
                    b.set_prefix(format!("~{} left", human(total - pos)));
                    b.tick();
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        Progress {
            bar,
            state,
            done,
            total,
        }
    }

    fn start(&self, base: f64, est: f64, what: String) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (base, est, Instant::now());
        if self.bar.is_hidden() {
            eprintln!("{what} ...");
        }
        self.bar.set_message(what);
    }

    fn line(&self, text: String) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
        self.bar.set_position((self.total * 1000.0) as u64);
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

fn one_line(run: &Run) -> String {
    if let Some(e) = &run.error {
        return format!("ERROR {}", e.lines().next().unwrap_or(""));
    }
    if let Some(p) = &run.pgbench {
        let lat = p
            .latency
            .map(|l| {
                format!(
                    ", p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs",
                    l.p50_us, l.p99_us, l.p999_us
                )
            })
            .unwrap_or_default();
        let cpu = p
            .cpu_us_per_tx
            .map(|c| match p.switches_per_tx {
                Some(s) => format!(", proxy CPU {c:.1} µs/tx, {s:.2} context switches/tx"),
                None => format!(", proxy CPU {c:.1} µs/tx"),
            })
            .unwrap_or_default();
        let bad = if p.clean() {
            String::new()
        } else {
            format!(
                " — PROBLEM: exit {:?}, {} failed{}",
                p.exit_code,
                p.failed,
                if p.summary.aborted { ", aborted" } else { "" }
            )
        };
        return format!(
            "{} tps{lat}{cpu}, {} failed{bad}",
            report::thousands(p.tps),
            p.failed
        );
    }
    if let Some(i) = &run.idle {
        return format!(
            "{}{}/{} connections held ({:.1} s to open), RSS {} KiB/conn, PSS {} KiB/conn, {} answered after the hold",
            if i.clean() { "" } else { "PROBLEM: " },
            i.established,
            i.requested,
            i.connect_s,
            i.rss_kib_per_conn
                .map_or("—".into(), |v| format!("{v:.1}")),
            i.pss_kib_per_conn
                .map_or("—".into(), |v| format!("{v:.1}")),
            i.alive_after_hold
        );
    }
    String::new()
}

/// Runs one planned run; failures become the run's `error`, never a panic or an abort.
fn execute(env: &mut Hermetic, file: &ScenarioFile, s: &Scenario, p: Planned, dir: &Path) -> Run {
    let mut run = Run {
        target: p.target,
        round: p.round + 1,
        position: p.position + 1,
        pgbench: None,
        idle: None,
        error: None,
    };
    let result = (|| -> anyhow::Result<()> {
        env.check_alive(p.target)?;
        let ep = env.endpoint(p.target, s.pgbouncer_pool_mode)?;
        match s.kind {
            ScenarioKind::Pgbench => {
                // Start each run from a clean buffer state, not with the last run's writes.
                env.pg.checkpoint()?;
                let threads = s.threads(nproc());
                let tag = format!("{}-{}-r{}", s.name, p.target, p.round + 1);
                let spec = pgbench::RunSpec {
                    scenario: s,
                    threads,
                    warmup: Duration::from_secs(file.warmup_s(s)),
                    measured: Duration::from_secs(file.duration_s(s)),
                    tag: &tag,
                };
                run.pgbench = Some(pgbench::run(&env.tools.pgbench, &ep, &spec, dir)?);
            }
            ScenarioKind::Idle => {
                run.idle = Some(idle::hold(
                    &ep,
                    s.connections,
                    s.connect_concurrency,
                    Duration::from_secs(s.hold_s),
                )?);
            }
        }
        // A target that died during the run is the finding, whatever the client saw.
        env.check_alive(p.target)?;
        Ok(())
    })();
    if let Err(e) = result {
        run.error = Some(format!("{e:#}"));
    }
    run
}

fn nproc() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// An empty report for `file`, before anything ran.
pub fn new_report(file: &ScenarioFile, opts: &Options) -> Report {
    let (git_commit, git_dirty) = report::git_state(&opts.hermetic.repo);
    let cores = nproc();
    Report {
        meta: Meta {
            date: report::utc_timestamp(report::now_epoch_s()),
            command: opts.command.clone(),
            git_commit,
            git_dirty,
            machine: report::machine(),
            versions: Default::default(),
            scenario_file: opts.scenario_origin.clone(),
            quick: opts.quick,
            elapsed_s: 0.0,
            incomplete: None,
        },
        settings: Settings {
            rounds: file.rounds,
            duration_s: file.duration_s,
            warmup_s: file.warmup_s,
            pause_s: file.pause_s,
            scale: file.scale,
            tollgate_shards: file.tollgate.shards,
            tollgate_rust_log: file.tollgate.rust_log.clone(),
            tollgate_off: file.tollgate_off.description.clone(),
            tollgate_full: file.tollgate_full.description.clone(),
            tollgate_configs: Default::default(),
            postgres_conf: file.postgres.conf.clone(),
        },
        targets: Vec::new(),
        scenarios: file
            .scenarios
            .iter()
            .map(|s| ScenarioReport {
                scenario: s.clone(),
                describe: s.describe(s.threads(cores)),
                duration_s: file.duration_s(s),
                warmup_s: file.warmup_s(s),
                targets: file.scenario_targets(s),
                runs: Vec::new(),
                summary: Vec::new(),
            })
            .collect(),
        goals: Vec::new(),
        checks: Default::default(),
    }
}

/// Runs the whole plan. Setup failures are errors; a failed run is recorded in the report
/// and the plan goes on; a stop signal ends the plan early with `meta.incomplete` set.
pub fn run(file: &ScenarioFile, opts: &Options, report: &mut Report) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("starting the targets (work directory under /dev/shm or /tmp) ...");
    let mut env = Hermetic::start(file, &opts.hermetic)?;
    report.meta.versions = env.versions.clone();
    report.settings.tollgate_configs = env
        .tollgate_configs
        .iter()
        .map(|(k, v)| (k.key().to_owned(), v.clone()))
        .collect();
    let addresses = env.describe();
    report.targets = file
        .targets
        .iter()
        .map(|t| TargetInfo {
            target: *t,
            what: report::describe_target(*t),
            address: addresses.get(t).cloned().unwrap_or_default(),
        })
        .collect();
    for t in &file.targets {
        for mode in [PoolMode::Session, PoolMode::Transaction] {
            if *t != TargetKind::Pgbouncer && mode == PoolMode::Transaction {
                continue;
            }
            if *t == TargetKind::Pgbouncer && !file.needs_pool_mode(mode) {
                continue;
            }
            let ep = env.endpoint(*t, mode)?;
            idle::preflight(&ep)
                .map_err(|e| anyhow::anyhow!("preflight: {t} does not work: {e:#}"))?;
        }
    }
    for (t, a) in &addresses {
        eprintln!("  {t:<13} {a}");
    }

    let runs_dir = env.work.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let planned = plan(file);
    let estimates: Vec<f64> = planned
        .iter()
        .map(|p| estimate_s(file, &file.scenarios[p.scenario]))
        .collect();
    let total: f64 = estimates.iter().sum();
    eprintln!(
        "{} runs, about {} (setup took {:.0} s)",
        planned.len(),
        human(total),
        started.elapsed().as_secs_f64()
    );
    let progress = Progress::new(total);
    let mut base = 0.0;
    for (i, p) in planned.iter().enumerate() {
        let s = &file.scenarios[p.scenario];
        let what = format!(
            "[{}/{}] round {}/{} · {} ({}) · {}",
            i + 1,
            planned.len(),
            p.round + 1,
            file.rounds,
            s.name,
            report.scenarios[p.scenario].describe,
            p.target
        );
        progress.start(base, estimates[i], what.clone());
        let run = execute(&mut env, file, s, *p, &runs_dir);
        if hermetic::interrupted() {
            report.meta.incomplete = Some("interrupted by a signal".into());
            break;
        }
        progress.line(format!("{what}: {}", one_line(&run)));
        report.scenarios[p.scenario].runs.push(run);
        // Keep what was measured even if the process dies later.
        let _ = report::write_json(report, &opts.out);
        base += estimates[i];
        if i + 1 < planned.len() {
            if let Err(e) = hermetic::sleep(Duration::from_secs_f64(file.pause_s)) {
                report.meta.incomplete = Some(format!("{e}"));
                break;
            }
        }
    }
    progress.finish();
    eprintln!("stopping the targets ...");
    drop(env);
    report.meta.elapsed_s = started.elapsed().as_secs_f64();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_rotate_per_round() {
        let file = ScenarioFile::parse(
            r#"
            rounds = 3
            duration_s = 1
            targets = ["direct", "null-relay", "tollgate-off"]
            [[scenario]]
            name = "a"
            kind = "pgbench"
            [[scenario]]
            name = "b"
            kind = "idle"
            connections = 5
            targets = ["null-relay", "tollgate-off"]
        "#,
        )
        .unwrap();
        let p = plan(&file);
        assert_eq!(p.len(), 3 * (3 + 2));
        let order = |round: u32, scenario: usize| -> Vec<TargetKind> {
            p.iter()
                .filter(|x| x.round == round && x.scenario == scenario)
                .map(|x| x.target)
                .collect()
        };
        use TargetKind::*;
        assert_eq!(order(0, 0), vec![Direct, NullRelay, TollgateOff]);
        assert_eq!(order(1, 0), vec![NullRelay, TollgateOff, Direct]);
        assert_eq!(order(2, 0), vec![TollgateOff, Direct, NullRelay]);
        assert_eq!(order(1, 1), vec![TollgateOff, NullRelay]);
        // Every target is first once over three rounds.
        let firsts: std::collections::BTreeSet<_> = (0..3).map(|r| order(r, 0)[0]).collect();
        assert_eq!(firsts.len(), 3);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(5.4), "5s");
        assert_eq!(human(125.0), "2m 05s");
        assert_eq!(human(3725.0), "1h 02m");
    }
}
