package pveemu

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// A node's host firewall: the file /etc/pve/nodes/<node>/host.fw, with
// options (/nodes/{node}/firewall/options) and rules
// (/nodes/{node}/firewall/rules), and what it does to traffic for the node
// itself, which NodeAdmits answers.
//
// pve-firewall builds a node's input chain (enable_host_firewall) as:
// loopback and established traffic; the host's rules, then the cluster's
// [RULES], top-down, first verdict wins; then the built-in management
// accepts (tcp 8006, 5900:5999, 3128 and 22 from the "management" IPSet,
// which holds the cluster's local network when the operator made none);
// then the datacenter's policy_in, DROP when unset. It does so only while
// the datacenter firewall is on and the node's own enable (default 1) is
// not 0, so turning the datacenter firewall on shuts every node's SSH and
// API to anyone outside the management network.

// paramsFWHostOptions are the parameters of a node's options update, as
// the schema gives them.
var paramsFWHostOptions = []param{
	str("node").req().withFormat("pve-node"),
	fwDelete, fwDigest, boolean("enable"),
	{name: "log_level_forward", kind: kString, enum: fwLogLevels},
	{name: "log_level_in", kind: kString, enum: fwLogLevels},
	{name: "log_level_out", kind: kString, enum: fwLogLevels},
	boolean("log_nf_conntrack"), boolean("ndp"), boolean("nf_conntrack_allow_invalid"),
	str("nf_conntrack_helpers").withFormat("pve-fw-conntrack-helper"),
	{name: "nf_conntrack_max", kind: kInteger, min: 32768, hasMin: true},
	{name: "nf_conntrack_tcp_timeout_established", kind: kInteger, min: 7875, hasMin: true},
	integer("nf_conntrack_tcp_timeout_syn_recv", 30, 60),
	boolean("nftables"), boolean("nosmurfs"), boolean("protection_synflood"),
	{name: "protection_synflood_burst", kind: kInteger},
	{name: "protection_synflood_rate", kind: kInteger},
	{name: "smurf_log_level", kind: kString, enum: fwLogLevels},
	{name: "tcp_flags_log_level", kind: kString, enum: fwLogLevels},
	boolean("tcpflags"),
}

// fwConntrackHelpers are the values of the pve-fw-conntrack-helper format.
var fwConntrackHelpers = fwSet("amanda ftp irc netbios-ns pptp sane sip snmp tftp")

// hostFW is the host.fw of the node the path names, which must exist.
func (e *Emulator) hostFW(c *call) (*fwFile, error) {
	name := c.values["node"]
	if err := e.checkNode(name); err != nil {
		return nil, err
	}
	return e.hostFile(name), nil
}

func (e *Emulator) hostFile(node string) *fwFile {
	if e.fw.hosts == nil {
		e.fw.hosts = map[string]*fwFile{}
	}
	f := e.fw.hosts[node]
	if f == nil {
		f = newFWFile()
		e.fw.hosts[node] = f
	}
	return f
}

func hostRuleList(e *Emulator, c *call) (fwRuleList, error) {
	f, err := e.hostFW(c)
	if err != nil {
		return fwRuleList{}, err
	}
	return fwRuleList{env: "host", rules: &f.rules}, nil
}

func (e *Emulator) getFWHostOptions(c *call) (any, error) {
	f, err := e.hostFW(c)
	if err != nil {
		return nil, err
	}
	return fwOptionsJSON(f.options), nil
}

func (e *Emulator) putFWHostOptions(c *call) (any, error) {
	f, err := e.hostFW(c)
	if err != nil {
		return nil, err
	}
	return nil, fwSetOptions(f.options, paramsFWHostOptions, c, func(k, v string) string {
		if p, ok := lookupParam(paramsFWHostOptions, k); ok && p.kind == kBoolean {
			b, _ := parseBool(v)
			return strconv.Itoa(boolInt(b))
		}
		return v
	})
}

// fwManagementPorts are the tcp ports pve-firewall accepts from the
// management IPSet before the input policy.
var fwManagementPorts = [][2]int{{8006, 8006}, {5900, 5999}, {3128, 3128}, {22, 22}}

// NodeAdmits reports whether node's firewall lets a new connection to
// proto/port on the node itself in, from the management network (the
// "management" IPSet, or the cluster's local network) or from elsewhere.
//
// It models, as pve-firewall does: the datacenter's enable (a timestamp
// expiring after a minute, PVE's anti-lockout) and the node's enable
// (default on); the node's IN rules then the cluster's IN rules, top-down,
// enabled ones only, the first ACCEPT, DROP or REJECT whose proto and
// dport match deciding; the management accepts; the datacenter's
// policy_in (default DROP). It does not model: rules with a source, dest,
// iface or macro, rules naming a security group, service names in dport
// (such rules match nothing here), sport, IPv6, and the cluster network's
// corosync accepts.
func (e *Emulator) NodeAdmits(node, proto string, port int, fromManagement bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	cluster := e.clusterFW()
	enable, _ := strconv.ParseInt(cluster.options["enable"], 10, 64)
	if enable > 1 && time.Now().Unix()-enable > 60 {
		enable = 0
	}
	host := e.hostFile(node)
	if enable == 0 || host.options["enable"] == "0" {
		return true
	}
	for _, r := range slices.Concat(host.rules, cluster.rules) {
		if verdict, ok := fwInMatch(r, proto, port); ok {
			return verdict == "ACCEPT"
		}
	}
	if fromManagement && fwProtoIs(proto, "tcp") {
		for _, rg := range fwManagementPorts {
			if port >= rg[0] && port <= rg[1] {
				return true
			}
		}
	}
	policy := cluster.options["policy_in"]
	return policy == "ACCEPT"
}

// fwInMatch reports whether r is an enabled IN rule, of the kinds
// NodeAdmits models, that matches proto/port, and its verdict.
func fwInMatch(r fwRule, proto string, port int) (verdict string, ok bool) {
	if r["type"] != "in" || r["enable"] != "1" {
		return "", false
	}
	for _, k := range []string{"source", "dest", "iface", "macro"} {
		if perlTrue(r[k]) {
			return "", false
		}
	}
	if p := r["proto"]; perlTrue(p) && !fwProtoIs(proto, p) {
		return "", false
	}
	if d := r["dport"]; perlTrue(d) && !fwPortIn(d, port) {
		return "", false
	}
	return r["action"], true
}

// fwProtoIs compares a protocol given by name with one given by name or
// number, for the protocols with ports.
func fwProtoIs(name, ruleProto string) bool {
	numbers := map[string]string{"tcp": "6", "udp": "17", "dccp": "33", "sctp": "132", "udplite": "136"}
	return strings.EqualFold(name, ruleProto) || numbers[strings.ToLower(name)] == ruleProto
}

// fwPortIn reports whether port is in a dport spec ("22,80:90"); service
// names are not resolved.
func fwPortIn(spec string, port int) bool {
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && port >= a && port <= b {
			return true
		}
	}
	return false
}
