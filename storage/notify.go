package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun/driver/pgdriver"
)

// KeyChangeChannel is the Postgres channel the api_keys triggers notify
// (migration 20261125000003_key_notify).
const KeyChangeChannel = "keygate_key_changes"

// KeyChangeFeedOptions wires a KeyChangeFeed.
type KeyChangeFeedOptions struct {
	// OnChange receives every change another instance (or anyone) made; a
	// change naming no key means "anything may have changed".
	OnChange func(authz.KeyChange)
	// OnResync is called each time the feed (re)connects: changes made
	// while it was away are lost, so what was cached must go.
	OnResync func()
	// OnLost is called when a connection that was listening fails, with
	// when the feed last heard the database: changes made since may go
	// unheard until OnResync.
	OnLost func(heard time.Time)
	// Heartbeat is how often the feed proves its connection alive by
	// notifying itself; a connection silent for three heartbeats is
	// replaced. Default 1s.
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, doubling from the one to the other, each jittered; the
	// database answering a ping cuts a wait short. Defaults 50ms and 1s.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// KeyChangeFeed listens on Postgres for key changes made by any instance.
// A dropped connection is replaced and, once listening again, OnResync
// runs, so a cache never outlives a change it could not hear.
type KeyChangeFeed struct {
	db        *DB
	opts      KeyChangeFeedOptions
	connected atomic.Bool
	resyncs   atomic.Int64
	heard     atomic.Int64 // Unix ns: the feed knows every change committed before
	self      string       // marks this feed's heartbeats
}

// NewKeyChangeFeed returns a feed on a Postgres database; on SQLite there
// is only one instance and nothing to listen to, so it returns nil.
func NewKeyChangeFeed(db *DB, opts KeyChangeFeedOptions) *KeyChangeFeed {
	if !db.isPostgres() {
		return nil
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = minRetry
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(time.Second, opts.MinBackoff)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnChange == nil {
		opts.OnChange = func(authz.KeyChange) {}
	}
	if opts.OnResync == nil {
		opts.OnResync = func() {}
	}
	if opts.OnLost == nil {
		opts.OnLost = func(time.Time) {}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &KeyChangeFeed{db: db, opts: opts, self: "heartbeat:" + hex.EncodeToString(b[:])}
}

// Connected reports whether the feed is listening now.
func (f *KeyChangeFeed) Connected() bool { return f.connected.Load() }

// Resyncs counts the (re)connections, the first included.
func (f *KeyChangeFeed) Resyncs() int64 { return f.resyncs.Load() }

// LastHeard is when the feed last heard the database: it knows of every
// change committed before. Zero before it first listened.
func (f *KeyChangeFeed) LastHeard() time.Time {
	if n := f.heard.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

const (
	// minRetry spaces reconnection attempts however soon the database
	// answers.
	minRetry = 50 * time.Millisecond
	// probeEvery is how often a feed waiting to reconnect pings the
	// database, to try again as soon as it answers.
	probeEvery = 100 * time.Millisecond
	// confirmEvery is how often a new connection sends heartbeats until
	// one comes back.
	confirmEvery = 50 * time.Millisecond
)

// Run listens until ctx ends, reconnecting after any failure with jittered
// backoff capped at MaxBackoff, or as soon as the database answers again
// (it is pinged every 100ms). A lost feed is logged once, and so is its
// return.
func (f *KeyChangeFeed) Run(ctx context.Context) {
	backoff := time.Duration(0)
	reported := false // this outage was logged
	for ctx.Err() == nil {
		start := time.Now()
		wasUp := f.resyncs.Load()
		err := f.listen(ctx)
		up := f.resyncs.Load() != wasUp
		if up {
			reported = false
		}
		if f.connected.Swap(false) {
			f.opts.OnLost(f.LastHeard())
		}
		if ctx.Err() != nil {
			return
		}
		if up && time.Since(start) > time.Minute {
			backoff = 0
		}
		backoff = min(max(2*backoff, f.opts.MinBackoff), f.opts.MaxBackoff)
		wait := backoff/2 + mrand.N(backoff/2+1)
		if !reported {
			reported = true
			f.opts.Logger.Warn("key change feed lost; reconnecting", "err", err)
		} else {
			f.opts.Logger.Debug("key change feed: reconnection failed", "err", err, "retry_in", wait)
		}
		if !f.pause(ctx, wait) {
			return
		}
	}
}

// pause waits up to d before the next attempt, at least minRetry, cut
// short by the database answering a ping, tried every probeEvery: the feed
// is back within about that of the database. It reports whether ctx is
// still alive.
func (f *KeyChangeFeed) pause(ctx context.Context, d time.Duration) bool {
	if !sleep(ctx, minRetry) {
		return false
	}
	deadline := time.Now().Add(d - minRetry)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		if !sleep(ctx, min(left, probeEvery)) {
			return false
		}
		// A slow answer is still an answer: wait for it up to the cap.
		pctx, cancel := context.WithTimeout(ctx, max(f.opts.MaxBackoff, probeEvery))
		err := f.db.Ping(pctx)
		cancel()
		if err == nil {
			return true
		}
	}
}

// sleep waits d; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// listen holds one connection until it fails or ctx ends.
func (f *KeyChangeFeed) listen(ctx context.Context) error {
	ln := pgdriver.NewListener(f.db.bun)
	defer func() { _ = ln.Close() }()
	if err := ln.Listen(ctx, KeyChangeChannel); err != nil {
		return err
	}
	// LISTEN has been sent, not yet shown to be in force: a change
	// committed before the server runs it would go unheard. The first of
	// our own heartbeats to come back proves it is; only then is the cache
	// emptied and the feed trusted. Until then heartbeats go out every
	// confirmEvery, as the first may overtake the LISTEN.
	listening := false
	lastBeat := time.Now()
	lastSent := time.Time{}
	for {
		beat := f.opts.Heartbeat
		if !listening {
			beat = min(beat, confirmEvery)
		}
		if time.Since(lastSent) >= beat {
			// The payload carries when it was sent: once it is back, every
			// change committed before then has been heard.
			lastSent = time.Now()
			if err := pgdriver.Notify(ctx, f.db.bun, KeyChangeChannel, f.self+":"+strconv.FormatInt(lastSent.UnixNano(), 10)); err != nil {
				return err
			}
		}
		_, payload, err := ln.ReceiveTimeout(ctx, beat)
		var netErr net.Error
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && errors.As(err, &netErr) && netErr.Timeout():
			// Quiet; fine as long as our heartbeats still arrive.
		case err != nil:
			return err
		case strings.HasPrefix(payload, f.self+":"):
			lastBeat = time.Now()
			if sent, err := strconv.ParseInt(strings.TrimPrefix(payload, f.self+":"), 10, 64); err == nil && sent > f.heard.Load() {
				f.heard.Store(sent)
			}
			if !listening {
				listening = true
				// Whatever changed before now is unknown.
				f.opts.OnResync()
				f.resyncs.Add(1)
				f.connected.Store(true)
				f.opts.Logger.Info("key change feed listening", "channel", KeyChangeChannel)
			}
		case strings.HasPrefix(payload, "heartbeat:"):
			// Another instance's heartbeat.
		case listening: // before, the resync covers it
			f.dispatch(payload)
		}
		if time.Since(lastBeat) > 3*f.opts.Heartbeat {
			return errors.New("no heartbeat came back; the connection is presumed dead")
		}
	}
}

// dispatch turns a trigger payload into changes. A payload it cannot read
// may have named anything, so it counts as "everything changed".
func (f *KeyChangeFeed) dispatch(payload string) {
	var msg struct {
		IDs []string `json:"ids"`
		All bool     `json:"all"`
	}
	if err := json.Unmarshal([]byte(payload), &msg); err != nil || msg.All || len(msg.IDs) == 0 {
		f.opts.OnChange(authz.KeyChange{})
		return
	}
	for _, id := range msg.IDs {
		f.opts.OnChange(authz.KeyChange{KeyID: id})
	}
}
