//! Codec stage benchmarks: PostgreSQL message decode and encode, and frame scanning.
//!
//! Per-message groups time one `decode` (from a frame) and one `encode` (into a reused buffer)
//! of the messages on the hot path: Query, Parse, Bind, Execute from the client, DataRow and
//! RowDescription (10 columns each) from the server. `frame_scan` walks a 64 KiB buffer of
//! DataRows with `frame` alone — what the session does to every read before deciding which
//! messages need a full decode — and reports bytes per second.
//!
//! Run: `cargo bench -p tollgate-benches --bench pg_codec -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::proto::pg::{
    encode_data_row, frame, BackendMessage, Bind, FieldDescription, Frame, FrontendMessage,
};

/// The allocator the gateway binary runs with (`dataplane/src/main.rs`), so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MAX_LEN: usize = 1 << 30;

fn encoded_frontend(m: &FrontendMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

fn encoded_backend(m: &BackendMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

/// A row like `select * from customers`: ids, names, emails, timestamps, one NULL.
fn data_row_bytes() -> Vec<u8> {
    let values: [Option<&[u8]>; 10] = [
        Some(b"1048576"),
        Some(b"Alice Example"),
        Some(b"alice@example.com"),
        Some(b"+44 20 7946 0958"),
        None,
        Some(b"2024-05-01 12:34:56.789+00"),
        Some(b"4111111111111111"),
        Some(b"t"),
        Some(b"1234.50"),
        Some(b"London"),
    ];
    let mut out = Vec::new();
    encode_data_row(&mut out, values);
    out
}

fn row_description() -> BackendMessage<'static> {
    const NAMES: [&str; 10] = [
        "id",
        "name",
        "email",
        "phone",
        "deleted_at",
        "created_at",
        "card",
        "active",
        "balance",
        "city",
    ];
    const TYPES: [u32; 10] = [20, 25, 25, 25, 1184, 1184, 25, 16, 1700, 25];
    BackendMessage::RowDescription(
        (0..10)
            .map(|i| FieldDescription {
                name: NAMES[i],
                table_oid: 16_384,
                column: i as i16 + 1,
                type_oid: TYPES[i],
                type_size: -1,
                type_modifier: -1,
                format: 0,
            })
            .collect(),
    )
}

fn client_messages() -> Vec<(&'static str, FrontendMessage<'static>)> {
    vec![
        (
            "query",
            FrontendMessage::Query {
                sql: "select id, name, email from customers where id = 42 and active order by id limit 10",
            },
        ),
        (
            "parse",
            FrontendMessage::Parse {
                name: "s1",
                sql: "select id, name, email from customers where id = $1 and region = $2",
                param_types: vec![20, 25],
            },
        ),
        (
            "bind",
            FrontendMessage::Bind(Bind {
                portal: "",
                statement: "s1",
                param_formats: vec![1, 0],
                params: vec![Some(&[0, 0, 0, 0, 0, 0, 0, 42]), Some(b"eu-west")],
                result_formats: vec![0],
            }),
        ),
        ("execute", FrontendMessage::Execute { portal: "", max_rows: 0 }),
    ]
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, m) in client_messages() {
        let bytes = encoded_frontend(&m);
        g.bench_function(name, |b| {
            b.iter(|| {
                let f = frame(black_box(&bytes), MAX_LEN).ok().flatten();
                f.map(|f| FrontendMessage::decode(f).is_ok())
            })
        });
    }
    let row = data_row_bytes();
    g.bench_function("data_row_10", |b| {
        b.iter(|| {
            let f = frame(black_box(&row), MAX_LEN).ok().flatten()?;
            let BackendMessage::DataRow(r) = BackendMessage::decode(f).ok()? else {
                return None;
            };
            // Touch every value, as the mask stage does.
            Some(
                r.iter()
                    .map(|v| v.map_or(0, |v| v.map_or(0, <[u8]>::len)))
                    .sum::<usize>(),
            )
        })
    });
    let desc = encoded_backend(&row_description());
    g.bench_function("row_description_10", |b| {
        b.iter(|| {
            let f = frame(black_box(&desc), MAX_LEN).ok().flatten();
            f.map(|f| BackendMessage::decode(f).is_ok())
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let mut out = Vec::with_capacity(4096);
    for (name, m) in client_messages() {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(&m).encode(&mut out);
                out.len()
            })
        });
    }
    let row_bytes = data_row_bytes();
    let row_frame = Frame {
        tag: b'D',
        body: &row_bytes[5..],
    };
    let values: Vec<Option<&[u8]>> = match BackendMessage::decode(row_frame) {
        Ok(BackendMessage::DataRow(r)) => r.iter().filter_map(Result::ok).collect(),
        _ => Vec::new(),
    };
    assert_eq!(values.len(), 10, "bench row decodes");
    g.bench_function("data_row_10", |b| {
        b.iter(|| {
            out.clear();
            encode_data_row(&mut out, black_box(&values).iter().copied());
            out.len()
        })
    });
    let desc = row_description();
    g.bench_function("row_description_10", |b| {
        b.iter(|| {
            out.clear();
            black_box(&desc).encode(&mut out);
            out.len()
        })
    });
    g.finish();
}

fn frame_scan(c: &mut Criterion) {
    let row = data_row_bytes();
    let mut buf = Vec::with_capacity(64 * 1024);
    while buf.len() + row.len() <= 64 * 1024 {
        buf.extend_from_slice(&row);
    }
    let mut g = c.benchmark_group("frame_scan");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_with_input(BenchmarkId::new("data_rows", "64KiB"), &buf, |b, buf| {
        b.iter(|| {
            let mut rest = black_box(buf.as_slice());
            let mut n = 0usize;
            while let Ok(Some(f)) = frame(rest, MAX_LEN) {
                rest = rest.get(f.wire_len()..).unwrap_or_default();
                n += 1;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode, frame_scan);
criterion_main!(benches);
