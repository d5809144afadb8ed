package main

import (
	"context"
	"fmt"
	"io"

	"github.com/keygate/keygate/server"
)

// runOpenAPI prints the OpenAPI 3.1 document this keygate serves at
// /openapi.json, or its YAML source.
func runOpenAPI(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("openapi", stderr)
	asYAML := fs.Bool("yaml", false, "print the YAML source instead of JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("openapi takes no arguments, got %q", fs.Args())}
	}
	if *asYAML {
		_, err := stdout.Write(server.OpenAPIYAML())
		return err
	}
	doc, err := server.OpenAPIJSON()
	if err != nil {
		return err
	}
	_, err = stdout.Write(doc)
	return err
}
