//! Analyse stage (DESIGN.md, "the data path"): what a SQL statement batch is, cheaply.
//!
//! ```text
//! statement ─▶ normalise ─▶ fingerprint (text + hash) ─▶ decision cache ─▶ hit: done
//!                                                              └─ miss ─▶ facts (sqlparser) ─▶ policy
//! ```
//!
//! - `lex`: one lexer with the server's lexical rules, shared by both halves so they agree on
//!   where literals, comments and statement boundaries are.
//! - `normalise`: the hot path, literals out, a fingerprint text and an allocation-free hash.
//! - `facts`: a full sqlparser parse on a cache miss, kind, class, tables, columns, functions and
//!   the flags the policy needs. Unparseable input is a fact (`parse_error`, class privileged).
//! - `privileged`: the one list of functions and settings that make a statement privileged.
#![forbid(unsafe_code)]

mod facts;
mod lex;
mod normalise;
mod privileged;

pub use facts::{class_rank, facts, Class, Facts, StatementFacts};
pub(crate) use normalise::sip13_words;
pub use normalise::{fingerprint, fingerprint_hash, fingerprint_text, Fingerprint};

/// Which server's SQL the text is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Postgres,
    #[serde(rename = "mysql")]
    MySql,
}
