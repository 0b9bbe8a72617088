package mesh

import (
	"context"
	"log/slog"
)

// discard is a logger that writes nothing.
var discard = slog.New(slog.DiscardHandler)

// quiet returns the logger Nebula gets. Nebula logs every handshake, tunnel
// and reload at info level; inside an agent that is noise next to the
// agent's own info lines, so Nebula's info becomes debug, and its warnings
// and errors stay what they are.
func quiet(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discard
	}
	return slog.New(quietHandler{l.Handler()})
}

type quietHandler struct{ h slog.Handler }

func demote(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, demote(l))
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return q.h.Handle(ctx, r)
}

func (q quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{q.h.WithAttrs(as)}
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{q.h.WithGroup(name)}
}
