package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/sqldb"
	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
	"github.com/holdfast/holdfast/internal/testenv"
)

// replicaProc is a `holdfast serve` process of the HA tests.
type replicaProc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	url  string
	out  *testenv.Buffer
}

// haCluster is PostgreSQL, a spec, one state directory (the local
// engine's instances are this host's) and the replicas serving it.
type haCluster struct {
	t     *testing.T
	bin   string
	spec  string
	state string
	pg    *sqldbtest.Server
	token string
}

func newHACluster(t *testing.T) *haCluster {
	testenv.NeedRoot(t, "the local engine makes namespaces, bridges, nftables rules and containers")
	c := &haCluster{t: t, pg: sqldbtest.StartServer(t), state: t.TempDir()}
	c.bin = filepath.Join(t.TempDir(), "holdfast")
	if out, err := exec.Command("go", "build", "-o", c.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The example under a name of this process: the local engine's
	// namespaces carry the cloud's name.
	c.spec = filepath.Join(t.TempDir(), "spec")
	if err := os.CopyFS(c.spec, os.DirFS("../../examples/tasmanian")); err != nil {
		t.Fatal(err)
	}
	cloud := fmt.Sprintf("ha%d", os.Getpid()%100000)
	yaml := filepath.Join(c.spec, "cloud.yaml")
	b, err := os.ReadFile(yaml)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(yaml, bytes.Replace(b, []byte("name: tasmanian"), []byte("name: "+cloud), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out, err := exec.Command(c.bin, "destroy", c.spec, "--yes", "--state-dir", c.state, "--database", c.pg.URL).CombinedOutput()
		if err != nil {
			t.Errorf("destroy: %v\n%s", err, out)
		}
	})
	return c
}

// start starts a replica and waits until it serves.
func (c *haCluster) start(name string) *replicaProc {
	t := c.t
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &replicaProc{t: t, name: name, url: "http://" + addr, out: &testenv.Buffer{}}
	r.cmd = exec.Command(c.bin, "serve", c.spec, "--database", c.pg.URL, "--state-dir", c.state, "--listen", addr, "--no-tls", "--resync", "0")
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		_ = r.cmd.Wait()
		if t.Failed() {
			t.Logf("replica %s said:\n%s", r.name, r.out.String())
		}
	})
	r.waitFor(3*time.Minute, "to serve", func() bool {
		resp, err := http.Get(r.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// waitFor polls cond until it holds, failing after d.
func (r *replicaProc) waitFor(d time.Duration, what string, cond func() bool) time.Duration {
	r.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			r.t.Fatalf("replica %s: waited %s %s", r.name, d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling another process: there is nothing to wait on
	}
	return time.Since(start)
}

// role is what the replica's /readyz says it is ("" when it does not
// answer).
func (r *replicaProc) role() string {
	resp, err := http.Get(r.url + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var h api.Health
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return ""
	}
	return h.Role
}

// call sends a JSON request with the operator's token and decodes the
// answer, which must have status want.
func (c *haCluster) call(r *replicaProc, want int, method, path string, body, out any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s through %s: %v", method, path, r.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s through %s: %d, want %d: %s", method, path, r.name, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatal(err)
		}
	}
}

// wait follows an operation to its end through r; it must succeed.
func (c *haCluster) wait(r *replicaProc, op api.Operation) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !op.Done() {
		if time.Now().After(deadline) {
			c.t.Fatalf("operation %s (%s) did not finish: %+v", op.ID, op.Target, op)
		}
		c.call(r, http.StatusOK, "GET", "/v1/operations/"+op.ID+"/wait?timeout=30s", nil, &op)
	}
	if op.Status != api.OpSucceeded {
		c.t.Fatalf("operation %s (%s) failed: %+v", op.ID, op.Target, op.Error)
	}
}

var passwordLine = regexp.MustCompile(`(?m)^\s*password\s+(\S+)`)

// TestFailoverAfterKill: two replicas on one PostgreSQL; the leader is
// killed (kill -9) while 20 instance creations are pending; the other
// becomes the leader within 10 s and carries every one out exactly once:
// twenty instances, none twice, none lost, the quota's count exact, the
// cloud's state what exists, and the audit chain verifies. Then the new
// leader is stopped (SIGSTOP) in the middle of a pass, past its lease:
// the first replica, back, takes over and finishes the work, and the
// stopped one, resumed, applies nothing.
func TestFailoverAfterKill(t *testing.T) {
	c := newHACluster(t)
	a := c.start("a")
	var m []string
	a.waitFor(time.Minute, "to print the first start's password", func() bool {
		m = passwordLine.FindStringSubmatch(a.out.String())
		return m != nil
	})
	a.waitFor(3*time.Minute, "to lead and converge", func() bool { return a.role() == "leader" })
	// The second replica has the first's master key: they share the
	// state directory here.
	b := c.start("b")
	if r := b.role(); r != "follower" {
		t.Fatalf("the second replica is %q, want follower", r)
	}

	var tok api.Tokens
	c.call(b, http.StatusOK, "POST", "/v1/auth/login", api.LoginRequest{User: "admin", Password: m[1]}, &tok)
	c.token = tok.AccessToken
	c.call(b, http.StatusCreated, "POST", "/v1/tenants", api.TenantCreate{Name: "acme", Quota: &api.Quota{Instances: 25, VCPUs: 25, MemoryMiB: 25 * 256, DiskGiB: 25 * 8, Networks: 1}}, nil)
	var op api.Operation
	c.call(b, http.StatusAccepted, "POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net"}, &op)
	c.wait(b, op)

	const n = 20
	ops := c.create(b, "vm", n)
	// Kill the leader once its pass has taken the work up.
	a.waitFor(time.Minute, "to take the creations up", c.running(b, ops[0]))
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	took := b.waitFor(10*time.Second, "to lead after the leader was killed", func() bool { return b.role() == "leader" })
	t.Logf("the follower led %s after the leader was killed", took.Round(time.Millisecond))
	for _, o := range ops {
		c.wait(b, o)
	}
	c.checkInstances(b, n)

	// The stale leader: b stopped in the middle of a pass, past its lease.
	a = c.start("a2")
	more := c.create(a, "late", 3)
	b.waitFor(time.Minute, "to take the late creations up", c.running(a, more[0]))
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	a.waitFor(20*time.Second, "to lead while the leader is stopped", func() bool { return a.role() == "leader" })
	for _, o := range more {
		c.wait(a, o)
	}
	resumed := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	b.waitFor(20*time.Second, "to follow once resumed", func() bool { return b.role() == "follower" })
	c.checkInstances(a, n+len(more))
	// Every step writes its intent before it acts: none since b resumed
	// means b applied nothing.
	db, err := sqldb.Open(context.Background(), sqldb.In(c.pg.URL, "", "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var after int
	if err := db.QueryRow(`SELECT count(*) FROM intents WHERE started > ?`, resumed.UTC().Format(time.RFC3339Nano)).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != 0 {
		t.Errorf("%d steps were begun after the stale leader resumed, want none", after)
	}
	for _, line := range strings.Split(b.out.String(), "\n") {
		if strings.Contains(line, "leader") {
			t.Logf("b: %s", line)
		}
	}
	out, err := exec.Command(c.bin, "audit", "verify", c.spec, "--database", c.pg.URL, "--state-dir", c.state).CombinedOutput()
	if err != nil {
		t.Errorf("audit verify: %v\n%s", err, out)
	}
}

// create asks r for n instances of acme's network, named prefix00...
func (c *haCluster) create(r *replicaProc, prefix string, n int) []api.Operation {
	c.t.Helper()
	ops := make([]api.Operation, n)
	for i := range ops {
		c.call(r, http.StatusAccepted, "POST", "/v1/tenants/acme/instances",
			api.InstanceCreate{Name: fmt.Sprintf("%s%02d", prefix, i), Flavor: "burstable", Template: "debian-12", Network: "net"}, &ops[i])
	}
	return ops
}

// running says, asked through r, whether op is being carried out.
func (c *haCluster) running(r *replicaProc, op api.Operation) func() bool {
	return func() bool {
		var o api.Operation
		c.call(r, http.StatusOK, "GET", "/v1/operations/"+op.ID, nil, &o)
		return o.Status == api.OpRunning
	}
}

// checkInstances checks, through r, that the tenant has exactly n
// instances, all running, each once (distinct addresses), that its
// usage counts n, and that the cloud's state is what exists.
func (c *haCluster) checkInstances(r *replicaProc, n int) {
	t := c.t
	t.Helper()
	var page api.Page[api.Instance]
	c.call(r, http.StatusOK, "GET", "/v1/tenants/acme/instances?limit=100", nil, &page)
	ips := map[string]string{}
	for _, in := range page.Items {
		if in.Status != api.StatusRunning {
			t.Errorf("instance %s is %s", in.Name, in.Status)
		}
		if other, ok := ips[in.IP]; ok {
			t.Errorf("instances %s and %s share %s", in.Name, other, in.IP)
		}
		ips[in.IP] = in.Name
	}
	if len(page.Items) != n {
		t.Errorf("%d instances, want %d", len(page.Items), n)
	}
	var tn api.Tenant
	c.call(r, http.StatusOK, "GET", "/v1/tenants/acme", nil, &tn)
	if tn.Usage.Instances != n {
		t.Errorf("usage counts %d instances, want %d", tn.Usage.Instances, n)
	}
	status := exec.Command(c.bin, "status", c.spec, "--database", c.pg.URL, "--state-dir", c.state, "-o", "json")
	var stderr bytes.Buffer
	status.Stderr = &stderr // the spec's warnings
	out, err := status.Output()
	if err != nil {
		t.Errorf("status: %v\n%s%s", err, out, stderr.Bytes())
	}
	var st []struct{ ID, State string }
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	made := 0
	for _, s := range st {
		if strings.HasPrefix(s.ID, "instance/") && strings.Contains(s.ID, "/acme--") {
			made++
		}
	}
	if made != n {
		t.Errorf("the cloud has %d of acme's instances, want %d", made, n)
	}
}

// TestBadDatabase: a --database that is not PostgreSQL's, or that
// nothing serves, stops serve at once with an error that names it.
func TestBadDatabase(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	for _, tc := range []struct{ url, want string }{
		{"mysql://hf:s3cret@db/holdfast", "--database: \"mysql://hf:xxxxx@db/holdfast\" is not a PostgreSQL URL"},
		{"postgres://hf:s3cret@" + addr + "/holdfast?sslmode=disable", "PostgreSQL at " + addr + ", database \"holdfast\" as \"hf\""},
	} {
		_, stderr, err := run(t, "serve", "../../examples/tasmanian", "--state-dir", t.TempDir(), "--database", tc.url, "--listen", "127.0.0.1:0")
		msg := stderr
		if err != nil {
			msg += err.Error()
		}
		if err == nil || !strings.Contains(msg, tc.want) || strings.Contains(msg, "s3cret") {
			t.Errorf("serve --database %s: %v\n%s\nwant an error saying %q, without the password", tc.url, err, stderr, tc.want)
		}
	}
}
