//! Record stage, crash recovery: files a previous run (or a failed write) left unfinished are
//! finished from their `.partial` and write-ahead log into complete Parquet files.
//!
//! For one file `<instance>-<seq>`:
//!
//! | left behind                   | means                                   | done                         |
//! |-------------------------------|-----------------------------------------|------------------------------|
//! | `.parquet` (+ `.wal`, `.partial`) | killed after the rename             | delete the leftovers         |
//! | `.wal` (+ `.partial`)         | killed while writing                    | finish it (below), rename, delete the rest |
//! | `.partial` alone              | killed before the log was written       | delete it                    |
//!
//! Finishing takes every complete frame of the log (a torn last frame is ignored):
//!
//! 1. the row groups of its checkpoints: the `.partial` is cut back to where the last of them
//!    ends (dropping the open row group the kill interrupted) and a footer holding them all is
//!    appended; that alone makes it a complete Parquet file;
//! 2. the batches logged after the last checkpoint (the open row group), if any: the file is
//!    rebuilt into `.parquet.rebuild` from the row groups of step 1 followed by these batches.
//!
//! So it keeps every batch that reached the log or a checkpoint, with the hashes computed when
//! it was recorded. A checkpoint that points past the end of the `.partial` (a machine crash
//! lost pages of it) ends step 1 there; the batches logged after the last usable checkpoint
//! are still taken.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::ZstdLevel;
use parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataWriter, RowGroupMetaData,
};

use super::layout::{FilePaths, FileState, Found};
use super::wal::{self, Entry};
use super::writer::{parquet_io, publish, writer_properties, Sink, REBUILD_ROW_GROUP_BYTES};

/// What recovering one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// The complete file existed; the stale log (and `.partial`) were deleted.
    AlreadyComplete,
    /// Nothing had been logged; the leftovers were deleted.
    Empty,
    /// The file was finished from its checkpoints and log.
    Rebuilt {
        events: u64,
        frames: usize,
        torn: Option<String>,
    },
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("deleting {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

fn io_at<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The checkpoints of a log that the `.partial` holds.
#[derive(Default)]
struct Checkpoints {
    /// File-level metadata of the first one.
    file: Option<FileMetaData>,
    row_groups: Vec<RowGroupMetaData>,
    /// Where the last one ends in the `.partial`.
    end: u64,
    /// Log entries up to and including the last one.
    entries: usize,
    /// Why later checkpoints were not taken.
    cut: Option<String>,
}

impl Checkpoints {
    /// Reads the log's checkpoints, taking them in order while they fit in `partial_len`
    /// bytes of `.partial`.
    fn read(wal: &Path, partial_len: u64) -> io::Result<(Checkpoints, wal::WalSummary)> {
        let mut c = Checkpoints::default();
        let mut entries = 0;
        let summary = wal::read(wal, |entry| {
            entries += 1;
            let Entry::Checkpoint { end, metadata } = entry else {
                return Ok(());
            };
            if c.cut.is_some() {
                return Ok(());
            }
            if end > partial_len || end < c.end {
                c.cut = Some(format!(
                    "checkpoint of bytes up to {end}, the .partial has {partial_len}"
                ));
                return Ok(());
            }
            if c.file.is_none() {
                c.file = Some(metadata.file_metadata().clone());
            }
            c.row_groups.extend_from_slice(metadata.row_groups());
            c.end = end;
            c.entries = entries;
            Ok(())
        })?;
        Ok((c, summary))
    }

    fn events(&self) -> u64 {
        self.row_groups
            .iter()
            .map(|rg| u64::try_from(rg.num_rows()).unwrap_or(0))
            .sum()
    }

    /// Cuts the `.partial` back to the end of the last checkpoint and appends a footer holding
    /// every checkpoint's row groups; fsyncs.
    fn finish_partial(&self, partial: &Path) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let footer = ParquetMetaData::new(
            FileMetaData::new(
                file.version(),
                self.row_groups.iter().map(RowGroupMetaData::num_rows).sum(),
                file.created_by().map(str::to_owned),
                file.key_value_metadata().cloned(),
                file.schema_descr_ptr(),
                file.column_orders().cloned(),
            ),
            self.row_groups.clone(),
        );
        let mut f = OpenOptions::new()
            .write(true)
            .open(partial)
            .map_err(io_at("opening", partial))?;
        f.set_len(self.end).map_err(io_at("truncating", partial))?;
        f.seek(SeekFrom::Start(self.end))
            .map_err(io_at("writing", partial))?;
        let mut out = BufWriter::new(&mut f);
        ParquetMetaDataWriter::new(&mut out, &footer)
            .finish()
            .map_err(|e| parquet_io("writing the footer of", partial, e))?;
        out.flush().map_err(io_at("writing", partial))?;
        drop(out);
        f.sync_all().map_err(io_at("syncing", partial))
    }
}

/// A file being rebuilt into `.parquet.rebuild`.
struct Rebuild {
    writer: ArrowWriter<Sink>,
    events: u64,
}

impl Rebuild {
    /// Starts the rebuild with the batches of `prefix`, a complete Parquet file, if any.
    fn start(paths: &FilePaths, prefix: Option<&Path>, level: ZstdLevel) -> io::Result<Rebuild> {
        let file = File::create(&paths.rebuild).map_err(io_at("creating", &paths.rebuild))?;
        // The archive's schema, whatever the batches' own (log frames carry dictionary
        // columns: `schema::batch_schema`).
        let writer = ArrowWriter::try_new(
            Sink::new(file),
            super::schema::schema(),
            Some(writer_properties(level)),
        )
        .map_err(|e| parquet_io("starting", &paths.rebuild, e))?;
        let mut r = Rebuild { writer, events: 0 };
        if let Some(prefix) = prefix {
            let read = |e| parquet_io("reading", prefix, e);
            let file = File::open(prefix).map_err(io_at("opening", prefix))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(8192).build())
                .map_err(read)?;
            for batch in reader {
                let batch = batch.map_err(|e| read(e.into()))?;
                r.write(&paths.rebuild, &batch)?;
            }
        }
        Ok(r)
    }

    fn write(&mut self, path: &Path, batch: &RecordBatch) -> io::Result<()> {
        self.writer
            .write(batch)
            .map_err(|e| parquet_io("writing", path, e))?;
        if self.writer.in_progress_size() > REBUILD_ROW_GROUP_BYTES {
            self.writer
                .flush()
                .map_err(|e| parquet_io("writing", path, e))?;
        }
        self.events += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes the footer and fsyncs.
    fn finish(self, path: &Path) -> io::Result<u64> {
        self.writer
            .into_inner()
            .map_err(|e| parquet_io("closing", path, e))?
            .into_file()?
            .sync_all()
            .map_err(io_at("syncing", path))?;
        Ok(self.events)
    }
}

/// Finishes one file from what it left behind; a file rebuilt from its log is compressed at
/// `level`.
pub(crate) fn recover(paths: &FilePaths, level: ZstdLevel) -> io::Result<Recovered> {
    // A rebuild cut short is started again (or no longer needed).
    remove_if_exists(&paths.rebuild)?;
    if paths.complete.exists() {
        remove_if_exists(&paths.partial)?;
        remove_if_exists(&paths.wal)?;
        return Ok(Recovered::AlreadyComplete);
    }
    let wal_len = match std::fs::metadata(&paths.wal) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            remove_if_exists(&paths.partial)?;
            return Ok(Recovered::Empty);
        }
        Err(e) => return Err(e),
    };
    let empty = || -> io::Result<Recovered> {
        remove_if_exists(&paths.partial)?;
        remove_if_exists(&paths.wal)?;
        Ok(Recovered::Empty)
    };
    if wal_len < 8 {
        // Killed between creating the log and writing its header.
        return empty();
    }
    let partial_len = match std::fs::metadata(&paths.partial) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };

    let (checkpoints, summary) = Checkpoints::read(&paths.wal, partial_len)?;
    let has_prefix = !checkpoints.row_groups.is_empty();
    if has_prefix {
        checkpoints.finish_partial(&paths.partial)?;
    }
    // The batches of the open row group, after the last checkpoint.
    let mut rebuild: Option<Rebuild> = None;
    let mut entries = 0;
    wal::read(&paths.wal, |entry| {
        entries += 1;
        let Entry::Batch(batch) = entry else {
            return Ok(());
        };
        if entries <= checkpoints.entries {
            return Ok(());
        }
        let r = match &mut rebuild {
            Some(r) => r,
            None => rebuild.insert(Rebuild::start(
                paths,
                has_prefix.then_some(paths.partial.as_path()),
                level,
            )?),
        };
        r.write(&paths.rebuild, &batch)
    })?;

    let events = match rebuild {
        Some(r) => {
            let events = r.finish(&paths.rebuild)?;
            publish(paths, &paths.rebuild)?;
            events
        }
        None if has_prefix => {
            publish(paths, &paths.partial)?;
            checkpoints.events()
        }
        None => return empty(),
    };
    let torn = match (summary.torn, checkpoints.cut) {
        (Some(a), Some(b)) => Some(format!("{b}; {a}")),
        (a, b) => b.or(a),
    };
    Ok(Recovered::Rebuilt {
        events,
        frames: summary.frames,
        torn,
    })
}

/// Every unfinished file of `instance` among the archive files `found` (files of other
/// instances may belong to a gateway that is running, and are left alone).
pub(crate) fn leftovers(found: &[Found], instance: &str) -> Vec<FilePaths> {
    let mut stems: BTreeSet<(PathBuf, &str)> = BTreeSet::new();
    for f in found {
        if f.instance != instance || f.state == FileState::Complete {
            continue;
        }
        if let Some(dir) = f.path.parent() {
            stems.insert((dir.to_path_buf(), &f.stem));
        }
    }
    stems
        .into_iter()
        .map(|(dir, stem)| FilePaths::in_dir(&dir, stem))
        .collect()
}
