//! Policy stage tests: the shipped library (its own Rego tests and representative decisions
//! from Rust), loading errors, fail-closed evaluation, the cache and hot reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn shipped_set() -> Arc<PolicySet> {
    PolicySet::load(&shipped()).expect("the shipped policies load")
}

fn stmt(kind: &str, class: &str) -> Value {
    json!({"kind": kind, "class": class, "tables": ["public.customers"], "columns": ["id", "email"],
           "functions": [], "has_where": true, "data_modifying_cte": false, "select_into": false,
           "for_update": false, "copy_direction": null, "copy_program": false, "parse_error": null})
}

fn input(groups: &[&str], connection: &str, env: &str, statements: Vec<Value>) -> Value {
    json!({
        "principal": {"sub": "alice@example.com", "groups": groups, "kind": "human"},
        "connection": {"name": connection, "protocol": "postgres", "labels": {"env": env}},
        "session": {"client_addr": "10.0.0.7", "application_name": "psql"},
        "request": {"kind": "sql", "fingerprint": "select * from customers where id = ?",
                    "multi_statement": statements.len() > 1, "parse_error": null,
                    "statements": statements}
    })
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

#[test]
fn shipped_policy_tests_pass() {
    let set = shipped_set();
    let report = set.run_tests();
    assert!(
        report.results.len() >= 50,
        "found {} tests",
        report.results.len()
    );
    assert!(report.is_success(), "{report}");
    assert_eq!(
        report.to_string().lines().last(),
        Some(&*format!("{} passed, 0 failed", report.results.len()))
    );
}

#[test]
fn shipped_set_compiles_to_rvm_and_lists_rules() {
    let set = shipped_set();
    assert_eq!(set.eval_path(), EvalPath::Rvm);
    let rules = set.rules();
    for r in [
        "data.tollgate.decision",
        "data.tollgate.deny",
        "data.tollgate.allow",
        "data.tollgate.review",
        "data.tollgate.mask",
    ] {
        assert!(rules.iter().any(|x| x == r), "{r} missing from {rules:?}");
    }
    assert!(rules
        .iter()
        .any(|x| x.starts_with("data.tollgate_test.test_")));
    assert_ne!(set.version(), 0);
    assert_eq!(
        set.version(),
        PolicySet::load(&shipped()).expect("reload").version()
    );
}

#[test]
fn representative_decisions() {
    let set = shipped_set();
    for path in [EvalPath::Rvm, EvalPath::Interpreter] {
        let mut engine = set.engine_on(path).expect("engine");
        let read = engine.decide(&input(
            &["eng"],
            "orders-prod",
            "prod",
            vec![stmt("select", "read")],
        ));
        assert_eq!(read.action, Action::Allow, "{path:?} {read:?}");
        assert_eq!(read.rules, vec!["allow-read"]);
        assert_eq!(
            read.mask
                .columns
                .get("public.customers.email")
                .map(String::as_str),
            Some("email")
        );
        assert_eq!(read.mask.detectors, vec!["card", "email"]);
        assert_eq!(read.review, None);

        let ddl_eng = engine.decide(&input(
            &["eng"],
            "orders-prod",
            "prod",
            vec![stmt("create_table", "ddl")],
        ));
        assert_eq!(ddl_eng.action, Action::Deny);
        assert_eq!(ddl_eng.rules, vec!["prod-ddl-dba-only"]);
        assert!(ddl_eng.reason.contains("DBAs only"), "{}", ddl_eng.reason);

        let ddl_dba = engine.decide(&input(
            &["dba"],
            "orders-prod",
            "prod",
            vec![stmt("create_table", "ddl")],
        ));
        assert_eq!(ddl_dba.action, Action::Allow, "{ddl_dba:?}");
        assert!(ddl_dba.mask.is_empty());

        let delete = with(stmt("delete", "write"), "has_where", json!(false));
        let d = engine.decide(&input(&["dba"], "orders-dev", "dev", vec![delete]));
        assert_eq!(
            (d.action, d.rules.clone()),
            (Action::Deny, vec!["write-without-where".to_owned()])
        );

        let privileged = engine.decide(&input(
            &["dba"],
            "orders-dev",
            "dev",
            vec![stmt("alter_system", "privileged")],
        ));
        assert_eq!(
            (privileged.action, privileged.rules.clone()),
            (Action::Deny, vec!["no-privileged".to_owned()])
        );

        let unparsed = with(
            stmt("unknown", "unknown"),
            "parse_error",
            json!("syntax error at end of input"),
        );
        let p = engine.decide(&input(&["dba"], "orders-dev", "dev", vec![unparsed]));
        assert_eq!(p.action, Action::Deny);
        assert!(p.rules.contains(&"no-unparsed".to_owned()), "{p:?}");

        let batch = vec![
            stmt("select", "read"),
            stmt("update", "write"),
            stmt("truncate", "write"),
        ];
        let m = engine.decide(&input(&["eng"], "orders-dev", "dev", batch));
        assert_eq!(
            (m.action, m.rules.clone()),
            (Action::Deny, vec!["no-truncate".to_owned()])
        );
        assert!(m.reason.contains("statement 3 (truncate)"), "{}", m.reason);

        let review = engine.decide(&input(
            &["eng"],
            "orders-prod",
            "prod",
            vec![stmt("update", "write")],
        ));
        assert_eq!(review.action, Action::Review);
        assert_eq!(
            review.review,
            Some(Review {
                approvers: vec!["dba-leads".into()],
                wait_s: 120
            })
        );
    }
}

#[test]
fn rvm_and_interpreter_agree() {
    let set = shipped_set();
    let mut rvm = set.engine_on(EvalPath::Rvm).expect("rvm");
    let mut interp = set.engine_on(EvalPath::Interpreter).expect("interpreter");
    let statements = [
        stmt("select", "read"),
        stmt("update", "write"),
        with(stmt("update", "write"), "has_where", json!(false)),
        stmt("create_table", "ddl"),
        stmt("grant", "dcl"),
        stmt("truncate", "write"),
        stmt("alter_system", "privileged"),
        with(stmt("copy", "privileged"), "copy_program", json!(true)),
        with(
            stmt("select", "read"),
            "functions",
            json!(["pg_catalog.pg_read_file"]),
        ),
        with(stmt("select", "read"), "tables", json!(["public.secrets"])),
        with(stmt("select", "read"), "for_update", json!(true)),
        with(stmt("x", "unknown"), "parse_error", json!("syntax error")),
    ];
    let groups: [&[&str]; 6] = [
        &["eng"],
        &["dba"],
        &["analysts"],
        &["platform-admins"],
        &["break-glass"],
        &[],
    ];
    for s in &statements {
        for g in groups {
            for (conn, env) in [("orders-prod", "prod"), ("orders-dev", "dev")] {
                let i = input(g, conn, env, vec![stmt("select", "read"), s.clone()]);
                assert_eq!(rvm.decide(&i), interp.decide(&i), "{i}");
            }
        }
    }
}

#[test]
fn missing_fields_deny() {
    let set = shipped_set();
    let mut engine = set.engine().expect("engine");
    for bad in [
        json!({}),
        json!(null),
        json!("select 1"),
        json!({"principal": {"sub": "alice@example.com", "groups": ["eng"]}}),
        json!({"principal": {"groups": ["eng"]}, "connection": {"name": "orders-dev"},
               "request": {"statements": [{"class": "read"}]}}),
        json!({"principal": {"sub": "alice@example.com", "groups": ["eng"]}, "connection": {"name": "orders-dev"},
               "request": {"statements": [{"kind": "select"}]}}),
        input(&["eng"], "orders-dev", "dev", vec![]),
    ] {
        let d = engine.decide(&bad);
        assert_eq!(d.action, Action::Deny, "{bad} -> {d:?}");
        assert_eq!(d.rules, vec![DEFAULT_DENY_RULE], "{bad} -> {d:?}");
    }
}

#[test]
fn no_policy_denies() {
    let mut engine = PolicySet::deny_all().engine().expect("engine");
    let d = engine.decide(&input(
        &["dba"],
        "orders-dev",
        "dev",
        vec![stmt("select", "read")],
    ));
    assert_eq!(
        d,
        Decision::deny_default("evaluating data.tollgate.decision: no policy is loaded")
    );
    assert_eq!(Engine::deny_all().decide(&json!({})).action, Action::Deny);
}

/// Writes a minimal policy set: allow reads, with one test.
fn write_set(dir: &Path, allowed_class: &str) {
    std::fs::write(
        dir.join("policy.rego"),
        format!(
            r#"package tollgate

default decision := {{"action": "deny", "reason": "default", "rules": ["default-deny"]}}

decision := {{"action": "allow", "reason": "ok", "rules": ["allow-class"]}} if {{
	input.request.statements[0].class == "{allowed_class}"
}}
"#
        ),
    )
    .expect("write policy");
    std::fs::write(
        dir.join("policy_test.rego"),
        format!(
            r#"package tollgate_test

import data.tollgate

test_allowed_class if {{
	tollgate.decision.action == "allow" with input as {{"request": {{"statements": [{{"class": "{allowed_class}"}}]}}}}
}}
"#
        ),
    )
    .expect("write test");
}

fn class_input(class: &str) -> Value {
    json!({"request": {"statements": [{"class": class}]}})
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), "read");
    std::fs::write(
        dir.path().join("broken.rego"),
        "package tollgate\n\nbroken if {\n\tinput.x ==\n",
    )
    .expect("write");
    let err = PolicySet::load(dir.path()).expect_err("a syntax error must fail the load");
    let Error::Compile { file, message } = &err else {
        panic!("not a compile error: {err}")
    };
    assert!(file.ends_with("broken.rego"), "{err}");
    assert!(message.contains("broken.rego:"), "{message}");
}

#[test]
fn conflicting_decisions_deny() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.rego"),
        "package tollgate\n\ndecision := {\"action\": \"allow\", \"reason\": \"a\", \"rules\": [\"a\"]} if input.go\n\ndecision := {\"action\": \"allow\", \"reason\": \"b\", \"rules\": [\"b\"]} if input.go\n",
    )
    .expect("write");
    let set = PolicySet::load(dir.path()).expect("load");
    for path in [EvalPath::Rvm, EvalPath::Interpreter] {
        let d = set
            .engine_on(path)
            .expect("engine")
            .decide(&json!({"go": true}));
        assert_eq!(
            (d.action, d.rules.clone()),
            (Action::Deny, vec![DEFAULT_DENY_RULE.to_owned()]),
            "{path:?}"
        );
    }
}

#[test]
fn data_files_merge_and_conflicts_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.rego"),
        "package tollgate\n\ndecision := {\"action\": \"allow\", \"reason\": sprintf(\"%v %v\", [data.a.x, data.a.y]), \"rules\": [\"r\"]}\n",
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("data/one.json"), r#"{"a": {"x": 1}}"#).expect("write");
    std::fs::write(dir.path().join("data/two.json"), r#"{"a": {"y": 2}}"#).expect("write");
    let set = PolicySet::load(dir.path()).expect("load");
    let d = set.engine().expect("engine").decide(&json!({}));
    assert_eq!((d.action, d.reason.as_str()), (Action::Allow, "1 2"));

    std::fs::write(dir.path().join("data/three.json"), r#"{"a": {"x": 3}}"#).expect("write");
    let err = PolicySet::load(dir.path()).expect_err("conflicting data");
    assert!(
        err.to_string().contains("three.json") && err.to_string().contains("data.a.x"),
        "{err}"
    );
}

#[test]
fn malformed_decisions_deny() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (doc, why) in [
        (
            r#"{"action": "permit", "reason": "r", "rules": []}"#,
            "unknown action",
        ),
        (r#"{"action": "allow", "rules": []}"#, "`reason`"),
        (
            r#"{"action": "allow", "reason": "r", "rules": [1]}"#,
            "`rules`",
        ),
        (
            r#"{"action": "review", "reason": "r", "rules": ["x"]}"#,
            "needs `review`",
        ),
        (
            r#"{"action": "review", "reason": "r", "rules": ["x"], "review": {"approvers": [], "wait_s": 1}}"#,
            "empty",
        ),
        (
            r#"{"action": "allow", "reason": "r", "rules": ["x"], "mask": {"columns": {"a": 1}}}"#,
            "mask.columns",
        ),
        (r#""allow""#, "not an object"),
    ] {
        std::fs::write(
            dir.path().join("p.rego"),
            format!("package tollgate\n\ndecision := {doc}\n"),
        )
        .expect("write");
        let set = PolicySet::load(dir.path()).expect("load");
        let d = set.engine().expect("engine").decide(&json!({}));
        assert_eq!(d.action, Action::Deny, "{doc}");
        assert_eq!(d.rules, vec![DEFAULT_DENY_RULE]);
        assert!(d.reason.contains(why), "{doc}: {}", d.reason);
    }
}

#[test]
fn runaway_evaluation_denies() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.rego"),
        "package tollgate\n\nbig := [x | some x in numbers.range(1, 5000000)]\n\ndecision := {\"action\": \"allow\", \"reason\": \"r\", \"rules\": [\"r\"]} if {\n\tinput.go\n\tcount(big) > 0\n}\n",
    )
    .expect("write");
    let set = PolicySet::load(dir.path()).expect("load");
    let d = set.engine().expect("engine").decide(&json!({"go": true}));
    assert_eq!(d.action, Action::Deny, "{d:?}");
}

#[test]
fn most_restrictive_action() {
    use Action::*;
    assert_eq!(Action::most_restrictive(Allow, Review), Review);
    assert_eq!(Action::most_restrictive(Deny, Review), Deny);
    assert_eq!(Action::most_restrictive(Review, Deny), Deny);
    assert_eq!(Action::most_restrictive(Allow, Allow), Allow);
    assert_eq!(serde_json::to_value(Review).expect("json"), json!("review"));
}

#[test]
fn cache_counts_and_evicts() {
    let mut cache = DecisionCache::new(2);
    let a = cache.key(1, "alice", &["eng", "dba"], "orders-prod", 42);
    assert_eq!(
        a,
        cache.key(1, "alice", &["dba", "eng"], "orders-prod", 42),
        "groups are a set"
    );
    assert_ne!(
        a,
        cache.key(2, "alice", &["eng", "dba"], "orders-prod", 42),
        "version is in the key"
    );
    assert_ne!(a, cache.key(1, "bob", &["eng", "dba"], "orders-prod", 42));
    assert_ne!(a, cache.key(1, "alice", &["eng"], "orders-prod", 42));
    assert_ne!(a, cache.key(1, "alice", &["eng", "dba"], "orders-dev", 42));
    assert_ne!(a, cache.key(1, "alice", &["eng", "dba"], "orders-prod", 43));

    assert!(cache.get(&a).is_none());
    cache.insert(a, Decision::deny_default("a"));
    assert_eq!(
        cache.get(&a).map(|d| d.reason.clone()).as_deref(),
        Some("a")
    );
    assert_eq!((cache.hits(), cache.misses()), (1, 1));

    let b = cache.key(1, "b", &["x"], "c", 1);
    let c = cache.key(1, "c", &["x"], "c", 1);
    cache.insert(b, Decision::deny_default("b"));
    // a was used since inserted, b was not: b is the victim.
    cache.insert(c, Decision::deny_default("c"));
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&b).is_none());
    assert!(cache.get(&a).is_some());
    assert!(cache.get(&c).is_some());

    for i in 0..100u64 {
        let k = cache.key(1, "many", &["x"], "c", i);
        cache.insert(k, Decision::deny_default("many"));
        assert!(cache.len() <= 2);
    }
    assert_eq!(cache.capacity(), 2);

    let mut off = DecisionCache::new(0);
    off.insert(a, Decision::deny_default("a"));
    assert!(off.get(&a).is_none());
    assert!(off.is_empty());
}

#[test]
fn decider_caches_and_follows_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), "read");
    let store = PolicyStore::open(dir.path()).expect("open");
    let mut decider = Decider::new(store.clone(), 16);
    let mut built = 0;
    for _ in 0..3 {
        let d = decider.decide("alice", &["eng"], "c", 7, || {
            built += 1;
            class_input("read")
        });
        assert_eq!(d.action, Action::Allow);
    }
    assert_eq!(built, 1, "input is built only on a miss");
    assert_eq!((decider.cache().hits(), decider.cache().misses()), (2, 1));

    write_set(dir.path(), "write");
    let v = store.reload_now().expect("reload");
    assert_eq!(
        decider
            .decide("alice", &["eng"], "c", 7, || class_input("read"))
            .action,
        Action::Deny
    );
    assert_eq!(decider.version(), v);
}

#[test]
fn store_rejects_failing_sets_and_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), "read");
    let store = PolicyStore::open(dir.path()).expect("open");
    let good = store.version();

    // A set whose own test fails.
    std::fs::write(
        dir.path().join("extra_test.rego"),
        "package tollgate_test\n\ntest_wrong if {\n\tfalse\n}\n",
    )
    .expect("write");
    let err = store
        .reload_now()
        .expect_err("failing tests must be rejected");
    assert!(
        matches!(&err, Error::TestsFailed(s) if s.contains("test_wrong")),
        "{err}"
    );
    assert_eq!(store.version(), good);
    assert_eq!(store.current().version(), good);
}

#[test]
fn empty_store_denies_until_a_good_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PolicyStore::empty(dir.path());
    let mut decider = Decider::new(store.clone(), 4);
    assert_eq!(
        decider
            .decide("a", &["g"], "c", 1, || class_input("read"))
            .action,
        Action::Deny
    );
    assert!(
        store.reload_now().is_err(),
        "an empty directory is no policy"
    );
    write_set(dir.path(), "read");
    store.reload_now().expect("reload");
    assert_eq!(
        decider
            .decide("a", &["g"], "c", 1, || class_input("read"))
            .action,
        Action::Allow
    );
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hot_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), "read");
    let store = PolicyStore::open(dir.path()).expect("open");
    let v1 = store.version();
    let watcher = store.watch(Duration::from_millis(100)).expect("watch");
    let mut engine = store.current().engine().expect("engine");
    assert_eq!(engine.decide(&class_input("write")).action, Action::Deny);

    // A changed rule takes effect.
    write_set(dir.path(), "write");
    wait_for("the new version", || store.version() != v1);
    let v2 = store.version();
    let mut engine = store.current().engine().expect("engine");
    assert_eq!(engine.decide(&class_input("write")).action, Action::Allow);
    assert_eq!(engine.decide(&class_input("read")).action, Action::Deny);

    // A broken file is rejected; the last good set keeps serving.
    std::fs::write(
        dir.path().join("broken.rego"),
        "package tollgate\n\nbroken if {\n",
    )
    .expect("write");
    wait_for("the watcher to try the broken set", || {
        super::set::dir_version(dir.path()).ok() == store.last_tried()
    });
    assert_eq!(store.version(), v2);
    assert_eq!(
        store
            .current()
            .engine()
            .expect("engine")
            .decide(&class_input("write"))
            .action,
        Action::Allow
    );

    // Fixing it is picked up; SIGHUP's flag forces a reload of an unchanged directory.
    std::fs::remove_file(dir.path().join("broken.rego")).expect("rm");
    write_set(dir.path(), "read");
    wait_for("the fixed set", || store.version() == v1);
    store
        .reload_flag()
        .store(true, std::sync::atomic::Ordering::Release);
    wait_for("the requested reload", || {
        !store
            .reload_flag()
            .load(std::sync::atomic::Ordering::Acquire)
    });
    assert_eq!(store.version(), v1);
    watcher.stop();
}
