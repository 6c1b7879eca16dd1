//! Decide: the policy set's own tests, run like `opa test`. Every rule named `test_*` in every
//! package (by convention in `*_test.rego` files) is evaluated on the interpreter, which
//! supports `with` (the RVM does not): true passes, false or undefined fails, an error is an
//! error.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use regorus::Value;
use serde::Serialize;

/// One `test_*` rule found in the set.
#[derive(Debug, Clone)]
pub(crate) struct TestCase {
    /// `data.<package>.<name>`.
    pub rule: String,
    pub file: PathBuf,
    pub line: u32,
}

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "outcome", content = "error")]
pub enum TestOutcome {
    Pass,
    /// The rule was false or undefined.
    Fail,
    /// Evaluation failed; the message says why.
    Error(String),
}

/// One test's result.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// `data.<package>.<name>`.
    pub rule: String,
    pub file: PathBuf,
    pub line: u32,
    #[serde(flatten)]
    pub outcome: TestOutcome,
    pub duration: Duration,
}

/// Every test of a set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TestReport {
    pub results: Vec<TestResult>,
    pub duration: Duration,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, TestOutcome::Pass))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, TestOutcome::Fail))
    }

    pub fn errors(&self) -> usize {
        self.count(|o| matches!(o, TestOutcome::Error(_)))
    }

    /// True when every test passed (a set without tests passes).
    pub fn is_success(&self) -> bool {
        self.passed() == self.results.len()
    }

    /// The tests that did not pass.
    pub fn failures(&self) -> impl Iterator<Item = &TestResult> {
        self.results
            .iter()
            .filter(|r| !matches!(r.outcome, TestOutcome::Pass))
    }

    /// One line: the failing tests by name, for log lines and errors.
    pub fn failure_summary(&self) -> String {
        let names: Vec<String> = self
            .failures()
            .map(|r| match &r.outcome {
                TestOutcome::Error(e) => format!("{} (error: {e})", r.rule),
                _ => r.rule.clone(),
            })
            .collect();
        format!(
            "{} of {} failed: {}",
            names.len(),
            self.results.len(),
            names.join(", ")
        )
    }

    fn count(&self, f: impl Fn(&TestOutcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }
}

/// `opa test` style: one line per test that did not pass, then "N passed, N failed".
impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in self.failures() {
            match &r.outcome {
                TestOutcome::Error(e) => {
                    writeln!(f, "ERROR {} ({}:{}): {e}", r.rule, r.file.display(), r.line)?
                }
                _ => writeln!(f, "FAIL {} ({}:{})", r.rule, r.file.display(), r.line)?,
            }
        }
        write!(
            f,
            "{} passed, {} failed",
            self.passed(),
            self.failed() + self.errors()
        )
    }
}

/// Runs each test on its own clone of `engine` (prepared once), so no evaluation state carries
/// from one test to the next.
pub(crate) fn run(engine: &regorus::Engine, tests: &[TestCase]) -> TestReport {
    let started = Instant::now();
    let results = tests
        .iter()
        .map(|t| {
            let start = Instant::now();
            let mut engine = engine.clone();
            engine.set_input(Value::new_object());
            let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.eval_rule(t.rule.clone())
            })) {
                Ok(Ok(Value::Bool(true))) => TestOutcome::Pass,
                Ok(Ok(_)) => TestOutcome::Fail,
                Ok(Err(e)) => TestOutcome::Error(format!("{e:#}")),
                Err(_) => TestOutcome::Error("the evaluator panicked".to_owned()),
            };
            TestResult {
                rule: t.rule.clone(),
                file: t.file.clone(),
                line: t.line,
                outcome,
                duration: start.elapsed(),
            }
        })
        .collect();
    TestReport {
        results,
        duration: started.elapsed(),
    }
}
