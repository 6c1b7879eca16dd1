//! Identity stage tests against a real HTTPS identity provider: a rustls server on 127.0.0.1
//! with a self-signed certificate, serving OIDC discovery and a JWKS that the test changes.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

use super::*;
use crate::config::IdentityConfig;

/// A tiny identity provider.
struct Idp {
    addr: SocketAddr,
    issuer: String,
    ca_pem: String,
    jwks: Arc<Mutex<String>>,
    jwks_gets: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Idp {
    fn start(jwks: &Value) -> Idp {
        Idp::start_claiming(jwks, None)
    }

    /// `claimed_issuer`: what the discovery document says (None: the truth).
    fn start_claiming(jwks: &Value, claimed_issuer: Option<&str>) -> Idp {
        install_crypto_provider();
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
        let config = Arc::new(config);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = format!("https://127.0.0.1:{}", addr.port());
        let jwks_body = Arc::new(Mutex::new(jwks.to_string()));
        let jwks_gets = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let discovery = json!({
            "issuer": claimed_issuer.unwrap_or(&issuer),
            "jwks_uri": format!("{issuer}/jwks"),
        })
        .to_string();
        let thread = {
            let (jwks_body, jwks_gets, stop) = (jwks_body.clone(), jwks_gets.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    // A failed exchange (a client that hung up) only ends that exchange.
                    let _ = serve(stream, &config, |path| match path {
                        "/.well-known/openid-configuration" => Some(discovery.clone()),
                        "/jwks" => {
                            jwks_gets.fetch_add(1, Ordering::SeqCst);
                            Some(
                                jwks_body
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .clone(),
                            )
                        }
                        _ => None,
                    });
                }
            })
        };
        Idp {
            addr,
            issuer,
            ca_pem: certified.cert.pem(),
            jwks: jwks_body,
            jwks_gets,
            stop,
            thread: Some(thread),
        }
    }

    fn serve_jwks(&self, jwks: &Value) {
        *self.jwks.lock().unwrap_or_else(PoisonError::into_inner) = jwks.to_string();
    }

    fn jwks_gets(&self) -> usize {
        self.jwks_gets.load(Ordering::SeqCst)
    }

    fn config(&self, extra: &str) -> IdentityConfig {
        toml::from_str(&format!(
            "issuer = \"{}\"\naudience = \"tollgate\"\njwks_refresh_s = 3600\njwks_min_refresh_s = 1\n{extra}",
            self.issuer
        ))
        .expect("identity config")
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One HTTP/1.1 exchange over TLS; the connection is closed after the answer.
fn serve(
    tcp: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    route: impl Fn(&str) -> Option<String>,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf)?;
        if n == 0 || request.len() > 64 * 1024 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or_default();
    let (status, body) = match route(path) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", "{}".to_owned()),
    };
    write!(
        tls,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.conn.send_close_notify();
    tls.flush()
}

fn issuer_in(dir: &tempfile::TempDir) -> LocalIssuer {
    LocalIssuer::load_or_create(dir.path()).expect("signing key")
}

fn request_for(idp: &Idp, sub: &str) -> TokenRequest {
    TokenRequest {
        issuer: idp.issuer.clone(),
        ..TokenRequest::new(sub, &["eng"])
    }
}

#[test]
fn discovery_then_unknown_kid_triggers_rate_limited_refresh() {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (a, b) = (issuer_in(&dir_a), issuer_in(&dir_b));
    let idp = Idp::start(&a.jwks());

    let started = Instant::now();
    let verifier =
        Verifier::with_issuer_ca(&idp.config(""), idp.ca_pem.as_bytes()).expect("discovery");
    assert_eq!(idp.jwks_gets(), 1, "keys fetched once at start-up");
    let p = verifier
        .verify(&a.issue(&request_for(&idp, "alice")).expect("issue"))
        .expect("token of the published key verifies");
    assert_eq!(p.sub, "alice");
    assert_eq!(p.groups, vec!["eng"]);

    // The issuer rotates: tokens of key B appear before the gateway has seen B.
    let rotated = b.issue(&request_for(&idp, "bob")).expect("issue");
    assert!(matches!(verifier.verify(&rotated), Err(Error::UnknownKey)));
    idp.serve_jwks(&json!({"keys": [a.jwks()["keys"][0], b.jwks()["keys"][0]]}));

    // The miss asked the background thread for a refresh, which waits out the rate limit
    // (1 s since the start-up fetch); many misses meanwhile collapse into few fetches.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempts = 0;
    let p = loop {
        attempts += 1;
        match verifier.verify(&rotated) {
            Ok(p) => break p,
            Err(Error::UnknownKey) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("rotated key never became valid: {e}"),
        }
    };
    assert_eq!(p.sub, "bob");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "refresh came before jwks_min_refresh_s: {:?}",
        started.elapsed()
    );
    let refreshes = idp.jwks_gets() - 1;
    assert!(
        (1..=3).contains(&refreshes),
        "{refreshes} refreshes for {attempts} unknown-kid misses"
    );
    assert!(attempts > refreshes, "misses are rate limited");
    // The old key still works.
    assert!(verifier
        .verify(&a.issue(&request_for(&idp, "alice")).expect("issue"))
        .is_ok());
}

#[test]
fn discovery_naming_another_issuer_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = issuer_in(&dir);
    let idp = Idp::start_claiming(&a.jwks(), Some("https://evil.example"));
    let err = Verifier::with_issuer_ca(&idp.config(""), idp.ca_pem.as_bytes())
        .expect_err("issuer mismatch");
    assert!(matches!(err, Error::Keys(_)), "{err:?}");
    assert!(err.to_string().contains("another issuer"), "{err}");
    assert_eq!(
        idp.jwks_gets(),
        0,
        "JWKS of a mismatched issuer is not fetched"
    );
}

#[test]
fn issuer_with_an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = issuer_in(&dir);
    let idp = Idp::start(&a.jwks());
    let other_ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("cert")
        .cert
        .pem();
    let err = Verifier::with_issuer_ca(&idp.config(""), other_ca.as_bytes())
        .expect_err("untrusted certificate");
    assert!(matches!(err, Error::Keys(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(idp.jwks_gets(), 0);
}

#[test]
fn unreachable_issuer_fails_start_unless_keys_are_pinned() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = issuer_in(&dir);
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let issuer = format!("https://127.0.0.1:{port}");
    let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("cert")
        .cert
        .pem();
    let cfg: IdentityConfig =
        toml::from_str(&format!("issuer = \"{issuer}\"\naudience = \"tollgate\"")).expect("cfg");
    let err = Verifier::with_issuer_ca(&cfg, ca.as_bytes()).expect_err("nobody listens");
    assert!(err.to_string().contains(&issuer), "{err}");

    // With a pinned key set the gateway starts and serves tokens while the issuer is away.
    let cfg: IdentityConfig = toml::from_str(&format!(
        "issuer = \"{issuer}\"\naudience = \"tollgate\"\njwks_file = '{}'",
        a.jwks_path().display()
    ))
    .expect("cfg");
    let verifier = Verifier::with_issuer_ca(&cfg, ca.as_bytes()).expect("pinned keys");
    let token = a
        .issue(&TokenRequest {
            issuer: issuer.clone(),
            ..TokenRequest::new("alice", &[])
        })
        .expect("issue");
    assert_eq!(verifier.verify(&token).expect("verify").sub, "alice");
}
