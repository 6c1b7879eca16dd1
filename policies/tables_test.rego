package tollgate_test

test_table_on_allow_list_allowed if {
	allowed(on_prod(["eng"], [read_stmt]))
}

test_unqualified_table_on_allow_list_allowed if {
	allowed(on_prod(["eng"], [object.union(read_stmt, {"tables": ["orders"]})]))
}

test_table_off_allow_list_denied if {
	d := decide(on_prod(["dba"], [object.union(read_stmt, {"tables": ["public.customers", "public.secrets"]})]))
	d.action == "deny"
	d.rules == ["connection-table-allowlist"]
	contains(d.reason, "public.secrets")
}

test_other_schema_denied if {
	denied_by(on_prod(["eng"], [object.union(read_stmt, {"tables": ["audit.customers"]})]), "connection-table-allowlist")
}

test_wildcard_entry_allows_prefix if {
	allowed(request(["eng"], "pgbench", "dev", [object.union(read_stmt, {"tables": ["pgbench_accounts", "public.pgbench_branches"]})]))
}

test_wildcard_entry_denies_other_tables if {
	denied_by(request(["eng"], "pgbench", "dev", [object.union(read_stmt, {"tables": ["public.users"]})]), "connection-table-allowlist")
}

test_connection_without_allow_list_allows_any_table if {
	allowed(on_dev(["eng"], [object.union(read_stmt, {"tables": ["public.secrets"]})]))
}
