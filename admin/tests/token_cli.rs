//! `tollctl token` as a user runs it: the built binary, a key directory in a temporary
//! directory, and the gateway's verifier checking what it printed.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use tollgate::identity::{self, Verifier};

fn tollctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollctl"))
        .args(args)
        // Keys must go only where a test says.
        .env_remove("TOLLGATE_KEY_DIR")
        .env("HOME", "/nonexistent-home-for-tollctl-tests")
        .env_remove("XDG_DATA_HOME")
        .output()
        .expect("run tollctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The token: the last line of stdout, alone.
fn last_line(out: &Output) -> String {
    let stdout = text(&out.stdout);
    stdout.lines().last().unwrap_or_default().to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn issue(key_dir: &Path, extra: &[&str]) -> (String, Output) {
    let dir = key_dir.to_str().expect("utf-8 path");
    let mut args = vec!["token", "issue", "--key-dir", dir];
    args.extend_from_slice(extra);
    let out = tollctl(&args);
    assert!(
        out.status.success(),
        "issue failed: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    (last_line(&out), out)
}

fn kid_of(token: &str) -> String {
    let (header, _) = identity::inspect(token).expect("decodes");
    header["kid"].as_str().expect("kid").to_owned()
}

#[test]
fn issue_creates_keys_once_and_prints_a_verifiable_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let keys = tmp.path().join("keys");
    let (token, out) = issue(
        &keys,
        &[
            "--sub",
            "alice@example.com",
            "--groups",
            "eng,dba",
            "--ttl",
            "15m",
        ],
    );
    assert_eq!(token.split('.').count(), 3, "a compact JWT: {token:?}");
    assert!(!token.contains(char::is_whitespace));
    let stderr = text(&out.stderr);
    let jwks = keys.join("jwks.json");
    assert!(
        stderr.contains(&jwks.display().to_string()),
        "stderr names the JWKS: {stderr}"
    );
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("issuer.key")), 0o600);
    assert!(jwks.exists());

    // The gateway accepts it with the JWKS that issue pointed at.
    let cfg: tollgate::config::IdentityConfig = serde_json::from_value(serde_json::json!({
        "issuer": "tollgate-local",
        "audience": "tollgate",
        "jwks_file": jwks,
    }))
    .expect("config");
    let principal = Verifier::from_config(&cfg)
        .expect("verifier")
        .verify(&token)
        .expect("token verifies");
    assert_eq!(principal.sub, "alice@example.com");
    assert_eq!(principal.groups, vec!["eng", "dba"]);
    assert_eq!(principal.kind, "human");
    let (_, claims) = identity::inspect(&token).expect("decodes");
    let ttl = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(ttl, 900);

    // A second issue reuses the key pair.
    let key_before = std::fs::read(keys.join("issuer.key")).expect("key");
    let (second, out) = issue(&keys, &["--sub", "deploy-bot", "--kind", "bot"]);
    assert_eq!(kid_of(&second), kid_of(&token), "same key, same kid");
    assert_eq!(
        std::fs::read(keys.join("issuer.key")).expect("key"),
        key_before
    );
    assert!(
        !text(&out.stderr).contains("created"),
        "{}",
        text(&out.stderr)
    );
    let (_, claims) = identity::inspect(&second).expect("decodes");
    assert_eq!(claims["kind"], "bot");
    assert_eq!(claims["groups"], serde_json::json!([]));
}

#[test]
fn key_dir_defaults_to_tollgate_key_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_tollctl"))
        .args(["token", "issue", "--sub", "alice"])
        .env("TOLLGATE_KEY_DIR", tmp.path().join("env-keys"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(tmp.path().join("env-keys/issuer.key").exists());
}

#[test]
fn inspect_shows_claims_and_times() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (token, _) = issue(
        tmp.path(),
        &["--sub", "alice@example.com", "--groups", "eng,dba"],
    );
    let out = tollctl(&["token", "inspect", &token]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "alice@example.com",
        "\"eng\"",
        "\"dba\"",
        "\"alg\": \"ES256\"",
        "(valid for ",
        "NOT VERIFIED",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    let exp_line = stdout
        .lines()
        .find(|l| l.starts_with("exp: "))
        .expect("exp line");
    assert!(
        exp_line.contains('T') && exp_line.contains("Z ("),
        "RFC 3339: {exp_line}"
    );

    let out = tollctl(&["token", "inspect", "--json", &token]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json is JSON");
    assert_eq!(doc["claims"]["groups"], serde_json::json!(["eng", "dba"]));
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8");
    let out = tollctl(&[
        "token",
        "issue",
        "--sub",
        "alice",
        "--ttl",
        "5 parsecs",
        "--key-dir",
        dir,
    ]);
    assert_eq!(out.status.code(), Some(2), "usage error");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--ttl") && stderr.contains("lifetime"),
        "{stderr}"
    );
    assert!(
        !tmp.path().join("issuer.key").exists(),
        "nothing created on a usage error"
    );

    let out = tollctl(&["token", "inspect", "definitely-garbage"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not a JWT"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A key directory that cannot be created.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let out = tollctl(&[
        "token",
        "issue",
        "--sub",
        "alice",
        "--key-dir",
        file.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a-file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
