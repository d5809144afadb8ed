# Office hours: keys act only on weekdays from 08:00 to 18:00, Berlin time.
#
# A module of its own in package keygate.authz adds to deny (see
# policies/authz.rego); a string there denies every check of the request.
# input.context.time is the time of the request (RFC 3339, UTC), which
# keygate always sends. Reading it makes answers depend on the time, so
# keygate turns its decision cache off for this policy (it says so at start).
package keygate.authz

office_hours := {
	"zone": "Europe/Berlin",
	"days": {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"},
	"opens": 8, # hour the office opens
	"closes": 18, # hour it closes
}

deny contains "outside office hours (Monday to Friday, 08:00 to 18:00 Europe/Berlin)" if {
	not in_office_hours
}

# in_office_hours holds when input.context.time is a working hour; a
# missing or malformed time is not one, so it denies.
in_office_hours if {
	t := time.parse_rfc3339_ns(input.context.time)
	time.weekday([t, office_hours.zone]) in office_hours.days
	[hour, _, _] := time.clock([t, office_hours.zone])
	hour >= office_hours.opens
	hour < office_hours.closes
}
