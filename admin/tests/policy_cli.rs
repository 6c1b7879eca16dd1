//! `tollctl policy` as a policy author runs it, against the shipped policies and broken copies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tollctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollctl"))
        .args(args)
        .output()
        .expect("run tollctl")
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_of_shipped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(shipped()).expect("policies") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
    }
    dir
}

#[test]
fn shipped_policies_check_and_pass_their_tests() {
    let dir = shipped();
    let dir = dir.to_str().expect("utf8");
    let check = tollctl(&["policy", "check", dir]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("data.tollgate.decision"),
        "{}",
        text(&check)
    );
    let test = tollctl(&["policy", "test", dir]);
    assert!(test.status.success(), "{}", text(&test));
    assert!(text(&test).contains("FAIL: 0"), "{}", text(&test));
}

#[test]
fn a_failing_test_fails_the_run_and_is_named() {
    let dir = copy_of_shipped();
    std::fs::write(
        dir.path().join("wrong_test.rego"),
        "package tollgate_test\n\ntest_wrong_on_purpose if {\n\t1 == 2\n}\n",
    )
    .expect("write");
    let out = tollctl(&["policy", "test", dir.path().to_str().expect("utf8")]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("test_wrong_on_purpose: FAIL"), "{t}");
}

#[test]
fn a_syntax_error_names_the_file() {
    let dir = copy_of_shipped();
    std::fs::write(
        dir.path().join("oops.rego"),
        "package tollgate\n\nallow contains {{ if\n",
    )
    .expect("write");
    let out = tollctl(&["policy", "check", dir.path().to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("oops.rego"), "{}", text(&out));
}

#[test]
fn explain_shows_fingerprint_facts_and_the_decision() {
    let dir = shipped();
    let dir = dir.to_str().expect("utf8");
    let out = tollctl(&[
        "policy",
        "explain",
        dir,
        "--sql",
        "DELETE FROM customers /* all of them */",
        "--sub",
        "eve@example.com",
        "--groups",
        "eng",
        "--connection",
        "orders",
        "--label",
        "env=prod",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("fingerprint: delete from customers"), "{t}");
    assert!(t.contains("\"has_where\": false"), "{t}");
    assert!(t.contains("\"action\": \"deny\""), "{t}");
    let read = tollctl(&[
        "policy",
        "explain",
        dir,
        "--sql",
        "select name from customers where id = 7",
        "--sub",
        "ann@example.com",
        "--groups",
        "analysts",
        "--connection",
        "orders",
    ]);
    let t = text(&read);
    assert!(t.contains("\"action\": \"allow\""), "{t}");
    assert!(t.contains("where id = ?"), "the literal is replaced: {t}");
    assert!(!t.contains("id = 7"), "literals stay out of the input: {t}");
}

#[test]
fn eval_reads_an_input_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        r#"{"principal":{"sub":"a","groups":["analysts"],"kind":"human"},
            "connection":{"name":"orders","protocol":"postgres","labels":{}},
            "session":{"client_addr":"127.0.0.1","application_name":"t"},
            "request":{"kind":"sql","fingerprint":"drop table x","multi_statement":false,"parse_error":null,
              "statements":[{"kind":"drop_table","class":"ddl","tables":["x"],"columns":[],"functions":[],
                "has_where":false,"data_modifying_cte":false,"select_into":false,"for_update":false,
                "copy_direction":null,"copy_program":false,"parse_error":null}]}}"#,
    )
    .expect("write");
    let shipped = shipped();
    let out = tollctl(&[
        "policy",
        "eval",
        shipped.to_str().expect("utf8"),
        "--input",
        input.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("\"action\": \"deny\""),
        "{}",
        text(&out)
    );
}
