package main

import (
	"context"
	"log/slog"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
)

// startKeyChangeFeed keeps the cache true to changes other instances make:
// on Postgres it listens for them until ctx ends; on SQLite, the only
// instance makes every change itself, so there is nothing to hear.
func startKeyChangeFeed(ctx context.Context, db *storage.DB, cache *authz.KeyCache, logger *slog.Logger) {
	feed := storage.NewKeyChangeFeed(db, storage.KeyChangeFeedOptions{
		OnChange: cache.Invalidate,
		OnResync: cache.Purge,
		Logger:   logger,
	})
	if feed != nil {
		go feed.Run(ctx)
	}
}

// readiness answers /readyz: the database must answer. A change feed that is
// reconnecting does not make an instance unready: cached keys then live at
// most their TTL, and the cache is emptied once the feed is back.
func readiness(db *storage.DB) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return authz.Errorf(authz.EUNAVAILABLE, "the database does not answer")
		}
		return nil
	}
}
