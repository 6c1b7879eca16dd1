//! Record stage, crash recovery: files a previous run (or a failed write) left unfinished are
//! rebuilt from their write-ahead logs into complete Parquet files.
//!
//! For one file `<instance>-<seq>`:
//!
//! | left behind                   | means                                   | done                         |
//! |-------------------------------|-----------------------------------------|------------------------------|
//! | `.parquet` (+ `.wal`)         | killed after the rename                 | delete the log               |
//! | `.wal` (+ `.partial`)         | killed while writing                    | rebuild from the log, rename, delete both |
//! | `.partial` alone              | killed before the first batch was logged | delete it                   |
//!
//! Rebuilding takes every complete frame of the log (a torn last frame is ignored), so it
//! keeps every batch that reached the log, with the hashes computed when it was recorded.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;

use super::layout::{FilePaths, FileState, Found};
use super::wal;
use super::writer::{parquet_io, publish, writer_properties};

/// What recovering one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// The complete file existed; the stale log (and `.partial`) were deleted.
    AlreadyComplete,
    /// Nothing had been logged; the leftovers were deleted.
    Empty,
    /// The file was rebuilt from its log.
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

/// Finishes one file from what it left behind.
pub(crate) fn recover(paths: &FilePaths) -> io::Result<Recovered> {
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
    let mut writer: Option<ArrowWriter<BufWriter<File>>> = None;
    let mut events = 0u64;
    let summary = if wal_len < 8 {
        // Killed between creating the log and writing its header.
        wal::WalSummary::default()
    } else {
        wal::read(&paths.wal, |batch| {
            if writer.is_none() {
                let file = File::create(&paths.partial).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("creating {}: {e}", paths.partial.display()),
                    )
                })?;
                writer = Some(
                    ArrowWriter::try_new(
                        BufWriter::with_capacity(1 << 20, file),
                        batch.schema(),
                        Some(writer_properties()),
                    )
                    .map_err(|e| parquet_io("starting", &paths.partial, e))?,
                );
            }
            if let Some(w) = writer.as_mut() {
                w.write(&batch)
                    .map_err(|e| parquet_io("writing", &paths.partial, e))?;
            }
            events += batch.num_rows() as u64;
            Ok(())
        })?
    };
    let Some(w) = writer else {
        remove_if_exists(&paths.partial)?;
        remove_if_exists(&paths.wal)?;
        return Ok(Recovered::Empty);
    };
    let file = w
        .into_inner()
        .map_err(|e| parquet_io("closing", &paths.partial, e))?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    publish(paths)?;
    Ok(Recovered::Rebuilt {
        events,
        frames: summary.frames,
        torn: summary.torn,
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
