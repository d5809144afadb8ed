package server

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/gin-gonic/gin"
	"go.yaml.in/yaml/v3"
)

// openAPIYAML is keygate's HTTP contract, kept as YAML for people to edit.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPIYAML returns the OpenAPI 3.1 document as written.
func OpenAPIYAML() []byte { return bytes.Clone(openAPIYAML) }

// openAPIJSON converts the document once, keeping its members in the order
// they are written.
var openAPIJSON = sync.OnceValues(func() ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(openAPIYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	var b bytes.Buffer
	if err := writeJSONNode(&b, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
})

// OpenAPIJSON returns the OpenAPI 3.1 document as served at /openapi.json.
func OpenAPIJSON() ([]byte, error) {
	b, err := openAPIJSON()
	return bytes.Clone(b), err
}

func (s *Server) openAPI(c *gin.Context) {
	b, err := openAPIJSON()
	if err != nil {
		writeError(c, err)
		return
	}
	c.Data(http.StatusOK, "application/json", b)
}

// writeJSONNode writes a YAML node as JSON. The document uses the JSON
// subset of YAML's types and no anchors, so this is all it takes.
func writeJSONNode(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return fmt.Errorf("line %d: want one document", n.Line)
		}
		return writeJSONNode(b, n.Content[0])
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a key must be a scalar", k.Line)
			}
			if err := writeJSONString(b, k.Value); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := writeJSONNode(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSONNode(b, item); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return writeJSONString(b, n.Value)
		case "!!int", "!!float":
			if _, err := strconv.ParseFloat(n.Value, 64); err != nil {
				return fmt.Errorf("line %d: %q is not a JSON number", n.Line, n.Value)
			}
			b.WriteString(n.Value)
		case "!!bool", "!!null":
			var v any
			if err := n.Decode(&v); err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			data, _ := json.Marshal(v)
			b.Write(data)
		default:
			return fmt.Errorf("line %d: unsupported scalar %s", n.Line, n.ShortTag())
		}
	default:
		return fmt.Errorf("line %d: anchors and aliases are not used in this document", n.Line)
	}
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false) // "<jwt>" stays readable
	if err := enc.Encode(s); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}
