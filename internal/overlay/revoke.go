package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/slackhq/nebula/cert"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// Revoked is one blocklisted host certificate.
type Revoked struct {
	Fingerprint string    `json:"fingerprint"`
	Name        string    `json:"name"`
	NotAfter    time.Time `json:"not_after"` // after it, the certificate is refused anyway
	RevokedAt   time.Time `json:"revoked_at"`
}

// Revoke blocklists the host certificate in certPEM, which this CA signed.
// Revoking twice is harmless. The blocklist reaches members through their
// config (pki.blocklist), so a revocation takes effect where configs are
// delivered again.
func (ca *CA) Revoke(certPEM []byte, now time.Time) error {
	c, rest, err := cert.UnmarshalCertificateFromPEM(certPEM)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if len(rest) != 0 {
		return errors.New("revoke: more than one certificate given")
	}
	if !ca.signed(c) {
		return fmt.Errorf("revoke %s: not signed by this CA", c.Name())
	}
	fp, err := c.Fingerprint()
	if err != nil {
		return fmt.Errorf("revoke %s: %w", c.Name(), err)
	}
	return ca.updateBlocklist(now, func(list []Revoked) []Revoked {
		if slices.ContainsFunc(list, func(r Revoked) bool { return r.Fingerprint == fp }) {
			return list
		}
		return append(list, Revoked{Fingerprint: fp, Name: c.Name(), NotAfter: c.NotAfter(), RevokedAt: now.UTC().Truncate(time.Second)})
	})
}

// Revoked lists the blocklist, oldest revocation first.
func (ca *CA) Revoked() ([]Revoked, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.readBlocklist()
}

// Blocklist is the fingerprints a member's pki.blocklist must hold at
// now: every revoked certificate that has not expired yet (an expired one
// is refused without being listed), sorted so that configs render stably.
func (ca *CA) Blocklist(now time.Time) ([]string, error) {
	list, err := ca.Revoked()
	if err != nil {
		return nil, err
	}
	var fps []string
	for _, r := range list {
		if now.Before(r.NotAfter) {
			fps = append(fps, r.Fingerprint)
		}
	}
	slices.Sort(fps)
	return fps, nil
}

// IsRevoked reports whether the certificate with this fingerprint is on
// the blocklist.
func (ca *CA) IsRevoked(fingerprint string) (bool, error) {
	list, err := ca.Revoked()
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(list, func(r Revoked) bool { return r.Fingerprint == fingerprint }), nil
}

// updateBlocklist reads, changes and writes the blocklist under the CA
// directory's lock, so that two holdfast processes revoking at once both
// land. Entries whose certificates expired are dropped on the way.
func (ca *CA) updateBlocklist(now time.Time, change func([]Revoked) []Revoked) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	lock, err := os.OpenFile(filepath.Join(ca.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	list, err := ca.readBlocklist()
	if err != nil {
		return err
	}
	list = slices.DeleteFunc(list, func(r Revoked) bool { return !now.Before(r.NotAfter) })
	list = change(list)
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(ca.dir, blocklistFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("blocklist: %w", err)
	}
	return nil
}

func (ca *CA) readBlocklist() ([]Revoked, error) {
	path := filepath.Join(ca.dir, blocklistFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blocklist: %w", err)
	}
	var list []Revoked
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("blocklist %s: %w", path, err)
	}
	for _, r := range list {
		if len(r.Fingerprint) != 64 || strings.Trim(r.Fingerprint, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("blocklist %s: %q is not a certificate fingerprint", path, r.Fingerprint)
		}
	}
	return list, nil
}

// signed reports whether this CA's key signed c.
func (ca *CA) signed(c cert.Certificate) bool {
	return c.Issuer() == ca.fingerprint && c.CheckSignature(ca.cert.PublicKey())
}
