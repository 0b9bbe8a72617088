package pve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// SDN (pve-network): zones, vnets and subnets. Writes change the pending
// configuration; ApplySDN makes it the running one and reloads the nodes'
// networks. The listings show the configuration as it will be after the
// next apply, and State says how that differs from what runs.
//
// Digests are those of the whole configuration file (zones.cfg, vnets.cfg,
// subnets.cfg), as PVE checks them: an update carrying one fails
// (IsDigestMismatch) if any object of that file changed since it was read.

// SDNZone is an SDN zone.
type SDNZone struct {
	Zone   string // up to 8 letters and digits, starting with a letter
	Type   string // simple, vlan, qinq, vxlan, evpn or faucet
	Bridge string // the node bridge carrying the VLANs (vlan, qinq)
	Peers  []string
	MTU    int // 0: the default
	Nodes  []string
	Digest string
	State  string // "" when running as configured, else new, changed or deleted
}

// SDNZones lists the zones, pending changes included.
func (c *Client) SDNZones(ctx context.Context) ([]SDNZone, error) {
	var out []SDNZone
	err := c.sdnList(ctx, "/cluster/sdn/zones", func(raw json.RawMessage, digest string) error {
		var w struct {
			Zone   string `json:"zone"`
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			Peers  string `json:"peers"`
			MTU    number `json:"mtu"`
			Nodes  string `json:"nodes"`
			State  string `json:"state"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return err
		}
		out = append(out, SDNZone{Zone: w.Zone, Type: w.Type, Bridge: w.Bridge, Peers: splitList(w.Peers),
			MTU: int(w.MTU), Nodes: sortedList(w.Nodes), Digest: digest, State: w.State})
		return nil
	})
	return out, err
}

// CreateSDNZone adds a zone (pending until ApplySDN).
func (c *Client) CreateSDNZone(ctx context.Context, z SDNZone) error {
	p := url.Values{"zone": {z.Zone}, "type": {z.Type}}
	setNonEmpty(p, "bridge", z.Bridge)
	setNonEmpty(p, "peers", strings.Join(z.Peers, ","))
	setNonEmpty(p, "nodes", strings.Join(z.Nodes, ","))
	if z.MTU > 0 {
		p.Set("mtu", strconv.Itoa(z.MTU))
	}
	return c.do(ctx, http.MethodPost, "/cluster/sdn/zones", p, nil)
}

// UpdateSDNZone sets a zone's Bridge and Peers (when given), MTU and
// Nodes: an MTU of 0 or no Nodes removes the setting. A zone's type cannot
// change. With z.Digest set, PVE refuses the update if zones.cfg changed
// since.
func (c *Client) UpdateSDNZone(ctx context.Context, z SDNZone) error {
	p := url.Values{}
	var del []string
	setNonEmpty(p, "bridge", z.Bridge)
	setNonEmpty(p, "peers", strings.Join(z.Peers, ","))
	setNonEmpty(p, "digest", z.Digest)
	if z.MTU > 0 {
		p.Set("mtu", strconv.Itoa(z.MTU))
	} else {
		del = append(del, "mtu")
	}
	if len(z.Nodes) > 0 {
		p.Set("nodes", strings.Join(z.Nodes, ","))
	} else {
		del = append(del, "nodes")
	}
	setNonEmpty(p, "delete", strings.Join(del, ","))
	return c.do(ctx, http.MethodPut, "/cluster/sdn/zones/"+Escape(z.Zone), p, nil)
}

// DeleteSDNZone removes a zone (pending until ApplySDN). PVE refuses while
// a vnet uses it.
func (c *Client) DeleteSDNZone(ctx context.Context, zone string) error {
	return c.do(ctx, http.MethodDelete, "/cluster/sdn/zones/"+Escape(zone), nil, nil)
}

// VNet is an SDN vnet: a bridge named VNet on every node of its zone.
type VNet struct {
	VNet  string // up to 8 letters and digits, starting with a letter
	Zone  string
	Alias string
	Tag   int // the VLAN (vlan, qinq zones) or VNI (vxlan, evpn); 0 for none
	// Digest is vnets.cfg's.
	Digest string
	State  string
}

// VNets lists the vnets, pending changes included.
func (c *Client) VNets(ctx context.Context) ([]VNet, error) {
	var out []VNet
	err := c.sdnList(ctx, "/cluster/sdn/vnets", func(raw json.RawMessage, digest string) error {
		var w struct {
			VNet  string `json:"vnet"`
			Zone  string `json:"zone"`
			Alias string `json:"alias"`
			Tag   number `json:"tag"`
			State string `json:"state"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return err
		}
		out = append(out, VNet{VNet: w.VNet, Zone: w.Zone, Alias: w.Alias, Tag: int(w.Tag), Digest: digest, State: w.State})
		return nil
	})
	return out, err
}

// CreateVNet adds a vnet to a zone (pending until ApplySDN).
func (c *Client) CreateVNet(ctx context.Context, v VNet) error {
	p := url.Values{"vnet": {v.VNet}, "zone": {v.Zone}}
	setNonEmpty(p, "alias", v.Alias)
	if v.Tag > 0 {
		p.Set("tag", strconv.Itoa(v.Tag))
	}
	return c.do(ctx, http.MethodPost, "/cluster/sdn/vnets", p, nil)
}

// UpdateVNet sets a vnet's zone, alias and tag; an empty alias or a tag of
// 0 removes it. With v.Digest set, PVE refuses the update if vnets.cfg
// changed since.
func (c *Client) UpdateVNet(ctx context.Context, v VNet) error {
	p := url.Values{}
	var del []string
	setNonEmpty(p, "zone", v.Zone)
	setNonEmpty(p, "digest", v.Digest)
	if v.Alias != "" {
		p.Set("alias", v.Alias)
	} else {
		del = append(del, "alias")
	}
	if v.Tag > 0 {
		p.Set("tag", strconv.Itoa(v.Tag))
	} else {
		del = append(del, "tag")
	}
	setNonEmpty(p, "delete", strings.Join(del, ","))
	return c.do(ctx, http.MethodPut, "/cluster/sdn/vnets/"+Escape(v.VNet), p, nil)
}

// DeleteVNet removes a vnet (pending until ApplySDN). PVE refuses while it
// has subnets.
func (c *Client) DeleteVNet(ctx context.Context, vnet string) error {
	return c.do(ctx, http.MethodDelete, "/cluster/sdn/vnets/"+Escape(vnet), nil, nil)
}

// Subnet is an IP subnet of a vnet.
type Subnet struct {
	ID      string // PVE's, SubnetID(zone, CIDR)
	VNet    string
	CIDR    string
	Gateway string
	SNAT    bool
	// DHCPRange are address ranges "start-end", as "10.0.0.50-10.0.0.250".
	DHCPRange []string
	// Digest is subnets.cfg's.
	Digest string
	State  string
}

// SubnetID is PVE's ID of the subnet for cidr in a vnet of zone: the CIDR
// as given, its slash a dash, after the zone ("hfz-10.0.10.0-24").
func SubnetID(zone, cidr string) string {
	return zone + "-" + strings.Replace(cidr, "/", "-", 1)
}

// Subnets lists a vnet's subnets, pending changes included.
func (c *Client) Subnets(ctx context.Context, vnet string) ([]Subnet, error) {
	var out []Subnet
	err := c.sdnList(ctx, subnetsPath(vnet), func(raw json.RawMessage, digest string) error {
		var w struct {
			Subnet    string     `json:"subnet"`
			VNet      string     `json:"vnet"`
			CIDR      string     `json:"cidr"`
			Gateway   string     `json:"gateway"`
			SNAT      number     `json:"snat"`
			DHCPRange dhcpRanges `json:"dhcp-range"`
			State     string     `json:"state"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return err
		}
		out = append(out, Subnet{ID: w.Subnet, VNet: w.VNet, CIDR: w.CIDR, Gateway: w.Gateway, SNAT: w.SNAT != 0,
			DHCPRange: w.DHCPRange, Digest: digest, State: w.State})
		return nil
	})
	return out, err
}

func subnetsPath(vnet string) string { return "/cluster/sdn/vnets/" + Escape(vnet) + "/subnets" }

// CreateSubnet adds s.CIDR to s.VNet (pending until ApplySDN); PVE names
// it SubnetID(zone, s.CIDR).
func (c *Client) CreateSubnet(ctx context.Context, s Subnet) error {
	p := url.Values{"subnet": {s.CIDR}, "type": {"subnet"}}
	setNonEmpty(p, "gateway", s.Gateway)
	if s.SNAT {
		p.Set("snat", "1")
	}
	if err := setDHCPRanges(p, s.DHCPRange); err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, subnetsPath(s.VNet), p, nil)
}

// UpdateSubnet sets subnet s.ID's gateway, SNAT and DHCP ranges; an empty
// gateway, SNAT off or no ranges remove the setting. With s.Digest set,
// PVE refuses the update if subnets.cfg changed since.
func (c *Client) UpdateSubnet(ctx context.Context, s Subnet) error {
	p := url.Values{}
	var del []string
	setNonEmpty(p, "digest", s.Digest)
	if s.Gateway != "" {
		p.Set("gateway", s.Gateway)
	} else {
		del = append(del, "gateway")
	}
	if s.SNAT {
		p.Set("snat", "1")
	} else {
		del = append(del, "snat")
	}
	if len(s.DHCPRange) > 0 {
		if err := setDHCPRanges(p, s.DHCPRange); err != nil {
			return err
		}
	} else {
		del = append(del, "dhcp-range")
	}
	setNonEmpty(p, "delete", strings.Join(del, ","))
	return c.do(ctx, http.MethodPut, subnetsPath(s.VNet)+"/"+Escape(s.ID), p, nil)
}

// DeleteSubnet removes a subnet (pending until ApplySDN). Like PVE, it
// succeeds when the vnet has no such subnet; it fails (IsNotFound) when
// there is no such vnet.
func (c *Client) DeleteSubnet(ctx context.Context, vnet, id string) error {
	return c.do(ctx, http.MethodDelete, subnetsPath(vnet)+"/"+Escape(id), nil, nil)
}

// ApplySDN commits the pending SDN configuration as the running one and
// waits for the task that reloads every node's network (which also
// applies the nodes' own pending network changes, as in PVE).
func (c *Client) ApplySDN(ctx context.Context) error {
	return c.task(ctx, http.MethodPut, "/cluster/sdn", nil)
}

// sdnList reads an SDN listing as it will be after the next apply: PVE's
// pending view (pending=1) with each object's pending values over its
// running ones, and the file's digest, which only the plain listing
// carries. The plain listing is read first, so the digest is never newer
// than the view.
func (c *Client) sdnList(ctx context.Context, path string, each func(json.RawMessage, string) error) error {
	var plain []struct {
		Digest string `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &plain); err != nil {
		return err
	}
	digest := ""
	if len(plain) > 0 {
		digest = plain[0].Digest
	}
	var view []map[string]json.RawMessage
	if err := c.do(ctx, http.MethodGet, path, url.Values{"pending": {"1"}}, &view); err != nil {
		return err
	}
	for _, o := range view {
		raw, err := json.Marshal(pendingOver(o))
		if err != nil {
			return err
		}
		if err := each(raw, digest); err != nil {
			return fmt.Errorf("pve: GET %s: decoding the answer's data: %w", path, err)
		}
	}
	return nil
}

// pendingOver is an object of PVE's pending view with its pending values
// in place: "deleted" removes the key.
func pendingOver(o map[string]json.RawMessage) map[string]json.RawMessage {
	var pending map[string]json.RawMessage
	if err := json.Unmarshal(o["pending"], &pending); err != nil {
		return o
	}
	out := map[string]json.RawMessage{}
	for k, v := range o {
		if k != "pending" {
			out[k] = v
		}
	}
	for k, v := range pending {
		if string(v) == `"deleted"` {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// dhcpRanges decodes a subnet's dhcp-range: PVE answers the running
// ranges parsed ({"start-address": …, "end-address": …}) and pending ones
// as written ("start-address=…,end-address=…").
type dhcpRanges []string

func (d *dhcpRanges) UnmarshalJSON(b []byte) error {
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return err
	}
	*d = nil
	for _, item := range items {
		var kv map[string]string
		var s string
		if err := json.Unmarshal(item, &s); err == nil {
			kv = map[string]string{}
			for _, part := range strings.Split(s, ",") {
				k, v, _ := strings.Cut(part, "=")
				kv[k] = v
			}
		} else if err := json.Unmarshal(item, &kv); err != nil {
			return fmt.Errorf("dhcp-range %s: %w", item, err)
		}
		*d = append(*d, kv["start-address"]+"-"+kv["end-address"])
	}
	return nil
}

// setDHCPRanges sends ranges "start-end" as PVE's repeated dhcp-range
// parameter.
func setDHCPRanges(p url.Values, ranges []string) error {
	for _, r := range ranges {
		start, end, ok := strings.Cut(r, "-")
		if !ok || start == "" || end == "" {
			return fmt.Errorf("pve: DHCP range %q: want start-end, as 10.0.0.50-10.0.0.250", r)
		}
		p.Add("dhcp-range", "start-address="+start+",end-address="+end)
	}
	return nil
}

func setNonEmpty(p url.Values, k, v string) {
	if v != "" {
		p.Set(k, v)
	}
}

// splitList splits PVE's list formats (commas, semicolons or spaces).
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' })
}

// sortedList is a list PVE holds as a set (zone nodes), sorted.
func sortedList(s string) []string {
	l := splitList(s)
	if len(l) == 0 {
		return nil
	}
	slices.Sort(l)
	return slices.Compact(l)
}
