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
	for name, run := range map[string]func(context.Context, *sql.DB, func(*sql.Tx) error) error{
		"Tx": sqldb.Tx,
		"TxLocked": func(ctx context.Context, db *sql.DB, f func(*sql.Tx) error) error {
			return sqldb.TxLocked(ctx, db, 7, f)
		},
	} {
		t.Run(name, func(t *testing.T) { testExact(t, run) })
	}
}

func testExact(t *testing.T, run func(context.Context, *sql.DB, func(*sql.Tx) error) error) {
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
			err := run(ctx, db, func(tx *sql.Tx) error {
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

// TestStoppedHolderLetsGo: a replica stopped in the middle of a
// transaction (SIGSTOP) does not hold its lock for ever: PostgreSQL ends
// its idle session (idle_in_transaction_session_timeout, 15 s by default,
// 1 s here) and the others go on.
func TestStoppedHolderLetsGo(t *testing.T) {
	if !sqldbtest.Postgres() {
		t.Skip("PostgreSQL's sessions: set " + sqldbtest.Env + " (CI does)")
	}
	url := sqldbtest.URL(t, t.TempDir()) + "&idle_in_transaction_session_timeout=1000"
	db, err := sqldb.Open(context.Background(), sqldb.In(url, "", "control"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	held, resume := make(chan struct{}), make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		stopped <- sqldb.Serialized(ctx, db, 42, func(tx *sql.Tx) error {
			close(held)
			<-resume // stopped, holding the lock
			_, err := tx.ExecContext(ctx, `SELECT 1`)
			return err
		})
	}()
	<-held
	if err := sqldb.Serialized(ctx, db, 42, func(*sql.Tx) error { return nil }); err != nil {
		t.Errorf("the others stay blocked behind a stopped holder: %v", err)
	}
	close(resume)
	if err := <-stopped; err == nil {
		t.Error("the stopped holder's transaction committed after its session was ended")
	}
}
