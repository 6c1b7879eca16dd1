//! Decide: one shard's policy stage. It owns the shard's engine and decision cache, notices a
//! new policy version with one atomic load per request, and rebuilds its engine then; cached
//! decisions of the old version simply stop matching, as the version is part of the key.

use std::rc::Rc;
use std::sync::Arc;

use regorus::Value;

use super::cache::{DecisionCache, PrincipalKey};
use super::decision::Decision;
use super::engine::{input_value, word, Engine};
use super::store::PolicyStore;
use crate::record::DecisionInfo;

/// The policy stage of one shard: cache in front of engine, engine kept on the store's version.
#[derive(Debug)]
pub struct Decider {
    store: Arc<PolicyStore>,
    engine: Engine,
    /// The store version the engine was built for (the engine reports 0 when building failed
    /// and it denies everything; this still says which version was tried).
    version: u64,
    cache: DecisionCache,
}

impl Decider {
    /// A decider on `store` with a cache of `cache_capacity` decisions.
    pub fn new(store: Arc<PolicyStore>, cache_capacity: usize) -> Decider {
        let mut decider = Decider {
            store,
            engine: Engine::deny_all(),
            version: 0,
            cache: DecisionCache::new(cache_capacity),
        };
        decider.rebuild();
        decider
    }

    /// Decides a request. The key parts (principal subject and groups, connection name,
    /// fingerprint hash) are all a cache lookup needs; `input` builds the full input document
    /// (as JSON) only on a miss.
    pub fn decide<G: AsRef<str>>(
        &mut self,
        sub: &str,
        groups: &[G],
        connection: &str,
        fingerprint: u64,
        input: impl FnOnce() -> serde_json::Value,
    ) -> Rc<Decision> {
        let who = self.principal_key(sub, groups, connection, 0);
        self.decide_as(who, fingerprint, || {
            // A JSON document always converts (its numbers are finite); should it not, the
            // undefined input is denied by every policy that reads it and recorded as such.
            input_value(&input()).unwrap_or(Value::Undefined)
        })
    }

    /// The session-constant part of the cache key (see [`DecisionCache::principal_key`]).
    pub fn principal_key<G: AsRef<str>>(
        &self,
        sub: &str,
        groups: &[G],
        connection: &str,
        extra: u64,
    ) -> PrincipalKey {
        self.cache.principal_key(sub, groups, connection, extra)
    }

    /// Decides a request of the session whose key is `who`: the hot path of a session, which
    /// hashes only the fingerprint per statement. `input` builds the input document on a miss
    /// (see [`super::input`]).
    pub fn decide_as(
        &mut self,
        who: PrincipalKey,
        fingerprint: u64,
        input: impl FnOnce() -> Value,
    ) -> Rc<Decision> {
        if self.store.version() != self.version {
            self.rebuild();
        }
        let key = self.cache.key_for(who, self.version, fingerprint);
        if let Some(decision) = self.cache.get(&key) {
            return decision;
        }
        let input = input();
        let info = record_info(&input);
        let mut decision = self.engine.decide_value(input);
        decision.record = Some(Arc::new(info(&decision)));
        self.cache.insert(key, decision)
    }

    /// The policy version decisions are currently made with.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn cache(&self) -> &DecisionCache {
        &self.cache
    }

    /// Makes an engine for the store's current set. A set that loaded but whose engine cannot
    /// be built (it should not happen: loading builds one) denies everything, loudly.
    fn rebuild(&mut self) {
        let set = self.store.current();
        self.version = set.version();
        self.engine = set.engine().unwrap_or_else(|e| {
            tracing::error!(
                version = format_args!("{:016x}", set.version()),
                error = %e,
                "cannot build a policy engine for this shard; denying every request"
            );
            Engine::deny_all()
        });
    }
}

/// What a recording keeps of a decision: from its input, the fingerprint and every table the
/// request names (read before the input moves into the engine), then the decision itself.
fn record_info(input: &Value) -> impl FnOnce(&Decision) -> DecisionInfo {
    let request = &input[&word("request")];
    let tables_key = word("tables");
    let mut tables: Vec<String> = Vec::new();
    if let Ok(statements) = request[&word("statements")].as_array() {
        for table in statements
            .iter()
            .filter_map(|s| s[&tables_key].as_array().ok())
            .flatten()
            .filter_map(|t| t.as_string().ok())
        {
            if !tables.iter().any(|seen| **seen == **table) {
                tables.push(table.to_string());
            }
        }
    }
    let fingerprint = request[&word("fingerprint")]
        .as_string()
        .map(|f| f.to_string())
        .unwrap_or_default();
    move |decision| DecisionInfo {
        action: decision.action_str().to_owned(),
        rules: decision.rules.clone(),
        reason: decision.reason.clone(),
        fingerprint,
        tables,
    }
}
