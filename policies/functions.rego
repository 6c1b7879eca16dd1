# Server functions that read files, reach other servers, signal backends or change server
# settings (data.functions.denied) are refused, except for the privileged groups.
# Schema-qualified calls (pg_catalog.pg_read_file) match on the function name.
package tollgate

deny contains {
	"id": "no-dangerous-functions",
	"reason": sprintf("%s: function %s is not allowed", [stmt_label(i, s), name]),
} if {
	some i, s in input.request.statements
	some f in s.functions
	parts := split(lower(f), ".")
	name := parts[count(parts) - 1]
	name in data.functions.denied
	not member_of(data.groups.privileged)
}
