//! Record stage, recorder thread: drains every shard's queue, hash-chains each session's
//! events, batches them into Arrow and writes them to the archive.
//!
//! ```text
//! shard queues ─▶ chain (hash per session) ─▶ batch per hour ─▶ Parquet (.partial) + log (.wal)
//!                                                                   close ─▶ rename to .parquet
//! ```
//!
//! A batch is written when it holds 32 Ki events or 8 MiB, or when its oldest event has waited
//! half of `flush_interval_ms`; so every event older than `flush_interval_ms` is in a
//! checkpointed row group or in a log (see `writer.rs`) and survives a kill of the process. A
//! file is closed past `rotate_bytes`, past `rotate_interval_s`, when its hour is over and no
//! late event came for it for 30 s, and on shutdown.
//!
//! Errors (disk full, permissions) are logged and retried with a growing delay (100 ms to
//! 5 s). While a batch cannot be written the thread stops draining the queues, so they fill
//! and sessions wait: events are held back, never dropped. A file whose write failed is
//! finished from its checkpoints and log (see `recover.rs`), at once or at a later retry. Only
//! at shutdown is there an end: after 10 s of failures the events still unwritten are reported
//! lost in the log with their count.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use crossbeam_channel::Receiver;
use parquet::basic::ZstdLevel;

use super::chain::{self, HASH_LEN, ZERO_HASH};
use super::event::{Body, DecisionInfo, Event};
use super::layout::{self, FilePaths, Hour};
use super::queue::{self, ShardQueue};
use super::recover::{self, Recovered};
use super::rows::Rows;
use super::schema::{self, BatchBuilder};
use super::writer::{AppendError, ArchiveFile};
use crate::config::RecordConfig;

/// A batch is written once it holds this many events...
const BATCH_EVENTS: usize = 32 * 1024;
/// ... or this many bytes of payload.
pub(crate) const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Events taken from one queue before looking at the next.
const DRAIN_ROUND: usize = 1024;
/// A file of an hour that is over is closed once no event came for it for this long.
const LATE_EVENT_GRACE: Duration = Duration::from_secs(30);
/// Housekeeping (rotation by time, retries) runs at most this often.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(50);
/// First and longest delay between retries after a write error.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Shortest and longest sleep of the thread between two looks at the queues.
const MIN_IDLE: Duration = Duration::from_micros(100);
const MAX_IDLE: Duration = Duration::from_millis(5);
/// How long shutdown keeps retrying failed writes.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(10);

/// The process-wide recorder: a queue per shard and the thread that drains them.
pub struct Recorder {
    dir: PathBuf,
    instance: String,
    queues: Vec<ShardQueue>,
    control: Arc<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// `DIR/.<instance>.lock`, locked for as long as this recorder may write (the kernel
    /// releases it when the process dies, so a crash leaves nothing to clean up).
    lock: Mutex<Option<File>>,
}

#[derive(Default)]
struct Control {
    stop: AtomicBool,
    /// Tests: end the thread at once, leaving files as a killed process would.
    crash: AtomicBool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.dir)
            .field("instance", &self.instance)
            .field("shards", &self.queues.len())
            .finish()
    }
}

impl Recorder {
    /// Creates the archive folder, finishes the files a previous run left unfinished (see
    /// `recover.rs`), and starts the recorder thread with one queue per shard (at least one).
    ///
    /// Errors: `zstd_level` out of range, the folder cannot be created or read, or the thread
    /// cannot be spawned. A file that cannot be recovered now is logged and retried by the
    /// thread.
    pub fn start(cfg: &RecordConfig, shards: usize) -> io::Result<Recorder> {
        let zstd = zstd_level(cfg.zstd_level)
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
        let instance = layout::instance_name(cfg.instance.as_deref());
        let lock = lock_instance(&dir, &instance)?;
        let found = layout::scan(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", dir.display())))?;
        let last_seq = found
            .iter()
            .filter(|f| f.instance == instance)
            .map(|f| f.seq)
            .max()
            .unwrap_or(0)
            .max(layout::read_seq_file(&dir, &instance));

        let mut broken = Vec::new();
        for paths in recover::leftovers(&found, &instance) {
            if !try_recover(&paths, zstd) {
                broken.push(paths);
            }
        }

        let (queues, receivers): (Vec<_>, Vec<_>) = (0..shards.max(1))
            .map(|_| queue::channel(cfg.queue_capacity, cfg.max_result_bytes))
            .unzip();
        let control = Arc::new(Control::default());
        let flush_every = Duration::from_millis(cfg.flush_interval_ms.max(1)) / 2;
        let worker = Worker {
            root: dir.clone(),
            instance: instance.clone(),
            schema: schema::schema(),
            flush_every,
            rotate_bytes: cfg.rotate_bytes.max(1),
            rotate_interval: Duration::from_secs(cfg.rotate_interval_s.max(1)),
            receivers,
            control: control.clone(),
            next_seq: last_seq + 1,
            chains: HashMap::default(),
            decisions: DecisionDigests::default(),
            pending: BTreeMap::new(),
            spare: None,
            unwritten: VecDeque::new(),
            files: BTreeMap::new(),
            broken,
            rows: Rows::default(),
            scratch: Vec::new(),
            zstd,
            retry_delay: FIRST_RETRY,
            retry_at: None,
            next_housekeeping: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("tollgate-record".into())
            .spawn(move || worker.run())?;
        tracing::info!(dir = %dir.display(), %instance, shards = queues.len(), "record: recording sessions");
        Ok(Recorder {
            dir,
            instance,
            queues,
            control,
            thread: Mutex::new(Some(thread)),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The queue of shard `index` (taken modulo the number of shards).
    pub fn shard(&self, index: usize) -> ShardQueue {
        // `start` makes at least one queue.
        self.queues[index % self.queues.len()].clone()
    }

    /// Drains every queue, writes and closes every file, and joins the thread. Later calls
    /// return at once; events pushed afterwards are not recorded (see [`ShardQueue::push`]).
    pub fn shutdown(&self) {
        self.stop_thread(false);
    }

    /// The archive root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This gateway's name in file names.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Tests: stops the thread the way `kill -9` would, leaving open files unfinished and
    /// events not yet logged unwritten.
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        self.stop_thread(true);
    }

    fn stop_thread(&self, crash: bool) {
        let Some(handle) = take(&self.thread) else {
            return;
        };
        if crash {
            self.control.crash.store(true, Ordering::Release);
        }
        self.control.stop.store(true, Ordering::Release);
        handle.thread().unpark();
        if handle.join().is_err() {
            tracing::error!("record: the recorder thread panicked");
        }
        // Nothing writes any more: another recorder may take the instance over.
        drop(take(&self.lock));
    }
}

/// Takes what `slot` holds, whether or not a panic poisoned its mutex.
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// Locks `DIR/.<instance>.lock`. A second gateway recording into the same folder under the
/// same instance name would take the first one's open files for a crashed run's leftovers,
/// rebuild and rename them under it, and both would number their files alike: it is refused.
fn lock_instance(dir: &Path, instance: &str) -> io::Result<File> {
    let path = layout::lock_file(dir, instance);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "another Tollgate is recording into {} as instance {instance:?} ({} is locked); \
                 give each gateway its own [record] instance or [record] dir",
                dir.display(),
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(io::Error::new(
            e.kind(),
            format!("locking {}: {e}", path.display()),
        )),
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The level `[record] zstd_level` names: 1 to 19, or zstd's fast levels -7 to -1 (not 0, which
/// the C library takes for its default level, 3).
pub(crate) fn zstd_level(level: i32) -> Result<ZstdLevel, String> {
    let why = || {
        format!(
            "record.zstd_level must be 1 to 19, or -7 to -1 for zstd's fast levels (got {level})"
        )
    };
    if !(1..=19).contains(&level) && !(-7..=-1).contains(&level) {
        return Err(why());
    }
    ZstdLevel::try_new(level).map_err(|_| why())
}

/// Recovers one file, logging what happened; false when it must be tried again.
fn try_recover(paths: &FilePaths, level: ZstdLevel) -> bool {
    match recover::recover(paths, level) {
        Ok(Recovered::Rebuilt {
            events,
            frames,
            torn,
        }) => {
            tracing::warn!(
                file = %paths.complete.display(),
                events, frames, torn = torn.as_deref().unwrap_or("no"),
                "record: recovered an unfinished file from its checkpoints and write-ahead log"
            );
            true
        }
        Ok(Recovered::AlreadyComplete | Recovered::Empty) => true,
        Err(e) => {
            tracing::error!(
                wal = %paths.wal.display(), error = %e,
                "record: cannot recover an unfinished file yet; will retry"
            );
            false
        }
    }
}

/// Where a session's chain stands.
struct Link {
    next_seq: u64,
    hash: [u8; HASH_LEN],
    /// The session's digest ([`chain::session_digest`]), computed at its first event.
    session: [u8; HASH_LEN],
}

/// Decision digests kept at most (then the table starts over).
const DECISION_DIGESTS: usize = 4096;

/// The digests of the decisions statements carried lately ([`chain::decision_digest`]), found
/// by the address of the decision's `Arc`, as the batch builder finds its dictionary keys.
#[derive(Default)]
struct DecisionDigests {
    keys: schema::ByAddress<DecisionInfo>,
    /// By key.
    digests: Vec<[u8; HASH_LEN]>,
}

impl DecisionDigests {
    fn get(&mut self, d: &Arc<DecisionInfo>, scratch: &mut Vec<u8>) -> [u8; HASH_LEN] {
        if self.digests.len() >= DECISION_DIGESTS {
            self.keys.clear();
            self.digests.clear();
        }
        let (key, new) = self.keys.key(d);
        if new {
            self.digests.push(chain::decision_digest(d, scratch));
        }
        // Keys are handed out in order, one per digest pushed.
        self.digests
            .get(key as usize)
            .copied()
            .unwrap_or_else(|| chain::decision_digest(d, scratch))
    }
}

/// A batch waiting to be written to its hour's file.
struct Sealed {
    hour: Hour,
    /// The batch as its parts, one per kind of event.
    batch: Vec<RecordBatch>,
    /// Its payload (see [`BatchBuilder::payload`]).
    payload: usize,
}

/// Events of one hour waiting to become a batch.
struct Pending {
    builder: BatchBuilder,
    since: Instant,
}

struct Worker {
    root: PathBuf,
    instance: String,
    schema: SchemaRef,
    flush_every: Duration,
    rotate_bytes: u64,
    rotate_interval: Duration,
    receivers: Vec<Receiver<Event>>,
    control: Arc<Control>,
    next_seq: u64,
    /// Each open session's last link, by session id. ahash rather than SipHash: a lookup per
    /// event, and SipHash of the 32-digit id took 3 % of the recorder.
    chains: HashMap<String, Link, ahash::RandomState>,
    /// Digests of the decisions statements carried lately, by the address of their `Arc`.
    decisions: DecisionDigests,
    pending: BTreeMap<Hour, Pending>,
    /// The builder of the last batch sealed, empty: the next batch reuses it, so that its
    /// buffers start at the size the last batch needed (see `schema::RowsColumn`).
    spare: Option<BatchBuilder>,
    /// Batches built but not yet written (normally empty; filled while writes fail).
    unwritten: VecDeque<Sealed>,
    files: BTreeMap<Hour, ArchiveFile>,
    /// Files whose write failed, to finish from their checkpoints and logs.
    broken: Vec<FilePaths>,
    rows: Rows,
    scratch: Vec<u8>,
    /// zstd level of the pages written (and of files rebuilt from their logs).
    zstd: ZstdLevel,
    retry_delay: Duration,
    retry_at: Option<Instant>,
    next_housekeeping: Instant,
}

impl Sealed {
    fn events(&self) -> usize {
        self.batch.iter().map(RecordBatch::num_rows).sum()
    }
}

impl Worker {
    fn run(mut self) {
        let mut idle = MIN_IDLE;
        loop {
            if self.control.crash.load(Ordering::Acquire) {
                return;
            }
            let stopping = self.control.stop.load(Ordering::Acquire);
            let now = Instant::now();
            self.write_unwritten();
            // Held-back batches stop the draining: the queues fill and sessions wait.
            let (taken, busiest) = if self.unwritten.is_empty() {
                self.drain()
            } else {
                (0, 0.0)
            };
            self.flush_old(now);
            if now >= self.next_housekeeping || stopping {
                self.housekeeping(now);
                self.next_housekeeping = now + HOUSEKEEPING_EVERY;
            }
            if stopping && taken == 0 && self.receivers.iter().all(Receiver::is_empty) {
                self.finish();
                return;
            }
            // Sleep while the queues fill slowly, longer and longer: a wake-up (a context
            // switch on a core the shards need) costs more than the few events it would
            // find. A queue that filled a quarter of its round (or of itself) since the last
            // look brings the next look closer.
            if busiest >= 1.0 || (stopping && taken > 0) {
                idle = MIN_IDLE;
                continue;
            }
            std::thread::park_timeout(idle);
            idle = if busiest >= 0.25 {
                MIN_IDLE
            } else {
                (idle * 2).min(MAX_IDLE)
            };
        }
    }

    /// Takes what the queues hold (a round of each), recording every event. Returns the
    /// events taken, and how much of its round (or of itself, if smaller) the fullest queue
    /// held: 1.0 when a queue may hold more.
    fn drain(&mut self) -> (usize, f64) {
        let mut taken = 0;
        let mut busiest: f64 = 0.0;
        for i in 0..self.receivers.len() {
            let Some(round) = self
                .receivers
                .get(i)
                .map(|rx| rx.capacity().unwrap_or(DRAIN_ROUND).clamp(1, DRAIN_ROUND))
            else {
                break;
            };
            let mut from_this = 0;
            while from_this < round {
                let Some(Ok(e)) = self.receivers.get(i).map(Receiver::try_recv) else {
                    break;
                };
                self.record(e);
                from_this += 1;
            }
            taken += from_this;
            busiest = busiest.max(from_this as f64 / round as f64);
        }
        (taken, busiest)
    }

    /// Chains one event and adds it to its hour's batch.
    fn record(&mut self, e: Event) {
        let decision = match &e.body {
            Body::Statement(st) => st
                .decision
                .as_ref()
                .map(|d| self.decisions.get(d, &mut self.scratch)),
            _ => None,
        };
        // One lookup per event: the link found here is updated in place below.
        let link = self.chains.get_mut(&e.session.id);
        let (prev, expected, session) = match &link {
            Some(link) => (link.hash, link.next_seq, link.session),
            None => (
                ZERO_HASH,
                0,
                chain::session_digest(&self.instance, &e.session, &mut self.scratch),
            ),
        };
        if e.seq != expected {
            tracing::warn!(
                session = %e.session.id, seq = e.seq, expected,
                "record: event out of sequence (the chain records it as it came)"
            );
        }
        match &e.body {
            Body::Result(r) => {
                self.rows.decode_pg(&r.rows_data, &r.columns);
                if self.rows.error.is_none() && self.rows.len() as u64 != r.kept_rows {
                    self.rows.error = Some(format!(
                        "rows_data holds {} rows, kept_rows says {}",
                        self.rows.len(),
                        r.kept_rows
                    ));
                }
                if let Some(why) = &self.rows.error {
                    tracing::warn!(session = %e.session.id, seq = e.seq, error = %why, "record: result rows did not decode completely");
                }
            }
            _ => self.rows.clear(),
        }
        let hash = chain::event_hash_v3(
            &prev,
            &session,
            decision.as_ref(),
            &e,
            &self.rows,
            &mut self.scratch,
        );
        let next = Link {
            next_seq: e.seq.wrapping_add(1),
            hash,
            session,
        };
        if matches!(e.body, Body::Disconnect(_)) {
            self.chains.remove(&e.session.id);
        } else if let Some(link) = link {
            *link = next;
        } else {
            self.chains.insert(e.session.id.clone(), next);
        }
        let hour = Hour::of(e.at_us);
        let spare = &mut self.spare;
        let pending = self.pending.entry(hour).or_insert_with(|| Pending {
            builder: spare.take().unwrap_or_default(),
            since: Instant::now(),
        });
        pending
            .builder
            .append(&self.instance, &e, &self.rows, &prev, &hash);
        if pending.builder.len() >= BATCH_EVENTS || pending.builder.payload() >= BATCH_BYTES {
            self.seal(hour);
            self.write_unwritten();
        }
    }

    /// Turns the hour's pending events into a batch waiting to be written.
    fn seal(&mut self, hour: Hour) {
        let Some(mut p) = self.pending.remove(&hour) else {
            return;
        };
        if p.builder.len() == 0 {
            return;
        }
        let payload = p.builder.payload();
        match p.builder.finish() {
            Ok(batch) => {
                self.unwritten.push_back(Sealed {
                    hour,
                    batch,
                    payload,
                });
                self.spare = Some(p.builder);
            }
            // Only a bug in the schema code can get here; say so loudly.
            Err(e) => tracing::error!(error = %e, "record: building a batch failed; events lost"),
        }
    }

    /// Seals and writes batches whose oldest event has waited long enough.
    fn flush_old(&mut self, now: Instant) {
        let due: Vec<Hour> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= self.flush_every)
            .map(|(h, _)| *h)
            .collect();
        for hour in due {
            self.seal(hour);
        }
        self.write_unwritten();
    }

    /// Writes held batches in order, stopping at the first failure; waits out the retry
    /// delay after a failure.
    fn write_unwritten(&mut self) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        while let Some(sealed) = self.unwritten.pop_front() {
            match self.write(&sealed) {
                Ok(()) => {
                    self.retry_delay = FIRST_RETRY;
                    self.retry_at = None;
                }
                Err(e) => {
                    tracing::error!(
                        error = %e, events = sealed.events(), retry_in = ?self.retry_delay,
                        "record: cannot write recorded events; holding them back and retrying"
                    );
                    self.unwritten.push_front(sealed);
                    self.retry_at = Some(Instant::now() + self.retry_delay);
                    self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
                    return;
                }
            }
        }
    }

    /// Writes one batch to its hour's file, opening one if needed.
    fn write(&mut self, sealed: &Sealed) -> io::Result<()> {
        let hour = sealed.hour;
        if !self.files.contains_key(&hour) {
            let file = self.open(hour)?;
            self.files.insert(hour, file);
        }
        let Some(file) = self.files.get_mut(&hour) else {
            return Err(io::Error::other("record: file vanished"));
        };
        match file.append(&sealed.batch, sealed.payload) {
            Ok(()) => {
                if file.size() >= self.rotate_bytes {
                    self.close(hour);
                }
                Ok(())
            }
            Err(AppendError::NotLogged(e)) => {
                self.abandon(hour);
                Err(e)
            }
            Err(AppendError::Logged(e)) => {
                // The batch is safe in the log; the file is finished from it.
                tracing::error!(error = %e, "record: Parquet write failed; finishing the file from its checkpoints and write-ahead log");
                self.abandon(hour);
                Ok(())
            }
        }
    }

    fn open(&mut self, hour: Hour) -> io::Result<ArchiveFile> {
        let seq = self.next_seq;
        let paths = FilePaths::new(&self.root, hour, &self.instance, seq);
        let file = ArchiveFile::create(paths, &self.schema, self.zstd)?;
        self.next_seq += 1;
        if let Err(e) = layout::write_seq_file(&self.root, &self.instance, seq) {
            tracing::warn!(error = %e, "record: cannot note the last file number (the archive scan still finds it)");
        }
        Ok(file)
    }

    /// Gives up on an open file after an error: it is finished from its checkpoints and log.
    fn abandon(&mut self, hour: Hour) {
        if let Some(file) = self.files.remove(&hour) {
            let paths = file.paths.clone();
            drop(file);
            if !try_recover(&paths, self.zstd) {
                self.broken.push(paths);
            }
        }
    }

    /// Seals and writes the hour's pending events, then closes its file.
    fn close(&mut self, hour: Hour) {
        if self.unwritten.iter().any(|s| s.hour == hour) {
            return; // Its batches are held back; close once they are written.
        }
        let Some(file) = self.files.remove(&hour) else {
            return;
        };
        match file.close() {
            Ok(paths) => {
                tracing::debug!(file = %paths.complete.display(), "record: file complete");
            }
            Err((paths, e)) => {
                tracing::error!(error = %e, "record: closing a file failed; finishing it from its checkpoints and write-ahead log");
                if !try_recover(&paths, self.zstd) {
                    self.broken.push(paths);
                }
            }
        }
    }

    /// Rotation by time and by the turn of the hour, and retries of broken files.
    fn housekeeping(&mut self, now: Instant) {
        let newest = self.files.keys().chain(self.pending.keys()).max().copied();
        let due: Vec<Hour> = self
            .files
            .iter()
            .filter(|(h, f)| {
                f.age() >= self.rotate_interval
                    || (Some(**h) < newest && f.idle() >= LATE_EVENT_GRACE)
            })
            .map(|(h, _)| *h)
            .collect();
        for hour in due {
            self.seal(hour);
            self.write_unwritten();
            self.close(hour);
        }
        if !self.broken.is_empty() && self.retry_at.is_none_or(|t| now >= t) {
            let broken = std::mem::take(&mut self.broken);
            for paths in broken {
                if !try_recover(&paths, self.zstd) {
                    self.broken.push(paths);
                }
            }
            if !self.broken.is_empty() {
                self.retry_at = Some(now + self.retry_delay);
                self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
            }
        }
    }

    /// Shutdown: writes everything held and closes every file.
    fn finish(&mut self) {
        let hours: Vec<Hour> = self.pending.keys().copied().collect();
        for hour in hours {
            self.seal(hour);
        }
        let give_up = Instant::now() + SHUTDOWN_PATIENCE;
        loop {
            self.retry_at = None;
            self.write_unwritten();
            if self.unwritten.is_empty() || Instant::now() >= give_up {
                break;
            }
            std::thread::sleep(self.retry_delay.min(Duration::from_millis(500)));
        }
        let lost: usize = self.unwritten.iter().map(Sealed::events).sum();
        if lost > 0 {
            tracing::error!(
                events = lost,
                "record: shutting down with recorded events that could not be written; they are lost"
            );
        }
        self.unwritten.clear();
        let hours: Vec<Hour> = self.files.keys().copied().collect();
        for hour in hours {
            self.close(hour);
        }
        for paths in std::mem::take(&mut self.broken) {
            if !try_recover(&paths, self.zstd) {
                tracing::error!(wal = %paths.wal.display(), "record: left for recovery at the next start");
            }
        }
        for (id, link) in &self.chains {
            tracing::debug!(session = %id, events = link.next_seq, "record: session open at shutdown");
        }
        // Events pushed after the queues were seen empty would be dropped with the queues.
        let late: usize = self.receivers.iter().map(|rx| rx.try_iter().count()).sum();
        if late > 0 {
            tracing::error!(
                events = late,
                "record: events pushed during shutdown were not recorded"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(n: usize) -> Arc<DecisionInfo> {
        Arc::new(DecisionInfo {
            action: "allow".into(),
            rules: vec![format!("rule-{n}")],
            reason: String::new(),
            fingerprint: format!("select {n}"),
            tables: Vec::new(),
        })
    }

    /// The table gives each decision its own digest, found again by its `Arc`, before and
    /// after it fills up and starts over.
    #[test]
    fn decision_digests_match_their_decisions_across_a_refill() {
        let mut table = DecisionDigests::default();
        let mut scratch = Vec::new();
        let all: Vec<Arc<DecisionInfo>> = (0..DECISION_DIGESTS + 10).map(decision).collect();
        for round in 0..2 {
            for d in &all {
                let want = chain::decision_digest(d, &mut Vec::new());
                assert_eq!(table.get(d, &mut scratch), want, "round {round}");
            }
        }
        assert!(table.digests.len() <= DECISION_DIGESTS);
        let first = &all[0];
        assert_eq!(
            table.get(first, &mut scratch),
            table.get(first, &mut scratch)
        );
        assert_ne!(
            table.get(&all[1], &mut scratch),
            table.get(first, &mut scratch)
        );
    }
}
