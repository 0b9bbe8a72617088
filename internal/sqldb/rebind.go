package sqldb

import (
	"context"
	"database/sql/driver"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/stdlib"
)

var driverBadConn = driver.ErrBadConn

// connector hands out pgx's connections with the queries rebound: the
// packages write ? placeholders, which PostgreSQL spells $1, $2, ...
type connector struct{ inner driver.Connector }

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{dc.(*stdlib.Conn)}, nil
}

func (c *connector) Driver() driver.Driver { return &pgDriver{c.inner.Driver()} }

// pgDriver is the driver of a database Open made on PostgreSQL; it is
// how DialectOf tells the backends apart.
type pgDriver struct{ inner driver.Driver }

func (d *pgDriver) Open(name string) (driver.Conn, error) { return d.inner.Open(name) }

// conn is one of pgx's connections, every query rebound on its way.
// It has the optional interfaces database/sql looks for on pgx's.
type conn struct{ c *stdlib.Conn }

var (
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
)

func (c *conn) Prepare(query string) (driver.Stmt, error) { return c.c.Prepare(Rebind(query)) }
func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.c.PrepareContext(ctx, Rebind(query))
}
func (c *conn) Close() error { return c.c.Close() }

//nolint:staticcheck // driver.Conn requires Begin; database/sql calls BeginTx
func (c *conn) Begin() (driver.Tx, error) { return c.c.Begin() }
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.c.BeginTx(ctx, opts)
}
func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.c.ExecContext(ctx, Rebind(query), args)
}
func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.c.QueryContext(ctx, Rebind(query), args)
}
func (c *conn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

// CheckNamedValue passes a bool as the 0 or 1 SQLite stores: the schema
// files' flags are INTEGER columns on both backends.
func (c *conn) CheckNamedValue(v *driver.NamedValue) error {
	if b, ok := v.Value.(bool); ok {
		v.Value = int64(0)
		if b {
			v.Value = int64(1)
		}
		return nil
	}
	return c.c.CheckNamedValue(v)
}

func (c *conn) ResetSession(ctx context.Context) error { return c.c.ResetSession(ctx) }

// Rebind spells the ? placeholders of query as PostgreSQL's $1, $2, ...
// in order, leaving alone a ? inside a string literal, a quoted
// identifier or a comment.
func Rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			// A literal or an identifier runs to its closing quote; a
			// doubled quote inside it is an escaped one, which the loop
			// reads as the end and the start of another.
			end := strings.IndexByte(query[i+1:], c)
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+2])
			i += end + 1
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+1])
			i += end
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			end := strings.Index(query[i+2:], "*/")
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+4])
			i += end + 3
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
