package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// DefaultMaxBodyBytes bounds every request body.
const DefaultMaxBodyBytes = 1 << 20

func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// readObject reads a bounded JSON object body and returns its members by
// name. Unknown members are refused by name, so a typo never passes silently.
func readObject(c *gin.Context, allowed ...string) (map[string]json.RawMessage, error) {
	body, err := readBody(c)
	if err != nil {
		return nil, err
	}
	return parseObject(body, allowed...)
}

// readBody reads the whole (bounded) request body.
func readBody(c *gin.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return nil, bodyError(err)
	}
	return body, nil
}

// readBodyInto reads the whole (bounded) request body into buf, which must
// be empty; the body is buf's and valid until buf is changed.
func readBodyInto(c *gin.Context, buf *bytes.Buffer) ([]byte, error) {
	if _, err := buf.ReadFrom(c.Request.Body); err != nil {
		return nil, bodyError(err)
	}
	return buf.Bytes(), nil
}

func bodyError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return authz.Errorf(authz.ETOOLARGE, "the request body is larger than %d bytes", maxErr.Limit)
	}
	return authz.Errorf(authz.EMALFORMED, "the request body could not be read")
}

// bodyBuffers are the buffers decision requests are read into: a decision
// body is scanned and decoded, and the decoders copy what they keep, so the
// buffer can serve the next request instead of a new one each time.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody is the largest buffer kept for reuse, so that a rare large
// body does not stay in memory.
const maxPooledBody = 64 << 10

func releaseBodyBuffer(buf *bytes.Buffer) {
	if buf.Cap() > maxPooledBody {
		return
	}
	buf.Reset()
	bodyBuffers.Put(buf)
}

// parseObject splits a JSON object into its members, refusing unknown ones
// by their exact name, duplicate members and invalid UTF-8 (scanJSON).
func parseObject(body []byte, allowed ...string) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, authz.Errorf(authz.EMALFORMED, "the request body must be a JSON object")
	}
	if _, err := scanJSON(trimmed); err != nil {
		return nil, err
	}
	var members map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&members); err != nil || members == nil {
		return nil, authz.Errorf(authz.EMALFORMED, "the request body must be a JSON object")
	}
	if dec.More() {
		return nil, authz.Errorf(authz.EMALFORMED, "the request body has data after the JSON object")
	}
	var unknown []authz.FieldError
	for name := range members {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, authz.FieldError{Field: name, Message: "unknown field"})
		}
	}
	if len(unknown) > 0 {
		sort.Slice(unknown, func(i, j int) bool { return unknown[i].Field < unknown[j].Field })
		return nil, authz.Invalid(unknown...)
	}
	return members, nil
}

// decodeField decodes one member strictly into v, naming the field on error:
// member names must match v's exactly (encoding/json alone ignores case),
// and none may be unknown. raw comes from a scanned body.
func decodeField(raw json.RawMessage, field string, v any) *authz.FieldError {
	if fe := exactNames(raw, reflect.TypeOf(v), field); fe != nil {
		return fe
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := "has the wrong type"
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			if typeErr.Field != "" {
				field += "." + typeErr.Field
			}
			msg = "must be " + kindName(typeErr.Type.Kind())
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field += "." + strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			msg = "unknown field"
		case strings.Contains(err.Error(), "parsing time"):
			msg = "must be an RFC 3339 time"
		}
		return &authz.FieldError{Field: field, Message: msg}
	}
	return nil
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	default:
		return "a number"
	}
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// headerJSON is the Content-Type of JSON answers, shared (never changed) so
// setting it allocates nothing, as gin's own renderers do.
var headerJSON = []string{"application/json; charset=utf-8"}

func writeJSON(c *gin.Context, status int, v any) {
	c.Writer.Header()["Content-Type"] = headerJSON
	c.Status(status)
	if err := encodeJSON(c.Writer, v); err != nil {
		loggerFrom(c).Warn("response not written", "err", err)
	}
}
