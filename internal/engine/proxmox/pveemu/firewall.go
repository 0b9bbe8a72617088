package pveemu

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The firewall endpoints below serve PVE's firewall configuration: the
// cluster's file (/etc/pve/firewall/cluster.fw: options, IPSets, rules and
// security groups) and one file per VM (/etc/pve/firewall/<vmid>.fw:
// options, IPSets and rules).
//
// Their parameter tables are taken from PVE's published API schema, the API
// viewer data (api-viewer/apidata.js in proxmox/pve-docs, release 9.1.3):
// names, types, formats, enums, patterns and maxLength are the schema's.
// What the schema leaves out is pve-firewall's (PVE::API2::Firewall::Rules,
// ::Groups, ::IPSet, ::Cluster, ::VM and PVE::Firewall), error texts
// included:
//
//   - State is held as PVE holds it after writing a file and reading it
//     back, since every request reads the file anew: group and IPSet names
//     are lower-cased (the parser lower-cases section names, so a group
//     created as "Web" is listed, and must be addressed, as "web"), IPSet
//     entries come back sorted by CIDR, comments are trimmed, a rule's
//     ipversion is derived from its addresses and protocol.
//   - A new rule always goes to the top of its list: PVE accepts pos on
//     create but ignores it. Rules move with PUT moveto, which puts the
//     rule before the one at moveto (so moving down by one takes moveto =
//     pos+2).
//   - Digests are not one per file but one per list (rules, the groups, the
//     IPSets, an IPSet's entries) or object (options): SHA-1 over each
//     entry's keys in sorted order as "key:value\n"
//     (copy_list_with_digest), the same digest on every entry of a list.
//     Only updates and deletes of rules, updates and deletes of IPSet
//     entries, options updates and renames check it; creating a rule, a
//     group, an IPSet or an entry and deleting a group or an IPSet do not.
//     A digest that differs fails with PVE's assert_if_modified text.
//   - Rules are verified as verify_rule does: rule types per list (a VM
//     has no forward rules, a group no group rules), actions, interfaces
//     (net<n> for a VM), macros, protocols from /etc/protocols, ports and
//     ranges ("80,443,8000:8100", service names from /etc/services),
//     ICMP types, address lists and ranges, and "+ipset" references, which
//     must name an IPSet of the cluster or of the rule's own VM. A rule
//     naming a security group is not checked against the groups, and a
//     group is only refused deletion while it has rules, not while rules
//     name it: PVE does neither.
//
// PVE's firewall endpoints do not themselves check that a VM exists (its
// firewall file is cluster-wide and keyed by VMID). The emulator does, with
// the error of the VM endpoints, so that a caller configuring the firewall
// of a VM that is not where it thinks is told so; and since PVE deletes a
// VM's firewall file with the VM, a VM re-created with the same VMID starts
// with an empty firewall.
//
// Not emulated: aliases (so every alias reference is refused as unknown),
// host and vnet firewalls, SDN IPSets, macro expansion checks (a macro's
// name is checked and canonicalised, not its parameters), and the copy of a
// VM's firewall file that PVE makes when the VM is cloned.

// firewallState is the emulated cluster's firewall configuration.
type firewallState struct {
	cluster *fwFile             // cluster.fw, made on first use
	vms     map[int]*vmFirewall // <vmid>.fw
}

// vmFirewall is one VM's firewall file. owner is the VM it belongs to: the
// file of a VMID whose VM was deleted or re-created is treated as absent.
type vmFirewall struct {
	owner *vm
	file  *fwFile
}

// fwFile is one firewall configuration file.
type fwFile struct {
	options map[string]string
	rules   []fwRule
	ipsets  map[string]*fwIPSet
	groups  map[string]*fwGroup // cluster.fw only
}

// fwRule is a rule as PVE's parser returns it: type, action and enable
// always; macro, iface, source, dest, proto, dport, sport, log, icmp-type,
// comment and ipversion when set.
type fwRule map[string]string

type fwGroup struct {
	comment string
	rules   []fwRule
}

type fwIPSet struct {
	comment string
	entries []fwEntry // sorted by CIDR, as PVE writes them
}

type fwEntry struct {
	cidr, comment string
	nomatch       bool
}

func newFWFile() *fwFile {
	return &fwFile{options: map[string]string{}, ipsets: map[string]*fwIPSet{}, groups: map[string]*fwGroup{}}
}

func (e *Emulator) clusterFW() *fwFile {
	if e.fw.cluster == nil {
		e.fw.cluster = newFWFile()
	}
	return e.fw.cluster
}

// vmFW is the firewall file of the VM the path names, which must exist on
// that node.
func (e *Emulator) vmFW(c *call) (*fwFile, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if e.fw.vms == nil {
		e.fw.vms = map[int]*vmFirewall{}
	}
	st := e.fw.vms[v.vmid]
	if st == nil || st.owner != v {
		st = &vmFirewall{owner: v, file: newFWFile()}
		e.fw.vms[v.vmid] = st
	}
	return st.file, nil
}

// liveVMFirewalls are the firewall files of the VMs that exist.
func (e *Emulator) liveVMFirewalls() []*fwFile {
	var out []*fwFile
	for _, id := range slices.Sorted(maps.Keys(e.fw.vms)) {
		if st := e.fw.vms[id]; e.vms[id] == st.owner {
			out = append(out, st.file)
		}
	}
	return out
}

// fwHandler is a route's handler.
type fwHandler = func(e *Emulator, c *call) (any, error)

var (
	// fwNameRe is the schema's pattern of security group, IPSet and alias
	// names, and of a rule's action; the schema's patterns are anchored.
	fwNameRe    = regexp.MustCompile(`^(?:[A-Za-z][A-Za-z0-9\-\_]+)$`)
	fwLogLevels = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog"}
	fwPolicies  = []string{"ACCEPT", "REJECT", "DROP"}

	fwDigest     = str("digest").maxLen(64)
	fwDelete     = str("delete").withFormat("pve-configid-list")
	fwGroupParam = param{name: "group", kind: kString, required: true, pattern: fwNameRe, maxLength: 18}
	fwIPSetName  = param{name: "name", kind: kString, required: true, pattern: fwNameRe, maxLength: 64}
	fwCIDR       = str("cidr").req().withFormat("IPorCIDRorAlias")
	fwPos        = integer("pos", 0, 0)
)

// fwRename is the rename parameter of groups (maxLen 18) and IPSets (64).
func fwRename(maxLen int) param {
	return param{name: "rename", kind: kString, pattern: fwNameRe, maxLength: maxLen}
}

// fwRuleParams are the rule properties of the rule endpoints; creating a
// rule requires type and action.
func fwRuleParams(create bool) []param {
	typ := param{name: "type", kind: kString, enum: []string{"in", "out", "forward", "group"}}
	action := param{name: "action", kind: kString, pattern: fwNameRe, maxLength: 20}
	if create {
		typ.required, action.required = true, true
	}
	return []param{
		typ, action, fwPos, fwDigest,
		str("comment"),
		str("dest").withFormat("pve-fw-addr-spec").maxLen(512),
		str("dport").withFormat("pve-fw-dport-spec"),
		integer("enable", 0, 0),
		str("icmp-type").withFormat("pve-fw-icmp-type-spec"),
		str("iface").withFormat("pve-iface").maxLen(20),
		{name: "log", kind: kString, enum: fwLogLevels},
		str("macro").maxLen(128),
		str("proto").withFormat("pve-fw-protocol-spec"),
		str("source").withFormat("pve-fw-addr-spec").maxLen(512),
		str("sport").withFormat("pve-fw-sport-spec"),
	}
}

// paramsFWClusterOptions and paramsFWVMOptions are the parameters of the
// two options updates: the options, digest and delete.
var (
	paramsFWClusterOptions = []param{
		fwDelete, fwDigest, boolean("ebtables"), integer("enable", 0, 0),
		str("log_ratelimit").withFormat("fw-log-ratelimit"),
		{name: "policy_forward", kind: kString, enum: []string{"ACCEPT", "DROP"}},
		{name: "policy_in", kind: kString, enum: fwPolicies},
		{name: "policy_out", kind: kString, enum: fwPolicies},
	}
	paramsFWVMOptions = append(slices.Clone(paramsVM),
		fwDelete, fwDigest, boolean("dhcp"), boolean("enable"), boolean("ipfilter"),
		param{name: "log_level_in", kind: kString, enum: fwLogLevels},
		param{name: "log_level_out", kind: kString, enum: fwLogLevels},
		boolean("macfilter"), boolean("ndp"),
		param{name: "policy_in", kind: kString, enum: fwPolicies},
		param{name: "policy_out", kind: kString, enum: fwPolicies},
		boolean("radv"))
)

// fwRuleLists are the three places rule lists live.
var fwRuleLists = []struct {
	path   string
	params []param
	list   fwRuleListFunc
}{
	{"/cluster/firewall/rules", nil, clusterRuleList},
	{"/cluster/firewall/groups/{group}", []param{fwGroupParam}, groupRuleList},
	{"/nodes/{node}/qemu/{vmid}/firewall/rules", paramsVM, vmRuleList},
}

// fwIPSetFiles are the two places IPSets live.
var fwIPSetFiles = []struct {
	path   string
	params []param
	file   fwFileFunc
}{
	{"/cluster/firewall/ipset", nil, func(e *Emulator, _ *call) (*fwFile, error) { return e.clusterFW(), nil }},
	{"/nodes/{node}/qemu/{vmid}/firewall/ipset", paramsVM, (*Emulator).vmFW},
}

// firewallRoutes are the firewall configuration endpoints.
var firewallRoutes = func() []route {
	var rs []route
	add := func(method, path string, params []param, h fwHandler) {
		rs = append(rs, route{method, path, params, fwChecked(params, h)})
	}
	with := func(base []param, more ...param) []param { return append(slices.Clone(base), more...) }

	add("GET", "/cluster/firewall/options", nil, (*Emulator).getFWClusterOptions)
	add("PUT", "/cluster/firewall/options", paramsFWClusterOptions, (*Emulator).putFWClusterOptions)
	add("GET", "/nodes/{node}/qemu/{vmid}/firewall/options", paramsVM, (*Emulator).getFWVMOptions)
	add("PUT", "/nodes/{node}/qemu/{vmid}/firewall/options", paramsFWVMOptions, (*Emulator).putFWVMOptions)

	add("GET", "/cluster/firewall/groups", nil, (*Emulator).getFWGroups)
	add("POST", "/cluster/firewall/groups", []param{fwGroupParam, str("comment"), fwDigest, fwRename(18)}, (*Emulator).postFWGroup)
	add("DELETE", "/cluster/firewall/groups/{group}", []param{fwGroupParam}, (*Emulator).deleteFWGroup)

	for _, l := range fwRuleLists {
		add("GET", l.path, l.params, getFWRules(l.list))
		add("POST", l.path, with(l.params, fwRuleParams(true)...), postFWRule(l.list))
		add("GET", l.path+"/{pos}", with(l.params, fwPos), getFWRule(l.list))
		add("PUT", l.path+"/{pos}", with(l.params, append(fwRuleParams(false), fwDelete, integer("moveto", 0, 0))...), putFWRule(l.list))
		add("DELETE", l.path+"/{pos}", with(l.params, fwPos, fwDigest), deleteFWRule(l.list))
	}

	for _, f := range fwIPSetFiles {
		add("GET", f.path, f.params, getFWIPSets(f.file))
		add("POST", f.path, with(f.params, fwIPSetName, str("comment"), fwDigest, fwRename(64)), postFWIPSet(f.file))
		set := f.path + "/{name}"
		add("GET", set, with(f.params, fwIPSetName), getFWEntries(f.file))
		add("POST", set, with(f.params, fwIPSetName, fwCIDR, str("comment"), boolean("nomatch")), postFWEntry(f.file))
		add("DELETE", set, with(f.params, fwIPSetName, boolean("force")), deleteFWIPSet(f.file))
		// PVE takes the CIDR's slash unescaped too; here it must come as %2F.
		entry := set + "/{cidr}"
		add("GET", entry, with(f.params, fwIPSetName, fwCIDR), getFWEntry(f.file))
		add("PUT", entry, with(f.params, fwIPSetName, fwCIDR, str("comment"), boolean("nomatch"), fwDigest), putFWEntry(f.file))
		add("DELETE", entry, with(f.params, fwIPSetName, fwCIDR, fwDigest), deleteFWEntry(f.file))
	}
	return rs
}()

// fwFormats check the formats the firewall schema names that checkFormat
// does not know. They are pve-firewall's and pve-common's verifiers.
var fwFormats = map[string]func(string) error{
	"pve-fw-addr-spec":  func(v string) error { _, err := fwParseAddressList(v); return err },
	"pve-fw-dport-spec": func(v string) error { return fwParsePorts(v, true) },
	"pve-fw-sport-spec": func(v string) error { return fwParsePorts(v, false) },
	"pve-fw-protocol-spec": func(v string) error {
		if perlTrue(v) && !fwProtocols[v] {
			return fmt.Errorf("unknown protocol '%s'", v)
		}
		return nil
	},
	"pve-fw-icmp-type-spec": func(v string) error {
		if v != "" && !fwICMPTypes[v] && !fwICMPv6Types[v] {
			return fmt.Errorf("invalid icmp-type value '%s'", v)
		}
		return nil
	},
	"pve-iface": func(v string) error {
		if !fwIfaceRe.MatchString(v) {
			return fmt.Errorf("invalid network interface name '%s'", v)
		}
		return nil
	},
	"IPorCIDRorAlias": func(v string) error {
		if fwAliasRe.MatchString(v) {
			return nil
		}
		_, err := fwCleanCIDR(v)
		return err
	},
	// log_ratelimit's format is given inline in the schema:
	// "[enable=]<1|0> [,burst=<integer>] [,rate=<rate>]".
	"fw-log-ratelimit": func(v string) error {
		kv, err := propertyString(v, "enable")
		if err != nil {
			return err
		}
		for k, val := range kv {
			switch k {
			case "enable":
				if _, ok := parseBool(val); !ok {
					return fmt.Errorf("enable: type check ('boolean') failed - got '%s'", val)
				}
			case "burst":
				if n, err := strconv.Atoi(val); err != nil || n < 0 {
					return fmt.Errorf("burst: value must have a minimum value of 0")
				}
			case "rate":
				if !fwRateRe.MatchString(val) {
					return fmt.Errorf("rate: value does not match the regex pattern")
				}
			default:
				return fmt.Errorf("invalid key '%s'", k)
			}
		}
		if _, ok := kv["enable"]; !ok {
			return fmt.Errorf("enable: property is missing and it is not optional")
		}
		return nil
	},
}

var (
	fwIfaceRe = regexp.MustCompile(`^(?i)[a-z][a-z0-9_]{1,20}([:.]\d+)?$`)    // pve-common's pve_verify_iface
	fwAliasRe = regexp.MustCompile(`^(dc/|guest/)?[A-Za-z][A-Za-z0-9\-\_]+$`) // an alias reference
	fwIPSetRe = regexp.MustCompile(`^\+(guest/|dc/|sdn/)?([A-Za-z][A-Za-z0-9\-\_]+)$`)
	fwRateRe  = regexp.MustCompile(`^(?:[1-9][0-9]*\/(second|minute|hour|day))$`)
	fwNetRe   = regexp.MustCompile(`^net(\d+)$`)
)

// fwChecked wraps a handler with the checks of the formats fwFormats knows,
// which PVE makes with the rest of the schema, before the handler runs.
func fwChecked(params []param, h fwHandler) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		errs := map[string]string{}
		for _, p := range params {
			check := fwFormats[p.format]
			v, ok := c.values[p.name]
			if check == nil || !ok {
				continue
			}
			if err := check(v); err != nil {
				errs[p.name] = "invalid format - " + err.Error()
			}
		}
		if len(errs) > 0 {
			return nil, paramError(errs)
		}
		return h(e, c)
	}
}

// fwAssertDigest is PVE::Tools::assert_if_modified: a digest given that
// differs from the current one.
func fwAssertDigest(current string, c *call) error {
	if d := c.values["digest"]; d != "" && d != current {
		return fail("detected modified configuration - file changed by other user? Try again.")
	}
	return nil
}

// fwListDigest is copy_list_with_digest's digest.
func fwListDigest(entries []map[string]string) string {
	h := sha1.New()
	for _, m := range entries {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(h, "%s:%s\n", k, m[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// perlTrue is Perl's truth of a string.
func perlTrue(s string) bool { return s != "" && s != "0" }

// perlSplit is Perl's split on a fixed separator: trailing empty fields
// are dropped.
func perlSplit(s, sep string) []string {
	parts := strings.Split(s, sep)
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}

// ---- options ----

// fwIntOptions are the options PVE's parser reads back as integers.
var fwIntOptions = map[string]bool{"enable": true, "ebtables": true, "dhcp": true, "ndp": true,
	"radv": true, "macfilter": true, "ipfilter": true}

func fwOptionsJSON(opts map[string]string) map[string]any {
	out := map[string]any{"digest": fwListDigest([]map[string]string{opts})}
	for k, v := range opts {
		if fwIntOptions[k] {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[k] = n
			continue
		}
		out[k] = v
	}
	return out
}

// expireEnable is parse_clusterfw_option: an enable set to a timestamp
// (PVE's anti-lockout double call) reads as 0 a minute later.
func expireEnable(opts map[string]string, now int64) {
	if n, _ := strconv.ParseInt(opts["enable"], 10, 64); n > 1 && now-n > 60 {
		opts["enable"] = "0"
	}
}

func (e *Emulator) getFWClusterOptions(c *call) (any, error) {
	f := e.clusterFW()
	expireEnable(f.options, c.now.Unix())
	return fwOptionsJSON(f.options), nil
}

func (e *Emulator) putFWClusterOptions(c *call) (any, error) {
	f := e.clusterFW()
	expireEnable(f.options, c.now.Unix())
	return nil, fwSetOptions(f.options, paramsFWClusterOptions, c, func(k, v string) string {
		switch k {
		case "enable":
			n, _ := strconv.ParseInt(v, 10, 64)
			if n > 1 {
				n = c.now.Unix()
			}
			return strconv.FormatInt(n, 10)
		case "ebtables":
			b, _ := parseBool(v)
			return strconv.Itoa(boolInt(b))
		}
		return v
	})
}

func (e *Emulator) getFWVMOptions(c *call) (any, error) {
	f, err := e.vmFW(c)
	if err != nil {
		return nil, err
	}
	return fwOptionsJSON(f.options), nil
}

func (e *Emulator) putFWVMOptions(c *call) (any, error) {
	f, err := e.vmFW(c)
	if err != nil {
		return nil, err
	}
	return nil, fwSetOptions(f.options, paramsFWVMOptions, c, func(k, v string) string {
		if fwIntOptions[k] {
			b, _ := parseBool(v)
			return strconv.Itoa(boolInt(b))
		}
		return v
	})
}

// fwSetOptions is set_options: the digest, then the deletions, then the
// values given, normalised as PVE's parser reads them back.
func fwSetOptions(opts map[string]string, params []param, c *call, normalise func(k, v string) string) error {
	if err := fwAssertDigest(fwListDigest([]map[string]string{opts}), c); err != nil {
		return err
	}
	isOption := func(k string) bool {
		_, ok := lookupParam(params, k)
		return ok && !fwOptionMeta[k]
	}
	del := splitList(c.values["delete"])
	for _, k := range del {
		if !isOption(k) {
			return paramError(map[string]string{"delete": fmt.Sprintf("no such option '%s'", k)})
		}
	}
	for _, k := range del {
		delete(opts, k)
	}
	for k, v := range c.values {
		if isOption(k) {
			opts[k] = normalise(k, v)
		}
	}
	return nil
}

var fwOptionMeta = map[string]bool{"node": true, "vmid": true, "digest": true, "delete": true}

// ---- security groups ----

func fwGroupList(f *fwFile) []map[string]string {
	out := []map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(f.groups)) {
		m := map[string]string{"group": name}
		if g := f.groups[name]; g.comment != "" {
			m["comment"] = g.comment
		}
		out = append(out, m)
	}
	return out
}

func fwListJSON(list []map[string]string) []map[string]any {
	d := fwListDigest(list)
	out := make([]map[string]any, 0, len(list))
	for _, m := range list {
		o := map[string]any{"digest": d}
		for k, v := range m {
			o[k] = v
		}
		out = append(out, o)
	}
	return out
}

func (e *Emulator) getFWGroups(*call) (any, error) {
	return fwListJSON(fwGroupList(e.clusterFW())), nil
}

func (e *Emulator) postFWGroup(c *call) (any, error) {
	f := e.clusterFW()
	name, comment := c.values["group"], c.values["comment"]
	_, hasComment := c.values["comment"]
	rename := c.values["rename"]
	if rename == "" {
		if _, ok := f.groups[name]; ok {
			return nil, paramError(map[string]string{"group": fmt.Sprintf("Security group '%s' already exists", name)})
		}
		key := strings.ToLower(name)
		if _, ok := f.groups[key]; ok {
			// PVE writes a second section whose name reads back as the
			// existing group's; the existing group stays as it was.
			return nil, nil
		}
		f.groups[key] = &fwGroup{comment: fwComment(comment)}
		return nil, nil
	}
	if err := fwAssertDigest(fwListDigest(fwGroupList(f)), c); err != nil {
		return nil, err
	}
	old, ok := f.groups[rename]
	if !ok {
		return nil, paramError(map[string]string{"group": fmt.Sprintf("Security group '%s' does not exist", rename)})
	}
	if _, taken := f.groups[name]; taken && name != rename {
		return nil, paramError(map[string]string{"group": fmt.Sprintf("Security group '%s' does already exist", name)})
	}
	if hasComment {
		old.comment = fwComment(comment)
	}
	if name == rename {
		return nil, nil
	}
	// PVE renames the references in every firewall file, then the group.
	for _, file := range append(e.liveVMFirewalls(), f) {
		for _, r := range file.rules {
			if r["type"] == "group" && r["action"] == rename {
				r["action"] = name
			}
		}
	}
	delete(f.groups, rename)
	f.groups[strings.ToLower(name)] = old
	return nil, nil
}

func (e *Emulator) deleteFWGroup(c *call) (any, error) {
	f := e.clusterFW()
	name := c.values["group"]
	g, ok := f.groups[name]
	if !ok {
		return nil, fail("no such security group '%s'", name)
	}
	if len(g.rules) > 0 {
		return nil, fail("Security group '%s' is not empty", name)
	}
	delete(f.groups, name)
	return nil, nil
}

// fwComment is a comment as PVE reads it back: trimmed.
func fwComment(s string) string { return strings.TrimSpace(s) }

// ---- rules ----

// fwRuleList is one list of rules and what its rules are verified
// against.
type fwRuleList struct {
	env   string // PVE's rule_env: cluster, group or vm
	rules *[]fwRule
	// local is the VM's file, whose IPSets "+name" may name besides the
	// cluster's.
	local *fwFile
}

type fwRuleListFunc func(e *Emulator, c *call) (fwRuleList, error)

func clusterRuleList(e *Emulator, _ *call) (fwRuleList, error) {
	return fwRuleList{env: "cluster", rules: &e.clusterFW().rules}, nil
}

func groupRuleList(e *Emulator, c *call) (fwRuleList, error) {
	g, ok := e.clusterFW().groups[c.values["group"]]
	if !ok {
		return fwRuleList{}, fail("no such security group '%s'", c.values["group"])
	}
	return fwRuleList{env: "group", rules: &g.rules}, nil
}

func vmRuleList(e *Emulator, c *call) (fwRuleList, error) {
	f, err := e.vmFW(c)
	if err != nil {
		return fwRuleList{}, err
	}
	return fwRuleList{env: "vm", rules: &f.rules, local: f}, nil
}

func fwRulesDigest(rules []fwRule) string {
	list := make([]map[string]string, len(rules))
	for i, r := range rules {
		list[i] = r
	}
	return fwListDigest(list)
}

func (r fwRule) json(pos int, digest string) map[string]any {
	out := map[string]any{"pos": pos, "digest": digest}
	for k, v := range r {
		if k == "enable" || k == "ipversion" {
			n, _ := strconv.Atoi(v)
			out[k] = n
			continue
		}
		out[k] = v
	}
	return out
}

func getFWRules(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		d := fwRulesDigest(*l.rules)
		out := make([]map[string]any, 0, len(*l.rules))
		for i, r := range *l.rules {
			out = append(out, r.json(i, d))
		}
		return out, nil
	}
}

func getFWRule(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		pos, _ := strconv.Atoi(c.values["pos"])
		if pos >= len(*l.rules) {
			return nil, fail("no rule at position %d", pos)
		}
		return (*l.rules)[pos].json(pos, fwRulesDigest(*l.rules)), nil
	}
}

func postFWRule(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		r := fwRule{}
		fwCopyRuleData(r, c.values)
		if err := e.verifyFWRule(r, l); err != nil {
			return nil, err
		}
		if _, ok := c.values["enable"]; !ok {
			r["enable"] = "0" // a rule created without enable is disabled
		}
		// pos is accepted but ignored: PVE unshifts.
		*l.rules = slices.Insert(*l.rules, 0, r.stored())
		return nil, nil
	}
}

func putFWRule(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		rules := *l.rules
		if err := fwAssertDigest(fwRulesDigest(rules), c); err != nil {
			return nil, err
		}
		pos, _ := strconv.Atoi(c.values["pos"])
		if pos >= len(rules) {
			return nil, fail("no rule at position %d", pos)
		}
		if s, ok := c.values["moveto"]; ok {
			if moveto, _ := strconv.Atoi(s); moveto != pos {
				// Other arguments are ignored.
				*l.rules = fwMoveRule(rules, pos, moveto)
				return nil, nil
			}
		}
		r := maps.Clone(rules[pos])
		fwCopyRuleData(r, c.values)
		if del := c.values["delete"]; del != "" {
			for _, k := range splitList(del) {
				if !fwRuleProperties[k] {
					return nil, paramError(map[string]string{"delete": fmt.Sprintf("no such property ('%s')", k)})
				}
				if k == "type" || k == "action" {
					return nil, paramError(map[string]string{"delete": fmt.Sprintf("unable to delete required property '%s'", k)})
				}
				delete(r, k)
			}
		}
		if err := e.verifyFWRule(r, l); err != nil {
			return nil, err
		}
		rules[pos] = r.stored()
		return nil, nil
	}
}

// fwMoveRule is update_rule's move: the rule goes before the one at
// moveto, or to the end.
func fwMoveRule(rules []fwRule, pos, moveto int) []fwRule {
	rule := rules[pos]
	out := make([]fwRule, 0, len(rules))
	for i, r := range rules {
		if i == pos {
			continue
		}
		if i == moveto {
			out = append(out, rule)
		}
		out = append(out, r)
	}
	if moveto >= len(rules) {
		out = append(out, rule)
	}
	return out
}

func deleteFWRule(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		if err := fwAssertDigest(fwRulesDigest(*l.rules), c); err != nil {
			return nil, err
		}
		pos, _ := strconv.Atoi(c.values["pos"])
		if pos >= len(*l.rules) {
			return nil, fail("no rule at position %d", pos)
		}
		*l.rules = slices.Delete(*l.rules, pos, pos+1)
		return nil, nil
	}
}

// fwRuleProperties are the rule properties a request may set or delete.
var fwRuleProperties = map[string]bool{"pos": true, "digest": true, "type": true, "action": true,
	"macro": true, "iface": true, "source": true, "dest": true, "proto": true, "enable": true,
	"log": true, "sport": true, "dport": true, "comment": true, "icmp-type": true}

// fwCopyRuleData is copy_rule_data: a value of "" or "-" removes the
// property. pos and digest are request metadata PVE never writes.
func fwCopyRuleData(r fwRule, values map[string]string) {
	for k, v := range values {
		if !fwRuleProperties[k] || k == "pos" || k == "digest" {
			continue
		}
		if v == "" || v == "-" {
			delete(r, k)
		} else {
			r[k] = v
		}
	}
}

// stored is the rule as PVE's parser reads it back after writing it:
// enable as 0 or 1, a rule naming a group keeps no addresses or ports, a
// blank comment is dropped.
func (r fwRule) stored() fwRule {
	out := fwRule{"type": r["type"], "action": r["action"], "enable": "1"}
	if en, ok := r["enable"]; ok {
		if n, _ := strconv.Atoi(en); n == 0 {
			out["enable"] = "0"
		}
	}
	keep := []string{"iface"}
	if r["type"] != "group" {
		keep = append(keep, "macro", "source", "dest", "proto", "dport", "sport", "log", "icmp-type", "ipversion")
	}
	for _, k := range keep {
		if v := r[k]; perlTrue(v) {
			out[k] = v
		}
	}
	if c := fwComment(r["comment"]); c != "" {
		out["comment"] = c
	}
	return out
}

// fwRuleTypes are the rule types each list takes.
var fwRuleTypes = map[string][]string{
	"vm":      {"in", "out", "group"},
	"group":   {"in", "out", "forward"},
	"cluster": {"in", "out", "forward", "group"},
}

// verifyFWRule is verify_rule: it fails on the first error, as a
// parameter error, and sets the rule's canonical macro name and its IP
// version. Its checks run in verify_rule's order, since which error a
// bad rule gets depends on it.
func (e *Emulator) verifyFWRule(r fwRule, l fwRuleList) error {
	if err := fwVerifyTypeAction(r, l); err != nil {
		return err
	}
	if err := fwVerifyIface(r, l); err != nil {
		return err
	}
	if err := fwVerifyMacro(r); err != nil {
		return err
	}
	ipversion, err := fwVerifyProtoPorts(r)
	if err != nil {
		return err
	}
	if ipversion, err = e.fwVerifyAddresses(r, l, ipversion); err != nil {
		return err
	}
	delete(r, "ipversion")
	if ipversion != 0 {
		r["ipversion"] = strconv.Itoa(ipversion)
	}
	return nil
}

// fwRuleError is verify_rule's refusal of one parameter.
func fwRuleError(param, format string, args ...any) error {
	return paramError(map[string]string{param: fmt.Sprintf(format, args...)})
}

// fwVerifyTypeAction checks that the rule has a type its list takes and an
// action that type takes: a verdict, or a security group's name.
func fwVerifyTypeAction(r fwRule, l fwRuleList) error {
	typ, action := r["type"], r["action"]
	if !perlTrue(typ) {
		return fwRuleError("type", "missing property")
	}
	if !perlTrue(action) {
		return fwRuleError("action", "missing property")
	}
	if !slices.Contains(fwRuleTypes[l.env], typ) {
		return fwRuleError("type", "invalid rule type '%s' for rule_env '%s'", typ, l.env)
	}
	switch typ {
	case "in", "out", "forward":
		if typ == "forward" && action == "REJECT" {
			return fwRuleError("action", "cannot define REJECT rules on forward chain")
		}
		if action != "ACCEPT" && action != "DROP" && action != "REJECT" {
			return fwRuleError("action", "unknown action '%s'", action)
		}
	case "group":
		if !fwNameRe.MatchString(action) {
			return fwRuleError("action", "invalid characters in security group name")
		}
	}
	return nil
}

// fwVerifyIface checks the rule's interface: none in a security group,
// and a VM's rules name one of its NICs.
func fwVerifyIface(r fwRule, l fwRuleList) error {
	iface := r["iface"]
	if !perlTrue(iface) {
		return nil
	}
	if l.env == "group" {
		return fwRuleError("type", "parameter -i not allowed for this rule type")
	}
	if !fwIfaceRe.MatchString(iface) {
		return fwRuleError("iface", "invalid network interface name '%s'", iface)
	}
	if l.env == "vm" && !fwNetRe.MatchString(iface) {
		return fwRuleError("iface", `value does not match the regex pattern 'net\d+'`)
	}
	return nil
}

// fwVerifyMacro checks the rule's macro and spells it as PVE does.
func fwVerifyMacro(r fwRule) error {
	m := r["macro"]
	if !perlTrue(m) {
		return nil
	}
	name, ok := fwMacros[strings.ToLower(m)]
	if !ok {
		return fwRuleError("macro", "unknown macro '%s'", m)
	}
	r["macro"] = name
	return nil
}

// fwVerifyProtoPorts checks the protocol and what depends on it: ports
// only with a protocol that has them, ICMP types only with ICMP. It
// answers the IP version an ICMP protocol implies (0 for none).
func fwVerifyProtoPorts(r fwRule) (int, error) {
	ipversion := 0
	proto := r["proto"]
	icmp := proto == "icmp" || proto == "icmpv6" || proto == "ipv6-icmp"
	if perlTrue(proto) {
		if !fwProtocols[proto] {
			return 0, fwRuleError("proto", "unknown protocol '%s'", proto)
		}
		switch proto {
		case "icmp":
			ipversion = 4
		case "icmpv6", "ipv6-icmp":
			ipversion = 6
		}
	}
	if dport := r["dport"]; perlTrue(dport) {
		if err := fwParsePorts(dport, icmp); err != nil {
			return 0, fwRuleError("dport", "%s", err)
		}
		if !perlTrue(proto) {
			return 0, fwRuleError("proto", "missing property - 'dport' requires this property")
		}
		if !fwPortProtocols[proto] && !icmp {
			return 0, fwRuleError("dport", "protocol '%s' does not support ports", proto)
		}
	}
	if t := r["icmp-type"]; perlTrue(t) {
		if !icmp {
			return 0, fwRuleError("proto", "missing property - 'icmp-type' requires this property")
		}
		if perlTrue(r["dport"]) {
			return 0, fwRuleError("icmp-type", "'icmp-type' cannot be specified together with 'dport'")
		}
		if proto == "icmp" && !fwICMPTypes[t] || proto != "icmp" && !fwICMPv6Types[t] {
			return 0, fwRuleError("icmp-type", "invalid icmp-type '%s' for proto '%s'", t, proto)
		}
	}
	if sport := r["sport"]; perlTrue(sport) {
		if err := fwParsePorts(sport, false); err != nil {
			return 0, fwRuleError("sport", "%s", err)
		}
		if !perlTrue(proto) {
			return 0, fwRuleError("proto", "missing property - 'sport' requires this property")
		}
		if !fwPortProtocols[proto] {
			return 0, fwRuleError("sport", "protocol '%s' does not support ports", proto)
		}
	}
	return ipversion, nil
}

// fwVerifyAddresses checks the source and the destination: address lists
// of one IP version, agreeing with the protocol's (ipversion, 0 for any),
// or references to IPSets that exist. It answers the rule's IP version.
func (e *Emulator) fwVerifyAddresses(r fwRule, l fwRuleList, ipversion int) (int, error) {
	for _, k := range []string{"source", "dest"} {
		v := r[k]
		if !perlTrue(v) {
			continue
		}
		version, err := fwParseAddressList(v)
		if err == nil && version != 0 {
			if ipversion != 0 && version != ipversion {
				err = fmt.Errorf("detected mixed ipv4/ipv6 addresses in rule")
			} else {
				ipversion = version
			}
		}
		if err != nil {
			return 0, fwRuleError(k, "%s", err)
		}
		if msg := e.fwCheckReference(v, l); msg != "" {
			return 0, fwRuleError(k, "%s", msg)
		}
	}
	return ipversion, nil
}

// fwCheckReference checks an IPSet or alias reference the way verify_rule
// does: "+name" (with an optional dc/, guest/ or sdn/ scope, which the
// check ignores) must name an IPSet of the cluster or of the rule's VM.
func (e *Emulator) fwCheckReference(v string, l fwRuleList) string {
	if strings.HasPrefix(v, "+") {
		m := fwIPSetRe.FindStringSubmatch(v)
		if m == nil {
			return fmt.Sprintf("invalid ipset name '%s'", v)
		}
		_, inCluster := e.clusterFW().ipsets[m[2]]
		inLocal := false
		if l.local != nil {
			_, inLocal = l.local.ipsets[m[2]]
		}
		if !inCluster && !inLocal {
			return fmt.Sprintf("no such ipset '%s'", m[2])
		}
		return ""
	}
	if fwAliasRe.MatchString(v) {
		return fmt.Sprintf("no such alias '%s'", v) // aliases are not emulated
	}
	return ""
}

// fwParseAddressList is parse_address_list: an IPSet or alias reference,
// or a comma-separated list of addresses and networks of one IP version,
// or one range. It returns the IP version (0 for a reference).
func fwParseAddressList(s string) (int, error) {
	if len(s) > 1 && s[0] == '+' && !strings.ContainsAny(s, " \t\n") {
		if len(s) > 64+1 {
			return 0, fmt.Errorf("ipset name too long")
		}
		return 0, nil
	}
	if fwAliasRe.MatchString(s) {
		if len(s) > 64 {
			return 0, fmt.Errorf("alias name too long")
		}
		return 0, nil
	}
	elems := perlSplit(s, ",")
	if s != strings.Join(elems, ",") {
		return 0, fmt.Errorf("extraneous commas in list")
	}
	version, ranged := 0, false
	for _, elem := range elems {
		v, isRange, err := fwParseNetIP(elem)
		if err != nil {
			return 0, fmt.Errorf("invalid IP address: %w", err)
		}
		ranged = ranged || isRange
		if version != 0 && v != version {
			return 0, fmt.Errorf("detected mixed ipv4/ipv6 addresses in address list '%s'", s)
		}
		version = v
	}
	if ranged && len(elems) > 1 {
		return 0, fmt.Errorf("you can't use a range in a list")
	}
	return version, nil
}

// fwParseNetIP accepts what Net::IP->new accepts of an address list's
// elements: an address, a network whose host bits are zero, or a range
// "first-last". The error texts approximate Net::IP's.
func fwParseNetIP(s string) (version int, isRange bool, err error) {
	addr := func(s string) (netip.Addr, error) {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || a.Zone() != "" {
			return netip.Addr{}, netIPError("Invalid IP address %s", s)
		}
		return a, nil
	}
	ver := func(a netip.Addr) int {
		if a.Is4() {
			return 4
		}
		return 6
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := addr(first)
		if err != nil {
			return 0, false, err
		}
		b, err := addr(last)
		if err != nil {
			return 0, false, err
		}
		if ver(a) != ver(b) {
			return 0, false, netIPError("Begin and end addresses are of different IP versions")
		}
		if a.Compare(b) > 0 {
			return 0, false, netIPError("Begin address is greater than end address %s - %s", a, b)
		}
		return ver(a), true, nil
	}
	if ip, bits, ok := strings.Cut(s, "/"); ok {
		a, err := addr(ip)
		if err != nil {
			return 0, false, err
		}
		n, err := strconv.Atoi(bits)
		if err != nil || n < 0 || n > a.BitLen() {
			return 0, false, netIPError("Invalid prefix length /%s", bits)
		}
		if p := netip.PrefixFrom(a, n); p.Masked().Addr() != a {
			return 0, false, netIPError("Invalid prefix %s/%d", fwBinary(a), n)
		}
		return ver(a), false, nil
	}
	a, err := addr(s)
	if err != nil {
		return 0, false, err
	}
	return ver(a), false, nil
}

// netIPError is an error of Net::IP, whose texts are capitalised.
func netIPError(format string, args ...any) error {
	return netIPErr(fmt.Sprintf(format, args...))
}

type netIPErr string

func (e netIPErr) Error() string { return string(e) }

// fwBinary writes an address in binary, as Net::IP's errors show it.
func fwBinary(a netip.Addr) string {
	var b strings.Builder
	for _, octet := range a.AsSlice() {
		fmt.Fprintf(&b, "%08b", octet)
	}
	return b.String()
}

// fwCleanCIDR checks an IPSet entry's address as pve_verify_ip_or_cidr
// does and returns it as create_ip stores it: host bits cleared
// (clean_cidr), a /32 or /128 dropped (parse_ip_or_cidr).
func fwCleanCIDR(v string) (string, error) {
	ip, bits, hasBits := strings.Cut(v, "/")
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" || hasBits && (bits == "" || strings.Trim(bits, "0123456789") != "") {
		return "", fmt.Errorf("value does not look like a valid IP address or CIDR network")
	}
	if !hasBits {
		return v, nil
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n > a.BitLen() {
		return "", netIPError("Invalid prefix length /%s", bits)
	}
	if n == a.BitLen() {
		return a.String(), nil
	}
	return netip.PrefixFrom(a, n).Masked().String(), nil
}

// fwParsePorts is parse_port_name_number_or_range: numbers, ranges
// "first:last" and /etc/services names, at most 15 numbers (a range
// counts two); with icmp, ICMP type names in place of ports.
func fwParsePorts(s string, icmp bool) error {
	elems := perlSplit(s, ",")
	if s != strings.Join(elems, ",") {
		return fmt.Errorf("extraneous commas in list")
	}
	count, icmpPort := 0, false
	port := func(p string) error {
		if n, err := strconv.ParseUint(p, 10, 32); err != nil || n > 65535 {
			return fmt.Errorf("invalid port '%s'", p)
		}
		return nil
	}
	for _, item := range elems {
		if m := fwPortRangeRe.FindStringSubmatch(item); m != nil {
			count += 2
			if err := port(m[1]); err != nil {
				return err
			}
			if err := port(m[2]); err != nil {
				return err
			}
			a, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			if a > b {
				return fmt.Errorf("backwards range '%s:%s' not allowed, did you mean '%s:%s'?", m[1], m[2], m[2], m[1])
			}
			continue
		}
		if fwDigitsRe.MatchString(item) {
			count++
			if err := port(item); err != nil {
				return err
			}
			continue
		}
		switch {
		case icmp && (fwICMPTypes[item] || fwICMPv6Types[item]):
			icmpPort = true
		case !fwServices[item]:
			return fmt.Errorf("invalid port '%s'", item)
		}
	}
	if icmpPort && count > 0 {
		return fmt.Errorf("ICMP ports not allowed in port range")
	}
	if count > 15 {
		return fmt.Errorf("too many entries in port list (> 15 numbers)")
	}
	return nil
}

var (
	fwPortRangeRe = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)
	fwDigitsRe    = regexp.MustCompile(`^[0-9]+$`)
)

// ---- IPSets ----

type fwFileFunc func(e *Emulator, c *call) (*fwFile, error)

func fwIPSetList(f *fwFile) []map[string]string {
	out := []map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(f.ipsets)) {
		m := map[string]string{"name": name}
		if s := f.ipsets[name]; s.comment != "" {
			m["comment"] = s.comment
		}
		out = append(out, m)
	}
	return out
}

func (s *fwIPSet) list() []map[string]string {
	out := make([]map[string]string, 0, len(s.entries))
	for _, en := range s.entries {
		m := map[string]string{"cidr": en.cidr}
		if en.nomatch {
			m["nomatch"] = "1"
		}
		if en.comment != "" {
			m["comment"] = en.comment
		}
		out = append(out, m)
	}
	return out
}

func fwEntriesJSON(s *fwIPSet) []map[string]any {
	out := fwListJSON(s.list())
	for _, o := range out {
		if _, ok := o["nomatch"]; ok {
			o["nomatch"] = 1
		}
	}
	return out
}

// onIPSet makes a handler that works on the IPset the path names, in
// the firewall file file finds.
func onIPSet(file fwFileFunc, do func(c *call, s *fwIPSet) (any, error)) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		f, err := file(e, c)
		if err != nil {
			return nil, err
		}
		s, err := fwLookupIPSet(f, c.values["name"])
		if err != nil {
			return nil, err
		}
		return do(c, s)
	}
}

func fwLookupIPSet(f *fwFile, name string) (*fwIPSet, error) {
	s, ok := f.ipsets[name]
	if !ok {
		return nil, fail("no such IPSet '%s'", name)
	}
	return s, nil
}

func getFWIPSets(file fwFileFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		f, err := file(e, c)
		if err != nil {
			return nil, err
		}
		return fwListJSON(fwIPSetList(f)), nil
	}
}

func postFWIPSet(file fwFileFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		f, err := file(e, c)
		if err != nil {
			return nil, err
		}
		name, rename := c.values["name"], c.values["rename"]
		comment, hasComment := c.values["comment"]
		if rename == "" {
			if _, ok := f.ipsets[name]; ok {
				return nil, paramError(map[string]string{"name": fmt.Sprintf("IPSet '%s' already exists", name)})
			}
			if _, ok := f.ipsets[strings.ToLower(name)]; ok {
				return nil, nil // as for groups: the existing set stays
			}
			f.ipsets[strings.ToLower(name)] = &fwIPSet{comment: fwComment(comment)}
			return nil, nil
		}
		if err := fwAssertDigest(fwListDigest(fwIPSetList(f)), c); err != nil {
			return nil, err
		}
		s, ok := f.ipsets[rename]
		if !ok {
			return nil, paramError(map[string]string{"name": fmt.Sprintf("IPSet '%s' does not exist", rename)})
		}
		if _, taken := f.ipsets[name]; taken && name != rename {
			return nil, paramError(map[string]string{"name": fmt.Sprintf("IPSet '%s' does already exist", name)})
		}
		if hasComment {
			s.comment = fwComment(comment)
		}
		delete(f.ipsets, rename)
		f.ipsets[strings.ToLower(name)] = s
		return nil, nil
	}
}

func deleteFWIPSet(file fwFileFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		f, err := file(e, c)
		if err != nil {
			return nil, err
		}
		name := c.values["name"]
		s, err := fwLookupIPSet(f, name)
		if err != nil {
			return nil, err
		}
		if force, _ := parseBool(c.values["force"]); len(s.entries) > 0 && !force {
			return nil, fail("IPSet '%s' is not empty", name)
		}
		delete(f.ipsets, name)
		return nil, nil
	}
}

func getFWEntries(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		return fwEntriesJSON(s), nil
	})
}

func postFWEntry(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		cidr := c.values["cidr"]
		if m := fwAliasRe.FindStringSubmatch(cidr); m != nil {
			return nil, fail("no such alias '%s'", strings.TrimPrefix(cidr, m[1])) // aliases are not emulated
		}
		cidr, _ = fwCleanCIDR(cidr) // the format is checked already
		for _, en := range s.entries {
			if en.cidr == cidr {
				return nil, paramError(map[string]string{"cidr": fmt.Sprintf("address '%s' already exists", cidr)})
			}
		}
		if fwZeroPrefixRe.MatchString(cidr) {
			return nil, paramError(map[string]string{"cidr": "a zero prefix is not allowed in ipset entries"})
		}
		nomatch, _ := parseBool(c.values["nomatch"])
		s.entries = append(s.entries, fwEntry{cidr: cidr, nomatch: nomatch, comment: fwComment(c.values["comment"])})
		slices.SortFunc(s.entries, func(a, b fwEntry) int { return strings.Compare(a.cidr, b.cidr) })
		return nil, nil
	})
}

var fwZeroPrefixRe = regexp.MustCompile(`/0+$`)

func getFWEntry(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		for _, o := range fwEntriesJSON(s) {
			if o["cidr"] == c.values["cidr"] {
				return o, nil
			}
		}
		return nil, paramError(map[string]string{"cidr": "no such IP/Network"})
	})
}

func putFWEntry(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		if err := fwAssertDigest(fwListDigest(s.list()), c); err != nil {
			return nil, err
		}
		for i, en := range s.entries {
			if en.cidr == c.values["cidr"] {
				// Both are replaced: one not given is removed.
				s.entries[i].nomatch, _ = parseBool(c.values["nomatch"])
				s.entries[i].comment = fwComment(c.values["comment"])
				return nil, nil
			}
		}
		return nil, paramError(map[string]string{"cidr": "no such IP/Network"})
	})
}

// deleteFWEntry removes an entry; like PVE it succeeds when there is no
// such entry.
func deleteFWEntry(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		if err := fwAssertDigest(fwListDigest(s.list()), c); err != nil {
			return nil, err
		}
		s.entries = slices.DeleteFunc(s.entries, func(en fwEntry) bool { return en.cidr == c.values["cidr"] })
		return nil, nil
	})
}

// ---- tables ----

// fwSet makes a set of the words of s.
func fwSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

var (
	// fwProtocols are the names and numbers of /etc/protocols (Debian's
	// netbase, as on PVE), plus icmpv6, which PVE adds.
	fwProtocols = func() map[string]bool {
		m := fwSet("icmpv6")
		f := strings.Fields(`ip 0 hopopt 0 icmp 1 igmp 2 ggp 3 ipencap 4 st 5 tcp 6 egp 8 igp 9 pup 12
			udp 17 hmp 20 xns-idp 22 rdp 27 iso-tp4 29 dccp 33 xtp 36 ddp 37 idpr-cmtp 38 ipv6 41
			ipv6-route 43 ipv6-frag 44 idrp 45 rsvp 46 gre 47 esp 50 ah 51 skip 57 ipv6-icmp 58
			ipv6-nonxt 59 ipv6-opts 60 rspf 73 vmtp 81 eigrp 88 ospf 89 ax.25 93 ipip 94 etherip 97
			encap 98 pim 103 ipcomp 108 vrrp 112 l2tp 115 isis 124 sctp 132 fc 133
			mobility-header 135 udplite 136 mpls-in-ip 137 manet 138 hip 139 shim6 140 wesp 141
			rohc 142 ethernet 143 mptcp 262`)
		for _, w := range f {
			m[w] = true
		}
		return m
	}()

	// fwPortProtocols are the protocols with ports ($PROTOCOLS_WITH_PORTS).
	fwPortProtocols = fwSet("udp 17 udplite 136 tcp 6 dccp 33 sctp 132")

	// fwServices are the service names of /etc/services (Debian's netbase)
	// for tcp, udp and sctp.
	fwServices = fwSet(`tcpmux echo discard systat daytime netstat qotd chargen ftp-data ftp fsp ssh
		telnet smtp time whois tacacs domain bootps bootpc tftp gopher finger http kerberos iso-tsap
		acr-nema pop3 sunrpc auth nntp ntp epmap netbios-ns netbios-dgm netbios-ssn imap2 snmp
		snmp-trap cmip-man cmip-agent mailq xdmcp bgp smux qmtp z3950 ipx ptp-event ptp-general
		pawserv zserv rpc2portmap codaauth2 clearcase ldap svrloc https snpp microsoft-ds kpasswd
		submissions saft isakmp rtsp nqs asf-rmcp qmqp ipp ldp exec biff login who shell syslog
		printer talk ntalk route gdomap uucp klogin kshell dhcpv6-client dhcpv6-server afpovertcp
		nntps submission ldaps tinc silc kerberos-adm domain-s rsync ftps-data ftps telnets imaps
		pop3s socks proofd rootd openvpn rmiregistry lotusnote ms-sql-s ms-sql-m ingreslock
		datametrics sa-msg-port kermit groupwise l2f radius radius-acct cisco-sccp nfs gnunet
		rtcm-sc104 gsigatekeeper gris cvspserver venus venus-se codasrv codasrv-se mon dict
		f5-globalsite gsiftp gpsd gds-db icpv2 isns iscsi-target mysql ms-wbt-server nut distcc
		daap svn suucp sysrqd sieve epmd remctl f5-iquery ntske ipsec-nat-t iax mtn radmin-port
		sip sip-tls xmpp-client xmpp-server cfengine mdns postgresql freeciv amqps amqp x11 x11-1
		x11-2 x11-3 x11-4 x11-5 x11-6 x11-7 gnutella-svc gnutella-rtr redis sge-qmaster sge-execd
		mysql-proxy babel ircs-u bbs afs3-fileserver afs3-callback afs3-prserver afs3-vlserver
		afs3-kaserver afs3-volser afs3-bos afs3-update afs3-rmtsys font-service http-alt puppet
		bacula-dir bacula-fd bacula-sd xmms2 nbd zabbix-agent zabbix-trapper amanda dicom hkp
		db-lsp dcap gsidcap wnn6 kerberos4 kerberos-master passwd-server krb-prop zephyr-srv
		zephyr-clt zephyr-hm iprop supfilesrv supfiledbg poppassd moira-db moira-update moira-ureg
		spamd skkserv predict rmtcfg xtel xtelw zebrasrv zebra ripd ripngd ospfd bgpd ospf6d
		ospfapi isisd fax hylafax munin rplay nrpe nsca canna syslog-tls sane-port ircd zope-ftp
		tproxy omniorb clc-build-daemon xinetd git zope webmin kamanda amandaidx amidxtape sgi-cmsd
		sgi-crsd sgi-gcd sgi-cad binkp asp csync2 dircproxy tfido fido`)

	// fwICMPTypes and fwICMPv6Types are the type names iptables and
	// ip6tables know (PVE::Firewall's $icmp_type_names and
	// $icmpv6_type_names).
	fwICMPTypes = fwSet(`any echo-reply destination-unreachable network-unreachable host-unreachable
		protocol-unreachable port-unreachable fragmentation-needed source-route-failed
		network-unknown host-unknown network-prohibited host-prohibited TOS-network-unreachable
		TOS-host-unreachable communication-prohibited host-precedence-violation precedence-cutoff
		source-quench redirect network-redirect host-redirect TOS-network-redirect
		TOS-host-redirect echo-request router-advertisement router-solicitation time-exceeded
		ttl-zero-during-transit ttl-zero-during-reassembly parameter-problem ip-header-bad
		required-option-missing timestamp-request timestamp-reply address-mask-request
		address-mask-reply`)
	fwICMPv6Types = fwSet(`destination-unreachable no-route communication-prohibited beyond-scope
		address-unreachable port-unreachable failed-policy reject-route packet-too-big
		time-exceeded ttl-zero-during-transit ttl-zero-during-reassembly parameter-problem
		bad-header unknown-header-type unknown-option echo-request echo-reply router-solicitation
		router-advertisement neighbor-solicitation neighbour-solicitation neighbor-advertisement
		neighbour-advertisement redirect`)

	// fwMacros maps the lower-cased names of PVE's firewall macros to
	// their canonical spelling.
	fwMacros = func() map[string]string {
		m := map[string]string{}
		for _, name := range strings.Fields(`Amanda Auth BGP BitTorrent BitTorrent32 Ceph CVS Citrix
			DAAP DCC DHCPfwd DNS Distcc FTP Finger GNUnet GRE Git HKP HTTP HTTPS ICPV2 ICQ IMAP IMAPS
			IPIP IPsec IPsecah IPsecnat IRC Jetdirect L2TP LDAP LDAPS MSNP MSSQL Mail MDNS Munin
			MySQL NNTP NNTPS NTP OSPF OpenVPN PCA PMG POP3 POP3S PPtP Ping PostgreSQL Printer RDP
			RIP RNDC Razor Rdate Rsync SANE SMB SMBswat SMTP SMTPS SNMP SPAMD SSH SVN SixXS
			SPICEproxy Squid Submission Syslog TFTP Telnet Telnets Time Trcrt VNC VNCL Web Webcache
			Webmin Whois NeighborDiscovery DHCPv6`) {
			m[strings.ToLower(name)] = name
		}
		return m
	}()
)
