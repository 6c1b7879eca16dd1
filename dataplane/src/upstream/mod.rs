//! Upstream stage: the connections the gateway opens to the services it fronts, logged in with
//! credentials that only the gateway holds.

pub mod pg;
pub mod scram;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::config::{ConnectionConfig, Secret};

/// Everything needed to open one kind of upstream connection, prepared once at start-up.
pub struct UpstreamTarget {
    /// The connection's name, as clients ask for it.
    pub name: String,
    /// "host:port" as configured.
    pub address: String,
    /// Host part of `address`, for TLS server name checks.
    pub host: String,
    pub database: String,
    pub user: String,
    pub secret: Secret,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTarget")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Errors preparing an upstream target from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error("connection {connection:?}: {source}")]
    Tls {
        connection: String,
        source: crate::tls::Error,
    },
}

impl UpstreamTarget {
    pub fn from_config(c: &ConnectionConfig) -> Result<Self, ConfigError> {
        let secret = c.load_secret()?;
        let tls = crate::tls::upstream_config(c.upstream_tls, c.upstream_ca.as_deref()).map_err(
            |source| ConfigError::Tls {
                connection: c.name.clone(),
                source,
            },
        )?;
        let host = match c.upstream.rsplit_once(':') {
            Some((host, _)) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            None => c.upstream.clone(),
        };
        Ok(Self {
            name: c.name.clone(),
            address: c.upstream.clone(),
            host,
            database: c.database.clone(),
            user: c.user.clone(),
            secret,
            tls,
        })
    }

    /// Resolves the address. An IP literal resolves without I/O; a host name is looked up on
    /// the shard's blocking thread so the shard keeps serving.
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Ok(addr) = self.address.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let address = self.address.clone();
        crate::runtime::spawn_blocking(move || {
            address.to_socket_addrs()?.next().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{address} did not resolve"),
                )
            })
        })
        .await
    }
}
