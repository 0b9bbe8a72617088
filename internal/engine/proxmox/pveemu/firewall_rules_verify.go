package pveemu

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Rule verification as pve-firewall's verify_rule does it: types,
// actions, interfaces, macros, protocols, ports, ICMP types, addresses and
// IPSet references, with PVE's error texts.

// fwRuleTypes are the rule types each list takes.
var fwRuleTypes = map[string][]string{
	"vm":      {"in", "out", "group"},
	"group":   {"in", "out", "forward"},
	"cluster": {"in", "out", "forward", "group"},
	"host":    {"in", "out", "forward", "group"},
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
