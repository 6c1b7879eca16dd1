//! Decide: a policy set, the Rego files and JSON data of one directory compiled once.
//!
//! Loading parses every `*.rego` file (tests included), merges every `*.json` file into the
//! data document, compiles `data.tollgate.decision` from the non-test files to RVM bytecode and
//! evaluates it once on an empty input, so an error that regorus only reports at evaluation
//! time fails the load rather than the first request. The compiled program is shared by every
//! shard; each shard makes its own [`Engine`] from it (engines are not `Sync`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::unstable::{Parser, Rule, RuleHead};
use regorus::Value;

use super::engine::{Engine, EvalPath};
use super::suite::{self, TestCase, TestReport};
use super::Error;

/// The document the gateway reads.
pub const DECISION_RULE: &str = "data.tollgate.decision";

/// Rego test files: their rules only run in tests, never in decisions.
const TEST_SUFFIX: &str = "_test.rego";

/// A compiled, tested-on-demand set of policies and data. Shared (`Arc`) between the store and
/// every shard; immutable once loaded.
pub struct PolicySet {
    dir: PathBuf,
    version: u64,
    data: Value,
    /// The RVM program for [`DECISION_RULE`], or `None` when the set uses something the RVM
    /// compiler rejects; engines then use the interpreter.
    program: Option<Arc<Program>>,
    /// The non-test modules plus data, prepared: the interpreter path and `explain`.
    serving: Mutex<regorus::Engine>,
    /// Every module plus data: runs the `test_*` rules.
    full: Mutex<regorus::Engine>,
    rules: Vec<String>,
    tests: Vec<TestCase>,
}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySet")
            .field("dir", &self.dir)
            .field("version", &format_args!("{:016x}", self.version))
            .field("eval_path", &self.eval_path())
            .field("rules", &self.rules.len())
            .field("tests", &self.tests.len())
            .finish()
    }
}

/// One file of the directory, read.
struct SourceFile {
    path: PathBuf,
    text: String,
}

impl PolicySet {
    /// Loads and compiles every `*.rego` and `*.json` file under `dir` (recursively, in path
    /// order). Compile errors name the file and line.
    pub fn load(dir: &Path) -> Result<Arc<PolicySet>, Error> {
        let (rego, json) = read_dir(dir)?;
        if rego.is_empty() {
            return Err(Error::Empty(dir.to_path_buf()));
        }
        let version = content_version(dir, rego.iter().chain(json.iter()));
        let data = merge_data(&json)?;

        let mut serving = new_engine();
        let mut full = new_engine();
        serving
            .add_data(data.clone())
            .map_err(|e| data_error(dir, &e))?;
        full.add_data(data.clone())
            .map_err(|e| data_error(dir, &e))?;

        let mut packages = Vec::with_capacity(rego.len());
        for file in &rego {
            let name = file.path.display().to_string();
            let package = full
                .add_policy(name.clone(), file.text.clone())
                .map_err(|e| compile_error(&file.path, &e))?;
            if !is_test_file(&file.path) {
                serving
                    .add_policy(name, file.text.clone())
                    .map_err(|e| compile_error(&file.path, &e))?;
            }
            packages.push(package);
        }

        let (rules, tests) = inventory(&mut full, &rego, &packages)?;
        let full = test_engine(&data, &rego, &packages).unwrap_or(full);
        if !rules.iter().any(|r| r == DECISION_RULE) {
            return Err(Error::NoDecision);
        }

        let program = compile_program(&mut serving, dir)?;
        let set = PolicySet {
            dir: dir.to_path_buf(),
            version,
            data,
            program,
            serving: Mutex::new(serving),
            full: Mutex::new(full),
            rules,
            tests,
        };

        // Evaluate once: regorus reports some errors (a non-constant default, a conflict
        // between rule definitions) only when a rule runs.
        let mut probe = set.engine()?;
        probe
            .evaluate(&serde_json::json!({}))
            .map_err(|e| Error::Compile {
                file: error_file(&e.to_string()).unwrap_or_else(|| dir.to_path_buf()),
                message: e.to_string(),
            })?;
        Ok(Arc::new(set))
    }

    /// A set with no policy: every decision is deny. What a store serves before the first
    /// good load.
    pub fn deny_all() -> Arc<PolicySet> {
        Arc::new(PolicySet {
            dir: PathBuf::new(),
            version: 0,
            data: Value::new_object(),
            program: None,
            serving: Mutex::new(new_engine()),
            full: Mutex::new(new_engine()),
            rules: Vec::new(),
            tests: Vec::new(),
        })
    }

    /// A hash of the file names and contents: equal sets have equal versions.
    /// 0 is the policy-less [`PolicySet::deny_all`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The directory the set was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True for the policy-less set of [`PolicySet::deny_all`].
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule, as `data.<package>.<name>`, sorted: for `tollctl policy check`.
    pub fn rules(&self) -> Vec<String> {
        self.rules.clone()
    }

    /// How engines made from this set evaluate.
    pub fn eval_path(&self) -> EvalPath {
        if self.program.is_some() {
            EvalPath::Rvm
        } else {
            EvalPath::Interpreter
        }
    }

    /// Runs every `test_*` rule of every package, like `opa test`.
    pub fn run_tests(&self) -> TestReport {
        let engine = lock(&self.full).clone();
        suite::run(&engine, &self.tests)
    }

    /// A per-shard evaluator on the set's fastest path.
    pub fn engine(&self) -> Result<Engine, Error> {
        self.engine_on(self.eval_path())
    }

    /// A per-shard evaluator on the given path (the interpreter is there for comparison and
    /// for sets the RVM cannot compile).
    pub fn engine_on(&self, path: EvalPath) -> Result<Engine, Error> {
        if self.is_empty() {
            return Ok(Engine::deny_all());
        }
        match (path, &self.program) {
            (EvalPath::Rvm, Some(program)) => {
                Engine::rvm(self.version, program.clone(), self.data.clone())
            }
            (EvalPath::Rvm, None) => Err(Error::Eval(
                "this policy set has no RVM program; use the interpreter".to_owned(),
            )),
            (EvalPath::Interpreter, _) => Ok(Engine::interpreter(
                self.version,
                lock(&self.serving).clone(),
            )),
        }
    }

    /// The number of `test_*` rules.
    pub fn test_count(&self) -> usize {
        self.tests.len()
    }
}

fn new_engine() -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    // Rego v1 (`if`, `contains`, `in`, `every` are keywords) is regorus' default; say so.
    engine.set_rego_v0(false);
    engine
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded engines are only cloned from; a panic elsewhere cannot leave them half-made.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(TEST_SUFFIX))
}

/// Reads `*.rego` and `*.json` files under `dir`, recursively, sorted by path. Hidden files
/// and directories (editor swap files, `.git`) are skipped.
fn read_dir(dir: &Path) -> Result<(Vec<SourceFile>, Vec<SourceFile>), Error> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    paths.sort();
    let mut rego = Vec::new();
    let mut json = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("rego") => rego.push(SourceFile { path, text }),
            Some("json") => json.push(SourceFile { path, text }),
            _ => {}
        }
    }
    Ok((rego, json))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(io)?;
        if file_type.is_dir() {
            collect(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("rego" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// The version the files in `dir` would load as, without compiling them: the watcher's
/// change detector.
pub(super) fn dir_version(dir: &Path) -> Result<u64, Error> {
    let (rego, json) = read_dir(dir)?;
    Ok(content_version(dir, rego.iter().chain(json.iter())))
}

/// FNV-1a over (relative path, contents) of every file: stable across processes and
/// platforms, so `tollctl` and the logs of every instance show the same version for the same
/// files. 0 is reserved for "no policy".
fn content_version<'a>(dir: &Path, files: impl Iterator<Item = &'a SourceFile>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut files: Vec<&SourceFile> = files.collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(PRIME);
    };
    for f in files {
        let rel = f.path.strip_prefix(dir).unwrap_or(&f.path);
        feed(rel.to_string_lossy().as_bytes());
        feed(f.text.as_bytes());
    }
    if h == 0 {
        1
    } else {
        h
    }
}

/// Deep-merges the JSON data files into one object, at the data root. Two files may add keys to
/// the same object, but not give one key two different non-object values.
fn merge_data(files: &[SourceFile]) -> Result<Value, Error> {
    let mut merged = serde_json::Map::new();
    for file in files {
        let value: serde_json::Value =
            serde_json::from_str(&file.text).map_err(|e| Error::Data {
                file: file.path.clone(),
                message: e.to_string(),
            })?;
        let serde_json::Value::Object(obj) = value else {
            return Err(Error::Data {
                file: file.path.clone(),
                message: "a data file must hold a JSON object".to_owned(),
            });
        };
        merge_into(&mut merged, obj, "data").map_err(|message| Error::Data {
            file: file.path.clone(),
            message,
        })?;
    }
    Ok(Value::from(serde_json::Value::Object(merged)))
}

fn merge_into(
    into: &mut serde_json::Map<String, serde_json::Value>,
    from: serde_json::Map<String, serde_json::Value>,
    at: &str,
) -> Result<(), String> {
    for (key, value) in from {
        let path = format!("{at}.{key}");
        match (into.get_mut(&key), value) {
            (None, value) => {
                into.insert(key, value);
            }
            (Some(serde_json::Value::Object(existing)), serde_json::Value::Object(more)) => {
                merge_into(existing, more, &path)?;
            }
            (Some(existing), value) if *existing == value => {}
            (Some(_), _) => return Err(format!("{path} is already set by another data file")),
        }
    }
    Ok(())
}

/// Lists the rules (as `data.<package>.<name>`) and the tests of the loaded modules.
fn inventory(
    full: &mut regorus::Engine,
    rego: &[SourceFile],
    packages: &[String],
) -> Result<(Vec<String>, Vec<TestCase>), Error> {
    let mut rules = BTreeSet::new();
    let mut tests = Vec::new();
    let mut seen_tests = BTreeSet::new();
    let modules = full.get_modules().clone();
    for ((module, file), package) in modules.iter().zip(rego).zip(packages) {
        for rule in &module.policy {
            let refr = match rule.as_ref() {
                Rule::Spec { head, .. } => match head {
                    RuleHead::Compr { refr, .. }
                    | RuleHead::Set { refr, .. }
                    | RuleHead::Func { refr, .. } => refr,
                },
                Rule::Default { refr, .. } => refr,
            };
            let components =
                Parser::get_path_ref_components(refr).map_err(|e| compile_error(&file.path, &e))?;
            let Some(name) = components.first().map(|s| s.text().to_owned()) else {
                continue;
            };
            let path = format!("{package}.{name}");
            if name.starts_with("test_") && seen_tests.insert(path.clone()) {
                tests.push(TestCase {
                    rule: path.clone(),
                    file: file.path.clone(),
                    line: rule.span().line,
                });
            }
            rules.insert(path);
        }
    }
    Ok((rules.into_iter().collect(), tests))
}

/// The engine the tests run on: one module per package, the files of a package joined.
///
/// Why: regorus 0.14.1's interpreter can evaluate a rule wrongly under a test's
/// `with input as ...` when the rules of a package are spread over several modules (a deny
/// from one file is lost when another file adds to the same set); one module per package
/// evaluates correctly. The files were parsed one by one already, so errors and test
/// locations still name the real file and line. `None` when the joined text does not parse
/// (it should), and the per-file engine is used.
fn test_engine(data: &Value, rego: &[SourceFile], packages: &[String]) -> Option<regorus::Engine> {
    let mut joined: Vec<(&str, Vec<String>, String, Vec<String>)> = Vec::new();
    for (file, package) in rego.iter().zip(packages) {
        let idx = match joined.iter().position(|(p, ..)| *p == package.as_str()) {
            Some(i) => i,
            None => {
                joined.push((package.as_str(), Vec::new(), String::new(), Vec::new()));
                joined.len() - 1
            }
        };
        let (_, imports, body, names) = joined.get_mut(idx)?;
        names.push(file.path.display().to_string());
        let mut in_header = true;
        for line in file.text.lines() {
            let trimmed = line.trim_start();
            if in_header && trimmed.starts_with("package ") && line == trimmed {
                continue;
            }
            if line.starts_with("import ") {
                if !imports.iter().any(|i| i == line) {
                    imports.push(line.to_owned());
                }
                // Keep the line count, so line numbers inside a file's part stay close.
                body.push('\n');
                continue;
            }
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                in_header = false;
            }
            body.push_str(line);
            body.push('\n');
        }
        body.push('\n');
    }
    let mut engine = new_engine();
    engine.add_data(data.clone()).ok()?;
    for (package, imports, body, names) in joined {
        let package = package.strip_prefix("data.").unwrap_or(package);
        let text = format!("package {package}\n{}\n{body}", imports.join("\n"));
        engine
            .add_policy(format!("<package {package}: {}>", names.join(", ")), text)
            .ok()?;
    }
    // Prepare once (analysis, scheduling); every test then runs on a clone of this engine.
    engine.eval_query("true".to_owned(), false).ok()?;
    Some(engine)
}

/// Compiles the decision rule to RVM bytecode. A set the RVM compiler rejects still serves, on
/// the interpreter (slower), with a warning; a set the interpreter rejects fails to load.
fn compile_program(
    serving: &mut regorus::Engine,
    dir: &Path,
) -> Result<Option<Arc<Program>>, Error> {
    let entry: regorus::Rc<str> = regorus::Rc::from(DECISION_RULE);
    let compiled = serving
        .compile_with_entrypoint(&entry)
        .map_err(|e| Error::Compile {
            file: error_file(&format!("{e:#}")).unwrap_or_else(|| dir.to_path_buf()),
            message: format!("{e:#}"),
        })?;
    match Compiler::compile_from_policy(&compiled, &[DECISION_RULE]) {
        Ok(program) => Ok(Some(program)),
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "policy set does not compile to RVM bytecode; deciding on the (slower) interpreter"
            );
            Ok(None)
        }
    }
}

fn compile_error(file: &Path, e: &anyhow::Error) -> Error {
    Error::Compile {
        file: file.to_path_buf(),
        message: format!("{e:#}"),
    }
}

fn data_error(dir: &Path, e: &anyhow::Error) -> Error {
    Error::Data {
        file: dir.to_path_buf(),
        message: format!("{e:#}"),
    }
}

/// The file named by a regorus diagnostic (`--> path:line:col`), if any.
fn error_file(message: &str) -> Option<PathBuf> {
    let rest = &message[message.find("--> ")? + 4..];
    let end = rest.find(|c: char| c == '\n' || c.is_whitespace())?;
    let location = &rest[..end];
    // Strip ":line:col".
    let mut parts = location.rsplitn(3, ':');
    let _col = parts.next()?;
    let _line = parts.next()?;
    parts.next().map(PathBuf::from)
}
