# Shared helpers for the rules of package tollgate.
#
# Rules read `input` directly and test the cheap statement facts first, group membership
# last: the policy runs on regorus' RVM, where a function call costs about as much as twenty
# plain instructions, and the common case (a plain read) should fail each deny rule at its
# first line (README.md, "Cost"). Helpers are used where a rule matches (reasons,
# exemptions), not in the line that filters statements.
#
# Helpers are functions, not rules over `input`, and rules avoid `else` chains: regorus'
# interpreter (which runs the tests) can get both wrong under a test's `with input as ...`
# (regorus 0.14.1); the Rust tests check that the RVM and the interpreter agree. The one rule
# over `input` used as a helper, `unmasked` (mask.rego), has a test that it follows the input
# from one `with` to the next.
package tollgate

# member_of(names) holds when the principal is in any of the named groups. The three tests that
# most requests run (unmasked; read_only and class_allows for every write) spell it out inline,
# `some g in input.principal.groups; g in names`, which means the same without the call.
member_of(names) if {
	some g in input.principal.groups
	g in names
}

# stmt_label(i, s) names statement i in a reason: "statement 2 (delete)".
stmt_label(i, s) := sprintf("statement %d (%s)", [i + 1, kind_of(s)])

# kind_of(s) is the statement kind, "unknown" when the fact is missing, so a reason can always
# be written and a deny never turns undefined for want of a label.
kind_of(s) := s.kind if {
	is_string(s.kind)
} else := "unknown"

# qualified(t) is a table name with its schema; unqualified names are in "public".
qualified(t) := t if {
	contains(t, ".")
} else := concat(".", ["public", t])
