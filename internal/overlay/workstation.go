package overlay

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/auth"
)

// WorkstationOptions describe a certificate for an operator's machine,
// which joins the overlay with the stock Nebula client.
type WorkstationOptions struct {
	StateDir string
	Cloud    string // empty: the only cloud under StateDir
	Member   Member
	Dir      string // where the files are written; created 0700 if missing
	// Lighthouses go into config.yml; without them the client can reach
	// only peers that reach it first.
	Lighthouses []Lighthouse
	Validity    time.Duration // zero: DefaultHostValidity
	Now         time.Time     // zero: time.Now()
}

// Written is what IssueWorkstation wrote.
type Written struct {
	Cloud         string    `json:"cloud"`
	Name          string    `json:"name"`
	IP            string    `json:"ip"`
	Groups        []string  `json:"groups"`
	CA            string    `json:"ca"`
	Cert          string    `json:"cert"`
	Key           string    `json:"key"`
	Config        string    `json:"config"`
	Fingerprint   string    `json:"fingerprint"`
	NotAfter      time.Time `json:"not_after"`
	CAFingerprint string    `json:"ca_fingerprint"`
	CACreated     bool      `json:"ca_created"`
}

// IssueWorkstation issues a host certificate for an operator's machine
// from the cloud's CA, creating the CA (and the cloud's master key) if
// the cloud has none yet, and writes into o.Dir: ca.crt and host.crt
// (0644), host.key and config.yml (0600). config.yml names the three
// files by absolute path, as `nebula -config config.yml` reads them.
func IssueWorkstation(o WorkstationOptions) (*Written, error) {
	if o.StateDir == "" {
		return nil, errors.New("no state directory")
	}
	cloud, err := findCloud(o.StateDir, o.Cloud)
	if err != nil {
		return nil, err
	}
	if o.Dir == "" {
		return nil, errors.New("no directory to write the certificate to")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(MasterKeyPath(o.StateDir, cloud)), 0o700); err != nil {
		return nil, err
	}
	mk, err := auth.LoadOrCreateMasterKey(MasterKeyPath(o.StateDir, cloud))
	if err != nil {
		return nil, err
	}
	box, err := auth.NewBox(mk)
	clear(mk)
	if err != nil {
		return nil, err
	}
	ca, created, err := LoadOrCreate(Dir(o.StateDir, cloud), box, CAOptions{Name: cloud + " overlay CA", Now: o.Now})
	if err != nil {
		return nil, err
	}
	h, err := ca.Issue(o.Member, IssueOptions{Validity: o.Validity, Now: o.Now})
	if err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	blocklist, err := ca.Blocklist(now)
	if err != nil {
		return nil, err
	}
	w := &Written{
		Cloud: cloud, Name: o.Member.Name, IP: o.Member.IP.String(), Groups: setOf(o.Member.Groups),
		CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "host.crt"),
		Key: filepath.Join(dir, "host.key"), Config: filepath.Join(dir, "config.yml"),
		Fingerprint: h.Fingerprint, NotAfter: h.NotAfter.UTC(), CAFingerprint: ca.Fingerprint(), CACreated: created,
	}
	if w.Groups == nil {
		w.Groups = []string{}
	}
	config, err := Config(NodeConfig{
		PKI:         PKI{CAFile: w.CA, CertFile: w.Cert, KeyFile: w.Key, Blocklist: blocklist},
		Lighthouses: o.Lighthouses,
		ListenPort:  0, // a workstation roams: any free port, punching finds it
	})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{w.Key, h.Key.Expose(), 0o600},
		{w.Cert, h.CertPEM, 0o644},
		{w.CA, ca.CertPEM(), 0o644},
		{w.Config, config, 0o600},
	} {
		if err := atomicfile.Write(f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return w, nil
}

// findCloud is cloud if given, else the one cloud under stateDir: one that
// has been applied (state.db) or has an overlay CA.
func findCloud(stateDir, cloud string) (string, error) {
	if cloud != "" {
		if strings.ContainsAny(cloud, `/\`) || cloud == "." || cloud == ".." {
			return "", fmt.Errorf("cloud %q: not a cloud name", cloud)
		}
		return cloud, nil
	}
	var clouds []string
	for _, pattern := range []string{"*/state.db", "*/overlay/" + caCertFile} {
		found, _ := filepath.Glob(filepath.Join(stateDir, pattern))
		for _, f := range found {
			rel, _ := filepath.Rel(stateDir, f)
			clouds = append(clouds, strings.Split(filepath.ToSlash(rel), "/")[0])
		}
	}
	slices.Sort(clouds)
	clouds = slices.Compact(clouds)
	switch len(clouds) {
	case 0:
		return "", fmt.Errorf("no cloud under %s: apply one first, or name it with --cloud", stateDir)
	case 1:
		return clouds[0], nil
	}
	return "", fmt.Errorf("clouds %s under %s: say which with --cloud", strings.Join(clouds, ", "), stateDir)
}

// ParseLighthouse reads a lighthouse as OVERLAY_IP=HOST:PORT[,HOST:PORT…],
// the form the command line takes.
func ParseLighthouse(s string) (Lighthouse, error) {
	ip, under, ok := strings.Cut(s, "=")
	if !ok {
		return Lighthouse{}, fmt.Errorf("lighthouse %q: want OVERLAY_IP=HOST:PORT", s)
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return Lighthouse{}, fmt.Errorf("lighthouse %q: %w", s, err)
	}
	return Lighthouse{IP: a, Underlay: strings.Split(under, ",")}, nil
}
