package server

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// mcpServerFields are the members a server's JSON body may hold. headers is
// write-only: it is read here and never written back.
var mcpServerFields = []string{"name", "url", "headers", "enabled", "timeout_ms"}

// mcpRoutes registers the upstream MCP server registry on the management
// API.
func (s *Server) mcpRoutes(api *gin.RouterGroup) {
	api.POST("/mcp-servers", s.createMCPServer)
	api.GET("/mcp-servers", s.listMCPServers)
	api.GET("/mcp-servers/:id", s.getMCPServer)
	api.PATCH("/mcp-servers/:id", s.updateMCPServer)
	api.DELETE("/mcp-servers/:id", s.deleteMCPServer)
	api.POST("/mcp-servers/:id/sync", s.syncMCPServer)
	api.GET("/mcp-tools", s.listMCPTools)
}

func (s *Server) createMCPServer(c *gin.Context) {
	members, err := readObject(c, mcpServerFields...)
	if err != nil {
		writeError(c, err)
		return
	}
	var in authz.CreateMCPServerInput
	var fields []authz.FieldError
	for _, req := range []struct {
		name string
		dst  *string
	}{{"name", &in.Name}, {"url", &in.URL}} {
		if raw, ok := members[req.name]; !ok || isNull(raw) {
			fields = append(fields, authz.FieldError{Field: req.name, Message: "is required"})
		} else if fe := decodeField(raw, req.name, req.dst); fe != nil {
			fields = append(fields, *fe)
		}
	}
	if raw, ok := members["headers"]; ok && !isNull(raw) {
		if fe := decodeField(raw, "headers", &in.Headers); fe != nil {
			fields = append(fields, *fe)
		}
	}
	if raw, ok := members["enabled"]; ok && !isNull(raw) {
		var enabled bool
		if fe := decodeField(raw, "enabled", &enabled); fe != nil {
			fields = append(fields, *fe)
		}
		in.Enabled = &enabled
	}
	if raw, ok := members["timeout_ms"]; ok && !isNull(raw) {
		if fe := decodeField(raw, "timeout_ms", &in.TimeoutMS); fe != nil {
			fields = append(fields, *fe)
		} else if in.TimeoutMS == 0 {
			fields = append(fields, authz.FieldError{Field: "timeout_ms", Message: "must be from 100 to 120000 milliseconds"})
		}
	}
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	srv, err := s.mcp.CreateServer(c.Request.Context(), in)
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Location", "/api/v1/mcp-servers/"+srv.ID)
	writeJSON(c, http.StatusCreated, srv)
}

func (s *Server) listMCPServers(c *gin.Context) {
	filter := authz.MCPServerFilter{Cursor: c.Query("cursor")}
	var fields []authz.FieldError
	filter.Limit, fields = queryLimit(c, fields)
	filter.UserID, fields = queryUserID(c, fields)
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	page, err := s.mcp.ListServers(c.Request.Context(), filter)
	if err != nil {
		writeError(c, err)
		return
	}
	writePage(c, page.Servers, page.NextCursor)
}

func (s *Server) getMCPServer(c *gin.Context) {
	srv, err := s.mcp.Server(c.Request.Context(), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, srv)
}

func (s *Server) updateMCPServer(c *gin.Context) {
	members, err := readObject(c, mcpServerFields...)
	if err != nil {
		writeError(c, err)
		return
	}
	var upd authz.MCPServerUpdate
	var fields []authz.FieldError
	notNull := func(name string, raw json.RawMessage) bool {
		if isNull(raw) {
			fields = append(fields, authz.FieldError{Field: name, Message: "must not be null"})
			return false
		}
		return true
	}
	for _, opt := range []struct {
		name string
		dst  **string
	}{{"name", &upd.Name}, {"url", &upd.URL}} {
		if raw, ok := members[opt.name]; ok && notNull(opt.name, raw) {
			var v string
			if fe := decodeField(raw, opt.name, &v); fe != nil {
				fields = append(fields, *fe)
			}
			*opt.dst = &v
		}
	}
	if raw, ok := members["headers"]; ok {
		// null clears the headers; an object replaces them all.
		upd.SetHeaders = true
		if !isNull(raw) {
			if fe := decodeField(raw, "headers", &upd.Headers); fe != nil {
				fields = append(fields, *fe)
			}
		}
	}
	if raw, ok := members["enabled"]; ok && notNull("enabled", raw) {
		var enabled bool
		if fe := decodeField(raw, "enabled", &enabled); fe != nil {
			fields = append(fields, *fe)
		}
		upd.Enabled = &enabled
	}
	if raw, ok := members["timeout_ms"]; ok && notNull("timeout_ms", raw) {
		var ms int
		if fe := decodeField(raw, "timeout_ms", &ms); fe != nil {
			fields = append(fields, *fe)
		}
		upd.TimeoutMS = &ms
	}
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	srv, err := s.mcp.UpdateServer(c.Request.Context(), c.Param("id"), upd)
	if err != nil {
		writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, srv)
}

func (s *Server) deleteMCPServer(c *gin.Context) {
	if err := s.mcp.DeleteServer(c.Request.Context(), c.Param("id")); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// syncMCPServer refreshes a server's catalog now. An upstream that cannot be
// reached is a 503 whose detail says why; the failure is also recorded on
// the server, whose tools stay hidden until a sync succeeds.
func (s *Server) syncMCPServer(c *gin.Context) {
	report, err := s.mcp.SyncServer(c.Request.Context(), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	loggerFrom(c).Info("MCP server synced", "server_id", report.Server.ID, "tools", len(report.Tools),
		"added", len(report.Added), "removed", len(report.Removed), "changed", len(report.Changed))
	writeJSON(c, http.StatusOK, report)
}

func (s *Server) listMCPTools(c *gin.Context) {
	filter := authz.MCPToolFilter{Cursor: c.Query("cursor"), ServerID: c.Query("server_id")}
	var fields []authz.FieldError
	filter.Limit, fields = queryLimit(c, fields)
	filter.UserID, fields = queryUserID(c, fields)
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	page, err := s.mcp.ListTools(c.Request.Context(), filter)
	if err != nil {
		writeError(c, err)
		return
	}
	writePage(c, page.Tools, page.NextCursor)
}
