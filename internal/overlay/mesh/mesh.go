// Package mesh runs a member of the overlay: Nebula, embedded, in the
// network namespace of the calling process. The agent is a process inside
// the instance, so the instance's namespace is the process's; nothing here
// enters or creates one.
//
// The configuration is Nebula's own YAML, rendered elsewhere (package
// overlay) from the compiled spec; mesh only runs it, reloads it, and reports
// what the running Nebula sees.
package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/slackhq/nebula"
	"github.com/slackhq/nebula/cert"
	"github.com/slackhq/nebula/config"
)

// Node is a running member of the overlay.
type Node struct {
	ctl    *nebula.Control
	cfg    *config.C
	addrs  []netip.Addr // this member's overlay addresses (from its certificate)
	mu     sync.Mutex   // serialises Reload and Stop
	stop   chan struct{}
	waited chan struct{}
	err    error // why Nebula stopped on its own, once waited is closed
}

// Start runs Nebula with configYAML in the current network namespace and
// returns once its tun device is up and it reads packets. Cancelling ctx
// stops it, as Stop does. A nil logger discards Nebula's log; otherwise
// Nebula's informational chatter is logged at debug level (see quietHandler).
func Start(ctx context.Context, configYAML []byte, logger *slog.Logger) (*Node, error) {
	// Nebula's config test first: it changes nothing on the machine, and a
	// configuration Nebula would panic on (it does, on some zero timers)
	// is refused before a tun device or a socket exists.
	if err := Check(configYAML); err != nil {
		return nil, err
	}
	l := quiet(logger)
	c := config.NewC(l)
	if err := c.LoadString(string(configYAML)); err != nil {
		return nil, fmt.Errorf("nebula config: %w", err)
	}
	// Nebula's version string is its module's, which it finds in the build
	// info itself; "" asks it to.
	ctl, err := nebula.Main(c, false, "", l, nil)
	if err != nil {
		return nil, fmt.Errorf("nebula: %w", err)
	}
	if err := ctl.Start(); err != nil {
		return nil, fmt.Errorf("nebula start: %w", err)
	}
	n := &Node{ctl: ctl, cfg: c, stop: make(chan struct{}), waited: make(chan struct{})}
	for _, p := range ctl.Device().Networks() {
		n.addrs = append(n.addrs, p.Addr())
	}
	go func() {
		n.err = ctl.Wait()
		close(n.waited)
	}()
	go func() {
		select {
		case <-ctx.Done():
			n.Stop()
		case <-n.stop:
		case <-n.waited:
		}
	}()
	return n, nil
}

// Stop closes every tunnel (telling the peers), removes the tun device and
// waits until Nebula has let go of everything. It is safe to call twice.
func (n *Node) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	n.ctl.Stop()
	<-n.waited
}

// Done is closed once Nebula has stopped, by Stop or on its own; Err then
// says why, if it was not Stop.
func (n *Node) Done() <-chan struct{} { return n.waited }

// Err is the fatal error that stopped Nebula, or nil.
func (n *Node) Err() error {
	select {
	case <-n.waited:
		return n.err
	default:
		return nil
	}
}

// Reload applies a new configuration without a restart: certificates, the
// CA pool and blocklist, the firewall and the lighthouse settings take
// effect at once (a new certificate by re-handshaking every tunnel); tunnels of a newly blocklisted certificate are torn down
// at Nebula's next check of each tunnel (timers.connection_alive_interval).
//
// Nebula's own reload only logs what it cannot apply, so Reload first
// checks configYAML the way `nebula -test` does, and afterwards that the
// certificate in use is the new one. A certificate whose overlay address
// changed cannot be hot-swapped and needs a restart: Reload refuses it
// (ErrRestartNeeded) and the old configuration keeps running, whole.
// The tun device and the listen port are fixed at Start.
func (n *Node) Reload(configYAML []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := Check(configYAML); err != nil {
		return err
	}
	parsed := config.NewC(discard)
	if err := parsed.LoadString(string(configYAML)); err != nil {
		return fmt.Errorf("nebula config: %w", err)
	}
	want, err := configCerts(parsed)
	if err != nil {
		return err
	}
	var inUse cert.Certificate
	var oldFP string
	if len(n.addrs) > 0 {
		if inUse = n.ctl.GetCertByVpnIp(n.addrs[0]); inUse != nil {
			if oldFP, err = inUse.Fingerprint(); err != nil {
				return fmt.Errorf("nebula reload: %w", err)
			}
		}
	}
	// Nebula keeps its old certificate when the new one's networks or curve
	// differ, but would apply the rest of the configuration: refuse the
	// whole reload instead, so the running configuration stays one whole.
	for _, c := range want {
		if inUse != nil && c.Version() == inUse.Version() &&
			(!slices.Equal(c.Networks(), inUse.Networks()) || c.Curve() != inUse.Curve()) {
			return fmt.Errorf("%w: the new certificate's networks %v or curve %s differ from the running %v %s",
				ErrRestartNeeded, c.Networks(), c.Curve(), inUse.Networks(), inUse.Curve())
		}
	}
	if err := n.cfg.ReloadConfigString(string(configYAML)); err != nil {
		return fmt.Errorf("nebula reload: %w", err)
	}
	if inUse == nil {
		return nil
	}
	if inUse = n.ctl.GetCertByVpnIp(n.addrs[0]); inUse == nil {
		return fmt.Errorf("nebula reload: no certificate in use for %s", n.addrs[0])
	}
	fp, err := inUse.Fingerprint()
	if err != nil {
		return fmt.Errorf("nebula reload: %w", err)
	}
	taken := false
	for _, c := range want {
		if w, err := c.Fingerprint(); err == nil && w == fp {
			taken = true
		}
	}
	if !taken {
		return fmt.Errorf("nebula reload: the new certificate was not taken (see Nebula's log)")
	}
	if fp != oldFP {
		// Nebula presents a new certificate only on a tunnel's next
		// handshake, which it starts itself when the tunnel next carries
		// traffic both ways; a peer whose firewall dropped the old
		// certificate sends nothing back, and waits out
		// timers.pending_deletion_interval. Re-handshake every tunnel now:
		// the old one carries traffic until the new one is up.
		for _, h := range n.ctl.ListHostmapHosts(false) {
			if len(h.VpnAddrs) > 0 {
				n.ctl.CreateTunnel(h.VpnAddrs[0])
			}
		}
	}
	return nil
}

// ErrRestartNeeded says a configuration cannot be applied by a reload.
var ErrRestartNeeded = errors.New("nebula needs a restart")

// Check reports whether configYAML is a configuration Nebula would run,
// without changing anything on the machine (Nebula's config test).
func Check(configYAML []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("nebula config: refused by Nebula (it panicked: %v)", p)
		}
	}()
	// The config test logs the whole configuration, private key included:
	// its log goes nowhere.
	c := config.NewC(discard)
	if err := c.LoadString(string(configYAML)); err != nil {
		return fmt.Errorf("nebula config: %w", err)
	}
	if _, err := nebula.Main(c, true, "", discard, nil); err != nil {
		return fmt.Errorf("nebula config: %w", err)
	}
	// Nebula's test does not check the member's own certificate against
	// its CA; a member whose certificate the mesh will refuse is refused
	// here.
	caPEM, err := pemOrFile(c, "pki.ca")
	if err != nil {
		return err
	}
	pool, err := cert.NewCAPoolFromPEM(caPEM)
	if err != nil {
		return fmt.Errorf("nebula config: pki.ca: %w", err)
	}
	crts, err := configCerts(c)
	if err != nil {
		return err
	}
	for _, crt := range crts {
		if _, err := pool.VerifyCertificate(time.Now(), crt); err != nil {
			return fmt.Errorf("nebula config: pki.cert %q: %w", crt.Name(), err)
		}
	}
	return nil
}

// pemOrFile returns the PEM at key in c: inline, or the file it names.
func pemOrFile(c *config.C, key string) ([]byte, error) {
	raw := []byte(c.GetString(key, ""))
	if bytes.Contains(raw, []byte("-----BEGIN")) {
		return raw, nil
	}
	b, err := os.ReadFile(string(raw))
	if err != nil {
		return nil, fmt.Errorf("nebula config: %s: %w", key, err)
	}
	return b, nil
}

// configCerts returns the host certificates pki.cert holds in c.
func configCerts(c *config.C) ([]cert.Certificate, error) {
	raw, err := pemOrFile(c, "pki.cert")
	if err != nil {
		return nil, err
	}
	var crts []cert.Certificate
	for len(bytes.TrimSpace(raw)) > 0 {
		crt, rest, err := cert.UnmarshalCertificateFromPEM(raw)
		if err != nil {
			return nil, fmt.Errorf("nebula config: pki.cert: %w", err)
		}
		crts = append(crts, crt)
		raw = rest
	}
	return crts, nil
}

// Health is what the running Nebula sees, for the agent's status report.
type Health struct {
	Running bool `json:"running"`
	// Addrs are this member's overlay addresses.
	Addrs []netip.Addr `json:"addrs"`
	// CertName, CertGroups and CertExpires describe the certificate in use.
	CertName    string    `json:"cert_name"`
	CertGroups  []string  `json:"cert_groups"`
	CertExpires time.Time `json:"cert_expires"`
	// Peers are the members with an established tunnel, by overlay address.
	Peers []Peer `json:"peers"`
	// Handshaking counts tunnels being set up.
	Handshaking int `json:"handshaking"`
}

// Peer is one established tunnel.
type Peer struct {
	Addrs  []netip.Addr   `json:"addrs"`
	Name   string         `json:"name"`
	Groups []string       `json:"groups"`
	Remote netip.AddrPort `json:"remote"` // the underlay address it is reached at
}

// Up reports whether a tunnel to the member at addr is established.
func (h Health) Up(addr netip.Addr) bool {
	for _, p := range h.Peers {
		for _, a := range p.Addrs {
			if a == addr {
				return true
			}
		}
	}
	return false
}

// Health reports the tunnels, and the certificate in use.
func (n *Node) Health() Health {
	h := Health{Addrs: append([]netip.Addr(nil), n.addrs...)}
	select {
	case <-n.waited:
		return h
	default:
	}
	h.Running = n.ctl.State() == nebula.StateStarted
	if len(n.addrs) > 0 {
		if c := n.ctl.GetCertByVpnIp(n.addrs[0]); c != nil {
			h.CertName, h.CertGroups, h.CertExpires = c.Name(), c.Groups(), c.NotAfter()
		}
	}
	for _, hi := range n.ctl.ListHostmapHosts(false) {
		p := Peer{Addrs: hi.VpnAddrs, Remote: hi.CurrentRemote}
		if hi.Cert != nil {
			p.Name, p.Groups = hi.Cert.Name(), hi.Cert.Groups()
		}
		h.Peers = append(h.Peers, p)
	}
	// The hostmap lists a peer under each of its addresses; one is enough.
	sort.Slice(h.Peers, func(i, j int) bool { return h.Peers[i].Addrs[0].Less(h.Peers[j].Addrs[0]) })
	h.Peers = dedupe(h.Peers)
	h.Handshaking = len(n.ctl.ListHostmapIndexes(true))
	return h
}

func dedupe(ps []Peer) []Peer {
	out := ps[:0]
	for i, p := range ps {
		if i > 0 && p.Addrs[0] == ps[i-1].Addrs[0] {
			continue
		}
		out = append(out, p)
	}
	return out
}

// String is a one-line summary, for logs.
func (h Health) String() string {
	names := make([]string, len(h.Peers))
	for i, p := range h.Peers {
		names[i] = p.Name
	}
	return fmt.Sprintf("running=%t cert=%s expires=%s peers=[%s] handshaking=%d",
		h.Running, h.CertName, h.CertExpires.Format(time.RFC3339), strings.Join(names, " "), h.Handshaking)
}
