package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
)

// Members realizes the overlay's member resources: each is the host
// certificate the cloud's CA issued an instance, kept under the overlay's
// directory (members/<site>/<name>.crt, its key sealed beside it in
// <name>.key.sealed). It is what deploy asks for resources of kind
// member, whatever the site's engine: the overlay's CA is Holdfast's, not
// the infrastructure's.
//
// Observe names a certificate that has expired, is running out, is
// revoked or was not signed by the CA as drift, and reports the address
// and groups it carries as attributes, so that the plan sees a wrong one.
// Ensure issues a new certificate when the held one is not right,
// revoking the old one when it carried another identity; Delete revokes
// and removes it.
type Members struct {
	dir     string // the overlay's directory
	keyPath string // the master key sealing the CA's and members' keys
	caName  string
	now     func() time.Time
	// want is the member resources of the desired state, by ID.
	want map[compile.ID]compile.Resource

	mu  sync.Mutex
	ca  *CA
	box *auth.Box
}

var _ engine.Engine = (*Members)(nil)

// NewMembers is the members of cloud's overlay, under stateDir, with the
// desired state st (nil: none) to observe them against. Nothing is read
// or created until asked.
func NewMembers(stateDir, cloud string, st *compile.State) *Members {
	m := &Members{dir: Dir(stateDir, cloud), keyPath: MasterKeyPath(stateDir, cloud), caName: cloud + " overlay CA", now: time.Now,
		want: map[compile.ID]compile.Resource{}}
	if st != nil {
		for _, r := range st.Resources {
			if r.ID.Kind == compile.ResMember {
				m.want[r.ID] = r
			}
		}
	}
	return m
}

// authority loads the CA, creating it (and the master key) on the first
// Ensure; with create false a missing CA is reported as fs.ErrNotExist.
func (m *Members) authority(create bool) (*CA, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ca != nil {
		return m.ca, nil
	}
	if _, err := os.Stat(filepath.Join(m.dir, caCertFile)); errors.Is(err, fs.ErrNotExist) && !create {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(m.keyPath), 0o700); err != nil {
		return nil, err
	}
	key, err := auth.LoadOrCreateMasterKey(m.keyPath)
	if err != nil {
		return nil, err
	}
	box, err := auth.NewBox(key)
	if err != nil {
		return nil, err
	}
	ca, _, err := LoadOrCreate(m.dir, box, CAOptions{Name: m.caName})
	if err != nil {
		return nil, fmt.Errorf("overlay CA: %w", err)
	}
	m.ca, m.box = ca, box
	return ca, nil
}

func (m *Members) certPath(id compile.ID) string {
	return filepath.Join(m.dir, "members", id.Site, id.Name+".crt")
}

func (m *Members) keyFile(id compile.ID) string {
	return filepath.Join(m.dir, "members", id.Site, id.Name+".key.sealed")
}

// Observe lists the members holding a certificate.
func (m *Members) Observe(ctx context.Context) ([]engine.Observed, error) {
	ca, err := m.authority(false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no overlay yet: no members
	}
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(m.dir, "members", "*", "*.crt"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	now := m.now()
	var out []engine.Observed
	for _, f := range files {
		id := compile.MemberID(filepath.Base(filepath.Dir(f)), strings.TrimSuffix(filepath.Base(f), ".crt"))
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		o := engine.Observed{Resource: compile.NewResource(id, nil, map[string]string{})}
		c, _, why := parseHost(pem)
		if why != "" {
			o.Drift = []string{string(DriftInvalid) + ": " + why}
			out = append(out, o)
			continue
		}
		var ip string
		if nets := c.Networks(); len(nets) > 0 {
			ip = nets[0].String()
		}
		o.Attrs = compile.MemberAttrs(ip, c.Groups())
		// Checked against the desired member, so that a certificate
		// with another name, address or groups is named; a member no
		// longer desired only for what wears out (it is deleted anyway).
		want := Member{Name: c.Name(), Groups: c.Groups()}
		if len(c.Networks()) > 0 {
			want.IP = c.Networks()[0]
		}
		if r, ok := m.want[id]; ok {
			if want, err = desired(r); err != nil {
				return nil, err
			}
		}
		drift, err := ca.Check(pem, want, now)
		if err != nil {
			return nil, err
		}
		for _, d := range drift {
			o.Drift = append(o.Drift, d.String())
		}
		out = append(out, o)
	}
	return out, nil
}

// desired is the member a member resource asks for.
func desired(r compile.Resource) (Member, error) {
	ip, err := netip.ParsePrefix(r.Attrs["overlay_ip"])
	if err != nil {
		return Member{}, fmt.Errorf("%s: overlay address %q: %w", r.ID, r.Attrs["overlay_ip"], err)
	}
	m := Member{Name: r.ID.Name, IP: ip}
	if g := r.Attrs["groups"]; g != "" {
		m.Groups = strings.Split(g, ",")
	}
	return m, nil
}

// Ensure gives the member a certificate that is right: it keeps one that
// is, and otherwise issues a new one, revoking the old one first when it
// carried another identity (it must stop working at once).
func (m *Members) Ensure(ctx context.Context, r compile.Resource) error {
	want, err := desired(r)
	if err != nil {
		return err
	}
	ca, err := m.authority(true)
	if err != nil {
		return err
	}
	now := m.now()
	old, err := os.ReadFile(m.certPath(r.ID))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		drift, err := ca.Check(old, want, now)
		if err != nil {
			return err
		}
		if len(drift) == 0 {
			return nil
		}
		if slices.ContainsFunc(drift, Drift.Revokes) {
			if err := revokeOurs(ca, old, now); err != nil {
				return fmt.Errorf("%s: revoke the old certificate: %w", r.ID, err)
			}
		}
	}
	h, err := ca.Issue(want, IssueOptions{Now: now})
	if err != nil {
		return fmt.Errorf("%s: %w", r.ID, err)
	}
	if err := os.MkdirAll(filepath.Dir(m.certPath(r.ID)), 0o700); err != nil {
		return err
	}
	sealed, err := m.box.Seal(h.Key.Expose(), memberKeyAD(r.ID, h.Fingerprint))
	if err != nil {
		return err
	}
	// The key first: a crash between the two leaves the old certificate
	// (or none), which the next apply replaces again.
	if err := atomicfile.Write(m.keyFile(r.ID), sealed, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(m.certPath(r.ID), h.CertPEM, 0o600)
}

// Delete revokes the member's certificate and removes it; a member
// without one is already gone.
func (m *Members) Delete(ctx context.Context, r compile.Resource) error {
	old, err := os.ReadFile(m.certPath(r.ID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	ca, err := m.authority(false)
	if err != nil {
		return err
	}
	if err := revokeOurs(ca, old, m.now()); err != nil {
		return fmt.Errorf("%s: revoke: %w", r.ID, err)
	}
	for _, f := range []string{m.certPath(r.ID), m.keyFile(r.ID)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Credentials returns the member's certificate and key, for delivering
// to it; fs.ErrNotExist when it has none yet.
func (m *Members) Credentials(id compile.ID) (certPEM []byte, key auth.Secret, err error) {
	if _, err := m.authority(false); err != nil {
		return nil, auth.Secret{}, err
	}
	certPEM, err = os.ReadFile(m.certPath(id))
	if err != nil {
		return nil, auth.Secret{}, err
	}
	_, fp, why := parseHost(certPEM)
	if why != "" {
		return nil, auth.Secret{}, fmt.Errorf("%s: %s", id, why)
	}
	sealed, err := os.ReadFile(m.keyFile(id))
	if err != nil {
		return nil, auth.Secret{}, err
	}
	plain, err := m.box.Open(sealed, memberKeyAD(id, fp))
	if err != nil {
		return nil, auth.Secret{}, fmt.Errorf("%s: key: %w", id, err)
	}
	return certPEM, auth.NewSecret(plain), nil
}

// revokeOurs revokes a certificate the CA signed; one it did not sign (or
// that does not parse) no member of this overlay accepts anyway.
func revokeOurs(ca *CA, certPEM []byte, now time.Time) error {
	if c, _, why := parseHost(certPEM); why != "" || !ca.signed(c) {
		return nil
	}
	return ca.Revoke(certPEM, now)
}

// memberKeyAD binds a sealed key to its member and certificate, so that a
// key file moved beside another certificate does not open.
func memberKeyAD(id compile.ID, fingerprint string) []byte {
	return []byte("holdfast overlay member key " + id.String() + " " + fingerprint)
}

// Close releases nothing: files are opened per call.
func (m *Members) Close() error { return nil }

// Node is the member's Nebula config with its PKI inline — the CA, its
// certificate and key, and the CA's blocklist as it is now — as its agent
// gets it. fs.ErrNotExist when the member has no certificate yet.
func (m *Members) Node(o *compile.Overlay, id compile.ID) (NodeConfig, error) {
	_, n, err := Plan(o, id.Name)
	if err != nil {
		return NodeConfig{}, err
	}
	certPEM, key, err := m.Credentials(id)
	if err != nil {
		return NodeConfig{}, err
	}
	ca, err := m.authority(false)
	if err != nil {
		return NodeConfig{}, err
	}
	blocklist, err := ca.Blocklist(m.now())
	if err != nil {
		return NodeConfig{}, err
	}
	n.PKI = PKI{CA: ca.CertPEM(), Cert: certPEM, Key: key, Blocklist: blocklist}
	return n, nil
}
