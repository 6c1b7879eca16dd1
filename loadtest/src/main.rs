//! `tollgate-loadtest`: side-by-side load runs of PostgreSQL direct, a null relay (haproxy),
//! pgbouncer and Tollgate (every feature off, and on), with a report.
//!
//!   tollgate-loadtest run --hermetic [--quick] [--scenarios FILE] [--out DIR] [--rounds N] [--duration S]
//!   tollgate-loadtest report DIR      # re-render DIR/report.md and the plots from DIR/report.json
//!
//! Modules, in the order a run goes through them: `scenario` (the TOML file), `hermetic`
//! (installing, building, starting and always stopping the targets), `targets` (how a client
//! reaches each), `runner` (rounds and progress), `pgbench` and `idle` (the two kinds of
//! workload), `procstat` (/proc CPU and memory), `stats`, `report` and `plot`.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

mod hermetic;
mod idle;
mod pgbench;
mod plot;
mod procstat;
mod report;
mod runner;
mod scenario;
mod stats;
mod targets;

use scenario::{Overrides, ScenarioFile};
use targets::TargetKind;

/// Side-by-side load runs against PostgreSQL direct, haproxy, pgbouncer and Tollgate.
#[derive(Debug, Parser)]
#[command(name = "tollgate-loadtest", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scenarios against the targets and write report.md, report.json and plots.
    Run(RunArgs),
    /// Re-render report.md and the plots of DIR from DIR/report.json.
    Report {
        /// A directory written by `run` (holding report.json).
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Start every target here: a throwaway PostgreSQL, haproxy, pgbouncer, Tollgate (off
    /// and on); install what is missing, and stop all of it afterwards.
    #[arg(long)]
    hermetic: bool,
    /// CI's quick check: loadtest/scenarios/quick.toml, and exit 1 unless every run
    /// completed with zero failed transactions. No speed thresholds.
    #[arg(long)]
    quick: bool,
    /// Scenario file [default: loadtest/scenarios/full.toml, or quick.toml with --quick].
    #[arg(long, value_name = "FILE")]
    scenarios: Option<PathBuf>,
    /// Output directory [default: <target dir>/loadtest/<UTC time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Rounds (overrides the file).
    #[arg(long, value_name = "N")]
    rounds: Option<u32>,
    /// Measured seconds per pgbench run (overrides the file).
    #[arg(long, value_name = "S")]
    duration: Option<u64>,
    /// Warm-up seconds per pgbench run (overrides the file).
    #[arg(long, value_name = "S")]
    warmup: Option<u64>,
    /// Only these targets (comma separated: direct, null-relay, pgbouncer, tollgate-off,
    /// tollgate-on).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    targets: Option<Vec<String>>,
    /// Only these scenarios (comma separated names from the file).
    #[arg(long = "scenario", value_delimiter = ',', value_name = "LIST")]
    only: Option<Vec<String>>,
    /// Use this tollgate binary instead of building target/release/tollgate.
    #[arg(long, value_name = "PATH")]
    tollgate_bin: Option<PathBuf>,
    /// Use this tollctl binary [default: next to --tollgate-bin].
    #[arg(long, value_name = "PATH")]
    tollctl_bin: Option<PathBuf>,
    /// Install missing haproxy/pgbouncer/PostgreSQL with apt-get [default: on when root].
    #[arg(long, overrides_with = "no_install")]
    allow_install: bool,
    /// Never install anything; fail with the command to run instead.
    #[arg(long)]
    no_install: bool,
    /// Keep the work directory (configs, logs, the cluster) for a post-mortem.
    #[arg(long)]
    keep: bool,
    /// The Tollgate source tree [default: the one this binary was built from].
    #[arg(long, value_name = "DIR", hide = true)]
    repo: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Report { dir } => rerender(&dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tollgate-loadtest: error: {e:#}");
            if hermetic::interrupted() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The source tree: --repo, else the workspace this binary was built in, else ".".
fn repo_root(arg: Option<PathBuf>) -> PathBuf {
    if let Some(r) = arg {
        return r;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built.join("Cargo.toml").is_file() && built.join("dataplane").is_dir() {
        return built.canonicalize().unwrap_or(built);
    }
    PathBuf::from(".")
}

fn command_line() -> String {
    std::env::args()
        .map(|a| report::shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.hermetic {
        bail!(
            "only hermetic mode exists so far: pass --hermetic (the load test starts and stops every target itself)"
        );
    }
    let repo = repo_root(args.repo.clone());
    let scenario_path = match &args.scenarios {
        Some(p) => Some(p.clone()),
        None => {
            let name = if args.quick {
                "quick.toml"
            } else {
                "full.toml"
            };
            let p = repo.join("loadtest/scenarios").join(name);
            p.is_file().then_some(p)
        }
    };
    let (mut file, origin) = ScenarioFile::load(scenario_path.as_deref(), args.quick)?;
    let targets = match &args.targets {
        Some(list) => Some(
            list.iter()
                .map(|t| {
                    TargetKind::parse(t).with_context(|| {
                        format!("--targets: unknown target {t:?} (direct, null-relay, pgbouncer, tollgate-off, tollgate-on)")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        None => None,
    };
    file.apply(&Overrides {
        rounds: args.rounds,
        duration_s: args.duration,
        warmup_s: args.warmup,
        targets,
        scenarios: args.only.clone(),
    })
    .context("scenario file with the command-line overrides")?;

    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let stamp = report::utc_timestamp(report::now_epoch_s()).replace(':', "-");
            let suffix = if args.quick { "-quick" } else { "" };
            hermetic::target_dir(&repo)
                .join("loadtest")
                .join(format!("{stamp}{suffix}"))
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    hermetic::install_signal_handler()?;
    match hermetic::raise_nofile_limit() {
        Ok(limit) if u64::from(file.max_idle_connections()) * 2 + 512 > limit => eprintln!(
            "warning: RLIMIT_NOFILE is {limit}: too low for {} idle connections",
            file.max_idle_connections()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise RLIMIT_NOFILE: {e:#}"),
    }
    let is_root = nix::unistd::geteuid().is_root();
    let opts = runner::Options {
        quick: args.quick,
        out: out.clone(),
        command: command_line(),
        scenario_origin: origin,
        hermetic: hermetic::Options {
            repo,
            tollgate_bin: args.tollgate_bin,
            tollctl_bin: args.tollctl_bin,
            allow_install: !args.no_install && (args.allow_install || is_root),
            keep: args.keep,
        },
    };
    let mut rep = runner::new_report(&file, &opts);
    let outcome = runner::run(&file, &opts, &mut rep);
    let failed = match outcome {
        Ok(()) => false,
        // Setup failed before any run: nothing to report.
        Err(e) if rep.scenarios.iter().all(|s| s.runs.is_empty()) => return Err(e),
        Err(e) => {
            rep.meta.incomplete = Some(format!("{e:#}"));
            true
        }
    };
    report::render(&mut rep, &out)?;
    print_outcome(&rep, &out);
    if hermetic::interrupted() {
        return Ok(ExitCode::from(130));
    }
    if failed || !rep.checks.passed {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(rep: &report::Report, out: &Path) {
    eprintln!("\nreport: {}", out.join("report.md").display());
    for g in &rep.goals {
        let verdict = match g.met {
            Some(true) => "met   ",
            Some(false) => "MISSED",
            None => "—     ",
        };
        eprintln!(
            "  {verdict} {} [{} {}]: {}{}",
            g.goal,
            g.scenario,
            g.target.map(|t| t.key()).unwrap_or("—"),
            g.margin,
            if g.noisy { " (noisy)" } else { "" }
        );
    }
    if rep.checks.passed {
        eprintln!(
            "checks: all {} runs completed with zero failed transactions{}",
            rep.checks.runs,
            if rep.meta.quick {
                " (quick mode judges nothing else)"
            } else {
                ""
            }
        );
    } else {
        eprintln!("checks: {} problem(s):", rep.checks.failures.len());
        for f in &rep.checks.failures {
            eprintln!("  - {f}");
        }
    }
}

fn rerender(dir: &Path) -> anyhow::Result<ExitCode> {
    let mut rep = report::load(dir)?;
    report::render(&mut rep, dir)?;
    print_outcome(&rep, dir);
    Ok(ExitCode::SUCCESS)
}
