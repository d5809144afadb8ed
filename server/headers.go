package server

import (
	"strings"

	"github.com/gin-gonic/gin"
)

// Values of the security headers every answer carries, shared (never
// changed) so setting them allocates nothing.
var (
	headerNosniff   = []string{"nosniff"}
	headerCSP       = []string{"default-src 'none'; frame-ancestors 'none'"}
	headerReferrer  = []string{"no-referrer"}
	headerNoStore   = []string{"no-store"}
	headerHSTS      = []string{"max-age=31536000"}
	headerFrameDeny = []string{"DENY"}
)

// securityHeaders sets, on every answer (errors, 404s and /mcp included),
// the headers that keep a browser from sniffing, framing or leaking one:
// keygate serves JSON to programs, never pages. /api and /v1 answers carry
// keys, scopes and decisions, so no cache may keep them. Over TLS, browsers
// are told to use nothing else.
func securityHeaders() gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h["X-Content-Type-Options"] = headerNosniff
		h["Content-Security-Policy"] = headerCSP
		h["Referrer-Policy"] = headerReferrer
		h["X-Frame-Options"] = headerFrameDeny
		if p := c.Request.URL.Path; strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/v1/") {
			h["Cache-Control"] = headerNoStore
		}
		if c.Request.TLS != nil {
			h["Strict-Transport-Security"] = headerHSTS
		}
		c.Next()
	}
}
