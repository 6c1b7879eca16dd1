//! Record stage, write-ahead log: what a killed gateway needs to finish the file being
//! written. Two kinds of frames, in the order things happened:
//!
//! - a **checkpoint** after each row group the Parquet writer closed: where the row groups
//!   end in the `.partial` and their metadata, enough to put a footer behind them;
//! - a **batch** that went into the open row group (still in the Parquet writer's memory),
//!   as an Arrow IPC stream.
//!
//! ```text
//! file       = "TGWAL002" frame*
//! frame      = u64 LE payload length | u32 LE CRC-32 of the payload | payload
//! payload    = "B" batch | "R" checkpoint
//! batch      = one Arrow IPC stream: schema message, the batch's record batches (its parts, one
//!              per kind of event), end-of-stream marker
//! checkpoint = u64 LE end | footer
//! end        = bytes of the .partial that hold the row groups (all of them up to here)
//! footer     = a Parquet footer (FileMetaData, u32 LE length, "PAR1") holding the row
//!              groups closed since the previous checkpoint
//! ```
//!
//! Logs of the first format (`TGWAL001`, every payload a batch without the kind byte) are
//! still read.
//!
//! A batch that closes a row group is not logged at all: the row group and its checkpoint
//! make it durable, so under load (when batches are large) the data is copied once, into the
//! Parquet file. A small batch is logged and waits in the open row group; its frame is the
//! only copy of it outside the process until the row group closes.
//!
//! Batch payloads are not compressed: compressing them (zstd at a fast level) cost the
//! recorder more CPU than the kernel spends copying them, and a log lives only as long as its
//! file is open, so its pages are mostly deleted before the kernel writes them back to disk.
//!
//! A frame is written with one `write` call; a process kill leaves at most the last frame
//! short, and a short or damaged frame ends the log ("torn tail"): what precedes it is
//! recovered, it and anything after it is not. The log is not fsynced: it survives the
//! process, not the machine (the complete Parquet file is fsynced before its rename).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

const MAGIC: &[u8; 8] = b"TGWAL002";
/// The first format: no checkpoints, no kind byte.
const MAGIC_V1: &[u8; 8] = b"TGWAL001";
const FRAME_HEAD: usize = 12;
const BATCH: u8 = b'B';
const CHECKPOINT: u8 = b'R';
/// Length and magic at the end of a Parquet footer.
const FOOTER_TAIL: usize = 8;

/// An open write-ahead log.
pub(crate) struct Wal {
    file: File,
    /// Bytes written and known complete.
    len: u64,
    frame: Vec<u8>,
}

impl Wal {
    /// Creates the log (it must not exist yet).
    pub(crate) fn create(path: &Path) -> io::Result<Wal> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
        file.write_all(MAGIC)?;
        Ok(Wal {
            file,
            len: MAGIC.len() as u64,
            frame: Vec::new(),
        })
    }

    /// Appends a batch of the open row group, given as its parts (one frame: the parts are
    /// logged together or not at all).
    pub(crate) fn append(&mut self, parts: &[RecordBatch]) -> io::Result<()> {
        let Some(first) = parts.first() else {
            return Ok(());
        };
        self.frame.clear();
        self.frame.resize(FRAME_HEAD, 0);
        self.frame.push(BATCH);
        {
            let mut w = StreamWriter::try_new(&mut self.frame, &first.schema()).map_err(to_io)?;
            for part in parts {
                w.write(part).map_err(to_io)?;
            }
            w.finish().map_err(to_io)?;
        }
        self.write_frame()
    }

    /// Appends a checkpoint: the row groups described by `footer` (a Parquet footer) are in
    /// the `.partial`, which holds them all up to byte `end`.
    pub(crate) fn checkpoint(&mut self, end: u64, footer: &[u8]) -> io::Result<()> {
        self.frame.clear();
        self.frame.resize(FRAME_HEAD, 0);
        self.frame.push(CHECKPOINT);
        self.frame.extend_from_slice(&end.to_le_bytes());
        self.frame.extend_from_slice(footer);
        self.write_frame()
    }

    /// Fills in the frame head and writes the frame. On an error the log is cut back to its
    /// last complete frame where possible; a short frame left behind is ignored by [`read`]
    /// anyway.
    fn write_frame(&mut self) -> io::Result<()> {
        let payload = self.frame.get(FRAME_HEAD..).unwrap_or_default();
        let (len, crc) = (payload.len() as u64, crc32fast::hash(payload));
        self.frame[..8].copy_from_slice(&len.to_le_bytes());
        self.frame[8..FRAME_HEAD].copy_from_slice(&crc.to_le_bytes());
        match self.file.write_all(&self.frame) {
            Ok(()) => {
                self.len += self.frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Bytes in the log.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

fn to_io(e: ArrowError) -> io::Error {
    io::Error::other(format!("encoding a write-ahead log frame: {e}"))
}

/// One complete frame, as [`read`] hands it over.
#[derive(Debug)]
pub(crate) enum Entry {
    /// A batch of the open row group.
    Batch(RecordBatch),
    /// Row groups closed since the previous checkpoint, all in the `.partial` up to `end`.
    Checkpoint { end: u64, metadata: ParquetMetaData },
}

/// What [`read`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WalSummary {
    /// Complete frames handed to the callback.
    pub(crate) frames: usize,
    /// Why reading stopped before the end of the file, if it did.
    pub(crate) torn: Option<String>,
}

/// Hands every complete frame to `each`, in order, and stops at the first short or damaged
/// frame. Errors: the log cannot be read or lacks the header, or `each` failed.
pub(crate) fn read(
    path: &Path,
    mut each: impl FnMut(Entry) -> io::Result<()>,
) -> io::Result<WalSummary> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: no log header: {e}", path.display())))?;
    let v1 = match &magic {
        m if m == MAGIC => false,
        m if m == MAGIC_V1 => true,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a Tollgate write-ahead log", path.display()),
            ))
        }
    };
    let mut at = MAGIC.len() as u64;
    let mut summary = WalSummary::default();
    let mut payload = Vec::new();
    loop {
        if at == total {
            return Ok(summary);
        }
        let mut head = [0u8; FRAME_HEAD];
        if r.read_exact(&mut head).is_err() {
            summary.torn = Some(format!("frame at byte {at}: header cut short"));
            return Ok(summary);
        }
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&head[..8]);
        let mut crc_bytes = [0u8; 4];
        crc_bytes.copy_from_slice(&head[8..]);
        let len = u64::from_le_bytes(len_bytes);
        let left = total.saturating_sub(at + FRAME_HEAD as u64);
        if len > left {
            summary.torn = Some(format!(
                "frame at byte {at}: {len} bytes announced, {left} left"
            ));
            return Ok(summary);
        }
        let Ok(len) = usize::try_from(len) else {
            summary.torn = Some(format!("frame at byte {at}: length {len} too large"));
            return Ok(summary);
        };
        payload.clear();
        payload.resize(len, 0);
        if let Err(e) = r.read_exact(&mut payload) {
            summary.torn = Some(format!("frame at byte {at}: {e}"));
            return Ok(summary);
        }
        if crc32fast::hash(&payload) != u32::from_le_bytes(crc_bytes) {
            summary.torn = Some(format!("frame at byte {at}: checksum mismatch"));
            return Ok(summary);
        }
        let entries = if v1 {
            decode_batches(&payload)
        } else {
            decode(&payload)
        };
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                summary.torn = Some(format!("frame at byte {at}: {e}"));
                return Ok(summary);
            }
        };
        for entry in entries {
            each(entry)?;
        }
        summary.frames += 1;
        at += FRAME_HEAD as u64 + len as u64;
    }
}

fn decode(payload: &[u8]) -> Result<Vec<Entry>, String> {
    match payload.split_first() {
        Some((&BATCH, rest)) => decode_batches(rest),
        Some((&CHECKPOINT, rest)) => {
            let (end, footer) = rest
                .split_first_chunk::<8>()
                .ok_or("checkpoint cut short")?;
            Ok(vec![Entry::Checkpoint {
                end: u64::from_le_bytes(*end),
                metadata: decode_footer(footer)?,
            }])
        }
        Some((kind, _)) => Err(format!("unknown frame kind {kind:#04x}")),
        None => Err("empty frame".into()),
    }
}

fn decode_batches(payload: &[u8]) -> Result<Vec<Entry>, String> {
    StreamReader::try_new(payload, None)
        .and_then(|r| r.collect::<Result<Vec<_>, _>>())
        .map(|batches| batches.into_iter().map(Entry::Batch).collect())
        .map_err(|e| e.to_string())
}

/// The metadata of a Parquet footer (FileMetaData, its length, "PAR1").
fn decode_footer(footer: &[u8]) -> Result<ParquetMetaData, String> {
    let split = footer
        .len()
        .checked_sub(FOOTER_TAIL)
        .ok_or("checkpoint footer cut short")?;
    let (metadata, tail) = footer.split_at(split);
    let tail: &[u8; FOOTER_TAIL] = tail.try_into().map_err(|_| "checkpoint footer cut short")?;
    let len = ParquetMetaDataReader::decode_footer_tail(tail)
        .map_err(|e| format!("checkpoint footer: {e}"))?
        .metadata_length();
    let start = metadata
        .len()
        .checked_sub(len)
        .ok_or("checkpoint footer: length exceeds the frame")?;
    ParquetMetaDataReader::decode_metadata(metadata.get(start..).unwrap_or_default())
        .map_err(|e| format!("checkpoint footer: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::ParquetMetaDataWriter;

    use super::*;

    fn batch(v: i32) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![v, v + 1]))]).unwrap()
    }

    /// What the frames say, with checkpoints as (end, rows in their row groups).
    #[derive(Debug, PartialEq)]
    enum Seen {
        Batch(RecordBatch),
        Checkpoint(u64, i64),
    }

    fn read_all(path: &Path) -> (Vec<Seen>, WalSummary) {
        let mut got = Vec::new();
        let summary = read(path, |e| {
            got.push(match e {
                Entry::Batch(b) => Seen::Batch(b),
                Entry::Checkpoint { end, metadata } => Seen::Checkpoint(
                    end,
                    metadata.row_groups().iter().map(|rg| rg.num_rows()).sum(),
                ),
            });
            Ok(())
        })
        .unwrap();
        (got, summary)
    }

    /// A footer holding one row group of `rows` rows.
    fn footer(rows: i32) -> Vec<u8> {
        let mut w = ArrowWriter::try_new(Vec::new(), batch(0).schema(), None).unwrap();
        let values: Vec<i32> = (0..rows).collect();
        let b = RecordBatch::try_new(batch(0).schema(), vec![Arc::new(Int32Array::from(values))])
            .unwrap();
        w.write(&b).unwrap();
        w.flush().unwrap();
        let rg = w.flushed_row_groups().to_vec();
        let fm = parquet::file::metadata::FileMetaData::new(
            1,
            i64::from(rows),
            None,
            None,
            rg[0].schema_descr_ptr(),
            None,
        );
        let md = ParquetMetaData::new(fm, rg);
        let mut out = Vec::new();
        ParquetMetaDataWriter::new(&mut out, &md).finish().unwrap();
        out
    }

    #[test]
    fn frames_read_back_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path).unwrap();
        wal.append(&[batch(1)]).unwrap();
        wal.checkpoint(1234, &footer(7)).unwrap();
        wal.append(&[batch(10)]).unwrap();
        let three = wal.len();
        wal.append(&[batch(20)]).unwrap();
        drop(wal);
        let (got, summary) = read_all(&path);
        assert_eq!(
            got,
            vec![
                Seen::Batch(batch(1)),
                Seen::Checkpoint(1234, 7),
                Seen::Batch(batch(10)),
                Seen::Batch(batch(20))
            ]
        );
        assert_eq!(summary.torn, None);
        let first_three = || {
            vec![
                Seen::Batch(batch(1)),
                Seen::Checkpoint(1234, 7),
                Seen::Batch(batch(10)),
            ]
        };

        // Cut the last frame short anywhere: the first three survive.
        let full = std::fs::read(&path).unwrap();
        for cut in [three as usize + 3, three as usize + 20, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (got, summary) = read_all(&path);
            assert_eq!(got, first_three(), "cut at {cut}");
            assert!(summary.torn.is_some());
        }

        // A damaged byte in the last frame: the same.
        let mut damaged = full.clone();
        let last = damaged.len() - 30;
        damaged[last] ^= 0x55;
        std::fs::write(&path, &damaged).unwrap();
        let (got, summary) = read_all(&path);
        assert_eq!(got, first_three());
        assert_eq!(
            summary.torn.as_deref(),
            Some(format!("frame at byte {three}: checksum mismatch").as_str())
        );
    }

    #[test]
    fn logs_of_the_first_format_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let mut bytes = MAGIC_V1.to_vec();
        for v in [1, 10] {
            let mut payload = Vec::new();
            let mut w = StreamWriter::try_new(&mut payload, &batch(v).schema()).unwrap();
            w.write(&batch(v)).unwrap();
            w.finish().unwrap();
            drop(w);
            bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (got, summary) = read_all(&path);
        assert_eq!(got, vec![Seen::Batch(batch(1)), Seen::Batch(batch(10))]);
        assert_eq!(summary.torn, None);
    }

    #[test]
    fn a_file_that_is_not_a_log_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        std::fs::write(&path, b"PAR1").unwrap();
        assert!(read(&path, |_| Ok(())).is_err());
    }
}
