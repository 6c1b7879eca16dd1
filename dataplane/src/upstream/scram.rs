//! Upstream stage, PostgreSQL login: the client side of SCRAM-SHA-256 (RFC 5802 with the
//! SHA-256 of RFC 7677) without channel binding, and a cache of the keys PBKDF2 derives, so a
//! repeat login to the same server costs a few HMACs instead of thousands.
//!
//! PostgreSQL carries the four SCRAM messages in its SASL authentication messages
//! (<https://www.postgresql.org/docs/current/sasl-authentication.html>):
//!
//! ```text
//! client-first   n,,n=,r=<client nonce>         gs2 header "n,,": no channel binding; the user
//!                                               name is empty, PostgreSQL takes the start-up one
//! server-first   r=<client nonce><server nonce>,s=<base64 salt>,i=<iteration count>
//! client-final   c=biws,r=<nonce>,p=<base64 ClientProof>        ("biws" is base64 of "n,,")
//! server-final   v=<base64 ServerSignature>   or   e=<error>
//!
//! SaltedPassword  = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, i)     i HMACs: the cost
//! ClientKey       = HMAC(SaltedPassword, "Client Key")
//! ServerKey       = HMAC(SaltedPassword, "Server Key")
//! StoredKey       = SHA-256(ClientKey)
//! AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
//! ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
//! ServerSignature = HMAC(ServerKey, AuthMessage)
//! ```
//!
//! ClientKey and ServerKey depend on nothing but (password, salt, i), and the salt and count
//! are constants of the role on the server, so [`KeyCache`] keeps those two keys per (password,
//! salt, i). A changed password gets a new salt from PostgreSQL and simply misses. The cache
//! never decides a login: the server checks a proof made from cached keys like any other, and
//! only keys whose exchange ended with a verified server signature are stored ([`Verified`]).
//!
//! The exchange is sans-IO: each step takes the server's bytes and returns the next message.
//! PBKDF2 is [`Challenge::derive_keys`], which the caller runs off the shard.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, OnceLock, PoisonError};

use aws_lc_rs::{digest, hmac, pbkdf2, rand};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// The mechanism's name in AuthenticationSASL and SASLInitialResponse.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// Highest iteration count accepted from a server. PostgreSQL's default `scram_iterations` is
/// 4096 and OWASP's advice for PBKDF2-HMAC-SHA-256 is 600,000; above a million a broken or
/// hostile server could hold a blocking thread for a second or more per login.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Entries in [`KeyCache::shared`]: one per (upstream password, role salt, count) in use,
/// which is one per configured SCRAM connection in a normal deployment.
pub const SHARED_CACHE_CAPACITY: usize = 64;

/// Random bytes in the client nonce (libpq and PostgreSQL's server use 18). Base64 makes them
/// 24 printable characters, none of them ','.
const NONCE_BYTES: usize = 18;

/// Longest salt accepted, as base64 text, checked before decoding (PostgreSQL sends 16 bytes,
/// 24 characters).
const MAX_SALT_BASE64: usize = 1024;

/// Longest server signature accepted, as base64 text (32 bytes are 44 characters).
const MAX_SIGNATURE_BASE64: usize = 64;

/// Longest `e=` value kept for the error message.
const MAX_SERVER_ERROR: usize = 64;

/// The gs2 header: no channel binding, no authorisation identity.
const GS2_HEADER: &str = "n,,";

/// client-final's channel-binding attribute: base64 of [`GS2_HEADER`].
const CHANNEL_BINDING: &str = "c=biws";

/// Why a SCRAM exchange failed. No message contains the password or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no random bytes available for the client nonce")]
    Random,
    #[error("client nonce must be printable ASCII without ','")]
    ClientNonce,
    #[error("malformed server-first message: {0}")]
    ServerFirst(&'static str),
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    #[error("iteration count {0} is outside 1..={MAX_ITERATIONS}")]
    Iterations(u64),
    #[error("malformed server-final message: {0}")]
    ServerFinal(&'static str),
    #[error("the server ended the exchange with error {0:?}")]
    ServerError(String),
    #[error("the server's signature does not match: it does not know the password")]
    ServerSignature,
}

/// The exchange after client-first was built: waiting for server-first.
pub struct ClientFirst {
    /// SASLprep'd password.
    password: Vec<u8>,
    /// The cache's name for `password` ([`secret_id`]).
    secret: [u8; 32],
    /// `n,,n=<user>,r=<nonce>`; client-first-bare starts after [`GS2_HEADER`].
    message: String,
    /// Where the nonce starts in `message`.
    nonce_at: usize,
}

impl ClientFirst {
    /// Starts an exchange the way PostgreSQL clients do: empty user name, random nonce.
    pub fn new(password: &str) -> Result<ClientFirst, Error> {
        let mut raw = [0u8; NONCE_BYTES];
        rand::fill(&mut raw).map_err(|_| Error::Random)?;
        Self::with_nonce("", password, &BASE64.encode(raw))
    }

    /// Starts an exchange with a chosen user name and nonce, so that tests and benches can
    /// replay a recorded exchange (RFC 7677's example). The gateway always uses [`Self::new`]:
    /// a nonce that repeats lets a recorded exchange be replayed.
    pub fn with_nonce(user: &str, password: &str, nonce: &str) -> Result<ClientFirst, Error> {
        if nonce.is_empty() || !nonce.bytes().all(is_nonce_byte) {
            return Err(Error::ClientNonce);
        }
        let password = saslprep(password);
        let secret = secret_id(&password)?;
        let mut message = String::with_capacity(GS2_HEADER.len() + user.len() + nonce.len() + 6);
        message.push_str(GS2_HEADER);
        message.push_str("n=");
        // RFC 5802 saslname: ',' and '=' are escaped.
        for c in user.chars() {
            match c {
                ',' => message.push_str("=2C"),
                '=' => message.push_str("=3D"),
                c => message.push(c),
            }
        }
        message.push_str(",r=");
        let nonce_at = message.len();
        message.push_str(nonce);
        Ok(ClientFirst {
            password,
            secret,
            message,
            nonce_at,
        })
    }

    /// client-first-message, the data of SASLInitialResponse.
    pub fn message(&self) -> &[u8] {
        self.message.as_bytes()
    }

    /// Reads server-first (the data of AuthenticationSASLContinue).
    pub fn receive(self, server_first: &[u8]) -> Result<Challenge, Error> {
        let text =
            std::str::from_utf8(server_first).map_err(|_| Error::ServerFirst("not valid UTF-8"))?;
        let parsed = ServerFirst::parse(text)?;
        let client_nonce = &self.message[self.nonce_at..];
        if !parsed.nonce.starts_with(client_nonce) {
            return Err(Error::NonceMismatch);
        }
        if parsed.nonce.len() == client_nonce.len() {
            return Err(Error::ServerFirst("the server added nothing to the nonce"));
        }
        let bare = &self.message[GS2_HEADER.len()..];
        let mut auth_message = String::with_capacity(
            bare.len() + text.len() + CHANNEL_BINDING.len() + parsed.nonce.len() + 5,
        );
        auth_message.push_str(bare);
        auth_message.push(',');
        auth_message.push_str(text);
        auth_message.push(',');
        let without_proof_at = auth_message.len();
        auth_message.push_str(CHANNEL_BINDING);
        auth_message.push_str(",r=");
        auth_message.push_str(parsed.nonce);
        Ok(Challenge {
            password: self.password,
            key: CacheKey {
                secret: self.secret,
                salt: parsed.salt,
                iterations: parsed.iterations,
            },
            auth_message,
            without_proof_at,
        })
    }
}

/// The exchange after server-first was read: the keys are needed to answer.
pub struct Challenge {
    password: Vec<u8>,
    key: CacheKey,
    /// The whole AuthMessage; client-final-without-proof starts at `without_proof_at`.
    auth_message: String,
    without_proof_at: usize,
}

impl Challenge {
    /// The iteration count the server asked for.
    pub fn iterations(&self) -> u32 {
        self.key.iterations.get()
    }

    /// PBKDF2 over the password with the server's salt and count, then the two keys. This is
    /// the slow step (one HMAC per iteration): run it where it does not hold up a shard.
    pub fn derive_keys(&self) -> Keys {
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.key.iterations,
            &self.key.salt,
            &self.password,
            &mut salted,
        );
        let salted = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        Keys {
            client: array32(hmac::sign(&salted, b"Client Key")),
            server: array32(hmac::sign(&salted, b"Server Key")),
        }
    }

    /// client-final-message (the data of SASLResponse), and the exchange waiting for
    /// server-final. `keys` come from [`Self::derive_keys`] or from the cache.
    pub fn answer(self, keys: Keys) -> (Vec<u8>, ClientFinal) {
        let stored = digest::digest(&digest::SHA256, &keys.client);
        let stored = hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref());
        let signature = hmac::sign(&stored, self.auth_message.as_bytes());
        let mut proof = keys.client;
        for (p, s) in proof.iter_mut().zip(signature.as_ref()) {
            *p ^= s;
        }
        let mut message =
            String::with_capacity(self.auth_message.len() - self.without_proof_at + 48);
        message.push_str(&self.auth_message[self.without_proof_at..]);
        message.push_str(",p=");
        BASE64.encode_string(proof, &mut message);
        (
            message.into_bytes(),
            ClientFinal {
                key: self.key,
                keys,
                auth_message: self.auth_message,
            },
        )
    }
}

/// The exchange after client-final was sent: waiting for server-final.
pub struct ClientFinal {
    key: CacheKey,
    keys: Keys,
    auth_message: String,
}

impl ClientFinal {
    /// Reads server-final (the data of AuthenticationSASLFinal) and checks the server's
    /// signature, which proves the server knows the password and so that the keys are right.
    pub fn verify(self, server_final: &[u8]) -> Result<Verified, Error> {
        let text =
            std::str::from_utf8(server_final).map_err(|_| Error::ServerFinal("not valid UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            let shown = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(MAX_SERVER_ERROR)
                .collect();
            return Err(Error::ServerError(shown));
        }
        let signature = text
            .strip_prefix("v=")
            .ok_or(Error::ServerFinal("v= (server signature) is missing"))?;
        if signature.contains(',') {
            return Err(Error::ServerFinal("attributes after v= are not supported"));
        }
        if signature.len() > MAX_SIGNATURE_BASE64 {
            return Err(Error::ServerFinal("the signature is too long"));
        }
        let signature = BASE64
            .decode(signature)
            .map_err(|_| Error::ServerFinal("the signature is not base64"))?;
        let server_key = hmac::Key::new(hmac::HMAC_SHA256, &self.keys.server);
        // Constant-time comparison inside.
        hmac::verify(&server_key, self.auth_message.as_bytes(), &signature)
            .map_err(|_| Error::ServerSignature)?;
        Ok(Verified {
            key: self.key,
            keys: self.keys,
        })
    }
}

/// Keys a server has proven right; the only thing [`KeyCache::insert`] takes.
pub struct Verified {
    key: CacheKey,
    keys: Keys,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verified(***)")
    }
}

/// ClientKey and ServerKey of one (password, salt, count). Not the SaltedPassword: that one
/// never leaves [`Challenge::derive_keys`].
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    client: [u8; 32],
    server: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

/// What the keys are derived from. The password appears only as its [`secret_id`].
#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    secret: [u8; 32],
    salt: Vec<u8>,
    iterations: NonZeroU32,
}

/// Derived keys by (password, salt, count), bounded, shared by every shard of the process.
///
/// Shared rather than per shard: a login is one lookup and at most one insert, each under the
/// lock for a hash-map operation (tens of nanoseconds, never across an await), next to a TCP
/// connect and three round trips to the server; in exchange, PBKDF2 runs once per password
/// and salt in the process instead of once per shard, and a gateway with many shards and
/// connection churn warms up after one login instead of one per shard.
pub struct KeyCache {
    entries: Mutex<HashMap<CacheKey, Keys>>,
    capacity: usize,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The process's cache, used by every upstream login.
    pub fn shared() -> &'static KeyCache {
        static SHARED: OnceLock<KeyCache> = OnceLock::new();
        SHARED.get_or_init(|| KeyCache::new(SHARED_CACHE_CAPACITY))
    }

    /// The keys for this challenge's password, salt and count, if a login proved them before.
    pub fn get(&self, challenge: &Challenge) -> Option<Keys> {
        self.lock().get(&challenge.key).cloned()
    }

    /// Stores verified keys. When full, an arbitrary entry makes room: a deployment has a
    /// handful of live entries and the rest are stale passwords, so which one goes matters
    /// little, and a wrong choice costs one PBKDF2.
    pub fn insert(&self, verified: Verified) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&verified.key) {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(verified.key, verified.keys);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Keys>> {
        // Nothing panics while the lock is held; if something did, the map is still whole.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// server-first's three attributes, borrowed from the message except the decoded salt.
struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: NonZeroU32,
}

impl<'a> ServerFirst<'a> {
    /// `r=...,s=...,i=...` in that order and nothing else: PostgreSQL sends no extensions, and
    /// a mandatory one (`m=`) is one this client cannot honour.
    fn parse(text: &'a str) -> Result<ServerFirst<'a>, Error> {
        let mut attributes = text.split(',');
        let first = attributes.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(Error::ServerFirst(
                "mandatory extension (m=) is not supported",
            ));
        }
        let nonce = first
            .strip_prefix("r=")
            .ok_or(Error::ServerFirst("r= (nonce) is missing"))?;
        if nonce.is_empty() || !nonce.bytes().all(is_nonce_byte) {
            return Err(Error::ServerFirst("the nonce is not printable ASCII"));
        }
        let salt = attributes
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .ok_or(Error::ServerFirst("s= (salt) is missing"))?;
        if salt.len() > MAX_SALT_BASE64 {
            return Err(Error::ServerFirst("the salt is too long"));
        }
        let salt = BASE64
            .decode(salt)
            .map_err(|_| Error::ServerFirst("the salt is not base64"))?;
        if salt.is_empty() {
            return Err(Error::ServerFirst("the salt is empty"));
        }
        let iterations = attributes
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .ok_or(Error::ServerFirst("i= (iteration count) is missing"))?;
        let iterations = parse_iterations(iterations)?;
        if attributes.next().is_some() {
            return Err(Error::ServerFirst("attributes after i= are not supported"));
        }
        Ok(ServerFirst {
            nonce,
            salt,
            iterations,
        })
    }
}

fn parse_iterations(text: &str) -> Result<NonZeroU32, Error> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::ServerFirst("the iteration count is not a number"));
    }
    // Digits only, so the one way to fail is a number too big for u64: out of range anyway.
    let n = text.parse::<u64>().unwrap_or(u64::MAX);
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_ITERATIONS)
        .and_then(NonZeroU32::new)
        .ok_or(Error::Iterations(n))
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E, i.e. visible ASCII but ','.
fn is_nonce_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b','
}

/// SASLprep (RFC 4013) as PostgreSQL applies it: a password that is not valid UTF-8 or has
/// prohibited characters is used as it is (libpq and the server do the same). Passwords are
/// Rust strings here, so only the second case can happen.
fn saslprep(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(prepped) => prepped.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// The cache's name for a password: HMAC-SHA-256 under a key drawn at random once per
/// process, so the cache holds nothing from which the password could be recovered or tested
/// against guesses without that key (a plain SHA-256 could be attacked at hash speed).
fn secret_id(password: &[u8]) -> Result<[u8; 32], Error> {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    let key = match KEY.get() {
        Some(key) => key,
        None => {
            let key = hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new())
                .map_err(|_| Error::Random)?;
            KEY.get_or_init(|| key)
        }
    };
    Ok(array32(hmac::sign(key, password)))
}

/// A SHA-256 output (HMAC tag or digest) as an array.
fn array32(value: impl AsRef<[u8]>) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, v) in out.iter_mut().zip(value.as_ref()) {
        *o = *v;
    }
    out
}

#[cfg(test)]
mod tests;
