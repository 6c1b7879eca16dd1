//! `tollctl policy`: what a policy author runs before merging — compile a policy directory,
//! run its tests, evaluate an input, and explain what the gateway would decide for a
//! statement (fingerprint, facts, decision), with the same code the gateway runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use tollgate::identity::Principal;
use tollgate::policy::{PolicySet, TestOutcome};
use tollgate::session::decide::{policy_input, sql_request};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Compile a policy directory and list its rules.
    Check {
        /// Policy directory (*.rego, *_test.rego, *.json).
        dir: PathBuf,
    },
    /// Run every `test_*` rule in a policy directory, like `opa test`.
    Test {
        dir: PathBuf,
        /// Print every test, not only failures.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Evaluate `data.tollgate.decision` for an input document.
    Eval {
        dir: PathBuf,
        /// JSON file with the input document (`-` for standard input).
        #[arg(long)]
        input: PathBuf,
    },
    /// Show the fingerprint, facts and decision the gateway would make for a statement.
    Explain {
        dir: PathBuf,
        /// The SQL text, as the client would send it.
        #[arg(long)]
        sql: String,
        /// The principal's subject.
        #[arg(long)]
        sub: String,
        /// The principal's groups, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "")]
        groups: Vec<String>,
        /// The connection name (what clients put in dbname).
        #[arg(long)]
        connection: String,
        /// A connection label, `key=value` (repeatable); taken from --config when given there.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A gateway config to read the connection's labels from.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The principal's kind.
        #[arg(long, default_value = "human")]
        kind: String,
    },
}

pub fn run(command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Check { dir } => {
            let set = load(&dir)?;
            println!(
                "{}: compiled, version {:016x}",
                dir.display(),
                set.version()
            );
            for rule in set.rules() {
                println!("  {rule}");
            }
            Ok(())
        }
        PolicyCommand::Test { dir, verbose } => {
            let set = load(&dir)?;
            let report = set.run_tests();
            for r in &report.results {
                let shown = match &r.outcome {
                    TestOutcome::Pass if !verbose => continue,
                    TestOutcome::Pass => "PASS".to_owned(),
                    TestOutcome::Fail => "FAIL".to_owned(),
                    TestOutcome::Error(e) => format!("ERROR: {e}"),
                };
                println!(
                    "{}:{}: {}: {shown} ({:.1?})",
                    r.file.display(),
                    r.line,
                    r.rule,
                    r.duration
                );
            }
            println!("{}", "-".repeat(60));
            println!(
                "PASS: {}/{}  FAIL: {}  ERROR: {}  ({:.1?})",
                report.passed(),
                report.results.len(),
                report.failed(),
                report.errors(),
                report.duration
            );
            if report.results.is_empty() {
                eprintln!("warning: no test_* rules in {}", dir.display());
            }
            if !report.is_success() {
                bail!(
                    "{} policy test(s) did not pass",
                    report.results.len() - report.passed()
                );
            }
            Ok(())
        }
        PolicyCommand::Eval { dir, input } => {
            let set = load(&dir)?;
            let text = if input.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&input)
                    .with_context(|| format!("reading {}", input.display()))?
            };
            let input: serde_json::Value =
                serde_json::from_str(&text).context("the input is not JSON")?;
            let mut engine = set.engine()?;
            println!("{}", serde_json::to_string_pretty(&engine.decide(&input))?);
            Ok(())
        }
        PolicyCommand::Explain {
            dir,
            sql,
            sub,
            groups,
            connection,
            labels,
            config,
            kind,
        } => {
            let set = load(&dir)?;
            let mut label_map = BTreeMap::new();
            if let Some(path) = config {
                let config = tollgate::config::Config::load(&path)?;
                let c = config.connection(&connection).with_context(|| {
                    format!("{} has no connection {connection:?}", path.display())
                })?;
                label_map.extend(c.labels.clone());
            }
            for label in labels {
                let (k, v) = label
                    .split_once('=')
                    .with_context(|| format!("--label {label:?} is not key=value"))?;
                label_map.insert(k.to_owned(), v.to_owned());
            }
            let principal = Principal {
                user: sub.clone(),
                sub,
                groups: groups.into_iter().filter(|g| !g.is_empty()).collect(),
                kind,
            };
            let request = sql_request(&sql);
            let input = policy_input(
                &principal,
                &json!({"name": connection, "protocol": "postgres", "labels": label_map}),
                &json!({"client_addr": "127.0.0.1", "application_name": "tollctl"}),
                request,
            );
            let decision = set.engine()?.decide(&input);
            println!(
                "fingerprint: {}",
                input["request"]["fingerprint"].as_str().unwrap_or("")
            );
            println!(
                "facts:\n{}",
                serde_json::to_string_pretty(&input["request"]["statements"])?
            );
            println!("decision:\n{}", serde_json::to_string_pretty(&decision)?);
            Ok(())
        }
    }
}

fn load(dir: &std::path::Path) -> Result<std::sync::Arc<PolicySet>> {
    PolicySet::load(dir).with_context(|| format!("loading policies from {}", dir.display()))
}
