package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/server"
	"github.com/holdfast/holdfast/internal/testenv"
)

// TestReadmeWalkthrough is the README's "Serve a tenant", command by
// command, against a control plane that really converges the cloud on the
// local engine: the operator logs in with the printed password, makes a
// tenant and a tenant admin; she enrolls TOTP, makes an API key and with
// it a network and two instances that run; one answers the other's ping,
// the operator's zones get no answer; the audit log verifies.
func TestReadmeWalkthrough(t *testing.T) {
	testenv.NeedRoot(t, "the local engine makes namespaces, nftables rules and containers")
	state := t.TempDir()
	// Named for this process: the local engine's namespaces carry the
	// cloud's name, and another run of the suite on this machine must not
	// meet them.
	cloud := fmt.Sprintf("readme%d", os.Getpid()%100000)
	t.Setenv("HOLDFAST_STATE_DIR", state)
	t.Setenv("HOLDFAST_CONFIG", filepath.Join(t.TempDir(), "client.json"))
	s, err := server.New(server.Config{SpecPath: "../../examples/tasmanian", StateDir: state, Rename: cloud, Realize: true, Resync: -1})
	if err != nil {
		t.Fatal(err)
	}
	password := string(s.Bootstrap.Password.Expose())
	ctx, stop := context.WithCancel(context.Background())
	listening := make(chan server.Listening, 1)
	served := make(chan error, 1)
	go func() { served <- s.Run(ctx, "127.0.0.1:0", server.TLS{}, func(l server.Listening) { listening <- l }) }()
	var url string
	select {
	case l := <-listening:
		url = l.URL
	case err := <-served:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("graceful stop: %v", err)
		}
		c, _, err := deploy.Open("../../examples/tasmanian", deploy.Options{StateDir: state, Rename: cloud})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		p, err := c.DestroyPlan(context.Background())
		if err == nil {
			_, err = c.Apply(context.Background(), p)
		}
		if err != nil {
			t.Errorf("destroy: %v", err)
		}
	})

	// The operator, with the printed one-time password, then a new one.
	out := mustCLI(t, password+"\n", "login", url, "--user", "admin", "--password-stdin")
	if !strings.Contains(out, "Trusting the local server's certificate") {
		t.Errorf("login did not trust the local certificate:\n%s", out)
	}
	mustCLI(t, password+"\nthe-operators-new-password\n", "user", "passwd", "--password-stdin")
	mustCLI(t, "", "tenant", "create", "acme")
	mustCLI(t, "alice-password-123\n", "user", "create", "alice", "--tenant", "acme", "--role", "tenant-admin", "--password-stdin")

	// Alice, with a second factor and an API key.
	mustCLI(t, "alice-password-123\n", "login", url, "--user", "alice", "--password-stdin")
	en := decodeJSON[api.TOTPEnrollment](t, mustCLI(t, "", "totp", "enroll", "-o", "json"))
	secret, err := auth.DecodeTOTPSecret(en.Secret)
	if err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "", "totp", "confirm", auth.TOTPCode(secret, time.Now()))
	if _, stderr, err := cli(t, "alice-password-123\n", "login", url, "--user", "alice", "--password-stdin"); err == nil {
		t.Fatalf("login without a code after enrolling TOTP:\n%s", stderr)
	}
	// The code just used is spent; the next step's is good.
	mustCLI(t, "alice-password-123\n", "login", url, "--user", "alice", "--password-stdin", "--totp", auth.TOTPCode(secret, time.Now().Add(30*time.Second)))
	keyFile := filepath.Join(t.TempDir(), "alice.key")
	mustCLI(t, "", "apikey", "create", "laptop", "--save", keyFile)
	out = mustCLI(t, "", "login", url, "--api-key-secret-file", keyFile)
	if !strings.Contains(out, "with API key") {
		t.Fatalf("login with the key:\n%s", out)
	}

	// With the key: a network, a key, two instances that really run.
	mustCLI(t, "", "network", "create", "net")
	pub := filepath.Join(t.TempDir(), "id_ed25519.pub")
	if err := os.WriteFile(pub, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcAaqV7mN9lq0a3uV4YwO2b6S1yQ3kQzH3n8pV0cB9d alice@laptop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "", "sshkey", "add", "laptop", pub)
	mustCLI(t, "", "instance", "create", "web", "--flavor", "standard", "--template", "debian-12", "--network", "net", "--ssh-key", "laptop")
	mustCLI(t, "", "instance", "create", "db", "--flavor", "burstable", "--template", "debian-12", "--network", "net")
	list := decodeJSON[[]api.Instance](t, mustCLI(t, "", "instance", "list", "-o", "json"))
	ip := map[string]string{}
	for _, in := range list {
		if in.Status != api.StatusRunning {
			t.Errorf("instance %s is %s", in.Name, in.Status)
		}
		ip[in.Name] = in.IP
	}
	if len(list) != 2 || ip["web"] == "" {
		t.Fatalf("instances %+v", list)
	}

	// From its zone web answers; from the operator's service zone, not.
	out = mustCLI(t, "", "ping", "acme--db", ip["web"], "--cloud", cloud)
	if !strings.Contains(out, "3 sent, 3 received") {
		t.Errorf("ping from db:\n%s", out)
	}
	out, _, err = cli(t, "", "ping", "panel", ip["web"], "-c", "1", "--cloud", cloud)
	if !errors.Is(err, errReported) || !strings.Contains(out, "1 sent, 0 received") {
		t.Errorf("ping from the operator's panel: %v\n%s", err, out)
	}
	// The console is a shell in the instance, named as the cloud names it.
	if out = mustCLI(t, "hostname\nexit\n", "instance", "console", "web"); !strings.Contains(out, "acme--web\r\n") {
		t.Errorf("the console of web showed:\n%q", out)
	}
	// exec runs in the instance, through its engine, and passes the exit
	// status on.
	mustCLI(t, "", "exec", "acme--db", "--cloud", cloud, "--", "true")
	if _, _, err = cli(t, "", "exec", "acme--db", "--cloud", cloud, "--", "sh", "-c", "exit 3"); !errors.As(err, new(exitCode)) || err.Error() != "exit status 3" {
		t.Errorf("exec of a command that exits 3: %v", err)
	}

	mustCLI(t, "", "instance", "stop", "web")
	mustCLI(t, "", "instance", "start", "web")
	mustCLI(t, "", "instance", "delete", "db")
	if list = decodeJSON[[]api.Instance](t, mustCLI(t, "", "instance", "list", "-o", "json")); len(list) != 1 || list[0].Status != api.StatusRunning {
		t.Errorf("after stop, start and delete: %+v", list)
	}
	out = mustCLI(t, "", "audit", "verify", "--cloud", cloud, "--state-dir", state)
	if !strings.Contains(out, ": OK") {
		t.Errorf("audit verify:\n%s", out)
	}
}
