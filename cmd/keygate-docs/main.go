// Command keygate-docs writes docs/api.md from the OpenAPI document
// (server/openapi.yaml); `make docs` runs it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/keygate/keygate/internal/apidoc"
	"github.com/keygate/keygate/server"
)

func main() {
	out := flag.String("o", "docs/api.md", "file to write")
	flag.Parse()
	md, err := apidoc.Render(server.OpenAPIYAML())
	if err == nil {
		err = os.WriteFile(*out, md, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "keygate-docs:", err)
		os.Exit(1)
	}
}
