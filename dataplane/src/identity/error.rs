//! Identity stage: why a token was refused or the keys could not be had.
//!
//! The `Display` of every token error is sent to the client verbatim (inside a FATAL 28000 for
//! PostgreSQL), so each message names the problem in a user's words and is built only from
//! constants and configuration: never from the token, nor from anything decoded out of it,
//! except the name of a registered JWS algorithm.

use std::path::{Path, PathBuf};

/// Errors of the identity stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not three base64url segments holding a JSON header and JSON claims.
    #[error("token is not a JWT")]
    Malformed,
    /// Longer than any identity-provider token we accept.
    #[error("token is longer than {max} bytes")]
    TooLong { max: usize },
    /// The signature does not verify with the issuer's key named by the token.
    #[error("token signature does not verify")]
    BadSignature,
    /// The token names (or needs) a key the issuer does not publish.
    #[error("token is signed with a key the issuer does not publish")]
    UnknownKey,
    /// `exp` has passed (beyond the configured leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future (beyond the configured leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not {expected}")]
    WrongIssuer { expected: String },
    /// `aud` does not contain the configured audience.
    #[error("token audience is not {expected}")]
    WrongAudience { expected: String },
    /// A claim the gateway requires is absent.
    #[error("token has no {0} claim")]
    MissingClaim(String),
    /// A claim is present but of the wrong type.
    #[error("token claim {claim} {problem}")]
    InvalidClaim {
        claim: String,
        problem: &'static str,
    },
    /// `alg` is not RS256 or ES256 (this includes "none" and every HMAC algorithm).
    #[error("token algorithm {0} is not accepted (only RS256 and ES256 are)")]
    UnsupportedAlgorithm(String),
    /// A header parameter the gateway does not implement and must not ignore (`crit`).
    #[error("token header parameter {0} is not supported")]
    UnsupportedHeader(&'static str),
    /// The issuer's key set could not be read, fetched or understood.
    #[error("issuer keys are not available: {0}")]
    Keys(String),
    /// The local issuer refused a token request.
    #[error("cannot issue a token: {0}")]
    Issue(String),
    /// A file of the local issuer or a JWKS file could not be read or written.
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            context,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn invalid_claim(claim: &str, problem: &'static str) -> Error {
        Error::InvalidClaim {
            claim: claim.to_owned(),
            problem,
        }
    }

    /// True when the client's token was refused (as opposed to the gateway lacking keys or
    /// failing to read a file): the session answers the former with an authentication error.
    pub fn is_token_error(&self) -> bool {
        !matches!(self, Error::Keys(_) | Error::Issue(_) | Error::Io { .. })
    }
}
