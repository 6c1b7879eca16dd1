//! Record stage, one archive file being written: its Parquet `.partial`, its write-ahead log,
//! and the close that makes it a complete `.parquet`.
//!
//! Every batch goes first to the log (so it survives a kill) and then to the Parquet writer,
//! which encodes and compresses row groups into the `.partial`. Closing writes the footer,
//! fsyncs, renames `.partial` to `.parquet`, then deletes the log: at any instant either the
//! log or the complete file holds every logged batch, which is what [`super::recover`] relies
//! on.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::layout::FilePaths;
use super::schema::{FORMAT_KEY, FORMAT_VERSION};
use super::wal::Wal;

/// A row group is closed past this many bytes of buffered, encoded data, bounding the
/// recorder's memory per open file.
const ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// How the archive's Parquet files are written: zstd, row groups of up to 128 Ki events,
/// page statistics (for DuckDB's pruning) except on the bulky result rows.
pub(crate) fn writer_properties() -> WriterProperties {
    let rows = ColumnPath::new(vec![
        "result_rows".into(),
        "list".into(),
        "item".into(),
        "list".into(),
        "item".into(),
    ]);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_size(128 * 1024)
        .set_column_statistics_enabled(
            rows.clone(),
            parquet::file::properties::EnabledStatistics::None,
        )
        .set_column_dictionary_enabled(rows, false)
        .set_created_by(format!("tollgate {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            FORMAT_KEY.to_owned(),
            FORMAT_VERSION.to_owned(),
        )]))
        .build()
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

/// An archive file being written.
pub(crate) struct ArchiveFile {
    pub(crate) paths: FilePaths,
    wal: Wal,
    parquet: ArrowWriter<BufWriter<File>>,
    opened: Instant,
    last_write: Instant,
}

impl ArchiveFile {
    /// Creates the file's folder, log and `.partial` (log first, so that no `.partial` exists
    /// without the log that recovers it).
    pub(crate) fn create(paths: FilePaths, schema: &SchemaRef) -> io::Result<ArchiveFile> {
        if let Some(dir) = paths.partial.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let wal = Wal::create(&paths.wal)?;
        let created = File::create(&paths.partial).and_then(|file| {
            ArrowWriter::try_new(
                BufWriter::with_capacity(1 << 20, file),
                schema.clone(),
                Some(writer_properties()),
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
            opened: now,
            last_write: now,
        })
    }

    /// Logs the batch, then hands it to the Parquet writer.
    pub(crate) fn append(&mut self, batch: &RecordBatch) -> Result<(), AppendError> {
        self.wal.append(batch).map_err(|e| {
            AppendError::NotLogged(io::Error::new(
                e.kind(),
                format!("writing {}: {e}", self.paths.wal.display()),
            ))
        })?;
        self.last_write = Instant::now();
        self.parquet
            .write(batch)
            .map_err(|e| AppendError::Logged(parquet_io("writing", &self.paths.partial, e)))?;
        if self.parquet.in_progress_size() > ROW_GROUP_BYTES {
            self.parquet
                .flush()
                .map_err(|e| AppendError::Logged(parquet_io("writing", &self.paths.partial, e)))?;
        }
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
    /// file is left for [`super::recover`] (its log still holds every batch), and its paths
    /// are returned with the error.
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
            .and_then(|buf| buf.into_inner().map_err(io::IntoInnerError::into_error))
            .and_then(|file| file.sync_all());
        match done.and_then(|()| publish(&paths)) {
            Ok(()) => Ok(paths),
            Err(e) => Err((paths, e)),
        }
    }
}

/// Renames a finished, synced `.partial` to its complete name and deletes the log.
pub(crate) fn publish(paths: &FilePaths) -> io::Result<()> {
    std::fs::rename(&paths.partial, &paths.complete).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("renaming {}: {e}", paths.partial.display()),
        )
    })?;
    if let Some(dir) = paths.complete.parent() {
        // Make the rename itself durable; best effort, the data is safe either way.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    match std::fs::remove_file(&paths.wal) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            // The complete file is in place; the next start deletes the stale log.
            tracing::warn!(wal = %paths.wal.display(), error = %e, "record: could not delete a write-ahead log");
            Ok(())
        }
    }
}
