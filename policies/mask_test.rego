package tollgate_test

test_named_columns_masked_for_eng if {
	d := decide(on_prod(["eng"], [read_stmt]))
	d.mask.columns["public.customers.email"] == "email"
	d.mask.columns["public.customers.card_number"] == "card"
	d.mask.detectors == ["card", "email"]
}

test_nothing_masked_for_unmasked_groups if {
	d := decide(on_prod(["dba"], [read_stmt]))
	d.action == "allow"
	d.mask == {"columns": {}, "detectors": []}
}

test_masked_when_groups_missing if {
	inp := object.remove(on_dev(["eng"], [read_stmt]), ["principal"])
	d := decide(object.union(inp, {"principal": {"sub": "bot@example.com"}}))
	d.action == "allow"
	d.mask.columns["public.customers.email"] == "email"
}

# unmasked is a rule over input (both definitions of mask share it): under `with` it must
# follow each test input, in either order.
test_mask_follows_the_principal if {
	decide(on_prod(["dba"], [read_stmt])).mask == {"columns": {}, "detectors": []}
	decide(on_prod(["eng"], [read_stmt])).mask.detectors == ["card", "email"]
	decide(on_prod(["pii-readers"], [read_stmt])).mask == {"columns": {}, "detectors": []}
}
