package keygate.http_test

import data.keygate.http

# forwarded is the input keygate gives for a method and a path.
forwarded(method, path) := {
	"method": method,
	"path": path,
	"segments": array.slice(split(path, "/"), 1, count(split(path, "/"))),
}

check(type, id, action) := {"resource": {"type": type, "id": id}, "action": action}

denied(reason) := {"allow": false, "reasons": [reason]}

# --- the shipped mapping, every row ---

test_reads_of_every_type if {
	every path, type in {
		"/agents/a1": "agent", "/flows/f1": "flow",
		"/mcp-tools/github__search": "mcp_tool", "/vector-stores/docs": "vector_store",
	} {
		every method in ["GET", "HEAD"] {
			http.decision == check(type, split(path, "/")[2], "read") with input as forwarded(method, path)
		}
	}
}

test_post_is_each_types_own_action if {
	every path, want in {
		"/agents/a1/run": check("agent", "a1", "execute"),
		"/flows/f1": check("flow", "f1", "execute"),
		"/mcp-tools/github__search/call": check("mcp_tool", "github__search", "call"),
		"/vector-stores/docs/query": check("vector_store", "docs", "query"),
	} {
		http.decision == want with input as forwarded("POST", path)
	}
}

test_writes_to_vector_stores if {
	every method in ["PUT", "PATCH", "DELETE"] {
		http.decision == check("vector_store", "docs", "write") with input as forwarded(method, "/vector-stores/docs/items/7")
	}
}

test_deeper_paths_name_the_same_resource if {
	http.decision == check("agent", "a1", "read") with input as forwarded("GET", "/agents/a1/runs/42/log")
}

# --- what maps to nothing is denied, saying why ---

test_writes_to_agents_are_not_mapped if {
	every method in ["PUT", "PATCH", "DELETE"] {
		http.decision == denied(sprintf("method %s is not mapped on /agents/{id} (mapped: GET, HEAD, POST)", [method])) with input as forwarded(method, "/agents/a1")
	}
}

test_unknown_method_is_not_mapped if {
	http.decision == denied("method OPTIONS is not mapped on /vector-stores/{id} (mapped: DELETE, GET, HEAD, PATCH, POST, PUT)") with input as forwarded("OPTIONS", "/vector-stores/docs")
}

test_methods_are_case_sensitive if {
	http.decision == denied("method get is not mapped on /flows/{id} (mapped: GET, HEAD, POST)") with input as forwarded("get", "/flows/f1")
}

test_unknown_first_segment if {
	http.decision == denied(`path "/admin/users" names no resource (its first segment must be one of agents, flows, mcp-tools, vector-stores)`) with input as forwarded("GET", "/admin/users")
}

test_root_names_no_resource if {
	http.decision == denied(`path "/" names no resource (its first segment must be one of agents, flows, mcp-tools, vector-stores)`) with input as forwarded("GET", "/")
}

test_segments_are_case_sensitive if {
	not http.decision.resource with input as forwarded("GET", "/Agents/a1")
}

test_collection_without_id if {
	every path in ["/agents", "/agents/"] {
		http.decision == denied(sprintf("path %q names no agent id (/agents/{id})", [path])) with input as forwarded("GET", path)
	}
}

test_empty_id_segment if {
	http.decision == denied(`path "/flows//f1" names no flow id (/flows/{id})`) with input as forwarded("GET", "/flows//f1")
}

test_input_without_request if {
	http.decision == denied(`path "" names no resource (its first segment must be one of agents, flows, mcp-tools, vector-stores)`) with input as {}
}

test_input_that_is_not_an_object if {
	http.decision == denied("the input is not a forwarded request (an object with method, path and segments)") with input as "GET /agents/a1"
}
