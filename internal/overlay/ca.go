package overlay

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/holdfast/holdfast/internal/auth"
)

// Files of the CA directory (see the package comment).
const (
	caCertFile    = "ca.crt"
	caKeyFile     = "ca.key.sealed"
	blocklistFile = "blocklist.json"
	lockFile      = "lock"
)

// DefaultCAValidity is how long a new CA is valid. Long, because
// renewing the CA means handing every member a new CA certificate, which
// Holdfast does not do yet; host certificates are short-lived instead.
const DefaultCAValidity = 10 * 365 * 24 * time.Hour

// clockSkew backdates NotBefore, so that a peer whose clock runs a little
// behind does not refuse a certificate issued a moment ago.
const clockSkew = 5 * time.Minute

// Dir is the overlay CA's directory in a cloud's state directory.
func Dir(stateDir, cloud string) string { return filepath.Join(stateDir, cloud, "overlay") }

// MasterKeyPath is the cloud's master key: the control plane's
// (internal/server keeps it at <state>/<cloud>/control/master.key), so one
// key seals every secret of a cloud and `holdfast serve` can open the CA.
func MasterKeyPath(stateDir, cloud string) string {
	return filepath.Join(stateDir, cloud, "control", "master.key")
}

// CAOptions describe a new CA. Networks and Groups, when given, constrain
// what the CA can sign: Nebula refuses a host certificate whose address is
// outside every network or that carries a group not listed.
type CAOptions struct {
	Name     string
	Validity time.Duration // zero: DefaultCAValidity
	Networks []netip.Prefix
	Groups   []string
	// Version is the certificate format, cert.Version1 (zero value too:
	// IPv4 only, understood by every Nebula including Debian's 1.6) or
	// cert.Version2.
	Version cert.Version
	Now     time.Time // zero: time.Now()
}

// CA is a cloud's Nebula certificate authority. Its signing key stays in
// memory as an auth.Secret, so printing a CA never shows it. Safe for
// concurrent use.
type CA struct {
	dir         string
	cert        cert.Certificate
	certPEM     []byte
	fingerprint string
	key         auth.Secret // ed25519 private key, 64 bytes

	mu sync.Mutex // the blocklist file, within this process; lockFile across processes
}

// Cert is the CA certificate.
func (ca *CA) Cert() cert.Certificate { return ca.cert }

// CertPEM is the CA certificate in PEM, as members' pki.ca takes it.
func (ca *CA) CertPEM() []byte { return slices.Clone(ca.certPEM) }

// Fingerprint is the CA certificate's fingerprint (hex SHA-256).
func (ca *CA) Fingerprint() string { return ca.fingerprint }

// Dir is the CA's directory.
func (ca *CA) Dir() string { return ca.dir }

// keyAD binds the sealed key to its certificate: a sealed key copied
// beside another CA's certificate does not open.
func keyAD(fingerprint string) []byte { return []byte("holdfast overlay ca key " + fingerprint) }

// LoadOrCreate loads the CA in dir, or creates it with opts if dir does
// not exist. created says which. Two processes creating at once end with
// the same CA: the first rename wins and the other loads it.
func LoadOrCreate(dir string, box *auth.Box, opts CAOptions) (ca *CA, created bool, err error) {
	ca, err = Load(dir, box)
	if !errors.Is(err, fs.ErrNotExist) {
		return ca, false, err
	}
	ca, err = Create(dir, box, opts)
	if errors.Is(err, fs.ErrExist) {
		ca, err = Load(dir, box)
		return ca, false, err
	}
	return ca, err == nil, err
}

// Create makes a new CA in dir, which must not exist (else the error
// wraps fs.ErrExist). The files are written into a temporary directory
// beside it and renamed into place, so dir appears complete or not at all.
func Create(dir string, box *auth.Box, opts CAOptions) (*CA, error) {
	if opts.Name == "" {
		return nil, errors.New("overlay CA: a name is required")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultCAValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("overlay CA: validity %s is negative", validity)
	}
	version := opts.Version
	if version == cert.VersionPre1 {
		version = cert.Version1
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("overlay CA key: %w", err)
	}
	defer clear(priv)
	tbs := &cert.TBSCertificate{
		Version:   version,
		Name:      opts.Name,
		Networks:  opts.Networks,
		Groups:    opts.Groups,
		IsCA:      true,
		NotBefore: now.Add(-clockSkew).Truncate(time.Second),
		NotAfter:  now.Add(validity).Truncate(time.Second),
		PublicKey: pub,
		Curve:     cert.Curve_CURVE25519,
	}
	c, err := tbs.Sign(nil, cert.Curve_CURVE25519, priv)
	if err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	certPEM, err := c.MarshalPEM()
	if err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	fp, err := c.Fingerprint()
	if err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	sealed, err := box.Seal(priv, keyAD(fp))
	if err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}

	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("overlay CA %s: %w", dir, fs.ErrExist)
	}
	tmp, err := os.MkdirTemp(parent, ".overlay-*") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after the rename; cleans up on failure
	if err := writeFileSync(filepath.Join(tmp, caCertFile), certPEM); err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	if err := writeFileSync(filepath.Join(tmp, caKeyFile), sealed); err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	if err := syncDir(tmp); err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Renaming onto a directory that exists (and, holding a CA, is not
		// empty) fails: someone else created the CA first.
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			return nil, fmt.Errorf("overlay CA %s: %w", dir, fs.ErrExist)
		}
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	return &CA{dir: dir, cert: c, certPEM: certPEM, fingerprint: fp, key: auth.NewSecret(priv)}, nil
}

// Load opens the CA in dir. A missing directory or CA certificate is
// reported wrapping fs.ErrNotExist; a key that does not open under box
// (another master key, or the key of another CA) is an error naming the
// file, never its content.
func Load(dir string, box *auth.Box) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	c, rest, err := cert.UnmarshalCertificateFromPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("overlay CA %s: %w", filepath.Join(dir, caCertFile), err)
	}
	if len(rest) != 0 || !c.IsCA() {
		return nil, fmt.Errorf("overlay CA %s: not exactly one CA certificate", filepath.Join(dir, caCertFile))
	}
	fp, err := c.Fingerprint()
	if err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	sealed, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("overlay CA key: %w", err)
	}
	key, err := box.Open(sealed, keyAD(fp))
	if err != nil {
		return nil, fmt.Errorf("overlay CA key %s: %w (another master key, or not this CA's key)", filepath.Join(dir, caKeyFile), err)
	}
	defer clear(key)
	if err := c.VerifyPrivateKey(c.Curve(), key); err != nil {
		return nil, fmt.Errorf("overlay CA key %s does not match %s: %w", caKeyFile, caCertFile, err)
	}
	return &CA{dir: dir, cert: c, certPEM: certPEM, fingerprint: fp, key: auth.NewSecret(key)}, nil
}

// pool is a Nebula CA pool trusting this CA, with the blocklist given.
func (ca *CA) pool(blocklist []string) *cert.CAPool {
	p := cert.NewCAPool()
	// AddCA only fails for a certificate that is not a self-signed CA
	// (Load and Create made sure it is) or one that expired, which
	// verification against the pool reports on its own.
	_ = p.AddCA(ca.cert)
	for _, fp := range blocklist {
		p.BlocklistFingerprint(fp)
	}
	return p
}

// writeFileSync writes a new 0600 file and syncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
