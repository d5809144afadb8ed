package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/decisionlog"
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
	PolicyDir   string // Rego policies; "" serves the embedded ones (or the bundle's)

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
	AuditSpoolBytes   int // bound of <DataDir>/audit-spool; 0: no spool
	FlushInterval     time.Duration
	KeyCacheSize      int
	KeyCacheTTL       time.Duration
	KeyCacheStaleness time.Duration // trust in a cached key while the change feed is down
	NegativeCacheTTL  time.Duration
	DecisionCacheSize int // 0: off
	MCPSyncInterval   time.Duration
	DebugAddr         string // profiler listener; "": off
	// Contention profiles on the profiler listener: 1 in
	// DebugMutexFraction contended locks, about one wait per
	// DebugBlockRate spent blocked; 0: off.
	DebugMutexFraction int
	DebugBlockRate     time.Duration

	// Policies from an OPA bundle server, instead of PolicyDir: polled
	// every PolicyBundleInterval with the last ETag, each bundle bounded
	// by PolicyBundleMaxBytes and, with a public key, verified.
	PolicyBundleURL           string
	PolicyBundleInterval      time.Duration
	PolicyBundlePublicKey     string // PEM; "": bundles are read unsigned
	PolicyBundlePublicKeyFile string
	PolicyBundleSigningAlg    string // of the bundle's signature: RS256, ES256, …
	PolicyBundleToken         string // bearer token for the bundle server; "": none
	PolicyBundleTokenFile     string
	PolicyBundleMaxBytes      int64

	// Decision logs (docs/policies.md, "Decision logs"): "" is off,
	// "console", "file:PATH" or "http:URL".
	DecisionLog       string
	DecisionLogSample float64 // share of decisions logged, (0, 1]
	DecisionLogBuffer int     // decisions queued before new ones are dropped
	DecisionLogGzip   bool    // the http sink compresses its posts
	// DecisionLogStdout is where the console sink writes; nil: os.Stdout.
	DecisionLogStdout io.Writer

	// MetricsAddr is where GET /metrics is served: a listen address of its
	// own; MetricsOnMain for the main listener; MetricsOff for nowhere; ""
	// for the main listener when Addr is a loopback address, else nowhere.
	MetricsAddr string
	// GRPCAddr is the listen address of Envoy's ext_authz over gRPC; "": off.
	GRPCAddr string

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

	// Limits against abuse (docs/operations.md, "Limits and abuse").
	AuthFailureBurst        int           // failed authentications an address may have in a row; 0: no limit
	AuthFailureRate         float64       // failures a second an address earns back
	AuthFailureMaxAddresses int           // addresses the limiter tracks at once
	AuditRetention          time.Duration // events older than this are deleted; 0: kept forever
	MCPMaxResponseBytes     int64         // bound of one upstream MCP answer
	MCPMaxSessionsPerKey    int           // MCP client sessions open at once per key
	MCPMaxSessions          int           // MCP client sessions open at once on the instance
	MCPSessionIdleTimeout   time.Duration // an MCP session without a request is closed after this
	HTTPReadHeaderTimeout   time.Duration // to send a request's headers
	HTTPReadTimeout         time.Duration // to send a whole request
	HTTPWriteTimeout        time.Duration // to take an answer (MCP event streams excepted)
	HTTPIdleTimeout         time.Duration // an idle keep-alive connection is closed after this
	HTTPMaxConnections      int           // connections served at once; more wait to be accepted

	// Per-key limits and usage history (docs/operations.md, "Per-key
	// limits"). With RedisURL, rate limit counts are shared by every
	// instance through Redis; without it each instance counts alone.
	RedisURL       string
	RedisURLFile   string        // the _FILE twin of RedisURL, which may hold a password
	RedisTimeout   time.Duration // longest a decision waits on Redis before counting alone
	UsageRetention time.Duration // key usage rollups older than this are deleted; 0: kept forever

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
		AuditSpoolBytes:   256 << 20,
		FlushInterval:     time.Second,
		KeyCacheSize:      100_000,
		KeyCacheTTL:       30 * time.Second,
		KeyCacheStaleness: time.Second,
		NegativeCacheTTL:  5 * time.Second,
		DecisionCacheSize: 10_000,
		MCPSyncInterval:   5 * time.Minute,
		Version:           "dev",

		PolicyBundleInterval:   30 * time.Second,
		PolicyBundleSigningAlg: "RS256",
		PolicyBundleMaxBytes:   16 << 20,
		DecisionLogSample:      1,
		DecisionLogBuffer:      10_000,
		DecisionLogGzip:        true,

		AuthFailureBurst:        20,
		AuthFailureRate:         1,
		AuthFailureMaxAddresses: 100_000,
		AuditRetention:          90 * 24 * time.Hour,
		MCPMaxResponseBytes:     10 << 20,
		MCPMaxSessionsPerKey:    32,
		MCPMaxSessions:          10_000,
		MCPSessionIdleTimeout:   10 * time.Minute,
		HTTPReadHeaderTimeout:   10 * time.Second,
		HTTPReadTimeout:         30 * time.Second,
		HTTPWriteTimeout:        30 * time.Second,
		HTTPIdleTimeout:         120 * time.Second,
		HTTPMaxConnections:      16_384,
		RedisTimeout:            50 * time.Millisecond,
		UsageRetention:          90 * 24 * time.Hour,
	}
}

// Validate reports every setting out of range, each naming its setting.
func (c *Config) Validate() error {
	errs := c.validateLimits()
	if c.AuditBuffer < 1 {
		errs = append(errs, fmt.Errorf("KEYGATE_AUDIT_BUFFER must be at least 1, got %d", c.AuditBuffer))
	}
	if c.AuditSpoolBytes != 0 && c.AuditSpoolBytes < minSpoolBytes {
		errs = append(errs, fmt.Errorf("KEYGATE_AUDIT_SPOOL_BYTES must be 0 (no spool) or at least %d, got %d", minSpoolBytes, c.AuditSpoolBytes))
	}
	if c.KeyCacheStaleness <= 0 || c.KeyCacheStaleness > c.KeyCacheTTL {
		errs = append(errs, fmt.Errorf("KEYGATE_KEY_CACHE_STALENESS must be positive and at most KEYGATE_KEY_CACHE_TTL, got %s", c.KeyCacheStaleness))
	}
	if c.DebugMutexFraction < 0 || c.DebugBlockRate < 0 {
		errs = append(errs, fmt.Errorf("KEYGATE_DEBUG_MUTEX_FRACTION and KEYGATE_DEBUG_BLOCK_RATE must not be negative, got %d and %s", c.DebugMutexFraction, c.DebugBlockRate))
	}
	if c.DebugAddr == "" && (c.DebugMutexFraction != 0 || c.DebugBlockRate != 0) {
		errs = append(errs, errors.New("KEYGATE_DEBUG_MUTEX_FRACTION and KEYGATE_DEBUG_BLOCK_RATE feed profiles served only on KEYGATE_DEBUG_ADDR: set it too"))
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
	switch c.MetricsAddr {
	case "", MetricsOnMain, MetricsOff:
	default:
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("KEYGATE_METRICS_ADDR must be a listen address (host:port), %q or %q, got %q", MetricsOnMain, MetricsOff, c.MetricsAddr))
		}
	}
	if c.GRPCAddr != "" {
		if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
			errs = append(errs, fmt.Errorf("KEYGATE_GRPC_ADDR must be a listen address (host:port), got %q", c.GRPCAddr))
		}
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
	errs = append(errs, c.validatePolicy()...)
	return errors.Join(errs...)
}

// validatePolicy checks where policies come from and where decisions are
// logged.
func (c *Config) validatePolicy() []error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.PolicyDir == "" || c.PolicyBundleURL == "", "KEYGATE_POLICY_DIR and KEYGATE_POLICY_BUNDLE_URL are both set; set one")
	check(c.PolicyBundleInterval >= time.Second, "KEYGATE_POLICY_BUNDLE_INTERVAL must be at least 1s, got %s", c.PolicyBundleInterval)
	check(c.PolicyBundleMaxBytes >= 64<<10, "KEYGATE_POLICY_BUNDLE_MAX_BYTES must be at least 65536, got %d", c.PolicyBundleMaxBytes)
	check(c.PolicyBundleURL != "" || (c.PolicyBundlePublicKey == "" && c.PolicyBundleToken == ""),
		"KEYGATE_POLICY_BUNDLE_PUBLIC_KEY and KEYGATE_POLICY_BUNDLE_TOKEN need KEYGATE_POLICY_BUNDLE_URL")
	check(slices.Contains(bundleSigningAlgs, c.PolicyBundleSigningAlg),
		"KEYGATE_POLICY_BUNDLE_SIGNING_ALG must be one of %s, got %q", strings.Join(bundleSigningAlgs, ", "), c.PolicyBundleSigningAlg)
	if _, err := decisionlog.Parse(c.DecisionLog); err != nil {
		errs = append(errs, err)
	}
	check(c.DecisionLogSample > 0 && c.DecisionLogSample <= 1, "KEYGATE_DECISION_LOG_SAMPLE must be above 0 and at most 1, got %g", c.DecisionLogSample)
	check(c.DecisionLogBuffer >= 1, "KEYGATE_DECISION_LOG_BUFFER must be at least 1, got %d", c.DecisionLogBuffer)
	return errs
}

// bundleSigningAlgs are the signatures a bundle may carry with a public key.
var bundleSigningAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// minSpoolBytes is the smallest audit spool: a few segments.
const minSpoolBytes = 1 << 20

// AuditSpoolDir is the folder of the audit spool.
func (c *Config) AuditSpoolDir() string { return filepath.Join(c.DataDir, "audit-spool") }

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

// validateLimits checks the limits against abuse.
func (c *Config) validateLimits() []error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.AuthFailureBurst >= 0, "KEYGATE_AUTH_FAILURE_BURST must not be negative (0 turns the limit off), got %d", c.AuthFailureBurst)
	check(c.AuthFailureBurst == 0 || c.AuthFailureRate > 0, "KEYGATE_AUTH_FAILURE_RATE must be positive, got %g", c.AuthFailureRate)
	check(c.AuthFailureMaxAddresses >= 1, "KEYGATE_AUTH_FAILURE_MAX_ADDRESSES must be at least 1, got %d", c.AuthFailureMaxAddresses)
	check(c.AuditRetention == 0 || c.AuditRetention >= time.Hour, "KEYGATE_AUDIT_RETENTION must be 0 (keep forever) or at least 1h, got %s", c.AuditRetention)
	check(c.MCPMaxResponseBytes >= 64<<10, "KEYGATE_MCP_MAX_RESPONSE_BYTES must be at least 65536, got %d", c.MCPMaxResponseBytes)
	check(c.MCPMaxSessionsPerKey >= 1, "KEYGATE_MCP_MAX_SESSIONS_PER_KEY must be at least 1, got %d", c.MCPMaxSessionsPerKey)
	check(c.MCPMaxSessions >= c.MCPMaxSessionsPerKey, "KEYGATE_MCP_MAX_SESSIONS must be at least KEYGATE_MCP_MAX_SESSIONS_PER_KEY (%d), got %d", c.MCPMaxSessionsPerKey, c.MCPMaxSessions)
	check(c.MCPSessionIdleTimeout >= time.Second, "KEYGATE_MCP_SESSION_IDLE_TIMEOUT must be at least 1s, got %s", c.MCPSessionIdleTimeout)
	for _, t := range []struct {
		name string
		d    time.Duration
	}{
		{"KEYGATE_HTTP_READ_HEADER_TIMEOUT", c.HTTPReadHeaderTimeout}, {"KEYGATE_HTTP_READ_TIMEOUT", c.HTTPReadTimeout},
		{"KEYGATE_HTTP_WRITE_TIMEOUT", c.HTTPWriteTimeout}, {"KEYGATE_HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout},
	} {
		check(t.d > 0, "%s must be positive, got %s", t.name, t.d)
	}
	check(c.HTTPMaxConnections >= 1, "KEYGATE_HTTP_MAX_CONNECTIONS must be at least 1, got %d", c.HTTPMaxConnections)
	check(c.RedisTimeout >= time.Millisecond && c.RedisTimeout <= time.Second, "KEYGATE_REDIS_TIMEOUT must be 1ms to 1s, got %s", c.RedisTimeout)
	check(c.UsageRetention == 0 || c.UsageRetention >= time.Hour, "KEYGATE_USAGE_RETENTION must be 0 (keep forever) or at least 1h, got %s", c.UsageRetention)
	return errs
}
