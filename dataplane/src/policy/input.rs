//! Decide: the policy's `input` document (DESIGN.md, "The policy contract"; `policies/README.md`)
//! built directly as the regorus value the engine evaluates.
//!
//! A cold decision used to build the document as JSON, convert it to regorus values and drop
//! both. Here the session-constant parts (`principal`, `connection`, `session`) are built once
//! per session ([`SessionInput`]) and shared by every decision (a reference-count increment),
//! and only `request` is built per decision, straight from the statement facts. The document
//! is the one [`super::engine::input_value`] makes of the JSON (`tests::sql_request_as_json_does`
//! checks it on generated facts), so decisions do not change.

use std::collections::BTreeMap;

use regorus::value::Object;
use regorus::Value;

use super::engine::{input_value, word};
use crate::sql::{Class, Facts, StatementFacts};

/// The parts of the input that stay the same for a whole session.
#[derive(Debug, Clone)]
pub struct SessionInput {
    principal: Value,
    connection: Value,
    session: Value,
}

impl SessionInput {
    /// `principal` from its subject, groups and kind; `connection` and `session` as the JSON
    /// documents the contract describes. JSON always converts (it holds no non-finite
    /// number); were it not to, the part would be undefined, which no policy allows on.
    pub fn new<G: AsRef<str>>(
        sub: &str,
        groups: &[G],
        kind: &str,
        connection: &serde_json::Value,
        session: &serde_json::Value,
    ) -> SessionInput {
        let principal = object([
            (
                "groups",
                Value::from(
                    groups
                        .iter()
                        .map(|g| word(g.as_ref()))
                        .collect::<Vec<Value>>(),
                ),
            ),
            ("kind", word(kind)),
            ("sub", Value::from(sub)),
        ]);
        SessionInput {
            principal,
            connection: input_value(connection).unwrap_or(Value::Undefined),
            session: input_value(session).unwrap_or(Value::Undefined),
        }
    }

    /// The whole input document for one `request`.
    pub fn document(&self, request: Value) -> Value {
        object([
            ("connection", self.connection.clone()),
            ("principal", self.principal.clone()),
            ("request", request),
            ("session", self.session.clone()),
        ])
    }
}

/// `input.request` for a SQL text: its fingerprint and the facts of every statement (the
/// document `session::decide::sql_request` writes as JSON).
pub fn sql_request(fingerprint: String, facts: &Facts) -> Value {
    let statements: Vec<Value> = facts.statements.iter().map(statement).collect();
    object([
        ("fingerprint", Value::from(fingerprint)),
        ("kind", word("sql")),
        ("multi_statement", Value::from(facts.multi_statement)),
        ("parse_error", optional(facts.parse_error.as_deref())),
        ("statements", Value::from(statements)),
    ])
}

/// One statement's facts, as serde writes `StatementFacts`.
fn statement(s: &StatementFacts) -> Value {
    object([
        ("class", word(class(s.class))),
        ("columns", strings(&s.columns)),
        ("copy_direction", optional(s.copy_direction.as_deref())),
        ("copy_program", Value::from(s.copy_program)),
        ("data_modifying_cte", Value::from(s.data_modifying_cte)),
        ("for_update", Value::from(s.for_update)),
        ("functions", strings(&s.functions)),
        ("has_where", Value::from(s.has_where)),
        ("kind", word(&s.kind)),
        ("parse_error", optional(s.parse_error.as_deref())),
        ("select_into", Value::from(s.select_into)),
        ("tables", strings(&s.tables)),
    ])
}

/// `Class` as serde writes it (`rename_all = "lowercase"`).
fn class(c: Class) -> &'static str {
    match c {
        Class::Read => "read",
        Class::Transaction => "transaction",
        Class::Session => "session",
        Class::Write => "write",
        Class::Ddl => "ddl",
        Class::Dcl => "dcl",
        Class::Privileged => "privileged",
    }
}

fn strings(items: &[String]) -> Value {
    if items.is_empty() {
        // regorus' deserializer makes a new empty array too; no allocation for the `Vec`.
        return Value::from(Vec::new());
    }
    Value::from(items.iter().map(|s| word(s)).collect::<Vec<Value>>())
}

fn optional(s: Option<&str>) -> Value {
    s.map_or(Value::Null, word)
}

/// An object of `fields`, which callers list in key order: stored as it is, with no map built
/// and only neighbouring keys compared (regorus checks the order; fields out of order still
/// make the same object, through a map).
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let entries: Vec<(Value, Value)> = fields
        .into_iter()
        .map(|(key, value)| (word(key), value))
        .collect();
    Object::from_sorted_entries(entries)
        .unwrap_or_else(|entries| Value::from(entries.into_iter().collect::<BTreeMap<_, _>>()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::sql::{self, Dialect};

    /// The JSON request `session::decide::sql_request` builds, from the same parts.
    fn json_request(fingerprint: &str, facts: &Facts) -> serde_json::Value {
        json!({
            "kind": "sql",
            "fingerprint": fingerprint,
            "statements": facts.statements,
            "multi_statement": facts.multi_statement,
            "parse_error": facts.parse_error,
        })
    }

    fn assert_same(fingerprint: &str, facts: &Facts) {
        let ours = sql_request(fingerprint.to_owned(), facts);
        let json = input_value(&json_request(fingerprint, facts)).expect("converts");
        assert_eq!(ours, json, "{facts:?}");
    }

    #[test]
    fn sql_request_as_json_does_for_real_statements() {
        for text in [
            "select abalance from pgbench_accounts where aid = 1",
            "update t set a = 1; delete from u",
            "copy t from stdin",
            "copy (select 1) to program 'x'",
            "with d as (delete from c returning *) select * from d",
            "select * into x from y for update",
            "this is not sql",
            "",
            "grant select on t to u; set role admin; begin",
            "select \"Odd Name\".x, pg_catalog.now() from \"Odd Name\"",
        ] {
            let fp = sql::fingerprint(text, Dialect::Postgres);
            assert_same(&fp.text, &sql::facts(text, Dialect::Postgres));
        }
    }

    #[test]
    fn session_document_as_json_does() {
        let connection =
            json!({"name": "orders", "protocol": "postgres", "labels": {"env": "dev", "n": 3}});
        let session = json!({"client_addr": "127.0.0.1", "application_name": "psql"});
        let input = SessionInput::new("alice", &["eng", "dba"], "human", &connection, &session);
        let facts = sql::facts("select 1", Dialect::Postgres);
        let request = sql_request("select ?".to_owned(), &facts);
        let json = json!({
            "principal": {"sub": "alice", "groups": ["eng", "dba"], "kind": "human"},
            "connection": connection,
            "session": session,
            "request": json_request("select ?", &facts),
        });
        assert_eq!(
            input.document(request),
            input_value(&json).expect("converts")
        );
    }

    #[test]
    fn object_out_of_order_is_the_same_object() {
        let sorted = object([("a", Value::from(1u64)), ("b", Value::Null)]);
        let unsorted = object([("b", Value::Null), ("a", Value::from(1u64))]);
        let duplicate = object([("a", Value::from(2u64)), ("a", Value::from(1u64))]);
        assert_eq!(sorted, unsorted);
        assert_eq!(
            sorted,
            input_value(&json!({"a": 1, "b": null})).expect("converts")
        );
        assert_eq!(duplicate, input_value(&json!({"a": 1})).expect("converts"));
    }

    fn class_strategy() -> impl Strategy<Value = Class> {
        prop_oneof![
            Just(Class::Read),
            Just(Class::Transaction),
            Just(Class::Session),
            Just(Class::Write),
            Just(Class::Ddl),
            Just(Class::Dcl),
            Just(Class::Privileged),
        ]
    }

    /// Words the vocabulary shares and words it does not, so both paths are taken.
    fn word_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("select".to_owned()),
            Just("read".to_owned()),
            Just("kind".to_owned()),
            Just("from".to_owned()),
            Just(String::new()),
            "[a-z_.\"*]{1,12}",
            any::<String>(),
        ]
    }

    fn statement_strategy() -> impl Strategy<Value = StatementFacts> {
        (
            word_strategy(),
            class_strategy(),
            prop::collection::vec(word_strategy(), 0..4),
            prop::collection::vec(word_strategy(), 0..4),
            prop::collection::vec(word_strategy(), 0..3),
            any::<[bool; 5]>(),
            prop::option::of(word_strategy()),
            prop::option::of(word_strategy()),
        )
            .prop_map(
                |(kind, class, tables, columns, functions, b, copy_direction, parse_error)| {
                    StatementFacts {
                        kind,
                        class,
                        tables,
                        columns,
                        functions,
                        has_where: b[0],
                        data_modifying_cte: b[1],
                        select_into: b[2],
                        for_update: b[3],
                        copy_direction,
                        copy_program: b[4],
                        parse_error,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Differential check: the direct build equals the JSON route for any facts.
        #[test]
        fn sql_request_as_json_does(
            fingerprint in word_strategy(),
            statements in prop::collection::vec(statement_strategy(), 0..4),
            multi_statement in any::<bool>(),
            parse_error in prop::option::of(word_strategy()),
        ) {
            let facts = Facts { statements, multi_statement, parse_error };
            assert_same(&fingerprint, &facts);
        }
    }
}
