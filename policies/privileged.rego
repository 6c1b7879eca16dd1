# Statements that destroy data in bulk, reach the server's operating system, need superuser
# rights or could not be analysed are refused, except for the groups data.groups names for
# each of them.
package tollgate

deny contains {
	"id": "no-truncate",
	"reason": sprintf("%s: TRUNCATE is not allowed", [stmt_label(i, s)]),
} if {
	some i, s in input.request.statements
	s.kind == "truncate"
	not member_of(data.groups.truncate)
}

deny contains {
	"id": "no-copy-program",
	"reason": sprintf("%s: COPY ... PROGRAM runs a command on the database server", [stmt_label(i, s)]),
} if {
	some i, s in input.request.statements
	s.copy_program == true
	not member_of(data.groups.copy_program)
}

deny contains {
	"id": "no-privileged",
	"reason": sprintf("%s: privileged statements are not allowed", [stmt_label(i, s)]),
} if {
	some i, s in input.request.statements
	s.class == "privileged"
	not member_of(data.groups.privileged)
}

# Unparseable input is a fact, never a pass: per statement ...
deny contains {
	"id": "no-unparsed",
	"reason": sprintf("%s: the statement could not be parsed", [stmt_label(i, s)]),
} if {
	some i, s in input.request.statements
	s.parse_error != null
	not member_of(data.groups.unparsed)
}

# ... and for the request as a whole.
deny contains {
	"id": "no-unparsed",
	"reason": "the request could not be parsed",
} if {
	input.request.parse_error != null
	not member_of(data.groups.unparsed)
}
