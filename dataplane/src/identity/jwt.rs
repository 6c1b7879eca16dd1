//! Identity stage: the JWS compact serialisation of a JWT.
//!
//! A token is `BASE64URL(header) "." BASE64URL(claims) "." BASE64URL(signature)`, without
//! padding ([RFC 7515 §7.1](https://www.rfc-editor.org/rfc/rfc7515#section-7.1)); the
//! signature covers the first two segments exactly as they arrived. Nothing here trusts the
//! content: `split` only decodes, the verifier decides.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::Error;

/// Largest token accepted. Identity-provider tokens with many groups reach a few KiB.
pub(crate) const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// A token cut into its segments, with the header decoded.
pub(crate) struct Compact<'a> {
    /// `header.claims`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub header: Map<String, Value>,
    pub claims_b64: &'a str,
    pub signature_b64: &'a str,
}

/// The signature algorithms the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    pub(crate) fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Alg::Rs256 => jsonwebtoken::Algorithm::RS256,
            Alg::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// Algorithm names registered for JWS (RFC 7518 §3.1, RFC 8037). Only these are echoed in an
/// error message; anything else the client wrote stays out of it.
const REGISTERED_ALGS: &[&str] = &[
    "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
    "PS256", "PS384", "PS512", "EdDSA", "ES256K", "Ed25519", "Ed448",
];

/// Cuts a token into segments and decodes its header. The claims are decoded later, and
/// only once the signature has verified.
pub(crate) fn split(token: &str) -> Result<Compact<'_>, Error> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::TooLong {
            max: MAX_TOKEN_BYTES,
        });
    }
    // A token pasted into a password prompt often brings a newline along.
    let token = token.trim_matches(|c: char| c.is_ascii_whitespace());
    let mut parts = token.splitn(4, '.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed);
    };
    if header_b64.is_empty() || claims_b64.is_empty() {
        return Err(Error::Malformed);
    }
    let header = decode_object(header_b64)?;
    let signing_input = &token[..header_b64.len() + 1 + claims_b64.len()];
    Ok(Compact {
        signing_input,
        header,
        claims_b64,
        signature_b64,
    })
}

impl Compact<'_> {
    /// The `alg` header, accepted only when it is RS256 or ES256.
    pub(crate) fn alg(&self) -> Result<Alg, Error> {
        match self.header.get("alg") {
            Some(Value::String(alg)) if alg == "RS256" => Ok(Alg::Rs256),
            Some(Value::String(alg)) if alg == "ES256" => Ok(Alg::Es256),
            Some(Value::String(alg)) => {
                let shown = REGISTERED_ALGS
                    .iter()
                    .find(|known| *known == alg)
                    .map_or("(unregistered)", |known| known);
                Err(Error::UnsupportedAlgorithm(shown.to_owned()))
            }
            _ => Err(Error::Malformed),
        }
    }

    /// The `kid` header, if any.
    pub(crate) fn kid(&self) -> Result<Option<&str>, Error> {
        match self.header.get("kid") {
            None => Ok(None),
            Some(Value::String(kid)) => Ok(Some(kid)),
            Some(_) => Err(Error::Malformed),
        }
    }

    /// RFC 7515 §4.1.11: a recipient must reject a token whose `crit` lists extensions it
    /// does not understand; we understand none.
    pub(crate) fn reject_critical(&self) -> Result<(), Error> {
        if self.header.contains_key("crit") {
            return Err(Error::UnsupportedHeader("crit"));
        }
        Ok(())
    }

    /// The claims set, which must be a JSON object.
    pub(crate) fn claims(&self) -> Result<Map<String, Value>, Error> {
        decode_object(self.claims_b64)
    }
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Error::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::Malformed),
    }
}

/// Decodes a segment as any JSON value (for `inspect`, which shows what is there).
pub(crate) fn decode_value(segment: &str) -> Result<Value, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Error::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Malformed)
}

/// Encodes bytes as one unpadded base64url segment.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes an unpadded base64url value (JWK members use the same encoding).
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}
