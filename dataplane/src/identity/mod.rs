//! Identity stage: the token a client presents becomes a `Principal`, or the session ends.
//!
//! A client sends an identity-provider JWT where its protocol carries a secret (the
//! PostgreSQL password, for example). `Verifier` checks it against the issuer's keys:
//!
//! ```text
//! token ─▶ split (jwt.rs) ─▶ alg RS256/ES256 ─▶ key by kid (jwks.rs) ─▶ signature
//!       ─▶ exp, nbf, iss, aud ─▶ Principal { sub, user, groups, kind }
//! ```
//!
//! Keys come from a JWKS file for a local issuer (`local.rs`, the embedded development issuer
//! that `tollctl token issue` uses) or from an OpenID Connect issuer's discovery document,
//! fetched and refreshed by a background thread (`oidc.rs`); shards only ever read a snapshot.
//! Errors (`error.rs`) are safe to show the client: they never contain the token.

mod error;
mod jwks;
mod jwt;
mod local;
mod oidc;
mod verifier;

#[cfg(test)]
mod oidc_tests;
#[cfg(test)]
mod tests;

pub use error::Error;
pub use local::{LocalIssuer, TokenRequest};
pub use verifier::Verifier;

/// Who is behind a session, as the policies see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    /// The `sub` claim.
    pub sub: String,
    /// The groups claim (`identity.groups_claim`); empty when the token has none.
    pub groups: Vec<String>,
    /// The value of `identity.user_claim`, which the client's start-up user name must equal.
    pub user: String,
    /// The `kind` claim ("bot", ...), "human" when the token has none.
    pub kind: String,
}

/// Selects aws-lc-rs as the process's crypto provider for rustls and for jsonwebtoken.
/// Idempotent and cheap after the first call; the verifier and the local issuer call it too.
///
/// jsonwebtoken picks a provider from its crate features only when exactly one backend is
/// compiled in, and panics at first use otherwise, so it is installed explicitly here.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed: fine, we only need one to be.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

/// Decodes a token's header and claims WITHOUT verifying anything (for
/// `tollctl token inspect`).
pub fn inspect(token: &str) -> Result<(serde_json::Value, serde_json::Value), Error> {
    let compact = jwt::split(token)?;
    let claims = jwt::decode_value(compact.claims_b64)?;
    Ok((serde_json::Value::Object(compact.header), claims))
}
