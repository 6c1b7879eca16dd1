//! Identity stage tests: tokens from the local issuer checked by a verifier reading its JWKS,
//! and every way a token must be refused, with messages that never echo the token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;

use super::jwt::b64url;
use super::local::to_pem;
use super::*;
use crate::config::IdentityConfig;

fn identity_config(jwks: &Path, extra: &str) -> IdentityConfig {
    let text = format!(
        "issuer = \"tollgate-local\"\naudience = \"tollgate\"\njwks_file = '{}'\n{extra}",
        jwks.display()
    );
    toml::from_str(&text).expect("identity config")
}

struct Fixture {
    dir: TempDir,
    issuer: LocalIssuer,
    verifier: Arc<Verifier>,
}

fn fixture_with(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = LocalIssuer::load_or_create(&dir.path().join("keys")).expect("local issuer");
    let verifier =
        Verifier::from_config(&identity_config(&issuer.jwks_path(), extra)).expect("verifier");
    Fixture {
        dir,
        issuer,
        verifier,
    }
}

fn fixture() -> Fixture {
    fixture_with("")
}

fn now() -> i64 {
    verifier::unix_now()
}

/// A valid claims set for the default configuration.
fn claims() -> serde_json::Map<String, Value> {
    let now = now();
    let Value::Object(map) = json!({
        "iss": "tollgate-local",
        "aud": "tollgate",
        "sub": "alice@example.com",
        "groups": ["eng"],
        "iat": now,
        "exp": now + 600,
    }) else {
        unreachable!("a json object literal")
    };
    map
}

fn sign(issuer: &LocalIssuer, claims: serde_json::Map<String, Value>) -> String {
    issuer
        .sign_claims(&Value::Object(claims))
        .expect("sign claims")
}

/// The message a client would see, and the Debug form a log line would show, contain no
/// 10-character piece of the token.
fn assert_hides_token(err: &Error, token: &str) {
    let shown = format!("{err} || {err:?}");
    for window in token.as_bytes().windows(10) {
        let piece = String::from_utf8_lossy(window);
        assert!(
            !shown.contains(piece.as_ref()),
            "error {shown:?} contains token piece {piece:?}"
        );
    }
}

/// Verifies a token that must be refused and returns the error, after checking its message.
fn refuse(verifier: &Verifier, token: &str) -> Error {
    let err = verifier.verify(token).expect_err("token must be refused");
    assert_hides_token(&err, token);
    assert!(err.is_token_error(), "{err:?} should be a token error");
    err
}

fn segments(token: &str) -> (String, String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWT");
    (parts[0].into(), parts[1].into(), parts[2].into())
}

#[test]
fn issued_token_verifies_into_principal() {
    let f = fixture();
    let token = f
        .issuer
        .issue(&TokenRequest::new("alice@example.com", &["eng", "dba"]))
        .expect("issue");
    let p = f.verifier.verify(&token).expect("verify");
    assert_eq!(
        p,
        Principal {
            sub: "alice@example.com".into(),
            groups: vec!["eng".into(), "dba".into()],
            user: "alice@example.com".into(),
            kind: "human".into(),
        }
    );
    // A token pasted with its newline still verifies.
    assert_eq!(f.verifier.verify(&format!("{token}\n")).expect("verify"), p);
}

#[test]
fn kind_claim_and_no_groups() {
    let f = fixture();
    let mut req = TokenRequest::new("deploy-bot", &[]);
    req.kind = Some("bot".into());
    let p = f
        .verifier
        .verify(&f.issuer.issue(&req).expect("issue"))
        .expect("verify");
    assert_eq!(p.kind, "bot");
    assert!(p.groups.is_empty());

    let mut c = claims();
    c.remove("groups");
    let p = f.verifier.verify(&sign(&f.issuer, c)).expect("verify");
    assert!(
        p.groups.is_empty(),
        "a missing groups claim means no groups"
    );
}

#[test]
fn groups_and_user_claims_are_configurable() {
    let f = fixture_with("groups_claim = \"roles\"\nuser_claim = \"email\"");
    let mut c = claims();
    c.insert("roles".into(), json!(["reader", "oncall"]));
    c.insert("email".into(), json!("alice@corp.example"));
    let p = f
        .verifier
        .verify(&sign(&f.issuer, c.clone()))
        .expect("verify");
    assert_eq!(
        p.groups,
        vec!["reader", "oncall"],
        "groups from roles, not groups"
    );
    assert_eq!(p.user, "alice@corp.example");
    assert_eq!(p.sub, "alice@example.com");

    c.remove("email");
    let token = sign(&f.issuer, c);
    let err = refuse(&f.verifier, &token);
    assert!(
        matches!(&err, Error::MissingClaim(c) if c == "email"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "token has no email claim");
}

#[test]
fn groups_claim_that_is_not_a_list_is_refused() {
    let f = fixture();
    for groups in [json!("eng"), json!(["eng", 7]), json!({"eng": true})] {
        let mut c = claims();
        c.insert("groups".into(), groups);
        let token = sign(&f.issuer, c);
        let err = refuse(&f.verifier, &token);
        assert!(
            matches!(&err, Error::InvalidClaim { claim, .. } if claim == "groups"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "token claim groups is not a list of strings"
        );
    }
}

#[test]
fn expired_token_is_refused_after_the_leeway() {
    let f = fixture(); // leeway_s defaults to 30
    let exp = now() - 3600;
    let mut c = claims();
    c.insert("exp".into(), json!(exp));
    let token = sign(&f.issuer, c);
    let err = refuse(&f.verifier, &token);
    assert!(matches!(err, Error::Expired), "{err:?}");
    assert_eq!(err.to_string(), "token expired");

    assert!(
        f.verifier.verify_at(&token, exp + 29).is_ok(),
        "within leeway"
    );
    assert!(matches!(
        f.verifier.verify_at(&token, exp + 30),
        Err(Error::Expired)
    ));
}

#[test]
fn token_without_exp_is_refused() {
    let f = fixture();
    let mut c = claims();
    c.remove("exp");
    let token = sign(&f.issuer, c);
    let err = refuse(&f.verifier, &token);
    assert!(
        matches!(&err, Error::MissingClaim(c) if c == "exp"),
        "{err:?}"
    );

    let mut c = claims();
    c.insert("exp".into(), json!("tomorrow"));
    let err = refuse(&f.verifier, &sign(&f.issuer, c));
    assert!(
        matches!(&err, Error::InvalidClaim { claim, .. } if claim == "exp"),
        "{err:?}"
    );
}

#[test]
fn token_not_valid_yet_is_refused() {
    let f = fixture();
    let nbf = now() + 3600;
    let mut c = claims();
    c.insert("nbf".into(), json!(nbf));
    c.insert("exp".into(), json!(nbf + 600));
    let token = sign(&f.issuer, c);
    let err = refuse(&f.verifier, &token);
    assert!(matches!(err, Error::NotYetValid), "{err:?}");
    assert_eq!(err.to_string(), "token is not valid yet");
    assert!(
        f.verifier.verify_at(&token, nbf - 30).is_ok(),
        "within leeway"
    );
    assert!(matches!(
        f.verifier.verify_at(&token, nbf - 31),
        Err(Error::NotYetValid)
    ));
}

#[test]
fn wrong_audience_is_refused_and_audience_lists_are_accepted() {
    let f = fixture();
    let mut req = TokenRequest::new("alice", &[]);
    req.audience = "billing".into();
    let token = f.issuer.issue(&req).expect("issue");
    let err = refuse(&f.verifier, &token);
    assert!(matches!(err, Error::WrongAudience { .. }), "{err:?}");
    assert_eq!(err.to_string(), "token audience is not tollgate");

    let mut c = claims();
    c.insert("aud".into(), json!(["billing", "tollgate"]));
    assert!(
        f.verifier.verify(&sign(&f.issuer, c)).is_ok(),
        "aud list containing tollgate"
    );

    let mut c = claims();
    c.insert("aud".into(), json!(["billing"]));
    let err = refuse(&f.verifier, &sign(&f.issuer, c));
    assert!(matches!(err, Error::WrongAudience { .. }), "{err:?}");

    let mut c = claims();
    c.remove("aud");
    let err = refuse(&f.verifier, &sign(&f.issuer, c));
    assert!(
        matches!(&err, Error::MissingClaim(c) if c == "aud"),
        "{err:?}"
    );
}

#[test]
fn wrong_issuer_is_refused() {
    let f = fixture();
    let mut req = TokenRequest::new("alice", &[]);
    req.issuer = "https://evil.example".into();
    let token = f.issuer.issue(&req).expect("issue");
    let err = refuse(&f.verifier, &token);
    assert!(matches!(err, Error::WrongIssuer { .. }), "{err:?}");
    assert_eq!(err.to_string(), "token issuer is not tollgate-local");

    let mut c = claims();
    c.remove("iss");
    let err = refuse(&f.verifier, &sign(&f.issuer, c));
    assert!(
        matches!(&err, Error::MissingClaim(c) if c == "iss"),
        "{err:?}"
    );
}

#[test]
fn token_from_another_issuer_key_is_refused() {
    let f = fixture();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = LocalIssuer::load_or_create(other_dir.path()).expect("other issuer");
    assert_ne!(other.kid(), f.issuer.kid());
    let token = other
        .issue(&TokenRequest::new("mallory", &["dba"]))
        .expect("issue");

    // Its kid is not published by our issuer.
    let err = refuse(&f.verifier, &token);
    assert!(matches!(err, Error::UnknownKey), "{err:?}");

    // Claiming our kid does not help: the signature is checked with our key.
    let (_, payload, signature) = segments(&token);
    let header = b64url(
        json!({"alg": "ES256", "typ": "JWT", "kid": f.issuer.kid()})
            .to_string()
            .as_bytes(),
    );
    let forged = format!("{header}.{payload}.{signature}");
    let err = refuse(&f.verifier, &forged);
    assert!(matches!(err, Error::BadSignature), "{err:?}");
    assert_eq!(err.to_string(), "token signature does not verify");

    // Without a kid, every key of the algorithm is tried, and none verifies.
    let header = b64url(br#"{"alg":"ES256","typ":"JWT"}"#);
    let err = refuse(&f.verifier, &format!("{header}.{payload}.{signature}"));
    assert!(matches!(err, Error::BadSignature), "{err:?}");
}

#[test]
fn tampered_payload_is_refused() {
    let f = fixture();
    let token = f
        .issuer
        .issue(&TokenRequest::new("alice", &["eng"]))
        .expect("issue");
    let (header, payload, signature) = segments(&token);
    let mut claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            payload.as_bytes(),
        )
        .expect("b64"),
    )
    .expect("json");
    claims["groups"] = json!(["eng", "dba"]);
    let tampered = format!(
        "{header}.{}.{signature}",
        b64url(claims.to_string().as_bytes())
    );
    let err = refuse(&f.verifier, &tampered);
    assert!(matches!(err, Error::BadSignature), "{err:?}");

    // A flipped signature byte too.
    let mut sig = signature.into_bytes();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    let flipped = format!(
        "{header}.{payload}.{}",
        String::from_utf8(sig).expect("ascii")
    );
    let err = refuse(&f.verifier, &flipped);
    assert!(matches!(err, Error::BadSignature), "{err:?}");
}

#[test]
fn alg_none_is_refused() {
    let f = fixture();
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(Value::Object(claims()).to_string().as_bytes());
    let token = format!("{header}.{payload}.");
    let err = refuse(&f.verifier, &token);
    assert!(
        matches!(&err, Error::UnsupportedAlgorithm(a) if a == "none"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "token algorithm none is not accepted (only RS256 and ES256 are)"
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // The classic confusion attack: HMAC keyed with the published public key.
    let f = fixture();
    let secret = std::fs::read(f.issuer.jwks_path()).expect("jwks");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(f.issuer.kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &Value::Object(claims()),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .expect("hs256");
    let err = refuse(&f.verifier, &token);
    assert!(
        matches!(&err, Error::UnsupportedAlgorithm(a) if a == "HS256"),
        "{err:?}"
    );

    // An unregistered algorithm name is not echoed back.
    let header = b64url(br#"{"alg":"XYZ-secret-alg"}"#);
    let token = format!("{header}.{}.AAAA", b64url(b"{}"));
    let err = refuse(&f.verifier, &token);
    assert!(!err.to_string().contains("XYZ"), "{err}");
}

#[test]
fn garbage_is_refused_as_not_a_jwt() {
    let f = fixture();
    for garbage in [
        "",
        "hunter2hunter2hunter2",
        "%%%%%%%%.&&&&&&&&&.********",
        "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln", // claims are not JSON
        "bm90IGpzb24.e30.c2ln",                  // header is not JSON
        "a.b.c.d",
        "eyJhbGciOiJFUzI1NiJ9..c2ln",
    ] {
        let err = refuse(&f.verifier, garbage);
        assert!(
            matches!(
                err,
                Error::Malformed | Error::BadSignature | Error::UnknownKey
            ),
            "{garbage:?}: {err:?}"
        );
    }
    let err = refuse(&f.verifier, "not-even-close");
    assert!(matches!(err, Error::Malformed), "{err:?}");
    assert_eq!(err.to_string(), "token is not a JWT");

    let huge = "A".repeat(jwt::MAX_TOKEN_BYTES + 1);
    assert!(matches!(
        f.verifier.verify(&huge),
        Err(Error::TooLong { .. })
    ));

    let crit = b64url(br#"{"alg":"ES256","crit":["exp"]}"#);
    let err = refuse(&f.verifier, &format!("{crit}.e30.AAAA"));
    assert!(matches!(err, Error::UnsupportedHeader("crit")), "{err:?}");
}

/// RS256 with a key made here: the JWKS carries its modulus and exponent, jsonwebtoken signs.
#[test]
fn rs256_token_verifies() {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RsaPublicKeyComponents};

    install_crypto_provider();
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("rsa key");
    let pkcs8 = pair.as_der().expect("pkcs8");
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks_path = dir.path().join("jwks.json");
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
         "n": b64url(&public.n), "e": b64url(&public.e)},
        // Keys the gateway cannot use sit beside it without failing the set.
        {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": b64url(&public.n), "e": b64url(&public.e)},
        {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    ]});
    std::fs::write(&jwks_path, jwks.to_string()).expect("write jwks");
    let verifier = Verifier::from_config(&identity_config(&jwks_path, "")).expect("verifier");
    assert_eq!(verifier.key_count(), 1);

    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(to_pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
            .expect("rsa pem");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(&header, &Value::Object(claims()), &key).expect("rs256");
    let p = verifier.verify(&token).expect("RS256 verifies");
    assert_eq!(p.sub, "alice@example.com");
    assert_eq!(p.groups, vec!["eng"]);

    // The RSA key's kid with an ES256 header: a key of another algorithm never verifies.
    let (_, payload, signature) = segments(&token);
    let header = b64url(br#"{"alg":"ES256","kid":"rsa-1"}"#);
    let err = refuse(&verifier, &format!("{header}.{payload}.{signature}"));
    assert!(matches!(err, Error::BadSignature), "{err:?}");
}

#[test]
fn reload_picks_up_rotated_keys() {
    let f = fixture();
    let next_dir = tempfile::tempdir().expect("tempdir");
    let next = LocalIssuer::load_or_create(next_dir.path()).expect("next issuer");
    let token = next.issue(&TokenRequest::new("alice", &[])).expect("issue");
    assert!(matches!(f.verifier.verify(&token), Err(Error::UnknownKey)));

    // The operator publishes both keys during the rotation.
    let both = json!({"keys": [f.issuer.jwks()["keys"][0], next.jwks()["keys"][0]]});
    std::fs::write(f.issuer.jwks_path(), both.to_string()).expect("write");
    f.verifier.reload().expect("reload");
    assert!(f.verifier.verify(&token).is_ok());
    let old = f
        .issuer
        .issue(&TokenRequest::new("bob", &[]))
        .expect("issue");
    assert!(f.verifier.verify(&old).is_ok());

    // A broken file is reported and the keys in force stay.
    std::fs::write(f.issuer.jwks_path(), "{not json").expect("write");
    let err = f.verifier.reload().expect_err("broken JWKS");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    assert!(f.verifier.verify(&token).is_ok());
}

#[test]
fn local_issuer_files_have_private_modes_and_key_is_reused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("a/b/keys");
    let first = LocalIssuer::load_or_create(&keys).expect("create");
    assert!(first.created());
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&first.key_path()), 0o600);
    assert_eq!(mode(&first.jwks_path()), 0o644);
    let pem = std::fs::read_to_string(first.key_path()).expect("key");
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "PKCS#8 PEM"
    );
    let jwks: Value =
        serde_json::from_slice(&std::fs::read(first.jwks_path()).expect("jwks")).expect("json");
    assert_eq!(jwks["keys"][0]["kid"], first.kid());
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private part in the JWKS"
    );

    let second = LocalIssuer::load_or_create(&keys).expect("load");
    assert!(!second.created());
    assert_eq!(second.kid(), first.kid());
    assert_eq!(
        std::fs::read_to_string(second.key_path()).expect("key"),
        pem
    );

    // Losing jwks.json republishes the same key; it never makes a new one.
    std::fs::remove_file(first.jwks_path()).expect("rm");
    let third = LocalIssuer::load_or_create(&keys).expect("load");
    assert_eq!(third.kid(), first.kid());
    assert!(third.jwks_path().exists());
    assert_eq!(std::fs::read_to_string(third.key_path()).expect("key"), pem);

    // Tokens of the first instance verify with keys published by the third.
    let v = Verifier::from_config(&identity_config(&third.jwks_path(), "")).expect("verifier");
    let token = first
        .issue(&TokenRequest::new("alice", &[]))
        .expect("issue");
    assert!(v.verify(&token).is_ok());
}

#[test]
fn broken_key_file_is_reported_not_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("issuer.key"), "not a key").expect("write");
    let err = LocalIssuer::load_or_create(dir.path()).expect_err("broken key");
    assert!(err.to_string().contains("issuer.key"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("issuer.key")).expect("read"),
        "not a key"
    );
}

#[test]
fn issue_refuses_bad_requests() {
    let f = fixture();
    let mut req = TokenRequest::new("", &[]);
    assert!(matches!(f.issuer.issue(&req), Err(Error::Issue(_))));
    req.sub = "alice".into();
    req.ttl = Duration::ZERO;
    assert!(matches!(f.issuer.issue(&req), Err(Error::Issue(_))));
}

#[test]
fn inspect_decodes_without_verifying() {
    let f = fixture();
    let mut req = TokenRequest::new("alice", &["eng"]);
    req.audience = "someone-else".into(); // would not verify; inspect does not care
    let token = f.issuer.issue(&req).expect("issue");
    let (header, claims) = inspect(&token).expect("inspect");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], f.issuer.kid());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["groups"], json!(["eng"]));
    assert_eq!(claims["aud"], "someone-else");
    let ttl = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(ttl, 3600);
    assert!(matches!(inspect("garbage"), Err(Error::Malformed)));
}

#[test]
fn verifier_is_shareable_across_shards() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Verifier>();
    let f = fixture();
    let token = f
        .issuer
        .issue(&TokenRequest::new("alice", &[]))
        .expect("issue");
    let verifier = f.verifier.clone();
    let handle = std::thread::spawn(move || verifier.verify(&token).map(|p| p.sub));
    assert_eq!(handle.join().expect("thread").expect("verify"), "alice");
    drop(f.dir);
}

#[test]
fn local_issuer_without_jwks_file_is_a_clear_error() {
    let cfg: IdentityConfig =
        toml::from_str("issuer = \"tollgate-local\"\naudience = \"tollgate\"").expect("cfg");
    let err = Verifier::from_config(&cfg).expect_err("no jwks_file");
    assert!(err.to_string().contains("jwks_file"), "{err}");
    let missing = Path::new("/nonexistent/tollgate/jwks.json");
    let err = Verifier::from_config(&identity_config(missing, "")).expect_err("missing file");
    assert!(
        err.to_string().contains("/nonexistent/tollgate/jwks.json"),
        "{err}"
    );
}
