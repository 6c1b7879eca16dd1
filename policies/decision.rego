# data.tollgate.decision, the one document the gateway reads. Exactly one definition holds:
#
#   any deny                                       -> deny   (the reasons and ids of every deny)
#   any review, and every statement allowed        -> review (approvers and wait: review_settings)
#   no review, and every statement allowed         -> allow  (the ids of the allow rules)
#   otherwise, or when anything above is undefined -> deny   (default-deny)
#
# Written as separate definitions rather than an `else` chain: regorus' interpreter (which runs
# the tests) can get an `else` chain wrong under a test's `with input as ...` (0.14.1).
#
# The RVM runs every definition of a rule, so each one starts with the test that rules it out
# cheapest for the common request (no deny, no review), and reads `deny`, `review` and `allow`
# once into a local: every mention of a rule costs a call, even when its value is cached.
package tollgate

default decision := {
	"action": "deny",
	"reason": "no rule allows this request",
	"rules": ["default-deny"],
	"mask": {"columns": {}, "detectors": []},
	"review": null,
}

decision := {
	"action": "deny",
	"reason": concat("; ", [d.reason | some d in denials]),
	"rules": sort({d.id | some d in denials}),
	"mask": mask,
	"review": null,
} if {
	denials := deny
	denials != set()
}

decision := {
	"action": "review",
	"reason": concat("; ", [r.reason | some r in reviews]),
	"rules": sort({r.id | some r in reviews}),
	"mask": mask,
	"review": review_settings,
} if {
	reviews := review
	reviews != set()
	deny == set()
	every_statement_allowed
}

decision := {
	"action": "allow",
	"reason": concat("; ", sort({a.reason | some a in allows})),
	"rules": sort({a.id | some a in allows}),
	"mask": mask,
	"review": null,
} if {
	deny == set()
	review == set()
	every_statement_allowed
	allows := allow
}
