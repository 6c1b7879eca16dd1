//! Analyse stage benchmarks: the normaliser (hash-only and full text), the hot-path cache hit
//! (hash + lookup), and `facts` (the sqlparser parse a cache miss pays).
//!
//! - `baseline/siphash_raw/*`: keyed SipHash of the raw bytes, the floor to compare against.
//! - `fingerprint_hash/*`: the allocation-free path every statement takes.
//! - `cache_hit/pgbench_select`: hash + lookup in a 10 000-entry map, the whole hot path of a
//!   repeated statement before the decision is applied (the issue's target: ≤ 300 ns).
//! - `fingerprint/*`: text and hash, built on a cache miss or for the recording.
//! - `facts_corpus/*`: the pgbench statements and the rest of a small real corpus (ORM, psql,
//!   migration, CTE, batch); the median of the group is the figure to quote (target: parse
//!   ≤ 25 µs minus what the policy evaluation needs).
//!
//! Run: `cargo bench -p tollgate-benches --bench sql -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tollgate::sql::{facts, fingerprint, fingerprint_hash, Dialect};

/// The allocator the gateway binary runs with (`dataplane/src/main.rs`), so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PG: Dialect = Dialect::Postgres;

const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;";
const PGBENCH_UPDATE: &str =
    "UPDATE pgbench_accounts SET abalance = abalance + -4242 WHERE aid = 12345;";
const PGBENCH_INSERT: &str = "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 12345, -4242, CURRENT_TIMESTAMP);";

const ORM_SELECT: &str = r#"SELECT "auth_user"."id", "auth_user"."username", "blog_post"."title" FROM "blog_post" INNER JOIN "auth_user" ON ("blog_post"."author_id" = "auth_user"."id") WHERE ("blog_post"."published" AND "auth_user"."id" IN (1, 2, 3, 4, 5)) ORDER BY "blog_post"."created" DESC LIMIT 21 OFFSET 40"#;

/// A small corpus of real statements, short to long.
const CORPUS: &[(&str, &str)] = &[
    ("pgbench_select", PGBENCH_SELECT),
    ("pgbench_update", PGBENCH_UPDATE),
    ("pgbench_insert", PGBENCH_INSERT),
    ("activerecord_find", r#"SELECT "users".* FROM "users" WHERE "users"."email" = $1 LIMIT $2"#),
    ("django_join", ORM_SELECT),
    (
        "psql_describe",
        "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;",
    ),
    (
        "migration_create",
        "CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz DEFAULT now())",
    ),
    ("cte_delete", "with d as (delete from customers where id = 1 returning *) select * from d"),
    ("batch", "begin; update accounts set balance = balance - 10 where id = 1; commit"),
];

fn normaliser(c: &mut Criterion) {
    // Baseline for the ratio: the same keyed SipHash over the raw statement bytes, with no
    // lexing at all (what a cache keyed by the unnormalised text would pay).
    let key = RandomState::new();
    c.bench_function("baseline/siphash_raw/pgbench_select", |b| {
        b.iter(|| {
            let mut h = key.build_hasher();
            h.write(black_box(PGBENCH_SELECT).as_bytes());
            h.finish()
        })
    });

    let mut g = c.benchmark_group("fingerprint_hash");
    g.bench_function("pgbench_select", |b| {
        b.iter(|| fingerprint_hash(black_box(PGBENCH_SELECT), PG))
    });
    g.bench_function("django_join", |b| {
        b.iter(|| fingerprint_hash(black_box(ORM_SELECT), PG))
    });
    g.finish();

    let mut g = c.benchmark_group("fingerprint");
    g.bench_function("pgbench_select", |b| {
        b.iter(|| fingerprint(black_box(PGBENCH_SELECT), PG))
    });
    g.bench_function("django_join", |b| {
        b.iter(|| fingerprint(black_box(ORM_SELECT), PG))
    });
    g.finish();

    // The decision cache is someone else's; a std map keyed by the hash stands in for it.
    let mut cache: HashMap<u64, u32> = (0..10_000u64)
        .map(|i| {
            (
                fingerprint_hash(
                    &format!("select abalance from pgbench_accounts where aid = {i} and x{i} = 1"),
                    PG,
                ),
                0,
            )
        })
        .collect();
    cache.insert(fingerprint_hash(PGBENCH_SELECT, PG), 1);
    c.bench_function("cache_hit/pgbench_select", |b| {
        b.iter(|| {
            cache
                .get(&fingerprint_hash(black_box(PGBENCH_SELECT), PG))
                .copied()
        })
    });
}

fn statement_facts(c: &mut Criterion) {
    let mut g = c.benchmark_group("facts_corpus");
    for (name, sql) in CORPUS {
        g.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| facts(black_box(sql), PG))
        });
    }
    g.finish();
}

criterion_group!(benches, normaliser, statement_facts);
criterion_main!(benches);
