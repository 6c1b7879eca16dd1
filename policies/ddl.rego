# Schema and permission changes (class ddl or dcl) on connections labelled env=prod are for
# the DBA group (data.groups.dba) only.
package tollgate

deny contains {
	"id": "prod-ddl-dba-only",
	"reason": sprintf("%s: schema and permission changes on prod are for DBAs only", [stmt_label(i, s)]),
} if {
	# The connection first: off prod the statements need no look.
	input.connection.labels.env == "prod"
	some i, s in input.request.statements
	s.class in {"ddl", "dcl"}
	not member_of(data.groups.dba)
}
