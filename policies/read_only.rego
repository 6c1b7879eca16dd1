# Read-only groups (data.groups.read_only): members may only run reads, session settings and
# transaction control. Membership of a read-only group wins over any other group.
package tollgate

deny contains {
	"id": "read-only-group",
	"reason": sprintf("%s: read-only groups may only read", [stmt_label(i, s)]),
} if {
	some i, s in input.request.statements
	not s.class in {"read", "session", "transaction"}
	# member_of, inline: every write runs this line (README.md, "Cost").
	some g in input.principal.groups
	g in data.groups.read_only
}

# A read that writes or locks all the same: SELECT INTO, a data-modifying CTE, FOR UPDATE/SHARE.
deny contains {
	"id": "read-only-group",
	"reason": sprintf("%s: read-only groups may only read (the statement writes or locks rows)", [stmt_label(i, s)]),
} if {
	some i, s in input.request.statements
	true in [s.select_into, s.data_modifying_cte, s.for_update]
	member_of(data.groups.read_only)
}
