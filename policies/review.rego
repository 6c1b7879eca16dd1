# Writes on connections labelled env=prod by anyone outside the DBA group are held for review.
# Approvers and the wait come from data.review, overridden per connection by
# data.connections[name].review.
package tollgate

review contains {
	"id": "prod-writes-review",
	"reason": "writes to prod need a DBA review",
} if {
	# The connection first: off prod the statements need no look.
	input.connection.labels.env == "prod"
	some s in input.request.statements
	s.class == "write"
	not member_of(data.groups.dba)
}

review_settings := object.union(data.review, object.get(data.connections, [input.connection.name, "review"], {}))
