//! Checks the integration-test harness itself: the throwaway PostgreSQL cluster, its sample
//! data and the three upstream authentication paths (SCRAM, md5, trust) the gateway relies on.
//! The gateway launcher is exercised by the gateway's own tests.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use support::{connect, luhn_valid, PgCluster, CUSTOMER_ROWS, MD5_USER, ORDER_ROWS, TRUST_USER};

#[test]
fn shared_cluster_starts_and_psql_super_runs_sql() {
    let pg = PgCluster::shared();
    assert_eq!(
        pg.psql_super("orders", "select count(*) from customers"),
        "50"
    );
    assert_eq!(
        pg.psql_super("orders", "select count(*) from orders"),
        ORDER_ROWS.to_string()
    );
    // Several statements, several rows, -At output.
    let roles = pg.psql_super(
        "postgres",
        "select 1;\nselect rolname from pg_roles where rolname like '%\\_app' order by 1",
    );
    assert_eq!(roles, "1\nmd5_app\norders_app\ntrust_app");
    // orders_app owns the database and the sample tables.
    assert_eq!(
        pg.psql_super(
            "orders",
            "select string_agg(tableowner, ',' order by tablename) from pg_tables where schemaname = 'public'"
        ),
        "orders_app,orders_app"
    );
    assert!(pg.dir.join(format!(".s.PGSQL.{}", pg.port)).exists());
}

#[test]
#[should_panic(expected = "relation \"no_such_table\" does not exist")]
fn psql_super_panics_with_psql_stderr() {
    PgCluster::shared().psql_super("orders", "select * from no_such_table");
}

#[test]
fn sample_data_looks_like_customer_data() {
    let pg = PgCluster::shared();
    let rows = pg.psql_super(
        "orders",
        "select name || '|' || email || '|' || card_number from customers order by id",
    );
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), CUSTOMER_ROWS);
    let mut emails = std::collections::HashSet::new();
    for row in &rows {
        let parts: Vec<&str> = row.split('|').collect();
        let [name, email, card] = parts[..] else {
            panic!("unexpected row {row:?}")
        };
        assert!(name.contains(' '), "{row}");
        assert!(email.contains('@') && email.contains('.'), "{row}");
        assert!(emails.insert(email.to_owned()), "duplicate email in {row}");
        assert_eq!(card.len(), 16, "{row}");
        assert!(luhn_valid(card), "card number fails Luhn: {row}");
    }
    // Quoting survived: a name with an apostrophe.
    assert!(rows.iter().any(|r| r.contains("O'Brien")));
    // Every order points at a customer; amounts are positive.
    assert_eq!(
        pg.psql_super(
            "orders",
            "select count(*) from orders o join customers c on c.id = o.customer_id where o.amount > 0"
        ),
        ORDER_ROWS.to_string()
    );
    assert!(!luhn_valid("4111111111111112"));
    assert!(luhn_valid("4111 1111 1111 1111"));
}

#[tokio::test]
async fn orders_app_connects_over_tcp_with_scram() {
    let pg = PgCluster::shared();
    let client = connect(&pg.direct_conninfo())
        .await
        .expect("orders_app connects directly with its SCRAM password");
    let n: i64 = client
        .query_one("select count(*) from customers", &[])
        .await
        .expect("count customers")
        .get(0);
    assert_eq!(n, 50);
    let user: String = client
        .query_one("select current_user::text", &[])
        .await
        .expect("current_user")
        .get(0);
    assert_eq!(user, "orders_app");
    let stored = pg.psql_super(
        "postgres",
        "select rolpassword from pg_authid where rolname = 'orders_app'",
    );
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");

    let err = connect(&pg.conninfo_as("orders_app", "not-the-password", "orders"))
        .await
        .expect_err("a wrong password is refused");
    let msg = format!("{err:?}");
    assert!(msg.contains("password authentication failed"), "{msg}");
}

#[tokio::test]
async fn md5_app_connects_with_md5() {
    let pg = PgCluster::shared();
    let stored = pg.psql_super(
        "postgres",
        "select rolpassword from pg_authid where rolname = 'md5_app'",
    );
    assert!(
        stored.starts_with("md5") && stored.len() == 35,
        "md5_app's password must be stored as md5, got {stored}"
    );
    assert_eq!(
        pg.psql_super(
            "postgres",
            "select auth_method from pg_hba_file_rules where 'md5_app' = any(user_name) and address = '127.0.0.1'"
        ),
        "md5"
    );
    let client = connect(&pg.conninfo_as(MD5_USER, &pg.md5_password, "orders"))
        .await
        .expect("md5_app connects with its password");
    let n: i64 = client
        .query_one("select count(*) from orders", &[])
        .await
        .expect("md5_app may read orders")
        .get(0);
    assert_eq!(n, 200);
    assert!(connect(&pg.conninfo_as(MD5_USER, "wrong", "orders"))
        .await
        .is_err());
}

#[tokio::test]
async fn trust_app_connects_without_a_password() {
    let pg = PgCluster::shared();
    assert_eq!(
        pg.psql_super(
            "postgres",
            "select auth_method from pg_hba_file_rules where 'trust_app' = any(user_name) and address = '127.0.0.1'"
        ),
        "trust"
    );
    let client = connect(&pg.conninfo_as(TRUST_USER, "", "orders"))
        .await
        .expect("trust_app connects with no password");
    let n: i64 = client
        .query_one("select count(*) from customers", &[])
        .await
        .expect("trust_app may read customers")
        .get(0);
    assert_eq!(n, 50);
}

#[tokio::test]
async fn second_cluster_runs_beside_the_shared_one_and_is_removed_on_drop() {
    let shared = PgCluster::shared();
    let own = PgCluster::start();
    assert_ne!(own.port, shared.port);
    assert_ne!(own.dir, shared.dir);
    assert_ne!(own.upstream_password, shared.upstream_password);
    for pg in [shared, &own] {
        let client = connect(&pg.direct_conninfo()).await.expect("connect");
        let port: String = client
            .query_one("select current_setting('port')", &[])
            .await
            .expect("port")
            .get(0);
        assert_eq!(port, pg.port.to_string());
    }
    // Each cluster only knows its own password.
    assert!(
        connect(&own.conninfo_as("orders_app", &shared.upstream_password, "orders"))
            .await
            .is_err()
    );

    own.pgbench_init(1);
    assert_eq!(
        own.psql_super("orders", "select count(*) from pgbench_accounts"),
        "100000"
    );
    assert_eq!(
        own.psql_super(
            "orders",
            "select tableowner from pg_tables where tablename = 'pgbench_accounts'"
        ),
        "orders_app"
    );

    let (port, dir) = (own.port, own.dir.clone());
    drop(own);
    assert!(!dir.exists(), "{} must be removed on drop", dir.display());
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err(),
        "port {port} must be closed after drop"
    );
    // The shared cluster is unaffected.
    assert_eq!(shared.psql_super("postgres", "select 1"), "1");
}
