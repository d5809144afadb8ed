package mcp

import (
	"context"
	"time"

	"github.com/keygate/keygate/authz"
)

// Kinds of resync.
const (
	resyncScheduled = iota // the scheduler: skipped while one runs
	resyncChanged          // the upstream announced a change: runs again after one in flight
	resyncFailure          // a call failed: at most once per ResyncBackoff
)

type resyncState struct {
	running bool
	again   bool
	last    time.Time
}

// triggerResync syncs srv in the background, one sync per server at a time
// and at most defaultSyncWorkers at once.
func (g *Gateway) triggerResync(srv *authz.MCPServer, kind int) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	st := g.resyncs[srv.ID]
	if st == nil {
		st = &resyncState{}
		g.resyncs[srv.ID] = st
	}
	now := g.now()
	switch {
	case st.running:
		st.again = st.again || kind == resyncChanged
		g.mu.Unlock()
		return
	case kind == resyncFailure && !st.last.IsZero() && now.Sub(st.last) < g.opts.ResyncBackoff:
		g.mu.Unlock()
		return
	}
	st.running, st.last = true, now
	g.bg.Add(1)
	g.mu.Unlock()
	go g.runResync(srv, st)
}

func (g *Gateway) runResync(srv *authz.MCPServer, st *resyncState) {
	defer g.bg.Done()
	for {
		select {
		case g.slots <- struct{}{}:
		case <-g.bgCtx.Done():
			g.mu.Lock()
			st.running = false
			g.mu.Unlock()
			return
		}
		// Bounded by the server's timeout inside; this bounds the database.
		ctx, cancel := context.WithTimeout(g.bgCtx, srv.Timeout()+30*time.Second)
		report, err := g.opts.Catalog.Resync(ctx, srv.TenantID, srv.ID)
		cancel()
		<-g.slots
		gone := authz.ErrorCode(err) == authz.ENOTFOUND || err == nil && report == nil // deleted, or disabled
		g.health.synced(g.bgCtx, srv, err, gone)
		switch code := authz.ErrorCode(err); {
		case err == nil:
		case code == authz.EUNAVAILABLE:
			g.logger.Info("MCP upstream unreachable; its tools are hidden", "server_id", srv.ID, "server", srv.Name, "reason", authz.ErrorMessage(err))
		case code == authz.ENOTFOUND || code == authz.ECONFLICT:
		default:
			g.logger.Warn("MCP sync failed", "server_id", srv.ID, "server", srv.Name, "err", err)
		}
		g.mu.Lock()
		if st.again && !g.closed {
			st.again, st.last = false, g.now()
			g.mu.Unlock()
			continue
		}
		st.running = false
		g.mu.Unlock()
		return
	}
}
