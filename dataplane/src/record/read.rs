//! Record stage, reading back: complete archive files turned back into the events that were
//! recorded, with their hashes (for `tollctl` and for [`super::verify`]).
//!
//! What is read is what was pushed, except for result rows: they are stored decoded (see
//! `rows.rs`) and come back re-encoded as DataRow bodies, which is byte-exact for text values
//! that were valid UTF-8 and for every binary value. A result whose `rows_data` did not decode
//! completely comes back with the rows that did, and `rows_error` says why.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, FixedSizeBinaryArray, LargeStringArray, ListArray, RecordBatch,
    StringArray, UInt64Array,
};
use arrow::datatypes::{TimestampMicrosecondType, UInt32Type, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;

use super::chain::{self, HASH_LEN};
use super::event::{
    Approval, Body, Column, Connect, DecisionInfo, Disconnect, Event, SessionMeta, Statement,
    StatementResult,
};
use super::layout;
use super::rows::Rows;
use super::schema::rows_encoding_from;

/// One event as read from the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The event as it was pushed (result rows re-encoded from their stored form).
    pub event: Event,
    /// The gateway that recorded it.
    pub instance: String,
    /// For a result whose `rows_data` did not decode completely (or held another number of
    /// rows than `kept_rows`): what was wrong. `event`'s `rows_data` then holds the rows that
    /// decoded.
    pub rows_error: Option<String>,
    /// The hash of the session's previous event (zeros for its first).
    pub prev_hash: [u8; HASH_LEN],
    /// This event's hash as stored.
    pub hash: [u8; HASH_LEN],
    /// The file it was read from.
    pub file: PathBuf,
}

impl Recorded {
    /// Computes the event's hash from its stored fields and stored `prev_hash`; equal to
    /// `hash` unless the row was changed. Each version of the canonical encoding is tried,
    /// the current one first, so events recorded by earlier versions (archive format 1, or
    /// their logged batches recovered into a newer file) verify too; when none reproduces
    /// `hash`, the current encoding's hash is returned. Accepting either is as strong as
    /// accepting one: both are injective and their domain strings differ.
    pub fn computed_hash(&self) -> [u8; HASH_LEN] {
        let mut rows = Rows::default();
        if let Body::Result(r) = &self.event.body {
            rows.decode_pg(&r.rows_data, &r.columns);
            rows.error = self.rows_error.clone();
        }
        let mut scratch = Vec::new();
        let mut hash = |encoding| {
            chain::event_hash_with(
                encoding,
                &self.prev_hash,
                &self.instance,
                &self.event,
                &rows,
                &mut scratch,
            )
        };
        let current = hash(chain::Encoding::CURRENT);
        if current == self.hash {
            return current;
        }
        chain::Encoding::ALL
            .into_iter()
            .filter(|&e| e != chain::Encoding::CURRENT)
            .map(&mut hash)
            .find(|h| *h == self.hash)
            .unwrap_or(current)
    }
}

/// Why an archive file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file or folder could not be opened or listed.
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not readable Parquet (truncated, not Parquet at all, damaged pages).
    #[error("reading {}: {source}", path.display())]
    Parquet { path: PathBuf, source: ParquetError },
    /// The file is Parquet but not an archive file this version reads (a column missing or
    /// of another type, a required value null, an unknown kind).
    #[error("reading {}: {message}", path.display())]
    Format { path: PathBuf, message: String },
}

/// The complete archive files under `dir` (every `*.parquet`, in path order; `.partial` and
/// `.wal` files are skipped).
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    layout::parquet_files(dir).map_err(|source| ReadError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Every event of every complete archive file under `dir`, file by file in path order, in
/// each file in the order written. Stops at the first file that cannot be read
/// ([`super::verify`] reports such files instead).
pub fn read(dir: &Path) -> Result<Vec<Recorded>, ReadError> {
    let mut out = Vec::new();
    for path in files(dir)? {
        out.extend(read_file(&path)?);
    }
    Ok(out)
}

/// Every event of one archive file.
pub fn read_file(path: &Path) -> Result<Vec<Recorded>, ReadError> {
    let parquet = |source| ReadError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet)?
        .build()
        .map_err(parquet)?;
    let mut out = Vec::new();
    let mut shared = Shared::default();
    for batch in reader {
        let batch = batch.map_err(|e| ReadError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Err(message) = decode_batch(&batch, path, &mut shared, &mut out) {
            // Rows are pushed as they decode: the failing one is the next.
            return Err(ReadError::Format {
                path: path.to_path_buf(),
                message: format!("event {}: {message}", out.len()),
            });
        }
    }
    Ok(out)
}

/// Values repeated across rows, shared the way the recorder's events shared them.
#[derive(Default)]
struct Shared {
    session: Option<Arc<SessionMeta>>,
    decision: Option<Arc<DecisionInfo>>,
}

/// The batch's columns, typed.
struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn get(&self, name: &str) -> Result<&'a dyn Array, String> {
        self.batch
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or_else(|| format!("no column {name}"))
    }
    fn utf8(&self, name: &str) -> Result<&'a StringArray, String> {
        self.get(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column {name} is not Utf8"))
    }
    fn large_utf8(&self, name: &str) -> Result<&'a LargeStringArray, String> {
        self.get(name)?
            .as_string_opt::<i64>()
            .ok_or_else(|| format!("column {name} is not LargeUtf8"))
    }
    fn u64(&self, name: &str) -> Result<&'a UInt64Array, String> {
        self.get(name)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| format!("column {name} is not UInt64"))
    }
    fn boolean(&self, name: &str) -> Result<&'a BooleanArray, String> {
        self.get(name)?
            .as_boolean_opt()
            .ok_or_else(|| format!("column {name} is not Boolean"))
    }
    fn list(&self, name: &str) -> Result<&'a ListArray, String> {
        self.get(name)?
            .as_list_opt::<i32>()
            .ok_or_else(|| format!("column {name} is not a List"))
    }
    fn hash(&self, name: &str) -> Result<&'a FixedSizeBinaryArray, String> {
        self.get(name)?
            .as_fixed_size_binary_opt()
            .ok_or_else(|| format!("column {name} is not FixedSizeBinary"))
    }
}

fn opt<T, A: Array>(a: &A, i: usize, value: impl FnOnce(&A, usize) -> T) -> Option<T> {
    (!a.is_null(i)).then(|| value(a, i))
}

fn req<T, A: Array>(
    a: &A,
    i: usize,
    name: &str,
    value: impl FnOnce(&A, usize) -> T,
) -> Result<T, String> {
    opt(a, i, value).ok_or_else(|| format!("column {name} is null"))
}

fn str_at(a: &StringArray, i: usize, name: &str) -> Result<String, String> {
    req(a, i, name, |a, i| a.value(i).to_owned())
}

fn opt_str_at(a: &StringArray, i: usize) -> Option<String> {
    opt(a, i, |a, i| a.value(i).to_owned())
}

fn u64_at(a: &UInt64Array, i: usize, name: &str) -> Result<u64, String> {
    req(a, i, name, |a, i| a.value(i))
}

/// The strings of a `List<Utf8>` value; an empty list for null.
fn strs_at(a: &ListArray, i: usize, name: &str) -> Result<Vec<String>, String> {
    if a.is_null(i) {
        return Ok(Vec::new());
    }
    let v = a.value(i);
    let s = v
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column {name} does not hold Utf8"))?;
    Ok(s.iter().map(|x| x.unwrap_or_default().to_owned()).collect())
}

fn hash_at(a: &FixedSizeBinaryArray, i: usize, name: &str) -> Result<[u8; HASH_LEN], String> {
    if a.is_null(i) {
        return Err(format!("column {name} is null"));
    }
    let v = a.value(i);
    <[u8; HASH_LEN]>::try_from(v).map_err(|_| format!("column {name} is not {HASH_LEN} bytes"))
}

fn decode_batch(
    batch: &RecordBatch,
    file: &Path,
    shared: &mut Shared,
    out: &mut Vec<Recorded>,
) -> Result<(), String> {
    let c = Columns { batch };
    let session_id = c.utf8("session_id")?;
    let seq = c.u64("seq")?;
    let at = c
        .get("at")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or("column at is not Timestamp(µs)")?;
    let kind = c.utf8("kind")?;
    let instance = c.utf8("instance")?;
    let principal = c.utf8("principal")?;
    let groups = c.list("groups")?;
    let connection = c.utf8("connection")?;
    let protocol = c.utf8("protocol")?;
    let prev_hash = c.hash("prev_hash")?;
    let hash = c.hash("hash")?;

    for i in 0..batch.num_rows() {
        let meta = SessionMeta {
            id: str_at(session_id, i, "session_id")?,
            principal: str_at(principal, i, "principal")?,
            groups: strs_at(groups, i, "groups")?,
            connection: str_at(connection, i, "connection")?,
            protocol: str_at(protocol, i, "protocol")?,
        };
        let session = match &shared.session {
            Some(s) if **s == meta => s.clone(),
            _ => {
                let s = Arc::new(meta);
                shared.session = Some(s.clone());
                s
            }
        };
        if kind.is_null(i) {
            return Err("column kind is null".into());
        }
        let kind_name = kind.value(i);
        let (body, rows_error) = match kind_name {
            "connect" => (Body::Connect(connect(&c, i)?), None),
            "statement" => (Body::Statement(statement(&c, i, shared)?), None),
            "result" => {
                let (r, err) = result(&c, i)?;
                (Body::Result(r), err)
            }
            "approval" => (Body::Approval(approval(&c, i)?), None),
            "disconnect" => (Body::Disconnect(disconnect(&c, i)?), None),
            other => return Err(format!("unknown kind {other:?}")),
        };
        out.push(Recorded {
            event: Event {
                session,
                seq: u64_at(seq, i, "seq")?,
                at_us: req(at, i, "at", |a, i| a.value(i))?,
                body,
            },
            instance: str_at(instance, i, "instance")?,
            rows_error,
            prev_hash: hash_at(prev_hash, i, "prev_hash")?,
            hash: hash_at(hash, i, "hash")?,
            file: file.to_path_buf(),
        });
    }
    Ok(())
}

fn connect(c: &Columns<'_>, i: usize) -> Result<Connect, String> {
    Ok(Connect {
        client_addr: str_at(c.utf8("client_addr")?, i, "client_addr")?,
        application_name: str_at(c.utf8("application_name")?, i, "application_name")?,
        tls: req(c.boolean("tls")?, i, "tls", |a, i| a.value(i))?,
        principal_kind: str_at(c.utf8("principal_kind")?, i, "principal_kind")?,
    })
}

fn statement(c: &Columns<'_>, i: usize, shared: &mut Shared) -> Result<Statement, String> {
    let text = req(c.large_utf8("statement")?, i, "statement", |a, i| {
        Arc::<str>::from(a.value(i))
    })?;
    let params = c.list("params")?;
    let params = if params.is_null(i) {
        Vec::new()
    } else {
        let v = params.value(i);
        let s = v
            .as_string_opt::<i64>()
            .ok_or("column params does not hold LargeUtf8")?;
        s.iter().map(|p| p.map(str::to_owned)).collect()
    };
    let decision = match opt_str_at(c.utf8("action")?, i) {
        None => None,
        Some(action) => {
            let d = DecisionInfo {
                action,
                rules: strs_at(c.list("rules")?, i, "rules")?,
                reason: str_at(c.utf8("reason")?, i, "reason")?,
                fingerprint: str_at(c.utf8("fingerprint")?, i, "fingerprint")?,
                tables: strs_at(c.list("tables")?, i, "tables")?,
            };
            Some(match &shared.decision {
                Some(s) if **s == d => s.clone(),
                _ => {
                    let s = Arc::new(d);
                    shared.decision = Some(s.clone());
                    s
                }
            })
        }
    };
    Ok(Statement {
        statement_id: u64_at(c.u64("statement_id")?, i, "statement_id")?,
        text,
        params,
        fingerprint_hash: u64_at(c.u64("fingerprint_hash")?, i, "fingerprint_hash")?,
        decision,
    })
}

fn result(c: &Columns<'_>, i: usize) -> Result<(StatementResult, Option<String>), String> {
    let names = strs_at(c.list("result_columns")?, i, "result_columns")?;
    let types = list_values::<UInt32Type>(c.list("result_column_types")?, i)
        .ok_or("column result_column_types does not hold UInt32")?;
    let binary = c.list("result_column_binary")?;
    let binary: Vec<bool> = if binary.is_null(i) {
        Vec::new()
    } else {
        let v = binary.value(i);
        v.as_boolean_opt()
            .ok_or("column result_column_binary does not hold Boolean")?
            .iter()
            .map(|b| b.unwrap_or(false))
            .collect()
    };
    if types.len() != names.len() || binary.len() != names.len() {
        return Err(
            "result_columns, result_column_types and result_column_binary differ in length".into(),
        );
    }
    let columns: Vec<Column> = names
        .into_iter()
        .zip(types)
        .zip(binary)
        .map(|((name, type_id), binary)| Column {
            name,
            type_id,
            binary,
        })
        .collect();
    let encoding_name = str_at(c.utf8("rows_encoding")?, i, "rows_encoding")?;
    let rows_encoding = rows_encoding_from(&encoding_name)
        .ok_or_else(|| format!("unknown rows_encoding {encoding_name:?}"))?;
    let mut rows = Rows::default();
    let stored = c.list("result_rows")?;
    if !stored.is_null(i) {
        let outer = stored.value(i);
        let outer = outer
            .as_list_opt::<i32>()
            .ok_or("column result_rows does not hold lists")?;
        for r in 0..outer.len() {
            let row = outer.value(r);
            let row = row
                .as_string_opt::<i64>()
                .ok_or("column result_rows does not hold LargeUtf8")?;
            for v in row.iter() {
                rows.push_value(v);
            }
            rows.end_row();
        }
    }
    let rows_error = opt_str_at(c.utf8("rows_error")?, i);
    let r = StatementResult {
        statement_id: u64_at(c.u64("statement_id")?, i, "statement_id")?,
        rows: u64_at(c.u64("rows")?, i, "rows")?,
        bytes: u64_at(c.u64("bytes")?, i, "bytes")?,
        duration_us: u64_at(c.u64("duration_us")?, i, "duration_us")?,
        command_tag: opt_str_at(c.utf8("command_tag")?, i).map(Arc::from),
        sqlstate: opt_str_at(c.utf8("sqlstate")?, i),
        error: opt_str_at(c.utf8("error")?, i),
        rows_data: rows.encode_pg(&columns),
        columns: columns.into(),
        rows_encoding,
        kept_rows: u64_at(c.u64("kept_rows")?, i, "kept_rows")?,
        truncated: req(c.boolean("truncated")?, i, "truncated", |a, i| a.value(i))?,
    };
    Ok((r, rows_error))
}

/// The values of a `List<primitive>` value (nulls as the default); empty for null.
fn list_values<T: arrow::datatypes::ArrowPrimitiveType>(
    a: &ListArray,
    i: usize,
) -> Option<Vec<T::Native>> {
    if a.is_null(i) {
        return Some(Vec::new());
    }
    let v = a.value(i);
    let p = v.as_primitive_opt::<T>()?;
    Some(p.iter().map(|x| x.unwrap_or_default()).collect())
}

fn approval(c: &Columns<'_>, i: usize) -> Result<Approval, String> {
    Ok(Approval {
        statement_id: u64_at(c.u64("statement_id")?, i, "statement_id")?,
        request_id: str_at(c.utf8("request_id")?, i, "request_id")?,
        outcome: str_at(c.utf8("outcome")?, i, "outcome")?,
        approver: opt_str_at(c.utf8("approver")?, i),
    })
}

fn disconnect(c: &Columns<'_>, i: usize) -> Result<Disconnect, String> {
    Ok(Disconnect {
        reason: str_at(c.utf8("disconnect_reason")?, i, "disconnect_reason")?,
        statements: u64_at(c.u64("statements")?, i, "statements")?,
        denied: u64_at(c.u64("denied")?, i, "denied")?,
        bytes_from_client: u64_at(c.u64("bytes_from_client")?, i, "bytes_from_client")?,
        bytes_to_client: u64_at(c.u64("bytes_to_client")?, i, "bytes_to_client")?,
        duration_us: u64_at(c.u64("session_duration_us")?, i, "session_duration_us")?,
    })
}
