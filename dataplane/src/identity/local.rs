//! Identity stage: the embedded development issuer.
//!
//! One ES256 (P-256) key pair in a directory: `issuer.key` (PKCS#8 PEM, mode 0600) and
//! `jwks.json` (its public key, which the gateway's `identity.jwks_file` points at). The key is
//! created on first use and never overwritten: it is published with a hard link from a
//! private temporary file, which fails if another process got there first, and then that
//! process's key is used. The `kid` is the key's RFC 7638 thumbprint, so it is stable across
//! runs and machines.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Map, Value};

use super::jwt::b64url;
use super::verifier::unix_now;
use super::{install_crypto_provider, Error};

const KEY_FILE: &str = "issuer.key";
const JWKS_FILE: &str = "jwks.json";

/// The embedded development issuer: an ES256 key pair in a directory.
pub struct LocalIssuer {
    dir: PathBuf,
    kid: String,
    key: EncodingKey,
    public_jwk: Value,
    created: bool,
}

impl std::fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("dir", &self.dir)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What `LocalIssuer::issue` puts in a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub sub: String,
    pub groups: Vec<String>,
    pub ttl: Duration,
    pub issuer: String,
    pub audience: String,
    /// The `kind` claim ("human", "bot", ...); absent means the verifier reports "human".
    pub kind: Option<String>,
}

impl TokenRequest {
    /// A one-hour token from "tollgate-local" for "tollgate".
    pub fn new(sub: &str, groups: &[&str]) -> Self {
        TokenRequest {
            sub: sub.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ttl: Duration::from_secs(3600),
            issuer: "tollgate-local".to_owned(),
            audience: "tollgate".to_owned(),
            kind: None,
        }
    }
}

impl LocalIssuer {
    /// Creates `dir` (0700) and on first use `dir/issuer.key` (PKCS#8 PEM, mode 0600) and
    /// `dir/jwks.json` (public JWKS with a `kid`); later calls load them. Never overwrites an
    /// existing key; rewrites `jwks.json` only when it does not publish this key.
    pub fn load_or_create(dir: &Path) -> Result<LocalIssuer, Error> {
        install_crypto_provider();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("cannot create key directory", dir, e))?;
        let key_path = dir.join(KEY_FILE);
        let (pkcs8, created) = match std::fs::read(&key_path) {
            Ok(pem) => (parse_private_key(&key_path, &pem)?, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(dir, &key_path)?,
            Err(e) => return Err(Error::io("cannot read issuer key", &key_path, e)),
        };
        if !created {
            warn_if_readable_by_others(&key_path);
        }
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).map_err(|_| {
                Error::Keys(format!("{} is not a P-256 private key", key_path.display()))
            })?;
        let (public_jwk, kid) = public_jwk(pair.public_key().as_ref())?;
        let issuer = LocalIssuer {
            dir: dir.to_owned(),
            kid,
            key: EncodingKey::from_ec_der(&pkcs8),
            public_jwk,
            created,
        };
        issuer.publish_jwks()?;
        Ok(issuer)
    }

    /// Default dir: `$TOLLGATE_KEY_DIR`, else `$XDG_DATA_HOME/tollgate/keys`, else
    /// `$HOME/.local/share/tollgate/keys` (else `./tollgate-keys` when even HOME is unset).
    pub fn default_dir() -> PathBuf {
        default_dir_from(|name| std::env::var_os(name))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join(JWKS_FILE)
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// The key id tokens carry in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// True when this call created the key pair.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The public JWKS document.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk.clone()] })
    }

    /// Signs a token for `req`: `iss`, `aud`, `sub`, `groups`, `iat`, `nbf`, `exp`, a random
    /// `jti`, and `kind` when set.
    pub fn issue(&self, req: &TokenRequest) -> Result<String, Error> {
        if req.sub.is_empty() {
            return Err(Error::Issue("the subject is empty".into()));
        }
        if req.issuer.is_empty() || req.audience.is_empty() {
            return Err(Error::Issue(
                "the issuer and audience must not be empty".into(),
            ));
        }
        if req.ttl.as_secs() == 0 {
            return Err(Error::Issue(
                "the lifetime must be at least one second".into(),
            ));
        }
        let ttl = i64::try_from(req.ttl.as_secs())
            .ok()
            .filter(|s| *s <= 10 * 365 * 24 * 3600)
            .ok_or_else(|| Error::Issue("the lifetime is longer than ten years".into()))?;
        let now = unix_now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(req.issuer));
        claims.insert("aud".into(), json!(req.audience));
        claims.insert("sub".into(), json!(req.sub));
        claims.insert("groups".into(), json!(req.groups));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(now + ttl));
        claims.insert("jti".into(), json!(random_id()?));
        if let Some(kind) = &req.kind {
            claims.insert("kind".into(), json!(kind));
        }
        self.sign_claims(&Value::Object(claims))
    }

    /// Signs any claims set with this issuer's key and `kid`, unchecked: for tests and tools
    /// that need tokens `issue` refuses to make (expired, odd claims).
    pub fn sign_claims(&self, claims: &Value) -> Result<String, Error> {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| Error::Issue(format!("signing failed: {e}")))
    }

    /// Writes `jwks.json` unless it already publishes this key. Written to a temporary file
    /// and renamed, so a gateway reloading it never reads half a file.
    fn publish_jwks(&self) -> Result<(), Error> {
        let path = self.jwks_path();
        if let Ok(text) = std::fs::read(&path) {
            let published = serde_json::from_slice::<Value>(&text)
                .ok()
                .and_then(|doc| doc.get("keys").and_then(Value::as_array).cloned())
                .is_some_and(|keys| keys.contains(&self.public_jwk));
            if published {
                return Ok(());
            }
        }
        let mut body = serde_json::to_vec_pretty(&self.jwks())
            .map_err(|e| Error::Keys(format!("cannot encode JWKS: {e}")))?;
        body.push(b'\n');
        let tmp = temp_path(&self.dir, JWKS_FILE);
        write_new_file(&tmp, &body, 0o644)
            .map_err(|e| Error::io("cannot write JWKS file", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("cannot write JWKS file", &path, e)
        })
    }
}

fn default_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("TOLLGATE_KEY_DIR") {
        return dir;
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(data) = set("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return data.join("tollgate").join("keys");
    }
    match set("HOME") {
        Some(home) => home.join(".local/share/tollgate/keys"),
        None => PathBuf::from("tollgate-keys"),
    }
}

fn parse_private_key(path: &Path, pem: &[u8]) -> Result<Vec<u8>, Error> {
    PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map(|der| der.secret_pkcs8_der().to_vec())
        .map_err(|_| {
            Error::Keys(format!(
                "{} is not a PKCS#8 PEM private key",
                path.display()
            ))
        })
}

/// Generates a key and publishes it at `key_path` unless another process already has.
/// Returns the PKCS#8 DER of the key in force and whether it is the one made here.
fn create_key(dir: &Path, key_path: &Path) -> Result<(Vec<u8>, bool), Error> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| Error::Keys("cannot generate a P-256 key".into()))?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| Error::Keys("cannot encode the new key".into()))?;
    let pem = to_pem("PRIVATE KEY", pkcs8.as_ref());
    let tmp = temp_path(dir, KEY_FILE);
    write_new_file(&tmp, pem.as_bytes(), 0o600)
        .map_err(|e| Error::io("cannot write issuer key", &tmp, e))?;
    let linked = std::fs::hard_link(&tmp, key_path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((pkcs8.as_ref().to_vec(), true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let pem = std::fs::read(key_path)
                .map_err(|e| Error::io("cannot read issuer key", key_path, e))?;
            Ok((parse_private_key(key_path, &pem)?, false))
        }
        Err(e) => Err(Error::io("cannot write issuer key", key_path, e)),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "issuer key is readable by other users; chmod 600 it");
        }
    }
}

/// The public JWK of a P-256 key (uncompressed point `04 || x || y`) and its RFC 7638
/// thumbprint, used as `kid`.
fn public_jwk(point: &[u8]) -> Result<(Value, String), Error> {
    let (Some(4), Some(x), Some(y)) = (point.first(), point.get(1..33), point.get(33..65)) else {
        return Err(Error::Keys("unexpected P-256 public key encoding".into()));
    };
    let (x, y) = (b64url(x), b64url(y));
    // RFC 7638 §3.2: required members only, sorted, no whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = b64url(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
    );
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": x,
        "y": y,
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
    });
    Ok((jwk, kid))
}

fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Issue("no randomness".into()))?;
    Ok(b64url(&bytes))
}

pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
}

/// Creates `path` (which must not exist) with `mode`, writes `body` and syncs it.
fn write_new_file(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    let written = file.write_all(body).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn default_dir_prefers_tollgate_key_dir_then_xdg_then_home() {
        let all = [
            ("TOLLGATE_KEY_DIR", "/k"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(default_dir_from(env(&all)), PathBuf::from("/k"));
        assert_eq!(
            default_dir_from(env(&all[1..])),
            PathBuf::from("/x/tollgate/keys")
        );
        assert_eq!(
            default_dir_from(env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")])),
            PathBuf::from("/h/.local/share/tollgate/keys")
        );
        assert_eq!(
            default_dir_from(env(&[("TOLLGATE_KEY_DIR", ""), ("HOME", "/h")])),
            PathBuf::from("/h/.local/share/tollgate/keys")
        );
        assert_eq!(default_dir_from(env(&[])), PathBuf::from("tollgate-keys"));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 gives no EC example, so check the definition against an independent
        // computation over the published JWK's members.
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = LocalIssuer::load_or_create(dir.path()).expect("issuer");
        let jwk = &issuer.jwks()["keys"][0];
        let canonical = serde_json::to_string(&json!({
            "crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"],
        }))
        .expect("json");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        assert_eq!(issuer.kid(), b64url(digest.as_ref()));
        assert_eq!(jwk["kid"], issuer.kid());
    }
}
