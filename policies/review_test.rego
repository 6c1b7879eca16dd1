package tollgate_test

test_prod_write_by_eng_goes_to_review if {
	d := decide(on_prod(["eng"], [update_stmt]))
	d.action == "review"
	d.rules == ["prod-writes-review"]
	d.review == {"approvers": ["dba-leads"], "wait_s": 120}
}

test_prod_write_by_dba_allowed if {
	allowed(on_prod(["dba"], [update_stmt]))
}

test_dev_write_by_eng_allowed if {
	d := decide(on_dev(["eng"], [update_stmt]))
	d.action == "allow"
	d.review == null
}

test_prod_read_by_eng_allowed if {
	allowed(on_prod(["eng"], [read_stmt]))
}

test_review_settings_per_connection if {
	conns := {"orders-prod": {"review": {"approvers": ["orders-oncall"], "wait_s": 300}}}
	d := decide(on_prod(["eng"], [update_stmt])) with data.connections as conns
	d.action == "review"
	d.review == {"approvers": ["orders-oncall"], "wait_s": 300}
}

test_prod_write_without_writer_group_denied if {
	denied_by(on_prod(["contractors"], [update_stmt]), "default-deny")
}

test_deny_wins_over_review if {
	d := decide(on_prod(["eng"], [update_stmt, object.union(stmt("delete", "write"), {"has_where": false})]))
	d.action == "deny"
	d.rules == ["write-without-where"]
}
