package pve_test

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// newNetCluster is the two-node cluster with short SDN and network reload
// tasks too.
func newNetCluster(t *testing.T) *cluster {
	d := maps.Clone(fast)
	d[pveemu.TaskSDNApply] = 20 * time.Millisecond
	d[pveemu.TaskNetworkReload] = 20 * time.Millisecond
	return newCluster(t, pveemu.Config{Seed: 1, Durations: d})
}

// refusedOnce checks that err is a refusal PVE answered to one request
// (the client did not retry it) and returns its message.
func refusedOnce(t *testing.T, c *cluster, before int, err error) string {
	t.Helper()
	var e *pve.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a PVE error, got %v", err)
	}
	if n := c.emu.Stats().Requests - before; n != 1 || pve.IsRetryable(err) {
		t.Fatalf("%v: %d requests, retryable %v; want a single, final refusal", err, n, pve.IsRetryable(err))
	}
	return e.Message
}

func findZone(zones []pve.SDNZone, id string) pve.SDNZone {
	i := slices.IndexFunc(zones, func(z pve.SDNZone) bool { return z.Zone == id })
	if i < 0 {
		return pve.SDNZone{}
	}
	return zones[i]
}

func findVNet(vnets []pve.VNet, id string) pve.VNet {
	i := slices.IndexFunc(vnets, func(v pve.VNet) bool { return v.VNet == id })
	if i < 0 {
		return pve.VNet{}
	}
	return vnets[i]
}

func TestSDNRoundTrip(t *testing.T) {
	c := newNetCluster(t)
	cl := c.client(t)
	ctx := ctx(t)

	if err := cl.CreateSDNZone(ctx, pve.SDNZone{Zone: "hfz", Type: "vlan", Bridge: "vmbr0", Nodes: []string{"pve2", "pve1"}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateSDNZone(ctx, pve.SDNZone{Zone: "hfx", Type: "vxlan", Peers: []string{"192.0.2.11", "192.0.2.12"}, MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateVNet(ctx, pve.VNet{VNet: "hfweb", Zone: "hfz", Tag: 10, Alias: "holdfast/web"}); err != nil {
		t.Fatal(err)
	}
	sub := pve.Subnet{VNet: "hfweb", CIDR: "10.0.10.0/24", Gateway: "10.0.10.1", SNAT: true, DHCPRange: []string{"10.0.10.50-10.0.10.99"}}
	if err := cl.CreateSubnet(ctx, sub); err != nil {
		t.Fatal(err)
	}

	// Pending: listed as they will be, marked new.
	zones, err := cl.SDNZones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	z := findZone(zones, "hfz")
	if z.Type != "vlan" || z.Bridge != "vmbr0" || !slices.Equal(z.Nodes, []string{"pve1", "pve2"}) || z.State != "new" || len(z.Digest) != 40 {
		t.Fatalf("zone hfz: %+v", z)
	}
	if x := findZone(zones, "hfx"); !slices.Equal(x.Peers, []string{"192.0.2.11", "192.0.2.12"}) || x.MTU != 1450 || x.State != "new" {
		t.Fatalf("zone hfx: %+v", x)
	}
	vnets, err := cl.VNets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v := findVNet(vnets, "hfweb"); v != (pve.VNet{VNet: "hfweb", Zone: "hfz", Alias: "holdfast/web", Tag: 10, Digest: v.Digest, State: "new"}) || v.Digest == "" {
		t.Fatalf("vnet hfweb: %+v", v)
	}
	subnets, err := cl.Subnets(ctx, "hfweb")
	if err != nil {
		t.Fatal(err)
	}
	id := pve.SubnetID("hfz", "10.0.10.0/24")
	if id != "hfz-10.0.10.0-24" || len(subnets) != 1 {
		t.Fatalf("subnet ID %q, subnets %+v", id, subnets)
	}
	if s := subnets[0]; s.ID != id || s.CIDR != sub.CIDR || s.Gateway != sub.Gateway || !s.SNAT ||
		!slices.Equal(s.DHCPRange, sub.DHCPRange) || s.State != "new" {
		t.Fatalf("subnet: %+v", s)
	}

	// Applied: running, and read back the same.
	if err := cl.ApplySDN(ctx); err != nil {
		t.Fatal(err)
	}
	vnets, _ = cl.VNets(ctx)
	subnets, _ = cl.Subnets(ctx, "hfweb")
	if v := findVNet(vnets, "hfweb"); v.State != "" || v.Tag != 10 {
		t.Fatalf("vnet hfweb applied: %+v", v)
	}
	if s := subnets[0]; s.State != "" || !slices.Equal(s.DHCPRange, sub.DHCPRange) || s.Gateway != sub.Gateway {
		t.Fatalf("subnet applied: %+v", s)
	}

	// Updates are pending changes until applied.
	v := findVNet(vnets, "hfweb")
	v.Alias, v.Tag = "holdfast/web2", 11
	if err := cl.UpdateVNet(ctx, v); err != nil {
		t.Fatal(err)
	}
	s := subnets[0]
	s.Gateway, s.SNAT, s.DHCPRange = "10.0.10.254", false, []string{"10.0.10.100-10.0.10.150", "10.0.10.200-10.0.10.210"}
	if err := cl.UpdateSubnet(ctx, s); err != nil {
		t.Fatal(err)
	}
	vnets, _ = cl.VNets(ctx)
	subnets, _ = cl.Subnets(ctx, "hfweb")
	if v := findVNet(vnets, "hfweb"); v.State != "changed" || v.Alias != "holdfast/web2" || v.Tag != 11 {
		t.Fatalf("vnet hfweb changed: %+v", v)
	}
	// The emulator keeps the last of a repeated parameter only.
	if s := subnets[0]; s.State != "changed" || s.Gateway != "10.0.10.254" || s.SNAT || len(s.DHCPRange) == 0 {
		t.Fatalf("subnet changed: %+v", s)
	}

	// A vnet with subnets cannot go; removals are pending too.
	before := c.emu.Stats().Requests
	err = cl.DeleteVNet(ctx, "hfweb")
	if !strings.Contains(refusedOnce(t, c, before, err), "Can't delete vnet if subnets exists") || pve.IsNotFound(err) {
		t.Fatalf("deleting a vnet with subnets: %v", err)
	}
	if err := cl.DeleteSubnet(ctx, "hfweb", id); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteVNet(ctx, "hfweb"); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteSDNZone(ctx, "hfz"); err != nil {
		t.Fatal(err)
	}
	vnets, _ = cl.VNets(ctx)
	zones, _ = cl.SDNZones(ctx)
	if v := findVNet(vnets, "hfweb"); v.State != "deleted" || v.Tag != 10 {
		t.Fatalf("vnet hfweb deleted: %+v", v)
	}
	if z := findZone(zones, "hfz"); z.State != "deleted" {
		t.Fatalf("zone hfz deleted: %+v", z)
	}
	if err := cl.ApplySDN(ctx); err != nil {
		t.Fatal(err)
	}
	if vnets, _ = cl.VNets(ctx); len(vnets) != 0 {
		t.Fatalf("vnets after applying the removal: %+v", vnets)
	}

	// Deleting what is gone.
	for name, err := range map[string]error{
		"zone":              cl.DeleteSDNZone(ctx, "hfz"),
		"vnet":              cl.DeleteVNet(ctx, "hfweb"),
		"subnet of no vnet": cl.DeleteSubnet(ctx, "hfweb", id),
	} {
		if !pve.IsNotFound(err) || pve.IsRetryable(err) {
			t.Errorf("deleting a %s that is gone: %v", name, err)
		}
	}
}

func TestSDNDigestMismatch(t *testing.T) {
	c := newNetCluster(t)
	cl := c.client(t)
	ctx := ctx(t)
	for _, z := range []pve.SDNZone{{Zone: "hfa", Type: "simple"}, {Zone: "hfb", Type: "simple"}} {
		if err := cl.CreateSDNZone(ctx, z); err != nil {
			t.Fatal(err)
		}
	}
	zones, err := cl.SDNZones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := findZone(zones, "hfa"), findZone(zones, "hfb")
	a.MTU = 1400
	if err := cl.UpdateSDNZone(ctx, a); err != nil {
		t.Fatalf("update with a fresh digest: %v", err)
	}
	// The digest is zones.cfg's: hfa's change makes hfb's stale too.
	b.MTU = 1300
	before := c.emu.Stats().Requests
	err = cl.UpdateSDNZone(ctx, b)
	if msg := refusedOnce(t, c, before, err); !pve.IsDigestMismatch(err) || !strings.Contains(msg, "update sdn zone object failed") {
		t.Fatalf("update with a stale digest: %v", err)
	}
	b.Digest = ""
	if err := cl.UpdateSDNZone(ctx, b); err != nil {
		t.Fatalf("update without a digest: %v", err)
	}
}

func TestSDNRefusals(t *testing.T) {
	c := newNetCluster(t)
	cl := c.client(t)
	ctx := ctx(t)
	var pe *pve.Error

	err := cl.CreateSDNZone(ctx, pve.SDNZone{Zone: "toolongname", Type: "vlan", Bridge: "vmbr0"})
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusBadRequest ||
		pe.Params["zone"] != "invalid format - zone ID 'toolongname' can't be more length than 8 characters" {
		t.Fatalf("zone ID too long: %v", err)
	}
	if err := cl.CreateSDNZone(ctx, pve.SDNZone{Zone: "hfz", Type: "vlan", Bridge: "vmbr0"}); err != nil {
		t.Fatal(err)
	}
	before := c.emu.Stats().Requests
	err = cl.CreateSDNZone(ctx, pve.SDNZone{Zone: "hfz", Type: "vlan", Bridge: "vmbr1"})
	if msg := refusedOnce(t, c, before, err); !pve.IsExists(err) || !strings.Contains(msg, "already defined") {
		t.Fatalf("duplicate zone: %v", err)
	}
	err = cl.CreateVNet(ctx, pve.VNet{VNet: "hfa", Zone: "hfz", Tag: 1 << 24})
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusBadRequest || pe.Params["tag"] != "value must have a maximum value of 16777215" {
		t.Fatalf("tag out of the schema's range: %v", err)
	}
	before = c.emu.Stats().Requests
	err = cl.CreateVNet(ctx, pve.VNet{VNet: "hfa", Zone: "hfz", Tag: 4097})
	if msg := refusedOnce(t, c, before, err); !strings.Contains(msg, "tag: vlan tag max value is 4096") {
		t.Fatalf("VLAN tag above 4096 (PVE allows up to 4096): %v", err)
	}
	if err := cl.CreateVNet(ctx, pve.VNet{VNet: "hfa", Zone: "hfz", Tag: 10}); err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateVNet(ctx, pve.VNet{VNet: "hfa", Zone: "hfz", Tag: 11}); !pve.IsExists(err) {
		t.Fatalf("duplicate vnet: %v", err)
	}
	before = c.emu.Stats().Requests
	err = cl.CreateVNet(ctx, pve.VNet{VNet: "hfb", Zone: "hfz", Tag: 10})
	if msg := refusedOnce(t, c, before, err); !strings.Contains(msg, "tag 10 already exist in vnet hfa") {
		t.Fatalf("duplicate tag in a zone: %v", err)
	}
	err = cl.CreateSubnet(ctx, pve.Subnet{VNet: "hfa", CIDR: "10.0.10.0/24", DHCPRange: []string{"10.0.10.5"}})
	if err == nil || !strings.Contains(err.Error(), "want start-end") {
		t.Fatalf("malformed DHCP range: %v", err)
	}
	// An unknown property, which the client never sends.
	status, body := rawPost(t, c, "/cluster/sdn/zones", "zone=hfy&type=simple&colour=red")
	if status != http.StatusBadRequest || !strings.Contains(body, `"colour":"property is not defined in schema and the schema does not allow additional properties"`) {
		t.Fatalf("unknown property: %d %s", status, body)
	}
}
