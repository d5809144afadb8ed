package storagetest

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// Proxy forwards a loopback port to a database server and can cut every
// connection and refuse new ones, standing in for a database that goes
// away and comes back, while the server itself is untouched.
type Proxy struct {
	tb     testing.TB
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

// NewProxy starts a proxy in front of the server of dbURL and returns it
// with dbURL pointing through it. It is cut when the test ends.
func NewProxy(tb testing.TB, dbURL string) (*Proxy, string) {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal("the database URL does not parse") // the error would echo a password
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{tb: tb, addr: ln.Addr().String(), target: u.Host}
	p.serve(ln)
	tb.Cleanup(p.Cut)
	u.Host = p.addr
	return p, u.String()
}

// Addr is the proxy's loopback address.
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // cut meanwhile
				p.mu.Unlock()
				_ = c.Close()
				_ = up.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
}

// Cut closes the listener and every connection: connecting is refused
// until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// Restore listens on the same address again.
func (p *Proxy) Restore() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp", p.addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.tb.Fatalf("proxy cannot listen on %s again: %v", p.addr, err)
}

// MustOpenPostgresBehindProxy is MustOpenPostgres reached through a Proxy
// the test can cut and restore.
func MustOpenPostgresBehindProxy(tb testing.TB) (*storage.DB, *Proxy) {
	tb.Helper()
	proxy, dbURL := NewProxy(tb, PostgresURL(tb))
	return mustOpen(tb, dbURL), proxy
}
