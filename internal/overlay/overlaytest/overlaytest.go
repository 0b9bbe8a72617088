// Package overlaytest gives tests a cloud's overlay CA on a fresh master
// key, as an apply would create it.
package overlaytest

import (
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/overlay"
)

// NewCA creates a CA named name, with its master key, in t's temporary
// directories.
func NewCA(t testing.TB, name string) *overlay.CA {
	t.Helper()
	key, err := auth.LoadOrCreateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	box, err := auth.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := overlay.Create(filepath.Join(t.TempDir(), "overlay"), box, overlay.CAOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
