//! Record stage benchmarks: what recording costs a shard, and what the recorder thread writes.
//!
//! - `record_push`: one `ShardQueue::try_push` of a typical statement event (a prepared
//!   statement with two parameters and a cached decision) while another thread drains the
//!   queue, as the recorder does; `build_and_try_push` adds building the event from the
//!   session's shared parts. Target: ≤ 1 µs. `pg_select_simple` is all a shard does to record
//!   one `pgbench -S -M simple` transaction: the statement event at the Query, the result
//!   following the server's RowDescription, DataRow, CommandComplete and ReadyForQuery, and
//!   both pushes.
//! - `record_write`: the recorder thread end to end (hash chain, row decoding, Arrow batches,
//!   zstd Parquet with its row-group checkpoints, the write-ahead log for batches too small to
//!   close a row group) on one core, fed by this thread through one shard queue. Throughput is
//!   event payload (statement text + `rows_data` bytes) per second of the recorder thread's CPU
//!   time (read from `/proc/self/task/*/schedstat`, so other load on the machine counts only as
//!   far as it slows the recorder's core); after each workload the same figure over all
//!   samples (steadier than criterion's, whose samples scatter with the batch each one happens
//!   to write) and the wall-clock figure are printed. `pgbench` is pgbench's TPC-B-like
//!   transaction (7 statements, each with a small result); `select_simple` is `pgbench -S -M
//!   simple -c 8` (eight sessions taking turns, one-row results), the load test's recording
//!   scenario; `rows_8KiB` is a select whose result carries 8 KiB of customer-like rows.
//!   Target: ≥ 200 MB/s. The summary line also gives the recorder's CPU time per event.
//!
//! Each workload runs through a recorder of its own and reports the archive's size against the
//! payload; `RECORD_BENCH_ZSTD_LEVELS=1,-3,9` repeats each at those zstd levels (`[record]
//! zstd_level`; the default is 1 alone).
//!
//! Run: `cargo bench -p tollgate-benches --bench record -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::config::RecordConfig;
use tollgate::proto::pg::{encode_data_row, BackendMessage, FieldDescription, Frame};
use tollgate::record::{
    channel, Body, Column, DecisionInfo, Event, Recorder, RowsEncoding, SessionMeta, ShardQueue,
    Statement, StatementResult,
};
use tollgate::session::pg_record::PgRecording;
use tollgate::session::recording::SessionRecorder;

/// The allocator the gateway binary runs with (`dataplane/src/main.rs`), so the figures are its;
/// `record_write` applies its settings (`tollgate::runtime::tune_allocator`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn meta(i: u64) -> Arc<SessionMeta> {
    Arc::new(SessionMeta {
        id: format!("{i:032x}"),
        principal: "alice@example.com".into(),
        groups: vec!["eng".into(), "dba".into()],
        connection: "orders-prod".into(),
        protocol: "postgres".into(),
    })
}

fn decision(fingerprint: &str, table: &str) -> Arc<DecisionInfo> {
    Arc::new(DecisionInfo {
        action: "allow".into(),
        rules: vec!["reads-and-writes-ok".into()],
        reason: String::new(),
        fingerprint: fingerprint.into(),
        tables: vec![table.into()],
    })
}

fn statement(
    s: &Arc<SessionMeta>,
    seq: u64,
    id: u64,
    text: &Arc<str>,
    params: Vec<Option<String>>,
    d: &Arc<DecisionInfo>,
) -> Event {
    Event {
        session: s.clone(),
        seq,
        at_us: 1_714_564_800_000_000 + seq as i64 * 50,
        body: Body::Statement(Statement {
            statement_id: id,
            text: text.clone(),
            params,
            fingerprint_hash: 0x1234_5678_9abc_def0 ^ id,
            decision: Some(d.clone()),
        }),
    }
}

fn data_row(out: &mut Vec<u8>, values: &[&[u8]]) {
    out.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
        out.extend_from_slice(v);
    }
}

fn result(
    s: &Arc<SessionMeta>,
    seq: u64,
    id: u64,
    tag: &str,
    columns: Vec<Column>,
    rows_data: Vec<u8>,
    kept: u64,
) -> Event {
    Event {
        session: s.clone(),
        seq,
        at_us: 1_714_564_800_000_000 + seq as i64 * 50 + 20,
        body: Body::Result(StatementResult {
            statement_id: id,
            rows: kept,
            bytes: rows_data.len() as u64 + 40,
            duration_us: 180,
            command_tag: Some(tag.into()),
            sqlstate: None,
            error: None,
            columns: columns.into(),
            rows_data,
            rows_encoding: RowsEncoding::PgDataRow,
            kept_rows: kept,
            truncated: false,
        }),
    }
}

fn text_column(name: &str, type_id: u32) -> Column {
    Column {
        name: name.into(),
        type_id,
        binary: false,
    }
}

/// pgbench's TPC-B-like transaction: statement and result events, 14 per transaction.
fn pgbench_events(transactions: u64) -> Vec<Event> {
    let texts: [(&str, &str, &str); 7] = [
        ("BEGIN", "", "BEGIN"),
        (
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            "public.pgbench_accounts",
            "UPDATE 1",
        ),
        (
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "public.pgbench_accounts",
            "SELECT 1",
        ),
        (
            "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
            "public.pgbench_tellers",
            "UPDATE 1",
        ),
        (
            "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
            "public.pgbench_branches",
            "UPDATE 1",
        ),
        (
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
            "public.pgbench_history",
            "INSERT 0 1",
        ),
        ("END", "", "COMMIT"),
    ];
    let prepared: Vec<(Arc<str>, Arc<DecisionInfo>, &str)> = texts
        .iter()
        .map(|(t, table, tag)| (Arc::<str>::from(*t), decision(t, table), *tag))
        .collect();
    let s = meta(1);
    let mut out = Vec::new();
    let mut seq = 0;
    let mut id = 0;
    let mut x: u64 = 88_172_645_463_325_252;
    for _ in 0..transactions {
        for (n, (text, d, tag)) in prepared.iter().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let aid = (x % 10_000_000).to_string();
            let delta = (x % 10_001) as i64 - 5000;
            let params = match n {
                0 | 6 => vec![],
                2 => vec![Some(aid.clone())],
                5 => vec![
                    Some((x % 100).to_string()),
                    Some((x % 10).to_string()),
                    Some(aid.clone()),
                    Some(delta.to_string()),
                ],
                _ => vec![Some(delta.to_string()), Some(aid.clone())],
            };
            out.push(statement(&s, seq, id, text, params, d));
            let (columns, rows, kept) = if n == 2 {
                let mut rows = Vec::new();
                data_row(&mut rows, &[(x % 100_000).to_string().as_bytes()]);
                (vec![text_column("abalance", 23)], rows, 1)
            } else {
                (vec![], vec![], 0)
            };
            out.push(result(&s, seq + 1, id, tag, columns, rows, kept));
            seq += 2;
            id += 1;
        }
    }
    out
}

/// `pgbench -S -M simple -c 8` as the load test's recording scenario sees it: eight sessions
/// taking turns, each statement a simple query with its literal inlined (so every text differs),
/// an allowed decision from the shard's cache, and a one-row, one-column result.
fn select_simple_events(transactions: u64) -> Vec<Event> {
    const SESSIONS: u64 = 8;
    let d = decision(
        "SELECT abalance FROM pgbench_accounts WHERE aid = ?",
        "pgbench_accounts",
    );
    let sessions: Vec<Arc<SessionMeta>> = (0..SESSIONS).map(|k| meta(16 + k)).collect();
    let mut seq = vec![0u64; SESSIONS as usize];
    let mut out = Vec::new();
    let mut x: u64 = 88_172_645_463_325_252;
    for t in 0..transactions {
        let k = (t % SESSIONS) as usize;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let text: Arc<str> = format!(
            "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
            1 + x % 1_000_000
        )
        .into();
        let (s, n) = (&sessions[k], seq[k]);
        out.push(statement(s, n, n / 2, &text, vec![], &d));
        let mut rows = Vec::new();
        data_row(&mut rows, &[(x % 10_000).to_string().as_bytes()]);
        out.push(result(
            s,
            n + 1,
            n / 2,
            "SELECT 1",
            vec![text_column("abalance", 23)],
            rows,
            1,
        ));
        seq[k] += 2;
    }
    out
}

/// Selects whose results carry about 8 KiB of customer-like rows each.
fn rows_8k_events(statements: u64) -> Vec<Event> {
    const NAMES: [&str; 8] = [
        "Alice Example",
        "Bob Sample",
        "Carol Test",
        "Dan Demo",
        "Eve Mock",
        "Frank Stub",
        "Grace Fake",
        "Heidi Dummy",
    ];
    const CITIES: [&str; 5] = ["London", "Paris", "Berlin", "Madrid", "Rome"];
    let columns = vec![
        text_column("id", 20),
        text_column("name", 25),
        text_column("email", 25),
        text_column("phone", 25),
        text_column("created_at", 1184),
        text_column("active", 16),
        text_column("balance", 1700),
        text_column("city", 25),
    ];
    let text: Arc<str> = "select id, name, email, phone, created_at, active, balance, city from customers where region = $1 order by id limit 100".into();
    let d = decision(
        "select id, name, email, phone, created_at, active, balance, city from customers where region = ? order by id limit ?",
        "public.customers",
    );
    let s = meta(2);
    let mut out = Vec::new();
    let mut x: u64 = 88_172_645_463_325_252;
    let mut id_counter = 1_000_000u64;
    for i in 0..statements {
        out.push(statement(
            &s,
            2 * i,
            i,
            &text,
            vec![Some("eu-west".into())],
            &d,
        ));
        let mut rows = Vec::with_capacity(8 * 1024 + 200);
        let mut kept = 0;
        while rows.len() < 8 * 1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            id_counter += 1 + x % 7;
            let name = NAMES[(x % 8) as usize];
            let id = id_counter.to_string();
            let email = format!(
                "{}.{}@example.com",
                name.to_lowercase().replace(' ', "."),
                x % 1000
            );
            let phone = format!("+44 20 {:04} {:04}", x % 10_000, (x >> 20) % 10_000);
            let created = format!(
                "2024-0{}-{:02} {:02}:{:02}:{:02}.{:06}+00",
                1 + x % 9,
                1 + (x >> 8) % 28,
                (x >> 16) % 24,
                (x >> 24) % 60,
                (x >> 32) % 60,
                (x >> 40) % 1_000_000
            );
            let balance = format!("{}.{:02}", (x >> 12) % 100_000, x % 100);
            let values: [&[u8]; 8] = [
                id.as_bytes(),
                name.as_bytes(),
                email.as_bytes(),
                phone.as_bytes(),
                created.as_bytes(),
                if x & 1 == 0 { b"t" } else { b"f" },
                balance.as_bytes(),
                CITIES[(x % 5) as usize].as_bytes(),
            ];
            data_row(&mut rows, &values);
            kept += 1;
        }
        out.push(result(
            &s,
            2 * i + 1,
            i,
            &format!("SELECT {kept}"),
            columns.clone(),
            rows,
            kept,
        ));
    }
    out
}

/// Statement text plus rows bytes: what the throughput figures count.
fn payload(events: &[Event]) -> u64 {
    events
        .iter()
        .map(|e| match &e.body {
            Body::Statement(s) => s.text.len() as u64,
            Body::Result(r) => r.rows_data.len() as u64,
            _ => 0,
        })
        .sum()
}

fn push_all(q: &ShardQueue, events: Vec<Event>) {
    for e in events {
        let mut e = e;
        while let Err(back) = q.try_push(e) {
            e = back;
            std::hint::spin_loop();
        }
    }
}

/// Pushes every event, sleeping 50 µs on a full queue as a session does (spinning would take
/// the recorder's core on a small machine).
fn push_all_sleeping(q: &ShardQueue, events: Vec<Event>) {
    for e in events {
        let mut e = e;
        while let Err(back) = q.try_push(e) {
            e = back;
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Nanoseconds the recorder thread has run on a CPU (from the scheduler's statistics), so that
/// throughput is per core whatever else runs on the machine.
fn recorder_cpu_ns() -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "tollgate-record" {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            return stat.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

fn record_push(c: &mut Criterion) {
    let (q, rx) = channel(8192, 1 << 20);
    // Drains the way the recorder thread does: polling, sleeping when empty, never blocking
    // in `recv` (a blocked receiver would make every push pay a wake-up system call).
    let drainer = std::thread::spawn(move || loop {
        match rx.try_recv() {
            Ok(e) => drop(e),
            Err(crossbeam_channel::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_micros(100))
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
        }
    });
    let template = pgbench_events(1).swap_remove(2); // the UPDATE with two parameters
    let Body::Statement(st) = &template.body else {
        return;
    };
    let (session, text, decision) = (
        template.session.clone(),
        st.text.clone(),
        st.decision.clone(),
    );
    let mut g = c.benchmark_group("record_push");
    g.throughput(Throughput::Elements(1));
    g.bench_function("try_push", |b| {
        b.iter_custom(|iters| {
            // Events are cloned outside the timed part, a chunk at a time.
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(4096);
                left -= n;
                let events: Vec<Event> = (0..n).map(|_| template.clone()).collect();
                let start = Instant::now();
                push_all(&q, black_box(events));
                total += start.elapsed();
            }
            total
        })
    });
    g.bench_function("build_and_try_push", |b| {
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            let mut e = Event {
                session: session.clone(),
                seq,
                at_us: 1_714_564_800_000_000,
                body: Body::Statement(Statement {
                    statement_id: seq,
                    text: text.clone(),
                    params: vec![Some("-1234".to_owned()), Some("4711".to_owned())],
                    fingerprint_hash: 42,
                    decision: decision.clone(),
                }),
            };
            while let Err(back) = q.try_push(e) {
                e = back;
                std::hint::spin_loop();
            }
        })
    });
    // One pgbench -S transaction as a session records it. The server's answer, as frames.
    let rec = PgRecording::new(SessionRecorder::new(q.clone(), (*session).clone()));
    let description = row_description_body(&["abalance"], 23);
    let row = message_body(|out| encode_data_row(out, [Some(b"-2871".as_slice())]));
    let frames: [(u8, &[u8]); 4] = [
        (b'T', &description),
        (b'D', &row),
        (b'C', b"SELECT 1\0"),
        (b'Z', b"I"),
    ];
    g.bench_function("pg_select_simple", |b| {
        let mut sync = 0u64;
        let mut sql = String::new();
        b.iter(|| {
            sql.clear();
            let _ = std::fmt::Write::write_fmt(
                &mut sql,
                format_args!(
                    "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                    sync % 1_000_000
                ),
            );
            rec.query(black_box(&sql), 42, decision.clone(), sync);
            for (tag, body) in frames {
                rec.backend(Frame { tag, body }, body.len() + 5);
            }
            sync += 1;
            // A full queue parks events in the session's backlog; the recorder (here the
            // drainer) empties the queue, and the session's next look sends them.
            while rec.rec.is_backlogged() {
                std::hint::spin_loop();
                rec.rec.retry_backlog();
            }
        })
    });
    g.finish();
    drop(rec);
    drop(q);
    let _ = drainer.join();
}

/// The body (after tag and length) of a message `encode` writes.
fn message_body(encode: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut message = Vec::new();
    encode(&mut message);
    message.split_off(5)
}

/// A RowDescription body: columns of one type, text format.
fn row_description_body(names: &[&str], type_oid: u32) -> Vec<u8> {
    let fields = names
        .iter()
        .map(|name| FieldDescription {
            name,
            table_oid: 16_397,
            column: 3,
            type_oid,
            type_size: 4,
            type_modifier: -1,
            format: 0,
        })
        .collect();
    message_body(|out| BackendMessage::RowDescription(fields).encode(out))
}

/// zstd levels to write at: `RECORD_BENCH_ZSTD_LEVELS` (comma-separated, e.g. "1,-3,9"), or
/// the default level 1 alone.
fn zstd_levels() -> Vec<i32> {
    let Ok(list) = std::env::var("RECORD_BENCH_ZSTD_LEVELS") else {
        return vec![1];
    };
    let levels: Vec<i32> = list
        .split(',')
        .filter_map(|l| match l.trim().parse() {
            Ok(level) => Some(level),
            Err(_) => {
                eprintln!("RECORD_BENCH_ZSTD_LEVELS: {l:?} is not a level; skipped");
                None
            }
        })
        .collect();
    if levels.is_empty() {
        vec![1]
    } else {
        levels
    }
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn record_write(c: &mut Criterion) {
    // The gateway's allocator settings (`tollgate` calls this first thing in `main`).
    tollgate::runtime::tune_allocator();
    let mut g = c.benchmark_group("record_write");
    g.measurement_time(Duration::from_secs(8));
    let workloads: [(&str, Vec<Event>); 3] = [
        ("pgbench", pgbench_events(500)),
        ("select_simple", select_simple_events(4000)),
        ("rows_8KiB", rows_8k_events(100)),
    ];
    let levels = zstd_levels();
    for (name, events) in workloads {
        for &level in &levels {
            write_workload(&mut g, name, &events, level);
        }
    }
    g.finish();
}

/// One workload through a recorder of its own (zstd `level`), on a fresh folder.
fn write_workload(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    events: &[Event],
    level: i32,
) {
    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("record_write: no temporary folder");
        return;
    };
    let cfg = RecordConfig {
        dir: dir.path().to_path_buf(),
        instance: Some("bench".into()),
        zstd_level: level,
        ..RecordConfig::default()
    };
    let rec = match Recorder::start(&cfg, 1) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("record_write: {e}");
            return;
        }
    };
    let q = rec.shard(0);
    // Every session's events must form a fresh chain for each round, so each round uses new
    // session ids.
    let mut round = 0u64;
    let mut wall = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let mut bytes_total = 0u64;
    let mut events_total = 0u64;
    let id = if level == 1 {
        format!("{} events", events.len())
    } else {
        format!("{} events, zstd {level}", events.len())
    };
    g.throughput(Throughput::Bytes(payload(events)));
    g.bench_function(BenchmarkId::new(name, id), |b| {
        b.iter_custom(|iters| {
            let mut all = Vec::with_capacity(events.len() * iters as usize);
            bytes_total += payload(events) * iters;
            events_total += events.len() as u64 * iters;
            for _ in 0..iters {
                round += 1;
                // The template's sessions (told apart by the low byte of their ids), each
                // under a new id.
                let mut renamed: Vec<(usize, Arc<SessionMeta>)> = Vec::new();
                all.extend(events.iter().map(|e| {
                    let from = Arc::as_ptr(&e.session) as usize;
                    let session = match renamed.iter().find(|(p, _)| *p == from) {
                        Some((_, s)) => s.clone(),
                        None => {
                            let low = u64::from_str_radix(&e.session.id, 16).unwrap_or(0) & 0xff;
                            let s = meta((round << 8) | low);
                            renamed.push((from, s.clone()));
                            s
                        }
                    };
                    Event {
                        session,
                        ..e.clone()
                    }
                }));
            }
            let (start, before) = (Instant::now(), recorder_cpu_ns());
            push_all_sleeping(&q, all);
            // The recorder has taken every event once the queue is empty; what it still
            // holds unwritten is at most one batch, and carries over to the next sample.
            while !q.is_empty() {
                std::thread::sleep(Duration::from_micros(50));
            }
            let elapsed = start.elapsed();
            wall += elapsed;
            let used = match (before, recorder_cpu_ns()) {
                (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
                _ => elapsed,
            };
            cpu += used;
            used
        })
    });
    rec.shutdown();
    if events_total == 0 {
        return; // filtered out
    }
    let on_disk = bytes_under(dir.path());
    // A sample's CPU time includes the batch that an earlier sample left unwritten, so
    // single samples scatter; the total over every sample (warm-up included) does not.
    eprintln!(
        "record_write/{name} (zstd {level}): {:.1} MB/s per CPU-second of the recorder thread \
         over all samples ({:.0} MB in {:.2} s; {:.2} µs per event), wall-clock {:.1} MB/s; \
         archive {:.1} MB, payload/archive {:.2}",
        bytes_total as f64 / cpu.as_secs_f64().max(1e-9) / 1e6,
        bytes_total as f64 / 1e6,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / (events_total as f64).max(1.0),
        bytes_total as f64 / wall.as_secs_f64().max(1e-9) / 1e6,
        on_disk as f64 / 1e6,
        bytes_total as f64 / (on_disk as f64).max(1.0)
    );
}

criterion_group!(benches, record_push, record_write);
criterion_main!(benches);
