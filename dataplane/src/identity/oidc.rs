//! Identity stage: the keys of an OpenID Connect issuer, fetched off the hot path.
//!
//! [OIDC Discovery](https://openid.net/specs/openid-connect-discovery-1_0.html): GET
//! `{issuer}/.well-known/openid-configuration`, check that its `issuer` is ours (§4.3), then GET
//! its `jwks_uri`. One background thread per verifier does this at start-up, every
//! `jwks_refresh_s`, and when a verification meets an unknown `kid` (at most once per
//! `jwks_min_refresh_s`, however many requests arrive). Shards never wait for it: they read
//! whatever key set was last swapped in. A failed fetch keeps the last good keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use super::jwks::{KeySet, KeyStore, MAX_JWKS_BYTES};
use super::Error;

/// Time allowed for one HTTP exchange with the issuer.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The system's CA certificates, found as the upstream TLS client finds them
/// (`rustls-native-certs`: `SSL_CERT_FILE`, `SSL_CERT_DIR`, else the distribution's store).
pub(crate) fn system_roots() -> Result<Vec<CertificateDer<'static>>, Error> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(Error::Keys(format!(
            "no system CA certificates to check the issuer with (set SSL_CERT_FILE){why}"
        )));
    }
    Ok(found.certs)
}

/// PEM CA certificates.
pub(crate) fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let roots = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Keys(format!("CA certificates are not valid PEM: {e}")))?;
    if roots.is_empty() {
        return Err(Error::Keys("no certificate in the CA PEM".into()));
    }
    Ok(roots)
}

/// Fetches the key set of one issuer.
pub(crate) struct Fetcher {
    agent: ureq::Agent,
    issuer: String,
}

impl Fetcher {
    pub(crate) fn new(issuer: &str, roots: Vec<CertificateDer<'static>>) -> Result<Fetcher, Error> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
        let roots: Vec<Certificate<'static>> = roots
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .https_only(true)
            .timeout_global(Some(HTTP_TIMEOUT))
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Fetcher {
            agent,
            issuer: issuer.to_owned(),
        })
    }

    /// Discovery, then the JWKS. The error is a reason for the log and for start-up.
    pub(crate) fn fetch(&self) -> Result<KeySet, String> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Value = serde_json::from_slice(&self.get(&discovery_url)?)
            .map_err(|e| format!("{discovery_url} is not JSON: {e}"))?;
        if discovery.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(format!(
                "{discovery_url} names another issuer than {:?}",
                self.issuer
            ));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .filter(|uri| uri.starts_with("https://"))
            .ok_or_else(|| format!("{discovery_url} has no https jwks_uri"))?;
        let jwks = self.get(jwks_uri)?;
        KeySet::parse(&jwks).map_err(|e| format!("{jwks_uri}: {e}"))
    }

    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .agent
            .get(url)
            .header("accept", "application/json")
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_JWKS_BYTES)
            .read_to_vec()
            .map_err(|e| format!("GET {url}: {e}"))
    }
}

/// The verifier's handle on its background fetcher. Dropping it stops the thread (after the
/// fetch in flight, if any).
pub(crate) struct Refresher {
    wake: Sender<()>,
}

impl Refresher {
    /// Starts the thread; the receiver gets the outcome of the first fetch.
    pub(crate) fn spawn(
        fetcher: Fetcher,
        keys: Arc<KeyStore>,
        every: Duration,
        min_gap: Duration,
    ) -> Result<(Refresher, Receiver<Result<(), String>>), Error> {
        let (wake, wakes) = crossbeam_channel::bounded(1);
        let (first_tx, first_rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("tollgate-jwks".into())
            .spawn(move || refresh_loop(fetcher, keys, wakes, first_tx, every, min_gap))
            .map_err(|e| Error::Keys(format!("cannot start the JWKS refresh thread: {e}")))?;
        Ok((Refresher { wake }, first_rx))
    }

    /// Asks for a refresh soon; never blocks. Requests that arrive while one is pending or
    /// within the rate limit collapse into one fetch.
    pub(crate) fn request(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::warn!("JWKS refresh thread is gone; keys are no longer refreshed");
            }
        }
    }
}

fn refresh_loop(
    fetcher: Fetcher,
    keys: Arc<KeyStore>,
    wakes: Receiver<()>,
    first: Sender<Result<(), String>>,
    every: Duration,
    min_gap: Duration,
) {
    let mut first = Some(first);
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let outcome = fetcher.fetch();
        let next_periodic = match &outcome {
            Ok(set) => {
                tracing::info!(issuer = %fetcher.issuer, keys = set.len(), "issuer keys fetched");
                failures = 0;
                later(started, every)
            }
            Err(why) => {
                tracing::warn!(issuer = %fetcher.issuer, reason = %why, "cannot fetch issuer keys; keeping the last good ones");
                failures = failures.saturating_add(1);
                // Retry sooner than the period after a failure, backing off to it.
                let base = min_gap.max(Duration::from_secs(1));
                later(
                    started,
                    base.saturating_mul(1 << failures.min(8)).min(every),
                )
            }
        };
        let report = match outcome {
            Ok(set) => {
                keys.replace(set);
                Ok(())
            }
            Err(why) => Err(why),
        };
        if let Some(first) = first.take() {
            // Start-up may have given up waiting; nothing to do then.
            let _ = first.send(report);
        }

        // Wait for the period to end or for a kid-miss request; a request is served once
        // `min_gap` has passed since the last fetch.
        let earliest_on_request = later(started, min_gap);
        let mut deadline = next_periodic;
        loop {
            match wakes.recv_deadline(deadline) {
                Ok(()) => deadline = deadline.min(earliest_on_request),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= deadline {
                break;
            }
        }
    }
}

/// `at + wait`, capped at a day past `at` so that no configured period can overflow `Instant`.
fn later(at: Instant, wait: Duration) -> Instant {
    let day = Duration::from_secs(24 * 3600);
    at + wait.min(day)
}
