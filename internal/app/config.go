package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
)

// Config is every setting of one keygate instance. Start from Defaults and
// change what differs; New validates the result. cmd/keygate fills it from
// flags and their KEYGATE_* twins, tests fill it directly.
type Config struct {
	Addr        string // listen address
	DataDir     string // SQLite database and development secrets
	DatabaseURL string // postgres://… or sqlite:PATH; "" is sqlite:<DataDir>/keygate.db
	Migrate     bool   // apply migrations at start
	PolicyDir   string // Rego policies; "" serves the embedded ones

	JWTSecret      string // HS256 secret of management JWTs; "" with no JWKSURL: a development secret
	JWKSURL        string // the identity provider's JWKS, for RS256/ES256
	JWTIssuer      string
	JWTAudience    string
	JWTUserClaim   string
	JWTTenantClaim string
	JWTRolesClaim  string
	TokenTTL       time.Duration // lifetime of the JWTs keygate signs

	TrustedProxies    []string // whose X-Forwarded-For is believed
	ShutdownTimeout   time.Duration
	AuditBuffer       int
	FlushInterval     time.Duration
	KeyCacheSize      int
	KeyCacheTTL       time.Duration
	NegativeCacheTTL  time.Duration
	DecisionCacheSize int // 0: off
	MCPSyncInterval   time.Duration
	DebugAddr         string // profiler listener; "": off

	// TLSCertFile and TLSKeyFile serve HTTPS (both or neither); SIGHUP
	// reloads them.
	TLSCertFile string
	TLSKeyFile  string

	// EncryptionKey is the keyring upstream secrets are sealed with at
	// rest (storage.ParseKeyring); "" on SQLite: a development key in
	// DataDir. Required with Postgres and with DB.
	EncryptionKey string

	// The _FILE twins of the secret settings: read by ReadSecretFiles.
	DatabaseURLFile   string
	JWTSecretFile     string
	EncryptionKeyFile string

	// MCPAllowedNetworks are the non-public networks (loopback, private,
	// link-local, …) upstream MCP servers may be reached in; none by default.
	MCPAllowedNetworks []netip.Prefix

	Version string
	Logger  *slog.Logger // nil: discard

	// What tests and tools embedding keygate may put in place of what New
	// builds.

	// DB is an open, migrated database used instead of DatabaseURL; the
	// App does not close it.
	DB *storage.DB
	// Now is the clock of the services, caches and JWT checks; nil:
	// time.Now.
	Now func() time.Time
	// AuditRecorder takes the events of refusals and MCP calls instead of
	// the batched writer into the database.
	AuditRecorder authz.AuditRecorder
	// MCPTransport carries the gateway's requests to upstreams; nil: a
	// pooled default.
	MCPTransport http.RoundTripper
}

// Defaults returns the configuration `keygate serve` runs with when nothing
// is set: 127.0.0.1:8080, SQLite under ./data.
func Defaults() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		DataDir:           "./data",
		Migrate:           true,
		JWTUserClaim:      "sub",
		JWTTenantClaim:    "tenant_id",
		JWTRolesClaim:     "roles",
		TokenTTL:          24 * time.Hour,
		ShutdownTimeout:   30 * time.Second,
		AuditBuffer:       10_000,
		FlushInterval:     time.Second,
		KeyCacheSize:      100_000,
		KeyCacheTTL:       30 * time.Second,
		NegativeCacheTTL:  5 * time.Second,
		DecisionCacheSize: 10_000,
		MCPSyncInterval:   5 * time.Minute,
		Version:           "dev",
	}
}

// Validate reports every setting out of range, each naming its setting.
func (c *Config) Validate() error {
	var errs []error
	if c.AuditBuffer < 1 {
		errs = append(errs, fmt.Errorf("KEYGATE_AUDIT_BUFFER must be at least 1, got %d", c.AuditBuffer))
	}
	if c.DecisionCacheSize < 0 {
		errs = append(errs, fmt.Errorf("KEYGATE_DECISION_CACHE_SIZE must not be negative, got %d", c.DecisionCacheSize))
	}
	if c.KeyCacheSize < 1 {
		errs = append(errs, fmt.Errorf("KEYGATE_KEY_CACHE_SIZE must be at least 1, got %d", c.KeyCacheSize))
	}
	if c.KeyCacheTTL <= 0 || c.NegativeCacheTTL <= 0 {
		errs = append(errs, errors.New("KEYGATE_KEY_CACHE_TTL and KEYGATE_NEGATIVE_CACHE_TTL must be positive"))
	}
	if c.MCPSyncInterval < time.Second {
		errs = append(errs, fmt.Errorf("KEYGATE_MCP_SYNC_INTERVAL must be at least 1s, got %s", c.MCPSyncInterval))
	}
	if c.FlushInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("KEYGATE_FLUSH_INTERVAL must be at least 10ms, got %s", c.FlushInterval))
	}
	if c.TokenTTL <= 0 {
		errs = append(errs, fmt.Errorf("KEYGATE_TOKEN_TTL must be positive, got %s", c.TokenTTL))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("KEYGATE_SHUTDOWN_TIMEOUT must be positive, got %s", c.ShutdownTimeout))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("KEYGATE_TLS_CERT_FILE and KEYGATE_TLS_KEY_FILE must be set together"))
	}
	if c.JWKSURL != "" && c.JWTIssuer == "" {
		errs = append(errs, errors.New("KEYGATE_JWT_ISSUER is required with KEYGATE_JWKS_URL: without it any token of the identity provider would do"))
	}
	if c.JWKSURL != "" && c.JWTAudience == "" {
		errs = append(errs, errors.New("KEYGATE_JWT_AUDIENCE is required with KEYGATE_JWKS_URL: without it a token the identity provider issued for another service would do"))
	}
	return errors.Join(errs...)
}

// DatabaseURLOrDefault is the database the instance uses.
func (c *Config) DatabaseURLOrDefault() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return "sqlite:" + filepath.Join(c.DataDir, "keygate.db")
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}
