package server

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"go.opentelemetry.io/otel/trace"
)

// RequestIDHeader carries a request id in and out.
const RequestIDHeader = "X-Request-Id"

const (
	ctxRequestID = "keygate.request_id"
	ctxLogger    = "keygate.logger"
	ctxBaseLog   = "keygate.base_logger"
	ctxPrincipal = "keygate.principal"
	ctxActor     = "keygate.actor"
)

// requestContext gives every request an id (the caller's when it is sane), a
// logger carrying it, a bounded body, and the request facts the audit trail
// needs. It never logs a header or a body.
func requestContext(base *slog.Logger, maxBody int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(RequestIDHeader)
		if !saneRequestID(id) {
			id = newRequestID()
		}
		c.Set(ctxRequestID, id)
		c.Set(ctxBaseLog, base)
		c.Header(RequestIDHeader, id)
		if c.Request.Body != nil {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBody)
		}
		info := authz.RequestInfo{
			IP:        c.ClientIP(),
			UserAgent: authz.Truncate(c.Request.UserAgent(), 256),
			RequestID: id,
		}
		if sc := trace.SpanContextFromContext(c.Request.Context()); sc.HasTraceID() {
			info.TraceID = sc.TraceID().String()
		}
		c.Request = c.Request.WithContext(authz.NewContextWithRequestInfo(c.Request.Context(), info))

		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		level := slog.LevelInfo
		if quietRoutes[route] && c.Writer.Status() < http.StatusInternalServerError ||
			c.Writer.Status() == http.StatusTooManyRequests {
			// A refused flood is logged by the limiter, once a minute per
			// address, not a line per request.
			level = slog.LevelDebug
		}
		if !base.Enabled(c.Request.Context(), level) {
			return
		}
		loggerFrom(c).LogAttrs(c.Request.Context(), level, "request",
			slog.String("method", c.Request.Method),
			slog.String("route", route),
			slog.Int("status", c.Writer.Status()),
			slog.Duration("duration", time.Since(start)),
			slog.String("ip", info.IP),
		)
	}
}

// recovery turns a panic into a logged 500 problem.
func recovery() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				loggerFrom(c).Error("panic serving request", "panic", r)
				writeError(c, authz.Errorf(authz.EINTERNAL, "internal error"))
			}
		}()
		c.Next()
	}
}

const requestIDChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	return strings.Trim(id, requestIDChars) == ""
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func requestID(c *gin.Context) string {
	return c.GetString(ctxRequestID)
}

// loggerFrom returns the request's logger, carrying its id; it is made on
// first use, as most requests log nothing.
func loggerFrom(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger); ok {
		if logger, ok := l.(*slog.Logger); ok {
			return logger
		}
	}
	if b, ok := c.Get(ctxBaseLog); ok {
		if base, ok := b.(*slog.Logger); ok {
			logger := base.With(slog.String("request_id", requestID(c)))
			c.Set(ctxLogger, logger)
			return logger
		}
	}
	return slog.New(slog.DiscardHandler)
}

// quietRoutes are the hot and the polled endpoints: their successful
// requests are logged at debug level, so a busy instance does not spend
// its time writing a line per decision. Denials are in the audit trail.
var quietRoutes = map[string]bool{
	"/v1/authorize":            true,
	"/v1/whoami":               true,
	"/healthz":                 true,
	ForwardAuthPath:            true,
	ForwardAuthPath + "/*path": true,
	"/metrics":                 true,
	"/readyz":                  true,
}

// bearerToken returns the credential of an `Authorization: Bearer` header.
func bearerToken(r *http.Request) string {
	return bearerCredential(r.Header.Get("Authorization"))
}

// bearerCredential returns the credential of an Authorization value of the
// Bearer scheme.
func bearerCredential(h string) string {
	const prefix = "bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}
