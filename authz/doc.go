// Package authz is keygate's domain: API keys and their tokens, scopes,
// principals and decisions, the one error type and its codes, the store
// interfaces the domain needs, the key and MCP server services, and the
// decision engine that runs the Rego policies.
//
// Authentication (is this a live key?) is Go; authorization (may it?) is
// Rego. KeyService.Decide is the one decision path behind every surface
// (the decision API, gateways, the MCP gateway and the gin middleware):
// it validates the checks, authenticates the key, evaluates the policy
// once for all checks and records denials off the request path.
//
// The package imports the standard library and OPA only. The adapters sit
// beside it and import it: storage (bun), server (gin), mcp (the MCP SDK);
// internal/app wires them together. A test keeps the arrows pointing in.
package authz
