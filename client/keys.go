package client

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

const (
	keysPath   = "/api/v1/api-keys"
	auditPath  = "/api/v1/audit-events"
	usersPath  = "/api/v1/users"
	tenantPath = "/api/v1/tenants"
)

// CreateKey creates a key; the answer is the only one carrying its token.
// It is sent once: a name already taken is an *Error with CodeConflict
// whose ExistingID names the key holding it.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (*CreatedKey, error) {
	out := new(CreatedKey)
	return out, c.do(ctx, call{method: http.MethodPost, path: keysPath, body: req, out: out})
}

// GetKey returns one key.
func (c *Client) GetKey(ctx context.Context, id string) (*Key, error) {
	if id == "" {
		return nil, errEmptyID
	}
	out := new(Key)
	return out, c.do(ctx, call{method: http.MethodGet, path: pathOf(keysPath, id), idempotent: true, out: out})
}

// ListKeys returns one page of keys, newest first.
func (c *Client) ListKeys(ctx context.Context, p ListKeysParams) (*KeyPage, error) {
	q := pageQuery(p.Limit, p.Cursor)
	if p.Enabled != nil {
		q.Set("enabled", strconv.FormatBool(*p.Enabled))
	}
	setIf(q, "user_id", p.UserID)
	setIf(q, "external_id", p.ExternalID)
	out := new(KeyPage)
	return out, c.do(ctx, call{method: http.MethodGet, path: keysPath, query: q, idempotent: true, out: out})
}

// Keys walks every key the listing holds, page after page.
func (c *Client) Keys(ctx context.Context, p ListKeysParams) iter.Seq2[*Key, error] {
	return each(ctx, p.Cursor, func(ctx context.Context, cursor string) ([]Key, string, error) {
		p.Cursor = cursor
		page, err := c.ListKeys(ctx, p)
		if err != nil {
			return nil, "", err
		}
		return page.Data, page.NextCursor, nil
	})
}

// UpdateKey changes a key and returns it as changed. It is sent once.
func (c *Client) UpdateKey(ctx context.Context, id string, req UpdateKeyRequest) (*Key, error) {
	if id == "" {
		return nil, errEmptyID
	}
	out := new(Key)
	return out, c.do(ctx, call{method: http.MethodPatch, path: pathOf(keysPath, id), body: req, out: out})
}

// EnableKey turns a key on.
func (c *Client) EnableKey(ctx context.Context, id string) (*Key, error) {
	on := true
	return c.UpdateKey(ctx, id, UpdateKeyRequest{Enabled: &on})
}

// DisableKey turns a key off; it stops working at once.
func (c *Client) DisableKey(ctx context.Context, id string) (*Key, error) {
	off := false
	return c.UpdateKey(ctx, id, UpdateKeyRequest{Enabled: &off})
}

// MaxRotationGrace is the longest a rotated key's previous token may keep
// working.
const MaxRotationGrace = 7 * 24 * time.Hour

// RotateKey replaces a key's token and returns the key with its new one,
// shown this once. The previous token keeps working for grace (whole
// seconds, 0 to MaxRotationGrace), then is refused on every instance. It
// is sent once: sent again, it would replace the token just returned.
func (c *Client) RotateKey(ctx context.Context, id string, grace time.Duration) (*CreatedKey, error) {
	if id == "" {
		return nil, errEmptyID
	}
	if grace < 0 || grace > MaxRotationGrace || grace%time.Second != 0 {
		return nil, fmt.Errorf("keygate: the grace period must be whole seconds from 0 to %s, got %s", MaxRotationGrace, grace)
	}
	body := struct {
		Grace int64 `json:"grace_period_seconds"`
	}{int64(grace / time.Second)}
	out := new(CreatedKey)
	return out, c.do(ctx, call{method: http.MethodPost, path: pathOf(keysPath, id) + "/rotate", body: body, out: out})
}

// KeyUsage returns a key's decisions counted per hour or day. Counts reach
// the database in batches, so the last second or so may not show yet.
func (c *Client) KeyUsage(ctx context.Context, id string, p KeyUsageParams) (*UsageReport, error) {
	if id == "" {
		return nil, errEmptyID
	}
	q := url.Values{}
	setIf(q, "granularity", p.Granularity)
	if !p.Since.IsZero() {
		q.Set("since", p.Since.UTC().Format(time.RFC3339Nano))
	}
	if !p.Until.IsZero() {
		q.Set("until", p.Until.UTC().Format(time.RFC3339Nano))
	}
	out := new(UsageReport)
	return out, c.do(ctx, call{method: http.MethodGet, path: pathOf(keysPath, id) + "/usage", query: q, idempotent: true, out: out})
}

// GetPolicy returns the policy the instance asked serves, and why its
// latest reload was refused (tenant admins, platform_admin). Behind a load
// balancer, each call may reach another instance.
func (c *Client) GetPolicy(ctx context.Context) (*PolicyStatus, error) {
	out := new(PolicyStatus)
	return out, c.do(ctx, call{method: http.MethodGet, path: "/api/v1/policy", idempotent: true, out: out})
}

// DeleteKey deletes a key; it stops working at once.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	return c.deleteByID(ctx, keysPath, id)
}

// ListAuditEvents returns one page of the audit trail, newest first.
func (c *Client) ListAuditEvents(ctx context.Context, p ListAuditEventsParams) (*AuditEventPage, error) {
	q := pageQuery(p.Limit, p.Cursor)
	setIf(q, "action", p.Action)
	setIf(q, "key_id", p.KeyID)
	if !p.Since.IsZero() {
		q.Set("since", p.Since.UTC().Format(time.RFC3339Nano))
	}
	if !p.Until.IsZero() {
		q.Set("until", p.Until.UTC().Format(time.RFC3339Nano))
	}
	if p.Tenantless {
		q.Set("tenantless", "true")
	}
	out := new(AuditEventPage)
	return out, c.do(ctx, call{method: http.MethodGet, path: auditPath, query: q, idempotent: true, out: out})
}

// AuditEvents walks the audit trail, page after page.
func (c *Client) AuditEvents(ctx context.Context, p ListAuditEventsParams) iter.Seq2[*AuditEvent, error] {
	return each(ctx, p.Cursor, func(ctx context.Context, cursor string) ([]AuditEvent, string, error) {
		p.Cursor = cursor
		page, err := c.ListAuditEvents(ctx, p)
		if err != nil {
			return nil, "", err
		}
		return page.Data, page.NextCursor, nil
	})
}

// DeleteUser offboards a user of the caller's tenant and their keys.
func (c *Client) DeleteUser(ctx context.Context, userID string) error {
	return c.deleteByID(ctx, usersPath, userID)
}

// DeleteTenant offboards a tenant, its users and keys (platform_admin).
func (c *Client) DeleteTenant(ctx context.Context, tenantID string) error {
	return c.deleteByID(ctx, tenantPath, tenantID)
}

// GetScopeCeiling returns a user's scope ceiling; none set is CodeNotFound.
func (c *Client) GetScopeCeiling(ctx context.Context, userID string) (*ScopeCeiling, error) {
	if userID == "" {
		return nil, errEmptyID
	}
	out := new(ScopeCeiling)
	return out, c.do(ctx, call{method: http.MethodGet, path: pathOf(usersPath, userID) + "/scope-ceiling", idempotent: true, out: out})
}

// PutScopeCeiling sets a user's scope ceiling.
func (c *Client) PutScopeCeiling(ctx context.Context, userID string, scope Scope) (*ScopeCeiling, error) {
	if userID == "" {
		return nil, errEmptyID
	}
	out := new(ScopeCeiling)
	body := struct {
		Scope Scope `json:"permission_scope"`
	}{scope}
	return out, c.do(ctx, call{method: http.MethodPut, path: pathOf(usersPath, userID) + "/scope-ceiling", body: body, idempotent: true, out: out})
}

// DeleteScopeCeiling removes a user's scope ceiling.
func (c *Client) DeleteScopeCeiling(ctx context.Context, userID string) error {
	if userID == "" {
		return errEmptyID
	}
	return c.do(ctx, call{method: http.MethodDelete, path: pathOf(usersPath, userID) + "/scope-ceiling", idempotent: true})
}

func (c *Client) deleteByID(ctx context.Context, prefix, id string) error {
	if id == "" {
		return errEmptyID
	}
	return c.do(ctx, call{method: http.MethodDelete, path: pathOf(prefix, id), idempotent: true})
}

func pageQuery(limit int, cursor string) url.Values {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	setIf(q, "cursor", cursor)
	return q
}

func setIf(q url.Values, name, v string) {
	if v != "" {
		q.Set(name, v)
	}
}
