//! Record stage, schema: the archive's one flat, wide table, and the builder that turns events
//! into Arrow record batches of it. Columns that belong to one kind of event are null in the
//! rows of other kinds. README.md documents every column.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use arrow::array::{new_null_array, ArrayBuilder, NullBufferBuilder};
use arrow::array::{
    Array, ArrayRef, BooleanBuilder, DictionaryArray, FixedSizeBinaryBuilder, Int32Array,
    Int32Builder, LargeStringArray, LargeStringBuilder, ListArray, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::chain::HASH_LEN;
use super::event::{Body, DecisionInfo, Event, RowsEncoding, SessionMeta};
use super::rows::Rows;

/// Version of the archive format, kept in every file's key-value metadata: 1, hashes in the
/// canonical encoding v1; 2, the same table with hashes in v2; 3, in v3 (see `chain.rs`).
pub const FORMAT_VERSION: &str = "3";
/// Key of [`FORMAT_VERSION`] in the file metadata.
pub const FORMAT_KEY: &str = "tollgate.record.format";

/// The `rows_encoding` column's value for an encoding.
pub(crate) fn rows_encoding_name(e: RowsEncoding) -> &'static str {
    match e {
        RowsEncoding::PgDataRow => "pg_datarow",
    }
}

/// The encoding a `rows_encoding` value names.
pub(crate) fn rows_encoding_from(name: &str) -> Option<RowsEncoding> {
    match name {
        "pg_datarow" => Some(RowsEncoding::PgDataRow),
        _ => None,
    }
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// The archive's Arrow schema.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use DataType::*;
            let f = Field::new;
            let utc = Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            Arc::new(Schema::new(vec![
                // Every event.
                f("session_id", Utf8, false),
                f("seq", UInt64, false),
                f("at", utc, false),
                f("kind", Utf8, false),
                f("instance", Utf8, false),
                f("principal", Utf8, false),
                f("groups", list_of(Utf8), false),
                f("connection", Utf8, false),
                f("protocol", Utf8, false),
                // connect
                f("client_addr", Utf8, true),
                f("application_name", Utf8, true),
                f("tls", Boolean, true),
                f("principal_kind", Utf8, true),
                // statement, result, approval
                f("statement_id", UInt64, true),
                // statement
                f("statement", LargeUtf8, true),
                f("params", list_of(LargeUtf8), true),
                f("fingerprint_hash", UInt64, true),
                f("fingerprint", Utf8, true),
                f("action", Utf8, true),
                f("rules", list_of(Utf8), true),
                f("reason", Utf8, true),
                f("tables", list_of(Utf8), true),
                // result
                f("rows", UInt64, true),
                f("bytes", UInt64, true),
                f("duration_us", UInt64, true),
                f("command_tag", Utf8, true),
                f("sqlstate", Utf8, true),
                f("error", Utf8, true),
                f("result_columns", list_of(Utf8), true),
                f("result_column_types", list_of(UInt32), true),
                f("result_column_binary", list_of(Boolean), true),
                f("rows_encoding", Utf8, true),
                f("result_rows", list_of(list_of(LargeUtf8)), true),
                f("rows_error", Utf8, true),
                f("kept_rows", UInt64, true),
                f("truncated", Boolean, true),
                // approval
                f("request_id", Utf8, true),
                f("outcome", Utf8, true),
                f("approver", Utf8, true),
                // disconnect
                f("disconnect_reason", Utf8, true),
                f("statements", UInt64, true),
                f("denied", UInt64, true),
                f("bytes_from_client", UInt64, true),
                f("bytes_to_client", UInt64, true),
                f("session_duration_us", UInt64, true),
                // chain
                f("prev_hash", FixedSizeBinary(HASH_LEN as i32), false),
                f("hash", FixedSizeBinary(HASH_LEN as i32), false),
            ]))
        })
        .clone()
}

/// Columns that [`BatchBuilder`] builds as `Dictionary(Int32, Utf8)` arrays: their values
/// repeat from row to row and arrive shared, so each distinct value is copied once per batch.
/// They are `Utf8` in [`schema`], and in every file: the Parquet writer is made with
/// [`schema`] and writes a dictionary array's values as the strings they stand for (with the
/// `dict-array-keys` patch of `third_party/parquet`, interning each distinct value once).
const DICTIONARY_COLUMNS: [&str; 9] = [
    "session_id",
    "kind",
    "instance",
    "principal",
    "connection",
    "protocol",
    "fingerprint",
    "action",
    "reason",
];

/// The schema of the batches [`BatchBuilder::finish`] returns: [`schema`], with the
/// [`DICTIONARY_COLUMNS`] as `Dictionary(Int32, Utf8)`. Write-ahead log frames carry it; files
/// carry [`schema`].
pub(crate) fn batch_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = schema()
                .fields()
                .iter()
                .map(|f| {
                    if DICTIONARY_COLUMNS.contains(&f.name().as_str()) {
                        f.as_ref().clone().with_data_type(DataType::Dictionary(
                            Box::new(DataType::Int32),
                            Box::new(DataType::Utf8),
                        ))
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// Hashes a pointer-sized address (a multiply, folded so that the low bits, zero for aligned
/// addresses, vary).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        let h = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

/// Dictionary keys for values that events share through an `Arc` (a session's metadata, a
/// cached decision): the first event that brings one gets the next key, later ones find it by
/// the `Arc`'s address. The `Arc`s are held until [`ByAddress::clear`], so no address is
/// reused by another value within a batch.
pub(crate) struct ByAddress<T> {
    held: Vec<Arc<T>>,
    keys: HashMap<usize, i32, BuildHasherDefault<AddressHasher>>,
}

impl<T> Default for ByAddress<T> {
    fn default() -> Self {
        ByAddress {
            held: Vec::new(),
            keys: HashMap::default(),
        }
    }
}

impl<T> ByAddress<T> {
    /// The key of `value`, and whether it is new (its strings are then to be appended to the
    /// dictionaries, in key order).
    pub(crate) fn key(&mut self, value: &Arc<T>) -> (i32, bool) {
        let address = Arc::as_ptr(value).cast::<()>() as usize;
        if let Some(&key) = self.keys.get(&address) {
            return (key, false);
        }
        // A batch holds at most `BATCH_EVENTS` rows, so keys stay far below i32::MAX.
        let key = i32::try_from(self.held.len()).unwrap_or(i32::MAX);
        self.held.push(Arc::clone(value));
        self.keys.insert(address, key);
        (key, true)
    }

    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.keys.clear();
    }
}

/// The `kind` column's dictionary, in the order of [`kind_key`].
const KINDS: [&str; 5] = ["connect", "statement", "result", "approval", "disconnect"];

fn kind_key(b: &Body) -> i32 {
    match b {
        Body::Connect(_) => 0,
        Body::Statement(_) => 1,
        Body::Result(_) => 2,
        Body::Approval(_) => 3,
        Body::Disconnect(_) => 4,
    }
}

fn dictionary(keys: Int32Array, values: StringArray) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
        keys,
        Arc::new(values),
    )?))
}

/// Accumulates events as rows of [`batch_schema`] (that is, of [`schema`]).
///
/// A batch lists its events by kind: connects, then statements, results, approvals and
/// disconnects, each kind in the order its events came (readers order by `session_id` and
/// `seq`, or `at`; `tollctl` does). Grouped so, the columns that belong to one kind hold one run
/// of values with nulls before and after it, where in arrival order they alternated between
/// value and null from row to row: an event appends only to its own kind's columns, the other
/// kinds' columns are made null all at once at [`BatchBuilder::finish`], and Parquet encodes the
/// runs of nulls as runs.
pub(crate) struct BatchBuilder {
    rows_in_batch: usize,
    payload: usize,

    /// Sessions of the batch: one key for `session_id`, `principal`, `connection` and
    /// `protocol`, whose dictionaries hold each session's values in key order (shared by the
    /// kinds' rows).
    sessions: ByAddress<SessionMeta>,
    session_id: StringBuilder,
    principal: StringBuilder,
    connection: StringBuilder,
    protocol: StringBuilder,
    /// `instance` is the same for every event of a recorder: a new value only when it differs
    /// from the last one appended.
    instance: StringBuilder,
    /// Decisions of the batch: one key (null without a decision) for `fingerprint`, `action`
    /// and `reason`.
    decisions: ByAddress<DecisionInfo>,
    fingerprint: StringBuilder,
    action: StringBuilder,
    reason: StringBuilder,

    /// The rows of each kind, in the order of [`KINDS`].
    kinds: [KindRows; 5],
}

/// The rows of one kind of event. Only the columns every event has and the kind's own are
/// appended to; the others stay empty and are filled with nulls at [`KindRows::finish`].
struct KindRows {
    len: usize,
    session_keys: Vec<i32>,
    seq: UInt64Builder,
    at: TimestampMicrosecondBuilder,
    instance_keys: Vec<i32>,
    groups: ListBuilder<StringBuilder>,

    client_addr: StringBuilder,
    application_name: StringBuilder,
    tls: BooleanBuilder,
    principal_kind: StringBuilder,

    statement_id: UInt64Builder,

    statement: LargeStringBuilder,
    params: ListBuilder<LargeStringBuilder>,
    fingerprint_hash: UInt64Builder,
    decision_keys: Int32Builder,
    rules: ListBuilder<StringBuilder>,
    tables: ListBuilder<StringBuilder>,

    rows: UInt64Builder,
    bytes: UInt64Builder,
    duration_us: UInt64Builder,
    command_tag: StringBuilder,
    sqlstate: StringBuilder,
    error: StringBuilder,
    result_columns: ListBuilder<StringBuilder>,
    result_column_types: ListBuilder<UInt32Builder>,
    result_column_binary: ListBuilder<BooleanBuilder>,
    rows_encoding: StringBuilder,
    result_rows: RowsColumn,
    rows_error: StringBuilder,
    kept_rows: UInt64Builder,
    truncated: BooleanBuilder,

    request_id: StringBuilder,
    outcome: StringBuilder,
    approver: StringBuilder,

    disconnect_reason: StringBuilder,
    statements: UInt64Builder,
    denied: UInt64Builder,
    bytes_from_client: UInt64Builder,
    bytes_to_client: UInt64Builder,
    session_duration_us: UInt64Builder,

    prev_hash: FixedSizeBinaryBuilder,
    hash: FixedSizeBinaryBuilder,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder {
            rows_in_batch: 0,
            payload: 0,
            sessions: ByAddress::default(),
            session_id: StringBuilder::new(),
            principal: StringBuilder::new(),
            connection: StringBuilder::new(),
            protocol: StringBuilder::new(),
            instance: StringBuilder::new(),
            decisions: ByAddress::default(),
            fingerprint: StringBuilder::new(),
            action: StringBuilder::new(),
            reason: StringBuilder::new(),
            kinds: std::array::from_fn(|_| KindRows::new()),
        }
    }
}

impl KindRows {
    fn new() -> Self {
        let s = StringBuilder::new;
        let u = UInt64Builder::new;
        let l = || ListBuilder::new(StringBuilder::new());
        KindRows {
            len: 0,
            session_keys: Vec::new(),
            seq: u(),
            at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            instance_keys: Vec::new(),
            groups: l(),
            client_addr: s(),
            application_name: s(),
            tls: BooleanBuilder::new(),
            principal_kind: s(),
            statement_id: u(),
            statement: LargeStringBuilder::new(),
            params: ListBuilder::new(LargeStringBuilder::new()),
            fingerprint_hash: u(),
            decision_keys: Int32Builder::new(),
            rules: l(),
            tables: l(),
            rows: u(),
            bytes: u(),
            duration_us: u(),
            command_tag: s(),
            sqlstate: s(),
            error: s(),
            result_columns: l(),
            result_column_types: ListBuilder::new(UInt32Builder::new()),
            result_column_binary: ListBuilder::new(BooleanBuilder::new()),
            rows_encoding: s(),
            result_rows: RowsColumn::default(),
            rows_error: s(),
            kept_rows: u(),
            truncated: BooleanBuilder::new(),
            request_id: s(),
            outcome: s(),
            approver: s(),
            disconnect_reason: s(),
            statements: u(),
            denied: u(),
            bytes_from_client: u(),
            bytes_to_client: u(),
            session_duration_us: u(),
            prev_hash: FixedSizeBinaryBuilder::new(HASH_LEN as i32),
            hash: FixedSizeBinaryBuilder::new(HASH_LEN as i32),
        }
    }
}

/// The `result_rows` column (`List<List<LargeUtf8>>`), built from [`Rows`] a result at a
/// time: its flat form is the Arrow layout already, so values are copied in one piece and
/// offsets shifted, rather than appended one by one through nested builders.
struct RowsColumn {
    /// Every value's text, and where each value ends in it (Arrow offsets: a leading 0).
    text: Vec<u8>,
    value_offsets: Vec<i64>,
    value_valid: NullBufferBuilder,
    /// Where each row ends, in values.
    row_offsets: Vec<i32>,
    /// Where each result ends, in rows; null for events that are not results.
    result_offsets: Vec<i32>,
    result_valid: NullBufferBuilder,
    /// Set when an offset did not fit in 32 bits (then `finish` fails).
    overflow: bool,
    /// Values and rows the previous batch held: reserved at this batch's first result, so
    /// that the offsets do not grow by doubling either (kept across `finish`).
    last_values: usize,
    last_rows: usize,
}

impl Default for RowsColumn {
    fn default() -> Self {
        RowsColumn {
            text: Vec::new(),
            value_offsets: vec![0],
            value_valid: NullBufferBuilder::new(0),
            row_offsets: vec![0],
            result_offsets: vec![0],
            result_valid: NullBufferBuilder::new(0),
            overflow: false,
            last_values: 0,
            last_rows: 0,
        }
    }
}

impl RowsColumn {
    fn append(&mut self, rows: &Rows) {
        let (text, value_ends, value_null, row_ends) = rows.parts();
        if self.text.capacity() == 0 && !text.is_empty() {
            // A batch is sealed at this much payload: reserving it once spares growing the
            // buffer by doubling (each step a copy of everything so far, into fresh pages).
            self.text.reserve(super::recorder::BATCH_BYTES + (64 << 10));
            self.value_offsets.reserve(self.last_values);
            self.row_offsets.reserve(self.last_rows);
        }
        let text_base = self.text.len() as i64;
        self.text.extend_from_slice(text.as_bytes());
        self.value_offsets
            .extend(value_ends.iter().map(|&end| text_base + end as i64));
        if value_null.contains(&true) {
            for &null in value_null {
                self.value_valid.append(!null);
            }
        } else {
            self.value_valid.append_n_non_nulls(value_null.len());
        }
        // Offsets past i32 would need more than 2 Gi values in one batch, which the batch
        // limits (8 MiB of payload, every value costing at least 4 bytes of `rows_data`) rule
        // out; `finish` refuses them rather than wrap.
        let value_base = self.value_offsets.len() - 1 - value_ends.len();
        let values = value_base + value_ends.len();
        let rows = self.row_offsets.len() - 1 + row_ends.len();
        if i32::try_from(values).is_err() || i32::try_from(rows).is_err() {
            self.overflow = true;
            self.append_null();
            return;
        }
        self.row_offsets
            .extend(row_ends.iter().map(|&end| (value_base + end) as i32));
        self.result_offsets.push(rows as i32);
        self.result_valid.append_non_null();
    }

    fn append_null(&mut self) {
        let last = self.result_offsets.last().copied().unwrap_or(0);
        self.result_offsets.push(last);
        self.result_valid.append_null();
    }

    /// The column; the builder is empty afterwards.
    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let RowsColumn {
            text,
            value_offsets,
            mut value_valid,
            row_offsets,
            result_offsets,
            mut result_valid,
            overflow,
            ..
        } = std::mem::take(self);
        self.last_values = value_offsets.len();
        self.last_rows = row_offsets.len();
        if overflow {
            return Err(ArrowError::InvalidArgumentError(
                "result_rows: more than 2 Gi values or rows in one batch".into(),
            ));
        }
        // Non-decreasing and non-negative by construction.
        let offsets = |o: Vec<i32>| OffsetBuffer::new(ScalarBuffer::from(o));
        let values = LargeStringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(value_offsets)),
            Buffer::from_vec(text),
            value_valid.finish(),
        )?;
        let rows = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::LargeUtf8, true)),
            offsets(row_offsets),
            Arc::new(values),
            None,
        )?;
        let results = ListArray::try_new(
            Arc::new(Field::new_list_field(rows.data_type().clone(), true)),
            offsets(result_offsets),
            Arc::new(rows),
            result_valid.finish(),
        )?;
        Ok(Arc::new(results))
    }
}

fn push_strs(b: &mut ListBuilder<StringBuilder>, items: &[String]) {
    for s in items {
        b.values().append_value(s);
    }
    b.append(true);
}

impl BatchBuilder {
    /// Rows appended since the last [`BatchBuilder::finish`].
    pub(crate) fn len(&self) -> usize {
        self.rows_in_batch
    }

    /// Rough bytes held (text of statements and rows plus a fixed cost per event).
    pub(crate) fn payload(&self) -> usize {
        self.payload
    }

    /// Appends one event with its decoded rows (`rows` is read for results only) and hashes.
    pub(crate) fn append(
        &mut self,
        instance: &str,
        e: &Event,
        rows: &Rows,
        prev: &[u8; HASH_LEN],
        hash: &[u8; HASH_LEN],
    ) {
        self.rows_in_batch += 1;
        self.payload += 256;
        let s = &e.session;
        let (session_key, new) = self.sessions.key(s);
        if new {
            self.session_id.append_value(&s.id);
            self.principal.append_value(&s.principal);
            self.connection.append_value(&s.connection);
            self.protocol.append_value(&s.protocol);
        }
        let last_instance = match self.instance.offsets_slice() {
            [.., start, end] => self
                .instance
                .values_slice()
                .get(*start as usize..*end as usize),
            _ => None,
        };
        if last_instance != Some(instance.as_bytes()) {
            self.instance.append_value(instance);
        }
        let instance_key = i32::try_from(self.instance.len() - 1).unwrap_or(i32::MAX);

        let k = &mut self.kinds[kind_key(&e.body) as usize];
        k.len += 1;
        k.session_keys.push(session_key);
        k.seq.append_value(e.seq);
        k.at.append_value(e.at_us);
        k.instance_keys.push(instance_key);
        push_strs(&mut k.groups, &s.groups);

        match &e.body {
            Body::Connect(c) => {
                k.client_addr.append_value(&c.client_addr);
                k.application_name.append_value(&c.application_name);
                k.tls.append_value(c.tls);
                k.principal_kind.append_value(&c.principal_kind);
            }
            Body::Statement(st) => {
                k.statement_id.append_value(st.statement_id);
                self.payload += st.text.len();
                k.statement.append_value(&st.text);
                for p in &st.params {
                    self.payload += p.as_ref().map_or(0, String::len);
                    k.params.values().append_option(p.as_ref());
                }
                k.params.append(true);
                k.fingerprint_hash.append_value(st.fingerprint_hash);
                match &st.decision {
                    Some(d) => {
                        self.payload += d.fingerprint.len();
                        let (key, new) = self.decisions.key(d);
                        if new {
                            self.fingerprint.append_value(&d.fingerprint);
                            self.action.append_value(&d.action);
                            self.reason.append_value(&d.reason);
                        }
                        k.decision_keys.append_value(key);
                        push_strs(&mut k.rules, &d.rules);
                        push_strs(&mut k.tables, &d.tables);
                    }
                    None => {
                        k.decision_keys.append_null();
                        k.rules.append_null();
                        k.tables.append_null();
                    }
                }
            }
            Body::Result(r) => {
                k.statement_id.append_value(r.statement_id);
                self.payload += rows.text_len() + 5 * rows.len();
                k.rows.append_value(r.rows);
                k.bytes.append_value(r.bytes);
                k.duration_us.append_value(r.duration_us);
                k.command_tag.append_option(r.command_tag.as_ref());
                k.sqlstate.append_option(r.sqlstate.as_ref());
                k.error.append_option(r.error.as_ref());
                for c in r.columns.iter() {
                    k.result_columns.values().append_value(&c.name);
                    k.result_column_types.values().append_value(c.type_id);
                    k.result_column_binary.values().append_value(c.binary);
                }
                k.result_columns.append(true);
                k.result_column_types.append(true);
                k.result_column_binary.append(true);
                k.rows_encoding
                    .append_value(rows_encoding_name(r.rows_encoding));
                k.result_rows.append(rows);
                k.rows_error.append_option(rows.error.as_ref());
                k.kept_rows.append_value(r.kept_rows);
                k.truncated.append_value(r.truncated);
            }
            Body::Approval(a) => {
                k.statement_id.append_value(a.statement_id);
                k.request_id.append_value(&a.request_id);
                k.outcome.append_value(&a.outcome);
                k.approver.append_option(a.approver.as_ref());
            }
            Body::Disconnect(d) => {
                k.disconnect_reason.append_value(&d.reason);
                k.statements.append_value(d.statements);
                k.denied.append_value(d.denied);
                k.bytes_from_client.append_value(d.bytes_from_client);
                k.bytes_to_client.append_value(d.bytes_to_client);
                k.session_duration_us.append_value(d.duration_us);
            }
        }

        // A 32-byte value always fits a 32-byte column; were it refused, the null would be
        // caught by `finish` (the column is not nullable) rather than shift the rows.
        if k.prev_hash.append_value(prev).is_err() {
            k.prev_hash.append_null();
        }
        if k.hash.append_value(hash).is_err() {
            k.hash.append_null();
        }
    }

    /// The rows appended so far as record batches, one per kind that has events, in the
    /// order of [`KINDS`] (written one after the other, they make the batch's rows grouped by
    /// kind); the builder is empty afterwards.
    pub(crate) fn finish(&mut self) -> Result<Vec<RecordBatch>, ArrowError> {
        self.rows_in_batch = 0;
        self.payload = 0;
        self.sessions.clear();
        self.decisions.clear();
        let shared = Dictionaries {
            kind: StringArray::from(KINDS.to_vec()),
            instance: self.instance.finish(),
            session_id: self.session_id.finish(),
            principal: self.principal.finish(),
            connection: self.connection.finish(),
            protocol: self.protocol.finish(),
            fingerprint: self.fingerprint.finish(),
            action: self.action.finish(),
            reason: self.reason.finish(),
        };
        let schema = batch_schema();
        let mut parts = Vec::with_capacity(KINDS.len());
        for (kind, rows) in (0..).zip(self.kinds.iter_mut()) {
            if rows.len > 0 {
                parts.push(rows.finish(kind, &shared, &schema)?);
            }
        }
        Ok(parts)
    }
}

/// The dictionaries' values of a batch, shared by the rows of every kind.
struct Dictionaries {
    kind: StringArray,
    instance: StringArray,
    session_id: StringArray,
    principal: StringArray,
    connection: StringArray,
    protocol: StringArray,
    fingerprint: StringArray,
    action: StringArray,
    reason: StringArray,
}

impl KindRows {
    /// This kind's rows as a batch of `schema`, the builders empty afterwards. The columns of
    /// other kinds, never appended to, are null.
    fn finish(
        &mut self,
        kind: i32,
        d: &Dictionaries,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let n = std::mem::take(&mut self.len);
        // Keys are below their dictionaries' lengths by construction; `try_new` checks.
        let session_keys = Int32Array::from(std::mem::take(&mut self.session_keys));
        let decision_keys = self.decision_keys.finish();
        let mut columns: Vec<ArrayRef> = vec![
            dictionary(session_keys.clone(), d.session_id.clone())?,
            Arc::new(self.seq.finish()),
            Arc::new(self.at.finish()),
            dictionary(Int32Array::from(vec![kind; n]), d.kind.clone())?,
            dictionary(
                Int32Array::from(std::mem::take(&mut self.instance_keys)),
                d.instance.clone(),
            )?,
            dictionary(session_keys.clone(), d.principal.clone())?,
            Arc::new(self.groups.finish()),
            dictionary(session_keys.clone(), d.connection.clone())?,
            dictionary(session_keys, d.protocol.clone())?,
            Arc::new(self.client_addr.finish()),
            Arc::new(self.application_name.finish()),
            Arc::new(self.tls.finish()),
            Arc::new(self.principal_kind.finish()),
            Arc::new(self.statement_id.finish()),
            Arc::new(self.statement.finish()),
            Arc::new(self.params.finish()),
            Arc::new(self.fingerprint_hash.finish()),
            dictionary(decision_keys.clone(), d.fingerprint.clone())?,
            dictionary(decision_keys.clone(), d.action.clone())?,
            Arc::new(self.rules.finish()),
            dictionary(decision_keys, d.reason.clone())?,
            Arc::new(self.tables.finish()),
            Arc::new(self.rows.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.duration_us.finish()),
            Arc::new(self.command_tag.finish()),
            Arc::new(self.sqlstate.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.result_columns.finish()),
            Arc::new(self.result_column_types.finish()),
            Arc::new(self.result_column_binary.finish()),
            Arc::new(self.rows_encoding.finish()),
            self.result_rows.finish()?,
            Arc::new(self.rows_error.finish()),
            Arc::new(self.kept_rows.finish()),
            Arc::new(self.truncated.finish()),
            Arc::new(self.request_id.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.approver.finish()),
            Arc::new(self.disconnect_reason.finish()),
            Arc::new(self.statements.finish()),
            Arc::new(self.denied.finish()),
            Arc::new(self.bytes_from_client.finish()),
            Arc::new(self.bytes_to_client.finish()),
            Arc::new(self.session_duration_us.finish()),
            Arc::new(self.prev_hash.finish()),
            Arc::new(self.hash.finish()),
        ];
        // Every event appends to the columns all events have and to its kind's own; a column
        // left empty belongs to another kind.
        for (column, field) in columns.iter_mut().zip(schema.fields()) {
            if column.is_empty() && n > 0 {
                *column = new_null_array(field.data_type(), n);
            }
        }
        RecordBatch::try_new(schema.clone(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::event::{SessionMeta, StatementResult};
    use crate::record::RowsEncoding;

    fn result_event(s: &Arc<SessionMeta>, seq: u64) -> Event {
        Event {
            session: s.clone(),
            seq,
            at_us: 1_714_564_800_000_000 + seq as i64,
            body: Body::Result(StatementResult {
                statement_id: seq,
                rows: 2,
                bytes: 64,
                duration_us: 10,
                command_tag: Some("SELECT 2".into()),
                sqlstate: None,
                error: None,
                columns: Arc::from([]),
                rows_data: Vec::new(),
                rows_encoding: RowsEncoding::PgDataRow,
                kept_rows: 2,
                truncated: false,
            }),
        }
    }

    fn batch_of(b: &mut BatchBuilder, s: &Arc<SessionMeta>, rows: &Rows) -> RecordBatch {
        for seq in 0..3 {
            b.append(
                "gw",
                &result_event(s, seq),
                rows,
                &[0; HASH_LEN],
                &[1; HASH_LEN],
            );
        }
        let mut parts = b.finish().unwrap();
        assert_eq!(parts.len(), 1, "one kind, one part");
        parts.remove(0)
    }

    fn rows_text(batch: &RecordBatch) -> Vec<Vec<Vec<Option<String>>>> {
        let results = batch
            .column_by_name("result_rows")
            .unwrap()
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        (0..results.len())
            .map(|r| {
                let rows = results.value(r);
                let rows = rows.as_any().downcast_ref::<ListArray>().unwrap();
                (0..rows.len())
                    .map(|i| {
                        let values = rows.value(i);
                        let values = values.as_any().downcast_ref::<LargeStringArray>().unwrap();
                        (0..values.len())
                            .map(|v| values.is_valid(v).then(|| values.value(v).to_owned()))
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// The recorder keeps one builder from batch to batch: a batch built after `finish` is
    /// the batch a new builder makes of the same events.
    #[test]
    fn a_builder_reused_after_finish_builds_what_a_new_one_builds() {
        let s = Arc::new(SessionMeta {
            id: "s1".into(),
            principal: "alice".into(),
            groups: Vec::new(),
            connection: "orders".into(),
            protocol: "postgres".into(),
        });
        let mut rows = Rows::default();
        rows.push_value(Some("alice@example.com"));
        rows.push_value(None);
        rows.end_row();
        rows.push_value(Some("bob"));
        rows.push_value(Some(""));
        rows.end_row();
        let mut reused = BatchBuilder::default();
        let first = batch_of(&mut reused, &s, &rows);
        let expected = rows_text(&first);
        assert_eq!(expected.len(), 3);
        assert_eq!(
            expected[0],
            vec![
                vec![Some("alice@example.com".to_owned()), None],
                vec![Some("bob".to_owned()), Some(String::new())]
            ]
        );
        let second = batch_of(&mut reused, &s, &rows);
        assert_eq!(second, batch_of(&mut BatchBuilder::default(), &s, &rows));
        assert_eq!(rows_text(&second), expected);
    }
}
