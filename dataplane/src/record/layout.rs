//! Record stage, archive layout: where a file goes and what its name says.
//!
//! ```text
//! DIR/date=YYYY-MM-DD/hour=HH/<instance>-<seq>.parquet          complete
//! DIR/date=YYYY-MM-DD/hour=HH/<instance>-<seq>.parquet.partial  being written
//! DIR/date=YYYY-MM-DD/hour=HH/<instance>-<seq>.wal              its write-ahead log
//! DIR/date=YYYY-MM-DD/hour=HH/<instance>-<seq>.parquet.rebuild  being rebuilt by recovery
//! DIR/.<instance>.seq                                            last <seq> used
//! DIR/.<instance>.lock                                           held (flock) while recording
//! ```
//!
//! Partitions are Hive-style (`key=value` folders), in UTC, by the time of the events a file
//! holds. `<seq>` grows per instance for the life of the archive: the next one is one past the
//! largest found in the archive or in the `.seq` file, so names stay unique even after complete
//! files were shipped elsewhere and deleted.

use std::io;
use std::path::{Path, PathBuf};

/// Suffix of a complete file.
pub(crate) const PARQUET: &str = ".parquet";
/// Suffix of a file being written.
pub(crate) const PARTIAL: &str = ".parquet.partial";
/// Suffix of a write-ahead log.
pub(crate) const WAL: &str = ".wal";
/// Suffix of a file recovery is writing (not an archive file: [`scan`] skips it; recovery
/// deletes it with the rest of the file's leftovers).
pub(crate) const REBUILD: &str = ".parquet.rebuild";

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// One hour partition, as hours since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Hour(pub(crate) i64);

impl Hour {
    /// The partition an event at `at_us` (microseconds since the epoch, UTC) belongs to.
    pub(crate) fn of(at_us: i64) -> Hour {
        Hour(at_us.div_euclid(MICROS_PER_HOUR))
    }

    /// `date=YYYY-MM-DD/hour=HH`.
    pub(crate) fn partition(self) -> PathBuf {
        let days = self.0.div_euclid(24);
        let hour = self.0.rem_euclid(24);
        let (y, m, d) = civil_from_days(days);
        PathBuf::from(format!("date={y:04}-{m:02}-{d:02}")).join(format!("hour={hour:02}"))
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of a time in microseconds since the epoch.
pub(crate) fn format_utc(at_us: i64) -> String {
    let secs = at_us.div_euclid(1_000_000);
    let micros = at_us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = if m <= 2 { y + 1 } else { y };
    // Both are in range by construction; the fallbacks are never taken.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The paths of one archive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilePaths {
    pub(crate) complete: PathBuf,
    pub(crate) partial: PathBuf,
    pub(crate) wal: PathBuf,
    pub(crate) rebuild: PathBuf,
}

impl FilePaths {
    /// Paths of file `seq` of `instance` in partition `hour` under `root`.
    pub(crate) fn new(root: &Path, hour: Hour, instance: &str, seq: u64) -> FilePaths {
        let dir = root.join(hour.partition());
        let stem = format!("{instance}-{seq:08}");
        FilePaths::in_dir(&dir, &stem)
    }

    /// Paths of the file named `stem` (`<instance>-<seq>`) in `dir`.
    pub(crate) fn in_dir(dir: &Path, stem: &str) -> FilePaths {
        FilePaths {
            complete: dir.join(format!("{stem}{PARQUET}")),
            partial: dir.join(format!("{stem}{PARTIAL}")),
            wal: dir.join(format!("{stem}{WAL}")),
            rebuild: dir.join(format!("{stem}{REBUILD}")),
        }
    }
}

/// What a file name in the archive says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    Complete,
    Partial,
    Wal,
}

fn suffix_len(state: FileState) -> usize {
    match state {
        FileState::Complete => PARQUET.len(),
        FileState::Partial => PARTIAL.len(),
        FileState::Wal => WAL.len(),
    }
}

/// Splits `<instance>-<seq><suffix>` into its parts; `None` for any other name.
pub(crate) fn parse_name(name: &str) -> Option<(&str, u64, FileState)> {
    let (stem, state) = if let Some(s) = name.strip_suffix(PARTIAL) {
        (s, FileState::Partial)
    } else if let Some(s) = name.strip_suffix(PARQUET) {
        (s, FileState::Complete)
    } else if let Some(s) = name.strip_suffix(WAL) {
        (s, FileState::Wal)
    } else {
        return None;
    };
    let (instance, seq) = stem.rsplit_once('-')?;
    if instance.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((instance, seq.parse().ok()?, state))
}

/// One archive file found by [`scan`].
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) path: PathBuf,
    /// `<instance>-<seq>` as spelled in the name.
    pub(crate) stem: String,
    pub(crate) instance: String,
    pub(crate) seq: u64,
    pub(crate) state: FileState,
}

/// Every archive file (of any instance) under `root`, in path order.
pub(crate) fn scan(root: &Path) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    walk(root, |path, name| {
        if let Some((instance, seq, state)) = parse_name(name) {
            let stem_len = name.len().saturating_sub(suffix_len(state));
            found.push(Found {
                path: path.to_path_buf(),
                stem: name.get(..stem_len).unwrap_or(name).to_owned(),
                instance: instance.to_owned(),
                seq,
                state,
            });
        }
    })?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Every file under `root` whose name ends in `.parquet`, whatever the rest of its name, in
/// path order (so a renamed file is still read and verified).
pub(crate) fn parquet_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk(root, |path, name| {
        if name.ends_with(PARQUET) {
            files.push(path.to_path_buf());
        }
    })?;
    files.sort();
    Ok(files)
}

/// Calls `each` with the path and name of every regular file under `root`, to any depth;
/// symbolic links are not followed, names that are not UTF-8 are skipped.
fn walk(root: &Path, mut each: impl FnMut(&Path, &str)) -> io::Result<()> {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A folder deleted while we walk (a partition shipped away) is no error.
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let name = entry.file_name();
                if let Some(name) = name.to_str() {
                    each(&entry.path(), name);
                }
            }
        }
    }
    Ok(())
}

/// Where the last `<seq>` used by `instance` is kept.
pub(crate) fn seq_file(root: &Path, instance: &str) -> PathBuf {
    root.join(format!(".{instance}.seq"))
}

/// The file a running recorder holds locked, so that a second gateway with the same instance
/// name cannot take the first one's open files for a crash's leftovers.
pub(crate) fn lock_file(root: &Path, instance: &str) -> PathBuf {
    root.join(format!(".{instance}.lock"))
}

/// The last `<seq>` kept in the `.seq` file, 0 when there is none.
pub(crate) fn read_seq_file(root: &Path, instance: &str) -> u64 {
    std::fs::read_to_string(seq_file(root, instance))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Records `seq` as the last one used (write to a temporary file, then rename).
pub(crate) fn write_seq_file(root: &Path, instance: &str, seq: u64) -> io::Result<()> {
    let path = seq_file(root, instance);
    let tmp = root.join(format!(".{instance}.seq.tmp"));
    std::fs::write(&tmp, format!("{seq}\n"))?;
    std::fs::rename(&tmp, &path)
}

/// This gateway's name in file names: the configured one, or the host name made safe
/// (letters, digits, '_', '.', '-'; anything else becomes '_').
pub(crate) fn instance_name(configured: Option<&str>) -> String {
    let raw = match configured {
        Some(name) => name.to_owned(),
        None => host_name(),
    };
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "tollgate".to_owned()
    } else {
        clean
    }
}

/// The kernel's host name; the proc file is read rather than calling `gethostname` so that this
/// module needs no `unsafe`.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "tollgate".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_utc_dates_and_hours() {
        // 2024-02-29T23:59:59.999999Z, then one microsecond later.
        let leap = 1_709_251_199_999_999;
        assert_eq!(
            Hour::of(leap).partition(),
            PathBuf::from("date=2024-02-29/hour=23")
        );
        assert_eq!(
            Hour::of(leap + 1).partition(),
            PathBuf::from("date=2024-03-01/hour=00")
        );
        assert_eq!(
            Hour::of(0).partition(),
            PathBuf::from("date=1970-01-01/hour=00")
        );
        assert_eq!(
            Hour::of(-1).partition(),
            PathBuf::from("date=1969-12-31/hour=23")
        );
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(
            format_utc(1_709_251_199_999_999),
            "2024-02-29T23:59:59.999999Z"
        );
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn names_parse_back() {
        let p = FilePaths::new(Path::new("/r"), Hour::of(0), "gw-1.a", 42);
        assert_eq!(
            p.complete,
            PathBuf::from("/r/date=1970-01-01/hour=00/gw-1.a-00000042.parquet")
        );
        let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        assert_eq!(
            parse_name(&name(&p.complete).unwrap_or_default()),
            Some(("gw-1.a", 42, FileState::Complete))
        );
        assert_eq!(
            parse_name(&name(&p.partial).unwrap_or_default()),
            Some(("gw-1.a", 42, FileState::Partial))
        );
        assert_eq!(
            parse_name(&name(&p.wal).unwrap_or_default()),
            Some(("gw-1.a", 42, FileState::Wal))
        );
        assert_eq!(parse_name("notes.parquet"), None);
        assert_eq!(parse_name("-1.parquet"), None);
        assert_eq!(parse_name("gw-x1.parquet"), None);
    }

    #[test]
    fn instance_names_are_sanitised() {
        assert_eq!(instance_name(Some("gw 1/ä")), "gw_1__");
        assert_eq!(instance_name(Some("")), "tollgate");
        let host = instance_name(None);
        assert!(!host.is_empty());
        assert!(host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')));
    }
}
