# Per-connection allow lists of tables: a connection whose entry in data.connections has a
# "tables" list only serves statements that touch tables on that list. An entry ending in "*"
# matches every table that starts with the part before the star ("public.pgbench_*").
# Unqualified names, in the list or in the facts, are taken to be in schema "public".
#
# The list is read with object.get: regorus' RVM (0.14.1) does not leave
# data.connections[name].tables undefined for a connection without an entry.
package tollgate

deny contains {
	"id": "connection-table-allowlist",
	"reason": sprintf("%s: table %s is not on the allow list of connection %s", [stmt_label(i, s), t, input.connection.name]),
} if {
	allowed := object.get(data.connections, [input.connection.name, "tables"], null)
	is_array(allowed)
	some i, s in input.request.statements
	some t in s.tables
	not t in allowed
	not table_allowed(qualified(t), allowed)
}

# table_allowed(table, allowed): the schema-qualified table is on the list as it is (the common
# case, one lookup), as an unqualified entry, or under a "*" entry.
table_allowed(table, allowed) if table in allowed

table_allowed(table, allowed) if {
	some a in allowed
	not endswith(a, "*")
	qualified(a) == table
}

table_allowed(table, allowed) if {
	some a in allowed
	endswith(a, "*")
	startswith(table, qualified(trim_suffix(a, "*")))
}
