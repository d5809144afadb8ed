// Package migrations holds keygate's SQL schema, one folder per SQL dialect,
// embedded in the binary so a deployment needs no files beside it.
//
// Files follow bun/migrate's naming: <14-digit version>_<name>.tx.up.sql and
// .tx.down.sql. The ".tx" part makes bun run each file in one transaction, so
// a failed migration leaves no half-built schema behind (Postgres and SQLite
// both have transactional DDL). Every version exists for every dialect.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Postgres returns the migrations for PostgreSQL, rooted at the folder.
func Postgres() fs.FS { return sub("postgres") }

// SQLite returns the migrations for SQLite, rooted at the folder.
func SQLite() fs.FS { return sub("sqlite") }

// sub roots files at dir. fs.Sub fails only for an invalid path name, and
// dir is one of two constants, so a failure is a programming error.
func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic("migrations: " + err.Error())
	}
	return f
}
