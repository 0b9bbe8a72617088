package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Notify sends payload to every process listening on channel of the
// PostgreSQL database db (LISTEN/NOTIFY), itself included. PostgreSQL
// delivers it when the statement commits, in commit order, at most 8000
// bytes.
func Notify(ctx context.Context, db *sql.DB, channel, payload string) error {
	_, err := db.ExecContext(ctx, `SELECT pg_notify(?, ?)`, channel, payload)
	return err
}

// Listen calls deliver with the payload of every notification on channel
// of the PostgreSQL database at p until ctx ends, on a connection of its
// own. A lost connection is made again (after 100 ms, then up to every
// 5 s): notifications sent meanwhile are lost, and lost is called with
// why, so that the caller can make up for them. listening is called each
// time it listens (again).
func Listen(ctx context.Context, p Place, channel string, deliver func(payload string), listening func(), lost func(error)) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := listen(ctx, p, channel, deliver, func() {
			wait = 100 * time.Millisecond
			listening()
		})
		if ctx.Err() != nil {
			return
		}
		lost(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func listen(ctx context.Context, p Place, channel string, deliver func(string), connected func()) error {
	cfg, err := pgx.ParseConfig(p.URL)
	if err != nil {
		return err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("listen for %s: %w", channel, plain(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen for %s: %w", channel, err)
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return ctx.Err()
			}
			return fmt.Errorf("listen for %s: %w", channel, err)
		}
		deliver(n.Payload)
	}
}
