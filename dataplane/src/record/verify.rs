//! Record stage, verification: checks every session's hash chain in an archive and names the
//! sessions whose events were changed, removed, reordered or duplicated.
//!
//! Per session, events sorted by `seq`:
//!
//! - **changed**: the hash computed from the stored fields and stored `prev_hash` differs from
//!   the stored `hash`;
//! - **removed**: a gap in `seq` (a deleted file or rows), or an event whose `prev_hash` is the
//!   hash of no event of the session although the event before it is there;
//! - **reordered**: an event's `prev_hash` names another event than the one before it in `seq`
//!   order;
//! - **duplicated**: a `seq` stored more than once;
//! - **open**: no `disconnect` event. Not a fault in itself (a live session has none yet, a
//!   crashed gateway never wrote it), so it is listed apart and does not make the report
//!   unclean.
//!
//! A chain only shows edits that did not recompute every later hash of the session; see the
//! README on anchoring.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use super::chain::{HASH_LEN, ZERO_HASH};
use super::event::Body;
use super::layout;
use super::read::{self, Recorded};

/// What is wrong with one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The event's stored fields do not match its stored hash.
    Changed { seq: u64, file: PathBuf },
    /// Events `from_seq..=to_seq` are missing.
    Removed { from_seq: u64, to_seq: u64 },
    /// The event's `prev_hash` is the hash of no event of the session: the event stored
    /// before it is not the one that was recorded there.
    MissingPredecessor { seq: u64 },
    /// The event's `prev_hash` names event `follows` (`None`: it was recorded as the
    /// session's first), not the one before it.
    Reordered { seq: u64, follows: Option<u64> },
    /// The same `seq` is stored `copies` times.
    Duplicated { seq: u64, copies: usize },
}

/// One problem of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The session's id.
    pub session_id: String,
    /// What is wrong.
    pub problem: Problem,
}

/// A session with no `disconnect` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    /// The session's id.
    pub session_id: String,
    /// Events of it in the archive.
    pub events: usize,
    /// The highest `seq` stored.
    pub last_seq: u64,
    /// When that event happened (µs since the epoch, UTC).
    pub last_at_us: i64,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Archive files read.
    pub files: usize,
    /// Events in them.
    pub events: usize,
    /// Distinct sessions among the events.
    pub sessions: usize,
    /// Files (or the folder) that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Every problem found, by session id then `seq`.
    pub findings: Vec<Finding>,
    /// Sessions with no disconnect event.
    pub open: Vec<OpenSession>,
}

impl VerifyReport {
    /// True when every file was read and no session has a problem (open sessions allowed).
    pub fn is_clean(&self) -> bool {
        self.unreadable.is_empty() && self.findings.is_empty()
    }

    /// Ids of the sessions with a problem, each once, sorted.
    pub fn tampered_sessions(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .findings
            .iter()
            .map(|f| f.session_id.as_str())
            .collect();
        ids.dedup();
        ids
    }
}

/// Verifies every complete archive file under `dir`. Never fails: what cannot be read is
/// reported.
pub fn verify(dir: &Path) -> VerifyReport {
    let mut report = VerifyReport::default();
    let files = match read::files(dir) {
        Ok(files) => files,
        Err(e) => {
            report.unreadable.push((dir.to_path_buf(), e.to_string()));
            return report;
        }
    };
    let mut all = Vec::new();
    for path in files {
        match read::read_file(&path) {
            Ok(events) => {
                report.files += 1;
                all.extend(events);
            }
            Err(e) => report.unreadable.push((path, e.to_string())),
        }
    }
    report.events = all.len();
    let mut sessions: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    for r in &all {
        sessions
            .entry(r.event.session.id.as_str())
            .or_default()
            .push(r);
    }
    report.sessions = sessions.len();
    for (id, mut events) in sessions {
        events.sort_by_key(|r| r.event.seq);
        let mut problems = check_session(&events);
        problems.sort_by_key(problem_seq);
        report
            .findings
            .extend(problems.into_iter().map(|problem| Finding {
                session_id: id.to_owned(),
                problem,
            }));
        if !events
            .iter()
            .any(|r| matches!(r.event.body, Body::Disconnect(_)))
        {
            if let Some(last) = events.last() {
                report.open.push(OpenSession {
                    session_id: id.to_owned(),
                    events: events.len(),
                    last_seq: last.event.seq,
                    last_at_us: last.event.at_us,
                });
            }
        }
    }
    report
}

fn problem_seq(p: &Problem) -> u64 {
    match p {
        Problem::Changed { seq, .. }
        | Problem::MissingPredecessor { seq }
        | Problem::Reordered { seq, .. }
        | Problem::Duplicated { seq, .. } => *seq,
        Problem::Removed { from_seq, .. } => *from_seq,
    }
}

/// The problems of one session's events, sorted by `seq`.
fn check_session(events: &[&Recorded]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut by_hash: HashMap<[u8; HASH_LEN], u64> = HashMap::new();
    for r in events {
        if r.computed_hash() != r.hash {
            problems.push(Problem::Changed {
                seq: r.event.seq,
                file: r.file.clone(),
            });
        }
        by_hash.entry(r.hash).or_insert(r.event.seq);
    }
    // One event per seq for the chain; copies are reported.
    let mut distinct: Vec<&Recorded> = Vec::with_capacity(events.len());
    let mut i = 0;
    while let Some(first) = events.get(i) {
        let seq = first.event.seq;
        let copies = events[i..]
            .iter()
            .take_while(|r| r.event.seq == seq)
            .count();
        if copies > 1 {
            problems.push(Problem::Duplicated { seq, copies });
        }
        distinct.push(first);
        i += copies;
    }
    let mut expected = 0u64;
    for r in &distinct {
        let seq = r.event.seq;
        let gap_before = seq > expected;
        if gap_before {
            problems.push(Problem::Removed {
                from_seq: expected,
                to_seq: seq - 1,
            });
        }
        expected = seq.saturating_add(1);
        if r.prev_hash == ZERO_HASH {
            if seq != 0 && !gap_before {
                problems.push(Problem::Reordered { seq, follows: None });
            }
            continue;
        }
        match by_hash.get(&r.prev_hash) {
            Some(&p) if p.checked_add(1) == Some(seq) => {}
            // Events after `p` were removed without renumbering: the gap says so already.
            Some(&p) if p < seq && gap_before => {}
            Some(&p) => problems.push(Problem::Reordered {
                seq,
                follows: Some(p),
            }),
            None if gap_before => {}
            None => problems.push(Problem::MissingPredecessor { seq }),
        }
    }
    problems
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Changed { seq, file } => write!(
                f,
                "event {seq} changed (its fields do not match its hash; in {})",
                file.display()
            ),
            Problem::Removed { from_seq, to_seq } if from_seq == to_seq => {
                write!(f, "event {from_seq} removed")
            }
            Problem::Removed { from_seq, to_seq } => {
                write!(f, "events {from_seq} to {to_seq} removed")
            }
            Problem::MissingPredecessor { seq } => write!(
                f,
                "event {seq} removed or replaced before it (its previous hash matches no event)"
            ),
            Problem::Reordered { seq, follows: None } => write!(
                f,
                "events reordered: event {seq} was recorded as the session's first"
            ),
            Problem::Reordered {
                seq,
                follows: Some(p),
            } => write!(
                f,
                "events reordered: event {seq} was recorded after event {p}"
            ),
            Problem::Duplicated { seq, copies } => {
                write!(f, "event {seq} duplicated ({copies} copies)")
            }
        }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tampered = self.tampered_sessions().len();
        writeln!(
            f,
            "{} files, {} events, {} sessions: {}",
            self.files,
            self.events,
            self.sessions,
            if self.is_clean() {
                "every hash chain intact".to_owned()
            } else {
                format!(
                    "{tampered} sessions with problems, {} unreadable files",
                    self.unreadable.len()
                )
            }
        )?;
        for (path, why) in &self.unreadable {
            writeln!(f, "unreadable: {}: {why}", path.display())?;
        }
        for finding in &self.findings {
            writeln!(f, "session {}: {}", finding.session_id, finding.problem)?;
        }
        if !self.open.is_empty() {
            writeln!(
                f,
                "{} sessions open or incomplete (no disconnect event: live, or cut off by a crash):",
                self.open.len()
            )?;
            for s in &self.open {
                writeln!(
                    f,
                    "open: session {} ({} events, last seq {} at {})",
                    s.session_id,
                    s.events,
                    s.last_seq,
                    layout::format_utc(s.last_at_us)
                )?;
            }
        }
        Ok(())
    }
}
