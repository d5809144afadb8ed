// Package policies holds keygate's Rego policies: keygate.authz decides what
// an API key may do, keygate.management who may manage keys, users, tenants,
// audit events and MCP servers, keygate.http which check a request a gateway
// forwards means, and system.log what decision logs leave out. They are
// embedded so the binary runs with no policy files; README.md states the
// input and output contract they keep.
package policies

import (
	"embed"
	"io/fs"
)

//go:embed *.rego
var files embed.FS

// FS returns the embedded policy files (*.rego at the root), the default
// that KEYGATE_POLICY_DIR replaces.
func FS() fs.FS { return files }
