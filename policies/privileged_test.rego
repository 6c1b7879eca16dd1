package tollgate_test

truncate_stmt := stmt("truncate", "write")

copy_program_stmt := object.union(stmt("copy", "privileged"), {"copy_direction": "from", "copy_program": true})

alter_system_stmt := object.union(stmt("alter_system", "privileged"), {"tables": []})

unparsed_stmt := object.union(stmt("unknown", "unknown"), {"tables": [], "parse_error": "syntax error at or near \"selec\""})

test_truncate_denied_for_eng if {
	denied_by(on_dev(["eng"], [truncate_stmt]), "no-truncate")
}

test_truncate_allowed_for_dba if {
	allowed(on_dev(["dba"], [truncate_stmt]))
}

test_copy_program_denied_for_dba if {
	denied_by(on_dev(["dba"], [copy_program_stmt]), "no-copy-program")
}

test_copy_program_allowed_for_platform_admins if {
	allowed(on_dev(["platform-admins"], [copy_program_stmt]))
}

test_copy_to_stdout_allowed if {
	allowed(on_dev(["eng"], [object.union(stmt("copy", "read"), {"copy_direction": "to"})]))
}

test_privileged_denied_for_dba if {
	denied_by(on_dev(["dba"], [alter_system_stmt]), "no-privileged")
}

test_privileged_allowed_for_platform_admins if {
	d := decide(on_dev(["platform-admins"], [alter_system_stmt]))
	d.action == "allow"
	d.rules == ["allow-privileged"]
}

test_unparsed_statement_denied if {
	denied_by(on_dev(["dba"], [unparsed_stmt]), "no-unparsed")
}

test_unparsed_statement_allowed_for_break_glass if {
	allowed(on_dev(["break-glass"], [unparsed_stmt]))
}

test_unparsed_request_denied if {
	inp := on_dev(["eng"], [])
	denied_by(object.union(inp, {"request": {"parse_error": "unterminated quoted string"}}), "no-unparsed")
}
