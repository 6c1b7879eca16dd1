//! `tollctl sessions list`, `tollctl replay` and `tollctl recordings verify` on an archive the
//! gateway's own recorder writes (the end-to-end path through a real gateway is covered by
//! dataplane/tests/pg_record.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use tollgate::config::RecordConfig;
use tollgate::record::{
    Body, Column, Connect, DecisionInfo, Disconnect, Event, Recorder, RowsEncoding, SessionMeta,
    Statement, StatementResult,
};

fn tollctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollctl"))
        .args(args)
        .output()
        .expect("run tollctl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A DataRow body as a recording holds it: the message without its tag and length.
fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut message = Vec::new();
    tollgate::proto::pg::encode_data_row(&mut message, values.iter().map(|v| v.map(str::as_bytes)));
    message.split_off(5)
}

/// One session: connect, an allowed SELECT with two rows, a denied DELETE, disconnect.
fn session(id: &str, principal: &str, connection: &str, start_us: i64) -> Vec<Event> {
    let meta = Arc::new(SessionMeta {
        id: id.to_owned(),
        principal: principal.to_owned(),
        groups: vec!["eng".to_owned()],
        connection: connection.to_owned(),
        protocol: "postgres".to_owned(),
    });
    let decision = |action: &str, rule: &str, reason: &str| {
        Some(Arc::new(DecisionInfo {
            action: action.to_owned(),
            rules: vec![rule.to_owned()],
            reason: reason.to_owned(),
            fingerprint: "select id, email from customers where id <= ?".to_owned(),
            tables: vec!["public.customers".to_owned()],
        }))
    };
    let mut rows = data_row(&[Some("1"), Some("ann@example.com")]);
    rows.extend(data_row(&[Some("2"), None]));
    let bodies = vec![
        Body::Connect(Connect {
            client_addr: "127.0.0.1".into(),
            application_name: "psql".into(),
            tls: true,
            principal_kind: "human".into(),
        }),
        Body::Statement(Statement {
            statement_id: 0,
            text: Arc::from("select id, email from customers where id <= 2"),
            params: vec![],
            fingerprint_hash: 7,
            decision: decision("allow", "writers-may-write", ""),
        }),
        Body::Result(StatementResult {
            statement_id: 0,
            rows: 2,
            bytes: 120,
            duration_us: 800,
            command_tag: Some("SELECT 2".into()),
            sqlstate: None,
            error: None,
            columns: vec![
                Column {
                    name: "id".into(),
                    type_id: 23,
                    binary: false,
                },
                Column {
                    name: "email".into(),
                    type_id: 25,
                    binary: false,
                },
            ]
            .into(),
            rows_data: rows,
            rows_encoding: RowsEncoding::PgDataRow,
            kept_rows: 2,
            truncated: false,
        }),
        Body::Statement(Statement {
            statement_id: 1,
            text: Arc::from("delete from orders"),
            params: vec![],
            fingerprint_hash: 8,
            decision: decision(
                "deny",
                "no-unqualified-write",
                "DELETE needs a WHERE clause",
            ),
        }),
        Body::Result(StatementResult {
            statement_id: 1,
            rows: 0,
            bytes: 90,
            duration_us: 300,
            command_tag: None,
            sqlstate: Some("42501".into()),
            error: Some("denied by policy: DELETE needs a WHERE clause".into()),
            columns: Vec::new().into(),
            rows_data: vec![],
            rows_encoding: RowsEncoding::PgDataRow,
            kept_rows: 0,
            truncated: false,
        }),
        Body::Disconnect(Disconnect {
            reason: "client terminated".into(),
            statements: 2,
            denied: 1,
            bytes_from_client: 100,
            bytes_to_client: 300,
            duration_us: 1_500_000,
        }),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Event {
            session: Arc::clone(&meta),
            seq: i as u64,
            at_us: start_us + i as i64 * 300_000,
            body,
        })
        .collect()
}

const ALICE: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const BOB: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

/// An archive of two sessions (alice on orders, bob on billing), closed cleanly.
fn archive() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = RecordConfig {
        dir: dir.path().to_owned(),
        instance: Some("cli-test".into()),
        ..RecordConfig::default()
    };
    let recorder = Recorder::start(&cfg, 1).expect("start the recorder");
    let queue = recorder.shard(0);
    // 2026-11-27 08:00:00 UTC and an hour later.
    let t0 = 1_795_766_400_000_000;
    for e in session(ALICE, "alice@example.com", "orders", t0)
        .into_iter()
        .chain(session(
            BOB,
            "bob@example.com",
            "billing",
            t0 + 3_600_000_000,
        ))
    {
        queue.try_push(e).expect("room in the queue");
    }
    recorder.shutdown();
    dir
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn sessions_list_shows_one_line_per_session_and_filters() {
    let dir = archive();
    let d = dir.path().to_str().expect("utf-8 path");
    let out = tollctl(&["sessions", "list", d]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("SESSION"));
    for (line, (id, who, conn)) in lines[1..3].iter().zip([
        (ALICE, "alice@example.com", "orders"),
        (BOB, "bob@example.com", "billing"),
    ]) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], id, "{line}");
        assert_eq!(fields[1], who, "{line}");
        assert_eq!(fields[2], conn, "{line}");
        // Start, duration (connect to disconnect: 5 x 300 ms), statements, denied.
        assert_eq!(&fields[5..], ["1.5s", "2", "1"], "{line}");
    }
    assert!(lines[1].contains("2026-11-27 08:00:00"), "{text}");
    assert_eq!(lines[3], "(2 sessions)");

    let by_principal = stdout(&tollctl(&[
        "sessions",
        "list",
        d,
        "--principal",
        "bob@example.com",
    ]));
    assert!(
        by_principal.contains(BOB) && !by_principal.contains(ALICE),
        "{by_principal}"
    );
    let by_connection = stdout(&tollctl(&["sessions", "list", d, "--connection", "orders"]));
    assert!(
        by_connection.contains(ALICE) && !by_connection.contains(BOB),
        "{by_connection}"
    );
    let since = stdout(&tollctl(&[
        "sessions",
        "list",
        d,
        "--since",
        "2026-11-27T08:30:00Z",
    ]));
    assert!(since.contains(BOB) && !since.contains(ALICE), "{since}");
    let bad = tollctl(&["sessions", "list", d, "--since", "last tuesday"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
}

#[test]
fn replay_prints_the_session_as_it_happened() {
    let dir = archive();
    let d = dir.path().to_str().expect("utf-8 path");
    // A unique prefix of the id is enough.
    let out = tollctl(&["replay", d, "a1a1a1"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let expected_in_order = [
        "+0.000s connect alice@example.com [eng] to orders (postgres) from 127.0.0.1, application \"psql\", TLS",
        "+0.300s [0] select id, email from customers where id <= 2",
        "        decision: allow (writers-may-write)",
        " id |      email      ",
        "----+-----------------",
        "  1 | ann@example.com",
        "  2 |",
        "(2 rows)",
        "        SELECT 2 · 120 bytes · 0.800 ms",
        "+0.900s [1] delete from orders",
        "        decision: deny (no-unqualified-write): DELETE needs a WHERE clause",
        "ERROR:  42501: denied by policy: DELETE needs a WHERE clause",
        "+1.500s disconnect: client terminated (2 statements, 1 denied",
    ];
    let mut rest = text.as_str();
    for want in expected_in_order {
        let at = rest
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} missing (or out of order) in:\n{text}"));
        rest = &rest[at + want.len()..];
    }
    assert!(!text.contains(BOB));

    // Real time at 10x: the 1.5 s session takes at least 150 ms.
    let started = std::time::Instant::now();
    let fast = tollctl(&["replay", d, ALICE, "--speed", "10"]);
    assert!(fast.status.success());
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    assert_eq!(stdout(&fast), text);

    let missing = tollctl(&["replay", d, "ffff"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no session"));
}

#[test]
fn verify_passes_a_clean_archive_and_names_a_tampered_session() {
    let dir = archive();
    let d = dir.path().to_str().expect("utf-8 path");
    let clean = tollctl(&["recordings", "verify", d]);
    assert!(clean.status.success(), "{clean:?}");

    // Someone rewrites alice's DELETE as a harmless SELECT in her file (the first hour's).
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 2, "one file per hour: {files:?}");
    assert!(rewrite_statement(
        &files[0],
        "delete from orders",
        "select 1"
    ));
    let tampered = tollctl(&["recordings", "verify", d]);
    assert!(!tampered.status.success(), "{tampered:?}");
    let report = stdout(&tampered);
    assert!(report.contains(ALICE), "{report}");
    assert!(
        !report.contains(&format!("{BOB}: ")),
        "bob's session was not touched: {report}"
    );
}

/// Rewrites `file` with every `statement` value `from` replaced by `to`, keeping the schema.
/// True if a value was replaced.
fn rewrite_statement(file: &Path, from: &str, to: &str) -> bool {
    use arrow::array::{Array, LargeStringArray};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).expect("open"))
        .expect("parquet reader")
        .build()
        .expect("reader");
    let mut batches = Vec::new();
    let mut replaced = false;
    for batch in reader {
        let batch = batch.expect("batch");
        let schema = batch.schema();
        let idx = schema.index_of("statement").expect("statement column");
        let col = batch
            .column(idx)
            .as_any()
            .downcast_ref::<LargeStringArray>()
            .expect("statement is large utf8");
        let new: LargeStringArray = (0..col.len())
            .map(|i| {
                if col.is_null(i) {
                    None
                } else if col.value(i) == from {
                    replaced = true;
                    Some(to.to_owned())
                } else {
                    Some(col.value(i).to_owned())
                }
            })
            .collect();
        let mut columns = batch.columns().to_vec();
        columns[idx] = Arc::new(new);
        batches.push(RecordBatch::try_new(schema, columns).expect("same schema"));
    }
    if !replaced {
        return false;
    }
    let schema = batches[0].schema();
    let out = std::fs::File::create(file).expect("rewrite");
    let mut writer = ArrowWriter::try_new(out, schema, None).expect("writer");
    for b in &batches {
        writer.write(b).expect("write");
    }
    writer.close().expect("close");
    true
}
