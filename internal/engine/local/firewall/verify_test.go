package firewall_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local/firewall"
	"github.com/vishvananda/netns"
)

func labInput(t *testing.T) (*compile.State, firewall.Input) {
	st := compileSpec(t, labSpec)
	return st, firewall.FromState(st, "a", "wan0")
}

func ipOf(t *testing.T, st *compile.State, name string) netip.Addr {
	t.Helper()
	for _, in := range st.Instances {
		if in.Name == name {
			return netip.MustParseAddr(in.IP)
		}
	}
	t.Fatalf("no instance %q", name)
	return netip.Addr{}
}

func verify(t *testing.T, ns netns.NsHandle, in firewall.Input) []string {
	t.Helper()
	drift, err := firewall.Verify(ns, in)
	if err != nil {
		t.Fatal(err)
	}
	return drift
}

// tamper changes the table behind Holdfast's back, through the nftables
// API as another tool would.
func tamper(t *testing.T, ns netns.NsHandle, f func(c *nftables.Conn, tb *nftables.Table)) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	f(c, &nftables.Table{Family: nftables.TableFamilyINet, Name: firewall.TableName})
	if err := c.Flush(); err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

func wantDrift(t *testing.T, drift []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(drift, w) {
			t.Errorf("drift %q\nlacks %q", drift, w)
		}
	}
}

// TestVerifyNamesEveryChangeAndApplyRepairsIt damages the table in every
// way Verify claims to see and checks that it names the damage, and that
// the next Apply restores exactly the table it had made.
func TestVerifyNamesEveryChangeAndApplyRepairsIt(t *testing.T) {
	requireRoot(t)
	st, in := labInput(t)
	ns := newNS(t, "verify")
	if d := verify(t, ns, in); !slices.Equal(d, []string{"table inet holdfast is missing"}) {
		t.Errorf("before Apply: %q", d)
	}
	apply := func() {
		t.Helper()
		if err := firewall.Apply(ns, in); err != nil {
			t.Fatal(err)
		}
		if d := verify(t, ns, in); len(d) > 0 {
			t.Fatalf("after Apply: drift %q", d)
		}
	}
	apply()
	apply() // idempotent

	web := ipOf(t, st, "web")
	inboundPort := &nftables.Set{Name: "inbound_port", KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)}
	// The key as the kernel stores it: address, protocol, port, each
	// padded to four bytes.
	key := func(a netip.Addr, proto byte, port uint16) []byte {
		b := a.As4()
		return append(b[:], proto, 0, 0, 0, byte(port>>8), byte(port), 0, 0)
	}

	cases := []struct {
		name   string
		damage func(c *nftables.Conn, tb *nftables.Table)
		want   []string
	}{
		{"a rule deleted", func(c *nftables.Conn, tb *nftables.Table) {
			rules, err := c.GetRules(tb, &nftables.Chain{Name: "forward", Table: tb})
			if err != nil || len(rules) < 5 {
				t.Fatalf("forward rules: %v, %d", err, len(rules))
			}
			if err := c.DelRule(rules[4]); err != nil {
				t.Fatal(err)
			}
		}, []string{
			"chain forward: 10 rules, want 11",
			`chain forward: rule "ip saddr . ip daddr . meta l4proto . th dport @from_zone_port accept" is missing`,
		}},
		{"a rule added", func(c *nftables.Conn, tb *nftables.Table) {
			c.InsertRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: "forward", Table: tb}, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		}, []string{"chain forward: 12 rules, want 11", "chain forward: 1 rule is not Holdfast's"}},
		{"a set element deleted", func(c *nftables.Conn, tb *nftables.Table) {
			inboundPort.Table = tb
			k := key(web, 6, 8443)
			if err := c.SetDeleteElements(inboundPort, []nftables.SetElement{{Key: k, KeyEnd: k}}); err != nil {
				t.Fatal(err)
			}
		}, []string{"set inbound_port: missing { " + web.String() + " . tcp . 8443 }"}},
		{"a set element added", func(c *nftables.Conn, tb *nftables.Table) {
			inboundPort.Table = tb
			if err := c.SetAddElements(inboundPort, []nftables.SetElement{{Key: key(web, 6, 22), KeyEnd: key(web, 6, 22)}}); err != nil {
				t.Fatal(err)
			}
		}, []string{"set inbound_port: not Holdfast's { " + web.String() + " . tcp . 22 }"}},
		{"the forward policy opened", func(c *nftables.Conn, tb *nftables.Table) {
			accept := nftables.ChainPolicyAccept
			c.AddChain(&nftables.Chain{Name: "forward", Table: tb, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		}, []string{"chain forward: policy accept, want drop"}},
		{"a chain flushed", func(c *nftables.Conn, tb *nftables.Table) {
			c.FlushChain(&nftables.Chain{Name: "inbound", Table: tb})
		}, []string{"chain inbound: 0 rules, want 3"}},
		{"a foreign chain added", func(c *nftables.Conn, tb *nftables.Table) {
			c.AddChain(&nftables.Chain{Name: "backdoor", Table: tb})
		}, []string{"chain backdoor is not Holdfast's"}},
		{"a set flushed", func(c *nftables.Conn, tb *nftables.Table) {
			c.FlushSet(&nftables.Set{Name: "cloud", Table: tb})
		}, []string{"set cloud: missing { 10.0.10.0/24, 10.2.10.0/24, 10.4.30.0/24, 10.6.10.0/24 }"}},
		{"the table deleted", func(c *nftables.Conn, tb *nftables.Table) {
			c.DelTable(tb)
		}, []string{"table inet holdfast is missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tamper(t, ns, tc.damage)
			drift := verify(t, ns, in)
			t.Logf("drift: %q", drift)
			wantDrift(t, drift, tc.want...)
			apply()
		})
	}

	if err := firewall.Delete(ns); err != nil {
		t.Fatal(err)
	}
	if err := firewall.Delete(ns); err != nil {
		t.Errorf("Delete of a missing table: %v", err)
	}
	if d := verify(t, ns, in); !slices.Equal(d, []string{"table inet holdfast is missing"}) {
		t.Errorf("after Delete: %q", d)
	}
}

// TestVerifyChangesNothing: reading the table back leaves it as it was,
// even when it differs from the input.
func TestVerifyChangesNothing(t *testing.T) {
	requireRoot(t)
	_, in := labInput(t)
	ns := newNS(t, "verify-ro")
	if err := firewall.Apply(ns, in); err != nil {
		t.Fatal(err)
	}
	other := in
	other.Flows = nil
	for range 2 {
		if d := verify(t, ns, other); len(d) == 0 {
			t.Fatal("a ruleset without flows verified clean against one with flows")
		} else if !strings.Contains(strings.Join(d, "\n"), "not Holdfast's") {
			t.Errorf("drift %q does not name the extra elements", d)
		}
	}
	if d := verify(t, ns, in); len(d) > 0 {
		t.Errorf("Verify changed the table: %q", d)
	}
}

// TestIngressForwardsAndKeeps: a site's public address forwards its ports
// to their instance (a dnat chain) and accepts the ports the node keeps;
// Verify sees the table as applied, and names a forward that changed.
func TestIngressForwardsAndKeeps(t *testing.T) {
	requireRoot(t)
	st, in := labInput(t)
	web := ipOf(t, st, "web")
	in.Ingress = &firewall.Ingress{Address: netip.MustParseAddr("198.51.100.10"), HostPorts: []int{22},
		Forward: []compile.Forward{{Proto: "tcp", Port: 443, To: "web", ToIP: web.String()}, {Proto: "udp", Port: 51820, To: "web", ToIP: web.String()}}}
	text, err := firewall.Ruleset(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"type nat hook prerouting priority dstnat; policy accept;",
		`iifname "wan0" ip daddr 198.51.100.10 tcp dport 443 dnat ip to ` + web.String(),
		`iifname "wan0" ip daddr 198.51.100.10 udp dport 51820 dnat ip to ` + web.String(),
		`iifname "wan0" tcp dport 22 accept`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the ruleset lacks %q:\n%s", want, text)
		}
	}
	ns := newNS(t, "ingress")
	if err := firewall.Apply(ns, in); err != nil {
		t.Fatal(err)
	}
	if d := verify(t, ns, in); len(d) > 0 {
		t.Fatalf("after Apply: drift %q", d)
	}
	moved := in
	moved.Ingress = &firewall.Ingress{Address: in.Ingress.Address, HostPorts: []int{22},
		Forward: []compile.Forward{{Proto: "tcp", Port: 8443, To: "web", ToIP: web.String()}, in.Ingress.Forward[1]}}
	if d := verify(t, ns, moved); !slices.ContainsFunc(d, func(s string) bool { return strings.Contains(s, "dport 8443") && strings.Contains(s, "missing") }) {
		t.Errorf("a moved forward: drift %q", d)
	}
}
