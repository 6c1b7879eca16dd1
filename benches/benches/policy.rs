//! Decide stage benchmarks: one cold decision (the shipped policies evaluated for a pgbench
//! select-only statement) on regorus' RVM and, for comparison, on its interpreter; a few other
//! common requests on the RVM (a read, a write held for review, a denied DELETE); and the hot
//! path a repeated statement takes instead — key hash plus cache lookup, alone and through a
//! shard's `Decider` (with its policy-version check).
//!
//! Run: `cargo bench -p tollgate-benches --bench policy -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::policy::{Action, Decider, DecisionCache, EvalPath, PolicySet, PolicyStore};

/// The allocator the gateway binary runs with (`dataplane/src/main.rs`), so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `SELECT abalance FROM pgbench_accounts WHERE aid = $1`, as the analyser describes it.
fn pgbench_select() -> serde_json::Value {
    serde_json::json!({
        "principal": {"sub": "bench@example.com", "groups": ["app"], "kind": "service"},
        "connection": {"name": "pgbench", "protocol": "postgres", "labels": {"env": "bench"}},
        "session": {"client_addr": "127.0.0.1", "application_name": "pgbench"},
        "request": {
            "kind": "sql",
            "fingerprint": "select abalance from pgbench_accounts where aid = ?",
            "statements": [{
                "kind": "select", "class": "read", "tables": ["public.pgbench_accounts"],
                "columns": ["abalance", "aid"], "functions": [], "has_where": true,
                "data_modifying_cte": false, "select_into": false, "for_update": false,
                "copy_direction": null, "copy_program": false, "parse_error": null
            }],
            "multi_statement": false,
            "parse_error": null
        }
    })
}

/// Another common request: who runs one statement of `kind` and `class` on `table`, where.
struct Request {
    name: &'static str,
    group: &'static str,
    connection: &'static str,
    env: &'static str,
    kind: &'static str,
    class: &'static str,
    table: &'static str,
    action: Action,
}

/// A read on a connection without a table allow list, a write held for review on prod, and
/// a DELETE without WHERE.
const REQUESTS: &[Request] = &[
    Request {
        name: "dev_read",
        group: "eng",
        connection: "orders",
        env: "dev",
        kind: "select",
        class: "read",
        table: "orders",
        action: Action::Allow,
    },
    Request {
        name: "prod_write_review",
        group: "eng",
        connection: "orders-prod",
        env: "prod",
        kind: "update",
        class: "write",
        table: "public.orders",
        action: Action::Review,
    },
    Request {
        name: "delete_without_where",
        group: "eng",
        connection: "orders",
        env: "dev",
        kind: "delete",
        class: "write",
        table: "customers",
        action: Action::Deny,
    },
];

impl Request {
    fn input(&self) -> serde_json::Value {
        serde_json::json!({
            "principal": {"sub": "bench@example.com", "groups": [self.group], "kind": "human"},
            "connection": {"name": self.connection, "protocol": "postgres", "labels": {"env": self.env}},
            "session": {"client_addr": "127.0.0.1", "application_name": "psql"},
            "request": {
                "kind": "sql",
                "fingerprint": "select id, amount from orders where id = ?",
                "statements": [{
                    "kind": self.kind, "class": self.class, "tables": [self.table],
                    "columns": ["amount", "id"], "functions": [],
                    "has_where": self.kind != "delete", "data_modifying_cte": false,
                    "select_into": false, "for_update": false, "copy_direction": null,
                    "copy_program": false, "parse_error": null
                }],
                "multi_statement": false,
                "parse_error": null
            }
        })
    }
}

fn policies() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn decide(c: &mut Criterion) {
    let set = PolicySet::load(&policies()).expect("the shipped policies load");
    let input = pgbench_select();
    let mut group = c.benchmark_group("policy/decide_cold");
    for (name, path) in [
        ("rvm", EvalPath::Rvm),
        ("interpreter", EvalPath::Interpreter),
    ] {
        let mut engine = set.engine_on(path).expect("engine");
        assert_eq!(engine.decide(&input).action, Action::Allow);
        group.bench_function(name, |b| b.iter(|| engine.decide(black_box(&input))));
    }
    group.finish();

    let mut engine = set.engine().expect("engine");
    let mut group = c.benchmark_group("policy/decide_cold_rvm");
    for r in REQUESTS {
        let input = r.input();
        assert_eq!(engine.decide(&input).action, r.action, "{}", r.name);
        group.bench_function(r.name, |b| b.iter(|| engine.decide(black_box(&input))));
    }
    group.finish();
}

fn cache(c: &mut Criterion) {
    let input = pgbench_select();
    let groups = ["app"];
    let fingerprint = 0x9e37_79b9_7f4a_7c15_u64;

    let set = PolicySet::load(&policies()).expect("the shipped policies load");
    let mut cache = DecisionCache::new(4096);
    let key = cache.key(
        set.version(),
        "bench@example.com",
        &groups,
        "pgbench",
        fingerprint,
    );
    let decision = set.engine().expect("engine").decide(&input);
    cache.insert(key, decision);
    c.bench_function("policy/cache_hit", |b| {
        b.iter(|| {
            let key = cache.key(
                set.version(),
                black_box("bench@example.com"),
                black_box(&groups),
                black_box("pgbench"),
                black_box(fingerprint),
            );
            cache.get(&key).map(|d| d.action)
        })
    });

    let store = PolicyStore::open(&policies()).expect("open");
    let mut decider = Decider::new(store, 4096);
    decider.decide("bench@example.com", &groups, "pgbench", fingerprint, || {
        input.clone()
    });
    c.bench_function("policy/decider_hit", |b| {
        b.iter(|| {
            decider
                .decide(
                    black_box("bench@example.com"),
                    black_box(&groups),
                    black_box("pgbench"),
                    black_box(fingerprint),
                    || unreachable!("a hit builds no input"),
                )
                .action
        })
    });
}

criterion_group!(benches, decide, cache);
criterion_main!(benches);
