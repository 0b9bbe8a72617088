package auth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testBox(t *testing.T) *Box {
	t.Helper()
	b, err := NewBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBoxRoundTrip(t *testing.T) {
	b := testBox(t)
	pt := []byte("totp seed 1234567890")
	ad := []byte("totp:user-1")
	ct, err := b.Seal(pt, ad)
	if err != nil {
		t.Fatal(err)
	}
	if ct[0] != 1 || len(ct) != 1+12+len(pt)+16 {
		t.Fatalf("layout: version %d, len %d", ct[0], len(ct))
	}
	if bytes.Contains(ct, pt) {
		t.Fatal("ciphertext contains plaintext")
	}
	got, err := b.Open(ct, ad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	ct2, _ := b.Seal(pt, ad)
	if bytes.Equal(ct, ct2) {
		t.Fatal("two seals equal; nonce not random")
	}
}

func TestBoxAssociatedDataBindsOwner(t *testing.T) {
	b := testBox(t)
	ct, _ := b.Seal([]byte("secret of key A"), []byte("apikey:hk_a"))
	// Copied into key B's row, it does not open.
	if _, err := b.Open(ct, []byte("apikey:hk_b")); !errors.Is(err, ErrOpen) {
		t.Fatalf("swapped row: %v", err)
	}
	if _, err := b.Open(ct, nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("no AD: %v", err)
	}
}

func TestBoxTamper(t *testing.T) {
	b := testBox(t)
	ad := []byte("apikey:hk_a")
	ct, _ := b.Seal([]byte("secret"), ad)
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		if _, err := b.Open(bad, ad); !errors.Is(err, ErrOpen) {
			t.Fatalf("flipped byte %d: %v", i, err)
		}
	}
	for _, bad := range [][]byte{nil, ct[:1], ct[:28], ct[:len(ct)-1], append(bytes.Clone(ct), 0)} {
		if _, err := b.Open(bad, ad); !errors.Is(err, ErrOpen) {
			t.Fatalf("length %d: %v", len(bad), err)
		}
	}
	other, _ := NewBox(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Open(ct, ad); !errors.Is(err, ErrOpen) {
		t.Fatalf("other key: %v", err)
	}
	if _, err := NewBox(make([]byte, 16)); err == nil {
		t.Fatal("16-byte master key accepted")
	}
}

func TestLoadOrCreateMasterKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	k1, err := LoadOrCreateMasterKey(path)
	if err != nil || len(k1) != 32 {
		t.Fatalf("create: %d bytes, %v", len(k1), err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	k2, err := LoadOrCreateMasterKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("reload: %v", err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".masterkey-*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

func TestLoadOrCreateMasterKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := LoadOrCreateMasterKey(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent creators got different keys")
		}
	}
}

func TestLoadMasterKeyRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := bytes.Repeat([]byte{1}, 32)
	cases := map[string]string{
		write("readable", key, 0o644):                     "chmod 600",
		write("group", key, 0o640):                        "chmod 600",
		write("short", key[:31], 0o600):                   "want exactly 32",
		write("long", append(bytes.Clone(key), 0), 0o600): "want exactly 32",
	}
	good := write("good", key, 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	cases[link] = "symlink"
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	cases[filepath.Join(dir, "adir")] = "not a regular file"
	if os.Getuid() == 0 {
		p := write("foreign", key, 0o600)
		if err := os.Chown(p, 12345, 12345); err != nil {
			t.Fatal(err)
		}
		cases[p] = "owned by uid 12345"
	} else {
		t.Log("not root: ownership check not exercised")
	}
	for p, want := range cases {
		k, err := LoadOrCreateMasterKey(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: key %d bytes, err %v; want error containing %q", filepath.Base(p), len(k), err, want)
		}
	}
	if k, err := LoadOrCreateMasterKey(good); err != nil || !bytes.Equal(k, key) {
		t.Fatalf("good key: %v", err)
	}
}
