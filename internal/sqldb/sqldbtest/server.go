package sqldbtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/testenv"
)

// Server is a PostgreSQL server of a test's own (Debian's postgresql
// package), which the test may stop and start again: a database lost
// and back while Holdfast serves.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cred *syscall.Credential
	// URL is its database holdfast, owned by the role holdfast.
	URL string
}

// StartServer makes and starts a server in a new directory, stopped
// when the test ends. Without PostgreSQL's programs the test is skipped,
// or fails where skips must (testenv; CI installs them).
func StartServer(t testing.TB) *Server {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		testenv.Unavailable(t, "needs PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)")
	}
	sort.Strings(bins)
	s := &Server{t: t, bin: filepath.Dir(bins[len(bins)-1]), dir: t.TempDir()}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: as the package's user.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		// The test's temporary directories are private to root.
		for d := s.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.run("initdb", "-D", s.data(), "-U", "holdfast", "--auth=trust", "-E", "UTF8", "--no-sync")
	s.Start()
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(s.data(), "postmaster.pid")); err == nil {
			s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
		}
	})
	admin := fmt.Sprintf("postgres://holdfast@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	conn, err := pgx.Connect(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE holdfast"); err != nil {
		t.Fatal(err)
	}
	s.URL = fmt.Sprintf("postgres://holdfast@127.0.0.1:%d/holdfast?sslmode=disable", s.port)
	return s
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// Start starts the server and returns once it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60", "start", "-o",
		fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off", s.port, s.dir))
}

// Stop stops the server as an operator's fast shutdown does: sessions
// are ended and the server is gone until Start.
func (s *Server) Stop() {
	s.t.Helper()
	s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "-t", "60", "stop")
}

func (s *Server) run(prog string, args ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("%s: %v\n%s", prog, err, out)
	}
}
