//! Record stage, write-ahead log: the record batches of a file being written, handed to the
//! operating system as soon as they are built, so that a killed gateway loses none of them.
//!
//! ```text
//! file    = "TGWAL001" frame*
//! frame   = u64 LE payload length | u32 LE CRC-32 of the payload | payload
//! payload = one Arrow IPC stream: schema message, one record batch, end-of-stream marker
//! ```
//!
//! Payloads are not compressed: compressing them (zstd at a fast level) cost the recorder
//! more CPU than the kernel spends copying them, and a log lives only as long as its file is
//! open — under load a few seconds, so its pages are mostly deleted before the kernel writes
//! them back to disk.
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

const MAGIC: &[u8; 8] = b"TGWAL001";
const FRAME_HEAD: usize = 12;

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

    /// Appends one frame. On an error the log is cut back to its last complete frame where
    /// possible; a short frame left behind is ignored by [`read`] anyway.
    pub(crate) fn append(&mut self, batch: &RecordBatch) -> io::Result<()> {
        self.frame.clear();
        self.frame.resize(FRAME_HEAD, 0);
        {
            let mut w = StreamWriter::try_new(&mut self.frame, &batch.schema()).map_err(to_io)?;
            w.write(batch).map_err(to_io)?;
            w.finish().map_err(to_io)?;
        }
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

/// What [`read`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WalSummary {
    /// Complete frames handed to the callback.
    pub(crate) frames: usize,
    /// Why reading stopped before the end of the file, if it did.
    pub(crate) torn: Option<String>,
}

/// Hands every complete frame's batches to `each`, in order, and stops at the first short or
/// damaged frame. Errors: the log cannot be read or lacks the header, or `each` failed.
pub(crate) fn read(
    path: &Path,
    mut each: impl FnMut(RecordBatch) -> io::Result<()>,
) -> io::Result<WalSummary> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: no log header: {e}", path.display())))?;
    if &magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a Tollgate write-ahead log", path.display()),
        ));
    }
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
        let batches = match decode(&payload) {
            Ok(b) => b,
            Err(e) => {
                summary.torn = Some(format!("frame at byte {at}: {e}"));
                return Ok(summary);
            }
        };
        for b in batches {
            each(b)?;
        }
        summary.frames += 1;
        at += FRAME_HEAD as u64 + len as u64;
    }
}

fn decode(payload: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
    StreamReader::try_new(payload, None)?.collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(v: i32) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![v, v + 1]))]).unwrap()
    }

    fn read_all(path: &Path) -> (Vec<RecordBatch>, WalSummary) {
        let mut got = Vec::new();
        let summary = read(path, |b| {
            got.push(b);
            Ok(())
        })
        .unwrap();
        (got, summary)
    }

    #[test]
    fn frames_read_back_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path).unwrap();
        wal.append(&batch(1)).unwrap();
        wal.append(&batch(10)).unwrap();
        let two = wal.len();
        wal.append(&batch(20)).unwrap();
        drop(wal);
        let (got, summary) = read_all(&path);
        assert_eq!(got, vec![batch(1), batch(10), batch(20)]);
        assert_eq!(summary.torn, None);

        // Cut the last frame short anywhere: the first two survive.
        let full = std::fs::read(&path).unwrap();
        for cut in [two as usize + 3, two as usize + 20, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (got, summary) = read_all(&path);
            assert_eq!(got, vec![batch(1), batch(10)], "cut at {cut}");
            assert!(summary.torn.is_some());
        }

        // A damaged byte in the last frame: the same.
        let mut damaged = full.clone();
        let last = damaged.len() - 30;
        damaged[last] ^= 0x55;
        std::fs::write(&path, &damaged).unwrap();
        let (got, summary) = read_all(&path);
        assert_eq!(got, vec![batch(1), batch(10)]);
        assert_eq!(
            summary.torn.as_deref(),
            Some(format!("frame at byte {two}: checksum mismatch").as_str())
        );
    }

    #[test]
    fn a_file_that_is_not_a_log_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        std::fs::write(&path, b"PAR1").unwrap();
        assert!(read(&path, |_| Ok(())).is_err());
    }
}
