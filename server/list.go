package server

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// page is every listing's answer: the items, never null, and the cursor of
// the next page, null at the end.
type page[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// writePage answers a listing.
func writePage[T any](c *gin.Context, items []T, next string) {
	out := page[T]{Data: items}
	if out.Data == nil {
		out.Data = []T{}
	}
	if next != "" {
		out.NextCursor = &next
	}
	writeJSON(c, http.StatusOK, out)
}

// queryLimit reads the limit query parameter (1 to authz.MaxLimit; 0 when
// absent, for the default), adding a field error when it is out of range.
func queryLimit(c *gin.Context, fields []authz.FieldError) (int, []authz.FieldError) {
	v, ok := c.GetQuery("limit")
	if !ok {
		return 0, fields
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > authz.MaxLimit {
		fields = append(fields, authz.FieldError{Field: "limit", Message: "must be an integer from 1 to 100"})
	}
	return n, fields
}

// queryUserID reads the user_id filter: nil when absent, an error when
// empty.
func queryUserID(c *gin.Context, fields []authz.FieldError) (*string, []authz.FieldError) {
	v, ok := c.GetQuery("user_id")
	if !ok {
		return nil, fields
	}
	if v == "" {
		fields = append(fields, authz.FieldError{Field: "user_id", Message: "must not be empty"})
	}
	return &v, fields
}
