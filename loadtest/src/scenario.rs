//! The scenario file: which targets run, which workloads (pgbench runs and idle-connection
//! holds), for how long and how many rounds, and how the Tollgate targets are configured.
//!
//! `loadtest/scenarios/full.toml` is the full run and documents every field;
//! `loadtest/scenarios/quick.toml` is CI's quick check. Both are also compiled into the
//! binary, so `--quick` works from any directory.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::targets::TargetKind;

/// The built-in full scenario file.
pub const FULL: &str = include_str!("../scenarios/full.toml");
/// The built-in quick scenario file.
pub const QUICK: &str = include_str!("../scenarios/quick.toml");

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// One line shown at the top of the report.
    #[serde(default)]
    pub description: String,
    /// Rounds: every (scenario, target) pair runs once per round, targets in a rotated order.
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    /// Measured seconds of each pgbench run, after the warm-up.
    pub duration_s: u64,
    /// Seconds at the start of each pgbench run whose transactions and CPU are discarded.
    #[serde(default = "default_warmup_s")]
    pub warmup_s: u64,
    /// Seconds of pause between two runs (lets the previous run's connections go away).
    #[serde(default = "default_pause_s")]
    pub pause_s: f64,
    /// `pgbench -i -s` scale of the test database (1 = 100,000 accounts, ~16 MB).
    #[serde(default = "default_scale")]
    pub scale: u32,
    /// Targets started and measured, in the order of round 1.
    pub targets: Vec<TargetKind>,
    /// The throwaway PostgreSQL server.
    #[serde(default)]
    pub postgres: PostgresSettings,
    /// Both Tollgate targets.
    #[serde(default)]
    pub tollgate: TollgateSettings,
    /// What turns every feature off for the `tollgate-off` target.
    #[serde(default)]
    pub tollgate_off: TollgateVariant,
    /// What turns every feature on for the `tollgate-on` target.
    #[serde(default)]
    pub tollgate_full: TollgateVariant,
    /// The workloads, run in this order within a round.
    #[serde(rename = "scenario")]
    pub scenarios: Vec<Scenario>,
}

fn default_rounds() -> u32 {
    3
}
fn default_warmup_s() -> u64 {
    5
}
fn default_pause_s() -> f64 {
    1.0
}
fn default_scale() -> u32 {
    10
}

/// `[postgres]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// Extra `postgresql.conf` lines (e.g. "shared_buffers = '256MB'"). `max_connections` is
    /// set from the largest idle scenario unless given here.
    #[serde(default)]
    pub conf: Vec<String>,
}

/// `[tollgate]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TollgateSettings {
    /// `gateway.shards` (0 = one per core).
    #[serde(default)]
    pub shards: usize,
    /// `RUST_LOG` of the gateway processes ("warn" keeps per-connection lines out of the run).
    #[serde(default = "default_rust_log")]
    pub rust_log: String,
    /// Groups in the clients' token (the policies' `principal.groups`).
    #[serde(default = "default_token_groups")]
    pub token_groups: Vec<String>,
    /// TOML merged into the generated configuration of both Tollgate targets.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_rust_log() -> String {
    "warn".into()
}
fn default_token_groups() -> Vec<String> {
    vec!["app".into()]
}

impl Default for TollgateSettings {
    fn default() -> Self {
        TollgateSettings {
            shards: 0,
            rust_log: default_rust_log(),
            token_groups: default_token_groups(),
            config: toml::Table::new(),
        }
    }
}

/// `[tollgate_off]` and `[tollgate_full]`: what a Tollgate target adds to the generated
/// minimal configuration (listener, local token issuer, one `[[connection]]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TollgateVariant {
    /// What the variant switches off or on, in a sentence for the report.
    #[serde(default)]
    pub description: String,
    /// TOML merged over the top level of the generated configuration: new sections
    /// (`[policy]`, `[record]` ...) are added, keys of existing ones replaced.
    #[serde(default)]
    pub config: toml::Table,
    /// TOML merged into the `[[connection]]` the load goes through (e.g. labels).
    #[serde(default)]
    pub connection: toml::Table,
}

/// What a scenario does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// A pgbench run.
    Pgbench,
    /// Opens and holds idle client connections; measures the proxy's memory per connection.
    Idle,
}

/// pgbench's built-in scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Script {
    /// `-S`: one primary-key SELECT per transaction.
    #[default]
    SelectOnly,
    /// The default script: three UPDATEs, a SELECT and an INSERT in a transaction.
    TpcbLike,
}

/// pgbench `-M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueryMode {
    #[default]
    Simple,
    Extended,
    Prepared,
}

impl QueryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryMode::Simple => "simple",
            QueryMode::Extended => "extended",
            QueryMode::Prepared => "prepared",
        }
    }
}

/// pgbouncer's pool mode for a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolMode {
    /// A server connection per client for the whole session (what Tollgate does).
    #[default]
    Session,
    /// A server connection per transaction: few upstream connections for many clients.
    Transaction,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// `[[scenario]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Unique name, used in file names: lowercase letters, digits and '-'.
    pub name: String,
    pub kind: ScenarioKind,
    /// pgbench: built-in script.
    #[serde(default)]
    pub script: Script,
    /// pgbench: `-M`.
    #[serde(default)]
    pub mode: QueryMode,
    /// pgbench: `-c`.
    #[serde(default = "default_clients")]
    pub clients: u32,
    /// pgbench: `-j` (default: clients, at most the number of cores).
    #[serde(default)]
    pub threads: Option<u32>,
    /// pgbench: `-C`, a new connection for every transaction (connection churn).
    #[serde(default)]
    pub connect: bool,
    /// idle: connections to open and hold.
    #[serde(default)]
    pub connections: u32,
    /// idle: seconds to hold them once all are open.
    #[serde(default = "default_hold_s")]
    pub hold_s: u64,
    /// idle: connections being opened at once.
    #[serde(default = "default_connect_concurrency")]
    pub connect_concurrency: u32,
    /// pgbouncer pool mode for this scenario.
    #[serde(default)]
    pub pgbouncer_pool_mode: PoolMode,
    /// Only these targets (default: all of the file's targets).
    #[serde(default)]
    pub targets: Option<Vec<TargetKind>>,
    /// Overrides the file's `duration_s` for this scenario.
    #[serde(default)]
    pub duration_s: Option<u64>,
    /// Overrides the file's `warmup_s` for this scenario.
    #[serde(default)]
    pub warmup_s: Option<u64>,
}

fn default_clients() -> u32 {
    1
}
fn default_hold_s() -> u64 {
    3
}
fn default_connect_concurrency() -> u32 {
    32
}

impl Scenario {
    /// The pgbench command line options this scenario stands for (without connection
    /// details), or a description of an idle hold.
    pub fn describe(&self, threads: u32) -> String {
        match self.kind {
            ScenarioKind::Pgbench => {
                let mut s = String::from("pgbench");
                s.push_str(match self.script {
                    Script::SelectOnly => " -S",
                    Script::TpcbLike => " -b tpcb-like",
                });
                s.push_str(&format!(" -M {}", self.mode.as_str()));
                if self.connect {
                    s.push_str(" -C");
                }
                s.push_str(&format!(" -c {} -j {}", self.clients, threads));
                s
            }
            ScenarioKind::Idle => format!(
                "{} idle connections (startup + login, then nothing) held {} s",
                self.connections, self.hold_s
            ),
        }
    }

    /// pgbench `-j`.
    pub fn threads(&self, cores: u32) -> u32 {
        self.threads
            .unwrap_or_else(|| self.clients.min(cores.max(1)))
            .clamp(1, self.clients.max(1))
    }
}

/// Command-line overrides applied after loading.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub rounds: Option<u32>,
    pub duration_s: Option<u64>,
    pub warmup_s: Option<u64>,
    /// Keep only these targets.
    pub targets: Option<Vec<TargetKind>>,
    /// Keep only scenarios with these names.
    pub scenarios: Option<Vec<String>>,
}

impl ScenarioFile {
    /// Reads `path`, or the built-in file when `path` is `None`.
    pub fn load(path: Option<&Path>, quick: bool) -> anyhow::Result<(ScenarioFile, String)> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading scenario file {}", p.display()))?,
                p.display().to_string(),
            ),
            None if quick => (QUICK.to_owned(), "built-in quick.toml".to_owned()),
            None => (FULL.to_owned(), "built-in full.toml".to_owned()),
        };
        let file = Self::parse(&text).with_context(|| format!("scenario file {origin}"))?;
        Ok((file, origin))
    }

    pub fn parse(text: &str) -> anyhow::Result<ScenarioFile> {
        let file: ScenarioFile = toml::from_str(text)?;
        file.validate()?;
        Ok(file)
    }

    /// Applies command-line overrides, then validates again.
    pub fn apply(&mut self, o: &Overrides) -> anyhow::Result<()> {
        if let Some(r) = o.rounds {
            self.rounds = r;
        }
        if let Some(d) = o.duration_s {
            self.duration_s = d;
            for s in &mut self.scenarios {
                s.duration_s = None;
            }
        }
        if let Some(w) = o.warmup_s {
            self.warmup_s = w;
            for s in &mut self.scenarios {
                s.warmup_s = None;
            }
        }
        if let Some(keep) = &o.targets {
            self.targets.retain(|t| keep.contains(t));
            for s in &mut self.scenarios {
                if let Some(ts) = &mut s.targets {
                    ts.retain(|t| keep.contains(t));
                }
            }
        }
        if let Some(names) = &o.scenarios {
            for n in names {
                if !self.scenarios.iter().any(|s| &s.name == n) {
                    bail!("--scenario {n:?}: no such scenario in the file");
                }
            }
            self.scenarios.retain(|s| names.contains(&s.name));
        }
        self.validate()
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.rounds == 0 {
            bail!("rounds must be at least 1");
        }
        if self.duration_s == 0 {
            bail!("duration_s must be at least 1");
        }
        if self.scale == 0 {
            bail!("scale must be at least 1");
        }
        if self.targets.is_empty() {
            bail!("no targets");
        }
        let mut seen_targets = BTreeSet::new();
        for t in &self.targets {
            if !seen_targets.insert(*t) {
                bail!("target {} is listed twice", t.key());
            }
        }
        if self.scenarios.is_empty() {
            bail!("no [[scenario]]");
        }
        let mut names = BTreeSet::new();
        for s in &self.scenarios {
            let ctx = || format!("scenario {:?}", s.name);
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                bail!(
                    "scenario name {:?}: use lowercase letters, digits and '-'",
                    s.name
                );
            }
            if !names.insert(s.name.as_str()) {
                bail!("scenario name {:?} is used twice", s.name);
            }
            if let Some(ts) = &s.targets {
                for t in ts {
                    if !self.targets.contains(t) {
                        bail!(
                            "{}: target {} is not among the file's targets",
                            ctx(),
                            t.key()
                        );
                    }
                }
            }
            match s.kind {
                ScenarioKind::Pgbench => {
                    if s.clients == 0 {
                        bail!("{}: clients must be at least 1", ctx());
                    }
                    if s.connections != 0 {
                        bail!("{}: `connections` is for idle scenarios", ctx());
                    }
                    if s.mode == QueryMode::Prepared
                        && s.pgbouncer_pool_mode == PoolMode::Transaction
                        && self.scenario_targets(s).contains(&TargetKind::Pgbouncer)
                    {
                        bail!(
                            "{}: pgbench -M prepared needs pgbouncer in session mode (this pgbouncer keeps no prepared statements across transactions)",
                            ctx()
                        );
                    }
                    if s.duration_s == Some(0) {
                        bail!("{}: duration_s must be at least 1", ctx());
                    }
                }
                ScenarioKind::Idle => {
                    if s.connections == 0 {
                        bail!("{}: idle scenarios need `connections`", ctx());
                    }
                    if s.connect_concurrency == 0 {
                        bail!("{}: connect_concurrency must be at least 1", ctx());
                    }
                }
            }
        }
        Ok(())
    }

    /// The targets a scenario runs against, in the file's order.
    pub fn scenario_targets(&self, s: &Scenario) -> Vec<TargetKind> {
        match &s.targets {
            Some(ts) => self
                .targets
                .iter()
                .copied()
                .filter(|t| ts.contains(t))
                .collect(),
            None => self.targets.clone(),
        }
    }

    pub fn duration_s(&self, s: &Scenario) -> u64 {
        s.duration_s.unwrap_or(self.duration_s)
    }

    pub fn warmup_s(&self, s: &Scenario) -> u64 {
        s.warmup_s.unwrap_or(self.warmup_s)
    }

    /// The most client connections any idle scenario opens (0 without idle scenarios).
    pub fn max_idle_connections(&self) -> u32 {
        self.scenarios
            .iter()
            .filter(|s| s.kind == ScenarioKind::Idle)
            .map(|s| s.connections)
            .max()
            .unwrap_or(0)
    }

    /// True when some scenario uses pgbouncer in transaction mode.
    pub fn needs_pool_mode(&self, mode: PoolMode) -> bool {
        self.scenarios.iter().any(|s| {
            s.pgbouncer_pool_mode == mode
                && self.scenario_targets(s).contains(&TargetKind::Pgbouncer)
        })
    }
}

/// Merges `overlay` into `base`: tables merge key by key (recursively), anything else in
/// `overlay` replaces what `base` had.
pub fn merge_toml(base: &mut toml::Table, overlay: &toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_toml(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Replaces `{work}` and `{repo}` in every string of `table` (paths to policy directories,
/// recording directories ... in the Tollgate configuration).
pub fn substitute(table: &mut toml::Table, work: &Path, repo: &Path) {
    fn walk(v: &mut toml::Value, work: &str, repo: &str) {
        match v {
            toml::Value::String(s) => *s = s.replace("{work}", work).replace("{repo}", repo),
            toml::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, work, repo)),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| walk(x, work, repo)),
            _ => {}
        }
    }
    let (w, r) = (work.to_string_lossy(), repo.to_string_lossy());
    for (_, v) in table.iter_mut() {
        walk(v, &w, &r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_files_are_valid() {
        let full = ScenarioFile::parse(FULL).unwrap();
        assert!(full.rounds >= 3);
        assert!((20..=30).contains(&full.duration_s));
        assert!(full.max_idle_connections() >= 2000);
        assert_eq!(full.targets.len(), 5);
        let quick = ScenarioFile::parse(QUICK).unwrap();
        assert_eq!(quick.rounds, 1);
        assert_eq!(
            quick.targets,
            vec![
                TargetKind::Direct,
                TargetKind::TollgateOff,
                TargetKind::TollgateOn
            ]
        );
        assert_eq!(quick.max_idle_connections(), 200);
    }

    const MINIMAL: &str = r#"
        duration_s = 5
        targets = ["direct", "pgbouncer"]
        [[scenario]]
        name = "s"
        kind = "pgbench"
    "#;

    #[test]
    fn defaults_and_overrides() {
        let mut f = ScenarioFile::parse(MINIMAL).unwrap();
        assert_eq!(f.rounds, 3);
        assert_eq!(f.scenarios[0].clients, 1);
        assert_eq!(f.scenarios[0].mode, QueryMode::Simple);
        f.apply(&Overrides {
            rounds: Some(2),
            duration_s: Some(10),
            targets: Some(vec![TargetKind::Direct]),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!((f.rounds, f.duration_s), (2, 10));
        assert_eq!(f.targets, vec![TargetKind::Direct]);
        assert!(f
            .apply(&Overrides {
                scenarios: Some(vec!["nope".into()]),
                ..Overrides::default()
            })
            .is_err());
    }

    #[test]
    fn rejects_mistakes() {
        let bad = |extra: &str| ScenarioFile::parse(&format!("{MINIMAL}{extra}")).is_err();
        assert!(bad("typo = 1\n"));
        assert!(bad("[[scenario]]\nname = \"s\"\nkind = \"pgbench\"\n"));
        assert!(bad(
            "[[scenario]]\nname = \"Bad Name\"\nkind = \"pgbench\"\n"
        ));
        assert!(bad("[[scenario]]\nname = \"i\"\nkind = \"idle\"\n"));
        assert!(bad(
            "[[scenario]]\nname = \"p\"\nkind = \"pgbench\"\nmode = \"prepared\"\npgbouncer_pool_mode = \"transaction\"\n"
        ));
        assert!(bad(
            "[[scenario]]\nname = \"t\"\nkind = \"pgbench\"\ntargets = [\"tollgate-on\"]\n"
        ));
    }

    #[test]
    fn merge_and_substitute() {
        let mut base: toml::Table =
            toml::from_str("[gateway]\nlisten = \"x\"\nshards = 0\n").unwrap();
        let overlay: toml::Table =
            toml::from_str("[gateway]\nshards = 2\n[policy]\ndir = \"{repo}/policies\"\n").unwrap();
        merge_toml(&mut base, &overlay);
        substitute(&mut base, Path::new("/w"), Path::new("/r"));
        assert_eq!(base["gateway"]["listen"].as_str(), Some("x"));
        assert_eq!(base["gateway"]["shards"].as_integer(), Some(2));
        assert_eq!(base["policy"]["dir"].as_str(), Some("/r/policies"));
    }

    #[test]
    fn threads_default_to_clients_capped_by_cores() {
        let f = ScenarioFile::parse(MINIMAL).unwrap();
        let mut s = f.scenarios[0].clone();
        s.clients = 8;
        assert_eq!(s.threads(2), 2);
        s.clients = 1;
        assert_eq!(s.threads(2), 1);
        s.threads = Some(4);
        assert_eq!(s.threads(2), 1);
    }
}
