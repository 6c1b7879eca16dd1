//! The targets a load runs against, and how a client reaches each one.
//!
//! Every target fronts the same PostgreSQL database. `direct` is the database itself; the
//! others are proxies whose process CPU and memory are what the report compares.

use serde::{Deserialize, Serialize};

/// One target, named as in the scenario file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// PostgreSQL itself: the baseline.
    Direct,
    /// haproxy in TCP mode: what relaying bytes costs and nothing more.
    NullRelay,
    /// pgbouncer (session or transaction pool mode, as the scenario says).
    Pgbouncer,
    /// Tollgate with every feature off: token login, upstream login, relay.
    TollgateOff,
    /// Tollgate with every feature on (the scenario file's `[tollgate_full]`).
    TollgateOn,
}

impl TargetKind {
    pub const ALL: [TargetKind; 5] = [
        TargetKind::Direct,
        TargetKind::NullRelay,
        TargetKind::Pgbouncer,
        TargetKind::TollgateOff,
        TargetKind::TollgateOn,
    ];

    /// The name used in the scenario file, the report and file names.
    pub fn key(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct",
            TargetKind::NullRelay => "null-relay",
            TargetKind::Pgbouncer => "pgbouncer",
            TargetKind::TollgateOff => "tollgate-off",
            TargetKind::TollgateOn => "tollgate-on",
        }
    }

    pub fn parse(s: &str) -> Option<TargetKind> {
        Self::ALL.into_iter().find(|t| t.key() == s)
    }

    /// True for Tollgate targets (token login; the gateway under test).
    pub fn is_tollgate(self) -> bool {
        matches!(self, TargetKind::TollgateOff | TargetKind::TollgateOn)
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// How a client logs in to a target, and which process to watch.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub target: TargetKind,
    pub host: String,
    pub port: u16,
    /// PostgreSQL role, or for Tollgate the token's subject.
    pub user: String,
    /// The role's password, or for Tollgate the token.
    pub password: String,
    /// Database name, or for Tollgate the `[[connection]]` name.
    pub dbname: String,
    /// The proxy process whose CPU time and memory are measured (`None` for direct).
    pub proxy_pid: Option<u32>,
}

impl Endpoint {
    /// A tokio-postgres configuration for this endpoint (no TLS).
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.dbname)
            .application_name("tollgate-loadtest")
            .connect_timeout(std::time::Duration::from_secs(30));
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_serde_and_parse() {
        for t in TargetKind::ALL {
            assert_eq!(TargetKind::parse(t.key()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.key()));
        }
        assert_eq!(TargetKind::parse("haproxy"), None);
        assert!(TargetKind::TollgateOn.is_tollgate());
    }
}
