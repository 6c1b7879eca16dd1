//! Decide: the decision type the policy stage hands to the stages after it, and its checked
//! conversion from the `data.tollgate.decision` document the Rego policies produce.

use std::collections::BTreeMap;

use regorus::Value;
use serde::{Deserialize, Serialize};

/// The rule id of the fallback decision: no policy, an error, or no allow rule matched.
pub const DEFAULT_DENY_RULE: &str = "default-deny";

/// What the gateway does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    Review,
}

impl Action {
    /// The stricter of two actions: deny > review > allow.
    pub fn most_restrictive(a: Action, b: Action) -> Action {
        if a.rank() >= b.rank() {
            a
        } else {
            b
        }
    }

    fn rank(self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::Review => 1,
            Action::Deny => 2,
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            "review" => Some(Action::Review),
            _ => None,
        }
    }
}

/// Which result columns to mask and which content detectors to run on the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mask {
    /// `"schema.table.column"` to mask kind (`"email"`, `"card"`, ...).
    pub columns: BTreeMap<String, String>,
    /// Content detectors to run on every other value (`"card"`, `"email"`, ...).
    pub detectors: Vec<String>,
}

impl Mask {
    /// True when nothing is masked.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.detectors.is_empty()
    }
}

/// Who must approve a `review` decision and how long the statement may wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub approvers: Vec<String>,
    pub wait_s: u64,
}

/// One decision on one request: `data.tollgate.decision`, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub action: Action,
    /// Why, in words a client can be shown (the reasons of every matching rule).
    pub reason: String,
    /// The ids of the rules that made the decision.
    pub rules: Vec<String>,
    pub mask: Mask,
    /// Present exactly when `action` is `review`.
    pub review: Option<Review>,
    /// What a recording keeps of this decision and of the request it was made for; set by
    /// the [`Decider`](super::Decider) when it caches the decision, so every statement served
    /// from the cache shares it.
    #[serde(skip)]
    pub record: Option<std::sync::Arc<crate::record::DecisionInfo>>,
}

impl Decision {
    /// The fail-closed answer: deny, rule `default-deny`, with `reason` saying why.
    pub fn deny_default(reason: impl Into<String>) -> Decision {
        Decision {
            action: Action::Deny,
            reason: reason.into(),
            rules: vec![DEFAULT_DENY_RULE.to_owned()],
            mask: Mask::default(),
            review: None,
            record: None,
        }
    }

    pub fn is_allow(&self) -> bool {
        self.action == Action::Allow
    }

    /// The action as the policy wrote it: "allow", "deny" or "review".
    pub fn action_str(&self) -> &'static str {
        match self.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Review => "review",
        }
    }

    /// Checks and converts a decision document. Anything off the contract is an error, which
    /// the engine turns into a deny: a policy bug must not let a request through.
    pub(crate) fn from_value(v: &Value) -> Result<Decision, String> {
        let Value::Object(obj) = v else {
            return Err(format!("the decision is not an object but {}", kind(v)));
        };
        let field = |name: &str| obj.get(&Value::from(name));

        let action = match field("action") {
            Some(Value::String(s)) => {
                Action::parse(s).ok_or_else(|| format!("unknown action {s:?}"))?
            }
            other => return Err(format!("`action` is {}", kind_opt(other))),
        };
        let reason = match field("reason") {
            Some(Value::String(s)) => s.to_string(),
            other => return Err(format!("`reason` is {}", kind_opt(other))),
        };
        let rules = match field("rules") {
            Some(v) => strings(v).map_err(|e| format!("`rules`: {e}"))?,
            None => return Err("`rules` is missing".to_owned()),
        };
        let mask = match field("mask") {
            None | Some(Value::Null) => Mask::default(),
            Some(Value::Object(m)) => {
                let mut columns = BTreeMap::new();
                match m.get(&Value::from("columns")) {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(cols)) => {
                        for (k, v) in cols.iter() {
                            match (k, v) {
                                (Value::String(k), Value::String(v)) => {
                                    columns.insert(k.to_string(), v.to_string());
                                }
                                _ => {
                                    return Err("`mask.columns` must map strings to strings".into())
                                }
                            }
                        }
                    }
                    Some(other) => return Err(format!("`mask.columns` is {}", kind(other))),
                }
                let detectors = match m.get(&Value::from("detectors")) {
                    None | Some(Value::Null) => Vec::new(),
                    Some(v) => strings(v).map_err(|e| format!("`mask.detectors`: {e}"))?,
                };
                Mask { columns, detectors }
            }
            Some(other) => return Err(format!("`mask` is {}", kind(other))),
        };
        let review = match (action, field("review")) {
            (Action::Review, Some(Value::Object(r))) => {
                let approvers = match r.get(&Value::from("approvers")) {
                    Some(v) => strings(v).map_err(|e| format!("`review.approvers`: {e}"))?,
                    None => return Err("`review.approvers` is missing".to_owned()),
                };
                if approvers.is_empty() {
                    return Err("`review.approvers` is empty".to_owned());
                }
                let wait_s = match r.get(&Value::from("wait_s")) {
                    Some(v @ Value::Number(_)) => v
                        .as_u64()
                        .map_err(|_| "`review.wait_s` is not a whole number of seconds")?,
                    other => return Err(format!("`review.wait_s` is {}", kind_opt(other))),
                };
                Some(Review { approvers, wait_s })
            }
            (Action::Review, other) => {
                return Err(format!(
                    "a review decision needs `review`, got {}",
                    kind_opt(other)
                ))
            }
            (_, _) => None,
        };
        Ok(Decision {
            action,
            reason,
            rules,
            mask,
            review,
            record: None,
        })
    }
}

/// An array (or set) of strings.
fn strings(v: &Value) -> Result<Vec<String>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Set(s) => s.iter().collect(),
        other => return Err(format!("expected an array of strings, got {}", kind(other))),
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.to_string()),
            other => Err(format!("expected a string, got {}", kind(other))),
        })
        .collect()
}

fn kind_opt(v: Option<&Value>) -> &'static str {
    v.map_or("missing", kind)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Set(_) => "a set",
        Value::Object(_) => "an object",
        Value::Undefined => "undefined",
    }
}
