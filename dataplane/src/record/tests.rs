//! Record stage tests through the public API: a recorder on a temporary folder, events pushed
//! as sessions push them, the archive read back and verified as `tollctl` would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::layout::{self, FileState};
use super::rows::{data_row, Rows};
use super::schema::BatchBuilder;
use super::writer::ArchiveFile;
use super::*;
use super::{chain, recover, wal};
use crate::config::RecordConfig;
use parquet::basic::ZstdLevel;

const HOUR_US: i64 = 3_600_000_000;
/// 2024-05-01T12:00:00Z.
const T0: i64 = 1_714_564_800_000_000;

fn config(dir: &Path) -> RecordConfig {
    RecordConfig {
        enabled: true,
        dir: dir.to_path_buf(),
        instance: Some("gw1".into()),
        max_result_bytes: 1 << 20,
        flush_interval_ms: 40,
        rotate_bytes: 128 << 20,
        rotate_interval_s: 3600,
        queue_capacity: 256,
        zstd_level: 1,
    }
}

fn meta(id: &str) -> Arc<SessionMeta> {
    Arc::new(SessionMeta {
        id: id.into(),
        principal: "alice@example.com".into(),
        groups: vec!["eng".into(), "dba".into()],
        connection: "orders-prod".into(),
        protocol: "postgres".into(),
    })
}

fn columns() -> Vec<Column> {
    vec![
        Column {
            name: "id".into(),
            type_id: 20,
            binary: false,
        },
        Column {
            name: "email".into(),
            type_id: 25,
            binary: false,
        },
        Column {
            name: "photo".into(),
            type_id: 17,
            binary: true,
        },
    ]
}

/// One session with an event of every kind: connect, a statement with a decision and its
/// result (text, binary and NULL values), a held statement and its approval, a statement with
/// no decision (policy off) and an error result, a disconnect.
fn session(id: &str, at: i64) -> Vec<Event> {
    let s = meta(id);
    let decision = Arc::new(DecisionInfo {
        action: "allow".into(),
        rules: vec!["read-ok".into()],
        reason: "reads are fine".into(),
        fingerprint: "select id, email, photo from customers where id = ?".into(),
        tables: vec!["public.customers".into()],
    });
    let rows_data = [
        data_row(&[Some(b"1"), Some(b"a@example.com"), Some(&[0, 1, 0xfe])]),
        data_row(&[Some(b"2"), None, Some(b"")]),
    ]
    .concat();
    let bodies = vec![
        Body::Connect(Connect {
            client_addr: "10.0.0.7:5555".into(),
            application_name: "psql".into(),
            tls: true,
            principal_kind: "human".into(),
        }),
        Body::Statement(Statement {
            statement_id: 0,
            text: "select id, email, photo from customers where id = $1".into(),
            params: vec![Some("1".into()), None, Some("\\x00ff".into())],
            fingerprint_hash: 0xdead_beef_0000_0001,
            decision: Some(decision.clone()),
        }),
        Body::Result(StatementResult {
            statement_id: 0,
            rows: 3,
            bytes: 321,
            duration_us: 1500,
            command_tag: Some("SELECT 3".into()),
            sqlstate: None,
            error: None,
            columns: columns().into(),
            rows_data,
            rows_encoding: RowsEncoding::PgDataRow,
            kept_rows: 2,
            truncated: true,
        }),
        Body::Statement(Statement {
            statement_id: 1,
            text: "delete from customers".into(),
            params: vec![],
            fingerprint_hash: 7,
            decision: Some(Arc::new(DecisionInfo {
                action: "review".into(),
                rules: vec!["prod-writes-review".into(), "no-unbounded-delete".into()],
                reason: "writes to prod need a DBA review".into(),
                fingerprint: "delete from customers".into(),
                tables: vec![],
            })),
        }),
        Body::Approval(Approval {
            statement_id: 1,
            request_id: "req-1".into(),
            outcome: "denied".into(),
            approver: Some("bob@example.com".into()),
        }),
        Body::Approval(Approval {
            statement_id: 1,
            request_id: "req-2".into(),
            outcome: "timed_out".into(),
            approver: None,
        }),
        Body::Statement(Statement {
            statement_id: 2,
            text: "select 1/0".into(),
            params: vec![],
            fingerprint_hash: 8,
            decision: None,
        }),
        Body::Result(StatementResult {
            statement_id: 2,
            rows: 0,
            bytes: 90,
            duration_us: 80,
            command_tag: None,
            sqlstate: Some("22012".into()),
            error: Some("division by zero".into()),
            columns: Arc::from([]),
            rows_data: vec![],
            rows_encoding: RowsEncoding::PgDataRow,
            kept_rows: 0,
            truncated: false,
        }),
        Body::Disconnect(Disconnect {
            reason: "client terminated".into(),
            statements: 3,
            denied: 1,
            bytes_from_client: 400,
            bytes_to_client: 411,
            duration_us: 9_000_000,
        }),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Event {
            session: s.clone(),
            seq: i as u64,
            at_us: at + i as i64 * 1000,
            body,
        })
        .collect()
}

/// A statement and a result of `rows_bytes` bytes of rows that compress poorly.
fn big_pair(s: &Arc<SessionMeta>, seq: u64, at: i64, rows_bytes: usize) -> [Event; 2] {
    let mut x: u64 = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rows_data = Vec::new();
    let mut kept = 0;
    while rows_data.len() < rows_bytes {
        let value: String = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        rows_data.extend(data_row(&[Some(value.as_bytes())]));
        kept += 1;
    }
    let statement_id = seq / 2;
    [
        Event {
            session: s.clone(),
            seq,
            at_us: at,
            body: Body::Statement(Statement {
                statement_id,
                text: "select payload from blobs".into(),
                params: vec![],
                fingerprint_hash: 1,
                decision: None,
            }),
        },
        Event {
            session: s.clone(),
            seq: seq + 1,
            at_us: at + 1,
            body: Body::Result(StatementResult {
                statement_id,
                rows: kept,
                bytes: rows_data.len() as u64,
                duration_us: 10,
                command_tag: Some(format!("SELECT {kept}").into()),
                sqlstate: None,
                error: None,
                columns: vec![Column {
                    name: "payload".into(),
                    type_id: 25,
                    binary: false,
                }]
                .into(),
                rows_data,
                rows_encoding: RowsEncoding::PgDataRow,
                kept_rows: kept,
                truncated: false,
            }),
        },
    ]
}

fn disconnect(s: &Arc<SessionMeta>, seq: u64, at: i64) -> Event {
    Event {
        session: s.clone(),
        seq,
        at_us: at,
        body: Body::Disconnect(Disconnect {
            reason: "client terminated".into(),
            statements: seq / 2,
            denied: 0,
            bytes_from_client: 1,
            bytes_to_client: 2,
            duration_us: 3,
        }),
    }
}

/// Pushes every event, waiting while the queue is full, as a session would.
fn push_all(q: &ShardQueue, events: impl IntoIterator<Item = Event>) {
    for e in events {
        let mut e = e;
        loop {
            match q.try_push(e) {
                Ok(()) => break,
                Err(back) => {
                    e = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }
}

/// The events read back, in each session's order (a batch lists its events by kind, so files
/// hold a session's events in seq order only within a kind).
fn events_of(recorded: &[Recorded]) -> Vec<Event> {
    in_session_order(recorded.iter().map(|r| r.event.clone()).collect())
}

/// `events` ordered by session id, then seq.
fn in_session_order(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| (&a.session.id, a.seq).cmp(&(&b.session.id, b.seq)));
    events
}

/// Every file under `dir` with its state, relative path and all.
fn archive(dir: &Path) -> Vec<(PathBuf, FileState)> {
    layout::scan(dir)
        .unwrap()
        .into_iter()
        .map(|f| (f.path.strip_prefix(dir).unwrap().to_path_buf(), f.state))
        .collect()
}

fn complete_files(dir: &Path) -> Vec<PathBuf> {
    archive(dir)
        .into_iter()
        .filter(|(_, s)| *s == FileState::Complete)
        .map(|(p, _)| p)
        .collect()
}

/// Rewrites an archive file with `edit` applied to its events, keeping the stored hashes as
/// they are: what someone editing the archive without the chain's cooperation produces.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<Recorded>)) {
    let mut events = read_file(path).unwrap();
    edit(&mut events);
    let mut b = BatchBuilder::default();
    let mut rows = Rows::default();
    for r in &events {
        rows.clear();
        if let Body::Result(res) = &r.event.body {
            rows.decode_pg(&res.rows_data, &res.columns);
            rows.error = r.rows_error.clone();
        }
        b.append(&r.instance, &r.event, &rows, &r.prev_hash, &r.hash);
    }
    let parts = b.finish().unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema(), None).unwrap();
    for part in &parts {
        w.write(part).unwrap();
    }
    w.close().unwrap();
}

#[test]
fn the_recorder_and_its_queues_cross_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Recorder>();
    shared::<ShardQueue>();
}

#[test]
fn every_kind_of_event_reads_back_as_pushed_with_an_intact_chain() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&config(dir.path()), 2).unwrap();
    let a = session("aaaa", T0);
    let b = session("bbbb", T0 + 500);
    push_all(&rec.shard(0), a.clone());
    push_all(&rec.shard(1), b.clone());
    rec.shutdown();
    rec.shutdown(); // idempotent

    // One complete file, nothing partial left.
    assert_eq!(
        archive(dir.path()),
        vec![(
            PathBuf::from("date=2024-05-01/hour=12/gw1-00000001.parquet"),
            FileState::Complete
        )]
    );
    let got = read(dir.path()).unwrap();
    let mut got_a: Vec<&Recorded> = got
        .iter()
        .filter(|r| r.event.session.id == "aaaa")
        .collect();
    got_a.sort_by_key(|r| r.event.seq);
    assert_eq!(got_a.iter().map(|r| r.event.clone()).collect::<Vec<_>>(), a);
    let mut got_b: Vec<Event> = got
        .iter()
        .filter(|r| r.event.session.id == "bbbb")
        .map(|r| r.event.clone())
        .collect();
    got_b.sort_by_key(|e| e.seq);
    assert_eq!(got_b, b);

    // The chain: zeros, then each event's prev_hash is the hash before it.
    assert_eq!(got_a[0].prev_hash, ZERO_HASH);
    for pair in got_a.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    for r in &got {
        assert_eq!(r.computed_hash(), r.hash);
        assert_eq!(r.instance, "gw1");
        assert_eq!(r.rows_error, None);
        assert_eq!(
            r.file,
            dir.path()
                .join("date=2024-05-01/hour=12/gw1-00000001.parquet")
        );
    }
    let report = verify(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.files, report.events, report.sessions), (1, 18, 2));
    assert!(report.open.is_empty(), "{report}");
}

#[test]
fn new_files_continue_the_numbering_of_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let rec = Recorder::start(&config(dir.path()), 1).unwrap();
        push_all(&rec.shard(0), session(&format!("s{round}"), T0));
        rec.shutdown();
    }
    // Numbers come from the `.seq` file even when the files were shipped away.
    std::fs::remove_dir_all(dir.path().join("date=2024-05-01")).unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    push_all(&rec.shard(0), session("s2", T0));
    rec.shutdown();
    assert_eq!(
        complete_files(dir.path()),
        vec![PathBuf::from(
            "date=2024-05-01/hour=12/gw1-00000003.parquet"
        )]
    );
}

#[test]
fn files_rotate_by_size_and_every_one_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_bytes = 1 << 20;
    let rec = Recorder::start(&cfg, 1).unwrap();
    let s = meta("big");
    let mut pushed = Vec::new();
    // 20 MiB of rows: batches of 8 MiB, each taking its file past 1 MiB.
    for i in 0..320u64 {
        pushed.extend(big_pair(&s, 2 * i, T0 + i as i64, 64 * 1024));
    }
    pushed.push(disconnect(&s, 640, T0 + 1000));
    push_all(&rec.shard(0), pushed.clone());
    rec.shutdown();

    let files = complete_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    assert_eq!(
        archive(dir.path()).len(),
        files.len(),
        "only complete files"
    );
    for f in &files {
        let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
        // A file ends at the first batch that takes it past the limit.
        assert!(len < (1 << 20) + (9 << 20), "{f:?} is {len} bytes");
    }
    assert_eq!(
        events_of(&read(dir.path()).unwrap()),
        in_session_order(pushed)
    );
    let report = verify(dir.path());
    assert!(report.is_clean() && report.open.is_empty(), "{report}");
}

#[test]
fn files_rotate_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_interval_s = 1;
    let rec = Recorder::start(&cfg, 1).unwrap();
    let events = session("slow", T0);
    push_all(&rec.shard(0), events[..4].to_vec());
    std::thread::sleep(Duration::from_millis(1300));
    // The first file was closed without waiting for shutdown.
    assert_eq!(complete_files(dir.path()).len(), 1);
    push_all(&rec.shard(0), events[4..].to_vec());
    rec.shutdown();
    assert_eq!(
        complete_files(dir.path()),
        vec![
            PathBuf::from("date=2024-05-01/hour=12/gw1-00000001.parquet"),
            PathBuf::from("date=2024-05-01/hour=12/gw1-00000002.parquet"),
        ]
    );
    assert_eq!(
        events_of(&read(dir.path()).unwrap()),
        in_session_order(events)
    );
    assert!(verify(dir.path()).is_clean());
}

#[test]
fn files_are_partitioned_by_the_hour_of_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    let mut events = session("turn", T0 + HOUR_US - 3000);
    // The session runs over the turn of the hour (and of the day, for the second one).
    for (i, e) in events.iter_mut().enumerate() {
        e.at_us = T0 + HOUR_US - 3000 + 1000 * i as i64;
    }
    let mut night = session("night", T0 + 11 * HOUR_US + HOUR_US - 2000);
    for (i, e) in night.iter_mut().enumerate() {
        e.at_us = T0 + 12 * HOUR_US - 2000 + 1000 * i as i64;
    }
    push_all(&rec.shard(0), events.clone());
    push_all(&rec.shard(0), night.clone());
    rec.shutdown();
    assert_eq!(
        complete_files(dir.path()),
        vec![
            PathBuf::from("date=2024-05-01/hour=12/gw1-00000001.parquet"),
            PathBuf::from("date=2024-05-01/hour=13/gw1-00000002.parquet"),
            PathBuf::from("date=2024-05-01/hour=23/gw1-00000003.parquet"),
            PathBuf::from("date=2024-05-02/hour=00/gw1-00000004.parquet"),
        ]
    );
    for r in read(dir.path()).unwrap() {
        let want = dir.path().join(layout::Hour::of(r.event.at_us).partition());
        assert_eq!(r.file.parent(), Some(want.as_path()));
    }
    assert!(verify(dir.path()).is_clean());
}

/// Starts a recorder on `dir` (which recovers what a crash left) and stops it; the archive is
/// then the first file, complete.
fn recover_into_the_first_file(cfg: &RecordConfig, dir: &Path) {
    Recorder::start(cfg, 1).unwrap().shutdown();
    assert_eq!(
        archive(dir),
        vec![(
            PathBuf::from("date=2024-05-01/hour=12/gw1-00000001.parquet"),
            FileState::Complete
        )]
    );
}

/// Waits until the recorder has logged what was pushed (the flush interval and then some).
fn wait_for_flush(cfg: &RecordConfig) {
    std::thread::sleep(Duration::from_millis(cfg.flush_interval_ms * 4 + 100));
}

#[test]
fn a_killed_recorder_loses_nothing_older_than_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let rec = Recorder::start(&cfg, 2).unwrap();
    let a = session("aaaa", T0);
    let b = session("bbbb", T0 + HOUR_US);
    // Session a ends; b is cut off mid-way by the crash.
    push_all(&rec.shard(0), a.clone());
    push_all(&rec.shard(1), b[..5].to_vec());
    wait_for_flush(&cfg);
    rec.crash();
    let left = archive(dir.path());
    assert!(
        left.iter().all(|(_, s)| *s != FileState::Complete),
        "{left:?}"
    );
    assert!(left.iter().any(|(_, s)| *s == FileState::Wal), "{left:?}");
    assert!(read(dir.path()).unwrap().is_empty());

    // The next start rebuilds both files, then goes on numbering after them.
    let rec = Recorder::start(&cfg, 1).unwrap();
    push_all(&rec.shard(0), session("cccc", T0));
    rec.shutdown();
    assert_eq!(
        complete_files(dir.path()),
        vec![
            PathBuf::from("date=2024-05-01/hour=12/gw1-00000001.parquet"),
            PathBuf::from("date=2024-05-01/hour=12/gw1-00000003.parquet"),
            PathBuf::from("date=2024-05-01/hour=13/gw1-00000002.parquet"),
        ]
    );
    let got = events_of(&read(dir.path()).unwrap());
    let in_session =
        |id: &str| -> Vec<Event> { got.iter().filter(|e| e.session.id == id).cloned().collect() };
    assert_eq!(in_session("aaaa"), a);
    assert_eq!(in_session("bbbb"), b[..5].to_vec());
    let report = verify(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.open.len(), 1, "{report}");
    assert_eq!(report.open[0].session_id, "bbbb");
    assert_eq!(report.open[0].last_seq, 4);
}

#[test]
fn recovery_ignores_a_torn_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let rec = Recorder::start(&cfg, 1).unwrap();
    let events = session("torn", T0);
    push_all(&rec.shard(0), events[..3].to_vec());
    wait_for_flush(&cfg);
    push_all(&rec.shard(0), events[3..6].to_vec());
    wait_for_flush(&cfg);
    rec.crash();
    let wal = dir.path().join("date=2024-05-01/hour=12/gw1-00000001.wal");
    let bytes = std::fs::read(&wal).unwrap();
    // Cut the second frame in the middle, as a kill during its write would.
    let first_frame_end = {
        let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        8 + 12 + len
    };
    assert!(bytes.len() > first_frame_end + 40);
    std::fs::write(&wal, &bytes[..first_frame_end + 40]).unwrap();

    recover_into_the_first_file(&cfg, dir.path());
    assert_eq!(
        events_of(&read(dir.path()).unwrap()),
        in_session_order(events[..3].to_vec())
    );
}

/// Pushes two results of 9 MiB of rows in one session (each closes a row group, made
/// durable by a checkpoint) and, after they were written, the first `small` events of another
/// session (logged in the open row group); then kills the recorder. Returns what was pushed
/// and the file's paths.
fn crash_after_checkpoints(cfg: &RecordConfig, small: usize) -> (Vec<Event>, layout::FilePaths) {
    let rec = Recorder::start(cfg, 1).unwrap();
    let paths = layout::FilePaths::new(cfg.dir.as_path(), layout::Hour::of(T0), "gw1", 1);
    let s = meta("big");
    let mut pushed: Vec<Event> = (0..2u64)
        .flat_map(|i| big_pair(&s, 2 * i, T0 + i as i64, 9 << 20))
        .collect();
    push_all(&rec.shard(0), pushed.clone());
    wait_until_logged(&paths, pushed.len());
    let others = session("small", T0 + 100);
    push_all(&rec.shard(0), others[..small].to_vec());
    pushed.extend_from_slice(&others[..small]);
    wait_until_logged(&paths, pushed.len());
    rec.crash();
    (pushed, paths)
}

/// The log's checkpoints (end in the `.partial`, events) and its batches' events, in order.
fn log_of(paths: &layout::FilePaths) -> (Vec<(u64, usize)>, Vec<usize>) {
    let (mut checkpoints, mut batches) = (Vec::new(), Vec::new());
    wal::read(&paths.wal, |e| {
        match e {
            wal::Entry::Checkpoint { end, metadata } => checkpoints.push((
                end,
                metadata
                    .row_groups()
                    .iter()
                    .map(|rg| rg.num_rows() as usize)
                    .sum(),
            )),
            wal::Entry::Batch(b) => batches.push(b.num_rows()),
        }
        Ok(())
    })
    .unwrap();
    (checkpoints, batches)
}

/// Waits until the file's checkpoints and the batches logged after them hold `events`
/// events (a debug build takes its time over 9 MiB of rows).
fn wait_until_logged(paths: &layout::FilePaths, events: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (mut logged, mut checkpointed) = (0, 0);
        if paths.wal.exists() {
            let _ = wal::read(&paths.wal, |e| {
                match e {
                    wal::Entry::Checkpoint { metadata, .. } => {
                        // Its row groups hold the batches logged before it.
                        checkpointed += metadata
                            .row_groups()
                            .iter()
                            .map(|rg| rg.num_rows() as usize)
                            .sum::<usize>();
                        logged = checkpointed;
                    }
                    wal::Entry::Batch(b) => logged += b.num_rows(),
                }
                Ok(())
            });
        }
        if logged >= events {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{logged} of {events} events logged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_recorder_keeps_its_checkpointed_row_groups_without_rewriting_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (pushed, paths) = crash_after_checkpoints(&cfg, 0);
    let (checkpoints, _) = log_of(&paths);
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    let end = checkpoints.last().unwrap().0 as usize;
    let partial = std::fs::read(&paths.partial).unwrap();
    assert!(partial.len() >= end);

    recover_into_the_first_file(&cfg, dir.path());
    assert!(!paths.rebuild.exists());
    // The row groups stayed where they were written; only a footer was added.
    let complete = std::fs::read(&paths.complete).unwrap();
    assert_eq!(complete[..end], partial[..end]);
    assert!(complete.len() - end < 64 * 1024, "{}", complete.len() - end);
    assert!(events_of(&read(dir.path()).unwrap()) == in_session_order(pushed.clone()));
    let report = verify(dir.path());
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_killed_recorder_keeps_the_batches_logged_after_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (pushed, paths) = crash_after_checkpoints(&cfg, 5);
    let (checkpoints, batches) = log_of(&paths);
    assert!(!checkpoints.is_empty());
    assert!(!batches.is_empty());

    recover_into_the_first_file(&cfg, dir.path());
    assert!(!paths.rebuild.exists());
    assert!(events_of(&read(dir.path()).unwrap()) == in_session_order(pushed.clone()));
    let report = verify(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.open.len(), 2, "{report}");
}

#[test]
fn a_checkpoint_needs_nothing_that_a_kill_would_lose() {
    let dir = tempfile::tempdir().unwrap();
    let paths = layout::FilePaths::new(dir.path(), layout::Hour::of(T0), "gw1", 1);
    let mut file = ArchiveFile::create(paths.clone(), &schema(), ZstdLevel::default()).unwrap();
    let s = meta("big");
    let events: Vec<Event> = (0..3u64)
        .flat_map(|i| big_pair(&s, 2 * i, T0 + i as i64, 3 << 20))
        .collect();
    let (mut b, mut rows, mut prev) = (BatchBuilder::default(), Rows::default(), ZERO_HASH);
    for e in &events {
        rows.clear();
        if let Body::Result(r) = &e.body {
            rows.decode_pg(&r.rows_data, &r.columns);
        }
        let hash = chain::event_hash(&prev, "gw1", e, &rows, &mut Vec::new());
        b.append("gw1", e, &rows, &prev, &hash);
        prev = hash;
    }
    let payload = b.payload();
    file.append(&b.finish().unwrap(), payload).unwrap();

    // Killed now: what the file system holds is what was written, without the buffers of the
    // still open writer.
    let copy = layout::FilePaths::new(&dir.path().join("copy"), layout::Hour::of(T0), "gw1", 1);
    std::fs::create_dir_all(copy.partial.parent().unwrap()).unwrap();
    std::fs::copy(&paths.partial, &copy.partial).unwrap();
    std::fs::copy(&paths.wal, &copy.wal).unwrap();
    let (checkpoints, batches) = log_of(&copy);
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(batches, Vec::<usize>::new());
    assert!(std::fs::metadata(&copy.partial).unwrap().len() >= checkpoints[0].0);
    recover::recover(&copy, ZstdLevel::default()).unwrap();
    assert!(!copy.rebuild.exists());
    assert!(events_of(&read_file(&copy.complete).unwrap()) == in_session_order(events.clone()));
    drop(file);
}

#[test]
fn recovery_survives_a_partial_shorter_than_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (pushed, paths) = crash_after_checkpoints(&cfg, 5);
    let (checkpoints, _) = log_of(&paths);
    // A machine crash lost the end of the .partial (the log survived).
    let first_end = checkpoints[0].0;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&paths.partial)
        .unwrap()
        .set_len(first_end + 10)
        .unwrap();
    // A rebuild cut short by an earlier kill is started again.
    std::fs::write(&paths.rebuild, b"PAR1 and then nothing").unwrap();

    let rec = Recorder::start(&cfg, 1).unwrap();
    rec.shutdown();
    assert_eq!(complete_files(dir.path()).len(), 1);
    assert_eq!(archive(dir.path()).len(), 1);
    assert!(!paths.rebuild.exists());
    // The first checkpoint's events and the batches logged after it are kept (the second
    // checkpoint's row group is lost, save what of it was logged).
    let got = events_of(&read(dir.path()).unwrap());
    let first = checkpoints[0].1;
    assert!(got.len() >= first + 5 && got.len() < pushed.len());
    assert!(got[..first] == pushed[..first]);
    assert!(got[got.len() - 5..] == pushed[pushed.len() - 5..]);
}

#[test]
fn a_file_of_many_row_groups_closes_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    let s = meta("big");
    let mut pushed: Vec<Event> = (0..12u64)
        .flat_map(|i| big_pair(&s, 2 * i, T0 + i as i64, 3 << 20))
        .collect();
    pushed.push(disconnect(&s, 24, T0 + 100));
    push_all(&rec.shard(0), pushed.clone());
    rec.shutdown();
    let files = complete_files(dir.path());
    assert_eq!(files.len(), 1);
    let file = std::fs::File::open(dir.path().join(&files[0])).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let groups = parquet::file::reader::FileReader::metadata(&reader).num_row_groups();
    assert!(groups >= 3, "{groups} row groups");
    assert!(events_of(&read(dir.path()).unwrap()) == in_session_order(pushed.clone()));
    let report = verify(dir.path());
    assert!(report.is_clean() && report.open.is_empty(), "{report}");
}

#[test]
fn leftovers_of_other_instances_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("date=2024-05-01/hour=12");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("gw2-00000001.wal"), b"TGWAL001").unwrap();
    std::fs::write(part.join("gw1-00000007.parquet.partial"), b"PAR1").unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    rec.shutdown();
    assert_eq!(
        archive(dir.path()),
        vec![(
            PathBuf::from("date=2024-05-01/hour=12/gw2-00000001.wal"),
            FileState::Wal
        )]
    );
}

#[test]
fn verify_names_changed_removed_reordered_and_duplicated_events() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    for id in ["clean", "edit", "drop", "swap", "twice"] {
        push_all(&rec.shard(0), session(id, T0));
    }
    rec.shutdown();
    let file = dir
        .path()
        .join("date=2024-05-01/hour=12/gw1-00000001.parquet");
    assert!(verify(dir.path()).is_clean());

    rewrite(&file, |events| {
        let pos = |events: &Vec<Recorded>, id: &str, seq: u64| {
            events
                .iter()
                .position(|r| r.event.session.id == id && r.event.seq == seq)
                .unwrap()
        };
        // A changed value: the statement text of "edit" 1.
        let i = pos(events, "edit", 1);
        if let Body::Statement(st) = &mut events[i].event.body {
            st.text = "select 1".into();
        }
        // A removed event: "drop" 4.
        let i = pos(events, "drop", 4);
        events.remove(i);
        // A reordered pair: "swap" 3 and 4 trade places (and numbers).
        let (i, j) = (pos(events, "swap", 3), pos(events, "swap", 4));
        events[i].event.seq = 4;
        events[j].event.seq = 3;
        // A duplicated event: "twice" 2 stored again.
        let i = pos(events, "twice", 2);
        let copy = events[i].clone();
        events.push(copy);
    });
    let report = verify(dir.path());
    assert!(!report.is_clean());
    assert_eq!(
        report.tampered_sessions(),
        vec!["drop", "edit", "swap", "twice"]
    );
    let problems = |id: &str| -> Vec<Problem> {
        report
            .findings
            .iter()
            .filter(|f| f.session_id == id)
            .map(|f| f.problem.clone())
            .collect()
    };
    assert_eq!(
        problems("edit"),
        vec![Problem::Changed {
            seq: 1,
            file: file.clone()
        }]
    );
    assert_eq!(
        problems("drop"),
        vec![Problem::Removed {
            from_seq: 4,
            to_seq: 4
        }]
    );
    assert!(
        problems("swap").contains(&Problem::Reordered {
            seq: 3,
            follows: Some(4)
        }),
        "{report}"
    );
    assert_eq!(
        problems("twice"),
        vec![Problem::Duplicated { seq: 2, copies: 2 }]
    );
    let text = report.to_string();
    for needle in [
        "session edit: event 1 changed",
        "session drop: event 4 removed",
        "session swap: events reordered: event 3 was recorded after event 4",
        "session twice: event 2 duplicated (2 copies)",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn verify_names_a_session_whose_middle_file_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_interval_s = 1;
    let rec = Recorder::start(&cfg, 1).unwrap();
    let events = session("long", T0);
    for part in [&events[..3], &events[3..6], &events[6..]] {
        push_all(&rec.shard(0), part.to_vec());
        std::thread::sleep(Duration::from_millis(1300));
    }
    rec.shutdown();
    let files = complete_files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(verify(dir.path()).is_clean());
    std::fs::remove_file(dir.path().join(&files[1])).unwrap();
    let report = verify(dir.path());
    assert_eq!(
        report.findings,
        vec![Finding {
            session_id: "long".into(),
            problem: Problem::Removed {
                from_seq: 3,
                to_seq: 5
            }
        }]
    );
    assert!(report
        .to_string()
        .contains("session long: events 3 to 5 removed"));
}

#[test]
fn verify_reports_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    push_all(&rec.shard(0), session("ok", T0));
    rec.shutdown();
    let bad = dir.path().join("date=2024-05-01/hour=12/junk.parquet");
    std::fs::write(&bad, b"not parquet at all").unwrap();
    let report = verify(dir.path());
    assert!(!report.is_clean());
    assert_eq!(report.unreadable.len(), 1);
    assert_eq!(report.unreadable[0].0, bad);
    assert_eq!(report.events, 9);
    assert!(read(dir.path()).is_err());
    assert!(report.to_string().contains("unreadable: "));
}

/// A batch lists its events by kind, so each kind's columns are long runs of values and of
/// nulls (which the Parquet patch null-runs encodes 64 rows at a time): hundreds of events of
/// every kind in one file read back as pushed, and their chains hold.
#[test]
fn many_events_of_every_kind_read_back_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_interval_ms = 60_000; // one batch, sealed at shutdown
    let rec = Recorder::start(&cfg, 1).unwrap();
    let mut pushed: Vec<Event> = (0..120)
        .flat_map(|i| session(&format!("s{i:03}"), T0 + i * 10))
        .collect();
    // A session of 100 decided statements and one without a decision: a run of valid
    // decision keys longer than 64 rows, then a null.
    let template = session("long", T0);
    let with_decision = template
        .iter()
        .find(|e| matches!(&e.body, Body::Statement(st) if st.decision.is_some()))
        .unwrap()
        .clone();
    let mut long = vec![template[0].clone()];
    for seq in 1..=101u64 {
        let mut e = with_decision.clone();
        e.seq = seq;
        if let Body::Statement(st) = &mut e.body {
            st.statement_id = seq - 1;
            if seq == 101 {
                st.decision = None;
            }
        }
        long.push(e);
    }
    long.push(disconnect(&template[0].session, 102, T0 + 5));
    pushed.extend(long);
    push_all(&rec.shard(0), pushed.clone());
    rec.shutdown();
    assert_eq!(complete_files(dir.path()).len(), 1);
    let got = read(dir.path()).unwrap();
    let kinds: Vec<&str> = got.iter().map(|r| r.event.body.kind()).collect();
    let mut grouped = kinds.clone();
    grouped.sort_by_key(|k| {
        ["connect", "statement", "result", "approval", "disconnect"]
            .iter()
            .position(|x| x == k)
    });
    assert_eq!(kinds, grouped, "rows grouped by kind");
    assert_eq!(events_of(&got), in_session_order(pushed));
    let report = verify(dir.path());
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.events, 120 * 9 + 103);
}

#[test]
fn a_full_queue_refuses_without_losing_the_event() {
    let (q, rx) = channel(2, 100);
    let s = meta("q");
    let e = |seq| disconnect(&s, seq, T0);
    assert!(q.try_push(e(0)).is_ok());
    assert!(q.try_push(e(1)).is_ok());
    assert_eq!(q.try_push(e(2)), Err(e(2)));
    assert_eq!(q.len(), 2);
    assert_eq!(rx.try_recv().ok(), Some(e(0)));
    assert!(q.try_push(e(2)).is_ok());
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![e(1), e(2)]);
    assert_eq!(q.max_result_bytes(), 100);
}

#[test]
fn a_small_queue_slows_sessions_down_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.queue_capacity = 2;
    let rec = Recorder::start(&cfg, 4).unwrap();
    let mut all = Vec::new();
    std::thread::scope(|scope| {
        for shard in 0..4 {
            let q = rec.shard(shard);
            let events: Vec<Event> = (0..50)
                .flat_map(|i| session(&format!("s{shard}-{i}"), T0 + i))
                .collect();
            all.extend(events.clone());
            scope.spawn(move || push_all(&q, events));
        }
    });
    rec.shutdown();
    let mut got = events_of(&read(dir.path()).unwrap());
    let key = |e: &Event| (e.session.id.clone(), e.seq);
    got.sort_by_key(key);
    all.sort_by_key(key);
    assert_eq!(got.len(), 4 * 50 * 9);
    assert!(got == all);
    assert!(verify(dir.path()).is_clean());
}

#[test]
fn push_waits_on_a_full_queue_inside_a_shard() {
    let (q, rx) = channel(1, 0);
    let s = meta("p");
    let first = disconnect(&s, 0, T0);
    let second = disconnect(&s, 1, T0);
    q.try_push(first.clone()).unwrap();
    let drainer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Ok(e) = rx.recv_timeout(Duration::from_secs(5)) {
                got.push(e);
            } else {
                break;
            }
        }
        got
    });
    let pushed = second.clone();
    let ex = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { q.push(pushed).await })
        .unwrap();
    ex.join().unwrap();
    assert_eq!(drainer.join().unwrap(), vec![first, second]);
}

#[test]
fn malformed_rows_are_recorded_as_far_as_they_decode_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    let mut events = session("bad", T0);
    let good_row = data_row(&[Some(b"7"), Some(b"x"), None]);
    let Body::Result(r) = &mut events[2].body else {
        panic!("event 2 is a result")
    };
    r.kept_rows = 2;
    r.rows_data = [good_row.clone(), vec![0, 3, 0, 0, 0, 50, b'y']].concat();
    push_all(&rec.shard(0), events.clone());
    rec.shutdown();

    let mut got = read(dir.path()).unwrap();
    got.sort_by_key(|r| r.event.seq);
    let Body::Result(back) = &got[2].event.body else {
        panic!("event 2 is a result")
    };
    assert_eq!(back.rows_data, good_row);
    assert_eq!(back.kept_rows, 2);
    assert_eq!(
        got[2].rows_error.as_deref(),
        Some("row 1 (byte 16): field 0: length 50 exceeds the 1 bytes left; 1 rows kept")
    );
    // Everything else reads back as pushed, and the chain holds.
    for (g, e) in got.iter().zip(&events) {
        if g.event.seq != 2 {
            assert_eq!(&g.event, e);
        }
    }
    assert!(verify(dir.path()).is_clean());
}

/// Archives whose chains were hashed with the canonical encodings v1 and v2 (archive formats 1
/// and 2, as gateways before format 3 wrote them) verify, and an edit in them still shows.
#[test]
fn archives_hashed_with_encodings_v1_and_v2_still_verify_and_show_edits() {
    for encoding in [chain::Encoding::V1, chain::Encoding::V2] {
        archive_hashed_with(encoding);
    }
}

fn archive_hashed_with(encoding: chain::Encoding) {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    for id in ["clean", "edit"] {
        push_all(&rec.shard(0), session(id, T0));
    }
    rec.shutdown();
    let file = dir
        .path()
        .join("date=2024-05-01/hour=12/gw1-00000001.parquet");
    // The same events chained as the older format chained them.
    rewrite(&file, |events| {
        let mut last: std::collections::HashMap<String, [u8; 32]> = Default::default();
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by_key(|&i| (events[i].event.session.id.clone(), events[i].event.seq));
        for i in order {
            let r = &mut events[i];
            let prev = last
                .get(&r.event.session.id)
                .copied()
                .unwrap_or(chain::ZERO_HASH);
            let mut rows = Rows::default();
            if let Body::Result(res) = &r.event.body {
                rows.decode_pg(&res.rows_data, &res.columns);
                rows.error = r.rows_error.clone();
            }
            let old = chain::event_hash_with(
                encoding,
                &prev,
                &r.instance,
                &r.event,
                &rows,
                &mut Vec::new(),
            );
            assert_ne!(
                old, r.hash,
                "{encoding:?} and the current encoding hash alike"
            );
            (r.prev_hash, r.hash) = (prev, old);
            last.insert(r.event.session.id.clone(), old);
        }
    });
    let report = verify(dir.path());
    assert!(report.is_clean(), "{encoding:?}: {report}");

    rewrite(&file, |events| {
        let r = events
            .iter_mut()
            .find(|r| r.event.session.id == "edit" && r.event.seq == 1)
            .unwrap();
        if let Body::Statement(st) = &mut r.event.body {
            st.text = "select 1".into();
        }
    });
    let report = verify(dir.path());
    assert_eq!(
        report.tampered_sessions(),
        vec!["edit"],
        "{encoding:?}: {report}"
    );
}

/// The vendored parquet compresses each zstd page in one call after whatever the page buffer
/// holds (patch zstd-bulk in third_party/parquet/src/compression.rs): pages of both format
/// versions (a v2 page keeps its levels uncompressed in front), small pages and pages larger
/// than zstd's window, with nulls, must read back as written.
#[test]
fn zstd_pages_of_both_format_versions_read_back_as_written() {
    use arrow::array::{Array, ListBuilder, RecordBatch, StringBuilder};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{WriterProperties, WriterVersion};

    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut text = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 8) as u8)
            })
            .collect()
    };
    let mut lists = ListBuilder::new(StringBuilder::new());
    for i in 0..3000usize {
        if i % 7 == 3 {
            lists.append(false);
            continue;
        }
        for j in 0..(i % 5) {
            if j == 1 {
                lists.values().append_null();
            } else {
                // Every 1000th value is 1 MiB: a page beyond zstd's 512 KiB window at level 1.
                let len = if i % 1000 == 999 {
                    1 << 20
                } else {
                    10 + i % 90
                };
                lists.values().append_value(text(len));
            }
        }
        lists.append(true);
    }
    let column: Arc<dyn Array> = Arc::new(lists.finish());
    let batch = RecordBatch::try_from_iter([("values", column)]).unwrap();
    for (version, page_bytes) in [
        (WriterVersion::PARQUET_1_0, 4 << 10),
        (WriterVersion::PARQUET_2_0, 4 << 10),
        (WriterVersion::PARQUET_2_0, 8 << 20),
    ] {
        let props = WriterProperties::builder()
            .set_writer_version(version)
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_data_page_size_limit(page_bytes)
            .set_dictionary_enabled(false)
            .build();
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file)).unwrap();
        let chunk = reader.metadata().row_group(0).column(0);
        assert_eq!(chunk.compression(), Compression::ZSTD(ZstdLevel::default()));
        let (packed, plain) = (chunk.compressed_size(), chunk.uncompressed_size());
        assert!(
            packed < plain / 2,
            "{version:?}: {packed} bytes for {plain}"
        );
        let read: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        let read = arrow::compute::concat_batches(&batch.schema(), &read).unwrap();
        assert!(read == batch, "{version:?}, pages of {page_bytes} bytes");
    }
}

/// The recorder hands the Parquet writer some `Utf8` columns as dictionary arrays
/// (`schema::batch_schema`), which the vendored parquet encodes by their keys (patch
/// dict-array-keys in third_party/parquet/src/arrow/arrow_writer/byte_array.rs): the file must
/// be byte for byte the one the same rows as plain strings give (the same dictionary pages,
/// indices and statistics), with nulls, keys out of order, unused and repeated dictionary
/// values, across several row groups and after the dictionary spills to plain pages.
#[test]
fn dictionary_columns_write_the_file_their_strings_write() {
    use arrow::array::{Array, DictionaryArray, Int32Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};

    let words: Vec<String> = (0..600)
        .map(|i| format!("value-{:04}", (i * 7919) % 600))
        .collect();
    let mut values: Vec<Option<&str>> = words.iter().map(|w| Some(w.as_str())).collect();
    values[5] = Some("repeated");
    values[9] = Some("repeated");
    let dict_values = StringArray::from(values);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let keys: Vec<Option<i32>> = (0..20_000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct values at first; later rows use them all, which spills the
            // dictionary past its page limit.
            let span = if i < 12_000 { 40 } else { 600 };
            (!x.is_multiple_of(11)).then_some((x % span) as i32)
        })
        .collect();
    let keys = Int32Array::from(keys);
    let dict = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(dict_values)).unwrap();
    let strings = arrow::compute::cast(&dict, &DataType::Utf8).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
    let file_of = |column: Arc<dyn Array>, statistics| {
        let batch_schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            column.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(batch_schema, vec![column]).unwrap();
        let props = WriterProperties::builder()
            .set_statistics_enabled(statistics)
            .set_dictionary_page_size_limit(2 << 10)
            .set_max_row_group_size(7_000)
            .build();
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, schema.clone(), Some(props)).unwrap();
        for at in (0..batch.num_rows()).step_by(3_000) {
            let len = 3_000.min(batch.num_rows() - at);
            writer.write(&batch.slice(at, len)).unwrap();
        }
        writer.close().unwrap();
        file
    };
    for statistics in [
        EnabledStatistics::None,
        EnabledStatistics::Chunk,
        EnabledStatistics::Page,
    ] {
        let plain = file_of(strings.clone(), statistics);
        let keyed = file_of(Arc::new(dict.clone()), statistics);
        assert!(plain == keyed, "{statistics:?}: the files differ");
    }
}

/// Sessions interleaved in one batch, each bringing its own metadata and decisions (the
/// dictionary columns' keys are found by address), read back as pushed, and the file tells
/// readers the documented schema: `Utf8` where the batches held dictionaries.
#[test]
fn interleaved_sessions_read_back_and_files_carry_the_documented_schema() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&config(dir.path()), 1).unwrap();
    let sessions: Vec<Vec<Event>> = (0..5)
        .map(|i| session(&format!("mixed-{i}"), T0 + i))
        .collect();
    let longest = sessions.iter().map(Vec::len).max().unwrap_or(0);
    let mut pushed = Vec::new();
    for n in 0..longest {
        for s in &sessions {
            if let Some(e) = s.get(n) {
                pushed.push(e.clone());
            }
        }
    }
    push_all(&rec.shard(0), pushed.clone());
    rec.shutdown();
    assert!(events_of(&read(dir.path()).unwrap()) == in_session_order(pushed.clone()));
    let report = verify(dir.path());
    assert!(report.is_clean() && report.open.is_empty(), "{report}");
    for file in complete_files(dir.path()) {
        let f = std::fs::File::open(dir.path().join(&file)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        assert_eq!(
            reader.schema().fields(),
            schema().fields(),
            "{}",
            file.display()
        );
    }
}

/// Two gateways recording into one folder under one instance name would take each other's open
/// files for a crash's leftovers: the second is refused with a message that says what to
/// change, while a gateway under another name, or one started after the first stopped or
/// died, records as usual.
#[test]
fn a_second_recorder_of_the_same_instance_is_refused_until_the_first_stops() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let first = Recorder::start(&cfg, 1).unwrap();
    push_all(&first.shard(0), session("held", T0).into_iter().take(3));

    let refused = Recorder::start(&cfg, 1).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ResourceBusy);
    let text = refused.to_string();
    assert!(
        text.contains("another Tollgate is recording")
            && text.contains(&format!("{:?}", first.instance()))
            && text.contains("[record] instance"),
        "{text}"
    );

    // Another name in the same folder is another gateway's own series of files.
    let other = Recorder::start(
        &RecordConfig {
            instance: Some("other".into()),
            ..cfg.clone()
        },
        1,
    )
    .unwrap();
    other.shutdown();

    // The refused start touched none of the first recorder's files: it finishes them.
    first.shutdown();
    let second = Recorder::start(&cfg, 1).unwrap();
    second.shutdown();
    drop((first, second));
    assert!(verify(dir.path()).is_clean());

    // A killed gateway leaves its lock behind with the process: the next start takes over.
    let crashed = Recorder::start(&cfg, 1).unwrap();
    crashed.crash();
    let next = Recorder::start(&cfg, 1).unwrap();
    next.shutdown();
}

#[test]
fn the_zstd_level_setting_sets_how_hard_pages_are_compressed() {
    use parquet::basic::Compression;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    // The same session at zstd's fast level -3 and at level 9: both read back as pushed
    // and verify; level 9's file is much smaller (the values are random letters, which
    // only the entropy coder shrinks, and the fast levels leave literals uncompressed).
    let s = meta("levels");
    let mut pushed: Vec<Event> = (0..4u64)
        .flat_map(|i| big_pair(&s, 2 * i, T0 + i as i64, 256 << 10))
        .collect();
    pushed.push(disconnect(&s, 8, T0 + 100));
    let written = [-3, 9].map(|level| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RecordConfig {
            zstd_level: level,
            ..config(dir.path())
        };
        let rec = Recorder::start(&cfg, 1).unwrap();
        push_all(&rec.shard(0), pushed.clone());
        rec.shutdown();
        assert!(
            events_of(&read(dir.path()).unwrap()) == in_session_order(pushed.clone()),
            "level {level}"
        );
        let report = verify(dir.path());
        assert!(
            report.is_clean() && report.open.is_empty(),
            "level {level}: {report}"
        );
        let files = complete_files(dir.path());
        assert_eq!(files.len(), 1);
        let file = std::fs::File::open(dir.path().join(&files[0])).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let mut compressed = 0;
        for group in reader.metadata().row_groups() {
            for chunk in group.columns() {
                assert!(matches!(chunk.compression(), Compression::ZSTD(_)));
                compressed += chunk.compressed_size();
            }
        }
        compressed
    });
    let [fast, level9] = written;
    assert!(
        level9 * 10 < fast * 8,
        "level 9 wrote {level9} bytes, level -3 {fast}"
    );

    // Level 0 (zstd's "default", 3) and levels outside the setting's ranges are refused at
    // start.
    for bad in [0, 20, -8] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RecordConfig {
            zstd_level: bad,
            ..config(dir.path())
        };
        let Err(err) = Recorder::start(&cfg, 1) else {
            panic!("zstd level {bad} accepted");
        };
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("zstd_level"), "{err}");
    }
}
