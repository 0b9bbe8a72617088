package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// Config is what `holdfast login` keeps between commands: the server, how
// to trust it, and the credentials. The file holds secrets (a refresh
// token or an API key's secret) and is written mode 0600.
type Config struct {
	// Server is the control plane's URL, https://HOST[:PORT].
	Server string `json:"server"`
	// Fingerprint pins the server's certificate ("sha256:<hex>").
	Fingerprint string `json:"fingerprint,omitempty"`
	// CACert is a PEM certificate trusted as the server's CA.
	CACert string `json:"ca_cert,omitempty"`
	// User is who logged in.
	User string `json:"user,omitempty"`
	// Tenant is the tenant commands act on when none is given.
	Tenant string `json:"tenant,omitempty"`
	// Session is a logged-in session; APIKey an API key. At most one.
	Session *Session    `json:"session,omitempty"`
	APIKey  *APIKeyFile `json:"api_key,omitempty"`
}

// APIKeyFile is an API key's id and secret as `holdfast apikey create
// --save` writes them and `holdfast login --api-key-secret-file` reads
// them.
type APIKeyFile struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// ErrNoConfig means nobody logged in: there is no config file.
var ErrNoConfig = errors.New("not logged in: run holdfast login")

// DefaultConfigPath is where the config is kept: $HOLDFAST_CONFIG, else
// $XDG_CONFIG_HOME/holdfast/client.json, else
// ~/.config/holdfast/client.json.
func DefaultConfigPath() (string, error) {
	if p := os.Getenv("HOLDFAST_CONFIG"); p != "" {
		return p, nil
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "holdfast", "client.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the config file (set HOLDFAST_CONFIG): %w", err)
	}
	return filepath.Join(home, ".config", "holdfast", "client.json"), nil
}

// LoadConfig reads a config file; ErrNoConfig when there is none.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoConfig
	}
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w (log in again to rewrite it)", path, err)
	}
	return &c, nil
}

// Save writes the config to path, mode 0600, replacing the file at once
// so that a reader never sees half of it.
func (c *Config) Save(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// WriteFileAtomic writes data to a new file beside path (creating the
// directory, 0700, if needed) and renames it over path.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, perm)
}

// TLSOptions are the options that trust the server as the config says.
func (c *Config) TLSOptions() []Option {
	var opts []Option
	if c.Fingerprint != "" {
		opts = append(opts, WithFingerprint(c.Fingerprint))
	}
	if c.CACert != "" {
		opts = append(opts, WithCACertPEM([]byte(c.CACert)))
	}
	return opts
}

// Client returns a client with the config's server, trust and
// credentials. A session's refreshed tokens are written back to path as
// they come, since the refresh token they replace is spent.
func (c *Config) Client(path string, opts ...Option) (*Client, error) {
	all := c.TLSOptions()
	switch {
	case c.APIKey != nil:
		all = append(all, WithAPIKey(c.APIKey.ID, c.APIKey.Secret))
	case c.Session != nil:
		all = append(all, WithSession(*c.Session), WithSessionHook(func(s Session) error {
			c.Session = &s
			return c.Save(path)
		}))
	}
	return New(c.Server, append(all, opts...)...)
}

// ReadAPIKeyFile reads an API key from a file: either what `holdfast
// apikey create --save` wrote (JSON with id and secret) or the secret
// alone, whose id is then id. An id given overrides the file's.
func ReadAPIKeyFile(path, id string) (APIKeyFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return APIKeyFile{}, fmt.Errorf("API key: %w", err)
	}
	var k APIKeyFile
	if s := strings.TrimSpace(string(b)); strings.HasPrefix(s, "{") {
		if err := json.Unmarshal(b, &k); err != nil {
			return APIKeyFile{}, fmt.Errorf("API key file %s: %w", path, err)
		}
	} else {
		k.Secret = s
	}
	if id != "" {
		k.ID = id
	}
	if k.ID == "" {
		return APIKeyFile{}, fmt.Errorf("API key file %s names no key id: give it (--api-key-id)", path)
	}
	if _, err := DecodeAPIKeySecret(k.Secret); err != nil {
		return APIKeyFile{}, fmt.Errorf("API key file %s: %w", path, err)
	}
	return k, nil
}

// IsLoopback reports whether a server URL names this machine
// (localhost, 127.0.0.0/8, ::1).
func IsLoopback(serverURL string) bool {
	u, err := url.Parse(serverURL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// LocalServerCerts lists the certificates of the control planes whose
// state is under stateDir (<stateDir>/<cloud>/control/tls.crt): what a
// server on this machine made for itself.
func LocalServerCerts(stateDir string) []string {
	m, _ := filepath.Glob(filepath.Join(stateDir, "*", "control", "tls.crt")) // the pattern is well-formed
	sort.Strings(m)
	return m
}
