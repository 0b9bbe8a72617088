package pveemu

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// sdnFormats check PVE's named formats (pve-common's JSONSchema.pm,
// pve-network, pve-ha-manager) used by the SDN, network and HA tables. A
// name ending in -list is a list of the format (split on commas,
// semicolons and spaces). They are registered in namedFormats, where
// checkFormat finds them.
func sdnFormats() map[string]func(string) error {
	return map[string]func(string) error{
		"pve-sdn-zone-id":           sdnIDFormat("zone"),
		"pve-sdn-vnet-id":           sdnIDFormat("vnet"),
		"pve-sdn-subnet-id":         checkSubnetIDFormat,
		"pve-sdn-dhcp-range":        func(v string) error { _, err := parseDHCPRange(v); return err },
		"ip":                        checkIP,
		"ip-list":                   eachOf(checkIP),
		"ipv4":                      checkIPv4,
		"ipv6":                      checkIPv6,
		"ipv4mask":                  checkIPv4Mask,
		"CIDRv4":                    func(v string) error { return checkCIDR(v, true) },
		"CIDRv6":                    func(v string) error { return checkCIDR(v, false) },
		"pve-node-list":             eachOf(func(v string) error { return checkFormat("pve-node", v) }),
		"mac-addr":                  checkUnicastMAC,
		"pve-iface":                 checkIface,
		"pve-iface-list":            eachOf(checkIface),
		"pve-vlan-id-or-range-list": eachOf(checkVLANRange),
		"pve-ha-resource-or-vm-id":  checkHAResourceOrVMID,
		"pve-ha-resource-id-list":   eachOf(checkHAResourceID),
		"pve-ha-node-list":          eachOf(checkHANode),
	}
}

func eachOf(check func(string) error) func(string) error {
	return func(v string) error {
		for _, item := range splitList(v) {
			if err := check(item); err != nil {
				return err
			}
		}
		return nil
	}
}

// sdnIDRe is pve-network's zone and vnet ID format, case-insensitive.
var sdnIDRe = regexp.MustCompile(`^(?i)[a-z][a-z0-9]*[a-z0-9]$`)

func sdnIDFormat(what string) func(string) error {
	return func(v string) error {
		if !sdnIDRe.MatchString(v) {
			return fmt.Errorf("%s ID '%s' contains illegal characters", what, v)
		}
		if len(v) > 8 {
			return fmt.Errorf("%s ID '%s' can't be more length than 8 characters", what, v)
		}
		return nil
	}
}

// checkSubnetIDFormat takes a CIDR or a subnet ID ("zone-10.0.0.0-24").
func checkSubnetIDFormat(v string) error {
	cidr := v
	if !strings.Contains(v, "/") {
		parts := strings.Split(v, "-")
		ip, mask := "", ""
		if len(parts) > 1 {
			ip = parts[1]
		}
		if len(parts) > 2 {
			mask = parts[2]
		}
		cidr = ip + "/" + mask
	}
	if checkCIDR(cidr, true) != nil && checkCIDR(cidr, false) != nil {
		return errors.New("value does not look like a valid CIDR network")
	}
	return nil
}

func parseIP(v string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(v)
	return a, err == nil && a.Zone() == ""
}

func checkIP(v string) error {
	if _, ok := parseIP(v); !ok {
		return errors.New("value does not look like a valid IP address")
	}
	return nil
}

func checkIPv4(v string) error {
	if a, ok := parseIP(v); !ok || !a.Is4() {
		return errors.New("value does not look like a valid IPv4 address")
	}
	return nil
}

func checkIPv6(v string) error {
	if a, ok := parseIP(v); !ok || !a.Is6() {
		return errors.New("value does not look like a valid IPv6 address")
	}
	return nil
}

// checkIPv4Mask takes a dotted netmask, as PVE's ipv4mask does.
func checkIPv4Mask(v string) error {
	a, ok := parseIP(v)
	if ok && a.Is4() {
		b := a.As4()
		bits := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if bits|(bits-1) == 0xffffffff || bits == 0 {
			return nil
		}
	}
	return errors.New("value does not look like a valid IP netmask")
}

// checkCIDR is PVE's CIDRv4 or CIDRv6: an address and a prefix length
// above 7.
func checkCIDR(v string, v4 bool) error {
	ip, bits, ok := strings.Cut(v, "/")
	a, okIP := parseIP(ip)
	n, err := strconv.Atoi(bits)
	maxBits := 128
	if v4 {
		maxBits = 32
	}
	if !ok || !okIP || a.Is4() != v4 || err != nil || n <= 7 || n > maxBits {
		if v4 {
			return errors.New("value does not look like a valid IPv4 CIDR network")
		}
		return errors.New("value does not look like a valid IPv6 CIDR network")
	}
	return nil
}

var unicastMACRe = regexp.MustCompile(`^(?i)[a-f0-9][02468ace](:[a-f0-9]{2}){5}$`)

func checkUnicastMAC(v string) error {
	if !unicastMACRe.MatchString(v) {
		return errors.New("value does not look like a valid unicast MAC address")
	}
	return nil
}

// parseDHCPRange parses pve-sdn-dhcp-range,
// "start-address=<ip>,end-address=<ip>".
func parseDHCPRange(v string) (map[string]string, error) {
	kv, err := propertyString(v, "")
	if err != nil {
		return nil, err
	}
	for k := range kv {
		if k != "start-address" && k != "end-address" {
			return nil, fmt.Errorf("invalid key in comma-separated list property: %s", k)
		}
	}
	for _, k := range []string{"start-address", "end-address"} {
		a, ok := kv[k]
		if !ok {
			return nil, fmt.Errorf("%s: property is missing and it is not optional", k)
		}
		if checkIP(a) != nil {
			return nil, fmt.Errorf("%s: value does not look like a valid IP address", k)
		}
	}
	return kv, nil
}
