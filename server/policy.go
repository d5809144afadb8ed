package server

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// policyRoutes registers GET /api/v1/policy: which policy this instance
// serves, and how its last reload went.
func (s *Server) policyRoutes(api *gin.RouterGroup) {
	api.GET("/policy", s.getPolicy)
}

// policyJSON is the answer of GET /api/v1/policy.
type policyJSON struct {
	Revision       string     `json:"revision"`
	Source         string     `json:"source"`
	BundleRevision string     `json:"bundle_revision,omitempty"`
	LoadedAt       time.Time  `json:"loaded_at"`
	LastError      *string    `json:"last_error"`
	LastErrorAt    *time.Time `json:"last_error_at"`
}

func (s *Server) getPolicy(c *gin.Context) {
	st, err := s.policy.Get(c.Request.Context())
	if err != nil {
		writeError(c, err)
		return
	}
	out := policyJSON{Revision: st.Revision, Source: st.Source, BundleRevision: st.BundleRevision, LoadedAt: st.LoadedAt}
	if st.LastError != "" {
		out.LastError, out.LastErrorAt = &st.LastError, &st.LastErrorAt
	}
	writeJSON(c, http.StatusOK, out)
}
