//! The whole analyse → decide stage as a session runs it (`session::decide::Gatekeeper`), with
//! the shipped policies: a cold decision (fingerprint, sqlparser facts, Rego on regorus' VM)
//! for the pgbench statements and a corpus, and the hot path a repeated statement takes
//! (normalise + hash + cache hit). `decide_stages` splits one cold decision into its stages.
//!
//! Run: `cargo bench -p tollgate-benches --bench decide -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tollgate::identity::Principal;
use tollgate::policy::input::SessionInput;
use tollgate::policy::{Decider, PolicyStore};
use tollgate::session::decide::{sql_request_value, Gatekeeper, Verdict};
use tollgate::sql::Dialect;

/// The allocator the gateway binary runs with (`dataplane/src/main.rs`), so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// pgbench's statements (select-only and TPC-B-like) and everyday statements of other kinds.
const STATEMENTS: &[(&str, &str)] = &[
    ("pgbench_select", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"),
    ("pgbench_update", "UPDATE pgbench_accounts SET abalance = abalance + -4021 WHERE aid = 48213;"),
    ("pgbench_insert", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -4021, CURRENT_TIMESTAMP);"),
    ("orm_join", "SELECT \"orders\".\"id\", \"orders\".\"amount\", \"customers\".\"name\" FROM \"orders\" INNER JOIN \"customers\" ON \"customers\".\"id\" = \"orders\".\"customer_id\" WHERE \"orders\".\"status\" = 'paid' ORDER BY \"orders\".\"created_at\" DESC LIMIT 20 OFFSET 40"),
    ("psql_describe", "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;"),
    ("migration", "ALTER TABLE customers ADD COLUMN phone text"),
    ("delete_no_where", "DELETE FROM customers"),
];

fn gatekeeper() -> (Gatekeeper, Decider) {
    let store = PolicyStore::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"))
        .expect("the shipped policies load and pass their tests");
    let principal = Principal {
        sub: "bench@example.com".into(),
        groups: vec!["eng".into()],
        user: "bench@example.com".into(),
        kind: "human".into(),
    };
    let connection = Arc::new(serde_json::json!({
        "name": "orders", "protocol": "postgres", "labels": {"env": "dev"}
    }));
    let gate = Gatekeeper::new(
        principal,
        "orders",
        connection,
        "127.0.0.1:5000".parse().expect("addr"),
        "pgbench",
    );
    (gate, Decider::new(store, 10_000))
}

fn decide(c: &mut Criterion) {
    let (gate, mut warm) = gatekeeper();
    // Cold: what a cache miss costs, fingerprint + sqlparser facts + Rego, every time.
    let set = tollgate::policy::PolicySet::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
    )
    .expect("policies");
    let mut engine = set.engine().expect("engine");
    let principal = Principal {
        sub: "bench@example.com".into(),
        groups: vec!["eng".into()],
        user: "bench@example.com".into(),
        kind: "human".into(),
    };
    let connection =
        serde_json::json!({"name": "orders", "protocol": "postgres", "labels": {"env": "dev"}});
    let session = serde_json::json!({"client_addr": "127.0.0.1", "application_name": "pgbench"});
    // Built once per session, as `Gatekeeper` does.
    let session_input = SessionInput::new(
        &principal.sub,
        &principal.groups,
        &principal.kind,
        &connection,
        &session,
    );
    let mut cold = c.benchmark_group("decide_cold");
    for (name, sql) in STATEMENTS {
        cold.bench_function(*name, |b| {
            b.iter(|| {
                let input = session_input.document(sql_request_value(black_box(sql)));
                engine.decide_value(input).is_allow()
            })
        });
    }
    cold.finish();

    // Where a cold decision goes, stage by stage, for the first statement: the normaliser's
    // fingerprint, the sqlparser facts, `input.request` (both, as the engine's values), the
    // whole input document, and the Rego evaluation with the decision's conversion.
    let sql = STATEMENTS[0].1;
    let input = session_input.document(sql_request_value(sql));
    let mut stages = c.benchmark_group("decide_stages/pgbench_select");
    stages.bench_function("fingerprint", |b| {
        b.iter(|| tollgate::sql::fingerprint_text(black_box(sql), Dialect::Postgres))
    });
    stages.bench_function("facts", |b| {
        b.iter(|| tollgate::sql::facts(black_box(sql), Dialect::Postgres))
    });
    stages.bench_function("request", |b| b.iter(|| sql_request_value(black_box(sql))));
    stages.bench_function("input", |b| {
        let request = sql_request_value(sql);
        b.iter_batched(
            || request.clone(),
            |request| session_input.document(request),
            BatchSize::SmallInput,
        )
    });
    stages.bench_function("evaluate", |b| {
        b.iter(|| engine.decide_value(black_box(input.clone())).is_allow())
    });
    stages.finish();

    // Hot: a repeated statement through the session's gatekeeper and the shard's cache.
    let sql = STATEMENTS[0].1;
    assert!(matches!(
        gate.decide_sql(&mut warm, sql).verdict,
        Verdict::Allow
    ));
    c.bench_function("decide_cached/pgbench_select", |b| {
        b.iter(|| {
            matches!(
                gate.decide_sql(&mut warm, black_box(sql)).verdict,
                Verdict::Allow
            )
        })
    });
    assert!(warm.cache().hits() > 0);
}

criterion_group!(benches, decide);
criterion_main!(benches);
