package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/holdfast/holdfast/internal/frontdoor"
)

// benchRoute is one route the bench has the front door serve.
type benchRoute struct {
	name, proto, host, listen string
	backends, failover        []string
	cert, key                 string // PEM, https only
}

// startFrontDoor is Holdfast's front door serving routes, with its default
// health-check timing, logging its warnings to log; its state (certificates:
// none here) lives in dir.
// All this program knows of internal/frontdoor's API is here.
func startFrontDoor(ctx context.Context, dir string, log io.Writer, routes []benchRoute) (*frontDoor, error) {
	// The collector as a process running a front door sets it, unless
	// GOGC says otherwise.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(frontdoor.GCPercent)
	}
	s := frontdoor.New(frontdoor.Options{
		StateDir: dir,
		Log:      slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	fd := &frontDoor{s: s}
	if err := fd.set(ctx, routes); err != nil {
		_ = s.Close()
		return nil, err
	}
	return fd, nil
}

type frontDoor struct{ s *frontdoor.Server }

// set swaps the front door's routes for routes.
func (fd *frontDoor) set(ctx context.Context, routes []benchRoute) error {
	var cfg frontdoor.Config
	for _, r := range routes {
		fr := frontdoor.Route{
			Name: r.name, Proto: r.proto, Host: r.host, Listen: r.listen,
			Backends: r.backends, Failover: r.failover,
		}
		if r.cert != "" {
			fr.Certificate = &frontdoor.Certificate{Cert: r.cert, Key: r.key}
		}
		cfg.Routes = append(cfg.Routes, fr)
	}
	return fd.s.Set(ctx, cfg)
}

func (fd *frontDoor) Close() error { return fd.s.Close() }
