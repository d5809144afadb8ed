package app

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// bundlePoller fetches the policy bundle at KEYGATE_POLICY_BUNDLE_URL with
// OPA's downloader (conditional GETs with the last ETag, the bundle read
// and its signature verified by OPA's bundle reader), every
// KEYGATE_POLICY_BUNDLE_INTERVAL. keygate drives the polls itself (the
// downloader's manual mode): the first at start, whose failure stops
// start-up, then one per interval and one per SIGHUP.
type bundlePoller struct {
	m        *policyManager
	d        *download.Downloader
	url      string // the bundle's URL, to take out of errors
	interval time.Duration

	mu   sync.Mutex // one poll at a time
	good string     // ETag of the live bundle
	// pending is the first bundle, read before the engine exists.
	pending *authz.PolicySet
}

func newBundlePoller(cfg Config, m *policyManager) (*bundlePoller, error) {
	u, err := url.Parse(cfg.PolicyBundleURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("KEYGATE_POLICY_BUNDLE_URL must be an absolute http or https URL, got %q", RedactURL(cfg.PolicyBundleURL))
	}
	// The rest client joins its URL and the path with "/": split the URL
	// at its host.
	base := u.Scheme + "://" + u.Host
	path := strings.TrimPrefix(u.RequestURI(), "/")
	conf, err := json.Marshal(map[string]any{"url": base, "credentials": map[string]any{"plugin": "keygate"}})
	if err != nil {
		return nil, err
	}
	auth := &bundleAuth{token: cfg.PolicyBundleToken, max: cfg.PolicyBundleMaxBytes}
	client, err := rest.New(conf, nil, rest.Logger(logging.NewNoOpLogger()),
		rest.AuthPluginLookup(func(string) rest.HTTPAuthPlugin { return auth }))
	if err != nil {
		return nil, fmt.Errorf("KEYGATE_POLICY_BUNDLE_URL: %w", err)
	}
	trigger := plugins.TriggerManual
	dc := download.Config{Trigger: &trigger}
	if err := dc.ValidateAndInjectDefaults(); err != nil {
		return nil, err
	}
	p := &bundlePoller{m: m, url: cfg.PolicyBundleURL, interval: cfg.PolicyBundleInterval}
	vc, err := cfg.bundleVerification()
	if err != nil {
		return nil, err
	}
	p.d = download.New(dc, client, path).WithCallback(p.update).WithBundleVerificationConfig(vc).
		WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}).
		WithSizeLimitBytes(authz.MaxPolicyFileBytes)
	return p, nil
}

// bundleVerification is the signature check of KEYGATE_POLICY_BUNDLE_PUBLIC_KEY;
// nil without a key (bundles are then read unsigned).
func (c *Config) bundleVerification() (*bundle.VerificationConfig, error) {
	if c.PolicyBundlePublicKey == "" {
		return nil, nil
	}
	if !strings.Contains(c.PolicyBundlePublicKey, "-----BEGIN") {
		return nil, errors.New("KEYGATE_POLICY_BUNDLE_PUBLIC_KEY must be a PEM public key (KEYGATE_POLICY_BUNDLE_PUBLIC_KEY_FILE reads one from a file)")
	}
	kc := &keys.Config{Key: c.PolicyBundlePublicKey, Algorithm: c.PolicyBundleSigningAlg}
	// One key: whatever key id the bundle was signed with (`opa build`'s
	// default is "default"), this key verifies it.
	const id = "keygate"
	return bundle.NewVerificationConfig(map[string]*keys.Config{id: kc}, id, "", nil), nil
}

// first downloads the bundle to start with.
func (p *bundlePoller) first(ctx context.Context) (authz.PolicySet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.d.Trigger(ctx)
	set := p.pending
	p.pending = nil
	switch {
	case err != nil:
		return authz.PolicySet{}, fmt.Errorf("policy bundle (KEYGATE_POLICY_BUNDLE_URL): %s", p.redact(err))
	case set == nil:
		return authz.PolicySet{}, errors.New("policy bundle (KEYGATE_POLICY_BUNDLE_URL): the server sent no bundle")
	}
	return *set, nil
}

// poll asks for a new bundle now.
func (p *bundlePoller) poll(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.d.Trigger(ctx)
}

// run polls every interval until ctx ends.
func (p *bundlePoller) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = p.poll(ctx)
		}
	}
}

// update is the downloader's callback, on its goroutine: a failed
// download, a 304 (no bundle) or a new bundle, already verified and read.
func (p *bundlePoller) update(ctx context.Context, u download.Update) error {
	if u.Error != nil {
		// The downloader forgot its ETag; the live bundle's is the one to
		// ask with (its client would otherwise go on sending a stale one).
		p.d.SetCache(p.good)
		if p.m.engine != nil {
			p.m.refused(authz.Errorf(authz.EUNAVAILABLE, "policy bundle download failed: %s", p.redact(u.Error)))
		}
		return nil // Trigger returns the download's error too
	}
	if u.Bundle == nil { // not modified
		if p.m.engine != nil && u.ETag == p.good {
			p.m.sourceIsLive()
		}
		return nil
	}
	set, err := authz.PolicySetFromBundle(*u.Bundle)
	if err == nil && p.m.engine == nil {
		p.pending, p.good = &set, u.ETag
		return nil
	}
	if err == nil {
		err = p.m.apply(ctx, set)
	} else {
		p.m.refused(err)
	}
	if err != nil {
		// The downloader kept the new ETag: go back to the live bundle's,
		// so the next poll fetches whatever the server has then.
		p.d.SetCache(p.good)
		return err
	}
	p.good = u.ETag
	return nil
}

// redact takes the bundle URL, which may carry a credential or a query,
// out of an error message.
func (p *bundlePoller) redact(err error) string {
	return strings.ReplaceAll(err.Error(), p.url, RedactURL(p.url))
}

// bundleAuth is the rest client's HTTP client for the bundle server: OPA's
// default transport (TLS, the environment's proxy), a bearer token when
// KEYGATE_POLICY_BUNDLE_TOKEN is set, and a bound on what a download may
// hold.
type bundleAuth struct {
	token string
	max   int64
}

func (a *bundleAuth) NewClient(c rest.Config) (*http.Client, error) {
	t, err := rest.DefaultTLSConfig(c)
	if err != nil {
		return nil, err
	}
	hc := rest.DefaultRoundTripperClient(t, *c.ResponseHeaderTimeoutSeconds)
	hc.Transport = &boundedBundles{base: hc.Transport, max: a.max}
	hc.Timeout = 2 * time.Minute
	return hc, nil
}

func (a *bundleAuth) Prepare(req *http.Request) error {
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	return nil
}

// boundedBundles reads a bundle whole before OPA does, refusing one whose
// download, or whose files once unpacked, exceed max bytes: a gzip bomb of
// many files, each under OPA's per-file limit, is stopped at the first byte
// past max.
type boundedBundles struct {
	base http.RoundTripper
	max  int64
}

func (b *boundedBundles) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := b.base.RoundTrip(req)
	if err != nil || res.StatusCode != http.StatusOK {
		return res, err
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, b.max+1))
	_ = res.Body.Close()
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > b.max {
		return nil, fmt.Errorf("the bundle is larger than %d bytes (KEYGATE_POLICY_BUNDLE_MAX_BYTES)", b.max)
	}
	if err := checkUnpacked(body, b.max); err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	return res, nil
}

// checkUnpacked unpacks a .tar.gz without keeping it and fails once its
// headers and files pass max bytes.
func checkUnpacked(body []byte, max int64) error {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil // not gzip: OPA's reader says what is wrong
	}
	defer func() { _ = zr.Close() }()
	tr := tar.NewReader(zr)
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // OPA's reader says what is wrong
		}
		total += 512 + hdr.Size
		if total > max {
			return fmt.Errorf("the bundle unpacks to more than %d bytes (KEYGATE_POLICY_BUNDLE_MAX_BYTES)", max)
		}
	}
}
