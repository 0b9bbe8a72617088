package sqldb_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/sqldb"
	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

// TestTxIsExact: transactions that read, decide and write — a quota
// check — stay exact under concurrency on both backends: on PostgreSQL
// the ones that ran into each other are run again.
func TestTxIsExact(t *testing.T) {
	t.Logf("backend: %s", sqldbtest.Describe())
	db := sqldbtest.Open(t, filepath.Join(t.TempDir(), "control.db"), "control")
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, sqldb.DialectOf(db).DDL(`CREATE TABLE things (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL)`)); err != nil {
		t.Fatal(err)
	}
	const limit, tries = 10, 40
	var wg sync.WaitGroup
	took := make(chan bool, tries)
	for range tries {
		wg.Go(func() {
			var ok bool
			err := sqldb.Tx(ctx, db, func(tx *sql.Tx) error {
				ok = false
				var n int
				if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM things WHERE owner = ?`, "acme").Scan(&n); err != nil {
					return err
				}
				if n >= limit {
					return nil
				}
				var id int64
				if err := tx.QueryRowContext(ctx, `INSERT INTO things (owner) VALUES (?) RETURNING id`, "acme").Scan(&id); err != nil {
					return err
				}
				ok = id > 0
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			took <- ok
		})
	}
	wg.Wait()
	close(took)
	granted := 0
	for ok := range took {
		if ok {
			granted++
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM things`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != limit || granted != limit {
		t.Errorf("%d rows, %d granted; want exactly %d", n, granted, limit)
	}
}
