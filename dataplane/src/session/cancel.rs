//! Query cancellation across shards. PostgreSQL clients cancel by opening a *new* connection
//! and sending the key they got in BackendKeyData; the kernel may hand that connection to any
//! shard. The gateway gives each client its own key, and this process-wide registry maps it to
//! the upstream's key, so whichever shard receives the CancelRequest can forward it. It is
//! touched once when a session starts, once when it ends and once per cancel: never per message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand::Rng;

/// Where and how to cancel the upstream query of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    pub upstream: SocketAddr,
    pub process_id: i32,
    pub secret_key: Vec<u8>,
}

struct Entry {
    secret: [u8; 4],
    target: CancelTarget,
}

/// The process-wide map from client-facing keys to upstream keys.
#[derive(Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, Entry>>,
}

/// The key handed to the client; the registry entry lives as long as this guard.
pub struct CancelKey {
    pub process_id: i32,
    pub secret_key: [u8; 4],
    registry: Arc<CancelRegistry>,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.entries.lock() {
            map.remove(&self.process_id);
        }
    }
}

impl CancelRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a session's upstream key and returns the key to give its client.
    pub fn register(self: &Arc<Self>, target: CancelTarget) -> CancelKey {
        let mut rng = rand::rng();
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            // Positive ids, like real backend pids, so clients that print them are not confused.
            let process_id = rng.random_range(1..i32::MAX);
            if map.contains_key(&process_id) {
                continue;
            }
            let secret: [u8; 4] = rng.random();
            map.insert(
                process_id,
                Entry {
                    secret,
                    target: target.clone(),
                },
            );
            return CancelKey {
                process_id,
                secret_key: secret,
                registry: Arc::clone(self),
            };
        }
    }

    /// Finds the upstream target for a client's cancel key; a wrong secret finds nothing.
    pub fn lookup(&self, process_id: i32, secret_key: &[u8]) -> Option<CancelTarget> {
        let map = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = map.get(&process_id)?;
        if secret_key.len() != entry.secret.len() {
            return None;
        }
        // Compare in constant time so the secret cannot be guessed byte by byte.
        let diff = entry
            .secret
            .iter()
            .zip(secret_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then(|| entry.target.clone())
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CancelTarget {
        CancelTarget {
            upstream: "127.0.0.1:5432".parse().expect("addr"),
            process_id: 4242,
            secret_key: vec![1, 2, 3, 4],
        }
    }

    #[test]
    fn lookup_needs_the_right_secret_and_ends_with_the_session() {
        let registry = CancelRegistry::new();
        let key = registry.register(target());
        assert_eq!(
            registry.lookup(key.process_id, &key.secret_key),
            Some(target())
        );
        let mut wrong = key.secret_key;
        wrong[0] ^= 1;
        assert_eq!(registry.lookup(key.process_id, &wrong), None);
        assert_eq!(registry.lookup(key.process_id, &wrong[..3]), None);
        let pid = key.process_id;
        drop(key);
        assert_eq!(registry.lookup(pid, &[0; 4]), None);
        assert!(registry.is_empty());
    }

    #[test]
    fn keys_are_distinct() {
        let registry = CancelRegistry::new();
        let keys: Vec<_> = (0..100).map(|_| registry.register(target())).collect();
        let ids: std::collections::HashSet<_> = keys.iter().map(|k| k.process_id).collect();
        assert_eq!(ids.len(), 100);
        assert!(keys.iter().all(|k| k.process_id > 0));
    }
}
