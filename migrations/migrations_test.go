package migrations_test

import (
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/migrations"
)

// fileName is bun/migrate's pattern, narrowed to the transactional files this
// package uses.
var fileName = regexp.MustCompile(`^\d{14}_[0-9a-z_\-]+\.tx\.(up|down)\.sql$`)

func TestDialectsHaveTheSameMigrations(t *testing.T) {
	t.Parallel()
	list := func(fsys fs.FS) []string {
		t.Helper()
		names, err := fs.Glob(fsys, "*")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !fileName.MatchString(n) {
				t.Errorf("%s: name does not match %s", n, fileName)
			}
			b, err := fs.ReadFile(fsys, n)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(b)) == "" {
				t.Errorf("%s is empty", n)
			}
		}
		return names
	}
	pg, lite := list(migrations.Postgres()), list(migrations.SQLite())
	if len(pg) == 0 {
		t.Fatal("no postgres migrations")
	}
	if !slices.Equal(pg, lite) {
		t.Errorf("postgres has %v, sqlite has %v", pg, lite)
	}
	for _, n := range pg {
		if strings.HasSuffix(n, ".up.sql") {
			down := strings.TrimSuffix(n, ".up.sql") + ".down.sql"
			if !slices.Contains(pg, down) {
				t.Errorf("%s has no %s", n, down)
			}
		}
	}
}
