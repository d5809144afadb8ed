package server

import (
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
	b, err := readBodyObject(c, mcpServerFields...)
	if err != nil {
		writeError(c, err)
		return
	}
	var in authz.CreateMCPServerInput
	b.required("name", &in.Name)
	b.required("url", &in.URL)
	b.optional("headers", &in.Headers)
	var enabled bool
	if b.optional("enabled", &enabled) {
		in.Enabled = &enabled
	}
	var ms int
	if b.optional("timeout_ms", &ms) {
		in.TimeoutMS = &ms
	}
	if err := b.err(); err != nil {
		writeError(c, err)
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
	b, err := readBodyObject(c, mcpServerFields...)
	if err != nil {
		writeError(c, err)
		return
	}
	upd := authz.MCPServerUpdate{
		Name:      patchField[string](b, "name"),
		URL:       patchField[string](b, "url"),
		Enabled:   patchField[bool](b, "enabled"),
		TimeoutMS: patchField[int](b, "timeout_ms"),
	}
	// null clears the headers; an object replaces them all.
	upd.SetHeaders, _ = b.nullable("headers", &upd.Headers)
	if err := b.err(); err != nil {
		writeError(c, err)
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
