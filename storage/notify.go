package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
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
	// Heartbeat is how often the feed proves its connection alive by
	// notifying itself; a connection silent for three heartbeats is
	// replaced. Default 2s.
	Heartbeat time.Duration
	Logger    *slog.Logger
}

// KeyChangeFeed listens on Postgres for key changes made by any instance.
// A dropped connection is replaced and, once listening again, OnResync
// runs, so a cache never outlives a change it could not hear.
type KeyChangeFeed struct {
	db        *DB
	opts      KeyChangeFeedOptions
	connected atomic.Bool
	resyncs   atomic.Int64
	self      string // marks this feed's heartbeats
}

// NewKeyChangeFeed returns a feed on a Postgres database; on SQLite there
// is only one instance and nothing to listen to, so it returns nil.
func NewKeyChangeFeed(db *DB, opts KeyChangeFeedOptions) *KeyChangeFeed {
	if !db.isPostgres() {
		return nil
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 2 * time.Second
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
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &KeyChangeFeed{db: db, opts: opts, self: "heartbeat:" + hex.EncodeToString(b[:])}
}

// Connected reports whether the feed is listening now.
func (f *KeyChangeFeed) Connected() bool { return f.connected.Load() }

// Resyncs counts the (re)connections, the first included.
func (f *KeyChangeFeed) Resyncs() int64 { return f.resyncs.Load() }

// Run listens until ctx ends, reconnecting with backoff after any failure.
func (f *KeyChangeFeed) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := f.listen(ctx)
		f.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		f.opts.Logger.Warn("key change feed lost; reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listen holds one connection until it fails or ctx ends.
func (f *KeyChangeFeed) listen(ctx context.Context) error {
	ln := pgdriver.NewListener(f.db.bun)
	defer func() { _ = ln.Close() }()
	if err := ln.Listen(ctx, KeyChangeChannel); err != nil {
		return err
	}
	// Listening from here on: whatever changed before is unknown.
	f.opts.OnResync()
	f.resyncs.Add(1)
	f.connected.Store(true)
	f.opts.Logger.Info("key change feed listening", "channel", KeyChangeChannel)

	var seq int
	lastBeat := time.Now()
	lastSent := time.Time{}
	for {
		if time.Since(lastSent) >= f.opts.Heartbeat {
			seq++
			if err := pgdriver.Notify(ctx, f.db.bun, KeyChangeChannel, f.self+":"+strconv.Itoa(seq)); err != nil {
				return err
			}
			lastSent = time.Now()
		}
		_, payload, err := ln.ReceiveTimeout(ctx, f.opts.Heartbeat)
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
		case strings.HasPrefix(payload, "heartbeat:"):
			// Another instance's heartbeat.
		default:
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
