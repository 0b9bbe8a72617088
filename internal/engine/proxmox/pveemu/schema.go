package pveemu

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The parameter tables below are taken from PVE's published API schema, the
// API viewer data (api-viewer/apidata.js in proxmox/pve-docs, release 9.1.3):
// names, types, formats, minimums and maximums, enums, patterns and
// maxLength are the schema's. Only the behaviour of formats that the schema
// names but does not define (dns-name, pve-node, urlencoded, ...) comes from
// pve-common's JSONSchema.pm, and the error texts are PVE's.

// kind is a JSON schema type as PVE's schema spells it.
type kind int

const (
	kString kind = iota
	kInteger
	kBoolean
)

// param is one request parameter of an endpoint.
type param struct {
	name      string
	kind      kind
	required  bool
	format    string // a named PVE format, checked by checkFormat
	min, max  int64  // integer bounds; max 0 means unbounded
	hasMin    bool
	enum      []string
	pattern   *regexp.Regexp
	maxLength int
	indexed   int // n > 0: the name is a prefix taking an index 0..n-1 (net[n])
}

func str(name string) param { return param{name: name, kind: kString} }
func boolean(name string) param {
	return param{name: name, kind: kBoolean}
}
func integer(name string, lo, hi int64) param {
	return param{name: name, kind: kInteger, min: lo, max: hi, hasMin: true}
}
func (p param) req() param                { p.required = true; return p }
func (p param) withFormat(f string) param { p.format = f; return p }
func (p param) maxLen(n int) param        { p.maxLength = n; return p }

// vmidParam is the schema's pve-vmid: an integer from 100 to 999999999.
func vmidParam(name string) param {
	return integer(name, 100, 999999999).withFormat("pve-vmid")
}

// maxNets is qemu-server's MAX_NETS; the schema shows the parameter as
// net[n] without giving the range.
const maxNets = 32

var (
	resizeDisks = func() []string {
		var d []string
		for _, bus := range []struct {
			name string
			n    int
		}{{"ide", 4}, {"scsi", 31}, {"virtio", 16}, {"sata", 6}} {
			for i := range bus.n {
				d = append(d, bus.name+strconv.Itoa(i))
			}
		}
		return append(d, "efidisk0", "tpmstate0")
	}()
	sizePattern = regexp.MustCompile(`^\+?\d+(\.\d+)?[KMGT]?$`)

	// Parameters per endpoint. Path parameters (node, vmid, upid) are
	// included: PVE validates them the same way.
	paramsResources = []param{{name: "type", kind: kString, enum: []string{"vm", "storage", "node", "sdn"}}}
	paramsNextID    = []param{vmidParam("vmid")}
	paramsClone     = []param{
		str("node").req().withFormat("pve-node"), vmidParam("vmid").req(), vmidParam("newid").req(),
		integer("bwlimit", 0, 0), str("description"),
		{name: "format", kind: kString, enum: []string{"raw", "qcow2", "vmdk"}},
		boolean("full"), str("name").withFormat("dns-name"), str("pool").withFormat("pve-poolid"),
		str("snapname").withFormat("pve-configid").maxLen(40), str("storage").withFormat("pve-storage-id"),
		str("target").withFormat("pve-node"),
	}
	paramsConfigGet = []param{str("node").req().withFormat("pve-node"), vmidParam("vmid").req(), boolean("current"), str("snapshot").maxLen(40)}
	paramsConfigSet = []param{
		str("node").req().withFormat("pve-node"), vmidParam("vmid").req(),
		integer("cores", 1, 0), integer("sockets", 1, 0), str("memory").withFormat("memory"),
		str("name").withFormat("dns-name"), str("description").maxLen(8192),
		{name: "net", kind: kString, format: "pve-qm-net", indexed: maxNets},
		{name: "ipconfig", kind: kString, format: "pve-qm-ipconfig", indexed: maxNets},
		str("sshkeys").withFormat("urlencoded"), str("ciuser"), str("cipassword"),
		str("nameserver").withFormat("address-list"), str("searchdomain"),
		str("digest").maxLen(40), str("delete").withFormat("pve-configid-list"),
		str("revert").withFormat("pve-configid-list"), boolean("skiplock"), boolean("onboot"),
		str("tags").withFormat("pve-tag-list"),
	}
	paramsConfigPost = append(append([]param(nil), paramsConfigSet...), integer("background_delay", 1, 30))
	paramsResize     = []param{
		str("node").req().withFormat("pve-node"), vmidParam("vmid").req(),
		{name: "disk", kind: kString, required: true, enum: resizeDisks},
		{name: "size", kind: kString, required: true, pattern: sizePattern},
		str("digest").maxLen(40), boolean("skiplock"),
	}
	paramsVM    = []param{str("node").req().withFormat("pve-node"), vmidParam("vmid").req()}
	paramsStart = append(append([]param(nil), paramsVM...),
		boolean("skiplock"), integer("timeout", 0, 0), str("force-cpu"), str("machine"),
		str("migratedfrom").withFormat("pve-node"), str("stateuri").maxLen(128))
	paramsStop = append(append([]param(nil), paramsVM...),
		boolean("keepActive"), boolean("overrule-shutdown"), boolean("skiplock"),
		integer("timeout", 0, 0), str("migratedfrom").withFormat("pve-node"))
	paramsShutdown = append(append([]param(nil), paramsVM...),
		boolean("forceStop"), boolean("keepActive"), boolean("skiplock"), integer("timeout", 0, 0))
	paramsReboot  = append(append([]param(nil), paramsVM...), integer("timeout", 0, 0))
	paramsDestroy = append(append([]param(nil), paramsVM...),
		boolean("destroy-unreferenced-disks"), boolean("purge"), boolean("skiplock"))
	// paramsCreate is POST /nodes/{node}/qemu, the options Holdfast
	// uses of its ~150: the config options, the drives (checked by the
	// handler: new volumes as STORAGE:SIZE, STORAGE:cloudinit), ostype,
	// scsihw, pool and start.
	paramsCreate = append(slices.DeleteFunc(append([]param(nil), paramsConfigSet...), func(p param) bool {
		return p.name == "vmid" || p.name == "digest" || p.name == "delete" || p.name == "revert" || p.name == "skiplock"
	}),
		vmidParam("vmid").req(),
		param{name: "scsi", kind: kString, indexed: 31}, param{name: "virtio", kind: kString, indexed: 16},
		param{name: "sata", kind: kString, indexed: 6}, param{name: "ide", kind: kString, indexed: 4},
		param{name: "ostype", kind: kString, enum: []string{"other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26", "solaris"}},
		param{name: "scsihw", kind: kString, enum: []string{"lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"}},
		str("pool").withFormat("pve-poolid"), boolean("start"))
	paramsTask = []param{str("node").req().withFormat("pve-node"), str("upid").req()}
)

// validate checks the request's parameters against the endpoint's table the
// way PVE's JSONSchema does, returning the per-parameter errors (nil when
// all are valid).
func validate(params []param, values map[string]string) map[string]string {
	errs := map[string]string{}
	seen := map[string]bool{}
	for name, v := range values {
		p, ok := lookupParam(params, name)
		if !ok {
			errs[name] = "property is not defined in schema and the schema does not allow additional properties"
			continue
		}
		seen[p.name] = true
		if msg := p.check(v); msg != "" {
			errs[name] = msg
		}
	}
	for _, p := range params {
		if p.required && !seen[p.name] {
			errs[p.name] = "property is missing and it is not optional"
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func lookupParam(params []param, name string) (param, bool) {
	for _, p := range params {
		if p.indexed == 0 {
			if p.name == name {
				return p, true
			}
			continue
		}
		idx, ok := strings.CutPrefix(name, p.name)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(idx)
		if err == nil && n >= 0 && n < p.indexed && strconv.Itoa(n) == idx {
			return p, true
		}
	}
	return param{}, false
}

func (p param) check(v string) string {
	switch p.kind {
	case kInteger:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Sprintf("type check ('integer') failed - got '%s'", v)
		}
		if p.hasMin && n < p.min {
			return fmt.Sprintf("value must have a minimum value of %d", p.min)
		}
		if p.max > 0 && n > p.max {
			return fmt.Sprintf("value must have a maximum value of %d", p.max)
		}
	case kBoolean:
		if _, ok := parseBool(v); !ok {
			return fmt.Sprintf("type check ('boolean') failed - got '%s'", v)
		}
	case kString:
		if p.maxLength > 0 && len(v) > p.maxLength {
			return fmt.Sprintf("value may only be %d characters long", p.maxLength)
		}
		if p.enum != nil && !contains(p.enum, v) {
			return fmt.Sprintf("value '%s' does not have a value in the enumeration '%s'", v, strings.Join(p.enum, ", "))
		}
		if p.pattern != nil && !p.pattern.MatchString(v) {
			return "value does not match the regex pattern"
		}
	}
	if p.format != "" {
		if err := checkFormat(p.format, v); err != nil {
			return "invalid format - " + err.Error()
		}
	}
	return ""
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// parseBool accepts what PVE's schema accepts for a boolean.
func parseBool(v string) (value, ok bool) {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true, true
	case "0", "false", "no", "off":
		return false, true
	}
	return false, false
}

var (
	// From pve-common's JSONSchema.pm.
	urlencodedRe = regexp.MustCompile(`^[-%a-zA-Z0-9_.!~*'()]*$`)
	configIDRe   = regexp.MustCompile(`^[a-z][a-z0-9_-]+$`)
	nodeRe       = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	dnsLabel     = `([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)`
	dnsNameRe    = regexp.MustCompile(`^(` + dnsLabel + `\.)*` + dnsLabel + `$`)
	poolIDRe     = regexp.MustCompile(`^[A-Za-z0-9_\-/]+$`)
	storageIDRe  = regexp.MustCompile(`^(?i)[a-z][a-z0-9\-_.]*[a-z0-9]$`)
	tagRe        = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_\-+.]*$`)
	macRe        = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	bridgeRe     = regexp.MustCompile(`^[-_.\w\d]+$`)
)

func checkFormat(format, v string) error {
	switch format {
	case "urlencoded":
		if !urlencodedRe.MatchString(v) {
			return fmt.Errorf("invalid urlencoded string: %s", v)
		}
	case "pve-vmid":
		// the integer check already applied the bounds
	case "pve-node":
		if !nodeRe.MatchString(v) {
			return fmt.Errorf("value does not look like a valid node name")
		}
	case "dns-name":
		if !dnsNameRe.MatchString(v) {
			return fmt.Errorf("value does not look like a valid DNS name")
		}
	case "pve-poolid":
		if !poolIDRe.MatchString(v) {
			return fmt.Errorf("invalid characters in pool ID")
		}
	case "pve-storage-id":
		if !storageIDRe.MatchString(v) {
			return fmt.Errorf("storage ID '%s' contains illegal characters", v)
		}
	case "pve-configid":
		if !configIDRe.MatchString(v) {
			return fmt.Errorf("invalid configuration ID '%s'", v)
		}
	case "pve-configid-list":
		for _, id := range splitList(v) {
			if !configIDRe.MatchString(id) {
				return fmt.Errorf("invalid configuration ID '%s'", id)
			}
		}
	case "pve-tag-list":
		for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
			if !tagRe.MatchString(t) {
				return fmt.Errorf("invalid tag '%s'", t)
			}
		}
	case "address-list":
		for _, a := range splitList(v) {
			if _, err := netip.ParseAddr(a); err != nil {
				return fmt.Errorf("unable to parse address '%s'", a)
			}
		}
	case "memory":
		_, err := parseMemory(v)
		return err
	case "pve-qm-net":
		_, err := parseNet(v)
		return err
	case "pve-qm-ipconfig":
		_, err := parseIPConfig(v)
		return err
	}
	return nil
}

// splitList splits PVE's list formats (separated by commas, semicolons or
// whitespace).
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' })
}

// propertyString splits a PVE property string ("k=v,k=v"), letting a bare
// first value stand for defaultKey.
func propertyString(v, defaultKey string) (map[string]string, error) {
	out := map[string]string{}
	for i, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			if i != 0 || defaultKey == "" {
				return nil, fmt.Errorf("value without key, but schema does not define a default key")
			}
			k, val = defaultKey, part
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("duplicate key in comma-separated list property: %s", k)
		}
		out[k] = val
	}
	return out, nil
}

// parseMemory parses the memory format "[current=]<integer>" (MiB, >= 16).
func parseMemory(v string) (int, error) {
	kv, err := propertyString(v, "current")
	if err != nil {
		return 0, err
	}
	for k := range kv {
		if k != "current" {
			return 0, fmt.Errorf("invalid key '%s'", k)
		}
	}
	n, err := strconv.Atoi(kv["current"])
	if err != nil {
		return 0, fmt.Errorf("current: type check ('integer') failed - got '%s'", kv["current"])
	}
	if n < 16 {
		return 0, fmt.Errorf("current: value must have a minimum value of 16")
	}
	return n, nil
}

// netModels is the model enum of net[n].
var netModels = []string{"e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e",
	"i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3"}

// netIntBounds are the minimum and maximum of net[n]'s integer keys.
var netIntBounds = map[string][2]int{"tag": {1, 4094}, "mtu": {1, 65520}, "queues": {0, 64}}

// netDevice is a parsed net[n] value:
// "[model=]<enum> [,bridge=<bridge>] [,firewall=<1|0>] [,link_down=<1|0>]
// [,macaddr=<XX:XX:XX:XX:XX:XX>] [,mtu=<integer>] [,queues=<integer>]
// [,rate=<number>] [,tag=<integer>] [,trunks=<vlanid[;vlanid...]>]
// [,<model>=<macaddr>]".
type netDevice struct {
	model, mac string
	keys       map[string]string // the other keys, as given
}

func parseNet(v string) (netDevice, error) {
	var d netDevice
	d.keys = map[string]string{}
	for i, part := range strings.Split(v, ",") {
		k, val, hasVal := strings.Cut(part, "=")
		switch {
		case contains(netModels, k):
			if d.model != "" {
				return d, fmt.Errorf("duplicate key in comma-separated list property: model")
			}
			d.model, d.mac = k, val
			if hasVal && !macRe.MatchString(val) {
				return d, fmt.Errorf("macaddr: value does not look like a valid MAC address")
			}
		case !hasVal && i == 0:
			return d, fmt.Errorf("model: value '%s' does not have a value in the enumeration '%s'", k, strings.Join(netModels, ", "))
		case k == "model":
			if !contains(netModels, val) {
				return d, fmt.Errorf("model: value '%s' does not have a value in the enumeration '%s'", val, strings.Join(netModels, ", "))
			}
			d.model = val
		case k == "macaddr":
			if !macRe.MatchString(val) {
				return d, fmt.Errorf("macaddr: value does not look like a valid MAC address")
			}
			d.mac = val
		case k == "bridge":
			if !bridgeRe.MatchString(val) {
				return d, fmt.Errorf("bridge: invalid format")
			}
			d.keys[k] = val
		case k == "firewall" || k == "link_down":
			if _, ok := parseBool(val); !ok {
				return d, fmt.Errorf("%s: type check ('boolean') failed - got '%s'", k, val)
			}
			d.keys[k] = val
		case k == "tag" || k == "mtu" || k == "queues":
			lo, hi := netIntBounds[k][0], netIntBounds[k][1]
			n, err := strconv.Atoi(val)
			if err != nil {
				return d, fmt.Errorf("%s: type check ('integer') failed - got '%s'", k, val)
			}
			if n < lo {
				return d, fmt.Errorf("%s: value must have a minimum value of %d", k, lo)
			}
			if n > hi {
				return d, fmt.Errorf("%s: value must have a maximum value of %d", k, hi)
			}
			d.keys[k] = val
		case k == "rate" || k == "trunks":
			d.keys[k] = val
		default:
			return d, fmt.Errorf("invalid key '%s'", k)
		}
	}
	if d.model == "" {
		return d, fmt.Errorf("model: property is missing and it is not optional")
	}
	return d, nil
}

// String renders the device as PVE writes it: model=MAC first, then the
// other keys in a fixed order.
func (d netDevice) String() string {
	parts := []string{d.model + "=" + d.mac}
	for _, k := range []string{"bridge", "firewall", "link_down", "mtu", "queues", "rate", "tag", "trunks"} {
		if v, ok := d.keys[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ",")
}

// parseIPConfig checks "[gw=<GatewayIPv4>] [,gw6=<GatewayIPv6>]
// [,ip=<IPv4Format/CIDR>] [,ip6=<IPv6Format/CIDR>]".
func parseIPConfig(v string) (map[string]string, error) {
	kv, err := propertyString(v, "")
	if err != nil {
		return nil, err
	}
	for k, val := range kv {
		switch k {
		case "ip":
			if val == "dhcp" {
				continue
			}
			if p, err := netip.ParsePrefix(val); err != nil || !p.Addr().Is4() {
				return nil, fmt.Errorf("ip: value does not look like a valid IPv4 network configuration")
			}
		case "ip6":
			if val == "dhcp" || val == "auto" {
				continue
			}
			if p, err := netip.ParsePrefix(val); err != nil || !p.Addr().Is6() {
				return nil, fmt.Errorf("ip6: value does not look like a valid IPv6 network configuration")
			}
		case "gw":
			if ip := net.ParseIP(val); ip == nil || ip.To4() == nil {
				return nil, fmt.Errorf("gw: value does not look like a valid IPv4 address")
			}
		case "gw6":
			if a, err := netip.ParseAddr(val); err != nil || !a.Is6() {
				return nil, fmt.Errorf("gw6: value does not look like a valid IPv6 address")
			}
		default:
			return nil, fmt.Errorf("invalid key '%s'", k)
		}
	}
	if kv["gw"] != "" && (kv["ip"] == "" || kv["ip"] == "dhcp") {
		return nil, fmt.Errorf("gateway specified without specifying an IP address")
	}
	return kv, nil
}
