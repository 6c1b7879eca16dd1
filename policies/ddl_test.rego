package tollgate_test

test_prod_ddl_denied_for_eng if {
	denied_by(on_prod(["eng"], [ddl_stmt]), "prod-ddl-dba-only")
}

test_prod_dcl_denied_for_eng if {
	denied_by(on_prod(["eng"], [stmt("grant", "dcl")]), "prod-ddl-dba-only")
}

test_prod_ddl_allowed_for_dba if {
	d := decide(on_prod(["dba"], [ddl_stmt]))
	d.action == "allow"
	d.rules == ["allow-ddl"]
}

test_dev_ddl_allowed_for_eng if {
	allowed(on_dev(["eng"], [ddl_stmt]))
}

test_ddl_not_allowed_without_ddl_group if {
	denied_by(on_dev(["app"], [ddl_stmt]), "default-deny")
}

test_dev_dcl_allowed_for_schema_owners if {
	d := decide(on_dev(["eng"], [stmt("grant", "dcl")]))
	d.action == "allow"
	d.rules == ["allow-ddl"]
}
