# Fixtures for the policy tests: well-formed inputs built from a few parts, and helpers that
# evaluate the decision for them. Tests override fields with object.union.
package tollgate_test

import data.tollgate

# stmt(kind, class) is the facts of one statement on public.customers, with a WHERE clause.
stmt(kind, class) := {
	"kind": kind,
	"class": class,
	"tables": ["public.customers"],
	"columns": ["id", "email"],
	"functions": [],
	"has_where": true,
	"data_modifying_cte": false,
	"select_into": false,
	"for_update": false,
	"copy_direction": null,
	"copy_program": false,
	"parse_error": null,
}

read_stmt := stmt("select", "read")

update_stmt := stmt("update", "write")

ddl_stmt := stmt("create_table", "ddl")

# request(groups, conn, env, stmts) is an input document for a principal in groups running
# stmts on connection conn labelled env.
request(groups, conn, env, stmts) := {
	"principal": {"sub": "tester@example.com", "groups": groups, "kind": "human"},
	"connection": {"name": conn, "protocol": "postgres", "labels": {"env": env}},
	"session": {"client_addr": "10.0.0.7", "application_name": "psql"},
	"request": {
		"kind": "sql",
		"fingerprint": "test",
		"statements": stmts,
		"multi_statement": count(stmts) > 1,
		"parse_error": null,
	},
}

# on_prod and on_dev: the same request on the prod connection (which has a table allow list)
# and on a dev connection (which has none).
on_prod(groups, stmts) := request(groups, "orders-prod", "prod", stmts)

on_dev(groups, stmts) := request(groups, "orders-dev", "dev", stmts)

decide(inp) := d if {
	d := tollgate.decision with input as inp
}

# denied_by(inp, id): the decision is deny and names rule id.
denied_by(inp, id) if {
	d := decide(inp)
	d.action == "deny"
	id in d.rules
}

# allowed(inp): the decision is allow.
allowed(inp) if decide(inp).action == "allow"
