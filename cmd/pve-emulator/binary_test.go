package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// binDir holds the commands the tests build, once per run of the tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pve-emulator-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type build struct {
	once sync.Once
	path string
	err  error
}

var builds sync.Map // command name -> *build

// command builds the module's command cmd/name (once) and answers the
// path of its binary. go test puts its own go first on PATH.
func command(t *testing.T, name string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(name, &build{})
	b := v.(*build)
	b.once.Do(func() {
		b.path = filepath.Join(binDir, name)
		out, err := exec.Command("go", "build", "-o", b.path, "github.com/holdfast/holdfast/cmd/"+name).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build cmd/%s: %w\n%s", name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// runCommand runs a built command and answers its standard output; a
// failure carries what it printed on standard error.
func runCommand(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := exec.Command(bin, args...)
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

// emulatorSymbols lists the symbols of a binary that belong to the
// emulator's package.
func emulatorSymbols(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("go", "tool", "nm", bin).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("go tool nm %s: %v\n%s", bin, err, exit.Stderr)
		}
		t.Fatalf("go tool nm %s: %v", bin, err)
	}
	var found []string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "pveemu") {
			found = append(found, strings.TrimSpace(line))
		}
	}
	return found
}

// TestHoldfastCarriesNoEmulator: the holdfast binary that operators run
// in production links no part of the emulator, which is this command's
// alone. The same look at this command's binary finds the emulator, so a
// holdfast that linked it again would be seen.
func TestHoldfastCarriesNoEmulator(t *testing.T) {
	if found := emulatorSymbols(t, command(t, "holdfast")); len(found) > 0 {
		t.Errorf("holdfast links the emulator: %d pveemu symbols, the first %q", len(found), found[0])
	}
	if found := emulatorSymbols(t, command(t, "pve-emulator")); len(found) == 0 {
		t.Error("go tool nm shows no pveemu symbol in pve-emulator either: the check above proves nothing")
	}
}
