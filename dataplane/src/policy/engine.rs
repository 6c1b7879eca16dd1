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
use serde::Deserialize;

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
        match self.evaluate_value(input)? {
            Value::Undefined => Ok(serde_json::Value::Null),
            doc => serde_json::to_value(&doc).map_err(|e| Error::Eval(e.to_string())),
        }
    }

    fn evaluate_value(&mut self, input: &serde_json::Value) -> Result<Value, Error> {
        if matches!(self.eval, Eval::DenyAll) {
            return Err(Error::Eval("no policy is loaded".to_owned()));
        }
        let input = Value::deserialize(input).map_err(|e| Error::Eval(format!("input: {e}")))?;
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
