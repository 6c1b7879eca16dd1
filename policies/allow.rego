# Allow rules: each names the statement it covers. A request is allowed, or held for review,
# only when every one of its statements is covered by some allow rule; anything not covered
# falls through to default deny.
package tollgate

allow contains {
	"statement": i,
	"id": "allow-read",
	"reason": "reads, session settings and transaction control are allowed",
} if {
	some i, s in input.request.statements
	s.class in {"read", "session", "transaction"}
	not true in [s.select_into, s.data_modifying_cte, s.for_update]
	is_string(input.principal.sub)
	input.principal.sub != ""
}

# Writes, schema and permission changes and privileged statements: the rule that allows each
# class, and the role in data.groups whose members it allows. One rule looks the statement's
# class up here rather than one rule per class testing every statement.
class_allows := {
	"write": {"id": "allow-write", "reason": "writers may change rows", "role": "writers"},
	"ddl": {"id": "allow-ddl", "reason": "schema owners may change the schema and permissions", "role": "ddl"},
	"dcl": {"id": "allow-ddl", "reason": "schema owners may change the schema and permissions", "role": "ddl"},
	"privileged": {"id": "allow-privileged", "reason": "privileged groups may run privileged statements", "role": "privileged"},
}

allow contains {"statement": i, "id": rule.id, "reason": rule.reason} if {
	some i, s in input.request.statements
	rule := class_allows[s.class]
	# member_of, inline: every write runs this line (README.md, "Cost").
	some g in input.principal.groups
	g in data.groups[rule.role]
}

# SELECT ... FOR UPDATE/SHARE takes row locks: writers only.
allow contains {
	"statement": i,
	"id": "allow-write",
	"reason": "writers may change rows",
} if {
	some i, s in input.request.statements
	s.for_update == true
	s.class == "read"
	member_of(data.groups.writers)
}

allow contains {
	"statement": i,
	"id": "allow-unparsed",
	"reason": "break-glass groups may run statements the analyser cannot parse",
} if {
	some i, s in input.request.statements
	s.parse_error != null
	member_of(data.groups.unparsed)
}

# every_statement_allowed holds when the request has statements and each is covered.
every_statement_allowed if {
	count(input.request.statements) > 0
	count({a.statement | some a in allow}) == count(input.request.statements)
}
