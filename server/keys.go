package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// createdKey is the one answer that carries a token.
type createdKey struct {
	*authz.APIKey
	Token string `json:"token"`
}

func (s *Server) createKey(c *gin.Context) {
	b, err := readBodyObject(c, append([]string{"name", "permission_scope", "expires_at"}, lifecycleMembers...)...)
	if err != nil {
		writeError(c, err)
		return
	}
	var in authz.CreateKeyInput
	var lc authz.APIKeyUpdate
	b.lifecycle(&lc)
	in.ExternalID, in.Meta, in.RateLimit, in.Credits = lc.ExternalID, lc.Meta, lc.RateLimit, lc.Credits
	b.required("name", &in.Name)
	if raw, ok := b.raw("permission_scope"); !ok {
		b.fail("permission_scope", "is required")
	} else if scope, err := authz.ParseScope(raw); err != nil {
		b.fields = append(b.fields, authz.ErrorFields(err)...)
	} else {
		in.Scope = scope
	}
	var expires time.Time
	if b.optional("expires_at", &expires) {
		in.ExpiresAt = &expires
	}
	if err := b.err(); err != nil {
		writeError(c, err)
		return
	}
	key, token, err := s.keys.CreateKey(c.Request.Context(), in)
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Location", "/api/v1/api-keys/"+key.ID)
	c.Header("Cache-Control", "no-store")
	writeJSON(c, http.StatusCreated, createdKey{APIKey: key, Token: token})
}

func (s *Server) listKeys(c *gin.Context) {
	filter := authz.APIKeyFilter{Cursor: c.Query("cursor")}
	var fields []authz.FieldError
	filter.Limit, fields = queryLimit(c, fields)
	if v, ok := c.GetQuery("enabled"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fields = append(fields, authz.FieldError{Field: "enabled", Message: "must be true or false"})
		}
		filter.Enabled = &b
	}
	filter.UserID, fields = queryUserID(c, fields)
	filter.ExternalID, fields = queryExternalID(c, fields)
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	page, err := s.keys.ListKeys(c.Request.Context(), filter)
	if err != nil {
		writeError(c, err)
		return
	}
	writePage(c, page.Keys, page.NextCursor)
}

func (s *Server) getKey(c *gin.Context) {
	key, err := s.keys.Key(c.Request.Context(), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, key)
}

func (s *Server) updateKey(c *gin.Context) {
	b, err := readBodyObject(c, append([]string{"name", "enabled", "expires_at", "permission_scope"}, lifecycleMembers...)...)
	if err != nil {
		writeError(c, err)
		return
	}
	upd := authz.APIKeyUpdate{Name: patchField[string](b, "name"), Enabled: patchField[bool](b, "enabled")}
	b.lifecycle(&upd)
	var expires time.Time
	if set, value := b.nullable("expires_at", &expires); set {
		upd.SetExpiresAt = true
		if value {
			upd.ExpiresAt = &expires
		}
	}
	if raw := patchField[json.RawMessage](b, "permission_scope"); raw != nil {
		scope, err := authz.ParseScope(*raw)
		if err != nil {
			b.fields = append(b.fields, authz.ErrorFields(err)...)
		}
		upd.Scope = &scope
	}
	if err := b.err(); err != nil {
		writeError(c, err)
		return
	}
	key, err := s.keys.UpdateKey(c.Request.Context(), c.Param("id"), upd)
	if err != nil {
		writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, key)
}

func (s *Server) deleteKey(c *gin.Context) {
	if err := s.keys.DeleteKey(c.Request.Context(), c.Param("id")); err != nil {
		writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) deleteUser(c *gin.Context) {
	n, err := s.keys.DeleteUser(c.Request.Context(), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	loggerFrom(c).Info("user deleted", "keys_deleted", n)
	c.Status(http.StatusNoContent)
}

func (s *Server) deleteTenant(c *gin.Context) {
	n, err := s.keys.DeleteTenant(c.Request.Context(), c.Param("id"))
	if err != nil {
		writeError(c, err)
		return
	}
	loggerFrom(c).Info("tenant deleted", "keys_deleted", n)
	c.Status(http.StatusNoContent)
}

func (s *Server) listAuditEvents(c *gin.Context) {
	filter := authz.AuditFilter{
		Cursor: c.Query("cursor"),
		Action: c.Query("action"),
		KeyID:  c.Query("key_id"),
	}
	var fields []authz.FieldError
	filter.Limit, fields = queryLimit(c, fields)
	if v, ok := c.GetQuery("tenantless"); ok {
		switch v {
		case "true":
			filter.Tenantless = true
		case "false":
		default:
			fields = append(fields, authz.FieldError{Field: "tenantless", Message: "must be true or false"})
		}
	}
	for _, q := range []struct {
		name string
		dst  **time.Time
	}{{"since", &filter.Since}, {"until", &filter.Until}} {
		if v, ok := c.GetQuery(q.name); ok {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				fields = append(fields, authz.FieldError{Field: q.name, Message: "must be an RFC 3339 time"})
				continue
			}
			*q.dst = &t
		}
	}
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	page, err := s.keys.AuditEvents(c.Request.Context(), filter)
	if err != nil {
		writeError(c, err)
		return
	}
	writePage(c, page.Events, page.NextCursor)
}
