//! Configuration: the typed, validated TOML file that `tollgate run --config` reads.
//!
//! Every field has a doc comment and a default where one makes sense; unknown fields are an
//! error so that a typo never silently leaves a control unset. `Config::load` parses and then
//! `validate`s, so the rest of the gateway only ever sees a checked configuration.
//! `deploy/examples/tollgate.toml` documents every field for operators.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Errors found while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config is not valid: {0}")]
    Invalid(String),
    #[error("cannot read the secret of connection {connection:?}: {reason}")]
    Secret { connection: String, reason: String },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, shards, TLS and shutdown behaviour.
    pub gateway: GatewayConfig,
    /// How client identity tokens are checked.
    pub identity: IdentityConfig,
    /// Policies that decide every statement.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The upstream services clients may reach, selected by name.
    #[serde(default, rename = "connection")]
    pub connections: Vec<ConnectionConfig>,
    /// Session recording to zstd Parquet.
    #[serde(default)]
    pub record: RecordConfig,
}

/// `[record]`: every session event, written to zstd Parquet under `dir` (see
/// `dataplane/src/record/README.md` for the layout and the schema).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Record sessions. `false` records nothing (the gateway says so at start-up).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Archive root: `DIR/date=YYYY-MM-DD/hour=HH/<instance>-<seq>.parquet`.
    #[serde(default = "default_record_dir")]
    pub dir: PathBuf,
    /// Name of this gateway in file names; defaults to the host name. One running gateway per
    /// name and `dir` (a second is refused at start).
    #[serde(default)]
    pub instance: Option<String>,
    /// Result bytes (as the client received them) kept per statement; the rest is counted,
    /// not kept, and the statement's result is flagged truncated.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: usize,
    /// Milliseconds after which an event is durable against a crash of the gateway
    /// (recovered into Parquet at the next start).
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// A Parquet file is closed and a new one begun past this many bytes...
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// ... or this many seconds (and always at the turn of an hour): how long the newest
    /// events may wait before DuckDB and `tollctl` can read them.
    #[serde(default = "default_rotate_interval_s")]
    pub rotate_interval_s: u64,
    /// Events each shard may have queued for the recorder; a session that finds its
    /// shard's queue full waits (no event is ever dropped).
    #[serde(default = "default_record_queue")]
    pub queue_capacity: usize,
    /// zstd level of the Parquet pages: 1 (the default) to 19, or -7 to -1 for zstd's fast
    /// levels. Higher levels make smaller archives for more recorder CPU; the fast levels the
    /// reverse (on 8 KiB results, level -3 writes about 15 % more per CPU-second and 60 %
    /// more bytes than level 1). Readers need no setting: every level is standard zstd.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: default_record_dir(),
            instance: None,
            max_result_bytes: default_max_result_bytes(),
            flush_interval_ms: default_flush_interval_ms(),
            rotate_bytes: default_rotate_bytes(),
            rotate_interval_s: default_rotate_interval_s(),
            queue_capacity: default_record_queue(),
            zstd_level: default_zstd_level(),
        }
    }
}

fn default_record_dir() -> PathBuf {
    PathBuf::from("recordings")
}
fn default_max_result_bytes() -> usize {
    1024 * 1024
}
fn default_flush_interval_ms() -> u64 {
    1000
}
fn default_rotate_bytes() -> u64 {
    128 * 1024 * 1024
}
fn default_rotate_interval_s() -> u64 {
    300
}
fn default_zstd_level() -> i32 {
    1
}
fn default_record_queue() -> usize {
    8192
}

/// `[policy]`: the Rego policy set that decides every statement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Decide statements with the policies. `false` relays every statement unchecked: only
    /// for measuring the gateway without its policy stage; the gateway warns at start-up.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Directory of `*.rego` files (with their `*_test.rego` tests) and `*.json` data.
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
    /// Decisions cached per shard (least recently used are evicted).
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
    /// Milliseconds between checks of the policy directory for changes (at least 100);
    /// SIGHUP reloads at the next check.
    #[serde(default = "default_watch_interval_ms")]
    pub watch_interval_ms: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: default_policy_dir(),
            cache_capacity: default_cache_capacity(),
            watch_interval_ms: default_watch_interval_ms(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}
fn default_cache_capacity() -> usize {
    10_000
}
fn default_watch_interval_ms() -> u64 {
    1000
}

/// `[gateway]`: where the data plane listens and how it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address every shard binds with SO_REUSEPORT, e.g. "127.0.0.1:15432".
    pub listen: SocketAddr,
    /// Number of shards (executor threads); 0 means one per available core.
    #[serde(default)]
    pub shards: usize,
    /// PEM certificate chain for client TLS; clients may use TLS when it is set.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Accept a token (a secret) over plaintext when the client is on a loopback address.
    /// Everywhere else secrets travel only over TLS.
    #[serde(default)]
    pub allow_plaintext_secrets_on_loopback: bool,
    /// Seconds sessions may keep running after SIGTERM/SIGINT before they are closed.
    #[serde(default = "default_drain_timeout_s")]
    pub drain_timeout_s: u64,
    /// Largest protocol message accepted from a client or an upstream, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Seconds a client has to finish start-up and authentication.
    #[serde(default = "default_auth_timeout_s")]
    pub auth_timeout_s: u64,
    /// Seconds allowed for connecting and authenticating to an upstream.
    #[serde(default = "default_upstream_connect_timeout_s")]
    pub upstream_connect_timeout_s: u64,
    /// io_uring registered buffer memory per shard, in KiB. It counts against
    /// RLIMIT_MEMLOCK, so keep shards * io_memory_kib below `ulimit -l`.
    #[serde(default = "default_io_memory_kib")]
    pub io_memory_kib: usize,
}

fn default_drain_timeout_s() -> u64 {
    30
}
fn default_max_message_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_auth_timeout_s() -> u64 {
    30
}
fn default_upstream_connect_timeout_s() -> u64 {
    10
}
fn default_io_memory_kib() -> usize {
    512
}

/// `[identity]`: the identity provider whose tokens clients present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Expected `iss` claim. An `https://` issuer is an OIDC provider: its discovery document
    /// and JWKS are fetched and refreshed in the background. Any other value is a local issuer
    /// whose public keys are read from `jwks_file`.
    pub issuer: String,
    /// Expected `aud` claim.
    pub audience: String,
    /// JWKS file with the issuer's public keys (required for a non-https issuer; for an https
    /// issuer it is an optional pinned key set used before the first fetch succeeds).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// PEM CA bundle trusted for an https issuer instead of the system roots (for a private
    /// identity provider).
    #[serde(default)]
    pub issuer_ca_file: Option<PathBuf>,
    /// Claim holding the principal's groups (a list of strings).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claim that the client's start-up user name must equal ("sub" unless set).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Seconds of clock skew tolerated for `exp` and `nbf`.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// Seconds between background JWKS refreshes for an https issuer.
    #[serde(default = "default_jwks_refresh_s")]
    pub jwks_refresh_s: u64,
    /// Least seconds between two refreshes triggered by an unknown `kid`.
    #[serde(default = "default_jwks_min_refresh_s")]
    pub jwks_min_refresh_s: u64,
}

fn default_groups_claim() -> String {
    "groups".into()
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_leeway_s() -> u64 {
    30
}
fn default_jwks_refresh_s() -> u64 {
    300
}
fn default_jwks_min_refresh_s() -> u64 {
    10
}

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Postgres,
}

/// TLS towards the upstream, named as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS, without checking the server certificate.
    Require,
    /// TLS, checking the certificate chain against `upstream_ca` (or the system roots)
    /// and the host name.
    VerifyFull,
}

/// `[[connection]]`: one upstream that clients reach by putting `name` in `dbname`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// What the client puts in `dbname` to reach this upstream.
    pub name: String,
    /// Upstream protocol.
    pub protocol: Protocol,
    /// Upstream address, "host:port".
    pub upstream: String,
    /// Database name on the upstream server.
    pub database: String,
    /// Upstream user the gateway logs in as.
    pub user: String,
    /// File holding the upstream password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the upstream password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// TLS towards the upstream.
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// PEM CA bundle used with `upstream_tls = "verify-full"`.
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// Free-form labels the policies see (e.g. env = "prod").
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An upstream secret. Its `Debug` never prints the value, so it cannot reach a log line.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The secret itself; call only where it is sent to the upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|e| match e {
            Error::Parse { message, .. } => Error::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, Error> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: consistent TLS settings, unique names, one secret source.
    pub fn validate(&self) -> Result<(), Error> {
        let g = &self.gateway;
        if g.tls_cert.is_some() != g.tls_key.is_some() {
            return Err(Error::Invalid(
                "gateway.tls_cert and gateway.tls_key must be set together".into(),
            ));
        }
        if g.max_message_bytes < 1024 {
            return Err(Error::Invalid(
                "gateway.max_message_bytes must be at least 1024".into(),
            ));
        }
        if g.io_memory_kib < 64 {
            return Err(Error::Invalid(
                "gateway.io_memory_kib must be at least 64".into(),
            ));
        }
        let id = &self.identity;
        if id.issuer.is_empty() || id.audience.is_empty() {
            return Err(Error::Invalid(
                "identity.issuer and identity.audience must not be empty".into(),
            ));
        }
        if !id.issuer.starts_with("https://") && id.jwks_file.is_none() {
            return Err(Error::Invalid(format!(
                "identity.jwks_file is required for the local issuer {:?} (only an https:// issuer fetches its keys)",
                id.issuer
            )));
        }
        if self.policy.enabled && self.policy.cache_capacity == 0 {
            return Err(Error::Invalid(
                "policy.cache_capacity must be at least 1".into(),
            ));
        }
        let r = &self.record;
        if r.enabled {
            if r.flush_interval_ms == 0 || r.rotate_interval_s == 0 || r.queue_capacity == 0 {
                return Err(Error::Invalid(
                    "record.flush_interval_ms, record.rotate_interval_s and record.queue_capacity must be at least 1".into(),
                ));
            }
            crate::record::zstd_level(r.zstd_level).map_err(Error::Invalid)?;
            if r.rotate_bytes < 1024 * 1024 {
                return Err(Error::Invalid(
                    "record.rotate_bytes must be at least 1048576".into(),
                ));
            }
            if let Some(name) = &r.instance {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                {
                    return Err(Error::Invalid(format!(
                        "record.instance {name:?} may hold only letters, digits, '_', '.' and '-'"
                    )));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.connections {
            if c.name.is_empty() {
                return Err(Error::Invalid("a connection has an empty name".into()));
            }
            if !names.insert(c.name.as_str()) {
                return Err(Error::Invalid(format!(
                    "connection name {:?} is used twice",
                    c.name
                )));
            }
            if c.password_file.is_some() && c.password_env.is_some() {
                return Err(Error::Invalid(format!(
                    "connection {:?}: set password_file or password_env, not both",
                    c.name
                )));
            }
            if c.upstream_ca.is_some() && c.upstream_tls != UpstreamTls::VerifyFull {
                return Err(Error::Invalid(format!(
                    "connection {:?}: upstream_ca only applies to upstream_tls = \"verify-full\"",
                    c.name
                )));
            }
            if !c.upstream.contains(':') {
                return Err(Error::Invalid(format!(
                    "connection {:?}: upstream must be host:port, got {:?}",
                    c.name, c.upstream
                )));
            }
        }
        Ok(())
    }

    /// Finds a connection by the name a client asked for.
    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.gateway.drain_timeout_s)
    }
}

impl ConnectionConfig {
    /// Reads the upstream secret from its file or environment variable (empty when neither
    /// is set, for `trust` upstreams). Errors never include the secret.
    pub fn load_secret(&self) -> Result<Secret, Error> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Secret {
                connection: self.name.clone(),
                reason: format!("reading {}: {e}", path.display()),
            })?;
            let trimmed = text.trim_end_matches(['\n', '\r']);
            return Ok(Secret::new(trimmed.to_owned()));
        }
        if let Some(var) = &self.password_env {
            let value = std::env::var(var).map_err(|_| Error::Secret {
                connection: self.name.clone(),
                reason: format!("environment variable {var} is not set"),
            })?;
            return Ok(Secret::new(value));
        }
        Ok(Secret::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [gateway]
        listen = "127.0.0.1:15432"
        [identity]
        issuer = "tollgate-local"
        audience = "tollgate"
        jwks_file = "/tmp/jwks.json"
        [[connection]]
        name = "orders"
        protocol = "postgres"
        upstream = "127.0.0.1:5432"
        database = "orders"
        user = "orders_app"
        password_env = "ORDERS_PW"
        labels = { env = "prod" }
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL).expect("valid");
        assert_eq!(c.gateway.shards, 0);
        assert_eq!(c.gateway.drain_timeout_s, 30);
        assert_eq!(c.identity.groups_claim, "groups");
        let orders = c.connection("orders").expect("orders");
        assert_eq!(orders.upstream_tls, UpstreamTls::Disable);
        assert_eq!(orders.labels["env"], "prod");
        assert!(c.connection("other").is_none());
    }

    #[test]
    fn unknown_field_is_rejected() {
        let text = MINIMAL.replace("shards", "shardz");
        let text = text.replace(
            "listen = \"127.0.0.1:15432\"",
            "listen = \"127.0.0.1:15432\"\nshardz = 2",
        );
        let err = Config::parse(&text).expect_err("typo must fail");
        assert!(err.to_string().contains("shardz"), "{err}");
    }

    #[test]
    fn tls_cert_without_key_is_rejected() {
        let text = MINIMAL.replace(
            "listen = \"127.0.0.1:15432\"",
            "listen = \"127.0.0.1:15432\"\ntls_cert = \"/c.pem\"",
        );
        let err = Config::parse(&text).expect_err("must fail");
        assert!(err.to_string().contains("tls_key"), "{err}");
    }

    #[test]
    fn duplicate_connection_names_are_rejected() {
        let dup = format!(
            "{MINIMAL}\n[[connection]]\nname = \"orders\"\nprotocol = \"postgres\"\nupstream = \"h:1\"\ndatabase = \"d\"\nuser = \"u\"\n"
        );
        let err = Config::parse(&dup).expect_err("must fail");
        assert!(err.to_string().contains("used twice"), "{err}");
    }

    #[test]
    fn zstd_levels_outside_zstds_ranges_are_rejected() {
        let with = |level: &str| format!("{MINIMAL}\n[record]\nzstd_level = {level}\n");
        for ok in ["1", "19", "-1", "-7"] {
            let c = Config::parse(&with(ok)).expect(ok);
            assert_eq!(c.record.zstd_level.to_string(), ok);
        }
        assert_eq!(Config::parse(MINIMAL).expect("valid").record.zstd_level, 1);
        for bad in ["0", "20", "-8"] {
            let err = Config::parse(&with(bad)).expect_err(bad);
            assert!(
                err.to_string()
                    .contains("record.zstd_level must be 1 to 19, or -7 to -1")
                    && err.to_string().contains(&format!("(got {bad})")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_documented_example_is_a_valid_config() {
        let text = include_str!("../../deploy/examples/tollgate.toml");
        let c = Config::parse(text).expect("deploy/examples/tollgate.toml must stay valid");
        assert!(!c.connections.is_empty());
    }

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn secret_from_env_and_missing_env() {
        let c = Config::parse(MINIMAL).expect("valid");
        let orders = c.connection("orders").expect("orders");
        // SAFETY-free: set_var is safe on edition 2021; the variable name is unique to this test.
        std::env::set_var("ORDERS_PW", "s3cret");
        assert_eq!(orders.load_secret().expect("secret").expose(), "s3cret");
        std::env::remove_var("ORDERS_PW");
        let err = orders.load_secret().expect_err("missing env");
        assert!(err.to_string().contains("ORDERS_PW"));
    }
}
