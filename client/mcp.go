package client

import (
	"context"
	"iter"
	"net/http"
)

const (
	mcpServersPath = "/api/v1/mcp-servers"
	mcpToolsPath   = "/api/v1/mcp-tools"
)

// CreateMCPServer registers an upstream MCP server and syncs its catalog;
// the answer's LastSyncedAt and SyncError tell whether the sync reached it.
// It is sent once.
func (c *Client) CreateMCPServer(ctx context.Context, req CreateMCPServerRequest) (*MCPServer, error) {
	out := new(MCPServer)
	return out, c.do(ctx, call{method: http.MethodPost, path: mcpServersPath, body: req, out: out})
}

// GetMCPServer returns one server.
func (c *Client) GetMCPServer(ctx context.Context, id string) (*MCPServer, error) {
	if id == "" {
		return nil, errEmptyID
	}
	out := new(MCPServer)
	return out, c.do(ctx, call{method: http.MethodGet, path: pathOf(mcpServersPath, id), idempotent: true, out: out})
}

// ListMCPServers returns one page of the tenant's servers.
func (c *Client) ListMCPServers(ctx context.Context, p ListMCPServersParams) (*MCPServerPage, error) {
	q := pageQuery(p.Limit, p.Cursor)
	setIf(q, "user_id", p.UserID)
	out := new(MCPServerPage)
	return out, c.do(ctx, call{method: http.MethodGet, path: mcpServersPath, query: q, idempotent: true, out: out})
}

// MCPServers walks every server, page after page.
func (c *Client) MCPServers(ctx context.Context, p ListMCPServersParams) iter.Seq2[*MCPServer, error] {
	return each(ctx, p.Cursor, func(ctx context.Context, cursor string) ([]MCPServer, string, error) {
		p.Cursor = cursor
		page, err := c.ListMCPServers(ctx, p)
		if err != nil {
			return nil, "", err
		}
		return page.Data, page.NextCursor, nil
	})
}

// UpdateMCPServer changes a server. It is sent once.
func (c *Client) UpdateMCPServer(ctx context.Context, id string, req UpdateMCPServerRequest) (*MCPServer, error) {
	if id == "" {
		return nil, errEmptyID
	}
	out := new(MCPServer)
	return out, c.do(ctx, call{method: http.MethodPatch, path: pathOf(mcpServersPath, id), body: req, out: out})
}

// DeleteMCPServer removes a server and its tools.
func (c *Client) DeleteMCPServer(ctx context.Context, id string) error {
	return c.deleteByID(ctx, mcpServersPath, id)
}

// SyncMCPServer refreshes a server's catalog now. An upstream that cannot
// be reached is an *Error with CodeUnavailable whose Detail says why; a
// disabled server is CodeConflict. It is sent once.
func (c *Client) SyncMCPServer(ctx context.Context, id string) (*SyncReport, error) {
	if id == "" {
		return nil, errEmptyID
	}
	out := new(SyncReport)
	return out, c.do(ctx, call{method: http.MethodPost, path: pathOf(mcpServersPath, id) + "/sync", out: out})
}

// ListMCPTools returns one page of the tenant's catalog.
func (c *Client) ListMCPTools(ctx context.Context, p ListMCPToolsParams) (*MCPToolPage, error) {
	q := pageQuery(p.Limit, p.Cursor)
	setIf(q, "server_id", p.ServerID)
	setIf(q, "user_id", p.UserID)
	out := new(MCPToolPage)
	return out, c.do(ctx, call{method: http.MethodGet, path: mcpToolsPath, query: q, idempotent: true, out: out})
}

// MCPTools walks the whole catalog, page after page.
func (c *Client) MCPTools(ctx context.Context, p ListMCPToolsParams) iter.Seq2[*MCPTool, error] {
	return each(ctx, p.Cursor, func(ctx context.Context, cursor string) ([]MCPTool, string, error) {
		p.Cursor = cursor
		page, err := c.ListMCPTools(ctx, p)
		if err != nil {
			return nil, "", err
		}
		return page.Data, page.NextCursor, nil
	})
}
