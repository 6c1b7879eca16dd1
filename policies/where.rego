# UPDATE and DELETE must carry a WHERE clause: without one they change every row. A missing
# has_where fact counts as no WHERE.
package tollgate

deny contains {
	"id": "write-without-where",
	"reason": sprintf("%s: UPDATE and DELETE need a WHERE clause", [stmt_label(i, s)]),
} if {
	some i, s in input.request.statements
	s.kind in {"update", "delete"}
	not s.has_where == true
}
