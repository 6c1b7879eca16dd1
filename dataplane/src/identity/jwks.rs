//! Identity stage: the issuer's public keys, a JSON Web Key Set
//! ([RFC 7517 §5](https://www.rfc-editor.org/rfc/rfc7517#section-5)).
//!
//! Only signing keys the gateway can use are kept: RSA keys of 2048 to 8192 bits for RS256 and
//! P-256 keys for ES256. Other keys in the set (encryption keys, other curves, other
//! algorithms) are skipped rather than failing the set, because real providers publish them
//! side by side. A key set is immutable; `KeyStore` swaps whole sets, so a verification sees
//! either the old keys or the new ones.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use jsonwebtoken::DecodingKey;
use serde_json::Value;

use super::jwt::{b64url_decode, Alg, Compact};
use super::Error;

/// Largest JWKS document read from a file or an issuer.
pub(crate) const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// One usable public key.
struct PublicKey {
    kid: Option<String>,
    alg: Alg,
    key: DecodingKey,
}

/// The usable keys of one JWKS document.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// Parses a JWKS document; fails when it holds no usable signing key.
    pub(crate) fn parse(json: &[u8]) -> Result<KeySet, Error> {
        let doc: Value = serde_json::from_slice(json)
            .map_err(|e| Error::Keys(format!("JWKS is not valid JSON: {e}")))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err(Error::Keys("JWKS has no \"keys\" list".into()));
        };
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match PublicKey::from_jwk(entry) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("key {i}: {why}")),
            }
        }
        if !skipped.is_empty() {
            tracing::debug!(skipped = ?skipped, "JWKS keys the gateway cannot use were skipped");
        }
        if keys.is_empty() {
            return Err(Error::Keys(format!(
                "JWKS has no RS256 or ES256 signing key ({} skipped{}{})",
                skipped.len(),
                if skipped.is_empty() { "" } else { ": " },
                skipped.join("; ")
            )));
        }
        Ok(KeySet { keys })
    }

    /// Reads and parses a JWKS file.
    pub(crate) fn load(path: &Path) -> Result<KeySet, Error> {
        let meta =
            std::fs::metadata(path).map_err(|e| Error::io("cannot read JWKS file", path, e))?;
        if meta.len() > MAX_JWKS_BYTES {
            return Err(Error::Keys(format!(
                "JWKS file {} is larger than {MAX_JWKS_BYTES} bytes",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read JWKS file", path, e))?;
        KeySet::parse(&bytes).map_err(|e| match e {
            Error::Keys(why) => Error::Keys(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Checks the token's signature with the key it names.
    ///
    /// With a `kid`, only keys of that id are tried: none means `UnknownKey` (the issuer may
    /// have rotated), and a key of another algorithm means `BadSignature` (an algorithm
    /// confusion attempt, which a refresh will not cure). Without a `kid`, every key of the
    /// token's algorithm is tried.
    pub(crate) fn verify(
        &self,
        token: &Compact<'_>,
        alg: Alg,
        kid: Option<&str>,
    ) -> Result<(), Error> {
        let mut named = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .peekable();
        if named.peek().is_none() {
            return Err(Error::UnknownKey);
        }
        let mut tried = false;
        for key in named.filter(|k| k.alg == alg) {
            tried = true;
            let ok = jsonwebtoken::crypto::verify(
                token.signature_b64,
                token.signing_input.as_bytes(),
                &key.key,
                alg.jsonwebtoken(),
            )
            .unwrap_or(false);
            if ok {
                return Ok(());
            }
        }
        if !tried && kid.is_none() {
            return Err(Error::UnknownKey);
        }
        Err(Error::BadSignature)
    }
}

impl PublicKey {
    fn from_jwk(jwk: &Value) -> Result<PublicKey, String> {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        if let Some(usage) = text("use") {
            if usage != "sig" {
                return Err(format!("use is {usage:?}, not \"sig\""));
            }
        }
        let kid = text("kid").map(str::to_owned);
        let declared = text("alg");
        let member = |name: &str| {
            text(name)
                .and_then(b64url_decode)
                .ok_or_else(|| format!("member {name} is missing or not base64url"))
        };
        match text("kty") {
            Some("RSA") => {
                if declared.is_some_and(|a| a != "RS256") {
                    return Err(format!(
                        "alg {:?} is not RS256",
                        declared.unwrap_or_default()
                    ));
                }
                let n = member("n")?;
                let e = member("e")?;
                let bits = significant_bits(&n);
                if !(2048..=8192).contains(&bits) {
                    return Err(format!(
                        "RSA modulus of {bits} bits (2048 to 8192 accepted)"
                    ));
                }
                Ok(PublicKey {
                    kid,
                    alg: Alg::Rs256,
                    key: DecodingKey::from_rsa_raw_components(&n, &e),
                })
            }
            Some("EC") => {
                if declared.is_some_and(|a| a != "ES256") {
                    return Err(format!(
                        "alg {:?} is not ES256",
                        declared.unwrap_or_default()
                    ));
                }
                if text("crv") != Some("P-256") {
                    return Err("EC key is not on curve P-256".into());
                }
                let x = member("x")?;
                let y = member("y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err("P-256 coordinates are not 32 bytes".into());
                }
                let (Some(x), Some(y)) = (text("x"), text("y")) else {
                    return Err("EC key lacks x or y".into());
                };
                let key = DecodingKey::from_ec_components(x, y).map_err(|e| e.to_string())?;
                Ok(PublicKey {
                    kid,
                    alg: Alg::Es256,
                    key,
                })
            }
            Some(other) => Err(format!("key type {other:?} is not RSA or EC")),
            None => Err("no kty".into()),
        }
    }
}

fn significant_bits(big_endian: &[u8]) -> usize {
    let Some(first) = big_endian.iter().position(|b| *b != 0) else {
        return 0;
    };
    (big_endian.len() - first) * 8 - big_endian[first].leading_zeros() as usize
}

/// The current key set, swapped whole on reload or refresh.
#[derive(Default)]
pub(crate) struct KeyStore(RwLock<Arc<KeySet>>);

impl KeyStore {
    pub(crate) fn new(keys: KeySet) -> KeyStore {
        KeyStore(RwLock::new(Arc::new(keys)))
    }

    /// The current set; held only for the length of one verification.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace(&self, keys: KeySet) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }
}
