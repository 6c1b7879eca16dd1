//! Decide: the per-shard decision cache. A decision is a pure function of (principal,
//! connection, statement facts, policy version), and the facts are a function of the
//! fingerprint, so the hot path for a repeated statement is normalise + hash + lookup.
//!
//! Keys are 128-bit hashes and nothing else is stored or compared: a lookup hashes a few
//! strings and probes a map, with no allocation. The collision argument: each half of the key
//! is SipHash-1-3 under its own secret 128-bit keys, drawn at random per cache, so a client who
//! does not know the keys cannot aim for a collision, and for honest traffic the chance that
//! any two of n distinct keys collide is about n²/2¹²⁹ — for 2⁴⁰ keys over a process's life,
//! about 2⁻⁴⁹. Replacing a decision by another principal's would need exactly such a
//! collision.
//!
//! Eviction is CLOCK: each slot has a referenced bit set by a hit; the hand clears bits until
//! it finds a slot that was not used since its last pass, and replaces that one.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::rc::Rc;

use super::decision::Decision;
use crate::sql;

/// A decision cache key: 128 bits of keyed hash over (policy version, principal subject,
/// principal groups as a set, connection name, fingerprint hash). Made by
/// [`DecisionCache::key`], valid for that cache only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(u128);

/// The session-constant half-way point of a [`CacheKey`], made by
/// [`DecisionCache::principal_key`]; valid for that cache only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrincipalKey([u64; 2]);

struct Slot {
    key: CacheKey,
    decision: Rc<Decision>,
    referenced: bool,
}

/// A bounded, per-shard (not `Send`) map from [`CacheKey`] to decision.
pub struct DecisionCache {
    /// Two independent SipHash keys, one per half of a [`PrincipalKey`].
    hashers: [RandomState; 2],
    /// Two more, one per half of a [`CacheKey`]: the per-statement mix, SipHash-1-3 over three
    /// words with the normaliser's word-at-a-time hasher (`DefaultHasher` would buffer the
    /// words byte by byte, at twice the cost on the cached path).
    mix_keys: [(u64, u64); 2],
    index: HashMap<CacheKey, usize, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
    hits: u64,
    misses: u64,
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl DecisionCache {
    /// A cache of at most `capacity` decisions; 0 disables caching.
    pub fn new(capacity: usize) -> DecisionCache {
        DecisionCache {
            hashers: [RandomState::new(), RandomState::new()],
            mix_keys: [
                (rand::random(), rand::random()),
                (rand::random(), rand::random()),
            ],
            index: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            slots: Vec::with_capacity(capacity),
            hand: 0,
            capacity,
            hits: 0,
            misses: 0,
        }
    }

    /// The key of a request. `groups` are taken as a set (order and repeats do not matter);
    /// `fingerprint` is the normaliser's hash of the statement text without literals.
    ///
    /// Only these inputs are in the key, so policies must not decide on anything else in
    /// `input` (the session's client address, say) without adding it here first.
    pub fn key<G: AsRef<str>>(
        &self,
        version: u64,
        sub: &str,
        groups: &[G],
        connection: &str,
        fingerprint: u64,
    ) -> CacheKey {
        self.key_for(
            self.principal_key(sub, groups, connection, 0),
            version,
            fingerprint,
        )
    }

    /// The part of a key that stays the same for a whole session (principal, connection and
    /// `extra`, a hash of whatever else of the session the decision may depend on), hashed
    /// once so that each statement's key costs two short hashes, not a pass over the strings.
    pub fn principal_key<G: AsRef<str>>(
        &self,
        sub: &str,
        groups: &[G],
        connection: &str,
        extra: u64,
    ) -> PrincipalKey {
        let [lo, hi] = &self.hashers;
        PrincipalKey([
            half(lo, sub, groups, connection, extra),
            half(hi, sub, groups, connection, extra),
        ])
    }

    /// The key of a statement with `fingerprint` for the session of `principal`.
    pub fn key_for(&self, principal: PrincipalKey, version: u64, fingerprint: u64) -> CacheKey {
        let [lo, hi] = self.mix_keys;
        let mix = |key, part| sql::sip13_words(key, &[part, version, fingerprint]);
        CacheKey(u128::from(mix(lo, principal.0[0])) << 64 | u128::from(mix(hi, principal.0[1])))
    }

    /// The cached decision for `key`, counting a hit or a miss. Does not allocate.
    pub fn get(&mut self, key: &CacheKey) -> Option<Rc<Decision>> {
        let found = self
            .index
            .get(key)
            .and_then(|&i| self.slots.get_mut(i))
            .map(|slot| {
                slot.referenced = true;
                slot.decision.clone()
            });
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    /// Stores `decision` under `key`, evicting the CLOCK victim when full, and returns the
    /// shared decision.
    pub fn insert(&mut self, key: CacheKey, decision: Decision) -> Rc<Decision> {
        let decision = Rc::new(decision);
        if self.capacity == 0 {
            return decision;
        }
        if let Some(slot) = self.index.get(&key).and_then(|&i| self.slots.get_mut(i)) {
            slot.decision = decision.clone();
            return decision;
        }
        let slot = Slot {
            key,
            decision: decision.clone(),
            referenced: false,
        };
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(slot);
            return decision;
        }
        // Full: advance the hand past recently used slots (clearing their bits) to a victim.
        // At most one full turn clears every bit, so this ends within two turns.
        let victim = loop {
            let hand = self.hand;
            self.hand = (self.hand + 1) % self.capacity;
            match self.slots.get_mut(hand) {
                Some(s) if s.referenced => s.referenced = false,
                Some(_) => break hand,
                None => break 0,
            }
        };
        if let Some(old) = self.slots.get_mut(victim) {
            self.index.remove(&old.key);
            *old = slot;
            self.index.insert(key, victim);
        }
        decision
    }

    /// Drops every entry (counters are kept).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
    }

    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn misses(&self) -> u64 {
        self.misses
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// One 64-bit half of a session's [`PrincipalKey`]. Groups are combined by adding their separate hashes, which does
/// not depend on their order.
fn half<G: AsRef<str>>(
    state: &RandomState,
    sub: &str,
    groups: &[G],
    connection: &str,
    extra: u64,
) -> u64 {
    let groups_hash = groups
        .iter()
        .fold(0u64, |acc, g| acc.wrapping_add(state.hash_one(g.as_ref())));
    let mut h = state.build_hasher();
    sub.hash(&mut h);
    groups_hash.hash(&mut h);
    connection.hash(&mut h);
    extra.hash(&mut h);
    h.finish()
}

/// The map's hasher: a [`CacheKey`] is already a uniform hash, so fold it instead of hashing
/// it again.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // Truncation intended: fold the two halves.
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}

#[cfg(test)]
mod principal_key_tests {
    use super::*;

    #[test]
    fn session_keys_match_full_keys_in_meaning() {
        let cache = DecisionCache::new(4);
        let alice = cache.principal_key("alice", &["eng", "dba"], "orders", 7);
        let alice_again = cache.principal_key("alice", &["dba", "eng"], "orders", 7);
        let bob = cache.principal_key("bob", &["eng", "dba"], "orders", 7);
        let other_session = cache.principal_key("alice", &["eng", "dba"], "orders", 8);
        let other_conn = cache.principal_key("alice", &["eng", "dba"], "billing", 7);
        assert_eq!(
            cache.key_for(alice, 1, 42),
            cache.key_for(alice_again, 1, 42)
        );
        for other in [bob, other_session, other_conn] {
            assert_ne!(cache.key_for(alice, 1, 42), cache.key_for(other, 1, 42));
        }
        assert_ne!(cache.key_for(alice, 1, 42), cache.key_for(alice, 2, 42));
        assert_ne!(cache.key_for(alice, 1, 42), cache.key_for(alice, 1, 43));
        // Keys belong to their cache: another cache's secrets give other keys.
        let other_cache = DecisionCache::new(4);
        let foreign = other_cache.principal_key("alice", &["eng", "dba"], "orders", 7);
        assert_ne!(
            cache.key_for(alice, 1, 42),
            other_cache.key_for(foreign, 1, 42)
        );
    }
}
