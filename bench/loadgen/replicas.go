package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// fleet is the servers under load: one, or replicas sharing a database.
type fleet []*server

// startFleet starts n servers of spec on database (n = 1 and "" is one
// server on SQLite), each with its own state directory under state. The
// first makes the cloud's secrets; each other gets a copy of its master
// key before it starts, as docs/ha.md says a replica must.
func startFleet(ctx context.Context, bin, spec, database, state string, n int, log io.Writer) (fleet, error) {
	var f fleet
	for i := range n {
		dir := filepath.Join(state, "replica"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return f, err
		}
		if i > 0 {
			if err := copyMasterKey(filepath.Join(state, "replica0"), dir); err != nil {
				return f, err
			}
		}
		s, err := startServer(ctx, serveArgs{bin: bin, spec: spec, stateDir: dir, database: database, first: i == 0})
		if err != nil {
			return f, fmt.Errorf("replica %d: %w", i, err)
		}
		f = append(f, s)
		fmt.Fprintf(log, "replica %d serving at %s\n", i, s.url)
	}
	return f, nil
}

// copyMasterKey copies <from>/<cloud>/control/master.key to the same
// place under to.
func copyMasterKey(from, to string) error {
	keys, err := filepath.Glob(filepath.Join(from, "*", "control", "master.key"))
	if err != nil {
		return err
	}
	if len(keys) != 1 {
		return fmt.Errorf("master key under %s: found %d, want 1", from, len(keys))
	}
	rel, err := filepath.Rel(from, keys[0])
	if err != nil {
		return err
	}
	b, err := os.ReadFile(keys[0])
	if err != nil {
		return err
	}
	dst := filepath.Join(to, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

func (f fleet) urls() []string {
	u := make([]string, len(f))
	for i, s := range f {
		u[i] = s.url
	}
	return u
}

func (f fleet) fingerprints() []string {
	fp := make([]string, len(f))
	for i, s := range f {
		fp[i] = s.fingerprint
	}
	return fp
}

func (f fleet) waitReady(ctx context.Context, hc *http.Client, within time.Duration) error {
	for i, s := range f {
		if err := s.waitReady(ctx, hc, within); err != nil {
			return fmt.Errorf("replica %d: %w", i, err)
		}
	}
	return nil
}

// memory is the largest of each figure over the servers: the target is
// each server's.
func (f fleet) memory() (memory, error) {
	var m memory
	for _, s := range f {
		sm, err := s.memory()
		if err != nil {
			return m, err
		}
		m = memory{RSS: max(m.RSS, sm.RSS), Anon: max(m.Anon, sm.Anon), File: max(m.File, sm.File), HWM: max(m.HWM, sm.HWM)}
	}
	return m, nil
}

// goMemory is the Go runtime's view of the server using the most.
func (f fleet) goMemory(ctx context.Context, hc *http.Client) (goMemory, error) {
	var m goMemory
	for _, s := range f {
		sm, err := s.goMemory(ctx, hc)
		if err != nil {
			return m, err
		}
		if sm.Runtime > m.Runtime {
			m = sm
		}
	}
	return m, nil
}

// cpuTime is the CPU time all the servers used.
func (f fleet) cpuTime() (time.Duration, error) {
	var sum time.Duration
	for _, s := range f {
		t, err := s.cpuTime()
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// stop sends each SIGTERM in turn: the worst exit code, the longest exit.
func (f fleet) stop(within time.Duration) (code int, took time.Duration, err error) {
	for i, s := range f {
		c, t, err := s.stop(within)
		if err != nil {
			return c, t, fmt.Errorf("replica %d: %w", i, err)
		}
		if c != 0 && code == 0 {
			code = c
		}
		took = max(took, t)
	}
	return code, took, nil
}

func (f fleet) kill() {
	for _, s := range f {
		s.kill()
	}
}

// log is what the servers logged, each line after its replica's number
// when there are several.
func (f fleet) log() []string {
	var lines []string
	for i, s := range f {
		logged := strings.TrimSuffix(s.stderr.String(), "\n")
		if logged == "" {
			continue
		}
		for l := range strings.SplitSeq(logged, "\n") {
			if len(f) > 1 {
				l = fmt.Sprintf("replica %d: %s", i, l)
			}
			lines = append(lines, l)
		}
	}
	return lines
}
