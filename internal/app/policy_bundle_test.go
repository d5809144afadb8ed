package app

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// opaBuild builds a bundle of files with the pinned OPA CLI (`go tool
// opa build`), signed with signingKey (PEM) when given.
func opaBuild(t *testing.T, files map[string]string, revision, signingKey string) []byte {
	t.Helper()
	dir := policyFolder(t, files)
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	args := []string{"build", "-b", ".", "-o", out, "--revision", revision}
	if signingKey != "" {
		keyFile := filepath.Join(t.TempDir(), "signing.pem")
		if err := os.WriteFile(keyFile, []byte(signingKey), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--signing-key", keyFile, "--signing-alg", "RS256")
	}
	cmd := exec.Command(opaPath(t), args...)
	cmd.Dir = dir // the bundle's paths are as given: "." makes them /authz.rego
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// opaCLI is the path of the OPA CLI go.mod pins, built once by `go tool`.
var opaCLI = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "tool", "-n", "opa").Output()
	return strings.TrimSpace(string(out)), err
})

func opaPath(t *testing.T) string {
	t.Helper()
	path, err := opaCLI()
	if err != nil {
		t.Fatalf("go tool -n opa: %v", err)
	}
	return path
}

func rsaKeys(t *testing.T) (private, public string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
}

// bundleServer serves one bundle at a time, with an ETag, answering 304
// to a request that names it.
type bundleServer struct {
	mu       sync.Mutex
	body     []byte
	requests []string // If-None-Match of each request, and the status
	token    string
}

func (s *bundleServer) set(body []byte) {
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	sum := sha256.Sum256(s.body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if r.Header.Get("If-None-Match") == etag {
		s.requests = append(s.requests, etag+" 304")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.requests = append(s.requests, r.Header.Get("If-None-Match")+" 200")
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(s.body)
}

func (s *bundleServer) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[len(s.requests)-1]
}

// TestPolicyBundle: a bundle built by the OPA CLI and signed is served
// from its server, polled with its ETag, replaced by the next one, and a
// bundle that does not verify, fails its tests or is too large is refused
// while the live one serves on.
func TestPolicyBundle(t *testing.T) {
	t.Parallel()
	private, public := rsaKeys(t)
	otherPrivate, _ := rsaKeys(t)
	v1 := opaBuild(t, map[string]string{"reader_test.rego": readerTest}, "rev-1", private)
	v2 := opaBuild(t, map[string]string{"closed.rego": closedRule, "reader_test.rego": closedTest,
		"acme/data.json": `{"office": "Berlin"}`}, "rev-2", private)
	forged := opaBuild(t, map[string]string{}, "rev-forged", otherPrivate)
	failing := opaBuild(t, map[string]string{"closed.rego": closedRule, "reader_test.rego": readerTest}, "rev-failing", private)

	srv := &bundleServer{body: v1, token: "bundle-token"}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	a := newOutageApp(t, "", func(c *Config) {
		c.PolicyBundleURL = hs.URL + "/bundles/keygate.tar.gz?team=authz"
		c.PolicyBundlePublicKey = public
		c.PolicyBundleToken = "bundle-token"
		c.PolicyBundleInterval = time.Hour // polled by hand below
		c.PolicyBundleMaxBytes = 256 << 10
	})
	ctx := context.Background()
	st := a.PolicyStatus()
	if st.BundleRevision != "rev-1" || st.Source != "bundle:"+hs.URL+"/bundles/keygate.tar.gz" || !readF1(t, a.Engine).Allow {
		t.Fatalf("at start: %+v", st)
	}
	first := st.Revision

	// Nothing new: a 304, nothing reloaded.
	if err := a.ReloadPolicies(ctx); err != nil || !strings.HasSuffix(srv.last(), " 304") || a.PolicyStatus() != st {
		t.Fatalf("unchanged: %v, last request %q, status %+v", err, srv.last(), a.PolicyStatus())
	}

	// The next bundle: live, rules and data.
	srv.set(v2)
	if err := a.ReloadPolicies(ctx); err != nil {
		t.Fatal(err)
	}
	st = a.PolicyStatus()
	if st.BundleRevision != "rev-2" || st.Revision == first || st.LastError != "" || readF1(t, a.Engine).Allow {
		t.Fatalf("after rev-2: %+v", st)
	}

	for _, tc := range []struct {
		note, want string
		body       []byte
	}{
		{"signed with another key", "verification error", forged},
		{"its tests fail", "policy tests fail", failing},
		{"not a bundle", "gzip", []byte("<html>maintenance</html>")},
		{"too large", "larger than 262144 bytes (KEYGATE_POLICY_BUNDLE_MAX_BYTES)", bytes.Repeat([]byte("x"), 300<<10)},
		{"a bomb", "unpacks to more than 262144 bytes", gzipBomb(t)},
	} {
		srv.set(tc.body)
		err := a.ReloadPolicies(ctx)
		got := a.PolicyStatus()
		if err == nil || !strings.Contains(got.LastError, tc.want) || got.Revision != st.Revision || readF1(t, a.Engine).Allow {
			t.Errorf("%s: %v, status %+v; want refused with %q and rev-2 serving", tc.note, err, got, tc.want)
		}
	}
	// After a refusal, the poll asks with the live bundle's ETag, so the
	// server answers with what it has now.
	srv.set(v2)
	if err := a.ReloadPolicies(ctx); err != nil || !strings.HasSuffix(srv.last(), " 304") || a.PolicyStatus().LastError != "" {
		t.Errorf("back to rev-2: %v, last request %q, status %+v", err, srv.last(), a.PolicyStatus())
	}
}

// gzipBomb is a small .tar.gz of files that unpack to far more.
func gzipBomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	zero := make([]byte, 100<<10)
	for i := range 10 {
		if err := tw.WriteHeader(&tar.Header{Name: "/f" + string(rune('a'+i)) + "/data.json", Mode: 0o644, Size: int64(len(zero))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(zero)
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

func TestPolicyBundleAtStart(t *testing.T) {
	t.Parallel()
	_, public := rsaKeys(t)
	unsigned := opaBuild(t, nil, "rev-u", "")
	srv := &bundleServer{body: unsigned}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	for _, tc := range []struct {
		note string
		set  func(*Config)
		want string
	}{
		{"an unsigned bundle when a key is set", func(c *Config) { c.PolicyBundleURL, c.PolicyBundlePublicKey = hs.URL, public }, "bundle missing .signatures.json file"},
		{"no server", func(c *Config) { c.PolicyBundleURL = "http://127.0.0.1:1/b.tar.gz?secret=s" }, "KEYGATE_POLICY_BUNDLE_URL"},
		{"not a key", func(c *Config) { c.PolicyBundleURL, c.PolicyBundlePublicKey = hs.URL, "abc" }, "KEYGATE_POLICY_BUNDLE_PUBLIC_KEY must be a PEM"},
	} {
		cfg := Defaults()
		cfg.DataDir = t.TempDir()
		cfg.JWTSecret, cfg.EncryptionKey = "bundle-test-secret-of-at-least-32-bytes", "k:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
		tc.set(&cfg)
		_, err := New(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret=s") {
			t.Errorf("%s: %v, want start-up to fail with %q (and no URL query)", tc.note, err, tc.want)
		}
	}
	// Unsigned and no key: served.
	a := newOutageApp(t, "", func(c *Config) { c.PolicyBundleURL = hs.URL + "/b.tar.gz" })
	if st := a.PolicyStatus(); st.BundleRevision != "rev-u" || !readF1(t, a.Engine).Allow {
		t.Errorf("unsigned bundle: %+v", st)
	}
}
