//! Analyse → decide for one session: turns a statement the client sent into the policy's
//! decision, through the shard's decision cache, and turns a refusal into bytes the upstream
//! itself answers with an error.
//!
//! A denied statement never reaches the upstream. Instead the gateway sends a `DO` block that
//! raises SQLSTATE 42501 with the policy's reason. The server's own error handling then does the
//! rest exactly as for any failed statement: the error arrives in order with the other results,
//! a transaction block ends up aborted on both sides, and a pipeline is skipped up to its Sync.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::identity::Principal;
use crate::policy::input::SessionInput;
use crate::policy::{self, Action, Decision, PrincipalKey};
use crate::proto::pg;
use crate::record::DecisionInfo;
use crate::sql::{self, Dialect};

/// The constraint name the gateway's refusals carry, so the relay can tell them apart from
/// the server's own errors.
pub const REFUSAL_TAG: &str = "tollgate_policy";

/// What the decide stage says about one client message.
pub enum Verdict {
    Allow,
    /// Refused; the text the client is shown and the rules that refused.
    Deny {
        message: String,
        detail: String,
    },
}

/// A verdict with what a recording keeps of it.
pub struct Decided {
    pub verdict: Verdict,
    /// The statement's fingerprint hash.
    pub fingerprint: u64,
    pub record: Option<Arc<DecisionInfo>>,
}

/// One session's view of the policy stage: who asks, on which connection, from where.
pub struct Gatekeeper {
    principal: Principal,
    connection_name: String,
    /// `input.principal`, `input.connection` and `input.session`, built once for the session.
    input: SessionInput,
    /// Mixed into every cache key, so that a policy reading `input.session` or
    /// `input.principal.kind` cannot be served a decision made for another client address,
    /// application or kind of principal.
    session_hash: u64,
    key: Cell<Option<PrincipalKey>>,
}

impl Gatekeeper {
    pub fn new(
        principal: Principal,
        connection_name: &str,
        connection: Arc<Value>,
        peer: SocketAddr,
        application_name: &str,
    ) -> Self {
        let client_addr = peer.ip().to_string();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        client_addr.hash(&mut h);
        application_name.hash(&mut h);
        principal.kind.hash(&mut h);
        let session = json!({"client_addr": client_addr, "application_name": application_name});
        let input = SessionInput::new(
            &principal.sub,
            &principal.groups,
            &principal.kind,
            &connection,
            &session,
        );
        Self {
            principal,
            connection_name: connection_name.to_owned(),
            input,
            session_hash: h.finish(),
            key: Cell::new(None),
        }
    }

    /// Decides a SQL text (a simple-query batch or one prepared statement).
    pub fn decide_sql(&self, decider: &mut crate::policy::Decider, text: &str) -> Decided {
        let hash = sql::fingerprint_hash(text, Dialect::Postgres);
        let who = self.key(decider);
        let decision =
            decider.decide_as(who, hash, || self.input.document(sql_request_value(text)));
        decided(&decision, hash)
    }

    /// Decides a fast-path FunctionCall, which names a function by OID and so escapes SQL
    /// analysis: it is presented to the policy as a privileged statement.
    pub fn decide_function_call(
        &self,
        decider: &mut crate::policy::Decider,
        function_oid: u32,
    ) -> Decided {
        let who = self.key(decider);
        // Outside the normaliser's hash space in practice: a fixed tag with the OID.
        let hash = function_call_hash(function_oid);
        let decision = decider.decide_as(who, hash, || {
            self.request(&json!({
                "kind": "sql",
                "fingerprint": format!("<function call {function_oid}>"),
                "statements": [{
                    "kind": "function_call", "class": "privileged", "tables": [],
                    "columns": [], "functions": [format!("oid:{function_oid}")],
                    "has_where": false, "data_modifying_cte": false, "select_into": false,
                    "for_update": false, "copy_direction": null, "copy_program": false,
                    "parse_error": null
                }],
                "multi_statement": false,
                "parse_error": null,
            }))
        });
        decided(&decision, hash)
    }

    /// The session's part of every cache key, computed on first use. A session stays on one
    /// shard, so it always meets the same decider.
    fn key(&self, decider: &crate::policy::Decider) -> PrincipalKey {
        if let Some(key) = self.key.get() {
            return key;
        }
        let key = decider.principal_key(
            &self.principal.sub,
            &self.principal.groups,
            &self.connection_name,
            self.session_hash,
        );
        self.key.set(Some(key));
        key
    }

    /// The input document for a request given as JSON (the rare, non-SQL requests).
    fn request(&self, request: &Value) -> regorus::Value {
        // Strings and booleans always convert; an undefined request would be denied.
        self.input
            .document(policy::input_value(request).unwrap_or(regorus::Value::Undefined))
    }
}

/// `input.request` for a SQL text: its fingerprint and the facts of every statement. This is
/// the work a decision-cache miss costs; `tollctl policy explain` shows the same document.
pub fn sql_request(text: &str) -> Value {
    let fingerprint = sql::fingerprint_text(text, Dialect::Postgres);
    let facts = sql::facts(text, Dialect::Postgres);
    json!({
        "kind": "sql",
        "fingerprint": fingerprint,
        "statements": facts.statements,
        "multi_statement": facts.multi_statement,
        "parse_error": facts.parse_error,
    })
}

/// [`sql_request`] built directly as the value the policy engine evaluates (the data path's
/// way; the same document, see `policy::input`).
pub fn sql_request_value(text: &str) -> regorus::Value {
    let fingerprint = sql::fingerprint_text(text, Dialect::Postgres);
    let facts = sql::facts(text, Dialect::Postgres);
    policy::input::sql_request(fingerprint, &facts)
}

/// The whole policy input document (see `policies/README.md`).
pub fn policy_input(
    principal: &Principal,
    connection: &Value,
    session: &Value,
    request: Value,
) -> Value {
    json!({
        "principal": {
            "sub": principal.sub,
            "groups": principal.groups,
            "kind": principal.kind,
        },
        "connection": connection,
        "session": session,
        "request": request,
    })
}

/// The fingerprint hash a fast-path FunctionCall of `oid` is decided and recorded under.
pub fn function_call_hash(oid: u32) -> u64 {
    0x6675_6e63_6361_6c6c ^ u64::from(oid)
}

fn decided(decision: &Rc<Decision>, fingerprint: u64) -> Decided {
    Decided {
        verdict: verdict(decision),
        fingerprint,
        record: decision.record.clone(),
    }
}

fn verdict(decision: &Rc<Decision>) -> Verdict {
    let rules = || decision.rules.join(", ");
    match decision.action {
        Action::Allow => Verdict::Allow,
        Action::Deny => Verdict::Deny {
            message: format!("denied by policy: {}", decision.reason),
            detail: format!("rules: {}", rules()),
        },
        // Approvals are not part of the gateway yet: a statement that needs one is refused,
        // and the client is told so.
        Action::Review => Verdict::Deny {
            message: format!(
                "held for review by policy: {}; this gateway cannot take approvals yet, so the statement is refused",
                decision.reason
            ),
            detail: format!("rules: {}", rules()),
        },
    }
}

/// A SQL string literal of `text` that cannot end early or change meaning, whatever the
/// session's `standard_conforming_strings`: quotes are doubled, and backslashes and dollar
/// signs (which could close the surrounding dollar quote) are replaced.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push('/'),
            '$' => out.push('S'),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The statement that makes the upstream raise the refusal.
fn refusal_sql(message: &str, detail: &str) -> String {
    format!(
        "DO $tollgate$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = {}, DETAIL = {}, CONSTRAINT = '{REFUSAL_TAG}'; END$tollgate$",
        literal(message),
        literal(detail)
    )
}

/// A simple Query that takes the place of a refused one.
pub fn refusal_query(out: &mut Vec<u8>, message: &str, detail: &str) {
    pg::FrontendMessage::Query {
        sql: &refusal_sql(message, detail),
    }
    .encode(out);
}

/// The extended-protocol sequence sent at the Sync of a pipeline whose Parse was refused:
/// the server answers ParseComplete, BindComplete (both dropped by the relay), the error and
/// ReadyForQuery; if an earlier message of the pipeline failed, it skips all of it as usual.
pub fn refusal_pipeline(out: &mut Vec<u8>, message: &str, detail: &str) {
    let sql = refusal_sql(message, detail);
    pg::FrontendMessage::Parse {
        name: "",
        sql: &sql,
        param_types: Vec::new(),
    }
    .encode(out);
    pg::FrontendMessage::Bind(pg::Bind {
        portal: "",
        statement: "",
        param_formats: Vec::new(),
        params: Vec::new(),
        result_formats: Vec::new(),
    })
    .encode(out);
    pg::FrontendMessage::Execute {
        portal: "",
        max_rows: 0,
    }
    .encode(out);
    pg::FrontendMessage::Sync.encode(out);
}

/// The client's view of a refusal the upstream raised: the same SQLSTATE, message and
/// detail, without the traces of how it was raised (the PL/pgSQL context line and the tag).
/// `None` when `frame` is not a refusal.
pub fn client_refusal(frame: pg::Frame<'_>) -> Option<Vec<u8>> {
    let pg::BackendMessage::ErrorResponse(fields) = pg::BackendMessage::decode(frame).ok()? else {
        return None;
    };
    // 'n' is the constraint-name field of an ErrorResponse.
    if fields.get(b'n') != Some(REFUSAL_TAG) {
        return None;
    }
    let mut out = Vec::with_capacity(frame.wire_len());
    pg::encode_error(
        &mut out,
        fields.severity().unwrap_or("ERROR"),
        fields.sqlstate().unwrap_or("42501"),
        fields.message().unwrap_or("denied by policy"),
        fields.get(pg::field::DETAIL),
        None,
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_cannot_break_out() {
        let l = literal("it's $tollgate$ \\' done");
        assert_eq!(l, "'it''s StollgateS /'' done'");
        assert!(!l.contains('$'));
    }

    #[test]
    fn refusal_sql_names_the_code_and_the_tag() {
        let sql = refusal_sql("denied by policy: no", "rules: r1");
        assert!(sql.starts_with("DO $tollgate$"));
        assert!(sql.contains("'42501'"));
        assert!(sql.contains(REFUSAL_TAG));
        assert_eq!(sql.matches("$tollgate$").count(), 2);
    }
}
