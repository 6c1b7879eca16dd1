//! Upstream stage benchmarks: the client side of one SCRAM-SHA-256 login (client-first,
//! server-first parse, client-final, server-final verify), as the gateway runs it for every
//! upstream connection it opens.
//!
//! `cold_cache` starts each exchange with an empty key cache, so it pays PBKDF2 (4096
//! iterations, PostgreSQL's default) as every login did before the cache; `warm_cache` finds
//! the keys an earlier login stored. Both replay RFC 7677's example exchange with its fixed
//! nonce, so the server's signature verifies; `random_nonce` is the one step the gateway adds
//! (drawing a nonce for `ClientFirst::new`). The cold/warm ratio is the saving per login.
//!
//! Run: `cargo bench -p tollgate-benches --bench scram -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::upstream::scram::{ClientFirst, KeyCache, SHARED_CACHE_CAPACITY};

/// The allocator the gateway binary runs with (`dataplane/src/main.rs`), so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// RFC 7677 section 3.
const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &[u8] =
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// One whole client-side exchange with keys from `cache` when it has them, as
/// `upstream::pg::login` runs it; returns client-final.
fn exchange(cache: &KeyCache) -> Vec<u8> {
    let first = ClientFirst::with_nonce("user", "pencil", NONCE).expect("nonce");
    black_box(first.message());
    let challenge = first.receive(SERVER_FIRST).expect("server-first");
    let keys = match cache.get(&challenge) {
        Some(keys) => keys,
        None => challenge.derive_keys(),
    };
    let (client_final, pending) = challenge.answer(keys);
    cache.insert(pending.verify(SERVER_FINAL).expect("server signature"));
    client_final
}

fn scram(c: &mut Criterion) {
    let mut group = c.benchmark_group("scram_exchange");
    group.bench_function("cold_cache", |b| {
        b.iter(|| exchange(&KeyCache::new(SHARED_CACHE_CAPACITY)))
    });
    let warm = KeyCache::new(SHARED_CACHE_CAPACITY);
    let expected = exchange(&warm);
    group.bench_function("warm_cache", |b| {
        b.iter(|| {
            let client_final = exchange(&warm);
            debug_assert_eq!(client_final, expected);
            client_final
        })
    });
    group.bench_function("random_nonce", |b| {
        b.iter(|| ClientFirst::new(black_box("pencil")).expect("randomness"))
    });
    group.finish();
}

criterion_group!(benches, scram);
criterion_main!(benches);
