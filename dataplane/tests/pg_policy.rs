//! End-to-end tests of the policy stage: the shipped policies in `policies/` decide every
//! statement that real clients send through the gateway to a real PostgreSQL.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{Gateway, GatewayOptions, PgCluster};
use tokio_postgres::{NoTls, SimpleQueryMessage};

const ANALYST: (&str, &[&str]) = ("ann@example.com", &["analysts"]);
const ENGINEER: (&str, &[&str]) = ("eve@example.com", &["eng"]);
const DBA: (&str, &[&str]) = ("dan@example.com", &["dba"]);

fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn gateway_with(policies: &Path) -> Gateway {
    let opts = GatewayOptions {
        policy_dir: Some(policies.to_owned()),
        ..GatewayOptions::default()
    };
    Gateway::start(PgCluster::shared(), opts)
}

async fn connect(gw: &Gateway, who: (&str, &[&str])) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&gw.conninfo(who.0, who.1, "orders"), NoTls)
        .await
        .expect("connect through the gateway");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn direct() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&PgCluster::shared().direct_conninfo(), NoTls)
        .await
        .expect("connect directly");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> String {
    for m in client.simple_query(sql).await.expect(sql) {
        if let SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap_or("").to_owned();
        }
    }
    panic!("{sql}: no row");
}

/// Asserts that `result` is the gateway's refusal: SQLSTATE 42501 naming the policy.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>, what: &str) {
    let err = result.expect_err(what);
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: not a server error: {err:?}"));
    assert_eq!(db.code().code(), "42501", "{what}: {db:?}");
    assert!(
        db.message().contains("policy"),
        "{what}: the message should say it was the policy: {}",
        db.message()
    );
    assert!(
        db.detail().is_some_and(|d| d.starts_with("rules: ")),
        "{what}: the detail names the rules: {db:?}"
    );
    // How the refusal was raised is the gateway's business, not the client's.
    assert!(db.where_().is_none(), "{what}: context leaked: {db:?}");
    assert!(db.constraint().is_none(), "{what}: tag leaked: {db:?}");
}

/// A table only these tests use, with one row, created directly (not through the gateway).
async fn probe_table(name: &str) {
    let d = direct().await;
    d.batch_execute(&format!(
        "drop table if exists {name}; create table {name} (id int primary key, note text); insert into {name} values (1, 'keep me')"
    ))
    .await
    .expect("probe table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_statement_never_reaches_the_database_and_the_session_goes_on() {
    probe_table("policy_probe_a").await;
    let gw = gateway_with(&shipped_policies());
    let analyst = connect(&gw, ANALYST).await;
    assert_eq!(
        scalar(&analyst, "select count(*) from customers").await,
        "50"
    );
    assert_refused(
        analyst
            .simple_query("delete from policy_probe_a where id = 1")
            .await,
        "an analyst deleting",
    );
    assert_refused(
        analyst
            .execute(
                "update policy_probe_a set note = 'x' where id = $1",
                &[&1i32],
            )
            .await,
        "an analyst updating over the extended protocol",
    );
    // Nothing changed, and the session is still usable.
    let d = direct().await;
    assert_eq!(
        scalar(&d, "select note from policy_probe_a where id = 1").await,
        "keep me"
    );
    assert_eq!(scalar(&analyst, "select 41 + 1").await, "42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_inside_a_transaction_aborts_it_on_both_sides() {
    probe_table("policy_probe_b").await;
    let gw = gateway_with(&shipped_policies());
    let mut eng = connect(&gw, ENGINEER).await;

    // Simple protocol.
    eng.batch_execute("begin").await.expect("begin");
    assert_eq!(
        scalar(&eng, "select note from policy_probe_b").await,
        "keep me"
    );
    assert_refused(
        eng.simple_query("delete from policy_probe_b").await,
        "delete without where",
    );
    // The upstream, not the gateway, says the transaction is aborted: they agree.
    let err = eng.simple_query("select 1").await.expect_err("aborted");
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("25P02"));
    eng.batch_execute("rollback").await.expect("rollback");
    assert_eq!(scalar(&eng, "select 2").await, "2");

    // Extended protocol, in a transaction.
    let tx = eng.transaction().await.expect("begin");
    assert_refused(
        tx.execute("delete from policy_probe_b", &[]).await,
        "delete without where (extended)",
    );
    let err = tx.query("select 1", &[]).await.expect_err("aborted");
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("25P02"));
    tx.rollback().await.expect("rollback");

    // Pipelined statements keep their own answers, in order.
    let allowed = eng
        .prepare("select note from policy_probe_b where id = $1")
        .await
        .expect("prepare");
    let (a, b, c) = futures_util::join!(
        eng.query(&allowed, &[&1i32]),
        eng.query("delete from policy_probe_b", &[]),
        eng.query(&allowed, &[&1i32]),
    );
    assert_eq!(a.expect("first")[0].get::<_, String>(0), "keep me");
    assert_refused(b, "pipelined delete");
    assert_eq!(c.expect("third")[0].get::<_, String>(0), "keep me");
    let d = direct().await;
    assert_eq!(scalar(&d, "select count(*) from policy_probe_b").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_ddl_is_for_dbas_only() {
    let gw = gateway_with(&shipped_policies());
    let eng = connect(&gw, ENGINEER).await;
    assert_refused(
        eng.simple_query("create table policy_probe_ddl (id int)")
            .await,
        "eng DDL on prod",
    );
    let d = direct().await;
    assert_eq!(
        scalar(
            &d,
            "select count(*) from pg_class where relname = 'policy_probe_ddl'"
        )
        .await,
        "0"
    );
    let dba = connect(&gw, DBA).await;
    dba.batch_execute("create table policy_probe_ddl (id int); drop table policy_probe_ddl")
        .await
        .expect("a DBA may run DDL on prod");
}

/// Forbidden statements dressed up to slip past a naive filter. Every one must be refused
/// for an engineer, and none may have any effect.
const BYPASS_CORPUS: &[&str] = &[
    "DROP TABLE policy_probe_c",
    "dRoP tAbLe policy_probe_c",
    "/* harmless */ drop /* really */ table policy_probe_c",
    "drop\n\t table\r\n policy_probe_c",
    "drop table \"policy_probe_c\"",
    "drop table U&\"policy\\005fprobe\\005fc\"",
    "select 1; drop table policy_probe_c",
    "select 1; delete from policy_probe_c",
    "with gone as (delete from policy_probe_c returning *) select * from gone",
    "delete from policy_probe_c",
    "update policy_probe_c set note = 'owned'",
    "truncate policy_probe_c",
    "truncate table only policy_probe_c",
    "select pg_read_file('/etc/passwd')",
    "select * from pg_catalog.pg_read_file('/etc/hostname')",
    "select lo_import('/etc/passwd')",
    "select upper(pg_read_file('/etc/passwd'))",
    "copy policy_probe_c to program 'cat > /tmp/tollgate-owned'",
    "copy policy_probe_c from program 'echo 9'",
    "copy policy_probe_c to '/tmp/tollgate-owned'",
    "do $$ begin execute 'drop table policy_probe_c'; end $$",
    "DO 'begin execute ''drop table policy_probe_c''; end'",
    "prepare p as delete from policy_probe_c",
    "execute p",
    "set role postgres",
    "set session authorization postgres",
    "alter system set log_statement = 'none'",
    "load 'auto_explain'",
    "select pg_terminate_backend(1)",
    "select set_config('role', 'postgres', false)",
    "grant all on policy_probe_c to public",
    "this is not sql at all",
    "drop table policy_probe_c -- trailing comment",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bypass_corpus_is_refused_over_both_protocols() {
    probe_table("policy_probe_c").await;
    let gw = gateway_with(&shipped_policies());
    let eng = connect(&gw, ENGINEER).await;
    for sql in BYPASS_CORPUS {
        assert_refused(eng.simple_query(sql).await, &format!("simple: {sql}"));
        assert_refused(eng.query(*sql, &[]).await, &format!("extended: {sql}"));
    }
    let d = direct().await;
    assert_eq!(
        scalar(&d, "select note from policy_probe_c where id = 1").await,
        "keep me"
    );
    assert!(!Path::new("/tmp/tollgate-owned").exists());
    // The fast-path FunctionCall names a function by OID: refused as privileged.
    let oid: u32 = scalar(&d, "select 'pg_read_file(text)'::regprocedure::oid")
        .await
        .parse()
        .expect("oid");
    let reply = raw_function_call(&gw, ENGINEER, oid, b"/etc/passwd");
    assert!(
        reply.windows(5).any(|w| w == b"42501"),
        "FunctionCall must be refused: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(!reply.windows(5).any(|w| w == b"root:"));
}

/// Logs in with raw protocol messages, sends a FunctionCall, and returns the reply bytes.
fn raw_function_call(gw: &Gateway, who: (&str, &[&str]), oid: u32, arg: &[u8]) -> Vec<u8> {
    let mut s = gw.raw_login(who.0, who.1);
    let mut out = Vec::new();
    tollgate::proto::pg::FrontendMessage::FunctionCall {
        function_oid: oid,
        arg_formats: vec![0],
        args: vec![Some(arg)],
        result_format: 0,
    }
    .encode(&mut out);
    s.write_all(&out).expect("function call");
    support::read_until_tag(&mut s, b'Z')
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read policies") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_apply_without_restart_and_a_broken_set_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    probe_table("policy_probe_d").await;
    let gw = gateway_with(&policies);
    let analyst = connect(&gw, ANALYST).await;
    assert_eq!(
        scalar(&analyst, "select count(*) from policy_probe_d").await,
        "1"
    );

    // A new rule, with its test, lands in the directory: the next statements see it.
    std::fs::write(
        policies.join("orders_freeze.rego"),
        "package tollgate\n\ndeny contains {\"id\": \"orders-freeze\", \"reason\": \"orders are frozen for the audit\"} if {\n\tsome s in input.request.statements\n\t\"policy_probe_d\" in s.tables\n}\n",
    )
    .expect("write rule");
    std::fs::write(
        policies.join("orders_freeze_test.rego"),
        "package tollgate_test\n\nimport data.tollgate\n\ntest_orders_frozen if {\n\tsome d in tollgate.deny with input as {\"request\": {\"statements\": [{\"tables\": [\"policy_probe_d\"]}]}}\n\td.id == \"orders-freeze\"\n}\n",
    )
    .expect("write test");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match analyst
            .simple_query("select count(*) from policy_probe_d")
            .await
        {
            Err(e)
                if e.as_db_error()
                    .is_some_and(|d| d.message().contains("frozen")) =>
            {
                break
            }
            _ if Instant::now() > deadline => {
                panic!("the new rule never took effect:\n{}", gw.logs())
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert_eq!(
        scalar(&analyst, "select count(*) from customers").await,
        "50"
    );

    // A set that does not compile is rejected; the last good set keeps serving.
    std::fs::write(
        policies.join("broken.rego"),
        "package tollgate\n\ndeny contains {{{ if\n",
    )
    .expect("write broken");
    gw.wait_for_log("policy reload rejected", Duration::from_secs(20));
    assert_refused(
        analyst
            .simple_query("select count(*) from policy_probe_d")
            .await,
        "still frozen",
    );
    assert_eq!(
        scalar(&analyst, "select count(*) from customers").await,
        "50"
    );

    // A set whose own tests fail is rejected too.
    std::fs::remove_file(policies.join("broken.rego")).expect("rm");
    std::fs::write(
        policies.join("orders_freeze_test.rego"),
        "package tollgate_test\n\ntest_always_fails if {\n\tfalse\n}\n",
    )
    .expect("write failing test");
    let rejections = gw.logs().matches("policy reload rejected").count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.logs().matches("policy reload rejected").count() <= rejections {
        assert!(
            Instant::now() < deadline,
            "a failing test set was not rejected:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_refused(
        analyst
            .simple_query("select count(*) from policy_probe_d")
            .await,
        "still frozen after a failing test set",
    );
}

#[test]
fn pgbench_runs_clean_with_the_shipped_policies() {
    let cluster = PgCluster::shared();
    cluster.pgbench_init(1);
    let gw = gateway_with(&shipped_policies());
    for mode in ["simple", "extended", "prepared"] {
        let out = gw.pgbench(
            cluster,
            "bench-bot",
            &["analysts"],
            &["-S", "-M", mode, "-c", "4", "-j", "2", "-T", "2"],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("number of failed transactions: 0 "),
            "{mode}: {stdout}"
        );
    }
    // And a read-only principal's TPC-B run is refused at its first write, not silently relayed.
    let out = gw.pgbench(cluster, "bench-bot", &["analysts"], &["-c", "1", "-t", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a read-only principal wrote");
    assert!(stderr.contains("denied by policy"), "{stderr}");
}
