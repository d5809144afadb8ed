package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/keygate/keygate/authz"
)

// JWTConfig says how management tokens from the identity provider are
// checked. At least one of Secret (HS256) and JWKSURL (RS256, ES256) is set.
type JWTConfig struct {
	Secret      []byte
	JWKSURL     string
	Issuer      string // checked when set
	Audience    string // checked when set
	UserClaim   string // default "sub"
	TenantClaim string // default "tenant_id"
	RolesClaim  string // default "roles"
	Leeway      time.Duration
	Now         func() time.Time
}

func (c *JWTConfig) defaults() {
	if c.UserClaim == "" {
		c.UserClaim = "sub"
	}
	if c.TenantClaim == "" {
		c.TenantClaim = "tenant_id"
	}
	if c.RolesClaim == "" {
		c.RolesClaim = "roles"
	}
}

// JWTVerifier turns a management JWT into an actor.
type JWTVerifier struct {
	cfg    JWTConfig
	parser *jwt.Parser
	jwks   keyfunc.Keyfunc
}

// NewJWTVerifier prepares a verifier. With a JWKS URL it fetches the key set
// in the background for as long as ctx lives.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	cfg.defaults()
	var methods []string
	v := &JWTVerifier{cfg: cfg}
	if len(cfg.Secret) > 0 {
		if len(cfg.Secret) < 32 {
			return nil, authz.Errorf(authz.EINVALID, "the JWT secret must be at least 32 bytes")
		}
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.JWKSURL != "" {
		// An identity provider signs tokens for many services and tenants:
		// without both checks any of them would be accepted here.
		if cfg.Issuer == "" {
			return nil, authz.Errorf(authz.EINVALID, "KEYGATE_JWT_ISSUER is required with KEYGATE_JWKS_URL")
		}
		if cfg.Audience == "" {
			return nil, authz.Errorf(authz.EINVALID, "KEYGATE_JWT_AUDIENCE is required with KEYGATE_JWKS_URL")
		}
		k, err := keyfunc.NewDefaultCtx(ctx, []string{cfg.JWKSURL})
		if err != nil {
			return nil, fmt.Errorf("load JWKS from %s: %w", cfg.JWKSURL, err)
		}
		v.jwks = k
		methods = append(methods, "RS256", "ES256")
	}
	if len(methods) == 0 {
		return nil, authz.Errorf(authz.EINVALID, "a JWT secret or a JWKS URL is required")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), // an iat later than now plus the leeway is refused
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Verify checks the token's signature, expiry, issuer and audience and reads
// the actor from its claims. Every failure is EUNAUTHORIZED; the message says
// what is wrong without echoing the token.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (*authz.Actor, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			// RFC 7515 4.1.11: extensions keygate does not understand
			// must not be ignored, and it understands none.
			return nil, errCritical
		}
		if t.Method.Alg() == jwt.SigningMethodHS256.Alg() {
			return v.cfg.Secret, nil
		}
		if v.jwks == nil {
			return nil, errors.New("no key set for this algorithm")
		}
		return v.jwks.KeyfuncCtx(ctx)(t)
	})
	if err != nil {
		return nil, authz.Errorf(authz.EUNAUTHORIZED, "the bearer token is not valid: %s", jwtReason(err))
	}
	actor := &authz.Actor{}
	var fields []string
	if actor.UserID, err = stringClaim(claims, v.cfg.UserClaim); err != nil {
		fields = append(fields, err.Error())
	}
	if actor.TenantID, err = stringClaim(claims, v.cfg.TenantClaim); err != nil {
		fields = append(fields, err.Error())
	}
	if actor.Roles, err = rolesClaim(claims, v.cfg.RolesClaim); err != nil {
		fields = append(fields, err.Error())
	}
	if len(fields) > 0 {
		return nil, authz.Errorf(authz.EUNAUTHORIZED, "the bearer token is not valid: %s", strings.Join(fields, "; "))
	}
	return actor, nil
}

var errCritical = errors.New("crit header")

// jwtReason names the failure without internals.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, errCritical):
		return "it names critical header extensions (crit), which keygate does not support"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "it was issued in the future"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "it has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "it is not valid yet"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the signature does not verify"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "a required claim is missing"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "it is malformed"
	default:
		return "it could not be verified"
	}
}

func stringClaim(claims jwt.MapClaims, name string) (string, error) {
	s, ok := claims[name].(string)
	if !ok || s == "" {
		return "", fmt.Errorf("claim %q must be a non-empty string", name)
	}
	if len(s) > 200 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("claim %q must be at most 200 printable characters", name)
	}
	return s, nil
}

// rolesClaim accepts an array of strings or one space-separated string, as
// identity providers differ; an absent claim means no roles.
func rolesClaim(claims jwt.MapClaims, name string) ([]string, error) {
	switch v := claims[name].(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(v), nil
	case []any:
		roles := make([]string, 0, len(v))
		for _, r := range v {
			s, ok := r.(string)
			if !ok {
				return nil, fmt.Errorf("claim %q must hold strings", name)
			}
			roles = append(roles, s)
		}
		return roles, nil
	default:
		return nil, fmt.Errorf("claim %q must be an array of strings", name)
	}
}

// SignHS256 issues a management JWT with the configured claim names, for
// the embedded default and `keygate token`.
func SignHS256(cfg JWTConfig, tenantID, userID string, roles []string, ttl time.Duration) (string, error) {
	cfg.defaults()
	now := time.Now()
	if cfg.Now != nil {
		now = cfg.Now()
	}
	claims := jwt.MapClaims{
		cfg.UserClaim:   userID,
		cfg.TenantClaim: tenantID,
		cfg.RolesClaim:  append([]string{}, roles...),
		"iat":           now.Unix(),
		"exp":           now.Add(ttl).Unix(),
	}
	if cfg.Issuer != "" {
		claims["iss"] = cfg.Issuer
	}
	if cfg.Audience != "" {
		claims["aud"] = cfg.Audience
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(cfg.Secret)
}

// requireJWT authenticates the management API's bearer JWT into an actor.
// A token that does not verify is charged to the client's address; once
// the address has spent its budget, such tokens are answered 429 (a token
// that verifies is served: checking one needs no lookup).
func requireJWT(v *JWTVerifier, limiter *authz.FailureLimiter) func(*gin.Context) {
	return func(c *gin.Context) {
		token := bearerToken(c.Request)
		if token == "" {
			writeError(c, authz.Errorf(authz.EUNAUTHORIZED, "a bearer token is required"))
			return
		}
		refuse := func(err error) {
			ip := c.ClientIP()
			if wait := limiter.Over(ip); wait > 0 {
				err = limiter.Refuse(c.Request.Context(), ip, authz.CredentialJWT, wait)
			} else {
				limiter.Fail(ip)
			}
			writeError(c, err)
		}
		if strings.HasPrefix(token, authz.TokenPrefix) {
			refuse(authz.Errorf(authz.EUNAUTHORIZED, "the management API takes a user's JWT, not an API key"))
			return
		}
		actor, err := v.Verify(c.Request.Context(), token)
		if err != nil {
			refuse(err)
			return
		}
		c.Set(ctxActor, actor)
		c.Request = c.Request.WithContext(authz.NewContextWithActor(c.Request.Context(), actor))
		c.Next()
	}
}
