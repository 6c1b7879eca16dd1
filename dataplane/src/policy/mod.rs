//! Decide: the policy stage. Every request is judged by the Rego policies of one directory,
//! compiled once ([`PolicySet`]), evaluated by one [`Engine`] per shard, and cached per shard
//! ([`DecisionCache`]) by (principal, connection, fingerprint, policy version).
//!
//! ```text
//! facts ─▶ key ─▶ DecisionCache ──hit──▶ Decision
//!                     │ miss
//!                     ▼
//!       input (values) ─▶ Engine (RVM) ─▶ data.tollgate.decision ─▶ Decision ─▶ cache
//! ```
//!
//! The answer is deny whenever there is no good answer: no policy loaded, an evaluation error,
//! an undefined or malformed decision document, a panic inside the evaluator. A reload
//! ([`PolicyStore`]) compiles and tests the new set off the hot path and swaps it in only when
//! it compiles and its own tests pass; shards see the new version with one atomic load and
//! rebuild their engine, and the cache, keyed by version, simply misses on old entries.
//!
//! The input and decision documents are described in `policies/README.md`.

mod cache;
mod decider;
mod decision;
mod engine;
pub mod input;
mod set;
mod store;
mod suite;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use cache::{CacheKey, DecisionCache, PrincipalKey};
pub use decider::Decider;
pub use decision::{Action, Decision, Mask, Review, DEFAULT_DENY_RULE};
pub use engine::{input_value, Engine, EvalPath};
pub use set::{PolicySet, DECISION_RULE};
pub use store::{load_tested, PolicyStore, Watcher};
pub use suite::{TestOutcome, TestReport, TestResult};

/// What can go wrong while loading, compiling, testing or evaluating policies. Evaluation
/// errors never reach the data path as errors: [`Engine::decide`] turns them into a deny.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy directory or one of its files could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A Rego file failed to parse or compile. `message` is regorus' diagnostic, which points
    /// at the line and column (`--> file:line:col`).
    #[error("compiling {file}: {message}")]
    Compile { file: PathBuf, message: String },
    /// A data file is not a JSON object, or conflicts with another data file.
    #[error("loading data {file}: {message}")]
    Data { file: PathBuf, message: String },
    /// The directory holds no `.rego` file.
    #[error("no .rego files in {0}")]
    Empty(PathBuf),
    /// The set does not define `data.tollgate.decision`.
    #[error("the policy set does not define {DECISION_RULE}")]
    NoDecision,
    /// The set's own tests do not pass; the summary names the failing tests.
    #[error("policy tests failed: {0}")]
    TestsFailed(String),
    /// Evaluation failed (only from [`Engine::evaluate`]; `decide` turns this into a deny).
    #[error("evaluating {DECISION_RULE}: {0}")]
    Eval(String),
}
