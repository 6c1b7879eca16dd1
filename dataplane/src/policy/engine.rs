//! Decide: the per-shard evaluator of `data.tollgate.decision`.
//!
//! The fast path is regorus' RVM: the set's compiled program, loaded into one `RegoVM` per
//! shard. The interpreter path serves sets the RVM compiler rejects and is kept for
//! comparison in the benches. Either way [`Engine::decide`] never fails and never panics: an
//! error, a panic inside the evaluator, an undefined result or a malformed document is a deny.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use regorus::rvm::program::Program;
use regorus::rvm::RegoVM;
use regorus::Value;

use super::decision::Decision;
use super::set::DECISION_RULE;
use super::Error;

/// Bytecode instructions one decision may execute. The shipped library runs a few hundred per
/// statement; the bound stops a runaway policy (a loop over a huge batch) with a deny instead
/// of stalling the shard.
const MAX_INSTRUCTIONS: usize = 1_000_000;

/// How an engine evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalPath {
    /// regorus' register VM running the compiled program (the fast path).
    Rvm,
    /// regorus' tree-walking interpreter.
    Interpreter,
}

/// One shard's evaluator. Not `Sync`; make one per shard with [`super::PolicySet::engine`].
pub struct Engine {
    version: u64,
    eval: Eval,
}

enum Eval {
    Rvm {
        vm: Box<RegoVM>,
        program: Arc<Program>,
        data: Value,
        /// Set after a panic inside the VM: its state is suspect, so it is rebuilt.
        poisoned: bool,
    },
    Interpreter(Box<regorus::Engine>),
    /// No policy loaded.
    DenyAll,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("version", &format_args!("{:016x}", self.version))
            .field("path", &self.path())
            .finish()
    }
}

impl Engine {
    pub(crate) fn rvm(version: u64, program: Arc<Program>, data: Value) -> Result<Engine, Error> {
        let vm = new_vm(&program, &data)?;
        Ok(Engine {
            version,
            eval: Eval::Rvm {
                vm,
                program,
                data,
                poisoned: false,
            },
        })
    }

    pub(crate) fn interpreter(version: u64, engine: regorus::Engine) -> Engine {
        Engine {
            version,
            eval: Eval::Interpreter(Box::new(engine)),
        }
    }

    /// An engine that denies everything: no policy is loaded.
    pub fn deny_all() -> Engine {
        Engine {
            version: 0,
            eval: Eval::DenyAll,
        }
    }

    /// The version of the policy set this engine evaluates.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Which evaluator runs (`None` for the policy-less engine).
    pub fn path(&self) -> Option<EvalPath> {
        match self.eval {
            Eval::Rvm { .. } => Some(EvalPath::Rvm),
            Eval::Interpreter(_) => Some(EvalPath::Interpreter),
            Eval::DenyAll => None,
        }
    }

    /// Decides one request. Never fails: every way of not getting a well-formed decision is
    /// [`Decision::deny_default`] with the reason.
    pub fn decide(&mut self, input: &serde_json::Value) -> Decision {
        match input_value(input) {
            Ok(input) => self.decide_value(input),
            Err(e) => Decision::deny_default(Error::Eval(format!("input: {e}")).to_string()),
        }
    }

    /// Decides one request whose input document is already a regorus value (see
    /// [`super::input`]): the data path's way, which skips the JSON document altogether.
    pub fn decide_value(&mut self, input: Value) -> Decision {
        match self.evaluate_value(input) {
            Ok(Value::Undefined) => {
                Decision::deny_default(format!("{DECISION_RULE} is undefined for this request"))
            }
            Ok(doc) => Decision::from_value(&doc).unwrap_or_else(|e| {
                Decision::deny_default(format!("malformed decision from the policy: {e}"))
            }),
            Err(e) => Decision::deny_default(e.to_string()),
        }
    }

    /// The raw decision document, for `tollctl policy explain`: `null` when undefined.
    pub fn evaluate(&mut self, input: &serde_json::Value) -> Result<serde_json::Value, Error> {
        let input = input_value(input).map_err(|e| Error::Eval(format!("input: {e}")))?;
        match self.evaluate_value(input)? {
            Value::Undefined => Ok(serde_json::Value::Null),
            doc => serde_json::to_value(&doc).map_err(|e| Error::Eval(e.to_string())),
        }
    }

    fn evaluate_value(&mut self, input: Value) -> Result<Value, Error> {
        match &mut self.eval {
            Eval::Rvm {
                vm,
                program,
                data,
                poisoned,
            } => {
                if *poisoned {
                    *vm = new_vm(program, data)?;
                    *poisoned = false;
                }
                let result = catch_unwind(AssertUnwindSafe(|| {
                    vm.set_input(input);
                    vm.execute()
                }));
                match result {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(Error::Eval(e.to_string())),
                    Err(_) => {
                        *poisoned = true;
                        Err(Error::Eval("the policy evaluator panicked".to_owned()))
                    }
                }
            }
            Eval::Interpreter(engine) => {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    engine.set_input(input);
                    engine.eval_rule(DECISION_RULE.to_owned())
                }));
                match result {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(Error::Eval(format!("{e:#}"))),
                    // The interpreter cleans its evaluation state at the start of every
                    // evaluation, so it stays usable.
                    Err(_) => Err(Error::Eval("the policy evaluator panicked".to_owned())),
                }
            }
            Eval::DenyAll => Err(Error::Eval("no policy is loaded".to_owned())),
        }
    }
}

fn new_vm(program: &Arc<Program>, data: &Value) -> Result<Box<RegoVM>, Error> {
    let mut vm = Box::new(RegoVM::new());
    vm.load_program(program.clone());
    vm.set_max_instructions(MAX_INSTRUCTIONS);
    vm.set_data(data.clone())
        .map_err(|e| Error::Eval(format!("loading data into the VM: {e}")))?;
    Ok(vm)
}

/// `input` as the regorus value the engine evaluates: the same document `Value::deserialize`
/// makes, with the input's common words shared (see [`Vocabulary`]).
pub fn input_value(input: &serde_json::Value) -> Result<Value, String> {
    VOCABULARY.with(|v| v.value(input))
}

/// `s` as a regorus string, shared when it is one of the input's common words.
pub(crate) fn word(s: &str) -> Value {
    VOCABULARY.with(|v| v.string(s))
}

thread_local! {
    /// One per thread (a shard is a thread), so sharing a word never touches another core's
    /// cache line (regorus' strings are `Arc`s).
    static VOCABULARY: Vocabulary = Vocabulary::new();
}

/// The words every input document repeats: its keys (`principal`, `statements`, `class` ...)
/// and the closed sets of values the analyser writes (`read`, `select`, `postgres` ...).
///
/// Converting the input to regorus' value type is a cost every decision pays. Going through
/// serde allocates every key and string twice; this conversion walks the document once and
/// shares these strings (a reference-count increment) instead of allocating them. Other
/// strings (subjects, table names, the fingerprint) are allocated as usual: nothing that
/// depends on a request is kept between decisions.
struct Vocabulary {
    words: Vec<Value>,
}

macro_rules! vocabulary {
    ($($word:literal),* $(,)?) => {
        const WORDS: &[&str] = &[$($word),*];

        /// The index of `s` in `WORDS`.
        fn word_index(s: &str) -> Option<usize> {
            let mut i = 0;
            $(
                if s == $word {
                    return Some(i);
                }
                i += 1;
            )*
            let _ = i;
            None
        }
    };
}

vocabulary! {
    // Keys, most frequent first (every statement repeats its twelve).
    "kind", "class", "tables", "columns", "functions", "has_where", "data_modifying_cte",
    "select_into", "for_update", "copy_direction", "copy_program", "parse_error",
    "principal", "sub", "groups", "connection", "name", "protocol", "labels", "env", "session",
    "client_addr", "application_name", "request", "fingerprint", "statements",
    "multi_statement",
    // Values from closed sets (`session` is a key above and a class).
    "read", "write", "ddl", "dcl", "transaction", "privileged", "select", "insert",
    "update", "delete", "from", "to", "sql", "postgres", "mysql", "human", "service",
}

impl Vocabulary {
    fn new() -> Vocabulary {
        Vocabulary {
            words: WORDS.iter().map(|w| Value::from(*w)).collect(),
        }
    }

    fn string(&self, s: &str) -> Value {
        word_index(s)
            .and_then(|i| self.words.get(i).cloned())
            .unwrap_or_else(|| Value::from(s))
    }

    /// `v` as a regorus value: the same document `Value::deserialize` makes.
    fn value(&self, v: &serde_json::Value) -> Result<Value, String> {
        Ok(match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Value::from(u)
                } else if let Some(i) = n.as_i64() {
                    Value::from(i)
                } else {
                    match n.as_f64() {
                        Some(f) if f.is_finite() => Value::from(f),
                        _ => return Err(format!("invalid number {n}")),
                    }
                }
            }
            serde_json::Value::String(s) => self.string(s),
            serde_json::Value::Array(items) => {
                let mut array = Vec::with_capacity(items.len());
                for item in items {
                    array.push(self.value(item)?);
                }
                Value::from(array)
            }
            serde_json::Value::Object(fields) if fields.is_empty() => Value::new_object(),
            serde_json::Value::Object(fields) => {
                let mut object = std::collections::BTreeMap::new();
                for (key, value) in fields {
                    object.insert(self.string(key), self.value(value)?);
                }
                Value::from(object)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use regorus::Value;
    use serde::Deserialize;
    use serde_json::json;

    use super::{Vocabulary, WORDS};

    #[test]
    fn input_converts_as_serde_does() {
        let vocabulary = Vocabulary::new();
        for doc in [
            json!({
                "principal": {"sub": "alice@example.com", "groups": ["eng", "dba"], "kind": "human"},
                "connection": {"name": "orders-prod", "protocol": "postgres", "labels": {"env": "prod"}},
                "session": {"client_addr": "10.0.0.7", "application_name": "psql"},
                "request": {"kind": "sql", "fingerprint": "select * from t where id = ?",
                            "statements": [{"kind": "select", "class": "read", "tables": ["public.t"],
                                            "columns": [], "functions": [], "has_where": true,
                                            "copy_direction": null, "parse_error": null}],
                            "multi_statement": false, "parse_error": null}
            }),
            json!({}),
            json!([]),
            json!({"a": {}, "b": [[], {}], "select": "select", "": ""}),
            json!({"n": [0, 1, -1, u64::MAX, i64::MIN, 0.5, -2.25, 1e300]}),
            json!("kind"),
            json!(null),
        ] {
            let ours = vocabulary.value(&doc).expect("converts");
            let serde = Value::deserialize(&doc).expect("deserializes");
            assert_eq!(ours, serde, "{doc}");
            assert_eq!(
                serde_json::to_value(&ours).expect("serializes"),
                serde_json::to_value(&serde).expect("serializes"),
            );
        }
    }

    #[test]
    fn vocabulary_words_are_distinct() {
        let mut words = WORDS.to_vec();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), WORDS.len(), "a word is listed twice");
    }
}
