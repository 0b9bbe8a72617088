package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/holdfast/holdfast/internal/auth"
)

// DefaultPort is Nebula's customary UDP port; lighthouses need a fixed one.
const DefaultPort = 4242

// DefaultTunDevice is the name of the overlay's interface on a member.
const DefaultTunDevice = "nebula1"

// Lighthouse is a member others find the mesh through: its overlay
// address, and where it listens on the underlay.
type Lighthouse struct {
	IP       netip.Addr
	Underlay []string // host:port, e.g. "192.168.100.11:4242"; host may be a DNS name
}

// Rule lets peers in: a packet from a peer passes when its protocol and
// port match and the peer matches Groups (all of them), Group, Host (a
// certificate name, or "any") or CIDR (the peer's overlay address). At
// least one of these must be set. Nothing is let in without a rule —
// ICMP neither, unless a rule with Proto "icmp" says so.
type Rule struct {
	Port   string // "443", "8000-8100" or "any" (empty means any); ignored for icmp
	Proto  string // tcp, udp, icmp or any
	Groups []string
	Group  string
	Host   string
	CIDR   string
}

// PKI is where a member finds its CA, certificate and key: the PEM itself
// (inline, as the agent delivers it) or file paths on the member (as the
// stock client's config.yml has them). Each of the three is one or the
// other.
type PKI struct {
	CA, Cert []byte
	Key      auth.Secret

	CAFile, CertFile, KeyFile string

	// Blocklist is the revoked fingerprints (CA.Blocklist).
	Blocklist []string
}

// InlinePKI is the PKI of a member holding h, with the CA's blocklist at
// the time the caller asked for it.
func InlinePKI(ca *CA, h *HostCert, blocklist []string) PKI {
	return PKI{CA: ca.CertPEM(), Cert: h.CertPEM, Key: h.Key, Blocklist: blocklist}
}

// NodeConfig is everything a member's Nebula config says.
type NodeConfig struct {
	PKI PKI
	// Lighthouses are all the overlay's lighthouses. A lighthouse itself
	// lists none (Nebula wants its lighthouse.hosts empty) but keeps the
	// others in its static host map.
	Lighthouses  []Lighthouse
	AmLighthouse bool
	ListenHost   string // zero: 0.0.0.0
	ListenPort   int    // 0: any free port (fine for a workstation, not a lighthouse)
	TunDevice    string // zero: DefaultTunDevice
	Inbound      []Rule
	// LighthouseInterval is how often a member reports itself to the
	// lighthouses (zero: every 60 s).
	LighthouseInterval time.Duration
	// AliveInterval is how often Nebula checks each tunnel, and so how
	// soon a revoked or expired peer loses its tunnels (zero: Nebula's
	// default, 5 s). Whole seconds; Nebula refuses zero itself.
	AliveInterval time.Duration
}

// The YAML shapes of the parts of Nebula's config that Holdfast sets
// (nebula's examples/config.yml is the reference).
type (
	nebulaConfig struct {
		PKI           pkiYAML             `yaml:"pki"`
		StaticHostMap map[string][]string `yaml:"static_host_map,omitempty"`
		Lighthouse    lighthouseYAML      `yaml:"lighthouse"`
		Listen        listenYAML          `yaml:"listen"`
		Punchy        punchyYAML          `yaml:"punchy"`
		Tun           tunYAML             `yaml:"tun"`
		Timers        *timersYAML         `yaml:"timers,omitempty"`
		Logging       loggingYAML         `yaml:"logging"`
		Firewall      firewallYAML        `yaml:"firewall"`
	}
	pkiYAML struct {
		CA                string   `yaml:"ca"`
		Cert              string   `yaml:"cert"`
		Key               string   `yaml:"key"`
		Blocklist         []string `yaml:"blocklist,omitempty"`
		DisconnectInvalid bool     `yaml:"disconnect_invalid"`
	}
	lighthouseYAML struct {
		AmLighthouse bool     `yaml:"am_lighthouse"`
		Interval     int      `yaml:"interval"`
		Hosts        []string `yaml:"hosts"`
	}
	listenYAML struct {
		Host string `yaml:"host"`
		Port int    `yaml:"port"`
	}
	punchyYAML struct {
		Punch   bool `yaml:"punch"`
		Respond bool `yaml:"respond"`
	}
	tunYAML struct {
		Disabled bool   `yaml:"disabled"`
		Dev      string `yaml:"dev"`
	}
	timersYAML struct {
		ConnectionAliveInterval int `yaml:"connection_alive_interval"`
	}
	loggingYAML struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	}
	firewallYAML struct {
		OutboundAction string     `yaml:"outbound_action"`
		InboundAction  string     `yaml:"inbound_action"`
		Outbound       []ruleYAML `yaml:"outbound"`
		Inbound        []ruleYAML `yaml:"inbound"`
	}
	ruleYAML struct {
		Port   string   `yaml:"port,omitempty"`
		Proto  string   `yaml:"proto"`
		Host   string   `yaml:"host,omitempty"`
		Group  string   `yaml:"group,omitempty"`
		Groups []string `yaml:"groups,omitempty"`
		CIDR   string   `yaml:"cidr,omitempty"`
	}
)

// Config renders n as Nebula's YAML config. With an inline PKI the result
// holds the member's private key: deliver it like a secret, never log it.
func Config(n NodeConfig) ([]byte, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	c := nebulaConfig{
		PKI: pkiYAML{
			CA:                pick(string(n.PKI.CA), n.PKI.CAFile),
			Cert:              pick(string(n.PKI.Cert), n.PKI.CertFile),
			Key:               pick(string(n.PKI.Key.Expose()), n.PKI.KeyFile),
			Blocklist:         n.PKI.Blocklist,
			DisconnectInvalid: true, // a revoked or expired peer loses its tunnels (1.6 defaults to false)
		},
		Lighthouse: lighthouseYAML{AmLighthouse: n.AmLighthouse, Interval: 60, Hosts: []string{}},
		Listen:     listenYAML{Host: pick(n.ListenHost, "0.0.0.0"), Port: n.ListenPort},
		// Punching keeps NAT mappings open and lets peers behind NAT meet.
		Punchy:  punchyYAML{Punch: true, Respond: true},
		Tun:     tunYAML{Dev: pick(n.TunDevice, DefaultTunDevice)},
		Logging: loggingYAML{Level: "info", Format: "text"},
		Firewall: firewallYAML{
			OutboundAction: "drop",
			InboundAction:  "drop",
			Outbound:       []ruleYAML{{Port: "any", Proto: "any", Host: "any"}},
			Inbound:        []ruleYAML{},
		},
	}
	if n.LighthouseInterval > 0 {
		c.Lighthouse.Interval = int(n.LighthouseInterval / time.Second)
	}
	if n.AliveInterval > 0 {
		c.Timers = &timersYAML{ConnectionAliveInterval: int(n.AliveInterval / time.Second)}
	}
	if len(n.Lighthouses) > 0 {
		c.StaticHostMap = map[string][]string{}
	}
	for _, lh := range n.Lighthouses {
		c.StaticHostMap[lh.IP.String()] = lh.Underlay
		if !n.AmLighthouse {
			c.Lighthouse.Hosts = append(c.Lighthouse.Hosts, lh.IP.String())
		}
	}
	for _, r := range n.Inbound {
		y := ruleYAML{Port: pick(r.Port, "any"), Proto: r.Proto, Host: r.Host, Group: r.Group, Groups: r.Groups, CIDR: r.CIDR}
		if r.Proto == "icmp" {
			// ICMP has no ports; Nebula 1.6 still requires the key (later
			// releases ignore it, with a warning).
			y.Port = "any"
		}
		c.Firewall.Inbound = append(c.Firewall.Inbound, y)
	}
	return yaml.Marshal(c)
}

// pick is a, or b when a is empty.
func pick(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// check refuses what Nebula would refuse at start, naming the field, so
// that a bad input fails where Holdfast renders it rather than on a member.
func (n NodeConfig) check() error {
	var errs []error
	for _, f := range []struct {
		name string
		pem  []byte
		file string
	}{
		{"ca", n.PKI.CA, n.PKI.CAFile},
		{"cert", n.PKI.Cert, n.PKI.CertFile},
		{"key", n.PKI.Key.Expose(), n.PKI.KeyFile},
	} {
		switch {
		case len(f.pem) > 0 && f.file != "":
			errs = append(errs, fmt.Errorf("pki %s: both PEM and a file given", f.name))
		case len(f.pem) == 0 && f.file == "":
			errs = append(errs, fmt.Errorf("pki %s: neither PEM nor a file given", f.name))
		case len(f.pem) > 0 && !bytes.Contains(f.pem, []byte("-----BEGIN")):
			// Nebula reads pki values without a PEM header as file paths.
			errs = append(errs, fmt.Errorf("pki %s: not PEM", f.name))
		}
	}
	if n.ListenPort < 0 || n.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d: not a port", n.ListenPort))
	}
	if n.AmLighthouse && n.ListenPort == 0 {
		errs = append(errs, errors.New("a lighthouse needs a fixed listen port"))
	}
	for _, iv := range []struct {
		name string
		d    time.Duration
	}{{"lighthouse interval", n.LighthouseInterval}, {"alive interval", n.AliveInterval}} {
		if iv.d < 0 || iv.d%time.Second != 0 {
			errs = append(errs, fmt.Errorf("%s %s: want whole seconds", iv.name, iv.d))
		}
	}
	seen := map[netip.Addr]bool{}
	for _, lh := range n.Lighthouses {
		if !lh.IP.IsValid() {
			errs = append(errs, errors.New("lighthouse: no overlay address"))
			continue
		}
		if seen[lh.IP] {
			errs = append(errs, fmt.Errorf("lighthouse %s: listed twice", lh.IP))
		}
		seen[lh.IP] = true
		if len(lh.Underlay) == 0 {
			errs = append(errs, fmt.Errorf("lighthouse %s: no underlay address", lh.IP))
		}
		for _, u := range lh.Underlay {
			if _, port, err := net.SplitHostPort(u); err != nil {
				errs = append(errs, fmt.Errorf("lighthouse %s: underlay %q: want host:port", lh.IP, u))
			} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				errs = append(errs, fmt.Errorf("lighthouse %s: underlay %q: port is not 1-65535", lh.IP, u))
			}
		}
	}
	for i, r := range n.Inbound {
		if err := r.check(); err != nil {
			errs = append(errs, fmt.Errorf("inbound rule %d: %w", i+1, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("nebula config: %w", errors.Join(errs...))
	}
	return nil
}

func (r Rule) check() error {
	if !slices.Contains([]string{"tcp", "udp", "icmp", "any"}, r.Proto) {
		return fmt.Errorf("proto %q: want tcp, udp, icmp or any", r.Proto)
	}
	if r.Proto != "icmp" {
		if err := checkPort(r.Port); err != nil {
			return err
		}
	}
	if len(r.Groups) == 0 && r.Group == "" && r.Host == "" && r.CIDR == "" {
		return errors.New("says nobody: set groups, group, host or cidr")
	}
	if len(r.Groups) > 0 && r.Group != "" {
		return errors.New("both group and groups: Nebula takes one")
	}
	if slices.Contains(r.Groups, "") {
		return errors.New("an empty group name")
	}
	if r.CIDR != "" && r.CIDR != "any" {
		if _, err := netip.ParsePrefix(r.CIDR); err != nil {
			return fmt.Errorf("cidr: %w", err)
		}
	}
	return nil
}

func checkPort(s string) error {
	if s == "" || s == "any" {
		return nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 1 || a > 65535 {
		return fmt.Errorf("port %q: want a port, a range lo-hi, or any", s)
	}
	if isRange {
		b, err := strconv.Atoi(hi)
		if err != nil || b < a || b > 65535 {
			return fmt.Errorf("port %q: want a port, a range lo-hi, or any", s)
		}
	}
	return nil
}
