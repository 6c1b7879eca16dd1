# data.tollgate.decision, the one document the gateway reads. Exactly one definition holds:
#
#   any deny                                       -> deny   (the reasons and ids of every deny)
#   any review, and every statement allowed        -> review (approvers and wait: review_settings)
#   no review, and every statement allowed         -> allow  (the ids of the allow rules)
#   otherwise, or when anything above is undefined -> deny   (default-deny)
#
# Written as separate definitions rather than an `else` chain: regorus' interpreter (which runs
# the tests) can get an `else` chain wrong under a test's `with input as ...` (0.14.1).
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
	"reason": concat("; ", [d.reason | some d in deny]),
	"rules": sort({d.id | some d in deny}),
	"mask": mask,
	"review": null,
} if {
	count(deny) > 0
}

decision := {
	"action": "review",
	"reason": concat("; ", [r.reason | some r in review]),
	"rules": sort({r.id | some r in review}),
	"mask": mask,
	"review": review_settings,
} if {
	count(deny) == 0
	count(review) > 0
	every_statement_allowed
}

decision := {
	"action": "allow",
	"reason": concat("; ", sort({a.reason | some a in allow})),
	"rules": sort({a.id | some a in allow}),
	"mask": mask,
	"review": null,
} if {
	count(deny) == 0
	count(review) == 0
	every_statement_allowed
}
