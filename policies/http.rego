# Package keygate.http says which check a request a gateway forwards means:
# nginx auth_request, Traefik ForwardAuth and Envoy ext_authz ask keygate
# before they pass a request on, and keygate decides the check this policy
# makes of it with keygate.authz, as for any other caller.
#
# decision is {"resource": {"type", "id"}, "action"} when the request means
# a check, and {"allow": false, "reasons": [...]} when it means none (which
# denies it). The input is the request's method and its path, decoded, in
# segments: {"method": "POST", "path": "/agents/a1/run",
# "segments": ["agents", "a1", "run"]}. keygate refuses, before this policy
# sees it, a path it could read otherwise than the server behind the
# gateway (dot segments, an encoded slash, control characters).
#
# Change the tables below to change the routes; anything they do not name
# is denied.
package keygate.http

# resource_types maps a path's first segment to the resource type the
# second segment is an id of.
resource_types := {
	"agents": "agent",
	"flows": "flow",
	"mcp-tools": "mcp_tool",
	"vector-stores": "vector_store",
}

# actions maps each method to the action it means on each resource type.
actions := {
	"agent": {"GET": "read", "HEAD": "read", "POST": "execute"},
	"flow": {"GET": "read", "HEAD": "read", "POST": "execute"},
	"mcp_tool": {"GET": "read", "HEAD": "read", "POST": "call"},
	"vector_store": {
		"GET": "read", "HEAD": "read", "POST": "query",
		"PUT": "write", "PATCH": "write", "DELETE": "write",
	},
}

default decision := {"allow": false, "reasons": ["the input is not a forwarded request (an object with method, path and segments)"]}

# decision is the check a request means when the tables map it; otherwise
# a deny with the reason they do not.
decision := {"resource": {"type": resource_type, "id": second}, "action": action} if {
	resource_type := resource_types[first]
	second != ""
	action := actions[resource_type][method]
} else := {"allow": false, "reasons": [denial]}

# denial is why a request maps to nothing: the first reason that applies.
denial := sprintf("path %q names no resource (its first segment must be one of %s)", [path, concat(", ", sort(object.keys(resource_types)))]) if {
	not resource_types[first]
} else := sprintf("path %q names no %s id (/%s/{id})", [path, resource_types[first], first]) if {
	second == ""
} else := sprintf("method %v is not mapped on /%s/{id} (mapped: %s)", [method, first, concat(", ", sort(object.keys(actions[resource_types[first]])))])

method := object.get(input, "method", "")

path := object.get(input, "path", "")

first := object.get(input, ["segments", 0], "")

second := object.get(input, ["segments", 1], "")
