//! Record stage, one archive file being written: its Parquet `.partial`, its write-ahead log,
//! and the close that makes it a complete `.parquet`.
//!
//! A batch that closes a row group (the open row group then holds 8 MiB of payload or 4096
//! events, which under load is every batch) is encoded, written to the `.partial` with its row
//! group and made durable by a checkpoint in the log: the row groups' end and metadata. A
//! smaller batch is first logged whole, then waits in the Parquet writer's open row group.
//! Either way every batch reaches the operating system before [`ArchiveFile::append`] returns,
//! and under load its bytes are written once, compressed: logging every batch whole cost as
//! much CPU again as compressing it (the kernel copying it into fresh page-cache pages, Arrow
//! IPC encoding).
//!
//! Closing writes the footer, fsyncs, renames `.partial` to `.parquet`, then deletes the log:
//! at any instant the complete file, or the `.partial` up to its last checkpoint plus the
//! batches logged after it, hold every batch, which is what [`super::recover`] relies on.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::layout::FilePaths;
use super::schema::{FORMAT_KEY, FORMAT_VERSION};
use super::wal::Wal;

/// A row group is closed once the batches in it hold this much payload (see
/// [`super::schema::BatchBuilder::payload`]; a batch sealed for its size holds as much) ...
const ROW_GROUP_PAYLOAD: usize = super::recorder::BATCH_BYTES;
/// ... or this many events. A batch of small events sealed for its count (32 Ki), or for its
/// age once more than 8 Ki events a second come (with the default flush interval), closes a
/// row group by itself and is never logged: logging batches of small events (Arrow IPC, copied
/// into the page cache, deleted at close) cost the recorder thread a fifth of its time.
const ROW_GROUP_EVENTS: usize = 4096;
/// Rows per row group in any file (recovery's rebuilds included).
const MAX_ROW_GROUP_EVENTS: usize = 128 * 1024;
/// A rebuilt file closes a row group past this many bytes of buffered, encoded data, bounding
/// memory.
pub(crate) const REBUILD_ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Zeros written after a checkpointed row group to push it through the Parquet writer's
/// internal buffer (8 KiB, which a write of at least its size passes through; see
/// [`ArchiveFile::checkpoint`]).
const PADDING: [u8; 8 * 1024] = [0; 8 * 1024];

/// A batch goes to the Parquet writer in slices of about this much payload: the writer computes
/// the nesting levels of `result_rows` for all the rows it is given at once, and for a whole
/// 8 MiB batch those buffers took fresh pages from the kernel every batch.
const SLICE_PAYLOAD: usize = 512 * 1024;

/// How the archive's Parquet files are written: zstd, row groups of up to 128 Ki events, page
/// statistics (for DuckDB's pruning on time, session, principal, ...) except on long free text
/// and hashes nobody filters by range, and no dictionary for columns whose values rarely
/// repeat (result rows, parameters, hashes, sequence numbers, times), where a dictionary only
/// costs: every value interned, then a fall-back to plain encoding once it is full.
pub(crate) fn writer_properties(level: ZstdLevel) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_size(MAX_ROW_GROUP_EVENTS)
        .set_created_by(format!("tollgate {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            FORMAT_KEY.to_owned(),
            FORMAT_VERSION.to_owned(),
        )]));
    // Columns that differ from the defaults: (path, dictionary, statistics).
    let (on, off) = (true, false);
    for (parts, dictionary, statistics) in [
        (
            &["result_rows", "list", "item", "list", "item"][..],
            off,
            off,
        ),
        (&["params", "list", "item"], off, off),
        // Texts of simple queries carry their literals and rarely repeat; zstd still folds
        // the texts of prepared statements, which do.
        (&["statement"], off, off),
        // List items: min and max over every item of a page prune nothing a query asks.
        (&["groups", "list", "item"], on, off),
        (&["rules", "list", "item"], on, off),
        (&["tables", "list", "item"], on, off),
        (&["result_columns", "list", "item"], on, off),
        (&["result_column_types", "list", "item"], on, off),
        (&["result_column_binary", "list", "item"], on, off),
        (&["fingerprint"], on, off),
        (&["reason"], on, off),
        (&["error"], on, off),
        (&["rows_error"], on, off),
        (&["prev_hash"], off, off),
        (&["hash"], off, off),
        (&["seq"], off, on),
        (&["at"], off, on),
        (&["statement_id"], off, on),
        (&["duration_us"], off, on),
    ] {
        let column = ColumnPath::new(parts.iter().map(|p| (*p).to_owned()).collect());
        if !dictionary {
            props = props.set_column_dictionary_enabled(column.clone(), false);
        }
        if !statistics {
            props = props.set_column_statistics_enabled(column, EnabledStatistics::None);
        }
    }
    props.build()
}

pub(crate) fn parquet_io(what: &str, path: &Path, e: ParquetError) -> io::Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<io::Error>() {
            Ok(io) => io::Error::new(io.kind(), format!("{what} {}: {io}", path.display())),
            Err(other) => io::Error::other(format!("{what} {}: {other}", path.display())),
        },
        e => io::Error::other(format!("{what} {}: {e}", path.display())),
    }
}

/// Why [`ArchiveFile::append`] failed, and so where the batch is.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The batch is not in the log: write it again (to another file).
    NotLogged(io::Error),
    /// The batch is in the log but the Parquet writer failed: the file is to be rebuilt
    /// from its log; the batch must not be written again.
    Logged(io::Error),
}

/// The `.partial` under the Parquet writer, counting the bytes that reached it (the writer
/// keeps a buffer of its own in front).
pub(crate) struct Sink {
    out: BufWriter<File>,
    accepted: u64,
}

impl Sink {
    pub(crate) fn new(file: File) -> Sink {
        Sink {
            out: BufWriter::with_capacity(1 << 20, file),
            accepted: 0,
        }
    }

    /// Flushes and returns the file.
    pub(crate) fn into_file(self) -> io::Result<File> {
        self.out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.accepted += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The file-level part of the footers that checkpoints carry: what the Parquet writer puts in
/// the footer it writes at close.
pub(crate) struct FooterParts {
    version: i32,
    created_by: Option<String>,
    key_value: Option<Vec<KeyValue>>,
}

impl FooterParts {
    pub(crate) fn new(schema: &SchemaRef) -> FooterParts {
        // Only the file-level fields are taken, which no column setting changes.
        let mut props = writer_properties(ZstdLevel::default());
        add_encoded_arrow_schema_to_metadata(schema, &mut props);
        FooterParts {
            version: props.writer_version().as_num(),
            created_by: props.created_by().to_owned().into(),
            key_value: props.key_value_metadata().cloned(),
        }
    }

    /// A footer (FileMetaData, its length, "PAR1") holding `row_groups`, with the file-level
    /// fields of `self`. Empty when there are no row groups.
    pub(crate) fn footer(&self, row_groups: &[RowGroupMetaData]) -> Result<Vec<u8>, ParquetError> {
        let Some(first) = row_groups.first() else {
            return Ok(Vec::new());
        };
        let file = FileMetaData::new(
            self.version,
            row_groups.iter().map(RowGroupMetaData::num_rows).sum(),
            self.created_by.clone(),
            self.key_value.clone(),
            first.schema_descr_ptr(),
            None,
        );
        let metadata = ParquetMetaData::new(file, row_groups.to_vec());
        let mut out = Vec::new();
        ParquetMetaDataWriter::new(&mut out, &metadata).finish()?;
        Ok(out)
    }
}

/// An archive file being written.
pub(crate) struct ArchiveFile {
    pub(crate) paths: FilePaths,
    wal: Wal,
    parquet: ArrowWriter<Sink>,
    footer: FooterParts,
    /// Row groups of `parquet` already in a checkpoint.
    checkpointed: usize,
    /// Payload and events of the batches in the open row group.
    open_payload: usize,
    open_events: usize,
    opened: Instant,
    last_write: Instant,
}

impl ArchiveFile {
    /// Creates the file's folder, log and `.partial` (log first, so that no `.partial` exists
    /// without the log that recovers it).
    pub(crate) fn create(
        paths: FilePaths,
        schema: &SchemaRef,
        level: ZstdLevel,
    ) -> io::Result<ArchiveFile> {
        if let Some(dir) = paths.partial.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let wal = Wal::create(&paths.wal)?;
        let created = File::create(&paths.partial).and_then(|file| {
            ArrowWriter::try_new(
                Sink::new(file),
                schema.clone(),
                Some(writer_properties(level)),
            )
            .map_err(|e| parquet_io("starting", &paths.partial, e))
        });
        let parquet = match created {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_file(&paths.partial);
                let _ = std::fs::remove_file(&paths.wal);
                return Err(e);
            }
        };
        let now = Instant::now();
        Ok(ArchiveFile {
            paths,
            wal,
            parquet,
            footer: FooterParts::new(schema),
            checkpointed: 0,
            open_payload: 0,
            open_events: 0,
            opened: now,
            last_write: now,
        })
    }

    /// Writes one batch, given as its parts (see [`super::schema::BatchBuilder::finish`]),
    /// holding `payload` bytes of payload. A batch that fills the open row group closes it and
    /// is made durable by the checkpoint; any other is logged first.
    pub(crate) fn append(
        &mut self,
        batch: &[RecordBatch],
        payload: usize,
    ) -> Result<(), AppendError> {
        let events = batch.iter().map(RecordBatch::num_rows).sum::<usize>();
        self.last_write = Instant::now();
        if self.open_payload + payload >= ROW_GROUP_PAYLOAD
            || self.open_events + events >= ROW_GROUP_EVENTS
        {
            // Until the checkpoint is written the batch is nowhere durable: a failure leaves
            // the file as its last checkpoint and the log say, without this batch.
            self.write_sliced(batch, payload)
                .and_then(|()| self.parquet.flush())
                .map_err(|e| {
                    AppendError::NotLogged(parquet_io("writing", &self.paths.partial, e))
                })?;
            return self.checkpoint().map_err(AppendError::NotLogged);
        }
        self.wal.append(batch).map_err(|e| {
            AppendError::NotLogged(io::Error::new(
                e.kind(),
                format!("writing {}: {e}", self.paths.wal.display()),
            ))
        })?;
        self.write_sliced(batch, payload)
            .map_err(|e| AppendError::Logged(parquet_io("writing", &self.paths.partial, e)))?;
        self.open_payload += payload;
        self.open_events += events;
        Ok(())
    }

    /// Hands the batch's parts to the Parquet writer in order, in slices of about
    /// [`SLICE_PAYLOAD`] (the batch's average payload per event decides how many events that
    /// is; zero-copy views; pages and row groups do not depend on how the rows are cut).
    fn write_sliced(&mut self, batch: &[RecordBatch], payload: usize) -> Result<(), ParquetError> {
        let rows = batch.iter().map(RecordBatch::num_rows).sum::<usize>();
        let step = (rows * SLICE_PAYLOAD / payload.max(1)).clamp(1, rows.max(1));
        for part in batch {
            let mut at = 0;
            while at < part.num_rows() {
                let n = step.min(part.num_rows() - at);
                self.parquet.write(&part.slice(at, n))?;
                at += n;
            }
        }
        Ok(())
    }

    /// Hands the row groups flushed since the last checkpoint to the operating system and logs
    /// a checkpoint for them.
    fn checkpoint(&mut self) -> io::Result<()> {
        let end = self.parquet.bytes_written() as u64;
        // The Parquet writer keeps the row group's last bytes in a buffer that it flushes only
        // at close and that no call reaches; a write at least as long as that buffer pushes
        // them out and goes straight through itself. The zeros it leaves between row groups
        // are never read (readers find column chunks by their offsets in the footer), and
        // recovery cuts them off.
        let at_partial = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("writing {}: {e}", self.paths.partial.display()),
            )
        };
        let mut pad = PADDING.len();
        while self.parquet.inner().accepted < end {
            // Should that buffer ever be larger, a longer write (in one piece) gets through.
            let written = match pad {
                p if p == PADDING.len() => self.parquet.write_all(&PADDING),
                p if p <= 1 << 20 => self.parquet.write_all(&vec![0; p]),
                _ => Err(io::Error::other(
                    "the Parquet writer holds back more than 1 MiB",
                )),
            };
            written.map_err(at_partial)?;
            pad *= 2;
        }
        self.parquet.inner_mut().flush().map_err(at_partial)?;
        let flushed = self.parquet.flushed_row_groups();
        let footer = self
            .footer
            .footer(flushed.get(self.checkpointed..).unwrap_or_default())
            .map_err(|e| parquet_io("checkpointing", &self.paths.partial, e))?;
        if !footer.is_empty() {
            self.wal.checkpoint(end, &footer).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("writing {}: {e}", self.paths.wal.display()),
                )
            })?;
        }
        self.checkpointed = flushed.len();
        self.open_payload = 0;
        self.open_events = 0;
        Ok(())
    }

    /// Parquet bytes written plus those buffered for the open row group (what rotation by
    /// size compares).
    pub(crate) fn size(&self) -> u64 {
        (self.parquet.bytes_written() + self.parquet.in_progress_size()) as u64
    }

    /// Time since the file was created.
    pub(crate) fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Time since the last batch.
    pub(crate) fn idle(&self) -> Duration {
        self.last_write.elapsed()
    }

    /// Writes the footer, fsyncs, renames to `.parquet`, deletes the log. On an error the
    /// file is left for [`super::recover`] (its checkpoints and log still hold every batch),
    /// and its paths are returned with the error.
    pub(crate) fn close(self) -> Result<FilePaths, (FilePaths, io::Error)> {
        let ArchiveFile {
            paths,
            parquet,
            wal,
            ..
        } = self;
        drop(wal);
        let done = parquet
            .into_inner()
            .map_err(|e| parquet_io("closing", &paths.partial, e))
            .and_then(Sink::into_file)
            .and_then(|file| file.sync_all());
        match done.and_then(|()| publish(&paths, &paths.partial)) {
            Ok(()) => Ok(paths),
            Err(e) => Err((paths, e)),
        }
    }
}

/// Renames a finished, synced file (`from`: the `.partial`, or recovery's rebuild) to its
/// complete name and deletes the log and the `.partial`.
pub(crate) fn publish(paths: &FilePaths, from: &Path) -> io::Result<()> {
    std::fs::rename(from, &paths.complete)
        .map_err(|e| io::Error::new(e.kind(), format!("renaming {}: {e}", from.display())))?;
    if let Some(dir) = paths.complete.parent() {
        // Make the rename itself durable; best effort, the data is safe either way.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    for leftover in [&paths.wal, &paths.partial] {
        match std::fs::remove_file(leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                // The complete file is in place; the next start deletes the leftover.
                tracing::warn!(file = %leftover.display(), error = %e, "record: could not delete a leftover of a complete file");
            }
        }
    }
    Ok(())
}
