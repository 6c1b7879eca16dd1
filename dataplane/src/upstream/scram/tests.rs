use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use proptest::prelude::*;

use super::{ClientFirst, Error, KeyCache, MAX_ITERATIONS};

// RFC 7677 section 3, the SCRAM-SHA-256 example exchange.
const RFC_USER: &str = "user";
const RFC_PASSWORD: &str = "pencil";
const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
// As RFC 7677 prints it (44 base64 characters for 32 bytes); a transcription that drops
// characters fails to decode instead of failing the signature check.
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_client() -> ClientFirst {
    ClientFirst::with_nonce(RFC_USER, RFC_PASSWORD, RFC_NONCE).expect("valid nonce")
}

fn server_first_error(server_first: &[u8]) -> Error {
    match rfc_client().receive(server_first) {
        Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(server_first)),
        Err(e) => e,
    }
}

/// Runs the RFC exchange up to server-final with keys from `cache` when it has them; returns
/// client-final and whether the keys came from the cache.
fn rfc_exchange(cache: &KeyCache) -> (String, bool) {
    let challenge = rfc_client()
        .receive(RFC_SERVER_FIRST.as_bytes())
        .expect("server-first");
    let (keys, cached) = match cache.get(&challenge) {
        Some(keys) => (keys, true),
        None => (challenge.derive_keys(), false),
    };
    let (client_final, pending) = challenge.answer(keys);
    let verified = pending
        .verify(RFC_SERVER_FINAL.as_bytes())
        .expect("server signature");
    cache.insert(verified);
    (String::from_utf8(client_final).expect("ASCII"), cached)
}

#[test]
fn rfc7677_example_exchange_byte_for_byte() {
    let client = rfc_client();
    assert_eq!(client.message(), RFC_CLIENT_FIRST.as_bytes());
    let challenge = client
        .receive(RFC_SERVER_FIRST.as_bytes())
        .expect("server-first");
    assert_eq!(challenge.iterations(), 4096);
    let keys = challenge.derive_keys();
    let (client_final, pending) = challenge.answer(keys);
    assert_eq!(
        std::str::from_utf8(&client_final).expect("ASCII"),
        RFC_CLIENT_FINAL
    );
    pending
        .verify(RFC_SERVER_FINAL.as_bytes())
        .expect("the RFC's server signature verifies");
}

#[test]
fn wrong_server_signature_is_refused() {
    let answered = || {
        let challenge = rfc_client()
            .receive(RFC_SERVER_FIRST.as_bytes())
            .expect("server-first");
        let keys = challenge.derive_keys();
        challenge.answer(keys).1
    };
    // One bit changed in the signature; then the right length but all zeros.
    let mut signature = BASE64
        .decode(&RFC_SERVER_FINAL[2..])
        .expect("RFC signature");
    signature[0] ^= 1;
    for wrong in [signature, vec![0u8; 32]] {
        let server_final = format!("v={}", BASE64.encode(wrong));
        assert_eq!(
            answered().verify(server_final.as_bytes()).err(),
            Some(Error::ServerSignature)
        );
    }
    // Short, long, empty and undecodable signatures, and an extension after v=.
    for bad in [
        "v=AAAA",
        "v=",
        "v=!!!!",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=1",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjRW4=",
        "",
        "x=1",
    ] {
        let err = answered().verify(bad.as_bytes()).err();
        assert!(
            matches!(
                err,
                Some(Error::ServerSignature) | Some(Error::ServerFinal(_))
            ),
            "{bad:?}: {err:?}"
        );
    }
    let long = format!("v={}", BASE64.encode([7u8; 64]));
    assert!(matches!(
        answered().verify(long.as_bytes()),
        Err(Error::ServerFinal(_))
    ));
    // A server error becomes a clear error, its text cleaned of control characters.
    assert_eq!(
        answered().verify(b"e=invalid-proof\n\x07").err(),
        Some(Error::ServerError("invalid-proof".into()))
    );
    assert_eq!(
        answered().verify(b"v=\xff\xfe").err(),
        Some(Error::ServerFinal("not valid UTF-8"))
    );
}

#[test]
fn malformed_server_first_is_refused() {
    const SALT: &str = "s=W22ZaJ0SNY7soEsUEjb6gQ==";
    const NONCE: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let cases: Vec<(String, Error)> = vec![
        (
            format!("{NONCE},i=4096"),
            Error::ServerFirst("s= (salt) is missing"),
        ),
        (
            format!("{NONCE},{SALT}"),
            Error::ServerFirst("i= (iteration count) is missing"),
        ),
        (
            format!("{SALT},{NONCE},i=4096"),
            Error::ServerFirst("r= (nonce) is missing"),
        ),
        (format!("{NONCE},{SALT},i=0"), Error::Iterations(0)),
        (
            format!("{NONCE},{SALT},i={}", u64::from(MAX_ITERATIONS) + 1),
            Error::Iterations(u64::from(MAX_ITERATIONS) + 1),
        ),
        (
            format!("{NONCE},{SALT},i=4294967296"),
            Error::Iterations(4_294_967_296),
        ),
        (
            format!("{NONCE},{SALT},i=99999999999999999999999999"),
            Error::Iterations(u64::MAX),
        ),
        (
            format!("{NONCE},{SALT},i=-1"),
            Error::ServerFirst("the iteration count is not a number"),
        ),
        (
            format!("{NONCE},{SALT},i=+4096"),
            Error::ServerFirst("the iteration count is not a number"),
        ),
        (
            format!("{NONCE},{SALT},i="),
            Error::ServerFirst("the iteration count is not a number"),
        ),
        (
            format!("r=someoneElsesNonce%hvYDpWUa2R,{SALT},i=4096"),
            Error::NonceMismatch,
        ),
        (format!("r=rOprNGfwEbe,{SALT},i=4096"), Error::NonceMismatch),
        (
            format!("r={RFC_NONCE},{SALT},i=4096"),
            Error::ServerFirst("the server added nothing to the nonce"),
        ),
        (
            format!("r=,{SALT},i=4096"),
            Error::ServerFirst("the nonce is not printable ASCII"),
        ),
        (
            format!("r={RFC_NONCE} x,{SALT},i=4096"),
            Error::ServerFirst("the nonce is not printable ASCII"),
        ),
        (
            format!("{NONCE},s=W22ZaJ0SNY7so!!Ujb6gQ==,i=4096"),
            Error::ServerFirst("the salt is not base64"),
        ),
        (
            format!("{NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096"),
            Error::ServerFirst("the salt is not base64"),
        ),
        (
            format!("{NONCE},s=,i=4096"),
            Error::ServerFirst("the salt is empty"),
        ),
        (
            format!("{NONCE},s={},i=4096", "A".repeat(2048)),
            Error::ServerFirst("the salt is too long"),
        ),
        (
            format!("m=must-understand,{NONCE},{SALT},i=4096"),
            Error::ServerFirst("mandatory extension (m=) is not supported"),
        ),
        (
            format!("{NONCE},{SALT},i=4096,x=extension"),
            Error::ServerFirst("attributes after i= are not supported"),
        ),
        (
            format!("{NONCE},{SALT},i=4096,"),
            Error::ServerFirst("attributes after i= are not supported"),
        ),
        (String::new(), Error::ServerFirst("r= (nonce) is missing")),
    ];
    for (server_first, expected) in cases {
        assert_eq!(
            server_first_error(server_first.as_bytes()),
            expected,
            "{server_first:?}"
        );
    }
    assert_eq!(
        server_first_error(b"r=rOprNGfwEbeRWgbNEkqO\xff,s=AA==,i=1"),
        Error::ServerFirst("not valid UTF-8")
    );
}

#[test]
fn a_cache_hit_answers_exactly_like_a_miss() {
    let cache = KeyCache::new(4);
    let (miss, cached) = rfc_exchange(&cache);
    assert!(!cached, "an empty cache misses");
    assert_eq!(cache.len(), 1, "the verified keys were stored");
    let (hit, cached) = rfc_exchange(&cache);
    assert!(cached, "the second login finds the keys");
    assert_eq!(hit, miss);
    assert_eq!(hit, RFC_CLIENT_FINAL);
    assert_eq!(cache.len(), 1);
}

#[test]
fn another_password_salt_or_count_misses_the_cache() {
    let cache = KeyCache::new(8);
    rfc_exchange(&cache);
    let misses = [
        ("pencil2", RFC_SERVER_FIRST.to_owned()),
        (
            RFC_PASSWORD,
            RFC_SERVER_FIRST.replace("s=W22ZaJ0SNY7soEsUEjb6gQ==", "s=X22ZaJ0SNY7soEsUEjb6gQ=="),
        ),
        (RFC_PASSWORD, RFC_SERVER_FIRST.replace("i=4096", "i=4097")),
    ];
    for (password, server_first) in misses {
        let challenge = ClientFirst::with_nonce(RFC_USER, password, RFC_NONCE)
            .expect("nonce")
            .receive(server_first.as_bytes())
            .expect("server-first");
        assert!(cache.get(&challenge).is_none(), "{password} {server_first}");
    }
    // Same password, salt and count with another nonce: a hit.
    let challenge = ClientFirst::with_nonce("", RFC_PASSWORD, "otherNonce")
        .expect("nonce")
        .receive(b"r=otherNonceXYZ,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
        .expect("server-first");
    assert!(cache.get(&challenge).is_some());
}

#[test]
fn only_verified_keys_are_cached() {
    let cache = KeyCache::new(4);
    // The password is wrong for this server: its signature does not verify, so there is no
    // `Verified` to store and the cache stays empty.
    let challenge = ClientFirst::with_nonce(RFC_USER, "not-pencil", RFC_NONCE)
        .expect("nonce")
        .receive(RFC_SERVER_FIRST.as_bytes())
        .expect("server-first");
    let keys = challenge.derive_keys();
    let (client_final, pending) = challenge.answer(keys);
    assert_ne!(client_final, RFC_CLIENT_FINAL.as_bytes());
    assert_eq!(
        pending.verify(RFC_SERVER_FINAL.as_bytes()).err(),
        Some(Error::ServerSignature)
    );
    assert!(cache.is_empty());
}

#[test]
fn the_cache_is_bounded() {
    let cache = KeyCache::new(3);
    for n in 0u8..10 {
        let server = MockServer::new("secret", &[n; 16], 1);
        let cached = server.login("secret", &cache).expect("login");
        assert!(!cached, "salt {n} is new");
        assert!(cache.len() <= 3);
    }
    assert_eq!(cache.len(), 3);
    assert!(KeyCache::new(0).is_empty());
    let none = KeyCache::new(0);
    MockServer::new("secret", b"salt", 1)
        .login("secret", &none)
        .expect("login without a cache");
    assert!(none.is_empty());
}

#[test]
fn a_random_client_first_looks_like_libpq_s() {
    let a = ClientFirst::new("pw").expect("randomness");
    let b = ClientFirst::new("pw").expect("randomness");
    let text = std::str::from_utf8(a.message()).expect("ASCII");
    let nonce = text
        .strip_prefix("n,,n=,r=")
        .expect("gs2 header, empty user");
    assert!(nonce.len() >= 24, "{nonce}");
    assert!(nonce.bytes().all(|b| b.is_ascii_graphic() && b != b','));
    assert_ne!(a.message(), b.message(), "nonces differ");
    assert_eq!(
        ClientFirst::with_nonce("", "pw", "bad,nonce").err(),
        Some(Error::ClientNonce)
    );
    assert_eq!(
        ClientFirst::with_nonce("", "pw", "").err(),
        Some(Error::ClientNonce)
    );
    let escaped = ClientFirst::with_nonce("a,b=c", "pw", "n").expect("nonce");
    assert_eq!(escaped.message(), b"n,,n=a=2Cb=3Dc,r=n");
}

#[test]
fn passwords_are_prepared_as_postgresql_prepares_them() {
    // postgres-protocol computes the verifier the way the server does (SASLprep, then PBKDF2);
    // a login against it must succeed for passwords SASLprep changes or cannot prepare.
    for password in [
        "plain-ascii",
        "I\u{00AD}X",          // soft hyphen: mapped to nothing
        "\u{2168}",            // ROMAN NUMERAL NINE: NFKC gives "IX"
        "caf\u{0065}\u{0301}", // combining acute: NFKC composes
        "tab\tinside",         // a control character: prohibited, so used as it is
        "",
    ] {
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let server = MockServer::from_verifier(&verifier);
        server
            .login(password, &KeyCache::new(1))
            .unwrap_or_else(|e| panic!("{password:?}: {e}"));
        assert!(
            server.login("wrong", &KeyCache::new(1)).is_err(),
            "{password:?}: a wrong password must fail"
        );
    }
}

#[test]
fn no_error_or_debug_output_shows_the_password_or_keys() {
    let password = "Sup3rSecretPassw0rd";
    let start = || ClientFirst::with_nonce("", password, "nonce").expect("nonce");
    let challenge = start()
        .receive(b"r=nonce+server,s=c2FsdA==,i=1")
        .expect("server-first");
    let keys = challenge.derive_keys();
    let secrets = [
        password.to_owned(),
        BASE64.encode(keys.client),
        BASE64.encode(keys.server),
        format!("{:?}", keys.client),
        format!("{:?}", keys.server),
    ];
    let mut shown = vec![format!("{keys:?}")];
    let (_, pending) = challenge.answer(keys.clone());
    shown.push(format!(
        "{:?}",
        pending.verify(b"v=AAAA").expect_err("wrong")
    ));
    for server_first in [
        &b"r=nonce+server,s=c2FsdA==,i=0"[..],
        b"r=other,s=c2FsdA==,i=1",
        b"garbage",
    ] {
        let e = start().receive(server_first).err().expect("refused");
        shown.push(format!("{e} {e:?}"));
    }
    let cache = KeyCache::new(1);
    let server = MockServer::new(password, b"salt", 1);
    server.login(password, &cache).expect("login");
    shown.push(format!("{cache:?}"));
    for text in &shown {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{text:?} shows a secret");
        }
    }
}

proptest! {
    #[test]
    fn any_server_first_is_parsed_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = rfc_client().receive(&bytes);
    }

    #[test]
    fn near_miss_server_first_is_parsed_without_panicking(
        text in "(m=x,)?r=rOprNGfwEbeRWgbNEkqO[ -~]{0,10},s=[A-Za-z0-9+/=]{0,30},i=[0-9+-]{0,12}(,[a-z]=.{0,5})?"
    ) {
        match rfc_client().receive(text.as_bytes()) {
            // Keep PBKDF2 cheap: answer only small counts.
            Ok(challenge) if challenge.iterations() <= 16 => {
                let keys = challenge.derive_keys();
                let _ = challenge.answer(keys);
            }
            _ => {}
        }
    }

    #[test]
    fn any_server_final_is_checked_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let challenge = ClientFirst::with_nonce("", "pw", "n")
            .expect("nonce")
            .receive(b"r=nX,s=c2FsdA==,i=1")
            .expect("server-first");
        let keys = challenge.derive_keys();
        let (_, pending) = challenge.answer(keys);
        prop_assert!(pending.verify(&bytes).is_err());
    }
}

/// The server side of SCRAM-SHA-256 from a PostgreSQL verifier
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`), written here from the RFC
/// independently of the client under test.
struct MockServer {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl MockServer {
    fn new(password: &str, salt: &[u8], iterations: u32) -> MockServer {
        let mut salted = [0u8; 32];
        aws_lc_rs::pbkdf2::derive(
            aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).expect("positive"),
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        MockServer {
            salt: salt.to_vec(),
            iterations,
            stored_key: digest::digest(&digest::SHA256, client_key.as_ref())
                .as_ref()
                .to_vec(),
            server_key: hmac::sign(&key, b"Server Key").as_ref().to_vec(),
        }
    }

    fn from_verifier(verifier: &str) -> MockServer {
        let rest = verifier
            .strip_prefix("SCRAM-SHA-256$")
            .expect("SCRAM verifier");
        let (params, keys) = rest.split_once('$').expect("keys");
        let (iterations, salt) = params.split_once(':').expect("salt");
        let (stored, server) = keys.split_once(':').expect("server key");
        MockServer {
            salt: BASE64.decode(salt).expect("salt"),
            iterations: iterations.parse().expect("iterations"),
            stored_key: BASE64.decode(stored).expect("stored key"),
            server_key: BASE64.decode(server).expect("server key"),
        }
    }

    /// One whole login with `password`, keys from `cache` when it has them. Ok(true) when the
    /// keys came from the cache; Err when the server refuses the proof or the client refuses
    /// the server.
    fn login(&self, password: &str, cache: &KeyCache) -> Result<bool, String> {
        let client = ClientFirst::new(password).map_err(|e| e.to_string())?;
        let client_first = String::from_utf8(client.message().to_vec()).expect("ASCII");
        let bare = client_first.strip_prefix("n,,").expect("gs2 header");
        let nonce = bare.split_once(",r=").expect("nonce").1;
        let server_first = format!(
            "r={nonce}serverPart,s={},i={}",
            BASE64.encode(&self.salt),
            self.iterations
        );
        let challenge = client
            .receive(server_first.as_bytes())
            .map_err(|e| e.to_string())?;
        let (keys, cached) = match cache.get(&challenge) {
            Some(keys) => (keys, true),
            None => (challenge.derive_keys(), false),
        };
        let (client_final, pending) = challenge.answer(keys);
        let client_final = String::from_utf8(client_final).expect("ASCII");
        let (without_proof, proof) = client_final.rsplit_once(",p=").expect("proof");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let stored = hmac::Key::new(hmac::HMAC_SHA256, &self.stored_key);
        let signature = hmac::sign(&stored, auth_message.as_bytes());
        let proof = BASE64.decode(proof).expect("base64 proof");
        let client_key: Vec<u8> = proof
            .iter()
            .zip(signature.as_ref())
            .map(|(p, s)| p ^ s)
            .collect();
        if digest::digest(&digest::SHA256, &client_key).as_ref() != self.stored_key.as_slice() {
            return Err("the server refuses the proof".into());
        }
        let server = hmac::Key::new(hmac::HMAC_SHA256, &self.server_key);
        let server_final = format!(
            "v={}",
            BASE64.encode(hmac::sign(&server, auth_message.as_bytes()))
        );
        cache.insert(
            pending
                .verify(server_final.as_bytes())
                .map_err(|e| e.to_string())?,
        );
        Ok(cached)
    }
}
