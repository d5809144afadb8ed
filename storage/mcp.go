package storage

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
)

// Cursor kinds of the MCP listings, apart from the core ones in cursor.go.
// Servers page by id like keys; tools by exposed name, so a tools cursor
// carries the last name rather than an id.
const (
	cursorMCPServers byte = 0x11
	cursorMCPTools   byte = 0x12
)

// Ensure MCPStore implements authz.MCPStore.
var _ authz.MCPStore = (*MCPStore)(nil)

// MCPStore keeps tenants' upstream MCP servers and their tool catalogs in a
// DB. Every change writes the audit events it is given in the same
// transaction. Servers' headers (the upstreams' credentials) are sealed
// with the keyring at rest.
type MCPStore struct {
	db      *DB
	keyring *Keyring
}

// NewMCPStore returns an MCPStore over db that seals headers with keyring;
// without one, headers can be neither written nor read.
func NewMCPStore(db *DB, keyring *Keyring) *MCPStore {
	return &MCPStore{db: db, keyring: keyring}
}

type mcpServerRow struct {
	bun.BaseModel `bun:"table:mcp_servers,alias:s"`

	ID           string     `bun:"id,pk"`
	TenantID     string     `bun:"tenant_id,notnull"`
	UserID       string     `bun:"user_id,notnull"`
	Name         string     `bun:"name,notnull"`
	URL          string     `bun:"url,notnull"`
	Headers      string     `bun:"headers,notnull"` // "{}", or a JSON object in rows not sealed yet
	HeadersKeyID string     `bun:"headers_key_id,notnull"`
	HeadersSeal  string     `bun:"headers_sealed,notnull"` // AES-256-GCM of the JSON object
	Enabled      bool       `bun:"enabled,notnull"`
	TimeoutMS    int        `bun:"timeout_ms,notnull"`
	LastSyncedAt *time.Time `bun:"last_synced_at"`
	SyncError    string     `bun:"sync_error,notnull"`
	CreatedAt    time.Time  `bun:"created_at,notnull"`
	UpdatedAt    time.Time  `bun:"updated_at,notnull"`
}

type mcpToolRow struct {
	bun.BaseModel `bun:"table:mcp_tools,alias:t"`

	ServerID     string  `bun:"server_id,pk"`
	TenantID     string  `bun:"tenant_id,notnull"`
	Name         string  `bun:"name,pk"`
	Title        string  `bun:"title,notnull"`
	Description  string  `bun:"description,notnull"`
	InputSchema  string  `bun:"input_schema,notnull"` // JSON, as the upstream sent it
	OutputSchema *string `bun:"output_schema"`
	Annotations  *string `bun:"annotations"`
}

// mcpToolJoined is a tool read with the server facts the catalog shows.
type mcpToolJoined struct {
	mcpToolRow `bun:",extend"`

	ServerName         string     `bun:"server_name,scanonly"`
	ServerEnabled      bool       `bun:"server_enabled,scanonly"`
	ServerLastSyncedAt *time.Time `bun:"server_last_synced_at,scanonly"`
	ServerSyncError    string     `bun:"server_sync_error,scanonly"`
}

func (s *MCPStore) newMCPServerRow(srv *authz.MCPServer) (*mcpServerRow, error) {
	if !authz.ValidID(srv.ID) {
		return nil, fmt.Errorf("store mcp server: id %q is not a canonical UUID", srv.ID)
	}
	keyID, sealed, err := s.sealHeaders(srv.TenantID, srv.ID, srv.Headers)
	if err != nil {
		return nil, err
	}
	return &mcpServerRow{
		ID:           srv.ID,
		TenantID:     srv.TenantID,
		UserID:       srv.UserID,
		Name:         srv.Name,
		URL:          srv.URL,
		Headers:      "{}",
		HeadersKeyID: keyID,
		HeadersSeal:  sealed,
		Enabled:      srv.Enabled,
		TimeoutMS:    srv.TimeoutMS,
		LastSyncedAt: utcPtr(srv.LastSyncedAt),
		SyncError:    srv.SyncError,
		CreatedAt:    utc(srv.CreatedAt),
		UpdatedAt:    utc(srv.UpdatedAt),
	}, nil
}

// headersAAD binds sealed headers to their server, so a sealed value copied
// to another row does not open there.
func headersAAD(tenantID, id string) []byte {
	return []byte("keygate mcp_servers.headers " + tenantID + " " + id)
}

// sealHeaders encrypts a server's headers with the current key.
func (s *MCPStore) sealHeaders(tenantID, id string, headers map[string]string) (string, string, error) {
	if s.keyring == nil {
		return "", "", authz.Errorf(authz.EINTERNAL, "no encryption key to seal MCP server headers with (%s)", EncryptionKeySetting)
	}
	if headers == nil {
		headers = map[string]string{}
	}
	enc, err := json.Marshal(headers)
	if err != nil {
		// Say nothing of the headers: they are secrets.
		return "", "", fmt.Errorf("encode the headers of mcp server %s", id)
	}
	return s.keyring.seal(enc, headersAAD(tenantID, id))
}

// headers opens a row's headers; a row written before headers were sealed
// holds them as plain JSON until it is sealed.
func (s *MCPStore) headers(r *mcpServerRow) (map[string]string, error) {
	plain := []byte(r.Headers)
	if r.HeadersKeyID != "" {
		if s.keyring == nil {
			return nil, authz.Errorf(authz.EINTERNAL, "no encryption key to open MCP server headers with (%s)", EncryptionKeySetting)
		}
		var err error
		if plain, err = s.keyring.open(r.HeadersKeyID, r.HeadersSeal, headersAAD(r.TenantID, r.ID)); err != nil {
			return nil, fmt.Errorf("headers of mcp server %s: %w", r.ID, err)
		}
	}
	headers := map[string]string{}
	if err := json.Unmarshal(plain, &headers); err != nil {
		return nil, fmt.Errorf("decode the headers of mcp server %s", r.ID)
	}
	if headers == nil { // the JSON was null
		headers = map[string]string{}
	}
	return headers, nil
}

func (s *MCPStore) server(r *mcpServerRow) (*authz.MCPServer, error) {
	headers, err := s.headers(r)
	if err != nil {
		return nil, err
	}
	return &authz.MCPServer{
		ID:           r.ID,
		TenantID:     r.TenantID,
		UserID:       r.UserID,
		Name:         r.Name,
		URL:          r.URL,
		Headers:      headers,
		Enabled:      r.Enabled,
		TimeoutMS:    r.TimeoutMS,
		LastSyncedAt: utcPtr(r.LastSyncedAt),
		SyncError:    r.SyncError,
		CreatedAt:    utc(r.CreatedAt),
		UpdatedAt:    utc(r.UpdatedAt),
	}, nil
}

// storedServerForm sets srv's times to what the database keeps and makes
// Headers non-nil, so the caller's copy equals the one read back.
func storedServerForm(srv *authz.MCPServer) {
	if srv.Headers == nil {
		srv.Headers = map[string]string{}
	}
	srv.LastSyncedAt = utcPtr(srv.LastSyncedAt)
	srv.CreatedAt = utc(srv.CreatedAt)
	srv.UpdatedAt = utc(srv.UpdatedAt)
}

func newMCPToolRow(t *authz.MCPTool, serverID, tenantID string) mcpToolRow {
	opt := func(raw json.RawMessage) *string {
		if len(raw) == 0 || string(raw) == "null" {
			return nil
		}
		s := string(raw)
		return &s
	}
	schema := "{}"
	if len(t.InputSchema) > 0 {
		schema = string(t.InputSchema)
	}
	return mcpToolRow{
		ServerID:     serverID,
		TenantID:     tenantID,
		Name:         t.Name,
		Title:        t.Title,
		Description:  t.Description,
		InputSchema:  schema,
		OutputSchema: opt(t.OutputSchema),
		Annotations:  opt(t.Annotations),
	}
}

func (r *mcpToolRow) tool(serverName string, available bool) *authz.MCPTool {
	raw := func(s *string) json.RawMessage {
		if s == nil {
			return nil
		}
		return json.RawMessage(*s)
	}
	return &authz.MCPTool{
		ServerID:     r.ServerID,
		ServerName:   serverName,
		TenantID:     r.TenantID,
		Name:         r.Name,
		ExposedName:  authz.ExposedToolName(serverName, r.Name),
		Title:        r.Title,
		Description:  r.Description,
		InputSchema:  json.RawMessage(r.InputSchema),
		OutputSchema: raw(r.OutputSchema),
		Annotations:  raw(r.Annotations),
		Available:    available,
	}
}

func (r *mcpToolJoined) tool() *authz.MCPTool {
	srv := authz.MCPServer{Enabled: r.ServerEnabled, LastSyncedAt: r.ServerLastSyncedAt, SyncError: r.ServerSyncError}
	return r.mcpToolRow.tool(r.ServerName, srv.Available())
}

func errMCPServerNotFound() error {
	return authz.Errorf(authz.ENOTFOUND, "MCP server not found")
}

// mcpServerConflict maps a unique violation on mcp_servers to ECONFLICT.
func mcpServerConflict(err error, name string) error {
	return nameConflict(err, "mcp_servers", "an MCP server", name)
}

// CreateMCPServer inserts srv, creating its tenant and user on first use,
// and writes events, in one transaction. Returns ECONFLICT when the tenant
// has a server of that name or the id exists. On success srv's times are
// set to their stored form.
func (s *MCPStore) CreateMCPServer(ctx context.Context, srv *authz.MCPServer, events ...authz.AuditEvent) (err error) {
	defer mapDBError(&err)
	row, err := s.newMCPServerRow(srv)
	if err != nil {
		return err
	}
	audit, err := newAuditEventRows(events)
	if err != nil {
		return err
	}
	if err := s.db.insertOwned(ctx, row, row.TenantID, row.UserID, row.CreatedAt, audit,
		func(err error) error { return mcpServerConflict(err, row.Name) }); err != nil {
		return err
	}
	storedServerForm(srv)
	return nil
}

// FindMCPServerByID returns a server of a tenant; ENOTFOUND when it is
// absent, in another tenant, or id is not a UUID.
func (s *MCPStore) FindMCPServerByID(ctx context.Context, tenantID, id string) (_ *authz.MCPServer, err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return nil, errMCPServerNotFound()
	}
	return s.findMCPServer(ctx, s.db.bun.NewSelect(), tenantID, id)
}

func (s *MCPStore) findMCPServer(ctx context.Context, q *bun.SelectQuery, tenantID, id string) (*authz.MCPServer, error) {
	row := new(mcpServerRow)
	err := q.Model(row).Where("s.tenant_id = ?", tenantID).Where("s.id = ?", id).Limit(1).Scan(ctx)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errMCPServerNotFound()
		}
		return nil, fmt.Errorf("find mcp server: %w", err)
	}
	return s.server(row)
}

// FindMCPServers returns a page of a tenant's servers, newest first, cut by
// id as FindKeys cuts keys.
func (s *MCPStore) FindMCPServers(ctx context.Context, filter authz.MCPServerFilter) (_ *authz.MCPServerPage, err error) {
	defer mapDBError(&err)
	pages := ownedPage[mcpServerRow, *authz.MCPServer]{
		kind: cursorMCPServers, alias: "s", id: func(r *mcpServerRow) string { return r.ID }, convert: s.server}
	servers, next, err := pages.read(ctx, s.db.bun, filter.TenantID, filter.UserID, filter.Cursor, filter.Limit, nil)
	if err != nil {
		return nil, err
	}
	return &authz.MCPServerPage{Servers: servers, NextCursor: next}, nil
}

// lockMCPServer loads a server inside tx, locking its row on Postgres (a
// SQLite write transaction already excludes every other writer).
func (s *MCPStore) lockMCPServer(ctx context.Context, tx bun.Tx, tenantID, id string) (*authz.MCPServer, error) {
	return s.findMCPServer(ctx, s.db.lockingSelect(tx), tenantID, id)
}

// UpdateMCPServer loads a server, locked, and passes it to fn; when fn
// reports changed fields it saves name, url, headers, enabled, timeout_ms
// and updated_at and writes fn's events, in one transaction. fn must not
// use the store (see KeyStore.UpdateKey).
func (s *MCPStore) UpdateMCPServer(ctx context.Context, tenantID, id string, fn func(*authz.MCPServer) (changed []string, events []authz.AuditEvent, err error)) (_ *authz.MCPServer, err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return nil, errMCPServerNotFound()
	}
	return updateLocked(ctx, s.db,
		func(ctx context.Context, q *bun.SelectQuery) (*authz.MCPServer, error) {
			return s.findMCPServer(ctx, q, tenantID, id)
		},
		fn,
		func(ctx context.Context, tx bun.Tx, srv *authz.MCPServer, events []authz.AuditEvent) error {
			// The row's identity is the one loaded, whatever fn did to the server.
			srv.ID, srv.TenantID = id, tenantID
			row, err := s.newMCPServerRow(srv)
			if err != nil {
				return err
			}
			if err := updateOwned(ctx, tx, row, "s", tenantID, id, events,
				func(err error) error { return mcpServerConflict(err, row.Name) },
				"name", "url", "headers", "headers_key_id", "headers_sealed", "enabled", "timeout_ms", "updated_at"); err != nil {
				return err
			}
			storedServerForm(srv)
			return nil
		})
}

// DeleteMCPServer removes a server, its catalog by cascade, and writes
// events in one transaction. Returns ENOTFOUND like FindMCPServerByID.
func (s *MCPStore) DeleteMCPServer(ctx context.Context, tenantID, id string, events ...authz.AuditEvent) (err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return errMCPServerNotFound()
	}
	audit, err := newAuditEventRows(events)
	if err != nil {
		return err
	}
	return s.db.deleteOwned(ctx, (*mcpServerRow)(nil), "s", tenantID, id, audit, errMCPServerNotFound)
}

// SaveMCPSync records a sync in one transaction, so a catalog is replaced
// whole or not at all and readers never see half of it: the server row is
// locked, fn sees it and its tools, then last_synced_at and sync_error are
// saved, the tools replaced when fn returns some, and fn's events written.
func (s *MCPStore) SaveMCPSync(ctx context.Context, tenantID, id string, fn func(*authz.MCPServer, []*authz.MCPTool) (*authz.MCPSync, error)) (_ *authz.MCPServer, err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return nil, errMCPServerNotFound()
	}
	var out *authz.MCPServer
	err = s.db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		srv, err := s.lockMCPServer(ctx, tx, tenantID, id)
		if err != nil {
			return err
		}
		var rows []mcpToolRow
		if err := tx.NewSelect().Model(&rows).Where("t.server_id = ?", id).OrderExpr("t.name").Scan(ctx); err != nil {
			return fmt.Errorf("find mcp tools: %w", err)
		}
		current := make([]*authz.MCPTool, len(rows))
		for i := range rows {
			current[i] = rows[i].tool(srv.Name, srv.Available())
		}
		sync, err := fn(srv, current)
		if err != nil || sync == nil {
			out = srv
			return err
		}
		srv.ID, srv.TenantID = id, tenantID
		row, err := s.newMCPServerRow(srv)
		if err != nil {
			return err
		}
		if _, err := tx.NewUpdate().Model(row).Column("last_synced_at", "sync_error").
			Where("s.tenant_id = ?", tenantID).Where("s.id = ?", id).Exec(ctx); err != nil {
			return fmt.Errorf("save mcp sync: %w", err)
		}
		if sync.Tools != nil {
			if err := replaceMCPTools(ctx, tx, id, tenantID, sync.Tools); err != nil {
				return err
			}
		}
		audit, err := newAuditEventRows(sync.Events)
		if err != nil {
			return err
		}
		if err := insertAuditEventRows(ctx, tx, audit); err != nil {
			return err
		}
		storedServerForm(srv)
		out = srv
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// replaceMCPTools deletes a server's catalog and inserts tools in its place,
// a thousand rows per statement.
func replaceMCPTools(ctx context.Context, tx bun.Tx, serverID, tenantID string, tools []*authz.MCPTool) error {
	if _, err := tx.NewDelete().Model((*mcpToolRow)(nil)).Where("t.server_id = ?", serverID).Exec(ctx); err != nil {
		return fmt.Errorf("replace mcp tools: %w", err)
	}
	rows := make([]mcpToolRow, len(tools))
	for i, t := range tools {
		rows[i] = newMCPToolRow(t, serverID, tenantID)
	}
	for start := 0; start < len(rows); start += maxRowsPerStatement {
		chunk := rows[start:min(start+maxRowsPerStatement, len(rows))]
		if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
			return fmt.Errorf("insert mcp tools: %w", err)
		}
	}
	return nil
}

// exposedNameExpr is a tool's exposed name in SQL. Postgres compares it
// bytewise (COLLATE "C", as SQLite does by default), so a page ends where
// the next begins whatever the database's collation, and both dialects
// list in the same order.
func (s *MCPStore) exposedNameExpr() string {
	if s.db.isPostgres() {
		return `(s.name || '__' || t.name) COLLATE "C"`
	}
	return `(s.name || '__' || t.name)`
}

func (s *MCPStore) selectTools(q *bun.SelectQuery, rows *[]mcpToolJoined) *bun.SelectQuery {
	return q.Model(rows).
		ColumnExpr("t.*").
		ColumnExpr("s.name AS server_name, s.enabled AS server_enabled").
		ColumnExpr("s.last_synced_at AS server_last_synced_at, s.sync_error AS server_sync_error").
		Join("JOIN mcp_servers AS s ON s.id = t.server_id").
		OrderExpr(s.exposedNameExpr())
}

// FindMCPTools returns a page of a tenant's catalog in exposed-name order.
// A tool's Available says whether the gateway lists it now.
func (s *MCPStore) FindMCPTools(ctx context.Context, filter authz.MCPToolFilter) (_ *authz.MCPToolPage, err error) {
	defer mapDBError(&err)
	after, err := decodeNameCursor(cursorMCPTools, filter.Cursor)
	if err != nil {
		return nil, err
	}
	limit := pageLimit(filter.Limit)
	var rows []mcpToolJoined
	q := s.selectTools(s.db.bun.NewSelect(), &rows).Where("t.tenant_id = ?", filter.TenantID)
	if filter.ServerID != "" {
		if !authz.ValidID(filter.ServerID) {
			return &authz.MCPToolPage{Tools: []*authz.MCPTool{}}, nil
		}
		q = q.Where("t.server_id = ?", filter.ServerID)
	}
	if filter.UserID != nil {
		q = q.Where("s.user_id = ?", *filter.UserID)
	}
	if after != "" {
		q = q.Where(s.exposedNameExpr()+" > ?", after)
	}
	if err := q.Limit(int64(limit) + 1).Scan(ctx); err != nil {
		return nil, fmt.Errorf("find mcp tools: %w", err)
	}
	tools, next, err := cutPage(rows, limit,
		func(last *mcpToolJoined) (string, error) {
			return encodeNameCursor(cursorMCPTools, authz.ExposedToolName(last.ServerName, last.Name)), nil
		},
		func(r *mcpToolJoined) (*authz.MCPTool, error) { return r.tool(), nil })
	if err != nil {
		return nil, err
	}
	return &authz.MCPToolPage{Tools: tools, NextCursor: next}, nil
}

// FindMCPCatalog returns a tenant's enabled servers, headers included, and
// every tool they hold, in exposed-name order.
func (s *MCPStore) FindMCPCatalog(ctx context.Context, tenantID string) (_ *authz.MCPCatalog, err error) {
	defer mapDBError(&err)
	var servers []mcpServerRow
	if err := s.db.bun.NewSelect().Model(&servers).
		Where("s.tenant_id = ?", tenantID).Where("s.enabled = ?", true).
		OrderExpr("s.name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("find mcp catalog: %w", err)
	}
	var rows []mcpToolJoined
	if err := s.selectTools(s.db.bun.NewSelect(), &rows).
		Where("t.tenant_id = ?", tenantID).Where("s.enabled = ?", true).
		Scan(ctx); err != nil {
		return nil, fmt.Errorf("find mcp catalog: %w", err)
	}
	cat := &authz.MCPCatalog{Servers: make([]*authz.MCPServer, 0, len(servers)), Tools: make([]*authz.MCPTool, 0, len(rows))}
	for i := range servers {
		srv, err := s.server(&servers[i])
		if err != nil {
			return nil, err
		}
		cat.Servers = append(cat.Servers, srv)
	}
	for i := range rows {
		cat.Tools = append(cat.Tools, rows[i].tool())
	}
	return cat, nil
}

// FindEnabledMCPServers returns every enabled server of every tenant,
// headers included.
func (s *MCPStore) FindEnabledMCPServers(ctx context.Context) (_ []*authz.MCPServer, err error) {
	defer mapDBError(&err)
	var rows []mcpServerRow
	if err := s.db.bun.NewSelect().Model(&rows).Where("s.enabled = ?", true).
		OrderExpr("s.tenant_id, s.id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("find enabled mcp servers: %w", err)
	}
	out := make([]*authz.MCPServer, 0, len(rows))
	for i := range rows {
		srv, err := s.server(&rows[i])
		if err != nil {
			return nil, err
		}
		out = append(out, srv)
	}
	return out, nil
}

// maxNameCursor bounds a name cursor: an exposed name is at most
// authz.MaxResourceIDLen bytes.
const maxNameCursor = authz.MaxResourceIDLen

// encodeNameCursor is a cursor that points after name: base64url of the kind
// byte and the name.
func encodeNameCursor(kind byte, name string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{kind}, name...))
}

// decodeNameCursor returns the name a cursor of kind points after, "" for
// the first page, or EINVALID for anything it did not issue.
func decodeNameCursor(kind byte, cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := decodeCursorBytes(cursor)
	if err != nil || len(b) < 2 || len(b) > maxNameCursor+1 || b[0] != kind || !printableASCII(b[1:]) {
		return "", authz.Invalid(authz.FieldError{Field: "cursor", Message: "is not a cursor this service issued"})
	}
	return string(b[1:]), nil
}

func printableASCII(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
