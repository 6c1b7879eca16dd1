# Masking: the columns named in data.masking.columns ("schema.table.column": "mask kind") are
# masked for everyone outside the unmasked groups (data.groups.unmasked), and the content
# detectors in data.masking.detectors scan the other values (computed columns, casts,
# concatenations).
#
# All named columns are listed whatever tables the statement names: the mask stage matches them
# on the table and column the server reports for each result column, so a view or a function
# the analyser cannot see through does not hide a column.
package tollgate

mask := {"columns": {}, "detectors": []} if {
	unmasked
}

mask := {"columns": data.masking.columns, "detectors": data.masking.detectors} if {
	not unmasked
}

# unmasked: the principal sees results as they are. A rule, so both definitions of mask share
# one membership test; member_of written inline, as every request runs it (README.md, "Cost").
unmasked if {
	some g in input.principal.groups
	g in data.groups.unmasked
}
