// Package sqldbtest gives tests their databases on the backend CI runs
// them against: SQLite files by default; with HOLDFAST_TEST_DATABASE set
// to a PostgreSQL server (postgres://USER@HOST:PORT/postgres, a role
// that may create databases), a new database of its own on that server
// for each test, dropped when the test ends. The same test suites so run
// on both backends (.ci/run runs the control plane's twice).
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/sqldb"
)

// Env names the PostgreSQL server tests make their databases on.
const Env = "HOLDFAST_TEST_DATABASE"

var (
	mu   sync.Mutex
	made = map[string]string{} // key -> URL of the database made for it
)

// Postgres says whether the tests run against PostgreSQL.
func Postgres() bool { return server() != "" }

func server() string { return strings.TrimSpace(os.Getenv(Env)) }

// URL is the database a test keeps what it keys by key (a state
// directory) in: "" on SQLite, where the files under key are the
// database; on PostgreSQL a database made for the first test to ask for
// key, and the same one for every later ask — a test that reopens a
// directory finds what it left there.
func URL(t testing.TB, key string) string {
	t.Helper()
	admin := server()
	if admin == "" {
		return ""
	}
	mu.Lock()
	defer mu.Unlock()
	if u, ok := made[key]; ok {
		return u
	}
	u := create(t, admin)
	made[key] = u
	t.Cleanup(func() {
		mu.Lock()
		delete(made, key)
		mu.Unlock()
	})
	return u
}

// Place is where a test keeps the database name that SQLite keeps in
// file: file itself, or on PostgreSQL the database for file's directory.
func Place(t testing.TB, file, name string) sqldb.Place {
	t.Helper()
	return sqldb.In(URL(t, dirOf(file)), file, name)
}

// Open opens the database Place names, closed when the test ends.
func Open(t testing.TB, file, name string) *sql.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), Place(t, file, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func dirOf(file string) string {
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		return file[:i]
	}
	return "."
}

// create makes a new, empty database on the server at admin, dropped
// when t ends, and returns its URL.
func create(t testing.TB, admin string) string {
	t.Helper()
	ctx := context.Background()
	name := "holdfast_test_" + strings.ToLower(rand.Text()[:16])
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("%s=%s: %v", Env, sqldb.Redact(admin), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("make a database for the test: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop the test's database: %v", err)
			return
		}
		defer c.Close(ctx)
		// FORCE: connections a failed test left open must not keep it.
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop the test's database: %v", err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Describe says which backend the tests run on, for logs.
func Describe() string {
	if s := server(); s != "" {
		return fmt.Sprintf("PostgreSQL at %s", sqldb.Redact(s))
	}
	return "SQLite"
}
