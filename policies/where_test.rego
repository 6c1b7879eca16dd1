package tollgate_test

test_delete_without_where_denied if {
	denied_by(on_dev(["eng"], [object.union(stmt("delete", "write"), {"has_where": false})]), "write-without-where")
}

test_update_without_where_denied if {
	denied_by(on_dev(["eng"], [object.union(update_stmt, {"has_where": false})]), "write-without-where")
}

test_update_without_where_fact_denied if {
	denied_by(on_dev(["eng"], [object.remove(update_stmt, ["has_where"])]), "write-without-where")
}

test_update_with_where_allowed if {
	allowed(on_dev(["eng"], [update_stmt]))
}

test_delete_with_where_allowed if {
	allowed(on_dev(["eng"], [stmt("delete", "write")]))
}
