package mesh_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/holdfast/holdfast/internal/overlay/mesh"
)

// A member of a test mesh is this test binary, re-executed inside the
// member's network namespace (as the agent runs inside its instance): it
// runs mesh.Start with the configuration file it is given, serves an echo
// port on its overlay address, and answers the parent on stdin/stdout:
//
//	health          → one line of mesh.Health as JSON
//	reload PATH     → "ok" or "error: …"
//
// It stops Nebula and exits when stdin closes, so a dying parent takes its
// children with it.
const (
	envChildConfig = "HOLDFAST_MESH_CHILD_CONFIG" // the Nebula configuration file
	envChildServe  = "HOLDFAST_MESH_CHILD_SERVE"  // the echo port's address, overlay IP:port
)

func runChild() error {
	cfg, err := os.ReadFile(os.Getenv(envChildConfig))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	node, err := mesh.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer node.Stop()
	ln, err := net.Listen("tcp", os.Getenv(envChildServe))
	if err != nil {
		return err
	}
	defer func() { _ = ln.Close() }()
	go serveEcho(ln)

	out := bufio.NewWriter(os.Stdout)
	reply := func(s string) error {
		if _, err := out.WriteString(s + "\n"); err != nil {
			return err
		}
		return out.Flush()
	}
	if err := reply("ready"); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "health":
			b, err := json.Marshal(node.Health())
			if err != nil {
				return err
			}
			err = reply(string(b))
			if err != nil {
				return err
			}
		case "reload":
			b, err := os.ReadFile(arg)
			if err == nil {
				err = node.Reload(b)
			}
			msg := "ok"
			if err != nil {
				msg = "error: " + err.Error()
			}
			if err := reply(msg); err != nil {
				return err
			}
		default:
			return fmt.Errorf("child: unknown command %q", cmd)
		}
	}
	return in.Err()
}

// serveEcho echoes what each connection sends, until the listener closes.
func serveEcho(ln net.Listener) {
	serve(ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// serve runs handle on each connection ln accepts, until it closes.
func serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		go func() {
			defer func() { _ = c.Close() }()
			handle(c)
		}()
	}
}
