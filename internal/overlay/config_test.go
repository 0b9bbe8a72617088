package overlay

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slackhq/nebula"
	"github.com/slackhq/nebula/cert"
	"github.com/slackhq/nebula/config"
	"github.com/slackhq/nebula/firewall"

	"github.com/holdfast/holdfast/internal/auth"
)

// quiet keeps Nebula's logs (which, in config-test mode, print the whole
// config with its inline key) out of the test output.
var quiet = slog.New(slog.DiscardHandler)

// load reads a rendered config the way the nebula binary does.
func load(t *testing.T, rendered []byte) *config.C {
	t.Helper()
	c := config.NewC(quiet)
	if err := c.LoadString(string(rendered)); err != nil {
		t.Fatalf("nebula cannot read the config: %v\n%s", err, rendered)
	}
	return c
}

// nebulaAccepts runs Nebula's own config test (`nebula -test`): it
// builds the PKI, firewall, lighthouse and punchy from the config and
// stops short of the tun device and sockets, so it needs no root.
func nebulaAccepts(t *testing.T, rendered []byte) {
	t.Helper()
	if _, err := nebula.Main(load(t, rendered), true, "holdfast-test", quiet, nil); err != nil {
		t.Fatalf("nebula refuses the config: %v", err)
	}
}

// firewallOf builds the firewall Nebula would enforce with this config.
func firewallOf(t *testing.T, rendered []byte, host cert.Certificate) *nebula.Firewall {
	t.Helper()
	c := load(t, rendered)
	fw := nebula.NewFirewall(quiet, time.Minute, time.Minute, time.Minute, host)
	for _, inbound := range []bool{false, true} {
		if err := nebula.AddFirewallRulesFromConfig(quiet, inbound, c, fw); err != nil {
			t.Fatalf("nebula refuses the firewall: %v", err)
		}
	}
	return fw
}

var arvandorLighthouses = []Lighthouse{
	{IP: netip.MustParseAddr("10.10.10.1"), Underlay: []string{"192.168.100.11:4242"}},
	{IP: netip.MustParseAddr("10.10.10.2"), Underlay: []string{"192.168.100.12:4242", "localhost:4242"}},
}

func TestConfigIsNebulasOwn(t *testing.T) {
	ca := newCA(t, CAOptions{})
	now := time.Now()
	pg, err := ca.Issue(Member{Name: "postgres-01", IP: netip.MustParsePrefix("10.10.10.21/24"), Groups: []string{"infra"}}, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	rules := []Rule{
		{Port: "5432", Proto: "tcp", Group: "infra"},
		{Port: "5432", Proto: "tcp", Groups: []string{"projects"}},
		{Port: "9100-9102", Proto: "tcp", Host: "monitor-01"},
		{Proto: "udp", Port: "53", CIDR: "10.10.10.0/24"},
	}
	rendered, err := Config(NodeConfig{
		PKI:         InlinePKI(ca, pg, nil),
		Lighthouses: arvandorLighthouses,
		ListenPort:  DefaultPort,
		Inbound:     rules,
	})
	if err != nil {
		t.Fatal(err)
	}
	nebulaAccepts(t, rendered)

	c := load(t, rendered)
	if got := c.GetStringSlice("lighthouse.hosts", nil); !slices.Equal(got, []string{"10.10.10.1", "10.10.10.2"}) {
		t.Errorf("lighthouse.hosts = %v", got)
	}
	if got := c.GetMap("static_host_map", nil); len(got) != 2 {
		t.Errorf("static_host_map = %v, want both lighthouses", got)
	}
	if c.GetBool("lighthouse.am_lighthouse", true) || c.GetInt("listen.port", 0) != DefaultPort ||
		c.GetString("tun.dev", "") != DefaultTunDevice || !c.GetBool("punchy.punch", false) ||
		!c.GetBool("pki.disconnect_invalid", false) {
		t.Errorf("lighthouse, listen, tun, punchy or pki settings are not what was asked:\n%s", rendered)
	}

	fw := firewallOf(t, rendered, pg.Cert)
	// Outbound: anything.
	if out := fw.OutRules.AnyProto[firewall.PortAny]; out == nil || out.Any == nil || out.Any.Any == nil {
		t.Fatal("outbound is not open to any host")
	}
	// Inbound: exactly the rules, nothing for ICMP or anything else.
	in := fw.InRules.TCP[5432]
	if in == nil || in.Any == nil || len(in.Any.Groups) != 2 ||
		!slices.Equal(in.Any.Groups[0].Groups, []string{"infra"}) || !slices.Equal(in.Any.Groups[1].Groups, []string{"projects"}) {
		t.Fatalf("tcp/5432 is not open to exactly groups infra and projects: %+v", in)
	}
	for _, p := range []int32{9100, 9101, 9102} {
		if r := fw.InRules.TCP[p]; r == nil || r.Any.Hosts["monitor-01"] == nil {
			t.Errorf("tcp/%d is not open to host monitor-01", p)
		}
	}
	if r := fw.InRules.UDP[53]; r == nil || r.Any.CIDR == nil {
		t.Error("udp/53 is not open to the overlay's CIDR")
	}
	if len(fw.InRules.TCP) != 4 || len(fw.InRules.UDP) != 1 || len(fw.InRules.ICMP) != 0 || len(fw.InRules.AnyProto) != 0 {
		t.Errorf("inbound has more than the rules: tcp %d udp %d icmp %d any %d", len(fw.InRules.TCP), len(fw.InRules.UDP), len(fw.InRules.ICMP), len(fw.InRules.AnyProto))
	}
	if fw.InboundSendReject || fw.OutboundSendReject {
		t.Error("the firewall rejects instead of dropping")
	}

	// ICMP only when a rule says so.
	rendered, err = Config(NodeConfig{
		PKI:         InlinePKI(ca, pg, nil),
		Lighthouses: arvandorLighthouses,
		ListenPort:  DefaultPort,
		Inbound:     append(rules, Rule{Proto: "icmp", Group: "admin"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := firewallOf(t, rendered, pg.Cert).InRules.ICMP[firewall.PortAny]; r == nil || len(r.Any.Groups) != 1 || r.Any.Groups[0].Groups[0] != "admin" {
		t.Fatal("an icmp rule for admin does not let admin ping")
	}
}

func TestLighthouseConfig(t *testing.T) {
	ca := newCA(t, CAOptions{})
	lh, err := ca.Issue(Member{Name: "lighthouse-01", IP: netip.MustParsePrefix("10.10.10.1/24"), Groups: []string{"infra"}}, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := Config(NodeConfig{PKI: InlinePKI(ca, lh, nil), Lighthouses: arvandorLighthouses, AmLighthouse: true, ListenPort: DefaultPort})
	if err != nil {
		t.Fatal(err)
	}
	nebulaAccepts(t, rendered)
	c := load(t, rendered)
	if !c.GetBool("lighthouse.am_lighthouse", false) || len(c.GetStringSlice("lighthouse.hosts", nil)) != 0 {
		t.Fatalf("a lighthouse must be one and list no lighthouses:\n%s", rendered)
	}
}

func TestRevokedFingerprintIsBlocklistedByNebula(t *testing.T) {
	ca := newCA(t, CAOptions{})
	now := time.Now()
	old, err := ca.Issue(Member{Name: "game-01", IP: netip.MustParsePrefix("10.10.10.50/24"), Groups: []string{"projects"}}, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(old.CertPEM, now); err != nil {
		t.Fatal(err)
	}
	replacement, err := ca.Issue(Member{Name: "game-01", IP: netip.MustParsePrefix("10.10.10.50/24"), Groups: []string{"games"}}, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ca.Issue(Member{Name: "postgres-01", IP: netip.MustParsePrefix("10.10.10.21/24")}, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	bl, err := ca.Blocklist(now)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := Config(NodeConfig{PKI: InlinePKI(ca, peer, bl), Lighthouses: arvandorLighthouses, ListenPort: DefaultPort})
	if err != nil {
		t.Fatal(err)
	}
	if got := load(t, rendered).GetStringSlice("pki.blocklist", nil); !slices.Equal(got, []string{old.Fingerprint}) {
		t.Fatalf("pki.blocklist = %v, want [%s]", got, old.Fingerprint)
	}
	nebulaAccepts(t, rendered)

	// The peer's Nebula refuses the revoked certificate and takes its
	// replacement.
	pki, err := nebula.NewPKIFromConfig(quiet, load(t, rendered))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.GetCAPool().VerifyCertificate(now, old.Cert); !errors.Is(err, cert.ErrBlockListed) {
		t.Fatalf("the peer's Nebula verifies the revoked certificate: %v", err)
	}
	if _, err := pki.GetCAPool().VerifyCertificate(now, replacement.Cert); err != nil {
		t.Fatalf("the peer's Nebula refuses the replacement: %v", err)
	}
}

func TestConfigWithFilePaths(t *testing.T) {
	ca := newCA(t, CAOptions{})
	h, err := ca.Issue(Member{Name: "laptop", IP: netip.MustParsePrefix("10.10.10.200/24"), Groups: []string{"admin"}}, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{"ca.crt": ca.CertPEM(), "host.crt": h.CertPEM, "host.key": h.Key.Expose()}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rendered, err := Config(NodeConfig{
		PKI:         PKI{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "host.crt"), KeyFile: filepath.Join(dir, "host.key")},
		Lighthouses: arvandorLighthouses,
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rendered), "PRIVATE KEY") {
		t.Fatal("a config with file paths holds the key")
	}
	nebulaAccepts(t, rendered)
}

func TestConfigRefusesWhatNebulaWould(t *testing.T) {
	ca := newCA(t, CAOptions{})
	h, err := ca.Issue(Member{Name: "a", IP: netip.MustParsePrefix("10.10.10.5/24")}, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good := func() NodeConfig {
		return NodeConfig{PKI: InlinePKI(ca, h, nil), Lighthouses: arvandorLighthouses, ListenPort: DefaultPort}
	}
	if _, err := Config(good()); err != nil {
		t.Fatalf("the good config: %v", err)
	}
	for name, change := range map[string]func(*NodeConfig){
		"no ca":                 func(n *NodeConfig) { n.PKI.CA = nil },
		"key and key file":      func(n *NodeConfig) { n.PKI.KeyFile = "/etc/nebula/host.key" },
		"key not PEM":           func(n *NodeConfig) { n.PKI.Key = auth.SecretString("secret") },
		"lighthouse on port 0":  func(n *NodeConfig) { n.AmLighthouse, n.ListenPort = true, 0 },
		"port out of range":     func(n *NodeConfig) { n.ListenPort = 70000 },
		"lighthouse no address": func(n *NodeConfig) { n.Lighthouses = []Lighthouse{{Underlay: []string{"1.2.3.4:4242"}}} },
		"lighthouse no underlay": func(n *NodeConfig) {
			n.Lighthouses = []Lighthouse{{IP: netip.MustParseAddr("10.10.10.1")}}
		},
		"lighthouse underlay without port": func(n *NodeConfig) {
			n.Lighthouses = []Lighthouse{{IP: netip.MustParseAddr("10.10.10.1"), Underlay: []string{"1.2.3.4"}}}
		},
		"lighthouse twice": func(n *NodeConfig) { n.Lighthouses = append(n.Lighthouses, arvandorLighthouses[0]) },
		"rule for nobody":  func(n *NodeConfig) { n.Inbound = []Rule{{Port: "22", Proto: "tcp"}} },
		"rule bad proto":   func(n *NodeConfig) { n.Inbound = []Rule{{Port: "22", Proto: "sctp", Group: "admin"}} },
		"rule bad port":    func(n *NodeConfig) { n.Inbound = []Rule{{Port: "ssh", Proto: "tcp", Group: "admin"}} },
		"rule bad range":   func(n *NodeConfig) { n.Inbound = []Rule{{Port: "90-80", Proto: "tcp", Group: "admin"}} },
		"rule group and groups": func(n *NodeConfig) {
			n.Inbound = []Rule{{Port: "22", Proto: "tcp", Group: "admin", Groups: []string{"infra"}}}
		},
		"rule bad cidr": func(n *NodeConfig) { n.Inbound = []Rule{{Port: "22", Proto: "tcp", CIDR: "10.0.0.0/33"}} },
	} {
		n := good()
		change(&n)
		if _, err := Config(n); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}

// TestStockNebulaAcceptsTheConfig runs the nebula binary operators install
// (Debian's is 1.6) in its config-test mode on a member's config with
// every kind of rule and a blocklist: what Holdfast renders must start
// the stock client too, not only the library it links.
func TestStockNebulaAcceptsTheConfig(t *testing.T) {
	bin, err := exec.LookPath("nebula")
	if err != nil {
		t.Skip("no nebula binary on PATH (apt-get install nebula)")
	}
	ca := newCA(t, CAOptions{})
	now := time.Now()
	h, err := ca.Issue(Member{Name: "postgres-01", IP: netip.MustParsePrefix("10.10.10.21/24"), Groups: []string{"infra"}}, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	old, err := ca.Issue(Member{Name: "game-01", IP: netip.MustParsePrefix("10.10.10.50/24")}, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(old.CertPEM, now); err != nil {
		t.Fatal(err)
	}
	bl, err := ca.Blocklist(now)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := Config(NodeConfig{
		PKI:         InlinePKI(ca, h, bl),
		Lighthouses: arvandorLighthouses,
		ListenPort:  DefaultPort,
		Inbound: []Rule{
			{Port: "5432", Proto: "tcp", Group: "infra"},
			{Port: "5432", Proto: "tcp", Groups: []string{"projects", "db"}},
			{Port: "9100-9102", Proto: "tcp", Host: "monitor-01"},
			{Port: "53", Proto: "udp", CIDR: "10.10.10.0/24"},
			{Proto: "icmp", Group: "admin"},
			{Proto: "any", Host: "any"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(path, rendered, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-test", "-config", path).CombinedOutput()
	if err != nil {
		// Its output holds the config with the test key; it is a test key.
		t.Fatalf("%s -test refuses the config: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), "Firewall started") {
		t.Fatalf("%s -test did not get to the firewall:\n%s", bin, out)
	}
}
