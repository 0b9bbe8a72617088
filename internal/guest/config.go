package guest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/dns"
	"github.com/holdfast/holdfast/internal/frontdoor"
	"github.com/holdfast/holdfast/internal/overlay"
)

// Config is one instance's guest configuration: what its agent applies.
type Config struct {
	Instance compile.ID `json:"instance"`
	// Overlay is the instance's Nebula member config; nil when the
	// instance is not a member, or not yet (its certificate is issued by
	// the apply that made it a member).
	Overlay *OverlayConfig `json:"overlay,omitempty"`
	// DNS is the name service the instance runs; nil when it runs none.
	DNS *DNSConfig `json:"dns,omitempty"`
	// DHCP is the DHCP service it runs; nil when it runs none (only the
	// local engine's site edges do).
	DHCP *DHCPConfig `json:"dhcp,omitempty"`
	// FrontDoor is the routes the instance fronts; nil when none.
	FrontDoor *frontdoor.Config `json:"frontdoor,omitempty"`
}

// DNSConfig is a DNS server's part: where it answers, what, and where
// other names go.
type DNSConfig struct {
	Listen    []string  `json:"listen"`    // host:port, UDP and TCP
	Upstreams []string  `json:"upstreams"` // host:port
	Table     dns.Table `json:"table"`
	// Domain is the cloud's domain, under which DHCP clients are named
	// <hostname>.<zone>.<domain> when the same agent serves their DHCP.
	Domain string `json:"domain"`
}

// DHCPConfig is a DHCP server's part: its zones, and where leases are
// kept.
type DHCPConfig struct {
	LeaseFile string     `json:"lease_file"`
	Pools     []DHCPPool `json:"pools"`
}

// DHCPPool is one zone's DHCP service.
type DHCPPool struct {
	Zone         string            `json:"zone"`
	Interface    string            `json:"interface"`
	Prefix       netip.Prefix      `json:"prefix"`
	Gateway      netip.Addr        `json:"gateway"`
	Start        netip.Addr        `json:"start"`
	End          netip.Addr        `json:"end"`
	DNS          []netip.Addr      `json:"dns"`
	Domain       string            `json:"domain"` // the zone's search domain, <zone>.<domain>
	Reservations []DHCPReservation `json:"reservations"`
}

// DHCPReservation is a compiled instance's address, handed to its MAC.
type DHCPReservation struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Hostname string     `json:"hostname"`
}

// DNSPort is where DNS is served.
const DNSPort = "53"

// DNSServerConfig is the DNS part of instance in's configuration when it
// is one of st's DNS servers (nil otherwise): it answers on each of its
// addresses.
func DNSServerConfig(st *compile.State, in *compile.Instance) (*DNSConfig, error) {
	if st.DNS == nil || !slices.ContainsFunc(st.DNS.Servers, func(s compile.DNSServer) bool { return s.Instance == in.Name }) {
		return nil, nil
	}
	t, err := dns.Compile(st)
	if err != nil {
		return nil, err
	}
	// Every address of the instance: its NICs' and, for a member, its
	// overlay address, which the agent's Nebula brings up before its DNS
	// starts (Arvandor's VMs ask 10.10.10.11, dns's overlay address). Each
	// address, not the wildcard: a socket bound to one address answers
	// from it without per-packet control messages, and is served by the
	// faster loop (docs/performance.md). Who may ask is the firewalls'
	// business, and only the cloud's clients get other names forwarded.
	c := &DNSConfig{Table: t, Domain: st.Domain, Upstreams: Upstreams(st.DNS.Upstreams)}
	for _, nic := range in.NICs {
		if nic.IP != "" {
			c.Listen = append(c.Listen, net.JoinHostPort(nic.IP, DNSPort))
		}
	}
	if a, err := netip.ParseAddr(in.OverlayIP); err == nil {
		c.Listen = append(c.Listen, net.JoinHostPort(a.String(), DNSPort))
	}
	return c, nil
}

// Upstreams are the resolvers addrs (IP addresses) as host:port.
func Upstreams(addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, net.JoinHostPort(a, DNSPort))
	}
	return out
}

// OverlayConfig is a member's part of the overlay.
type OverlayConfig struct {
	Address string   `json:"address"` // its overlay address, with the overlay's prefix length
	Groups  []string `json:"groups,omitempty"`
	// Nebula is its Nebula config (YAML), PKI inline: it holds the
	// member's private key.
	Nebula string `json:"nebula"`
}

// Version names a config's content: the same config, the same version.
func (c Config) Version() string {
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Build is the guest configuration of the instance id in st, from the
// cloud's files under stateDir. tune, when set, adjusts each member's
// Nebula config before it is rendered (intervals).
func Build(stateDir string, st *compile.State, id compile.ID, tune func(*overlay.NodeConfig)) (Config, error) {
	c, err := buildOverlay(stateDir, st, id, tune)
	if err != nil {
		return c, err
	}
	for i := range st.Instances {
		if in := &st.Instances[i]; in.Name == id.Name && in.Site == id.Site {
			if c.Overlay == nil {
				// No overlay yet (its certificate is being issued): no
				// overlay address to answer on either.
				withoutOverlay := *in
				withoutOverlay.OverlayIP = ""
				in = &withoutOverlay
			}
			if c.DNS, err = DNSServerConfig(st, in); err != nil {
				return c, fmt.Errorf("%s: dns: %w", id, err)
			}
			if c.FrontDoor, err = FrontDoorConfig(st, in); err != nil {
				return c, fmt.Errorf("%s: front door: %w", id, err)
			}
		}
	}
	return c, nil
}

// buildOverlay is the configuration with its overlay part only.
func buildOverlay(stateDir string, st *compile.State, id compile.ID, tune func(*overlay.NodeConfig)) (Config, error) {
	c := Config{Instance: id}
	if st.Overlay == nil {
		return c, nil
	}
	var m *compile.Member
	for i := range st.Overlay.Members {
		if mm := &st.Overlay.Members[i]; mm.Name == id.Name && mm.Site == id.Site {
			m = mm
		}
	}
	if m == nil {
		return c, nil
	}
	n, err := overlay.NewMembers(stateDir, st.Cloud, st).Node(st.Overlay, compile.MemberID(id.Site, id.Name))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil // no certificate yet: the apply that issues it is under way
	}
	if err != nil {
		return c, fmt.Errorf("%s: overlay: %w", id, err)
	}
	if tune != nil {
		tune(&n)
	}
	yaml, err := overlay.Config(n)
	if err != nil {
		return c, fmt.Errorf("%s: overlay: %w", id, err)
	}
	c.Overlay = &OverlayConfig{Address: m.OverlayIP, Groups: m.Groups, Nebula: string(yaml)}
	return c, nil
}

// AppliedFile is the state the last apply of cloud set out to make
// (deploy writes it): the guest service hands out from it, so agents see
// what was applied, not a spec edit nobody applied yet.
func AppliedFile(stateDir, cloud string) string {
	return filepath.Join(stateDir, cloud, "applied.json")
}

// FileState reads a compiled state that another process writes (deploy's
// applied state), again only when the file has changed.
func FileState(path string) func() (*compile.State, error) {
	var (
		mu    sync.Mutex
		st    *compile.State
		mtime time.Time
		size  int64
	)
	return func() (*compile.State, error) {
		mu.Lock()
		defer mu.Unlock()
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if st != nil && fi.ModTime().Equal(mtime) && fi.Size() == size {
			return st, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var next compile.State
		if err := json.Unmarshal(b, &next); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		st, mtime, size = &next, fi.ModTime(), fi.Size()
		return st, nil
	}
}
