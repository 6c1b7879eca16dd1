//! The report: every figure of a run in `report.json`, and `report.md` with a table per
//! scenario, the issue's targets (met or not, and by how much), the checks, and plots.
//!
//! `report.json` keeps the raw runs; everything derived (medians across rounds, ratios,
//! spread, goals, checks) is recomputed by [`render`], so `tollgate-loadtest report DIR`
//! re-renders an old run with the current rules.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::idle::IdleResult;
use crate::pgbench::PgbenchResult;
use crate::scenario::{QueryMode, Scenario, ScenarioKind, Script};
use crate::stats::{is_noisy, median, ratio, spread};
use crate::targets::TargetKind;

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub meta: Meta,
    pub settings: Settings,
    pub targets: Vec<TargetInfo>,
    pub scenarios: Vec<ScenarioReport>,
    /// Derived by [`render`].
    #[serde(default)]
    pub goals: Vec<Goal>,
    /// Derived by [`render`].
    #[serde(default)]
    pub checks: Checks,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// Start of the run, UTC.
    pub date: String,
    /// The command line, as typed.
    pub command: String,
    pub git_commit: String,
    /// Uncommitted changes to tracked files when the run started.
    pub git_dirty: bool,
    pub machine: Machine,
    /// Versions of PostgreSQL, pgbench, haproxy, pgbouncer, tollgate.
    pub versions: BTreeMap<String, String>,
    pub scenario_file: String,
    pub quick: bool,
    /// Wall-clock seconds of the whole run (setup included).
    #[serde(default)]
    pub elapsed_s: f64,
    /// The run stopped early (a signal or a setup error); the runs so far are kept.
    #[serde(default)]
    pub incomplete: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub cpu_model: String,
    pub memory_gib: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub rounds: u32,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub pause_s: f64,
    pub scale: u32,
    pub tollgate_shards: usize,
    pub tollgate_rust_log: String,
    /// What `tollgate-off` switches off, from the scenario file.
    #[serde(default)]
    pub tollgate_off: String,
    /// What `tollgate-on` switches on, from the scenario file.
    pub tollgate_full: String,
    /// The generated Tollgate configurations, by target.
    pub tollgate_configs: BTreeMap<String, String>,
    pub postgres_conf: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    pub target: TargetKind,
    pub what: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    /// E.g. "pgbench -S -M simple -c 8 -j 2".
    pub describe: String,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub targets: Vec<TargetKind>,
    pub runs: Vec<Run>,
    /// Derived by [`render`].
    #[serde(default)]
    pub summary: Vec<TargetSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub target: TargetKind,
    /// 1-based.
    pub round: u32,
    /// 1-based position of this target within the round (the order rotates per round).
    pub position: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbench: Option<PgbenchResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleResult>,
    /// Why the run produced no figures (the target died, pgbench could not start ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One target in one scenario, across rounds. Figures are medians across rounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetSummary {
    pub target: Option<TargetKind>,
    pub rounds: usize,
    pub errors: usize,
    pub tps: Option<f64>,
    pub tps_min: Option<f64>,
    pub tps_max: Option<f64>,
    /// (max - min) / median of the scenario's main figure (TPS; memory for idle).
    pub spread: Option<f64>,
    pub noisy: bool,
    pub ratio_direct: Option<f64>,
    pub ratio_null_relay: Option<f64>,
    pub ratio_pgbouncer: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub cpu_us_per_tx: Option<f64>,
    /// Context switches of the proxy's threads per transaction.
    #[serde(default)]
    pub switches_per_tx: Option<f64>,
    pub transactions: u64,
    pub failed: u64,
    /// Idle: fewest connections held in a round.
    pub connections: Option<u32>,
    pub rss_kib_per_conn: Option<f64>,
    pub pss_kib_per_conn: Option<f64>,
    pub connect_s: Option<f64>,
}

/// One of the issue's performance targets, evaluated on one scenario and target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    pub goal: String,
    pub scenario: String,
    pub target: Option<TargetKind>,
    pub measured: Option<f64>,
    pub bar: Option<f64>,
    pub unit: String,
    pub met: Option<bool>,
    /// How far above or below the bar, in words.
    pub margin: String,
    /// The figures behind it vary more than 10 % across rounds.
    pub noisy: bool,
}

/// Correctness checks: every run completed, no failed transaction, Tollgate did work.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checks {
    pub runs: usize,
    pub passed: bool,
    pub failures: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Deriving
// ---------------------------------------------------------------------------------------------

fn values(runs: &[&Run], f: impl Fn(&Run) -> Option<f64>) -> Vec<f64> {
    runs.iter().filter_map(|r| f(r)).collect()
}

/// Medians across rounds for every target of a scenario, then ratios to the baselines.
pub fn summarise(s: &ScenarioReport) -> Vec<TargetSummary> {
    let mut out: Vec<TargetSummary> = Vec::new();
    for &target in &s.targets {
        let runs: Vec<&Run> = s.runs.iter().filter(|r| r.target == target).collect();
        let ok: Vec<&Run> = runs.iter().copied().filter(|r| r.error.is_none()).collect();
        let mut t = TargetSummary {
            target: Some(target),
            rounds: runs.len(),
            errors: runs.len() - ok.len(),
            ..TargetSummary::default()
        };
        match s.scenario.kind {
            ScenarioKind::Pgbench => {
                let pg: Vec<&Run> = ok
                    .iter()
                    .copied()
                    .filter(|r| r.pgbench.as_ref().is_some_and(|p| p.transactions > 0))
                    .collect();
                let tps = values(&pg, |r| r.pgbench.as_ref().map(|p| p.tps));
                t.tps = median(&tps);
                t.tps_min = tps.iter().copied().reduce(f64::min);
                t.tps_max = tps.iter().copied().reduce(f64::max);
                t.spread = spread(&tps);
                let lat = |f: fn(&crate::pgbench::Latency) -> f64| {
                    median(&values(&pg, |r| {
                        r.pgbench.as_ref().and_then(|p| p.latency.as_ref()).map(f)
                    }))
                };
                t.p50_us = lat(|l| l.p50_us);
                t.p99_us = lat(|l| l.p99_us);
                t.p999_us = lat(|l| l.p999_us);
                t.cpu_us_per_tx = median(&values(&pg, |r| {
                    r.pgbench.as_ref().and_then(|p| p.cpu_us_per_tx)
                }));
                t.switches_per_tx = median(&values(&pg, |r| {
                    r.pgbench.as_ref().and_then(|p| p.switches_per_tx)
                }));
                t.transactions = ok
                    .iter()
                    .filter_map(|r| r.pgbench.as_ref().map(|p| p.transactions))
                    .sum();
                t.failed = ok
                    .iter()
                    .filter_map(|r| r.pgbench.as_ref().map(|p| p.failed))
                    .sum();
            }
            ScenarioKind::Idle => {
                let idle: Vec<&IdleResult> = ok.iter().filter_map(|r| r.idle.as_ref()).collect();
                // Memory: the worst round, not the median. An allocator keeps what an
                // earlier round's connections freed, so later rounds under-count the growth.
                let rss: Vec<f64> = idle.iter().filter_map(|i| i.rss_kib_per_conn).collect();
                let pss: Vec<f64> = idle.iter().filter_map(|i| i.pss_kib_per_conn).collect();
                t.rss_kib_per_conn = rss.iter().copied().reduce(f64::max);
                t.pss_kib_per_conn = pss.iter().copied().reduce(f64::max);
                t.connect_s = median(&idle.iter().map(|i| i.connect_s).collect::<Vec<_>>());
                t.connections = idle.iter().map(|i| i.established).min();
                t.spread = spread(&rss);
                t.failed = idle
                    .iter()
                    .map(|i| u64::from(i.requested - i.established.min(i.requested)))
                    .sum();
            }
        }
        t.noisy = is_noisy(t.spread);
        out.push(t);
    }
    let base = |k: TargetKind| out.iter().find(|t| t.target == Some(k)).and_then(|t| t.tps);
    let (direct, null, bouncer) = (
        base(TargetKind::Direct),
        base(TargetKind::NullRelay),
        base(TargetKind::Pgbouncer),
    );
    for t in &mut out {
        t.ratio_direct = ratio(t.tps, direct);
        t.ratio_null_relay = ratio(t.tps, null);
        t.ratio_pgbouncer = ratio(t.tps, bouncer);
    }
    out
}

fn find(s: &ScenarioReport, k: TargetKind) -> Option<&TargetSummary> {
    s.summary.iter().find(|t| t.target == Some(k))
}

/// The headline throughput scenarios: pgbench -S, simple or prepared, 8 clients, no -C.
fn is_headline_8(s: &Scenario) -> bool {
    s.kind == ScenarioKind::Pgbench
        && s.script == Script::SelectOnly
        && !s.connect
        && s.clients == 8
        && matches!(s.mode, QueryMode::Simple | QueryMode::Prepared)
}

fn is_single_client(s: &Scenario) -> bool {
    s.kind == ScenarioKind::Pgbench && !s.connect && s.clients == 1
}

/// A goal "measured ≥ bar" (or ≤ when `higher_is_better` is false).
#[allow(clippy::too_many_arguments)]
fn goal(
    text: &str,
    scenario: &str,
    target: TargetKind,
    measured: Option<f64>,
    bar: f64,
    unit: &str,
    higher_is_better: bool,
    noisy: bool,
    missing: &str,
) -> Goal {
    let (met, margin) = match measured {
        None => (None, format!("not measured: {missing}")),
        Some(m) => {
            let met = if higher_is_better { m >= bar } else { m <= bar };
            let diff = (m - bar).abs();
            let word = if met { "met by" } else { "missed by" };
            let margin = match unit {
                "×" => format!(
                    "{word} {:.3}× ({:.1} % of the bar)",
                    diff,
                    diff / bar * 100.0
                ),
                "µs" => format!("{word} {diff:.0} µs"),
                "KiB" => format!("{word} {diff:.1} KiB"),
                _ => format!("{word} {diff:.2} {unit}"),
            };
            (Some(met), margin)
        }
    };
    Goal {
        goal: text.to_owned(),
        scenario: scenario.to_owned(),
        target: Some(target),
        measured,
        bar: Some(bar),
        unit: unit.to_owned(),
        met,
        margin,
        noisy,
    }
}

fn not_measured(text: &str, why: &str) -> Goal {
    Goal {
        goal: text.to_owned(),
        scenario: "—".into(),
        target: None,
        measured: None,
        bar: None,
        unit: String::new(),
        met: None,
        margin: format!("not measured: {why}"),
        noisy: false,
    }
}

const G_OFF_NULL: &str = "Tollgate-off ≥ 0.95× null relay TPS at 8 clients";
const G_ON_NULL: &str = "Tollgate-on ≥ 0.90× null relay TPS at 8 clients";
const G_ON_BOUNCER: &str = "Tollgate-on ≥ 1.2× pgbouncer TPS at 8 clients";
const G_P50: &str = "1 client: Tollgate's added p50 latency over direct ≤ 25 µs";
const G_P99: &str = "1 client: Tollgate's added p99 latency over direct ≤ 60 µs";
const G_CPU: &str = "Proxy CPU per transaction below pgbouncer's";
const G_MEM: &str = "2,000 idle connections at ≤ 64 KiB each (RSS growth per connection)";

/// Evaluates the issue's performance targets on the summaries.
pub fn goals(scenarios: &[ScenarioReport]) -> Vec<Goal> {
    let mut out = Vec::new();
    let tollgates = [TargetKind::TollgateOff, TargetKind::TollgateOn];
    // Targets that ran at all: a goal whose target or baseline is absent gets one
    // "not measured" line instead of one per scenario.
    let present: std::collections::BTreeSet<TargetKind> = scenarios
        .iter()
        .flat_map(|s| s.targets.iter().copied())
        .collect();

    // Throughput at 8 clients.
    let headline: Vec<&ScenarioReport> = scenarios
        .iter()
        .filter(|s| is_headline_8(&s.scenario))
        .collect();
    type Pick = fn(&TargetSummary) -> Option<f64>;
    let tps_goals: [(&str, TargetKind, Pick, f64, TargetKind); 3] = [
        (
            G_OFF_NULL,
            TargetKind::TollgateOff,
            |t| t.ratio_null_relay,
            0.95,
            TargetKind::NullRelay,
        ),
        (
            G_ON_NULL,
            TargetKind::TollgateOn,
            |t| t.ratio_null_relay,
            0.90,
            TargetKind::NullRelay,
        ),
        (
            G_ON_BOUNCER,
            TargetKind::TollgateOn,
            |t| t.ratio_pgbouncer,
            1.2,
            TargetKind::Pgbouncer,
        ),
    ];
    for (text, target, pick, bar, baseline) in tps_goals {
        if headline.is_empty() {
            out.push(not_measured(
                text,
                "no pgbench -S simple/prepared scenario at 8 clients",
            ));
            continue;
        }
        if let Some(absent) = [target, baseline]
            .into_iter()
            .find(|t| !present.contains(t))
        {
            out.push(not_measured(text, &format!("{absent} not in this run")));
            continue;
        }
        for s in &headline {
            let t = find(s, target);
            let b = find(s, baseline);
            let missing = if t.is_none() {
                format!("{target} not in this run")
            } else {
                format!("{baseline} not in this run")
            };
            out.push(goal(
                text,
                &s.scenario.name,
                target,
                t.and_then(pick),
                bar,
                "×",
                true,
                t.is_some_and(|t| t.noisy) || b.is_some_and(|b| b.noisy),
                &missing,
            ));
        }
    }

    // Added latency at 1 client.
    let single: Vec<&ScenarioReport> = scenarios
        .iter()
        .filter(|s| is_single_client(&s.scenario))
        .collect();
    type Lat = fn(&TargetSummary) -> Option<f64>;
    let lat_goals: [(&str, Lat, f64); 2] =
        [(G_P50, |t| t.p50_us, 25.0), (G_P99, |t| t.p99_us, 60.0)];
    for (text, pick, bar) in lat_goals {
        if single.is_empty() {
            out.push(not_measured(text, "no 1-client pgbench scenario"));
            continue;
        }
        if !present.contains(&TargetKind::Direct) {
            out.push(not_measured(text, "direct not in this run"));
            continue;
        }
        for s in &single {
            let direct = find(s, TargetKind::Direct);
            for target in tollgates {
                let t = find(s, target);
                let added = match (t.and_then(pick), direct.and_then(pick)) {
                    (Some(a), Some(b)) => Some(a - b),
                    _ => None,
                };
                out.push(goal(
                    text,
                    &s.scenario.name,
                    target,
                    added,
                    bar,
                    "µs",
                    false,
                    t.is_some_and(|t| t.noisy) || direct.is_some_and(|d| d.noisy),
                    if t.is_none() {
                        "target not in this run"
                    } else {
                        "direct not in this run"
                    },
                ));
            }
        }
    }

    // CPU per transaction against pgbouncer.
    let mut cpu_any = false;
    for s in scenarios
        .iter()
        .filter(|s| s.scenario.kind == ScenarioKind::Pgbench)
    {
        let Some(bouncer) = find(s, TargetKind::Pgbouncer).and_then(|b| b.cpu_us_per_tx) else {
            continue;
        };
        for target in tollgates {
            let Some(t) = find(s, target) else { continue };
            cpu_any = true;
            let mut g = goal(
                G_CPU,
                &s.scenario.name,
                target,
                t.cpu_us_per_tx,
                bouncer,
                "µs/tx",
                false,
                t.noisy,
                "no CPU figure",
            );
            if let (Some(m), Some(met)) = (t.cpu_us_per_tx, g.met) {
                // Strictly below, and say it relative to pgbouncer.
                let met = met && m < bouncer;
                g.met = Some(met);
                g.margin = format!(
                    "{m:.1} vs {bouncer:.1} µs/tx: {:.0} % {}",
                    ((m - bouncer) / bouncer * 100.0).abs(),
                    if m < bouncer { "below" } else { "above" }
                );
            }
            out.push(g);
        }
    }
    if !cpu_any {
        out.push(not_measured(
            G_CPU,
            "pgbouncer and Tollgate not both in a pgbench scenario",
        ));
    }

    // Memory per idle connection.
    let idle: Vec<&ScenarioReport> = scenarios
        .iter()
        .filter(|s| s.scenario.kind == ScenarioKind::Idle)
        .collect();
    if idle.is_empty() {
        out.push(not_measured(G_MEM, "no idle scenario"));
    }
    for s in idle {
        for target in tollgates {
            let Some(t) = find(s, target) else { continue };
            let mut g = goal(
                G_MEM,
                &s.scenario.name,
                target,
                t.rss_kib_per_conn,
                64.0,
                "KiB",
                false,
                t.noisy,
                "no memory figure",
            );
            if s.scenario.connections < 2000 {
                g.margin.push_str(&format!(
                    " (at {} connections; the target is stated for 2,000)",
                    s.scenario.connections
                ));
            }
            out.push(g);
        }
    }
    out
}

/// The correctness checks quick mode gates on (and a full run reports).
pub fn checks(scenarios: &[ScenarioReport], incomplete: Option<&str>) -> Checks {
    let mut c = Checks::default();
    if let Some(why) = incomplete {
        c.failures
            .push(format!("the run stopped before its plan was done: {why}"));
    }
    for s in scenarios {
        for r in &s.runs {
            c.runs += 1;
            let at = format!("{} / {} / round {}", s.scenario.name, r.target, r.round);
            if let Some(e) = &r.error {
                c.failures.push(format!("{at}: {}", first_line(e)));
                continue;
            }
            if let Some(p) = &r.pgbench {
                if p.exit_code != Some(0) || p.summary.aborted {
                    c.failures.push(format!(
                        "{at}: pgbench exit {:?}{}: {}",
                        p.exit_code,
                        if p.summary.aborted { " (aborted)" } else { "" },
                        first_line(&p.stderr_tail)
                    ));
                }
                if p.failed > 0 {
                    c.failures
                        .push(format!("{at}: {} failed transactions", p.failed));
                }
                if r.target.is_tollgate() && p.transactions == 0 {
                    c.failures
                        .push(format!("{at}: Tollgate processed no transaction"));
                }
            }
            if let Some(i) = &r.idle {
                if i.established < i.requested {
                    c.failures.push(format!(
                        "{at}: {} of {} connections opened ({})",
                        i.established,
                        i.requested,
                        i.first_error.as_deref().unwrap_or("no error text")
                    ));
                }
                if i.alive_after_hold < i.established {
                    c.failures.push(format!(
                        "{at}: {} of {} held connections no longer answered",
                        i.established - i.alive_after_hold,
                        i.established
                    ));
                }
            }
        }
    }
    c.passed = c.failures.is_empty() && c.runs > 0;
    if c.runs == 0 {
        c.failures.push("no run completed".into());
    }
    c
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Recomputes summaries, goals and checks, then writes report.json, report.md and the
/// plots into `dir`.
pub fn render(report: &mut Report, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for s in &mut report.scenarios {
        s.summary = summarise(s);
    }
    report.goals = goals(&report.scenarios);
    report.checks = checks(&report.scenarios, report.meta.incomplete.as_deref());
    write_json(report, dir)?;
    let plots = crate::plot::draw_all(report, dir);
    let md = markdown(report, &plots);
    fs::write(dir.join("report.md"), md).context("writing report.md")?;
    Ok(())
}

/// Writes report.json (also used after every run, so a crash keeps what was measured).
pub fn write_json(report: &Report, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    let path = dir.join("report.json");
    let tmp = dir.join("report.json.partial");
    fs::write(&tmp, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a report.json written by a run.
pub fn load(dir: &Path) -> anyhow::Result<Report> {
    let path = dir.join("report.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// 12345.6 -> "12,346".
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "—".into())
}

fn times(v: Option<f64>) -> String {
    opt(v, |x| format!("{x:.2}×"))
}

fn us(v: Option<f64>) -> String {
    opt(v, |x| format!("{x:.0}"))
}

fn spread_cell(t: &TargetSummary) -> String {
    match t.spread {
        Some(s) if t.noisy => format!("{:.1} % **noisy**", s * 100.0),
        Some(s) => format!("{:.1} %", s * 100.0),
        None => "— (1 round)".into(),
    }
}

fn target_what(k: TargetKind) -> &'static str {
    match k {
        TargetKind::Direct => "PostgreSQL itself, no proxy (the baseline)",
        TargetKind::NullRelay => "haproxy, mode tcp, nbthread 1: relays bytes and nothing else",
        TargetKind::Pgbouncer => "pgbouncer, SCRAM auth_file; pool mode per scenario",
        TargetKind::TollgateOff => "Tollgate, token login, every feature off (`[tollgate_off]`)",
        TargetKind::TollgateOn => "Tollgate, token login, every feature on (`[tollgate_full]`)",
    }
}

pub fn describe_target(k: TargetKind) -> String {
    target_what(k).to_owned()
}

fn markdown(r: &Report, plots: &BTreeMap<String, Vec<String>>) -> String {
    let mut m = String::new();
    let w = &mut m;
    let _ = writeln!(
        w,
        "# Tollgate load test{}\n",
        if r.meta.quick { " (quick)" } else { "" }
    );
    if let Some(why) = &r.meta.incomplete {
        let _ = writeln!(
            w,
            "> **Incomplete run**: {why}. The figures below are the runs that finished.\n"
        );
    }
    let met = r.goals.iter().filter(|g| g.met == Some(true)).count();
    let missed = r.goals.iter().filter(|g| g.met == Some(false)).count();
    let _ = writeln!(
        w,
        "{} × {} × up to {}, {} s measured per pgbench run after {} s warm-up. \
         Targets: {met} met, {missed} missed, {} not measured. Checks: {}.\n",
        plural(r.settings.rounds as usize, "round"),
        plural(r.scenarios.len(), "scenario"),
        plural(r.targets.len(), "target"),
        r.settings.duration_s,
        r.settings.warmup_s,
        r.goals.iter().filter(|g| g.met.is_none()).count(),
        if r.checks.passed {
            format!(
                "all {} runs completed with zero failed transactions",
                r.checks.runs
            )
        } else {
            format!("**{} failed**", r.checks.failures.len())
        }
    );
    if r.meta.machine.nproc <= 2 {
        let _ = writeln!(
            w,
            "Client (pgbench), proxy and PostgreSQL share {} cores here: ratios are meaningful within this run, \
             absolute numbers are not a capacity figure.\n",
            r.meta.machine.nproc
        );
    }

    // Run details.
    let _ = writeln!(w, "## Run\n");
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| date (UTC) | {} |", r.meta.date);
    let _ = writeln!(w, "| command | `{}` |", r.meta.command);
    let _ = writeln!(
        w,
        "| git commit | `{}`{} |",
        r.meta.git_commit,
        if r.meta.git_dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    );
    let mc = &r.meta.machine;
    let _ = writeln!(
        w,
        "| machine | {} cores (nproc), {}, {:.1} GiB, kernel {} |",
        mc.nproc, mc.cpu_model, mc.memory_gib, mc.kernel
    );
    for (k, v) in &r.meta.versions {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(w, "| scenario file | {} |", r.meta.scenario_file);
    let s = &r.settings;
    let _ = writeln!(
        w,
        "| settings | {}, {} s + {} s warm-up per run, {} s pause, pgbench scale {}, Tollgate shards {} (0 = one per core), RUST_LOG={} |",
        plural(s.rounds as usize, "round"), s.duration_s, s.warmup_s, s.pause_s, s.scale, s.tollgate_shards, s.tollgate_rust_log
    );
    if r.meta.elapsed_s > 0.0 {
        let _ = writeln!(w, "| wall time | {:.0} s |", r.meta.elapsed_s);
    }
    let _ = writeln!(w);

    // Goals.
    let _ = writeln!(w, "## Targets (the issue's goals)\n");
    let _ = writeln!(
        w,
        "| goal | scenario | target | measured | bar | met | by how much |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for g in &r.goals {
        let measured = match (g.measured, g.unit.as_str()) {
            (None, _) => "—".into(),
            (Some(v), "×") => format!("{v:.3}×"),
            (Some(v), "µs") => format!("{v:+.0} µs"),
            (Some(v), u) => format!("{v:.1} {u}"),
        };
        let bar = match (g.bar, g.unit.as_str()) {
            (None, _) => "—".into(),
            (Some(b), "×") => format!("≥ {b:.2}×"),
            (Some(b), "µs/tx") => format!("< {b:.1} µs/tx (pgbouncer)"),
            (Some(b), u) => format!("≤ {b:.0} {u}"),
        };
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {measured} | {bar} | {met} | {}{} |",
            g.goal,
            g.scenario,
            g.target.map(|t| t.key()).unwrap_or("—"),
            g.margin,
            if g.noisy { " (noisy)" } else { "" }
        );
    }
    let _ = writeln!(w);

    // Targets under test.
    let _ = writeln!(w, "## What ran\n");
    let _ = writeln!(w, "| target | what | where |\n|---|---|---|");
    for t in &r.targets {
        let _ = writeln!(w, "| {} | {} | {} |", t.target, t.what, t.address);
    }
    let _ = writeln!(w);
    let described = |s: &str| {
        if s.is_empty() {
            "(not described in the scenario file)".to_owned()
        } else {
            s.to_owned()
        }
    };
    let _ = writeln!(
        w,
        "- `tollgate-off`: {}\n- `tollgate-on`: {}\n",
        described(&r.settings.tollgate_off),
        described(&r.settings.tollgate_full)
    );
    if let (Some(off), Some(on)) = (
        r.settings.tollgate_configs.get("tollgate-off"),
        r.settings.tollgate_configs.get("tollgate-on"),
    ) {
        let _ = writeln!(
            w,
            "<details><summary>Tollgate configurations</summary>\n\n```toml\n{off}```\n\n```toml\n{on}```\n</details>\n"
        );
    }

    // Scenarios.
    let _ = writeln!(w, "## Scenarios\n");
    for sc in &r.scenarios {
        let _ = writeln!(w, "### {}\n", sc.scenario.name);
        let pool = if sc.targets.contains(&TargetKind::Pgbouncer) {
            format!(
                ", pgbouncer in {} mode",
                sc.scenario.pgbouncer_pool_mode.as_str()
            )
        } else {
            String::new()
        };
        match sc.scenario.kind {
            ScenarioKind::Pgbench => {
                let _ = writeln!(
                    w,
                    "`{}`, {} s measured after {} s warm-up{pool}.\n",
                    sc.describe, sc.duration_s, sc.warmup_s
                );
                let _ = writeln!(
                    w,
                    "| target | TPS | × direct | × null relay | × pgbouncer | p50 µs | p99 µs | p99.9 µs | proxy CPU µs/tx | proxy switches/tx | spread | failed |"
                );
                let _ = writeln!(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|");
                for t in &sc.summary {
                    let target = t.target.map(|k| k.key()).unwrap_or("?");
                    let errors = if t.errors > 0 {
                        format!(" ({} run(s) failed)", t.errors)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        w,
                        "| {target}{errors} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        opt(t.tps, thousands),
                        times(t.ratio_direct),
                        times(t.ratio_null_relay),
                        times(t.ratio_pgbouncer),
                        us(t.p50_us),
                        us(t.p99_us),
                        us(t.p999_us),
                        opt(t.cpu_us_per_tx, |x| format!("{x:.1}")),
                        opt(t.switches_per_tx, |x| format!("{x:.2}")),
                        spread_cell(t),
                        t.failed
                    );
                }
            }
            ScenarioKind::Idle => {
                let _ = writeln!(w, "{}{pool}.\n", sc.describe);
                let _ = writeln!(
                    w,
                    "| target | connections held | RSS KiB/conn (worst round) | PSS KiB/conn (worst round) | time to open all | spread |"
                );
                let _ = writeln!(w, "|---|--:|--:|--:|--:|---|");
                for t in &sc.summary {
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | {} | {} | {} |",
                        t.target.map(|k| k.key()).unwrap_or("?"),
                        t.connections
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "—".into()),
                        opt(t.rss_kib_per_conn, |x| format!("{x:.1}")),
                        opt(t.pss_kib_per_conn, |x| format!("{x:.1}")),
                        opt(t.connect_s, |x| format!("{x:.1} s")),
                        spread_cell(t)
                    );
                }
            }
        }
        let _ = writeln!(w);
        if let Some(files) = plots.get(&sc.scenario.name) {
            for f in files {
                let _ = writeln!(w, "![{f}]({f})");
            }
            let _ = writeln!(w);
        }
    }
    if let Some(files) = plots.get("") {
        let _ = writeln!(w, "### All scenarios relative to direct\n");
        for f in files {
            let _ = writeln!(w, "![{f}]({f})\n");
        }
    }

    // Checks.
    let _ = writeln!(w, "## Checks\n");
    if r.checks.passed {
        let _ = writeln!(
            w,
            "All {} runs completed with zero failed transactions; every Tollgate run processed transactions; \
             every idle connection opened and still answered after the hold.\n",
            r.checks.runs
        );
    } else {
        let _ = writeln!(
            w,
            "{} problem(s) in {} runs:\n",
            r.checks.failures.len(),
            r.checks.runs
        );
        for f in &r.checks.failures {
            let _ = writeln!(w, "- {f}");
        }
        let _ = writeln!(w);
    }

    // Method.
    let _ = writeln!(w, "## How it was measured\n");
    let _ = writeln!(
        w,
        "- Targets run interleaved: in every round each scenario runs against every target, the target order \
         rotating by one place per round, so drift (caches, autovacuum, a neighbour's build) spreads over all targets.\n\
         - Each pgbench run lasts warm-up + measured seconds (`-T`). Only transactions that completed inside the \
         measured window count: TPS = those transactions / window; p50/p99/p99.9 are nearest-rank percentiles of \
         their latencies, from pgbench's per-transaction logs (`-l`, 3rd column, µs).\n\
         - Proxy CPU per transaction: utime + stime of the proxy process (all threads, /proc/PID/stat) sampled at \
         both ends of the window, divided by the window's transactions. `direct` has no proxy, so none.\n\
         - Proxy switches per transaction: the voluntary and involuntary context switches of the proxy's threads \
         (/proc/PID/task/*/status) over the same window, per transaction. Each one is a sleep and a wake-up or a \
         preemption, the largest cost a relay has in the kernel; compare them with the CPU column.\n\
         - Across rounds each figure is the median (memory: the worst round); spread = (max − min) / median of TPS (of memory for idle \
         scenarios), **noisy** above 10 %. Ratios divide medians.\n\
         - Idle scenarios open the connections from this process (tokio-postgres: startup, login with the token \
         or SCRAM), wait 1 s, read Rss/Pss of the proxy from /proc/PID/smaps_rollup, hold, then check each still \
         answers `SELECT 1`. Memory per connection = (after − before) / connections held, the worst round (an allocator keeps what an \
         earlier round freed, so later rounds under-count). Each Tollgate client \
         connection has its own upstream connection, so PostgreSQL runs with max_connections ≥ connections + 100; \
         pgbouncer runs those scenarios in transaction mode (its upstream-light mode).\n\
         - PostgreSQL runs with fsync, synchronous_commit and full_page_writes off: the load test measures the \
         proxies, not the disk.\n"
    );

    // Raw runs.
    let _ = writeln!(w, "## Every run\n");
    let _ = writeln!(
        w,
        "| scenario | round | order | target | TPS | p50 µs | p99 µs | p99.9 µs | CPU µs/tx | failed | note |"
    );
    let _ = writeln!(w, "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|---|");
    for sc in &r.scenarios {
        for run in &sc.runs {
            let (tps, p50, p99, p999, cpu, failed) = match &run.pgbench {
                Some(p) => (
                    thousands(p.tps),
                    us(p.latency.map(|l| l.p50_us)),
                    us(p.latency.map(|l| l.p99_us)),
                    us(p.latency.map(|l| l.p999_us)),
                    opt(p.cpu_us_per_tx, |x| format!("{x:.1}")),
                    p.failed.to_string(),
                ),
                None => Default::default(),
            };
            let note = match (&run.error, &run.idle) {
                (Some(e), _) => first_line(e).replace('|', "/"),
                (None, Some(i)) => format!(
                    "{} held, RSS {} KiB/conn",
                    i.established,
                    opt(i.rss_kib_per_conn, |x| format!("{x:.1}"))
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {tps} | {p50} | {p99} | {p999} | {cpu} | {failed} | {note} |",
                sc.scenario.name, run.round, run.position, run.target
            );
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Meta data
// ---------------------------------------------------------------------------------------------

/// The machine the run is on.
pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Model" | "cpu model").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_kib = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into()),
        cpu_model,
        memory_gib: memory_kib / 1024.0 / 1024.0,
    }
}

/// (commit, dirty) of the repository, "unknown" outside git.
pub fn git_state(repo: &Path) -> (String, bool) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    (commit, dirty)
}

/// Seconds since the epoch as "YYYY-MM-DDTHH:MM:SSZ".
pub fn utc_timestamp(epoch_s: u64) -> String {
    let days = (epoch_s / 86_400) as i64;
    let secs = epoch_s % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

pub fn now_epoch_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgbench::{Latency, Summary};
    use crate::scenario::ScenarioFile;

    fn pg_run(target: TargetKind, round: u32, tps: f64, p50: f64, cpu: Option<f64>) -> Run {
        Run {
            target,
            round,
            position: 1,
            pgbench: Some(PgbenchResult {
                command: String::new(),
                exit_code: Some(0),
                summary: Summary::default(),
                window_s: 10.0,
                transactions: (tps * 10.0) as u64,
                tps,
                failed: 0,
                latency: Some(Latency {
                    p50_us: p50,
                    p99_us: p50 * 2.0,
                    p999_us: p50 * 4.0,
                    mean_us: p50,
                    max_us: p50 * 10.0,
                }),
                proxy_cpu_s: cpu.map(|c| c * tps * 10.0 / 1e6),
                cpu_us_per_tx: cpu,
                // Varies by round, so that the summary must take the median.
                switches_per_tx: cpu.map(|c| c / 10.0 + f64::from(round) / 100.0),
                stderr_tail: String::new(),
            }),
            idle: None,
            error: None,
        }
    }

    fn scenario(name: &str, clients: u32, mode: QueryMode) -> Scenario {
        let mut s = ScenarioFile::parse(
            "duration_s = 1\ntargets = [\"direct\"]\n[[scenario]]\nname = \"x\"\nkind = \"pgbench\"\n",
        )
        .unwrap()
        .scenarios
        .remove(0);
        s.name = name.into();
        s.clients = clients;
        s.mode = mode;
        s
    }

    fn report(runs: Vec<Run>, clients: u32) -> ScenarioReport {
        ScenarioReport {
            scenario: scenario("s", clients, QueryMode::Simple),
            describe: String::new(),
            duration_s: 10,
            warmup_s: 1,
            targets: TargetKind::ALL.to_vec(),
            runs,
            summary: Vec::new(),
        }
    }

    #[test]
    fn medians_ratios_and_noise() {
        use TargetKind::*;
        let mut runs = Vec::new();
        for (round, d, n, b, off, on) in [
            (1, 1000.0, 900.0, 800.0, 880.0, 700.0),
            (2, 1010.0, 910.0, 810.0, 870.0, 800.0),
            (3, 990.0, 905.0, 790.0, 875.0, 900.0),
        ] {
            runs.push(pg_run(Direct, round, d, 100.0, None));
            runs.push(pg_run(NullRelay, round, n, 110.0, Some(10.0)));
            runs.push(pg_run(Pgbouncer, round, b, 120.0, Some(20.0)));
            runs.push(pg_run(TollgateOff, round, off, 115.0, Some(12.0)));
            runs.push(pg_run(TollgateOn, round, on, 130.0, Some(25.0)));
        }
        let s = report(runs, 8);
        let sum = summarise(&s);
        let get = |k| sum.iter().find(|t| t.target == Some(k)).unwrap();
        assert_eq!(get(Direct).tps, Some(1000.0));
        assert_eq!(get(NullRelay).ratio_direct, Some(0.905));
        let off = get(TollgateOff);
        assert!((off.ratio_null_relay.unwrap() - 875.0 / 905.0).abs() < 1e-12);
        assert!((off.ratio_pgbouncer.unwrap() - 875.0 / 800.0).abs() < 1e-12);
        assert!(!off.noisy);
        // 700..900 around 800: 25 % spread.
        let on = get(TollgateOn);
        assert!(on.noisy);
        assert!((on.spread.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(get(Direct).cpu_us_per_tx, None);
        assert_eq!(on.p99_us, Some(260.0));
        assert_eq!(get(Direct).switches_per_tx, None);
        assert!((get(Pgbouncer).switches_per_tx.unwrap() - 2.02).abs() < 1e-12);
    }

    #[test]
    fn goals_are_judged_against_their_bars() {
        use TargetKind::*;
        let mut runs = Vec::new();
        for round in 1..=2 {
            runs.push(pg_run(Direct, round, 1000.0, 100.0, None));
            runs.push(pg_run(NullRelay, round, 1000.0, 110.0, Some(10.0)));
            runs.push(pg_run(Pgbouncer, round, 800.0, 120.0, Some(20.0)));
            runs.push(pg_run(TollgateOff, round, 960.0, 115.0, Some(12.0)));
            runs.push(pg_run(TollgateOn, round, 940.0, 140.0, Some(25.0)));
        }
        let mut eight = report(runs.clone(), 8);
        eight.summary = summarise(&eight);
        let mut one = report(runs, 1);
        one.scenario.name = "one".into();
        one.summary = summarise(&one);
        let gs = goals(&[eight, one]);
        let find = |text: &str, target: TargetKind, scenario: &str| {
            gs.iter()
                .find(|g| g.goal == text && g.target == Some(target) && g.scenario == scenario)
                .unwrap_or_else(|| panic!("no goal {text} {target} {scenario}"))
                .clone()
        };
        let g = find(G_OFF_NULL, TollgateOff, "s");
        assert_eq!(g.met, Some(true));
        assert!(g.margin.starts_with("met by 0.010×"), "{}", g.margin);
        assert_eq!(find(G_ON_NULL, TollgateOn, "s").met, Some(true));
        // 940 / 800 = 1.175 < 1.2.
        let g = find(G_ON_BOUNCER, TollgateOn, "s");
        assert_eq!(g.met, Some(false));
        assert!(g.margin.starts_with("missed by 0.025×"), "{}", g.margin);
        // p50 added: off 15 µs (met), on 40 µs (missed); p99 added 30 / 80 µs.
        assert_eq!(find(G_P50, TollgateOff, "one").measured, Some(15.0));
        assert_eq!(find(G_P50, TollgateOn, "one").met, Some(false));
        assert_eq!(find(G_P99, TollgateOff, "one").met, Some(true));
        assert_eq!(find(G_P99, TollgateOn, "one").margin, "missed by 20 µs");
        // CPU: 12 < 20 met, 25 > 20 missed.
        assert_eq!(find(G_CPU, TollgateOff, "s").met, Some(true));
        assert_eq!(find(G_CPU, TollgateOn, "s").met, Some(false));
        // No idle scenario: memory not measured.
        assert!(gs.iter().any(|g| g.goal == G_MEM && g.met.is_none()));
    }

    #[test]
    fn checks_catch_failures_and_idle_tollgate() {
        use TargetKind::*;
        let mut bad = pg_run(TollgateOn, 1, 0.0, 0.0, None);
        if let Some(p) = bad.pgbench.as_mut() {
            p.transactions = 0;
        }
        let mut failed = pg_run(Direct, 1, 100.0, 1.0, None);
        if let Some(p) = failed.pgbench.as_mut() {
            p.failed = 3;
        }
        let s = report(
            vec![pg_run(TollgateOff, 1, 100.0, 1.0, Some(1.0)), bad, failed],
            8,
        );
        let c = checks(&[s], None);
        assert!(!c.passed);
        assert_eq!(c.runs, 3);
        assert_eq!(c.failures.len(), 2, "{:?}", c.failures);
        let ok = report(vec![pg_run(TollgateOff, 1, 100.0, 1.0, Some(1.0))], 8);
        assert!(checks(std::slice::from_ref(&ok), None).passed);
        assert!(!checks(&[ok], Some("interrupted")).passed);
        assert!(!checks(&[], None).passed);
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(shell_quote("--log-prefix=/tmp/x"), "--log-prefix=/tmp/x");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_738_863), "2026-11-27T00:21:03Z");
    }
}
