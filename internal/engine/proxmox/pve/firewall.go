package pve

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// PVE's firewall, as this client sees it:
//
//   - Group and IPSet names: PVE lower-cases them when it reads its
//     configuration back, so a group created as "Web" is listed, and must
//     be addressed, as "web". Use lower-case names.
//   - Digests are per list (a rule list, the groups, the IPSets, an IPSet's
//     entries) or per options object, not per file; every entry of a list
//     carries the list's. PVE checks them on updates and deletes of rules
//     and entries and on options updates, not on creates.
//   - PVE puts a new rule at the top of its list whatever pos says; AddRule
//     moves it where the caller asked.
//   - Deleting an IPSet entry that is not there succeeds.

// Scope is where firewall objects live: the cluster, one node (its host
// firewall), or one VM.
type Scope struct {
	Node string
	VMID int
}

// ClusterScope is the cluster's firewall (/cluster/firewall).
func ClusterScope() Scope { return Scope{} }

// NodeScope is node's host firewall (/nodes/{node}/firewall): rules and
// options only, since PVE gives a node no IPSets or groups of its own.
func NodeScope(node string) Scope { return Scope{Node: node} }

// VMScope is the firewall of VM vmid on node
// (/nodes/{node}/qemu/{vmid}/firewall).
func VMScope(node string, vmid int) Scope { return Scope{Node: node, VMID: vmid} }

func (s Scope) path(rest string) (string, error) {
	if s.VMID == 0 && s.Node != "" {
		return "/nodes/" + Escape(s.Node) + "/firewall" + rest, nil
	}
	if s.VMID == 0 {
		return "/cluster/firewall" + rest, nil
	}
	if s.Node == "" {
		return "", fmt.Errorf("pve: firewall of VM %d: no node given", s.VMID)
	}
	return vmPath(s.Node, s.VMID, "/firewall"+rest), nil
}

// Rule is a firewall rule. Type is in, out, forward (cluster and groups
// only) or group (cluster and VMs only; Action then names the security
// group). Ports are lists and ranges as PVE takes them: "80,443,8000:8100".
// Source and Dest take addresses, networks, ranges, lists, or "+ipset".
type Rule struct {
	Pos     int
	Type    string
	Action  string // ACCEPT, DROP, REJECT or a security group
	Source  string
	Dest    string
	Proto   string
	DPort   string
	SPort   string
	Iface   string // net<n> for a VM
	Macro   string
	Comment string
	Enable  bool
	Log     string // emerg … debug, nolog
	// ICMPType is the icmp-type of an icmp, icmpv6 or ipv6-icmp rule.
	ICMPType string
}

// fields are the optional rule properties by their API names.
func (r Rule) fields() map[string]string {
	return map[string]string{"source": r.Source, "dest": r.Dest, "proto": r.Proto, "dport": r.DPort,
		"sport": r.SPort, "iface": r.Iface, "macro": r.Macro, "comment": r.Comment, "log": r.Log,
		"icmp-type": r.ICMPType}
}

// FirewallOptions are the options of a firewall. Nil and empty fields are
// unset (PVE's defaults apply). IPFilter, MACFilter and DHCP exist for
// VMs only. Digest, when set on an update, makes PVE refuse it if the
// options changed since they were read.
type FirewallOptions struct {
	Enable    *bool
	PolicyIn  string // ACCEPT, REJECT or DROP
	PolicyOut string
	IPFilter  *bool
	MACFilter *bool
	DHCP      *bool
	Digest    string
}

// flag decodes a PVE boolean, which arrives as a JSON number (0, 1, or a
// timestamp for the cluster's enable), a boolean or a string.
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	switch s {
	case "", "null", "0", "false":
		*f = false
	case "true":
		*f = true
	default:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a boolean: %s", b)
		}
		*f = n != 0
	}
	return nil
}

func (f *flag) ptr() *bool {
	if f == nil {
		return nil
	}
	b := bool(*f)
	return &b
}

// FirewallOptions reads a firewall's options.
func (c *Client) FirewallOptions(ctx context.Context, s Scope) (FirewallOptions, error) {
	path, err := s.path("/options")
	if err != nil {
		return FirewallOptions{}, err
	}
	var w struct {
		Enable    *flag  `json:"enable"`
		PolicyIn  string `json:"policy_in"`
		PolicyOut string `json:"policy_out"`
		IPFilter  *flag  `json:"ipfilter"`
		MACFilter *flag  `json:"macfilter"`
		DHCP      *flag  `json:"dhcp"`
		Digest    string `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &w); err != nil {
		return FirewallOptions{}, err
	}
	return FirewallOptions{Enable: w.Enable.ptr(), PolicyIn: w.PolicyIn, PolicyOut: w.PolicyOut,
		IPFilter: w.IPFilter.ptr(), MACFilter: w.MACFilter.ptr(), DHCP: w.DHCP.ptr(), Digest: w.Digest}, nil
}

// SetFirewallOptions sets the options that o sets and leaves the others.
func (c *Client) SetFirewallOptions(ctx context.Context, s Scope, o FirewallOptions) error {
	path, err := s.path("/options")
	if err != nil {
		return err
	}
	p := url.Values{}
	for k, b := range map[string]*bool{"enable": o.Enable, "ipfilter": o.IPFilter, "macfilter": o.MACFilter, "dhcp": o.DHCP} {
		if b != nil {
			p.Set(k, boolParam(*b))
		}
	}
	for k, v := range map[string]string{"policy_in": o.PolicyIn, "policy_out": o.PolicyOut, "digest": o.Digest} {
		if v != "" {
			p.Set(k, v)
		}
	}
	return c.do(ctx, http.MethodPut, path, p, nil)
}

// Group is a cluster security group. Digest is the group list's.
type Group struct {
	Group, Comment, Digest string
}

// Groups lists the cluster's security groups.
func (c *Client) Groups(ctx context.Context) ([]Group, error) {
	var w []struct {
		Group   string `json:"group"`
		Comment string `json:"comment"`
		Digest  string `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, "/cluster/firewall/groups", nil, &w); err != nil {
		return nil, err
	}
	out := make([]Group, len(w))
	for i, g := range w {
		out[i] = Group{Group: g.Group, Comment: g.Comment, Digest: g.Digest}
	}
	return out, nil
}

// CreateGroup creates an empty security group. A group of that name
// existing already is a Params error on "group".
func (c *Client) CreateGroup(ctx context.Context, name, comment string) error {
	p := url.Values{"group": {name}}
	if comment != "" {
		p.Set("comment", comment)
	}
	return c.do(ctx, http.MethodPost, "/cluster/firewall/groups", p, nil)
}

// DeleteGroup deletes a security group, which PVE refuses while it has
// rules (not while rules name it). A group that does not exist is an
// IsNotFound error.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/cluster/firewall/groups/"+Escape(name), nil, nil)
}

// rulesPath is the rule list of a security group (group != "", cluster
// scope only) or of a scope.
func rulesPath(s Scope, group string) (string, error) {
	if group == "" {
		return s.path("/rules")
	}
	if s != ClusterScope() {
		return "", fmt.Errorf("pve: security group %q: groups live in the cluster scope", group)
	}
	return "/cluster/firewall/groups/" + Escape(group), nil
}

// emptyListDigest is the digest PVE gives an empty list (the SHA-1 of
// nothing); an empty list has no entry to carry it.
const emptyListDigest = "da39a3ee5e6b4b0d3255bfef95601890afd80709"

// Rules lists the rules of a security group (group != "") or of a scope's
// rule list (group == ""), in order, with the list's digest.
func (c *Client) Rules(ctx context.Context, s Scope, group string) (rules []Rule, digest string, err error) {
	path, err := rulesPath(s, group)
	if err != nil {
		return nil, "", err
	}
	var w []struct {
		Pos      number `json:"pos"`
		Type     string `json:"type"`
		Action   string `json:"action"`
		Source   string `json:"source"`
		Dest     string `json:"dest"`
		Proto    string `json:"proto"`
		DPort    string `json:"dport"`
		SPort    string `json:"sport"`
		Iface    string `json:"iface"`
		Macro    string `json:"macro"`
		Comment  string `json:"comment"`
		Enable   flag   `json:"enable"`
		Log      string `json:"log"`
		ICMPType string `json:"icmp-type"`
		Digest   string `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &w); err != nil {
		return nil, "", err
	}
	digest = emptyListDigest
	rules = make([]Rule, len(w))
	for i, r := range w {
		rules[i] = Rule{Pos: int(r.Pos), Type: r.Type, Action: r.Action, Source: r.Source, Dest: r.Dest,
			Proto: r.Proto, DPort: r.DPort, SPort: r.SPort, Iface: r.Iface, Macro: r.Macro,
			Comment: r.Comment, Enable: bool(r.Enable), Log: r.Log, ICMPType: r.ICMPType}
		digest = r.Digest
	}
	return rules, digest, nil
}

// AddRule inserts r at position r.Pos (past the end: at the end). PVE
// takes pos but always inserts at the top, so for r.Pos > 0 AddRule reads
// the list back, checks that the top rule is r, and moves it down with
// that list's digest. PVE does not check a digest on create either: with
// digest set, AddRule compares it with the list's first and fails with an
// IsDigestMismatch error if they differ. Neither check is atomic with the
// create: a concurrent writer can slip in between, in which case the rule
// may be left at the top and the error is IsDigestMismatch.
func (c *Client) AddRule(ctx context.Context, s Scope, group string, r Rule, digest string) error {
	path, err := rulesPath(s, group)
	if err != nil {
		return err
	}
	if digest != "" {
		_, cur, err := c.Rules(ctx, s, group)
		if err != nil {
			return err
		}
		if cur != digest {
			return digestMismatch(http.MethodPost, path)
		}
	}
	p := url.Values{"type": {r.Type}, "action": {r.Action}, "enable": {boolParam(r.Enable)},
		"pos": {strconv.Itoa(r.Pos)}}
	for k, v := range r.fields() {
		if v != "" {
			p.Set(k, v)
		}
	}
	if digest != "" {
		p.Set("digest", digest)
	}
	if err := c.do(ctx, http.MethodPost, path, p, nil); err != nil {
		return err
	}
	if r.Pos <= 0 {
		return nil
	}
	rules, cur, err := c.Rules(ctx, s, group)
	if err != nil {
		return fmt.Errorf("pve: rule added at the top, not moved to %d: %w", r.Pos, err)
	}
	if len(rules) == 0 || !sameRule(rules[0], r) {
		return fmt.Errorf("pve: rule added at the top, not moved to %d: %w", r.Pos, digestMismatch(http.MethodGet, path))
	}
	if len(rules) == 1 {
		return nil // alone, it is at the end already
	}
	// moveto puts the rule before the one at moveto, counted with the rule
	// still at 0.
	err = c.do(ctx, http.MethodPut, path+"/0", url.Values{"moveto": {strconv.Itoa(r.Pos + 1)}, "digest": {cur}}, nil)
	if err != nil {
		return fmt.Errorf("pve: rule added at the top, not moved to %d: %w", r.Pos, err)
	}
	return nil
}

// sameRule reports whether got, as PVE lists it, is the rule want that was
// added: PVE trims comments, spells macros its own way, and keeps only the
// interface of a rule naming a group.
func sameRule(got, want Rule) bool {
	if want.Type == "group" {
		want = Rule{Pos: want.Pos, Type: want.Type, Action: want.Action, Iface: want.Iface,
			Comment: want.Comment, Enable: want.Enable}
	}
	if !strings.EqualFold(got.Macro, want.Macro) || got.Comment != strings.TrimSpace(want.Comment) {
		return false
	}
	got.Pos, got.Macro, got.Comment = want.Pos, want.Macro, want.Comment
	return got == want
}

// digestMismatch is the error PVE gives a stale digest, for the checks the
// client makes itself.
func digestMismatch(method, path string) error {
	return &Error{Method: method, Path: path, StatusCode: http.StatusInternalServerError,
		Message: "detected modified configuration - file changed by other user? Try again."}
}

// UpdateRule replaces the rule at r.Pos with r: the fields r leaves empty
// are deleted.
func (c *Client) UpdateRule(ctx context.Context, s Scope, group string, r Rule, digest string) error {
	path, err := rulesPath(s, group)
	if err != nil {
		return err
	}
	p := url.Values{"type": {r.Type}, "action": {r.Action}, "enable": {boolParam(r.Enable)}}
	var del []string
	for k, v := range r.fields() {
		if v == "" {
			del = append(del, k)
		} else {
			p.Set(k, v)
		}
	}
	if len(del) > 0 {
		slices.Sort(del)
		p.Set("delete", strings.Join(del, ","))
	}
	if digest != "" {
		p.Set("digest", digest)
	}
	return c.do(ctx, http.MethodPut, path+"/"+strconv.Itoa(r.Pos), p, nil)
}

// DeleteRule deletes the rule at pos; the rules after it move up. No rule
// there is an IsNotFound error.
func (c *Client) DeleteRule(ctx context.Context, s Scope, group string, pos int, digest string) error {
	path, err := rulesPath(s, group)
	if err != nil {
		return err
	}
	var p url.Values
	if digest != "" {
		p = url.Values{"digest": {digest}}
	}
	return c.do(ctx, http.MethodDelete, path+"/"+strconv.Itoa(pos), p, nil)
}

// IPSet is a named set of addresses. Digest is the IPSet list's.
type IPSet struct {
	Name, Comment, Digest string
}

// IPSetEntry is an address or network of an IPSet; NoMatch excludes it
// from the set.
type IPSetEntry struct {
	CIDR    string
	NoMatch bool
	Comment string
}

// IPSets lists a scope's IPSets.
func (c *Client) IPSets(ctx context.Context, s Scope) ([]IPSet, error) {
	path, err := s.path("/ipset")
	if err != nil {
		return nil, err
	}
	var w []struct {
		Name    string `json:"name"`
		Comment string `json:"comment"`
		Digest  string `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &w); err != nil {
		return nil, err
	}
	out := make([]IPSet, len(w))
	for i, set := range w {
		out[i] = IPSet{Name: set.Name, Comment: set.Comment, Digest: set.Digest}
	}
	return out, nil
}

// CreateIPSet creates an empty IPSet.
func (c *Client) CreateIPSet(ctx context.Context, s Scope, name, comment string) error {
	path, err := s.path("/ipset")
	if err != nil {
		return err
	}
	p := url.Values{"name": {name}}
	if comment != "" {
		p.Set("comment", comment)
	}
	return c.do(ctx, http.MethodPost, path, p, nil)
}

// DeleteIPSet deletes an IPSet with its entries (force). An IPSet that
// does not exist is an IsNotFound error.
func (c *Client) DeleteIPSet(ctx context.Context, s Scope, name string) error {
	path, err := s.path("/ipset/" + Escape(name))
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, path, url.Values{"force": {"1"}}, nil)
}

// IPSetEntries lists an IPSet's entries (PVE sorts them by CIDR) with the
// list's digest.
func (c *Client) IPSetEntries(ctx context.Context, s Scope, name string) (entries []IPSetEntry, digest string, err error) {
	path, err := s.path("/ipset/" + Escape(name))
	if err != nil {
		return nil, "", err
	}
	var w []struct {
		CIDR    string `json:"cidr"`
		NoMatch flag   `json:"nomatch"`
		Comment string `json:"comment"`
		Digest  string `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &w); err != nil {
		return nil, "", err
	}
	digest = emptyListDigest
	entries = make([]IPSetEntry, len(w))
	for i, en := range w {
		entries[i] = IPSetEntry{CIDR: en.CIDR, NoMatch: bool(en.NoMatch), Comment: en.Comment}
		digest = en.Digest
	}
	return entries, digest, nil
}

// AddIPSetEntry adds an address or network. PVE stores a network with its
// host bits cleared and an address without /32 or /128, and refuses an
// entry it has already (a Params error on "cidr").
func (c *Client) AddIPSetEntry(ctx context.Context, s Scope, name string, e IPSetEntry) error {
	path, err := s.path("/ipset/" + Escape(name))
	if err != nil {
		return err
	}
	p := url.Values{"cidr": {e.CIDR}}
	if e.NoMatch {
		p.Set("nomatch", "1")
	}
	if e.Comment != "" {
		p.Set("comment", e.Comment)
	}
	return c.do(ctx, http.MethodPost, path, p, nil)
}

// DeleteIPSetEntry removes an entry, named by its CIDR as listed. An entry
// that is not there is no error (PVE's behaviour); an IPSet that does not
// exist is an IsNotFound error.
func (c *Client) DeleteIPSetEntry(ctx context.Context, s Scope, name, cidr, digest string) error {
	path, err := s.path("/ipset/" + Escape(name) + "/" + Escape(cidr))
	if err != nil {
		return err
	}
	var p url.Values
	if digest != "" {
		p = url.Values{"digest": {digest}}
	}
	return c.do(ctx, http.MethodDelete, path, p, nil)
}
