// Package migratetest is what the upgrade tests of every database share:
// the -update-fixtures flag, copying a committed fixture, and comparing
// every row of every table before and after an upgrade.
//
// A fixture is an SQLite file written by a release's schema, committed
// under a package's testdata/ as <name>-v<version>.sqlite. The package's
// TestFixture writes the one of its current version with
//
//	go test ./internal/<pkg> -run TestFixture -update-fixtures
//
// and otherwise opens a copy of each committed one with the current code
// and checks that nothing was lost. A fixture is written while its
// version is the latest, before the step that follows it is added, and is
// then kept as it is: it is the record of what that version wrote
// (docs/upgrades.md).
package migratetest

import (
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Update says to write the fixtures instead of testing them.
var Update = flag.Bool("update-fixtures", false, "write the database fixtures under testdata/ with the current code")

// Copy copies the committed fixture at path to a new temporary directory
// and returns the copy's path, so that a test never changes a fixture.
func Copy(t testing.TB, path string) string {
	t.Helper()
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Save writes the database at src, made by a generator, to the fixture
// path dst as one self-contained file. With unversioned, the schema
// versions are removed first: the releases before versioning recorded
// none, and a fixture of them must not either. src's database must be
// closed.
func Save(t testing.TB, src, dst string, unversioned bool) {
	t.Helper()
	db := Open(t, src)
	if unversioned {
		if _, err := db.Exec(`DROP TABLE IF EXISTS schema_versions`); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	// VACUUM INTO writes one file without a write-ahead log beside it,
	// and leaves no pages of dropped rows in it.
	if _, err := db.Exec(`VACUUM INTO ?`, dst); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o644); err != nil { // committed: readable
		t.Fatal(err)
	}
	t.Logf("wrote %s", dst)
}

// Open opens the SQLite file at path, without migrating it.
func Open(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// Fixtures lists a package's committed fixtures of name, oldest first:
// testdata/<name>-v<version>.sqlite.
func Fixtures(t testing.TB, name string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", name+"-v*.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no fixture testdata/%s-v*.sqlite: write one with -update-fixtures", name)
	}
	slices.Sort(paths)
	return paths
}

// Tables is every row of every table of a database, each row as the text
// of its columns by name, one "column=value" a line.
type Tables map[string][]string

// Dump reads every row of every table of db but SQLite's own and
// schema_versions.
func Dump(t testing.TB, db *sql.DB) Tables {
	t.Helper()
	names := query(t, db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'schema_versions' ORDER BY name`)
	out := Tables{}
	for _, n := range names {
		out[n[0]] = rows(t, db, n[0])
	}
	return out
}

// Kept fails the test for every table of before that is missing after,
// and every row of it that has no row after with the same value in each
// of its columns: an upgrade may add tables, columns and rows, never lose
// or change one.
func Kept(t testing.TB, before, after Tables) {
	t.Helper()
	for table, rows := range before {
		got, ok := after[table]
		if !ok {
			t.Errorf("table %s is gone after the upgrade", table)
			continue
		}
		used := make([]bool, len(got))
	row:
		for _, row := range rows {
			want := strings.Split(row, "\n")
			for i, g := range got {
				if !used[i] && containsAll(strings.Split(g, "\n"), want) {
					used[i] = true
					continue row
				}
			}
			t.Errorf("table %s: row not kept by the upgrade:\n  %s", table, strings.ReplaceAll(row, "\n", "\n  "))
		}
	}
}

func containsAll(cells, want []string) bool {
	for _, w := range want {
		if !slices.Contains(cells, w) {
			return false
		}
	}
	return true
}

// Empty fails the test for every table of d that has no rows: a fixture
// should show every table with data in it.
func Empty(t testing.TB, d Tables) {
	t.Helper()
	for table, rows := range d {
		if len(rows) == 0 {
			t.Errorf("the fixture has no rows in %s", table)
		}
	}
}

func rows(t testing.TB, db *sql.DB, table string) []string {
	t.Helper()
	rs, err := db.Query(fmt.Sprintf(`SELECT * FROM %q`, table))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		cells := make([]string, len(cols))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = fmt.Sprintf("x'%x'", b)
			}
			cells[i] = fmt.Sprintf("%s=%v", cols[i], v)
		}
		out = append(out, strings.Join(cells, "\n"))
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func query(t testing.TB, db *sql.DB, q string) [][]string {
	t.Helper()
	rs, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out [][]string
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, []string{s})
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
