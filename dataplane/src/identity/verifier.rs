//! Identity stage: checking a client's token and turning it into a `Principal`.
//!
//! Order of checks: shape, algorithm (RS256/ES256 only), signature with the key named by
//! `kid`, then the claims: `exp`, `nbf`, `iss`, `aud`, and the claims the gateway reads
//! (`sub`, the user claim, the groups claim, `kind`). Claims are not looked at before the
//! signature has verified.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::jwks::{KeySet, KeyStore};
use super::oidc::{self, Refresher};
use super::{install_crypto_provider, jwt, Error, Principal};
use crate::config::IdentityConfig;

/// How long start-up waits for the first key fetch of an https issuer (two HTTP exchanges of
/// at most `oidc::HTTP_TIMEOUT` each).
const FIRST_FETCH_TIMEOUT: Duration = Duration::from_secs(25);

/// Checks tokens of one issuer. Cheap to share: verification takes a snapshot of the keys and
/// never blocks on the network.
pub struct Verifier {
    issuer: String,
    audience: String,
    groups_claim: String,
    user_claim: String,
    leeway_s: i64,
    keys: Arc<KeyStore>,
    source: KeySource,
}

enum KeySource {
    /// A local issuer: keys come from this file, reloaded on request.
    File(PathBuf),
    /// An OIDC issuer: a background thread fetches the keys.
    Oidc(Refresher),
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.current().len())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Local issuer: keys from `jwks_file`. https issuer: OIDC discovery
    /// (`{issuer}/.well-known/openid-configuration` -> `jwks_uri`), fetched by a background
    /// thread and refreshed every `jwks_refresh_s`, trusting the system CA certificates
    /// (`SSL_CERT_FILE` or the distribution bundle). Without a pinned `jwks_file` this waits
    /// for the first fetch and fails if it does not succeed.
    pub fn from_config(cfg: &IdentityConfig) -> Result<Arc<Verifier>, Error> {
        install_crypto_provider();
        if is_oidc(cfg) {
            let roots = match &cfg.issuer_ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        Error::Keys(format!(
                            "cannot read identity.issuer_ca_file {}: {e}",
                            path.display()
                        ))
                    })?;
                    oidc::parse_roots(&pem)?
                }
                None => oidc::system_roots()?,
            };
            Self::start_oidc(cfg, roots)
        } else {
            let path = cfg.jwks_file.clone().ok_or_else(|| {
                Error::Keys(format!(
                    "identity.jwks_file is required for the local issuer {:?}",
                    cfg.issuer
                ))
            })?;
            let keys = KeySet::load(&path)?;
            let keys = Arc::new(KeyStore::new(keys));
            Ok(Arc::new(Self::new(cfg, keys, KeySource::File(path))))
        }
    }

    /// As `from_config`, but an https issuer is trusted through the PEM CA certificates in
    /// `ca_pem` instead of the system roots (a private identity provider, or a test).
    /// For a local issuer `ca_pem` is not used.
    pub fn with_issuer_ca(cfg: &IdentityConfig, ca_pem: &[u8]) -> Result<Arc<Verifier>, Error> {
        install_crypto_provider();
        if !is_oidc(cfg) {
            return Self::from_config(cfg);
        }
        let roots = oidc::parse_roots(ca_pem)?;
        Self::start_oidc(cfg, roots)
    }

    fn start_oidc(
        cfg: &IdentityConfig,
        roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    ) -> Result<Arc<Verifier>, Error> {
        let pinned = cfg.jwks_file.as_deref().map(KeySet::load).transpose()?;
        let wait_for_first = pinned.is_none();
        let keys = Arc::new(KeyStore::new(pinned.unwrap_or_default()));
        let fetcher = oidc::Fetcher::new(&cfg.issuer, roots)?;
        let (refresher, first) = Refresher::spawn(
            fetcher,
            keys.clone(),
            Duration::from_secs(cfg.jwks_refresh_s.max(1)),
            Duration::from_secs(cfg.jwks_min_refresh_s),
        )?;
        if wait_for_first {
            match first.recv_timeout(FIRST_FETCH_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    return Err(Error::Keys(format!(
                        "cannot fetch the keys of issuer {}: {why}",
                        cfg.issuer
                    )))
                }
                Err(_) => {
                    return Err(Error::Keys(format!(
                        "no answer from issuer {} within {}s",
                        cfg.issuer,
                        FIRST_FETCH_TIMEOUT.as_secs()
                    )))
                }
            }
        }
        Ok(Arc::new(Self::new(cfg, keys, KeySource::Oidc(refresher))))
    }

    fn new(cfg: &IdentityConfig, keys: Arc<KeyStore>, source: KeySource) -> Verifier {
        Verifier {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            groups_claim: cfg.groups_claim.clone(),
            user_claim: cfg.user_claim.clone(),
            leeway_s: i64::try_from(cfg.leeway_s).unwrap_or(i64::MAX),
            keys,
            source,
        }
    }

    /// Checks signature (RS256 and ES256 only), `iss`, `aud` (string or array), `exp`
    /// (required), `nbf` (if present) with the configured leeway, and builds the principal.
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        self.verify_at(token, unix_now())
    }

    /// `verify` at a given Unix time, in seconds.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Principal, Error> {
        let compact = jwt::split(token)?;
        let alg = compact.alg()?;
        compact.reject_critical()?;
        let kid = compact.kid()?;
        let keys = self.keys.current();
        match keys.verify(&compact, alg, kid) {
            Ok(()) => {}
            Err(Error::UnknownKey) => {
                if let KeySource::Oidc(refresher) = &self.source {
                    refresher.request();
                }
                return Err(Error::UnknownKey);
            }
            Err(e) => return Err(e),
        }
        let claims = compact.claims()?;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<Principal, Error> {
        let exp = numeric_date(claims, "exp")?.ok_or_else(|| missing("exp"))?;
        if now >= exp.saturating_add(self.leeway_s) {
            return Err(Error::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now.saturating_add(self.leeway_s) < nbf {
                return Err(Error::NotYetValid);
            }
        }
        match claims.get("iss") {
            None | Some(Value::Null) => return Err(missing("iss")),
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(_) => {
                return Err(Error::WrongIssuer {
                    expected: self.issuer.clone(),
                })
            }
        }
        let audience_ok = match claims.get("aud") {
            None | Some(Value::Null) => return Err(missing("aud")),
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&self.audience)),
            Some(_) => return Err(Error::invalid_claim("aud", "is not a string or a list")),
        };
        if !audience_ok {
            return Err(Error::WrongAudience {
                expected: self.audience.clone(),
            });
        }
        let sub = required_string(claims, "sub")?;
        let user = required_string(claims, &self.user_claim)?;
        let groups = match claims.get(&self.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|g| g.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    Error::invalid_claim(&self.groups_claim, "is not a list of strings")
                })?,
            Some(_) => {
                return Err(Error::invalid_claim(
                    &self.groups_claim,
                    "is not a list of strings",
                ))
            }
        };
        let kind = match claims.get("kind") {
            None | Some(Value::Null) => "human".to_owned(),
            Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
            Some(_) => return Err(Error::invalid_claim("kind", "is not a non-empty string")),
        };
        Ok(Principal {
            sub,
            groups,
            user,
            kind,
        })
    }

    /// Reloads `jwks_file` (key rotation by the operator). For an https issuer it asks the
    /// background thread for a refresh (subject to the rate limit) and returns at once.
    pub fn reload(&self) -> Result<(), Error> {
        match &self.source {
            KeySource::File(path) => {
                let keys = KeySet::load(path)?;
                tracing::info!(path = %path.display(), keys = keys.len(), "JWKS file reloaded");
                self.keys.replace(keys);
                Ok(())
            }
            KeySource::Oidc(refresher) => {
                refresher.request();
                Ok(())
            }
        }
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many usable keys the verifier holds now.
    pub fn key_count(&self) -> usize {
        self.keys.current().len()
    }
}

fn is_oidc(cfg: &IdentityConfig) -> bool {
    cfg.issuer.starts_with("https://")
}

fn missing(claim: &str) -> Error {
    Error::MissingClaim(claim.to_owned())
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, an integer or a finite number.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Error> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(u) = n.as_u64() {
                Ok(Some(i64::try_from(u).unwrap_or(i64::MAX)))
            } else {
                match n.as_f64() {
                    // Saturating float-to-int conversion is what we want for far dates.
                    Some(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
                    _ => Err(Error::invalid_claim(name, "is not a number")),
                }
            }
        }
        Some(_) => Err(Error::invalid_claim(name, "is not a number")),
    }
}

fn required_string(claims: &Map<String, Value>, name: &str) -> Result<String, Error> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(missing(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(Error::invalid_claim(name, "is not a non-empty string")),
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
