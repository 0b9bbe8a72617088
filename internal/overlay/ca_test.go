package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/holdfast/holdfast/internal/auth"
)

func newBox(t testing.TB) *auth.Box {
	t.Helper()
	key, err := auth.LoadOrCreateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	box, err := auth.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return box
}

func newCA(t testing.TB, opts CAOptions) *CA {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test overlay CA"
	}
	ca, err := Create(filepath.Join(t.TempDir(), "overlay"), newBox(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestCARoundTripKeepsTheKeySealed(t *testing.T) {
	box := newBox(t)
	dir := filepath.Join(t.TempDir(), "cloud", "overlay")
	ca, created, err := LoadOrCreate(dir, box, CAOptions{Name: "arvandor overlay CA"})
	if err != nil || !created {
		t.Fatalf("LoadOrCreate = created %v, %v; want a new CA", created, err)
	}

	again, created, err := LoadOrCreate(dir, box, CAOptions{Name: "ignored"})
	if err != nil || created {
		t.Fatalf("second LoadOrCreate = created %v, %v; want the CA loaded", created, err)
	}
	if again.Fingerprint() != ca.Fingerprint() || again.Cert().Name() != "arvandor overlay CA" {
		t.Fatalf("reloaded CA %s %q, want %s", again.Fingerprint(), again.Cert().Name(), ca.Fingerprint())
	}
	// The reloaded key signs: a certificate it issues verifies against
	// the CA as first created.
	h, err := again.Issue(Member{Name: "db", IP: netip.MustParsePrefix("10.10.10.2/24")}, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := cert.NewCAPool()
	if err := pool.AddCA(ca.Cert()); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.VerifyCertificate(time.Now(), h.Cert); err != nil {
		t.Fatalf("certificate from the reloaded CA: %v", err)
	}

	// At rest the key is neither in PEM nor raw.
	sealed, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	raw := ca.key.Expose()
	pemKey := cert.MarshalSigningPrivateKeyToPEM(cert.Curve_CURVE25519, raw)
	for _, leak := range [][]byte{pemKey, raw, raw[:32], []byte("PRIVATE KEY")} {
		if bytes.Contains(sealed, leak) {
			t.Fatalf("%s holds the CA key in the clear", caKeyFile)
		}
	}
	for _, f := range []string{caCertFile, caKeyFile} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if bytes.Contains(b, pemKey) {
			t.Fatalf("%s holds the CA key's PEM", f)
		}
	}

	// Files and directory are for the owner only.
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, caCertFile): 0o600, filepath.Join(dir, caKeyFile): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}

	// Another master key does not open it, and the error shows no key.
	_, err = Load(dir, newBox(t))
	if !errors.Is(err, auth.ErrOpen) {
		t.Fatalf("Load under another master key = %v, want auth.ErrOpen", err)
	}
	if strings.Contains(err.Error(), "BEGIN") {
		t.Fatalf("error shows key material: %v", err)
	}

	// Printing the CA shows no key either.
	for _, s := range []string{fmt.Sprintf("%v", ca), fmt.Sprintf("%+v", ca), fmt.Sprintf("%#v", ca)} {
		if bytes.Contains([]byte(s), pemKey) || strings.Contains(s, strings.Trim(fmt.Sprintf("%d", raw[:8]), "[]")) {
			t.Fatalf("printing the CA shows its key: %s", s)
		}
	}
}

func TestLoadOfMissingCAIsNotExist(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nothing"), newBox(t))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing CA = %v, want fs.ErrNotExist", err)
	}
}

func TestCAKeyDoesNotOpenBesideAnotherCertificate(t *testing.T) {
	box := newBox(t)
	a, err := Create(filepath.Join(t.TempDir(), "a"), box, CAOptions{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(filepath.Join(t.TempDir(), "b"), box, CAOptions{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	// b's sealed key beside a's certificate: same master key, wrong CA.
	key, _ := os.ReadFile(filepath.Join(b.Dir(), caKeyFile))
	if err := os.WriteFile(filepath.Join(a.Dir(), caKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(a.Dir(), box); !errors.Is(err, auth.ErrOpen) {
		t.Fatalf("Load with another CA's key = %v, want auth.ErrOpen", err)
	}
}

func TestConcurrentCreatorsShareOneCA(t *testing.T) {
	box := newBox(t)
	dir := filepath.Join(t.TempDir(), "overlay")
	const n = 8
	fps := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ca, _, err := LoadOrCreate(dir, box, CAOptions{Name: "race"})
			errs[i] = err
			if err == nil {
				fps[i] = ca.Fingerprint()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("creator %d: %v", i, errs[i])
		}
		if fps[i] != fps[0] {
			t.Fatalf("creator %d got CA %s, creator 0 got %s", i, fps[i], fps[0])
		}
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".overlay-*"))
	if len(left) != 0 {
		t.Fatalf("temporary directories left behind: %v", left)
	}
}

func TestCAConstraintsAreNebulas(t *testing.T) {
	ca := newCA(t, CAOptions{
		Networks: []netip.Prefix{netip.MustParsePrefix("10.10.10.0/24")},
		Groups:   []string{"admin", "infra"},
	})
	if _, err := ca.Issue(Member{Name: "ok", IP: netip.MustParsePrefix("10.10.10.9/24"), Groups: []string{"infra"}}, IssueOptions{}); err != nil {
		t.Fatalf("a member inside the constraints: %v", err)
	}
	if _, err := ca.Issue(Member{Name: "out", IP: netip.MustParsePrefix("10.10.11.9/24")}, IssueOptions{}); err == nil {
		t.Fatal("issued a certificate outside the CA's networks")
	}
	if _, err := ca.Issue(Member{Name: "games", IP: netip.MustParsePrefix("10.10.10.8/24"), Groups: []string{"games"}}, IssueOptions{}); err == nil {
		t.Fatal("issued a certificate with a group the CA does not allow")
	}
}
