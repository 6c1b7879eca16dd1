//! End-to-end tests of the PostgreSQL data plane: a real PostgreSQL cluster, the real
//! `tollgate` binary, and real clients (tokio-postgres, psql, pgbench) going through it.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::{Gateway, GatewayOptions, PgCluster};
use tokio_postgres::{NoTls, SimpleQueryMessage};

const SUB: &str = "alice@example.com";

fn gateway() -> Gateway {
    Gateway::start(PgCluster::shared(), GatewayOptions::default())
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn through(gw: &Gateway) -> tokio_postgres::Client {
    connect(&gw.conninfo(SUB, &["eng"], "orders"))
        .await
        .expect("connect through the gateway")
}

async fn direct() -> tokio_postgres::Client {
    connect(&PgCluster::shared().direct_conninfo())
        .await
        .expect("connect directly")
}

/// All rows of a simple query, as text, for comparing gateway and direct results.
async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .expect(sql)
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a server error, got {e:?}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_through_the_gateway_equal_direct_results() {
    let gw = gateway();
    let via = through(&gw).await;
    let dir = direct().await;
    for sql in [
        "select id, name, email, card_number from customers order by id",
        "select customer_id, sum(amount)::text, count(*) from orders group by 1 order by 1",
        "select current_user, current_database()",
        "select x, md5(x::text) from generate_series(1, 20000) x",
    ] {
        assert_eq!(rows(&via, sql).await, rows(&dir, sql).await, "{sql}");
    }
    // The upstream login is the gateway's: the database sees orders_app, not the token's subject.
    let who = rows(&via, "select current_user").await;
    assert_eq!(who[0][0].as_deref(), Some("orders_app"));
    // Large result: 50 MB through the relay, intact.
    let big = rows(
        &via,
        "select count(*), sum(length(repeat(md5(x::text), 30))) from generate_series(1, 50000) x",
    )
    .await;
    let big_direct = rows(
        &dir,
        "select count(*), sum(length(repeat(md5(x::text), 30))) from generate_series(1, 50000) x",
    )
    .await;
    assert_eq!(big, big_direct);
    let wide = via
        .query(
            "select repeat(md5(x::text), 1000) from generate_series(1, 300) x",
            &[],
        )
        .await
        .expect("wide rows");
    assert_eq!(wide.len(), 300);
    assert!(wide.iter().all(|r| r.get::<_, String>(0).len() == 32_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_prepared_statements_work() {
    let gw = gateway();
    let mut via = through(&gw).await;
    via.batch_execute("create table if not exists tx_probe (id int primary key, note text)")
        .await
        .expect("create");
    via.batch_execute("truncate tx_probe")
        .await
        .expect("truncate");

    let tx = via.transaction().await.expect("begin");
    tx.execute("insert into tx_probe values (1, 'rolled back')", &[])
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    let tx = via.transaction().await.expect("begin");
    let insert = tx
        .prepare("insert into tx_probe values ($1, $2)")
        .await
        .expect("prepare");
    for i in 2..12 {
        tx.execute(&insert, &[&i, &format!("row {i}")])
            .await
            .expect("execute prepared");
    }
    tx.commit().await.expect("commit");

    let select = via
        .prepare("select note from tx_probe where id = $1")
        .await
        .expect("prepare select");
    for i in 2..12 {
        let row = via.query_one(&select, &[&i]).await.expect("query prepared");
        assert_eq!(row.get::<_, String>(0), format!("row {i}"));
    }
    let count: i64 = via
        .query_one("select count(*) from tx_probe", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 10, "the rolled-back row must not exist");

    // An error inside a transaction aborts it, as it would directly.
    let tx = via.transaction().await.expect("begin");
    let err = tx
        .execute("insert into tx_probe values (2, 'duplicate')", &[])
        .await
        .expect_err("duplicate key");
    assert_eq!(db_error(&err).0, "23505");
    let err = tx.execute("select 1", &[]).await.expect_err("aborted");
    assert_eq!(db_error(&err).0, "25P02");
    tx.rollback().await.expect("rollback");
    assert_eq!(rows(&via, "select 1").await[0][0].as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_work() {
    let gw = gateway();
    let via = through(&gw).await;
    via.batch_execute(
        "create table if not exists copy_probe (id int, body text); truncate copy_probe",
    )
    .await
    .expect("create");
    let sink = via
        .copy_in("copy copy_probe from stdin")
        .await
        .expect("copy in");
    let mut sink = std::pin::pin!(sink);
    let mut expected = String::new();
    for i in 0..5000 {
        let line = format!("{i}\tline {i} {}\n", "x".repeat(i % 50));
        expected.push_str(&line);
        sink.send(bytes::Bytes::from(line)).await.expect("send");
    }
    let n = sink.finish().await.expect("finish");
    assert_eq!(n, 5000);

    let out = via
        .copy_out("copy (select * from copy_probe order by id) to stdout")
        .await
        .expect("copy out");
    let chunks: Vec<bytes::Bytes> = out.map(|c| c.expect("chunk")).collect().await;
    let got: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(got).expect("utf8"), expected);

    // A failed COPY leaves the session usable.
    let sink = via
        .copy_in("copy copy_probe from stdin")
        .await
        .expect("copy in");
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from_static(b"not-a-number\tx\n"))
        .await
        .ok();
    let err = sink.finish().await.expect_err("bad data");
    assert_eq!(db_error(&err).0, "22P02");
    assert_eq!(
        rows(&via, "select count(*) from copy_probe").await[0][0].as_deref(),
        Some("5000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_reaches_the_listener() {
    let gw = gateway();
    let (listener, mut conn) = tokio_postgres::connect(&gw.conninfo(SUB, &[], "orders"), NoTls)
        .await
        .expect("connect");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener
        .batch_execute("listen orders_events")
        .await
        .expect("listen");
    let notifier = through(&gw).await;
    notifier
        .batch_execute("notify orders_events, 'order 42 shipped'")
        .await
        .expect("notify");
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("notification in time")
        .expect("notification");
    assert_eq!(
        got,
        ("orders_events".to_owned(), "order 42 shipped".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_upstream_from_any_shard() {
    let gw = gateway();
    let via = through(&gw).await;
    // Several rounds, so the cancel connection lands on both shards at least once in practice.
    for _ in 0..4 {
        let token = via.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            token.cancel_query(NoTls).await
        });
        let started = Instant::now();
        let err = via
            .simple_query("select pg_sleep(30)")
            .await
            .expect_err("cancelled");
        assert_eq!(db_error(&err).0, "57014", "query_canceled");
        assert!(started.elapsed() < Duration::from_secs(20));
        canceller.await.expect("join").expect("cancel sent");
        // The session stays usable.
        assert_eq!(rows(&via, "select 7").await[0][0].as_deref(), Some("7"));
    }
    // A cancel with a made-up key does nothing and does not disturb the gateway.
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    let mut out = Vec::new();
    tollgate::proto::pg::encode_cancel_request(&mut out, 12345, &[1, 2, 3, 4]);
    s.write_all(&out).expect("write");
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    assert!(sink.is_empty());
    assert_eq!(rows(&via, "select 8").await[0][0].as_deref(), Some("8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_failure_is_a_fatal_28000_that_does_not_echo_the_token() {
    let gw = gateway();
    let issuer = gw.issuer();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let stranger =
        tollgate::identity::LocalIssuer::load_or_create(other_dir.path()).expect("issuer");
    let port = gw.addr.port();
    let conninfo = |user: &str, token: &str| {
        format!(
            "host=127.0.0.1 port={port} user={user} dbname=orders password={token} sslmode=disable"
        )
    };

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expired = issuer
        .sign_claims(&serde_json::json!({
            "iss": "tollgate-local", "aud": "tollgate", "sub": SUB, "groups": ["eng"],
            "iat": now - 7200, "exp": now - 3600,
        }))
        .expect("sign");
    let mut wrong_aud = tollgate::identity::TokenRequest::new(SUB, &["eng"]);
    wrong_aud.audience = "someone-else".into();
    let wrong_aud = issuer.issue(&wrong_aud).expect("issue");
    let mut wrong_iss = tollgate::identity::TokenRequest::new(SUB, &["eng"]);
    wrong_iss.issuer = "evil-issuer".into();
    let wrong_iss = issuer.issue(&wrong_iss).expect("issue");
    let foreign = stranger
        .issue(&tollgate::identity::TokenRequest::new(SUB, &["eng"]))
        .expect("issue");
    let good = gw.token(SUB, &["eng"]);
    let mut tampered_parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    tampered_parts[1] = tampered_parts[1].chars().rev().collect();
    let tampered = tampered_parts.join(".");

    let cases: Vec<(&str, String, String, &str)> = vec![
        ("expired", SUB.into(), expired, "expired"),
        ("wrong audience", SUB.into(), wrong_aud, "audience"),
        ("wrong issuer", SUB.into(), wrong_iss, "issuer"),
        ("foreign key", SUB.into(), foreign, ""),
        ("tampered", SUB.into(), tampered, ""),
        ("garbage", SUB.into(), "not-a-token-at-all".into(), ""),
        (
            "user mismatch",
            "mallory@example.com".into(),
            good.clone(),
            "does not match",
        ),
    ];
    for (name, user, token, needle) in cases {
        let err = connect(&conninfo(&user, &token))
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: the gateway let the session in"));
        let (code, message) = db_error(&err);
        assert_eq!(code, "28000", "{name}: {message}");
        assert!(
            message.contains(needle),
            "{name}: {message:?} should mention {needle:?}"
        );
        let db = err.as_db_error().expect("db error");
        assert_eq!(db.severity(), "FATAL", "{name}");
        if token.len() > 12 {
            for window in token.as_bytes().windows(12).step_by(5) {
                let piece = std::str::from_utf8(window).expect("ascii");
                assert!(
                    !message.contains(piece),
                    "{name}: the error echoes the token"
                );
            }
        }
    }
    // The good token still works, so the failures were about the tokens.
    let ok = connect(&conninfo(SUB, &good)).await.expect("good token");
    assert_eq!(rows(&ok, "select 1").await[0][0].as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_connection_is_a_clear_error() {
    let gw = gateway();
    let Err(err) = connect(&gw.conninfo(SUB, &[], "no_such_connection")).await else {
        panic!("must fail");
    };
    let (code, message) = db_error(&err);
    assert_eq!(code, "3D000");
    assert!(message.contains("no_such_connection"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_client_encodings_and_search_path_do_not_pass() {
    let gw = gateway();
    let token = gw.token(SUB, &[]);
    let out = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user={SUB} dbname=orders sslmode=disable client_encoding=SJIS",
            gw.addr.port()
        ))
        .env("PGPASSWORD", &token)
        .args(["-Atc", "select 1"])
        .output()
        .expect("psql");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("client_encoding"), "{stderr}");
    // A search_path in the start-up packet is not passed on: bare names keep their meaning.
    let out = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user={SUB} dbname=orders sslmode=disable options='-c search_path=pg_catalog'",
            gw.addr.port()
        ))
        .env("PGPASSWORD", &token)
        .args(["-Atc", "show search_path"])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "\"$user\", public"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_and_trust_upstreams_log_in() {
    let gw = gateway();
    for (connection, role) in [("orders_md5", "md5_app"), ("orders_trust", "trust_app")] {
        let c = connect(&gw.conninfo(SUB, &[], connection))
            .await
            .unwrap_or_else(|e| panic!("{connection}: {e:?}"));
        assert_eq!(
            rows(&c, "select current_user").await[0][0].as_deref(),
            Some(role)
        );
    }
    assert_eq!(
        upstream_logins(&gw),
        [("orders_md5", "md5"), ("orders_trust", "trust")].map(owned)
    );
}

/// `(connection, upstream_auth)` of every "session started" line in the gateway's log, in
/// order. A session's line is written before its first query is relayed.
fn upstream_logins(gw: &Gateway) -> Vec<(String, String)> {
    let field = |line: &str, name: &str| -> String {
        let start = line
            .find(&format!(" {name}="))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            + name.len()
            + 2;
        let rest = &line[start..];
        rest[..rest.find(' ').unwrap_or(rest.len())]
            .trim_matches('"')
            .to_owned()
    };
    gw.logs()
        .lines()
        .filter(|l| l.contains("session started"))
        .map(|l| (field(l, "connection"), field(l, "upstream_auth")))
        .collect()
}

fn owned((a, b): (&str, &str)) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_scram_logins_reuse_the_derived_keys() {
    let gw = gateway();
    for _ in 0..3 {
        let c = through(&gw).await;
        assert_eq!(
            rows(&c, "select current_user").await[0][0].as_deref(),
            Some("orders_app")
        );
    }
    // One PBKDF2 for the first login; the next two (on either of the two shards) use the keys
    // it derived and the server verified.
    assert_eq!(
        upstream_logins(&gw),
        [
            ("orders", "scram-derived"),
            ("orders", "scram-cached"),
            ("orders", "scram-cached"),
        ]
        .map(owned)
    );
}

/// A PostgreSQL SCRAM-SHA-256 verifier for `password` with a chosen salt, computed here from
/// RFC 5802 so the test can give a role a new password under its old salt.
fn scram_verifier(password: &str, salt_b64: &str, iterations: u32) -> String {
    use aws_lc_rs::{digest, hmac, pbkdf2};
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    let salt = BASE64.decode(salt_b64).expect("salt");
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).expect("positive count"),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let salted = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&salted, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{salt_b64}${}:{}",
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_upstream_password_refuses_the_old_secret_even_with_cached_keys() {
    const ROLE: &str = "rotating_app";
    const OLD: &str = "OldRotatingSecret4fz9Q2";
    const NEW: &str = "NewRotatingSecret8Kd1xW";
    let cluster = PgCluster::shared();
    cluster.psql_super(
        "postgres",
        &format!(
            "SET password_encryption = 'scram-sha-256';\n\
             CREATE ROLE {ROLE} LOGIN PASSWORD '{OLD}';\n"
        ),
    );
    let verifier = || {
        cluster.psql_super(
            "postgres",
            &format!("select rolpassword from pg_authid where rolname = '{ROLE}'"),
        )
    };
    let set_verifier = |v: &str| {
        cluster.psql_super("postgres", &format!("ALTER ROLE {ROLE} PASSWORD '{v}'"));
    };
    let old_verifier = verifier();
    // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    let (iterations, salt) = old_verifier
        .strip_prefix("SCRAM-SHA-256$")
        .and_then(|rest| rest.split_once('$'))
        .and_then(|(params, _)| params.split_once(':'))
        .unwrap_or_else(|| panic!("not a SCRAM verifier: {old_verifier}"));
    let iterations: u32 = iterations.parse().expect("iteration count");

    // Two gateway connections for the same role: one configured with the old secret, one
    // with the new.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut extra = String::new();
    for (name, secret) in [("rotate_old", OLD), ("rotate_new", NEW)] {
        let file = dir.path().join(format!("{name}.pw"));
        std::fs::write(&file, secret).expect("write secret");
        extra.push_str(&format!(
            "[[connection]]\nname = \"{name}\"\nprotocol = \"postgres\"\nupstream = \"{}\"\n\
             database = \"orders\"\nuser = \"{ROLE}\"\npassword_file = \"{}\"\n\n",
            cluster.addr(),
            file.display()
        ));
    }
    let gw = Gateway::start(
        cluster,
        GatewayOptions {
            extra_toml: extra,
            ..GatewayOptions::default()
        },
    );
    let login = |connection: &'static str| {
        let info = gw.conninfo(SUB, &["eng"], connection);
        async move {
            match connect(&info).await {
                Ok(c) => {
                    let who = rows(&c, "select current_user").await;
                    assert_eq!(who[0][0].as_deref(), Some(ROLE), "{connection}");
                    Ok(())
                }
                Err(e) => Err(db_error(&e)),
            }
        }
    };
    let refused = |result: Result<(), (String, String)>, why: &str| match result {
        Err((code, message)) => assert_eq!(code, "28P01", "{why}: {message}"),
        Ok(()) => panic!("{why}: the login succeeded"),
    };

    login("rotate_old").await.expect("old secret, first login");
    login("rotate_old").await.expect("old secret, second login");
    refused(
        login("rotate_new").await,
        "the new secret before the change",
    );

    // The new password under the old salt and count: the keys cached for (old secret, salt,
    // count) are found again, and the server refuses the proof made from them.
    set_verifier(&scram_verifier(NEW, salt, iterations));
    refused(
        login("rotate_old").await,
        "the old secret with cached keys after the change",
    );
    login("rotate_new").await.expect("new secret, first login");
    login("rotate_new").await.expect("new secret, second login");

    // Back to the old verifier: the old secret's cached keys work again, which shows they
    // were still cached when the server refused them above.
    set_verifier(&old_verifier);
    login("rotate_old").await.expect("old secret, restored");

    // An ordinary ALTER ROLE ... PASSWORD: a new salt, so every cached entry misses.
    cluster.psql_super(
        "postgres",
        &format!(
            "SET password_encryption = 'scram-sha-256';\nALTER ROLE {ROLE} PASSWORD '{NEW}';\n"
        ),
    );
    assert_ne!(verifier(), old_verifier);
    refused(login("rotate_old").await, "the old secret after a new salt");
    login("rotate_new")
        .await
        .expect("new secret under a new salt");

    assert_eq!(
        upstream_logins(&gw),
        [
            ("rotate_old", "scram-derived"),
            ("rotate_old", "scram-cached"),
            ("rotate_new", "scram-derived"),
            ("rotate_new", "scram-cached"),
            ("rotate_old", "scram-cached"),
            ("rotate_new", "scram-derived"),
        ]
        .map(owned)
    );
    let logs = gw.logs();
    for secret in [OLD, NEW] {
        assert!(!logs.contains(secret), "an upstream secret reached the log");
    }
}

/// A TCP tap between a client and the gateway that keeps every byte the gateway sends.
fn tap(gateway: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tap");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(gateway) else {
                continue;
            };
            let (mut c_read, mut s_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let seen = Arc::clone(&seen2);
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                loop {
                    match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            seen.lock().expect("lock").extend_from_slice(&buf[..n]);
                            if c_write.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_secrets_never_reach_a_client_or_a_log() {
    let cluster = PgCluster::shared();
    // A connection whose upstream password is wrong, so that the login error path is covered.
    let pw_dir = tempfile::tempdir().expect("tempdir");
    let wrong_pw = "WrongUpstreamSecret-5d1c9a";
    let wrong_file = pw_dir.path().join("wrong.pw");
    std::fs::write(&wrong_file, wrong_pw).expect("write");
    let opts = GatewayOptions {
        extra_toml: format!(
            "[[connection]]\nname = \"orders_wrong\"\nprotocol = \"postgres\"\nupstream = \"127.0.0.1:{}\"\ndatabase = \"orders\"\nuser = \"orders_app\"\npassword_file = \"{}\"\n",
            cluster.port,
            wrong_file.display()
        ),
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(cluster, opts);
    let (tap_addr, seen) = tap(gw.addr);
    let token = gw.token(SUB, &["eng"]);
    let info = |db: &str| {
        format!(
            "host=127.0.0.1 port={} user={SUB} dbname={db} password={token} sslmode=disable",
            tap_addr.port()
        )
    };
    for db in ["orders", "orders_md5", "orders_trust"] {
        let c = connect(&info(db)).await.expect(db);
        rows(&c, "select * from customers limit 3").await;
        let _ = c.simple_query("select syntax error here").await;
    }
    let Err(err) = connect(&info("orders_wrong")).await else {
        panic!("wrong upstream password must fail");
    };
    let (code, message) = db_error(&err);
    assert_eq!(code, "28P01", "{message}");
    assert!(message.contains("orders_wrong"), "{message}");
    // psql too, with its own start-up parameters.
    let out = Command::new("psql")
        .arg(info("orders"))
        .args(["-Atc", "select count(*) from customers"])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::thread::sleep(Duration::from_millis(300));
    let sent = seen.lock().expect("lock").clone();
    assert!(sent.len() > 1000, "the tap saw the sessions");
    let logs = gw.logs();
    for secret in [cluster.upstream_password.as_str(), wrong_pw] {
        assert!(
            !sent.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "an upstream secret reached a client"
        );
        assert!(!logs.contains(secret), "an upstream secret reached the log");
    }
    assert!(!logs.contains(&token), "a token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_works_through_the_gateway_with_and_without_tls() {
    let cluster = PgCluster::shared();
    let opts = GatewayOptions {
        tls: true,
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(cluster, opts);
    let token = gw.token(SUB, &["eng"]);
    for sslmode in ["disable", "require"] {
        let out = Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user={SUB} dbname=orders sslmode={sslmode}",
                gw.addr.port()
            ))
            .env("PGPASSWORD", &token)
            .args([
                "-At",
                "-c",
                "select count(*) from customers",
                "-c",
                "\\conninfo",
            ])
            .output()
            .expect("psql");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{sslmode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("50\n"), "{sslmode}: {stdout}");
        // psql's \conninfo says whether the client leg is encrypted.
        assert_eq!(
            stdout.contains("SSL connection"),
            sslmode == "require",
            "{sslmode}: {stdout}"
        );
    }

    // Without the loopback exception, a token only travels over TLS.
    let strict = GatewayOptions {
        tls: true,
        allow_plaintext_on_loopback: false,
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(cluster, strict);
    let token = gw.token(SUB, &["eng"]);
    let run = |sslmode: &str| {
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user={SUB} dbname=orders sslmode={sslmode}",
                gw.addr.port()
            ))
            .env("PGPASSWORD", &token)
            .args(["-Atc", "select 1"])
            .output()
            .expect("psql")
    };
    let plain = run("disable");
    assert!(!plain.status.success());
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("only over TLS"), "{stderr}");
    let tls = run("require");
    assert!(
        tls.status.success(),
        "{}",
        String::from_utf8_lossy(&tls.stderr)
    );
}

#[test]
fn pgbench_runs_without_failures_in_every_query_mode() {
    let cluster = PgCluster::shared();
    cluster.pgbench_init(1);
    let gw = gateway();
    for mode in ["simple", "extended", "prepared"] {
        for builtin in [&["-S"][..], &[][..]] {
            let mut args = vec!["-M", mode, "-c", "4", "-j", "2", "-T", "3"];
            args.extend_from_slice(builtin);
            let out = gw.pgbench(cluster, "bench-bot", &["bench"], &args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{mode} {builtin:?}: {stdout}\n{stderr}"
            );
            let processed = stdout
                .lines()
                .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
                .unwrap_or_else(|| panic!("{mode}: no summary in {stdout}"));
            assert!(!processed.starts_with('0'), "{mode}: {processed}");
            let failed = stdout
                .lines()
                .find_map(|l| l.strip_prefix("number of failed transactions: "))
                .unwrap_or("0 (0.000%)");
            assert!(
                failed.starts_with("0 "),
                "{mode}: failed transactions {failed}"
            );
        }
    }
}

/// Sends raw bytes as a client would, after a proper login, and returns what came back.
fn raw_session(gw: &Gateway, after_login: &[u8]) -> Vec<u8> {
    let mut s = gw.raw_login(SUB, &[]);
    s.write_all(after_login).expect("payload");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    rest
}

fn error_codes(bytes: &[u8]) -> Vec<String> {
    let mut codes = Vec::new();
    let mut rest = bytes;
    while let Ok(Some(frame)) = tollgate::proto::pg::frame(rest, 1 << 20) {
        if let Ok(tollgate::proto::pg::BackendMessage::ErrorResponse(fields)) =
            tollgate::proto::pg::BackendMessage::decode(frame)
        {
            codes.push(fields.sqlstate().unwrap_or("").to_owned());
        }
        rest = &rest[frame.wire_len()..];
    }
    codes
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_ends_only_the_guilty_session_with_an_error() {
    // Recording off: the recorder opens its files when its first events arrive, which would
    // blur the descriptor count this test watches for session leaks.
    let gw = Gateway::start(
        PgCluster::shared(),
        GatewayOptions {
            record: false,
            ..GatewayOptions::default()
        },
    );
    let bystander = through(&gw).await;
    let fds_before = open_fds(gw.pid());

    for _ in 0..10 {
        // A message length below the minimum.
        let bad_len = raw_session(&gw, &[b'Q', 0, 0, 0, 2]);
        assert_eq!(error_codes(&bad_len), vec!["08P01".to_owned()]);
        // A message longer than the cap (the default cap is 64 MiB).
        let huge = raw_session(&gw, &[b'Q', 0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(error_codes(&huge), vec!["08P01".to_owned()]);
        // Garbage instead of a start-up packet.
        let mut s = TcpStream::connect(gw.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(&[0, 0, 0, 9, 1, 2, 3, 4, 5]).expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert_eq!(error_codes(&rest), vec!["08P01".to_owned()]);
        // A client that vanishes in the middle of a large result.
        let mut q = Vec::new();
        tollgate::proto::pg::FrontendMessage::Query {
            sql: "select repeat('x', 1000) from generate_series(1, 200000)",
        }
        .encode(&mut q);
        let mut s = gw.raw_login(SUB, &[]);
        s.write_all(&q).expect("query");
        let mut some = [0u8; 65536];
        let _ = s.read(&mut some);
        drop(s);
    }
    // The bystander session never noticed.
    assert_eq!(
        rows(&bystander, "select 42").await[0][0].as_deref(),
        Some("42")
    );

    // The upstream dying ends the session with an error, and the gateway keeps serving.
    let victim = through(&gw).await;
    let pid: i32 = victim
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    PgCluster::shared().psql_super("postgres", &format!("select pg_terminate_backend({pid})"));
    let err = victim
        .simple_query("select 1")
        .await
        .expect_err("upstream is gone");
    if let Some(db) = err.as_db_error() {
        assert!(["57P01", "08006"].contains(&db.code().code()), "{db:?}");
    }
    assert_eq!(
        rows(&bystander, "select 43").await[0][0].as_deref(),
        Some("43")
    );

    // No file descriptor leaked once the dust settled.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = open_fds(gw.pid());
        if now <= fds_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fds grew from {fds_before} to {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_closes_sessions_and_exits_zero() {
    let opts = GatewayOptions {
        drain_timeout_s: 2,
        ..GatewayOptions::default()
    };
    let mut gw = Gateway::start(PgCluster::shared(), opts);
    let session = through(&gw).await;
    let pid = gw.pid();
    // SAFETY-free: kill(2) through the libc crate, on a child we own.
    let rc = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(rc.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Draining: the open session still works, new sessions are not accepted.
    assert_eq!(rows(&session, "select 5").await[0][0].as_deref(), Some("5"));
    assert!(connect(&gw.conninfo(SUB, &[], "orders")).await.is_err());
    // After the drain timeout the session is closed with 57P01.
    let err = session
        .simple_query("select pg_sleep(10)")
        .await
        .expect_err("closed by shutdown");
    if let Some(db) = err.as_db_error() {
        assert_eq!(db.code().code(), "57P01");
    } else {
        assert!(err.is_closed(), "{err:?}");
    }
    let status = gw.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
}
