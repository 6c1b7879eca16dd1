package tollgate_test

test_dangerous_function_denied if {
	denied_by(on_dev(["eng"], [object.union(read_stmt, {"functions": ["pg_read_file"]})]), "no-dangerous-functions")
}

test_qualified_dangerous_function_denied if {
	denied_by(on_dev(["eng"], [object.union(read_stmt, {"functions": ["pg_catalog.PG_READ_FILE"]})]), "no-dangerous-functions")
}

test_ordinary_function_allowed if {
	allowed(on_dev(["eng"], [object.union(read_stmt, {"functions": ["lower", "pg_catalog.now"]})]))
}

test_dangerous_function_allowed_for_platform_admins if {
	allowed(on_dev(["platform-admins"], [object.union(read_stmt, {"functions": ["pg_terminate_backend"]})]))
}
