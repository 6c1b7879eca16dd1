package tollgate_test

test_read_allowed if {
	d := decide(on_prod(["eng"], [read_stmt]))
	d.action == "allow"
	d.rules == ["allow-read"]
	d.review == null
}

test_every_deny_is_reported if {
	d := decide(on_dev(["eng"], [truncate_stmt, object.union(stmt("delete", "write"), {"has_where": false})]))
	d.action == "deny"
	d.rules == ["no-truncate", "write-without-where"]
	contains(d.reason, "statement 1 (truncate)")
	contains(d.reason, "statement 2 (delete)")
}

test_multi_statement_with_one_forbidden_statement_denied if {
	denied_by(on_dev(["eng"], [read_stmt, read_stmt, truncate_stmt]), "no-truncate")
}

test_multi_statement_needs_every_statement_allowed if {
	denied_by(on_dev(["app"], [read_stmt, ddl_stmt]), "default-deny")
}

test_multi_statement_reports_every_allow_rule if {
	d := decide(on_dev(["eng"], [read_stmt, update_stmt]))
	d.action == "allow"
	d.rules == ["allow-read", "allow-write"]
}

test_no_statements_denied if {
	denied_by(on_dev(["eng"], []), "default-deny")
}

test_missing_request_denied if {
	denied_by(object.remove(on_dev(["eng"], [read_stmt]), ["request"]), "default-deny")
}

test_missing_subject_denied if {
	inp := on_dev(["eng"], [read_stmt])
	denied_by(object.union(inp, {"principal": {"sub": ""}}), "default-deny")
}

test_unknown_class_denied if {
	denied_by(on_dev(["eng"], [stmt("vacuum", "maintenance")]), "default-deny")
}

test_empty_input_denied if {
	d := tollgate.decision with input as {}
	d.action == "deny"
	d.rules == ["default-deny"]
}
