package pveemu

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The firewall endpoints serve PVE's firewall configuration: the
// cluster's file (/etc/pve/firewall/cluster.fw: options, IPSets, rules and
// security groups), one file per VM (/etc/pve/firewall/<vmid>.fw:
// options, IPSets and rules) and one per node (/etc/pve/nodes/<node>/host.fw:
// options and rules; firewall_host.go). This file holds their state and their route
// table; each area has its own file: firewall_options.go,
// firewall_groups.go, firewall_rules.go (with firewall_rules_verify.go),
// firewall_ipsets.go, and firewall_tables.go for the tables rules are
// checked against.
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
// vnet firewalls, SDN IPSets, macro expansion checks (a macro's
// name is checked and canonicalised, not its parameters), and the copy of a
// VM's firewall file that PVE makes when the VM is cloned.

// firewallState is the emulated cluster's firewall configuration.
type firewallState struct {
	cluster *fwFile             // cluster.fw, made on first use
	vms     map[int]*vmFirewall // <vmid>.fw
	hosts   map[string]*fwFile  // nodes/<node>/host.fw (firewall_host.go)
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

// fwRuleLists are the four places rule lists live.
var fwRuleLists = []struct {
	path   string
	params []param
	list   fwRuleListFunc
}{
	{"/cluster/firewall/rules", nil, clusterRuleList},
	{"/cluster/firewall/groups/{group}", []param{fwGroupParam}, groupRuleList},
	{"/nodes/{node}/qemu/{vmid}/firewall/rules", paramsVM, vmRuleList},
	{"/nodes/{node}/firewall/rules", paramsNode, hostRuleList},
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
	add("GET", "/nodes/{node}/firewall/options", paramsNode, (*Emulator).getFWHostOptions)
	add("PUT", "/nodes/{node}/firewall/options", paramsFWHostOptions, (*Emulator).putFWHostOptions)

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
	"pve-fw-conntrack-helper": func(v string) error {
		for _, h := range splitList(v) {
			if !fwConntrackHelpers[h] {
				return fmt.Errorf("invalid value '%s'", h)
			}
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
