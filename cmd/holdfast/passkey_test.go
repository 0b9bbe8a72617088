package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/api"
)

// TestPasskeyCLI: passkey list prints a table or JSON (an empty list is
// [] in JSON, not null), and remove names what is not there. Passkeys
// themselves are registered by a browser: internal/server's tests
// register them with a software authenticator and drive the client's
// list and remove over them.
func TestPasskeyCLI(t *testing.T) {
	url, password := remoteServer(t)
	t.Setenv("HOLDFAST_CONFIG", filepath.Join(t.TempDir(), "admin.json"))
	mustCLI(t, password+"\n", "login", url, "--user", "admin", "--password-stdin")

	if keys := decodeJSON[[]api.Passkey](t, mustCLI(t, "", "passkey", "list", "-o", "json")); keys == nil || len(keys) != 0 {
		t.Errorf("passkey list -o json = %#v, want []", keys)
	}
	if out := mustCLI(t, "", "passkey", "list"); !strings.Contains(out, "NAME") || !strings.Contains(out, "LAST USED") {
		t.Errorf("passkey list:\n%s", out)
	}
	_, stderr, err := cli(t, "", "passkey", "remove", "laptop")
	if err == nil || !strings.Contains(err.Error()+stderr, `no passkey named "laptop"`) {
		t.Errorf("passkey remove of a passkey not there: %v\n%s", err, stderr)
	}
}
