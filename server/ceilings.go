package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// ceilingRoutes registers the scope ceilings of a tenant's users: what an
// admin lets every key of a user stay within.
func (s *Server) ceilingRoutes(api *gin.RouterGroup) {
	api.GET("/users/:id/scope-ceiling", s.getCeiling)
	api.PUT("/users/:id/scope-ceiling", s.putCeiling)
	api.DELETE("/users/:id/scope-ceiling", s.deleteCeiling)
}

func (s *Server) getCeiling(c *gin.Context) {
	ceiling, err := s.keys.ScopeCeiling(c.Request.Context(), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, ceiling)
}

func (s *Server) putCeiling(c *gin.Context) {
	b, err := readBodyObject(c, "permission_scope")
	if err != nil {
		writeError(c, err)
		return
	}
	var scope authz.Scope
	if raw, ok := b.raw("permission_scope"); !ok {
		b.fail("permission_scope", "is required")
	} else if scope, err = authz.ParseScope(raw); err != nil {
		b.fields = append(b.fields, authz.ErrorFields(err)...)
	}
	if err := b.err(); err != nil {
		writeError(c, err)
		return
	}
	ceiling, err := s.keys.SetScopeCeiling(c.Request.Context(), c.Param("id"), scope)
	if err != nil {
		writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, ceiling)
}

func (s *Server) deleteCeiling(c *gin.Context) {
	if err := s.keys.DeleteScopeCeiling(c.Request.Context(), c.Param("id")); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
