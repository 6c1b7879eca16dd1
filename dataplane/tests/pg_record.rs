//! End-to-end tests of session recording: real clients (psql, pgbench, tokio-postgres) through
//! the `tollgate` binary to a real PostgreSQL, and the Parquet archive the gateway leaves,
//! read back by the gateway's own reader and by DuckDB.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{Gateway, GatewayOptions, PgCluster};
use tokio_postgres::NoTls;
use tollgate::record::{self, Body, Recorded};

const ENGINEER: (&str, &[&str]) = ("eve@example.com", &["eng"]);

fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Stops the gateway cleanly (which closes the recording files) and reads its archive.
fn stop_and_read(gw: &mut Gateway) -> Vec<Recorded> {
    let status = gw.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "tollgate exited with {status}:\n{}",
        gw.logs()
    );
    read_archive(&gw.record_dir)
}

fn read_archive(dir: &Path) -> Vec<Recorded> {
    record::read(dir).unwrap_or_else(|e| panic!("reading the archive {}: {e}", dir.display()))
}

/// Events grouped by session, each in sequence order.
fn sessions(events: &[Recorded]) -> BTreeMap<String, Vec<&Recorded>> {
    let mut by: BTreeMap<String, Vec<&Recorded>> = BTreeMap::new();
    for r in events {
        by.entry(r.event.session.id.clone()).or_default().push(r);
    }
    for list in by.values_mut() {
        list.sort_by_key(|r| r.event.seq);
    }
    by
}

/// The text values of PostgreSQL DataRow bodies laid end to end.
fn decode_rows(mut data: &[u8]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    while data.len() >= 2 {
        let n = i16::from_be_bytes([data[0], data[1]]);
        data = &data[2..];
        let mut row = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            data = &data[4..];
            if len < 0 {
                row.push(None);
            } else {
                let len = len as usize;
                row.push(Some(String::from_utf8_lossy(&data[..len]).into_owned()));
                data = &data[len..];
            }
        }
        rows.push(row);
    }
    rows
}

fn kinds(events: &[&Recorded]) -> Vec<&'static str> {
    events.iter().map(|r| r.event.body.kind()).collect()
}

fn statement_texts(events: &[&Recorded]) -> Vec<String> {
    events
        .iter()
        .filter_map(|r| match &r.event.body {
            Body::Statement(s) => Some(s.text.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_scripted_psql_session_is_recorded_as_it_happened() {
    let cluster = PgCluster::shared();
    let mut gw = Gateway::start(
        cluster,
        GatewayOptions {
            policy_dir: Some(shipped_policies()),
            ..GatewayOptions::default()
        },
    );
    let script = [
        "select count(*) from customers;",
        "select id, email from customers where id <= 3 order by id;",
        "delete from orders;",
        "select 1 as one, null as nothing;",
    ];
    let out = Command::new("psql")
        .arg(gw.conninfo(ENGINEER.0, ENGINEER.1, "orders"))
        .env("PGPASSWORD", gw.token(ENGINEER.0, ENGINEER.1))
        .env("PGAPPNAME", "audit-script")
        .args(["-X", "-q", "-A", "-t"])
        .args(script.iter().flat_map(|s| ["-c", *s]))
        .output()
        .expect("run psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("denied by policy"), "psql: {stderr}");

    let events = stop_and_read(&mut gw);
    let by = sessions(&events);
    // psql -c ... -c ... runs every command on one connection, so one session.
    assert_eq!(by.len(), 1, "sessions: {:?}", by.keys());
    let session = by.values().next().expect("one session");
    assert_eq!(
        kinds(session),
        [
            "connect",
            "statement",
            "result",
            "statement",
            "result",
            "statement",
            "result",
            "statement",
            "result",
            "disconnect"
        ]
    );
    let meta = &session[0].event.session;
    assert_eq!(meta.principal, ENGINEER.0);
    assert_eq!(meta.groups, ["eng"]);
    assert_eq!(meta.connection, "orders");
    assert_eq!(meta.protocol, "postgres");
    let Body::Connect(connect) = &session[0].event.body else {
        panic!("first event: {:?}", session[0].event.body)
    };
    assert_eq!(connect.application_name, "audit-script");
    assert_eq!(connect.client_addr, "127.0.0.1");
    assert!(!connect.tls);
    assert_eq!(
        statement_texts(session),
        script.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    // Sequence numbers have no gaps, and time does not run backwards.
    for (i, r) in session.iter().enumerate() {
        assert_eq!(r.event.seq, i as u64);
    }
    assert!(session
        .windows(2)
        .all(|w| w[0].event.at_us <= w[1].event.at_us));

    // Decisions: the DELETE without WHERE was denied by a named rule; the rest allowed.
    let decisions: Vec<(String, Vec<String>)> = session
        .iter()
        .filter_map(|r| match &r.event.body {
            Body::Statement(s) => s
                .decision
                .as_ref()
                .map(|d| (d.action.clone(), d.rules.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(decisions[0].0, "allow");
    assert_eq!(decisions[2].0, "deny", "{decisions:?}");
    assert!(!decisions[2].1.is_empty());
    let Body::Statement(second) = &session[3].event.body else {
        panic!()
    };
    let info = second.decision.as_ref().expect("decision recorded");
    // Tables as the text names them.
    assert_eq!(info.tables, ["customers"]);
    assert!(
        info.fingerprint.contains("where id <= ?"),
        "{}",
        info.fingerprint
    );

    // Results, as the client received them.
    let results: Vec<&record::StatementResult> = session
        .iter()
        .filter_map(|r| match &r.event.body {
            Body::Result(x) => Some(x),
            _ => None,
        })
        .collect();
    assert_eq!(results[0].command_tag.as_deref(), Some("SELECT 1"));
    assert_eq!(
        decode_rows(&results[0].rows_data),
        [[Some("50".to_owned())]]
    );
    let second = results[1];
    assert_eq!(
        (second.rows, second.kept_rows, second.truncated),
        (3, 3, false)
    );
    let names: Vec<&str> = second.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "email"]);
    let direct = cluster.psql_super(
        "orders",
        "select id || '|' || email from customers where id <= 3 order by id",
    );
    let recorded: Vec<String> = decode_rows(&second.rows_data)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| v.unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert_eq!(recorded.join("\n"), direct.trim());
    assert_eq!(results[2].sqlstate.as_deref(), Some("42501"));
    assert!(results[2]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("denied by policy")));
    assert_eq!(
        decode_rows(&results[3].rows_data),
        [[Some("1".to_owned()), None]]
    );
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.statement_id, i as u64);
    }

    let Body::Disconnect(bye) = &session[session.len() - 1].event.body else {
        panic!("last event: {:?}", session.last())
    };
    assert_eq!(bye.statements, 4);
    assert_eq!(bye.denied, 1);
    assert_eq!(bye.reason, "client terminated");

    // Nothing secret is in the archive.
    let token = gw.token(ENGINEER.0, ENGINEER.1);
    let bytes = archive_bytes(&gw.record_dir);
    let needle = &token.as_bytes()[token.len() - 40..];
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "token signature in the archive"
    );
    let report = record::verify(&gw.record_dir);
    assert!(report.is_clean(), "{report}");
}

/// Every file's bytes, concatenated (for "this never appears anywhere" checks).
fn archive_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read archive dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                all.extend(std::fs::read(&p).expect("read archive file"));
            }
        }
    }
    all
}

#[test]
fn pgbench_leaves_one_statement_event_per_statement_sent() {
    let cluster = PgCluster::shared();
    cluster.pgbench_init(1);
    let mut gw = Gateway::start(cluster, GatewayOptions::default());
    let (clients, transactions) = (4, 50);
    for mode in ["simple", "extended", "prepared"] {
        let out = gw.pgbench(
            cluster,
            "bench-bot",
            &["bench"],
            &[
                "-S",
                "-M",
                mode,
                "-c",
                &clients.to_string(),
                "-t",
                &transactions.to_string(),
            ],
        );
        assert!(
            out.status.success(),
            "{mode}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let events = stop_and_read(&mut gw);
    let mut selects = BTreeMap::<&str, u64>::new();
    let mut with_params = 0;
    for r in &events {
        if let Body::Statement(s) = &r.event.body {
            if s.text.as_ref() == "SELECT abalance FROM pgbench_accounts WHERE aid = $1;" {
                *selects.entry("extended or prepared").or_default() += 1;
                assert_eq!(s.params.len(), 1, "{s:?}");
                assert!(s.params[0]
                    .as_deref()
                    .is_some_and(|p| p.parse::<u32>().is_ok()));
                with_params += 1;
            } else if s
                .text
                .starts_with("SELECT abalance FROM pgbench_accounts WHERE aid = ")
            {
                *selects.entry("simple").or_default() += 1;
                assert!(s.params.is_empty());
            }
        }
    }
    let per_mode = clients * transactions;
    assert_eq!(selects.get("simple"), Some(&per_mode));
    assert_eq!(selects.get("extended or prepared"), Some(&(2 * per_mode)));
    assert_eq!(with_params, 2 * per_mode);
    // Every statement has exactly one result, and every result found its statement.
    for (id, session) in sessions(&events) {
        let statements = session
            .iter()
            .filter(|r| matches!(r.event.body, Body::Statement(_)))
            .count();
        let results: Vec<&record::StatementResult> = session
            .iter()
            .filter_map(|r| match &r.event.body {
                Body::Result(x) => Some(x),
                _ => None,
            })
            .collect();
        assert_eq!(statements, results.len(), "session {id}");
        for x in &results {
            assert!(x.error.is_none(), "session {id}: {x:?}");
        }
    }
    let report = record::verify(&gw.record_dir);
    assert!(report.is_clean(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_past_the_cap_is_kept_truncated_with_its_exact_row_count() {
    let cluster = PgCluster::shared();
    let mut gw = Gateway::start(
        cluster,
        GatewayOptions {
            record_toml: "max_result_bytes = 4096".into(),
            ..GatewayOptions::default()
        },
    );
    let (client, conn) =
        tokio_postgres::connect(&gw.conninfo("big@example.com", &[], "orders"), NoTls)
            .await
            .expect("connect");
    let conn = tokio::spawn(conn);
    let rows = client
        .simple_query("select g, repeat('x', 100) from generate_series(1, 1000) g")
        .await
        .expect("query");
    assert_eq!(
        rows.iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count(),
        1000
    );
    drop(client);
    let _ = conn.await;
    let events = stop_and_read(&mut gw);
    let result = events
        .iter()
        .find_map(|r| match &r.event.body {
            Body::Result(x) => Some(x),
            _ => None,
        })
        .expect("a result event");
    assert_eq!(result.rows, 1000);
    assert!(result.truncated);
    assert!(result.rows_data.len() <= 4096, "{}", result.rows_data.len());
    let kept = decode_rows(&result.rows_data);
    assert_eq!(kept.len() as u64, result.kept_rows);
    assert!(kept.len() > 10 && kept.len() < 1000, "{}", kept.len());
    for (i, row) in kept.iter().enumerate() {
        assert_eq!(row[0].as_deref(), Some((i + 1).to_string().as_str()));
    }
    assert_eq!(result.command_tag.as_deref(), Some("SELECT 1000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_kill_9_of_the_gateway() {
    let cluster = PgCluster::shared();
    let archive = tempfile::tempdir().expect("archive dir");
    let opts = || GatewayOptions {
        record_dir: Some(archive.path().to_owned()),
        record_toml: "flush_interval_ms = 200".into(),
        ..GatewayOptions::default()
    };
    let mut gw = Gateway::start(cluster, opts());
    let (client, conn) =
        tokio_postgres::connect(&gw.conninfo("crash@example.com", &[], "orders"), NoTls)
            .await
            .expect("connect");
    tokio::spawn(conn);
    for i in 0..20 {
        client
            .simple_query(&format!("select {i} as before_the_crash"))
            .await
            .expect("query");
    }
    // Older than the flush interval, with room to spare on a loaded machine.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.kill9();
    drop(client);

    // Nothing readable yet: the open file is a .partial.
    let before = read_archive(archive.path());
    assert!(before.is_empty(), "{} events before recovery", before.len());

    // The next start recovers the crashed instance's events.
    let mut again = Gateway::start(cluster, opts());
    let _ = again.terminate(Duration::from_secs(30));
    let events = read_archive(archive.path());
    let texts: Vec<String> = events
        .iter()
        .filter_map(|r| match &r.event.body {
            Body::Statement(s) => Some(s.text.to_string()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..20)
        .map(|i| format!("select {i} as before_the_crash"))
        .collect();
    assert_eq!(texts, expected);
    let results = events
        .iter()
        .filter(|r| matches!(r.event.body, Body::Result(_)))
        .count();
    assert_eq!(results, 20);
    // The chain is intact; the session is reported open (it never said goodbye).
    let report = record::verify(archive.path());
    assert!(report.is_clean(), "{report}");
    assert!(
        report.to_string().contains("open") || report.to_string().contains("incomplete"),
        "{report}"
    );
    assert!(!archive_has(archive.path(), "partial"));
    assert!(!archive_has(archive.path(), "wal"));
}

/// True when a file under `dir` has the extension `ext`.
fn archive_has(dir: &Path, ext: &str) -> bool {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == ext) {
                return true;
            }
        }
    }
    false
}

/// Runs DuckDB (the Python package `deploy/test.sh` installs) on the archive; returns the
/// result rows of `sql` as JSON arrays of strings. `{archive}` in `sql` is the glob of every
/// file of the archive.
fn duckdb(dir: &Path, sql: &str) -> Vec<Vec<String>> {
    let glob = format!("{}/**/*.parquet", dir.display());
    let sql = sql.replace(
        "{archive}",
        &format!("read_parquet('{glob}', hive_partitioning = true)"),
    );
    let script = r#"
import json, sys
import duckdb
rows = duckdb.sql(sys.argv[1]).fetchall()
print(json.dumps([[str(v) for v in row] for row in rows]))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &sql])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "DuckDB failed (is the duckdb package installed? deploy/test.sh installs it):\n{sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("DuckDB's rows as JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_answers_the_compliance_questions_from_the_archive() {
    let cluster = PgCluster::shared();
    let mut gw = Gateway::start(
        cluster,
        GatewayOptions {
            policy_dir: Some(shipped_policies()),
            ..GatewayOptions::default()
        },
    );
    let before = now_us();
    // Two people, three sessions, on the "orders" connection.
    let sessions: [(&str, &[&str], &[&str]); 3] = [
        (
            "eve@example.com",
            &["eng"],
            &[
                "select id from customers where id <= 5",
                "delete from orders",
                "update customers set name = name",
            ],
        ),
        (
            "ann@example.com",
            &["analysts"],
            &[
                "select count(*) from orders",
                "delete from orders where id = 0",
            ],
        ),
        ("eve@example.com", &["eng"], &["select 1"]),
    ];
    for (sub, groups, statements) in sessions {
        let (client, conn) = tokio_postgres::connect(&gw.conninfo(sub, groups, "orders"), NoTls)
            .await
            .expect("connect");
        let conn = tokio::spawn(conn);
        for sql in statements {
            let _ = client.simple_query(sql).await;
        }
        drop(client);
        let _ = conn.await;
    }
    let after = now_us();
    let _ = stop_and_read(&mut gw);
    let dir = &gw.record_dir;

    // 1. Every statement denied for one principal in a time range.
    let denied = duckdb(
        dir,
        &format!(
            "SELECT statement, rules[1] FROM {{archive}} \
             WHERE kind = 'statement' AND action = 'deny' AND principal = 'eve@example.com' \
             AND at BETWEEN to_timestamp({before} / 1e6) AND to_timestamp({after} / 1e6) \
             ORDER BY at"
        ),
    );
    let texts: Vec<&str> = denied.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        texts,
        ["delete from orders", "update customers set name = name"]
    );
    assert!(denied.iter().all(|r| !r[1].is_empty() && r[1] != "None"));
    // The same range, shifted past the sessions, holds nothing.
    let later = duckdb(
        dir,
        &format!(
            "SELECT count(*) FROM {{archive}} WHERE kind = 'statement' AND action = 'deny' \
             AND at > to_timestamp({after} / 1e6)"
        ),
    );
    assert_eq!(later, [["0"]]);

    // 2. The sessions that touched a given table.
    let touched = duckdb(
        dir,
        "SELECT DISTINCT session_id, principal FROM {archive} \
         WHERE kind = 'statement' AND list_contains(tables, 'customers') ORDER BY principal",
    );
    assert_eq!(touched.len(), 1, "{touched:?}");
    assert_eq!(touched[0][1], "eve@example.com");
    let orders = duckdb(
        dir,
        "SELECT count(DISTINCT session_id) FROM {archive} \
         WHERE kind = 'statement' AND list_contains(tables, 'orders')",
    );
    assert_eq!(orders, [["2"]]);

    // 3. Rows returned per connection per hour.
    let per_hour = duckdb(
        dir,
        "SELECT connection, date_trunc('hour', at)::VARCHAR AS hour_utc, sum(rows)::BIGINT \
         FROM {archive} WHERE kind = 'result' GROUP BY ALL ORDER BY ALL",
    );
    let total: u64 = per_hour
        .iter()
        .map(|r| r[2].parse::<u64>().expect("a count"))
        .sum();
    // 5 customers + 1 count + 1 constant; refusals and the DELETE return no rows.
    assert_eq!(total, 7, "{per_hour:?}");
    assert!(per_hour.iter().all(|r| r[0] == "orders"));
    // The Hive partitions are columns too.
    let partitions = duckdb(dir, "SELECT DISTINCT date, hour FROM {archive}");
    assert!(!partitions.is_empty());
}

/// Microseconds since the Unix epoch.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64
}
