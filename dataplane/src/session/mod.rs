//! Session stage: what the gateway shares between shards ([`Gateway`]), what each shard keeps
//! for itself ([`Shard`]), the accept loop of a shard, and the per-protocol pipelines that
//! drive one connection through the data path (`pg.rs` for PostgreSQL).

pub mod buffer;
pub mod cancel;
pub mod decide;
pub mod pg;
pub mod pg_record;
pub mod recording;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::identity::Verifier;
use crate::policy::{Decider, PolicyStore};
use crate::record::{Recorder, ShardQueue};
use crate::runtime::{self, Phase, PhaseWatch, Shutdown, ShutdownSignal};
use crate::upstream::UpstreamTarget;
use cancel::CancelRegistry;

/// Errors building the gateway from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Identity(#[from] crate::identity::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::ConfigError),
    #[error("cannot load the policy set: {0}")]
    Policy(#[from] crate::policy::Error),
}

/// Process-wide state every shard reads; built once at start-up, never locked on the hot path.
pub struct Gateway {
    pub config: Config,
    pub verifier: Arc<Verifier>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub upstreams: HashMap<String, Arc<UpstreamTarget>>,
    pub cancels: Arc<CancelRegistry>,
    pub shutdown: Arc<Shutdown>,
    /// The policy set in force; `None` when `[policy] enabled = false`.
    pub policy: Option<Arc<PolicyStore>>,
    /// `input.connection` of each connection, built once.
    pub connection_inputs: HashMap<String, Arc<serde_json::Value>>,
    /// The session recorder; `None` when `[record] enabled = false` or not started (as for
    /// `tollgate check`).
    pub recorder: Option<Arc<Recorder>>,
}

impl Gateway {
    /// Builds the gateway; `recorder` is the started recorder when sessions are recorded.
    pub fn new(
        config: Config,
        shutdown: Arc<Shutdown>,
        recorder: Option<Arc<Recorder>>,
    ) -> Result<Arc<Self>, StartError> {
        let verifier = Verifier::from_config(&config.identity)?;
        let tls = match (&config.gateway.tls_cert, &config.gateway.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        let mut upstreams = HashMap::new();
        let mut connection_inputs = HashMap::new();
        for c in &config.connections {
            upstreams.insert(c.name.clone(), Arc::new(UpstreamTarget::from_config(c)?));
            connection_inputs.insert(
                c.name.clone(),
                Arc::new(serde_json::json!({
                    "name": c.name,
                    "protocol": "postgres",
                    "labels": c.labels,
                })),
            );
        }
        let policy = if config.policy.enabled {
            Some(PolicyStore::open(&config.policy.dir)?)
        } else {
            tracing::warn!("[policy] enabled = false: every statement is relayed unchecked");
            None
        };
        Ok(Arc::new(Self {
            config,
            verifier,
            tls,
            upstreams,
            cancels: CancelRegistry::new(),
            shutdown,
            policy,
            connection_inputs,
            recorder,
        }))
    }
}

/// What one shard keeps for its own sessions.
#[derive(Default)]
pub struct Shard {
    /// The shard's policy engine and decision cache (`None` without a policy stage).
    pub decider: Option<std::cell::RefCell<Decider>>,
    /// This shard's queue to the recorder (`None` when recording is off).
    pub recorder: Option<ShardQueue>,
    /// Sessions running on this shard.
    pub active: Cell<usize>,
    /// Wakes this shard's sessions when the process starts to drain or close.
    pub signal: ShutdownSignal,
}

/// Counts a session as active for as long as it lives.
struct ActiveGuard(Rc<Shard>);

impl ActiveGuard {
    fn new(shard: &Rc<Shard>) -> Self {
        shard.active.set(shard.active.get() + 1);
        Self(Rc::clone(shard))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
    }
}

/// Runs one shard: accept connections until shutdown, then drain.
pub async fn serve_shard(gw: Arc<Gateway>) -> Result<(), std::io::Error> {
    let listener = runtime::bind(gw.config.gateway.listen)?;
    let shard = Rc::new(Shard {
        decider: gw.policy.as_ref().map(|store| {
            std::cell::RefCell::new(Decider::new(
                Arc::clone(store),
                gw.config.policy.cache_capacity,
            ))
        }),
        recorder: gw.recorder.as_ref().map(|r| r.shard(runtime::shard_id())),
        ..Shard::default()
    });
    let id = runtime::shard_id();
    tracing::debug!(shard = id, addr = %gw.config.gateway.listen, "shard listening");

    // The shard's watcher turns the process-wide phase into a local wake-up. The signal side
    // wakes it; it does not poll, so an idle shard sleeps until there is work and a busy one
    // has no timer to look at whenever it parks. It runs beside the accept loop and the drain,
    // in this task, so it is dropped (and unregistered) when the shard stops.
    let watcher = watch_phase(gw.shutdown.watch(), &shard);
    futures_lite::future::or(accept_and_drain(&gw, &shard, listener), watcher).await
}

/// Turns the process-wide phase into the shard's [`ShutdownSignal`]; never completes.
async fn watch_phase(mut watch: PhaseWatch, shard: &Shard) -> Result<(), std::io::Error> {
    let mut phase = watch.phase();
    loop {
        shard.signal.set(phase);
        if phase == Phase::Closing {
            return std::future::pending().await;
        }
        phase = watch.changed().await;
    }
}

/// Accepts connections until the shard drains, then waits for its sessions to end.
async fn accept_and_drain(
    gw: &Arc<Gateway>,
    shard: &Rc<Shard>,
    listener: runtime::TcpListener,
) -> Result<(), std::io::Error> {
    let id = runtime::shard_id();
    loop {
        let next =
            futures_lite::future::or(async { Some(runtime::accept(&listener).await) }, async {
                shard.signal.reached(Phase::Draining).await;
                None
            })
            .await;
        match next {
            None => break,
            Some(Ok(stream)) => {
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let guard = ActiveGuard::new(shard);
                let gw = Arc::clone(gw);
                let shard = Rc::clone(shard);
                runtime::spawn_local(async move {
                    pg::run(gw, shard, stream, peer).await;
                    drop(guard);
                });
            }
            Some(Err(e)) => {
                // Out of file descriptors or a similar pressure: back off instead of spinning.
                tracing::warn!(shard = id, error = %e, "accept failed");
                runtime::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracing::info!(
        shard = id,
        sessions = shard.active.get(),
        "stopped accepting; draining"
    );

    // Sessions may finish on their own before the drain timeout; when it passes, the phase
    // reaches Closing and they close themselves. Wait for the last one, with a bound in case
    // a peer does not read its final error.
    futures_lite::future::or(all_ended(shard), shard.signal.reached(Phase::Closing)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while shard.active.get() > 0 && std::time::Instant::now() < deadline {
        runtime::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(shard = id, left = shard.active.get(), "shard stopped");
    Ok(())
}

/// Waits until every session of the shard has ended (used when draining ends early).
pub async fn all_ended(shard: &Shard) {
    while shard.active.get() > 0 {
        runtime::sleep(Duration::from_millis(20)).await;
    }
}
