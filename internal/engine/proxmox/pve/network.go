package pve

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
)

// Node network configuration (pve-manager's PVE::API2::Network). Changes
// go to /etc/network/interfaces.new and are pending until ReloadNetwork
// (or ApplySDN) applies them; the API reads the pending configuration.

// Iface is a node's network interface, as pending.
type Iface struct {
	Iface      string
	Type       string // bridge, eth, bond, vlan, vnet, …
	VLANAware  bool
	BridgeVIDs string // the VLANs a VLAN-aware bridge carries, as "2-4094" or "10 20 30-40"
	Ports      string // a bridge's ports
	// Pending reports that the node has network changes not applied yet.
	// PVE says so per node (the index's "changes", a diff of
	// interfaces.new), not per interface, so every interface of the node
	// carries it.
	Pending bool
}

// NodeNetwork lists a node's network interfaces.
func (c *Client) NodeNetwork(ctx context.Context, node string) ([]Iface, error) {
	var w []struct {
		Iface     string `json:"iface"`
		Type      string `json:"type"`
		VLANAware number `json:"bridge_vlan_aware"`
		VIDs      string `json:"bridge_vids"`
		Ports     string `json:"bridge_ports"`
	}
	cc, changes := c.withResultAttr("changes")
	if err := cc.do(ctx, http.MethodGet, networkPath(node), nil, &w); err != nil {
		return nil, err
	}
	var diff string
	if raw := changes.get(); len(raw) > 0 {
		_ = json.Unmarshal(raw, &diff) // null or absent: nothing pending
	}
	out := make([]Iface, len(w))
	for i, f := range w {
		out[i] = Iface{Iface: f.Iface, Type: f.Type, VLANAware: f.VLANAware != 0, BridgeVIDs: f.VIDs, Ports: f.Ports,
			Pending: diff != ""}
	}
	return out, nil
}

func networkPath(node string) string { return "/nodes/" + url.PathEscape(node) + "/network" }

// SetBridgeVIDs makes bridge VLAN-aware carrying vids ("2-4094", "10 20"),
// pending until ReloadNetwork. PVE's update takes the interface's whole
// configuration (without an address it would make the bridge manual), so
// the bridge's current settings are read and sent along.
func (c *Client) SetBridgeVIDs(ctx context.Context, node, bridge, vids string) error {
	path := networkPath(node) + "/" + url.PathEscape(bridge)
	var cur map[string]json.RawMessage
	if err := c.do(ctx, http.MethodGet, path, nil, &cur); err != nil {
		return err
	}
	p := url.Values{"type": {"bridge"}, "bridge_vlan_aware": {"1"}, "bridge_vids": {vids}}
	for _, k := range []string{"cidr", "gateway", "cidr6", "gateway6", "bridge_ports", "comments", "comments6",
		"autostart", "mtu"} {
		raw, ok := cur[k]
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			var n number
			if json.Unmarshal(raw, &n) != nil {
				continue
			}
			s = strconv.Itoa(int(n))
		}
		if s != "" {
			p.Set(k, s)
		}
	}
	return c.do(ctx, http.MethodPut, path, p, nil)
}

// ReloadNetwork applies a node's pending network configuration and waits
// for the task.
func (c *Client) ReloadNetwork(ctx context.Context, node string) error {
	return c.task(ctx, http.MethodPut, networkPath(node), nil)
}

// resultAttr keeps one of PVE's result attributes (set_result_attrib: a
// top-level key of the answer beside "data", such as the network index's
// "changes"), which Client.do does not decode.
type resultAttr struct {
	next http.RoundTripper
	name string
	mu   sync.Mutex
	val  json.RawMessage
}

// withResultAttr is a copy of c that keeps attribute name of its answers.
func (c *Client) withResultAttr(name string) (*Client, *resultAttr) {
	a := &resultAttr{next: c.http.Transport, name: name}
	cc := *c
	cc.http = &http.Client{Transport: a}
	return &cc, a
}

func (a *resultAttr) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var env map[string]json.RawMessage
	if json.Unmarshal(body, &env) == nil {
		a.mu.Lock()
		a.val = env[a.name]
		a.mu.Unlock()
	}
	return resp, nil
}

func (a *resultAttr) get() json.RawMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.val
}
