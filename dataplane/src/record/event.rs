//! Record: the events a session leaves behind. This is the contract between the session
//! pipelines (which build events and push them onto their shard's queue) and the recorder
//! thread (which hash-chains them per session and writes them to Parquet).
//!
//! Everything here is plain owned data that crosses threads. Building an event must stay cheap
//! on a shard: fields repeated on every event of a session live once in [`SessionMeta`], and
//! what is expensive to turn into columns (result rows, fingerprint text) is shipped raw or
//! shared and finished on the recorder thread.
//!
//! Nothing secret is ever put in an event: no token, no password, no upstream credential.

use std::sync::Arc;

/// What every event of one session shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    /// 32 lowercase hex digits, random, unique per session.
    pub id: String,
    /// The principal's subject (`sub`).
    pub principal: String,
    pub groups: Vec<String>,
    /// The connection name the client asked for.
    pub connection: String,
    /// "postgres", "mysql", ...
    pub protocol: String,
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub session: Arc<SessionMeta>,
    /// Position in the session, from 0 with no gaps: the hash chain's order.
    pub seq: u64,
    /// When it happened, microseconds since the Unix epoch (UTC).
    pub at_us: i64,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Connect(Connect),
    Statement(Statement),
    Result(StatementResult),
    Approval(Approval),
    Disconnect(Disconnect),
}

impl Body {
    /// The `kind` column: "connect", "statement", "result", "approval", "disconnect".
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Connect(_) => "connect",
            Body::Statement(_) => "statement",
            Body::Result(_) => "result",
            Body::Approval(_) => "approval",
            Body::Disconnect(_) => "disconnect",
        }
    }
}

/// The session was established (identity checked, upstream logged in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub client_addr: String,
    pub application_name: String,
    pub tls: bool,
    /// The principal's `kind` claim ("human", "bot", ...).
    pub principal_kind: String,
}

/// One statement as the client sent it, and what the gateway decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Numbers the statements of a session from 0; the matching [`StatementResult`] carries it.
    pub statement_id: u64,
    /// The text as sent (a simple-query batch is one statement event).
    pub text: Arc<str>,
    /// Parameters of an extended-protocol execution: text-format values as text, binary ones
    /// as `\x` and hex, SQL NULL as `None`. Empty for simple queries.
    pub params: Vec<Option<String>>,
    /// The normaliser's 64-bit fingerprint hash.
    pub fingerprint_hash: u64,
    /// The policy decision; `None` when the policy stage is off.
    pub decision: Option<Arc<DecisionInfo>>,
}

/// A policy decision as recorded, shared by every statement with the same cached decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionInfo {
    /// "allow", "deny" or "review".
    pub action: String,
    pub rules: Vec<String>,
    pub reason: String,
    /// The fingerprint text (literals replaced by `?`).
    pub fingerprint: String,
    /// Tables the statement names, schema-qualified where the text says so.
    pub tables: Vec<String>,
}

/// The outcome of one statement, as the client received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementResult {
    pub statement_id: u64,
    /// Rows the client received (all of them, kept or not).
    pub rows: u64,
    /// Bytes of result messages the client received.
    pub bytes: u64,
    /// From the statement's arrival to the end of its result.
    pub duration_us: u64,
    /// The last command tag ("SELECT 1", "UPDATE 3", ...), if any. Shared: a session reuses
    /// the previous result's tag when the server sends the same one.
    pub command_tag: Option<Arc<str>>,
    /// SQLSTATE and message of the error that ended it, if any.
    pub sqlstate: Option<String>,
    pub error: Option<String>,
    /// Result columns, from the protocol's row description. Shared: a session reuses the
    /// previous result's columns when the server describes them with the same bytes.
    pub columns: Arc<[Column]>,
    /// The rows kept, raw, in the encoding `rows_encoding` names; decoded on the recorder
    /// thread, never on a shard.
    pub rows_data: Vec<u8>,
    pub rows_encoding: RowsEncoding,
    /// How many rows `rows_data` holds.
    pub kept_rows: u64,
    /// True when rows were received that `rows_data` does not hold (`[record]
    /// max_result_bytes`).
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The server's type id (PostgreSQL type OID, MySQL column type).
    pub type_id: u32,
    /// True when the values arrive in the protocol's binary format.
    pub binary: bool,
}

/// How `StatementResult::rows_data` is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsEncoding {
    /// PostgreSQL DataRow message bodies, one after another (each: Int16 count, then per
    /// field Int32 length, -1 for NULL, and the bytes).
    PgDataRow,
}

/// A decision on a held (`review`) statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub statement_id: u64,
    pub request_id: String,
    /// "approved", "denied", "timed_out".
    pub outcome: String,
    pub approver: Option<String>,
}

/// The session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Why, in words ("client terminated", "upstream closed", "gateway shutdown", ...).
    pub reason: String,
    pub statements: u64,
    pub denied: u64,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub duration_us: u64,
}
