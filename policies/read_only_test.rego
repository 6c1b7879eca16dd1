package tollgate_test

test_read_only_group_may_read if {
	allowed(on_dev(["analysts"], [read_stmt]))
}

test_read_only_group_may_set_session_and_transaction if {
	allowed(on_dev(["analysts"], [stmt("set", "session"), stmt("begin", "transaction")]))
}

test_read_only_group_may_not_write if {
	denied_by(on_dev(["analysts"], [update_stmt]), "read-only-group")
}

test_read_only_wins_over_writer_group if {
	denied_by(on_dev(["analysts", "eng"], [update_stmt]), "read-only-group")
}

test_read_only_group_may_not_lock_rows if {
	denied_by(on_dev(["analysts"], [object.union(read_stmt, {"for_update": true})]), "read-only-group")
}

test_read_only_group_may_not_write_through_cte if {
	denied_by(on_dev(["analysts"], [object.union(read_stmt, {"data_modifying_cte": true})]), "read-only-group")
}

test_statement_without_class_is_denied_for_read_only_group if {
	denied_by(on_dev(["analysts"], [object.remove(read_stmt, ["class"])]), "read-only-group")
}
