//! Decide: the current policy set, and hot reload.
//!
//! A [`PolicyStore`] holds the set every shard decides with, in an atomically swapped slot,
//! plus its version in an atomic so a shard's per-request check is one load. A reload — from
//! the [`Watcher`] thread when the directory's contents change, from SIGHUP through
//! [`PolicyStore::reload_flag`], or from [`PolicyStore::reload_now`] — compiles the directory,
//! runs the set's own tests, and swaps only a set that passes; a set that fails to compile or
//! to pass its tests is rejected with an error log line that says why, and the last good set
//! keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::set::{self, PolicySet};
use super::Error;

/// The policy set in force, shared by every shard.
pub struct PolicyStore {
    dir: PathBuf,
    current: ArcSwap<PolicySet>,
    version: AtomicU64,
    /// Set by SIGHUP (or anyone) to ask the watcher for a reload at its next tick.
    reload_requested: Arc<AtomicBool>,
    /// Serialises reloads; holds the content version last tried, good or bad, so the watcher
    /// tries a rejected directory again only once it changes.
    last_tried: Mutex<Option<u64>>,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("dir", &self.dir)
            .field("version", &format_args!("{:016x}", self.version()))
            .finish()
    }
}

impl PolicyStore {
    /// Loads and tests the set in `dir`; fails if it does not compile or its tests fail.
    pub fn open(dir: &Path) -> Result<Arc<PolicyStore>, Error> {
        let set = load_tested(dir)?;
        let store = PolicyStore::with_set(dir, set);
        if let Ok(mut last) = store.last_tried.lock() {
            *last = Some(store.version());
        }
        Ok(Arc::new(store))
    }

    /// A store for `dir` that serves no policy (every decision is deny) until a reload
    /// succeeds: for starting the gateway while the policy repository is broken.
    pub fn empty(dir: &Path) -> Arc<PolicyStore> {
        Arc::new(PolicyStore::with_set(dir, PolicySet::deny_all()))
    }

    fn with_set(dir: &Path, set: Arc<PolicySet>) -> PolicyStore {
        PolicyStore {
            dir: dir.to_path_buf(),
            version: AtomicU64::new(set.version()),
            current: ArcSwap::new(set),
            reload_requested: Arc::new(AtomicBool::new(false)),
            last_tried: Mutex::new(None),
        }
    }

    /// The set in force.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// The version of the set in force (0: no policy). One atomic load: shards call this per
    /// request and rebuild their engine when it changes.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Compiles and tests the directory now and swaps the set in if it passes. Returns the
    /// version in force afterwards; on error the previous set keeps serving.
    pub fn reload_now(&self) -> Result<u64, Error> {
        let mut last = self
            .last_tried
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = load_tested(&self.dir);
        let tried = match &result {
            Ok(set) => Some(set.version()),
            Err(_) => set::dir_version(&self.dir).ok(),
        };
        *last = tried;
        match result {
            Ok(set) => {
                let version = set.version();
                let old = self.version();
                if version != old {
                    self.current.store(set);
                    self.version.store(version, Ordering::Release);
                    tracing::info!(
                        dir = %self.dir.display(),
                        version = format_args!("{version:016x}"),
                        previous = format_args!("{old:016x}"),
                        "policy set reloaded"
                    );
                }
                Ok(version)
            }
            Err(e) => {
                tracing::error!(
                    dir = %self.dir.display(),
                    error = %e,
                    serving = format_args!("{:016x}", self.version()),
                    "policy reload rejected; the last good set keeps serving"
                );
                Err(e)
            }
        }
    }

    /// The flag the watcher polls: `signal_hook::flag::register(SIGHUP, store.reload_flag())`
    /// makes SIGHUP force a reload at the watcher's next tick.
    pub fn reload_flag(&self) -> Arc<AtomicBool> {
        self.reload_requested.clone()
    }

    /// Asks the watcher for a reload at its next tick, whether or not the files changed.
    pub fn request_reload(&self) {
        self.reload_requested.store(true, Ordering::Release);
    }

    /// Starts a thread that, every `interval`, reloads when the directory's contents changed
    /// since the last attempt or a reload was requested. Stops when the [`Watcher`] is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> Result<Watcher, Error> {
        let store = self.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let thread = std::thread::Builder::new()
            .name("policy-watch".to_owned())
            .spawn(move || {
                while !stop_thread.load(Ordering::Acquire) {
                    std::thread::park_timeout(interval);
                    if stop_thread.load(Ordering::Acquire) {
                        break;
                    }
                    store.tick();
                }
            })
            .map_err(|source| Error::Io {
                path: self.dir.clone(),
                source,
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }

    /// The content version of the last reload attempt, good or bad.
    pub(super) fn last_tried(&self) -> Option<u64> {
        *self
            .last_tried
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One watcher tick: reload if asked to or if the contents changed since the last try.
    fn tick(&self) {
        let requested = self.reload_requested.swap(false, Ordering::AcqRel);
        let changed = match set::dir_version(&self.dir) {
            Ok(now) => self.last_tried() != Some(now),
            Err(e) => {
                // A directory being replaced (git checkout) can vanish for a moment; the next
                // tick sees it again. Say so once per failure, at debug level.
                tracing::debug!(dir = %self.dir.display(), error = %e, "policy directory unreadable");
                false
            }
        };
        if requested || changed {
            // reload_now logs the outcome.
            let _ = self.reload_now();
        }
    }
}

/// The watcher thread of a [`PolicyStore`]; stops and joins it when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Loads the set in `dir` and runs its tests: the gate every set passes before it serves.
pub fn load_tested(dir: &Path) -> Result<Arc<PolicySet>, Error> {
    let set = PolicySet::load(dir)?;
    let report = set.run_tests();
    if !report.is_success() {
        return Err(Error::TestsFailed(report.failure_summary()));
    }
    Ok(set)
}
