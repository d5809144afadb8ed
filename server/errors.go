package server

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// ErrorStatus maps a domain error code to its HTTP status. It is the only
// place that knows the mapping.
func ErrorStatus(code string) int {
	switch code {
	case authz.EMALFORMED:
		return http.StatusBadRequest
	case authz.EUNAUTHORIZED, authz.KeyInvalid, authz.KeyDisabled, authz.KeyExpired:
		return http.StatusUnauthorized
	case authz.EFORBIDDEN, authz.CodeDenied:
		return http.StatusForbidden
	case authz.ENOTFOUND:
		return http.StatusNotFound
	case authz.ECONFLICT:
		return http.StatusConflict
	case authz.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case authz.EINVALID:
		return http.StatusUnprocessableEntity
	case authz.ERATELIMIT, authz.CodeRateLimited, authz.CodeUsageExceeded:
		return http.StatusTooManyRequests
	case authz.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// RetryAfterSeconds is a Retry-After value: whole seconds, rounded up, at
// least one.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type      string             `json:"type"`
	Title     string             `json:"title"`
	Status    int                `json:"status"`
	Detail    string             `json:"detail"`
	Code      string             `json:"code"`
	RequestID string             `json:"request_id"`
	Errors    []authz.FieldError `json:"errors,omitempty"`

	// ExistingID, with a 409, is the id of what already holds the name.
	ExistingID string `json:"existing_id,omitempty"`

	// Reasons and DecisionID, in a refusal of forward auth, are the
	// policy's reasons and the decision's id in the audit trail.
	Reasons    []string `json:"reasons,omitempty"`
	DecisionID string   `json:"decision_id,omitempty"`
}

// problemContentType is the media type of RFC 9457 documents.
const problemContentType = "application/problem+json"

// writeError answers with the problem document for err and aborts the
// chain. Internal errors are logged with the request id and shown to the
// caller only as "internal error".
func writeError(c *gin.Context, err error) {
	code := authz.ErrorCode(err)
	status := ErrorStatus(code)
	if wait := authz.ErrorRetryAfter(err); wait > 0 {
		c.Header("Retry-After", RetryAfterSeconds(wait))
	}
	if status == http.StatusInternalServerError {
		var e *authz.Error
		if !errors.As(err, &e) || code == authz.EINTERNAL {
			loggerFrom(c).LogAttrs(c.Request.Context(), slog.LevelError, "request failed", slog.String("err", err.Error()))
		}
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="keygate"`)
	}
	p := newProblem(c, status, code, authz.ErrorMessage(err), authz.ErrorFields(err))
	if e := (*authz.Error)(nil); errors.As(err, &e) {
		p.ExistingID = e.ExistingID
	}
	c.Abort()
	c.Render(status, problemRender{p})
}

// writeProblem answers with a problem document and aborts the chain.
func writeProblem(c *gin.Context, status int, code, detail string, fields ...authz.FieldError) {
	c.Abort()
	c.Render(status, problemRender{newProblem(c, status, code, detail, fields)})
}

func newProblem(c *gin.Context, status int, code, detail string, fields []authz.FieldError) Problem {
	return makeProblem(requestID(c), status, code, detail, fields)
}

func makeProblem(requestID string, status int, code, detail string, fields []authz.FieldError) Problem {
	return Problem{
		Type:      "urn:keygate:problem:" + code,
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		Code:      code,
		RequestID: requestID,
		Errors:    fields,
	}
}

// problemRender writes JSON with the problem media type; gin's JSON render
// would force application/json.
type problemRender struct{ p Problem }

func (r problemRender) Render(w http.ResponseWriter) error {
	r.WriteContentType(w)
	return encodeJSON(w, r.p)
}

func (problemRender) WriteContentType(w http.ResponseWriter) {
	w.Header().Set("Content-Type", problemContentType)
}
