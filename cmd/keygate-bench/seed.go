package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"
)

// pgDatabase is a database the harness created for one run and drops at
// its end, so runs never see each other's keys.
type pgDatabase struct {
	adminURL string
	name     string
	url      string // the new database, for keygate
}

// openPG opens a bun handle on a Postgres URL.
func openPG(dsn string) *bun.DB {
	return bun.NewDB(sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn))), pgdialect.New())
}

// createDatabase creates a fresh, uniquely named database next to the one
// adminURL names.
func createDatabase(ctx context.Context, adminURL string) (*pgDatabase, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, errors.New("the Postgres URL does not parse")
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, err
	}
	d := &pgDatabase{adminURL: adminURL, name: "keygate_bench_" + hex.EncodeToString(suffix[:])}
	u.Path = "/" + d.name
	d.url = u.String()

	admin := openPG(adminURL)
	defer func() { _ = admin.Close() }()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+d.name); err != nil {
		return nil, fmt.Errorf("create database %s (is Postgres running? set -postgres-url or KEYGATE_BENCH_POSTGRES_URL, or -postgres=false): %w", d.name, err)
	}
	return d, nil
}

// drop removes the database, ending any session still connected to it.
func (d *pgDatabase) drop(ctx context.Context) error {
	admin := openPG(d.adminURL)
	defer func() { _ = admin.Close() }()
	if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	return nil
}

// Shape of the seeded data: keys spread over seedTenants tenants of
// seedUsers users each.
const (
	seedTenants  = 100
	seedUsers    = 10
	seedChunk    = 50_000 // rows per COPY, each its own transaction
	seedParallel = 2      // COPY streams at once, one per core
)

// seedStats says what seeding cost and made.
type seedStats struct {
	keys       int
	scopeBytes int           // size of one seeded key's scope document
	copyTime   time.Duration // tenants, users and every key
	vacuumTime time.Duration // VACUUM ANALYZE of the three tables
	tableSize  int64         // api_keys with its indexes, bytes
}

// seedToken is the token of seeded key i. Tokens derive from i, so the
// harness can use any seeded key later without keeping a million tokens in
// memory; they have keygate's format and checksum like any other.
func seedToken(i int) string {
	sum := sha256.Sum256([]byte("keygate-bench token " + strconv.Itoa(i)))
	token, err := authz.NewToken(bytes.NewReader(sum[:]))
	if err != nil {
		panic(err) // the reader holds the 32 bytes NewToken reads
	}
	return token
}

// seedScope is the scope of seeded key n: entries ids in each list, the
// last one a glob, and the first flow its own, so no two keys hold the same
// scope (a cache cannot share one scope between them).
func seedScope(entries, n int) authz.Scope {
	list := func(prefix string) []string {
		ids := make([]string, 0, entries)
		for i := range entries - 1 {
			ids = append(ids, fmt.Sprintf("%s-%d", prefix, i+1))
		}
		return append(ids, prefix+"-x-*")
	}
	s := authz.Scope{AgentIDs: list("agent"), FlowIDs: list("flow"), MCPToolIDs: list("tool__call"), VectorStoreIDs: list("store")}
	s.FlowIDs[0] = fmt.Sprintf("flow-of-key-%d", n)
	return s
}

// seedCheck is a request every seeded key is allowed: an exact id of its
// agent list.
var seedCheck = check{resource{Type: "agent", ID: "agent-1"}, "read"}

// seedKeys fills a migrated keygate database with n keys: tenants and users
// first, then the keys through COPY in chunks of seedChunk rows, seedParallel
// streams at once, then VACUUM ANALYZE so the planner and the visibility
// map know the table as a long-running database would.
func seedKeys(ctx context.Context, dsn string, n, scopeEntries int, progress io.Writer) (*seedStats, error) {
	db := openPG(dsn)
	defer func() { _ = db.Close() }()
	scope, err := json.Marshal(seedScope(scopeEntries, 0))
	if err != nil {
		return nil, err
	}
	st := &seedStats{keys: n, scopeBytes: len(scope)}

	start := time.Now()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO tenants (id, created_at)
			SELECT 'seed-t' || t, now() FROM generate_series(0, %d) t`, seedTenants-1),
		fmt.Sprintf(`INSERT INTO users (tenant_id, id, created_at)
			SELECT 'seed-t' || t, 'u' || u, now() FROM generate_series(0, %d) t, generate_series(0, %d) u`, seedTenants-1, seedUsers-1),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("seed tenants and users: %w", err)
		}
	}
	chunks := make(chan int)
	errs := make(chan error, seedParallel)
	var wg sync.WaitGroup
	for range seedParallel {
		wg.Go(func() {
			for from := range chunks {
				if err := copyChunk(ctx, db, from, min(from+seedChunk, n), scopeEntries); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	lastReport := time.Now()
feed:
	for from := 0; from < n; from += seedChunk {
		select {
		case chunks <- from:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
		if time.Since(lastReport) > 10*time.Second {
			fmt.Fprintf(progress, "  seeded about %d keys in %s\n", from, time.Since(start).Round(time.Second))
			lastReport = time.Now()
		}
	}
	close(chunks)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs // nil when the channel is empty
	}
	if err != nil {
		return nil, err
	}
	st.copyTime = time.Since(start)

	start = time.Now()
	if _, err := db.ExecContext(ctx, "VACUUM ANALYZE tenants, users, api_keys"); err != nil {
		return nil, fmt.Errorf("vacuum: %w", err)
	}
	st.vacuumTime = time.Since(start)
	if err := db.QueryRowContext(ctx, "SELECT pg_total_relation_size('api_keys')").Scan(&st.tableSize); err != nil {
		return nil, fmt.Errorf("read table size: %w", err)
	}
	return st, nil
}

// copyChunk writes keys [from, to) with one COPY, in one transaction. Rows
// are generated into a pipe as Postgres reads them.
func copyChunk(ctx context.Context, db *bun.DB, from, to, scopeEntries int) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(writeRows(pw, from, to, scopeEntries)) }()
	_, err = pgdriver.CopyFrom(ctx, conn, pr, `COPY api_keys (id, tenant_id, user_id, name, key_hash, start,
		permission_scope, enabled, expires_at, last_used_at, created_at, updated_at) FROM STDIN`)
	_ = pr.CloseWithError(io.ErrClosedPipe) // stops the writer if COPY failed early
	if err != nil {
		return fmt.Errorf("copy keys %d to %d: %w", from, to, err)
	}
	return nil
}

// writeRows writes keys [from, to) in COPY's text format. No field holds a
// tab, a newline or a backslash, so nothing needs escaping.
func writeRows(w io.Writer, from, to, scopeEntries int) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stamp := created.Format(time.RFC3339)
	for i := from; i < to; i++ {
		token := seedToken(i)
		idSeed := sha256.Sum256([]byte("keygate-bench id " + strconv.Itoa(i)))
		id, err := authz.NewID(created.Add(time.Duration(i)*time.Millisecond), bytes.NewReader(idSeed[:]))
		if err != nil {
			return err
		}
		scope, err := json.Marshal(seedScope(scopeEntries, i))
		if err != nil {
			return err
		}
		tenant, user := i%seedTenants, (i/seedTenants)%seedUsers
		row := []string{id, "seed-t" + strconv.Itoa(tenant), "u" + strconv.Itoa(user), "seed-key-" + strconv.Itoa(i),
			authz.HashToken(token), authz.TokenStart(token), string(scope), "t", `\N`, `\N`, stamp, stamp}
		if _, err := bw.WriteString(strings.Join(row, "\t") + "\n"); err != nil {
			return err
		}
	}
	return bw.Flush()
}
