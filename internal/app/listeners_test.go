package app

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/keygate/keygate/storage/storagetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestMetricsPlacement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note, metrics, addr string
		onMain              bool
		own                 string
		setting             string // the setting an invalid value names
	}{
		{"default, loopback", "", "127.0.0.1:8080", true, "", ""},
		{"default, localhost", "", "localhost:8080", true, "", ""},
		{"default, IPv6 loopback", "", "[::1]:8080", true, "", ""},
		{"default, every interface", "", ":8080", false, "", ""},
		{"default, a public address", "", "0.0.0.0:8080", false, "", ""},
		{"main, whatever its address", MetricsOnMain, "0.0.0.0:8080", true, "", ""},
		{"off", MetricsOff, "127.0.0.1:8080", false, "", ""},
		{"a listener of its own", "10.0.0.5:9464", "127.0.0.1:8080", false, "10.0.0.5:9464", ""},
		{"not an address", "9464", "127.0.0.1:8080", false, "9464", "KEYGATE_METRICS_ADDR"},
	}
	for _, tc := range tests {
		c := Defaults()
		c.MetricsAddr, c.Addr = tc.metrics, tc.addr
		if c.metricsOnMain() != tc.onMain || c.metricsListenAddr() != tc.own {
			t.Errorf("%s: on main %v, own %q; want %v, %q", tc.note, c.metricsOnMain(), c.metricsListenAddr(), tc.onMain, tc.own)
		}
		if err := c.Validate(); (tc.setting == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("%s: %v, want an error naming %q", tc.note, err, tc.setting)
		}
	}
	c := Defaults()
	c.GRPCAddr = "nowhere"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "KEYGATE_GRPC_ADDR") {
		t.Fatalf("a bad gRPC address: %v", err)
	}
}

// listenersConfig is an instance on SQLite in dir with its main and gRPC
// listeners on free loopback ports.
func listenersConfig(t *testing.T, dir string) Config {
	cfg := Defaults()
	cfg.DB, cfg.Migrate = storagetest.MustOpenSQLite(t), false
	cfg.JWTSecret = "listeners-test-secret-of-32-bytes!"
	cfg.EncryptionKey = storagetest.KeyringText
	cfg.DataDir = dir
	cfg.Addr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	return cfg
}

// listen builds the instance and opens its listeners; it is closed when
// the test ends.
func listen(ctx context.Context, t *testing.T, cfg Config) (*App, net.Listener) {
	t.Helper()
	a, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	ln, err := a.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return a, ln
}

// TestExtraListeners: metrics on a listener of their own (and then not on
// the main one), ext_authz over gRPC with its message bound, both closed
// when Serve returns.
func TestExtraListeners(t *testing.T) {
	t.Parallel()
	cfg := listenersConfig(t, t.TempDir())
	cfg.MetricsAddr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, ln := listen(ctx, t, cfg)
	metricsAddr, grpcAddr := a.MetricsAddr(), a.GRPCAddr()
	if metricsAddr == "" || grpcAddr == "" {
		t.Fatalf("listeners %q %q", metricsAddr, grpcAddr)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(url string) (int, string) {
		t.Helper()
		res, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	if code, _ := get("http://" + ln.Addr().String() + "/healthz"); code != http.StatusOK { // Serve has started
		t.Fatalf("/healthz: %d", code)
	}
	status200, scrape := get("http://" + metricsAddr + "/metrics")
	for _, want := range []string{"go_goroutine_count", "keygate_runtime_heap_live_bytes", "process_unix_file_descriptor_count",
		"keygate_runtime_gc_pause_duration_seconds_bucket", "keygate_key_cache_entries", "keygate_http_connections", "keygate_grpc_connections"} {
		if status200 != http.StatusOK || !strings.Contains(scrape, "\n"+want) {
			t.Errorf("scrape (%d) lacks %s", status200, want)
		}
	}
	if code, _ := get("http://" + ln.Addr().String() + "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the main listener with a metrics listener of its own: %d, want 404", code)
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	authClient := authv3.NewAuthorizationClient(conn)
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	check := func(headers map[string]string) (*authv3.CheckResponse, error) {
		return authClient.Check(cctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/agents/a1", Headers: headers}}}})
	}
	res, err := check(nil)
	if err != nil || res.GetDeniedResponse().GetStatus().GetCode() != typev3.StatusCode_Unauthorized {
		t.Fatalf("Check without a key: %v, %v", res, err)
	}
	_, err = check(map[string]string{"x-padding": strings.Repeat("x", grpcMaxMessageBytes)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a Check over %d bytes: %v, want ResourceExhausted", grpcMaxMessageBytes, err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := (&http.Client{Timeout: time.Second}).Get("http://" + metricsAddr + "/metrics"); err == nil {
		t.Error("the metrics listener still answers after Serve returned")
	}
	if _, err := check(nil); status.Code(err) != codes.Unavailable {
		t.Errorf("Check after Serve returned: %v, want Unavailable", err)
	}
}

// TestGRPCOverTLS: with a certificate, ext_authz speaks TLS with it.
func TestGRPCOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := listenersConfig(t, dir)
	cfg.TLSCertFile, cfg.TLSKeyFile = writeCert(t, dir, "keygate")
	ctx, cancel := context.WithCancel(context.Background())
	a, ln := listen(ctx, t, cfg)
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	check := func(creds grpc.DialOption) (*authv3.CheckResponse, error) {
		conn, err := grpc.NewClient(a.GRPCAddr(), creds)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		return authv3.NewAuthorizationClient(conn).Check(cctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/agents/a1"}}}})
	}
	tlsCreds := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})) //nolint:gosec // the test's own certificate
	if res, err := check(tlsCreds); err != nil || res.GetDeniedResponse().GetStatus().GetCode() != typev3.StatusCode_Unauthorized {
		t.Fatalf("Check over TLS: %v, %v", res, err)
	}
	if _, err := check(grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Fatal("a plaintext Check was answered by a TLS listener")
	}
}
