package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/migrate"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// The test schema's versions: things get a colour at version 2, and red
// ones are named at version 3, which also adds the table tags.
var sqlAt = map[int]string{
	1: `CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`,
	2: `CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, name TEXT NOT NULL, colour TEXT NOT NULL DEFAULT '')`,
	3: `CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, name TEXT NOT NULL, colour TEXT NOT NULL DEFAULT '');
	    CREATE TABLE IF NOT EXISTS tags (thing INTEGER NOT NULL REFERENCES things (id) ON DELETE CASCADE, tag TEXT NOT NULL)`,
}

var steps = []migrate.Step{
	{What: "things have a colour", SQL: `ALTER TABLE things ADD COLUMN colour TEXT NOT NULL DEFAULT ''`},
	{What: "things named red are red", Run: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE things SET colour = 'red' WHERE name LIKE 'red%'`)
		return err
	}},
}

// schemaAt is the test schema as the binary of version v has it.
func schemaAt(v int) *migrate.Schema {
	return &migrate.Schema{Name: "test", SQL: sqlAt[v], First: 1, Steps: steps[:v-1], Tables: []string{"things", "tags"}}
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), sqldb.In("", path, "test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func run(t *testing.T, db *sql.DB, s *migrate.Schema) {
	t.Helper()
	if err := migrate.Run(context.Background(), db, s); err != nil {
		t.Fatal(err)
	}
}

func exec1(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func version(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow(`SELECT version FROM schema_versions WHERE name = 'test'`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// things lists the rows of things as "id name colour" (colour when the
// table has it).
func things(t *testing.T, db *sql.DB) string {
	t.Helper()
	var hasColour bool
	if err := db.QueryRow(`SELECT count(*) > 0 FROM pragma_table_info('things') WHERE name = 'colour'`).Scan(&hasColour); err != nil {
		t.Fatal(err)
	}
	q := `SELECT id, name, '' FROM things ORDER BY id`
	if hasColour {
		q = `SELECT id, name, colour FROM things ORDER BY id`
	}
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id int
		var name, colour string
		if err := rows.Scan(&id, &name, &colour); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d %s %s\n", id, name, colour)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// v1DB is a database the binary of version 1 wrote, with rows.
func v1DB(t *testing.T) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	db := openDB(t, path)
	run(t, db, schemaAt(1))
	exec1(t, db, `INSERT INTO things (id, name) VALUES (1, 'red ball'), (2, 'blue box')`)
	return path, db
}

// TestNewDatabaseAtLatest: an empty database is made at the latest
// version directly, without steps and without a copy.
func TestNewDatabaseAtLatest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := openDB(t, path)
	run(t, db, schemaAt(3))
	if v := version(t, db); v != 3 {
		t.Errorf("new database at version %d, want 3", v)
	}
	exec1(t, db, `INSERT INTO things (id, name, colour) VALUES (1, 'x', 'green')`)
	exec1(t, db, `INSERT INTO tags (thing, tag) VALUES (1, 't')`)
	if _, err := os.Stat(migrate.BackupPath(path, "test", 3)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a new database was copied before an upgrade it did not need: %v", err)
	}
	// Opening again is a no-op.
	run(t, db, schemaAt(3))
	if got := things(t, db); got != "1 x green\n" {
		t.Errorf("a second open changed the rows: %q", got)
	}
}

// TestUpgradeRunsStepsInOrder: a version 1 database is brought to version
// 3 by both steps, in order, keeping its rows; the copy made before
// holds the database as version 1 left it.
func TestUpgradeRunsStepsInOrder(t *testing.T) {
	path, db := v1DB(t)
	run(t, db, schemaAt(3))
	if v := version(t, db); v != 3 {
		t.Errorf("version %d after the upgrade, want 3", v)
	}
	if got, want := things(t, db), "1 red ball red\n2 blue box \n"; got != want {
		t.Errorf("rows after the upgrade:\n%s\nwant:\n%s", got, want)
	}
	exec1(t, db, `INSERT INTO tags (thing, tag) VALUES (1, 'new table made by the latest SQL')`)

	old := openDB(t, migrate.BackupPath(path, "test", 3))
	if v := version(t, old); v != 1 {
		t.Errorf("the copy is at version %d, want 1", v)
	}
	if got, want := things(t, old), "1 red ball \n2 blue box \n"; got != want {
		t.Errorf("rows of the copy:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(migrate.BackupPath(path, "test", 3)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the copy's mode: %v %v, want private (0600) like the database", fi.Mode(), err)
	}
}

// TestUnversionedAdopted: tables written before versioning, without a
// recorded version, are taken to be the first version and upgraded; Adopt
// runs on them once.
func TestUnversionedAdopted(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "state.db"))
	exec1(t, db, sqlAt[1])
	exec1(t, db, `INSERT INTO things (id, name) VALUES (1, 'red hat')`)
	s := schemaAt(2)
	adopted := 0
	s.Adopt = func(ctx context.Context, tx *sql.Tx) error {
		adopted++
		_, err := tx.ExecContext(ctx, `INSERT INTO things (id, name) VALUES (2, 'made by adopt')`)
		return err
	}
	run(t, db, s)
	run(t, db, s)
	if v := version(t, db); v != 2 {
		t.Errorf("version %d, want 2", v)
	}
	if adopted != 1 {
		t.Errorf("Adopt ran %d times, want once", adopted)
	}
	if got, want := things(t, db), "1 red hat \n2 made by adopt \n"; got != want {
		t.Errorf("rows:\n%s\nwant:\n%s", got, want)
	}
}

// TestFailingStepRollsBack: a step that fails leaves nothing of itself
// and the version the step before reached; the next open, with the step
// fixed, finishes the upgrade, and the copy from the first attempt — the
// state before any step — is kept.
func TestFailingStepRollsBack(t *testing.T) {
	path, db := v1DB(t)
	s := schemaAt(3)
	s.Steps = []migrate.Step{steps[0], {What: "a step that fails half way", Run: func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE things SET colour = 'half'`); err != nil {
			return err
		}
		return errors.New("disk on fire")
	}}}
	err := migrate.Run(context.Background(), db, s)
	if err == nil || !strings.Contains(err.Error(), "version 3 (a step that fails half way): disk on fire") {
		t.Fatalf("upgrade with a failing step: %v", err)
	}
	if v := version(t, db); v != 2 {
		t.Errorf("version %d after the failed step, want 2 (the last one reached)", v)
	}
	if got, want := things(t, db), "1 red ball \n2 blue box \n"; got != want {
		t.Errorf("rows after the failed step:\n%s\nwant:\n%s", got, want)
	}
	run(t, db, schemaAt(3))
	if got, want := things(t, db), "1 red ball red\n2 blue box \n"; got != want {
		t.Errorf("rows after the retry:\n%s\nwant:\n%s", got, want)
	}
	if v := version(t, openDB(t, migrate.BackupPath(path, "test", 3))); v != 1 {
		t.Errorf("the copy is at version %d, want 1: the retry replaced the copy from before the upgrade", v)
	}
}

// TestNewerRefused: a database of a newer binary is refused, with an
// error that names the file and both versions, and is left as it was.
func TestNewerRefused(t *testing.T) {
	path, db := v1DB(t)
	run(t, db, schemaAt(3))
	err := migrate.Run(context.Background(), db, schemaAt(2))
	var newer *migrate.NewerError
	if !errors.As(err, &newer) || !errors.Is(err, migrate.ErrNewer) {
		t.Fatalf("opening a version 3 database with version 2: %v, want a NewerError", err)
	}
	for _, want := range []string{path, "test schema version 3", "this Holdfast's 2", "docs/upgrades.md"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if v := version(t, db); v != 3 {
		t.Errorf("refusing changed the version to %d", v)
	}
}

// TestRebuildKeepsReferences: a step that rebuilds a table others refer
// to keeps the rows that refer to it, and foreign keys are on again after.
func TestRebuildKeepsReferences(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "state.db"))
	run(t, db, schemaAt(3))
	exec1(t, db, `INSERT INTO things (id, name) VALUES (1, 'a')`)
	exec1(t, db, `INSERT INTO tags (thing, tag) VALUES (1, 'kept')`)
	s := schemaAt(3)
	s.Steps = slices.Concat(steps, []migrate.Step{{What: "things get AUTOINCREMENT ids", Rebuild: true, SQL: `
		CREATE TABLE things_new (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, colour TEXT NOT NULL DEFAULT '');
		INSERT INTO things_new SELECT id, name, colour FROM things;
		DROP TABLE things;
		ALTER TABLE things_new RENAME TO things`}})
	run(t, db, s)
	var n, on int
	if err := db.QueryRow(`SELECT count(*) FROM tags WHERE thing = 1`).Scan(&n); err != nil || n != 1 {
		t.Errorf("tags of the rebuilt table: %d (%v), want 1", n, err)
	}
	if err := db.QueryRow(`PRAGMA foreign_keys`).Scan(&on); err != nil || on != 1 {
		t.Errorf("foreign_keys = %d (%v) after a rebuild", on, err)
	}
}

// TestBrokenReferencesRefused: a step that leaves a row referring to a
// missing one is rolled back.
func TestBrokenReferencesRefused(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "state.db"))
	run(t, db, schemaAt(3))
	exec1(t, db, `INSERT INTO things (id, name) VALUES (1, 'a')`)
	exec1(t, db, `INSERT INTO tags (thing, tag) VALUES (1, 't')`)
	s := schemaAt(3)
	s.Steps = slices.Concat(steps, []migrate.Step{{What: "loses things", Rebuild: true, SQL: `DELETE FROM things`}})
	if err := migrate.Run(context.Background(), db, s); err == nil || !strings.Contains(err.Error(), "refers to a missing row of things") {
		t.Fatalf("a step breaking references: %v", err)
	}
	if v := version(t, db); v != 3 {
		t.Errorf("version %d, want 3", v)
	}
}

// crashEnv names the database a child process upgrades and dies in.
const crashEnv = "HOLDFAST_MIGRATE_CRASH_DB"

// TestCrashMidStep: a process killed in the middle of a step leaves the
// database at the version before it, without the step's half-done
// writes; the next open finishes the upgrade.
func TestCrashMidStep(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashInStep(path)
		return
	}
	path, db := v1DB(t)
	db.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidStep$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("the child did not die in the step: %v\n%s", err, out)
	}
	db = openDB(t, path)
	if v := version(t, db); v != 2 {
		t.Errorf("version %d after a crash in step 3, want 2", v)
	}
	if got, want := things(t, db), "1 red ball \n2 blue box \n"; got != want {
		t.Errorf("rows after the crash:\n%s\nwant:\n%s", got, want)
	}
	run(t, db, schemaAt(3))
	if got, want := things(t, db), "1 red ball red\n2 blue box \n"; got != want {
		t.Errorf("rows after the next open:\n%s\nwant:\n%s", got, want)
	}
}

// crashInStep upgrades path and exits, as a kill would end it, after the
// last step has written but before it commits.
func crashInStep(path string) {
	db, err := sqldb.Open(context.Background(), sqldb.In("", path, "test"))
	if err != nil {
		os.Exit(1)
	}
	s := schemaAt(3)
	s.Steps = []migrate.Step{steps[0], {What: "dies", Run: func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE things SET colour = 'half'`); err != nil {
			return err
		}
		os.Exit(3)
		return nil
	}}}
	_ = migrate.Run(context.Background(), db, s)
	os.Exit(1)
}
