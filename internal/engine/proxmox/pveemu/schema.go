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
	kNumber
	kArray // of items; the handlers read the elements one a line
)

func (k kind) String() string {
	return [...]string{"string", "integer", "boolean", "number", "array"}[k]
}

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
	minLength int
	indexed   int    // n > 0: the name is a prefix taking an index 0..n-1 (net[n])
	items     *param // the elements of an array
	// props is the format of a property string (propstring.go); the
	// fields below it are those of a property string's keys.
	props     propFormat
	isDefault bool   // the default key
	alias     string // an alias of this key of the format
	requires  string // a key that must be set with this one
}

func str(name string) param { return param{name: name, kind: kString} }
func boolean(name string) param {
	return param{name: name, kind: kBoolean}
}
func integer(name string, lo, hi int64) param {
	return param{name: name, kind: kInteger, min: lo, max: hi, hasMin: true}
}

// array is a parameter of type array whose elements are item.
func array(name string, item param) param {
	return param{name: name, kind: kArray, items: &item}
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
	// paramsConfigSet is PUT …/config: the VM's options (qemuconf.go)
	// and the update's own parameters.
	paramsConfigSet = slices.Concat([]param{
		str("node").req().withFormat("pve-node"), vmidParam("vmid").req(),
		str("digest").maxLen(40), str("delete").withFormat("pve-configid-list"),
		str("revert").withFormat("pve-configid-list"), boolean("skiplock"), boolean("force").needs("delete"),
	}, qemuOptions)
	paramsConfigPost = append(slices.Clone(paramsConfigSet), integer("background_delay", 1, 30),
		str("import-working-storage").withFormat("pve-storage-id"))
	paramsResize = []param{
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
	// paramsCreate is POST /nodes/{node}/qemu: the VM's options and the
	// create's own parameters. The handler allocates the drives that ask
	// for a new volume (STORAGE:SIZE, STORAGE:cloudinit).
	paramsCreate = slices.Concat([]param{
		str("node").req().withFormat("pve-node"), vmidParam("vmid").req(),
		str("archive").maxLen(255), integer("bwlimit", 0, 0), boolean("force"), boolean("ha-managed"),
		str("import-working-storage").withFormat("pve-storage-id"), boolean("live-restore"),
		str("pool").withFormat("pve-poolid"), boolean("start"), str("storage").withFormat("pve-storage-id"),
		boolean("unique").needs("archive"),
	}, qemuOptions)
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
		if p.kind == kArray {
			for i, el := range strings.Split(v, "\n") {
				if msg := p.items.check(el); msg != "" {
					errs[fmt.Sprintf("%s[%d]", name, i)] = msg
				}
			}
			continue
		}
		if msg := p.checkValue(name, v); msg != "" {
			errs[name] = msg
		}
	}
	for _, p := range params {
		if p.required && !seen[p.name] {
			errs[p.name] = "property is missing and it is not optional"
		}
		if _, set := values[p.name]; set && p.requires != "" {
			if _, ok := values[p.requires]; !ok {
				errs[p.requires] = fmt.Sprintf("missing property required by '%s'", p.name)
			}
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

// check is checkValue under the parameter's own name.
func (p param) check(v string) string { return p.checkValue(p.name, v) }

// checkValue is PVE's check_prop for one scalar value at path (the
// parameter's name, "net0", "smbios1.serial"), in its order: the type, the
// format, the pattern, the length, the bounds, the enumeration. The first
// failure is the message.
func (p param) checkValue(path, v string) string {
	switch p.kind {
	case kInteger:
		if !integerRe.MatchString(v) {
			return fmt.Sprintf("type check ('integer') failed - got '%s'", v)
		}
	case kBoolean:
		// PVE's check_type takes 1 and 0 only (and JSON booleans, which
		// normalize made 1 and 0); "true" is refused.
		if v != "1" && v != "0" {
			return fmt.Sprintf("type check ('boolean') failed - got '%s'", v)
		}
	case kNumber:
		if !numberRe.MatchString(v) {
			return fmt.Sprintf("type check ('number') failed - got '%s'", v)
		}
	}
	if p.props != nil {
		if _, err := parsePropertyString(p.props, path, v); err != nil {
			return "invalid format - " + err.Error()
		}
	}
	if p.format != "" {
		if err := checkFormatAt(p.format, path, v); err != nil {
			return "invalid format - " + err.Error()
		}
	}
	if p.pattern != nil && !p.pattern.MatchString(v) {
		return "value does not match the regex pattern"
	}
	if p.maxLength > 0 && len(v) > p.maxLength {
		return fmt.Sprintf("value may only be %d characters long", p.maxLength)
	}
	if p.minLength > 0 && len(v) < p.minLength {
		return fmt.Sprintf("value must be at least %d characters long", p.minLength)
	}
	if numberRe.MatchString(v) && (p.hasMin || p.max > 0) {
		f, _ := strconv.ParseFloat(v, 64)
		if p.max > 0 && f > float64(p.max) {
			return fmt.Sprintf("value must have a maximum value of %d", p.max)
		}
		if p.hasMin && f < float64(p.min) {
			return fmt.Sprintf("value must have a minimum value of %d", p.min)
		}
	}
	if p.enum != nil && !contains(p.enum, v) {
		return fmt.Sprintf("value '%s' does not have a value in the enumeration '%s'", v, strings.Join(p.enum, ", "))
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
	integerRe    = regexp.MustCompile(`^[+-]?\d+$`)
	numberRe     = regexp.MustCompile(`^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$`)
	urlencodedRe = regexp.MustCompile(`^[-%a-zA-Z0-9_.!~*'()]*$`)
	configIDRe   = regexp.MustCompile(`^[a-z][a-z0-9_-]+$`)
	nodeRe       = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	dnsLabel     = `([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)`
	dnsNameRe    = regexp.MustCompile(`^(` + dnsLabel + `\.)*` + dnsLabel + `$`)
	poolIDRe     = regexp.MustCompile(`^[A-Za-z0-9.\-_]+(?:/[A-Za-z0-9.\-_]+){0,2}$`)
	vmidRe       = regexp.MustCompile(`^[1-9][0-9]{2,8}$`)
	storageIDRe  = regexp.MustCompile(`^(?i)[a-z][a-z0-9\-_.]*[a-z0-9]$`)
	tagRe        = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_\-+.]*$`)
	macRe        = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	bridgeRe     = regexp.MustCompile(`^[-_.\w\d]+$`)
)

// checkFormat checks v against a named format, as check_format does.
func checkFormat(format, v string) error { return checkFormatAt(format, "", v) }

// checkFormatAt is checkFormat for the value of the option at path, which
// property-string formats name in their errors.
func checkFormatAt(format, path, v string) error {
	if pf, ok := propFormats[format]; ok {
		kv, err := parsePropertyString(pf.format, path, v)
		if err == nil && pf.validate != nil {
			err = pf.validate(kv)
		}
		return err
	}
	switch format {
	case "urlencoded":
		if !urlencodedRe.MatchString(v) {
			return fmt.Errorf("invalid urlencoded string: %s", v)
		}
	case "pve-vmid":
		if !vmidRe.MatchString(v) {
			return fmt.Errorf("value does not look like a valid VM ID")
		}
	case "pve-node":
		if !nodeRe.MatchString(v) {
			return fmt.Errorf("value does not look like a valid node name")
		}
	case "dns-name":
		if !dnsNameRe.MatchString(v) {
			return fmt.Errorf("value does not look like a valid DNS name")
		}
	case "pve-poolid":
		if len(strings.Split(v, "/")) > 3 {
			return fmt.Errorf("pool name '%s' nested too deeply (max levels = 3)", v)
		}
		if !poolIDRe.MatchString(v) {
			return fmt.Errorf("pool name '%s' contains invalid characters", v)
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
	default:
		if check := namedFormats[format]; check != nil {
			return check(v)
		}
		// FORMAT-list is a list of FORMAT (check_format's "-list").
		if base, ok := strings.CutSuffix(format, "-list"); ok {
			for _, item := range splitList(v) {
				if err := checkFormatAt(base, path, item); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// namedFormats are the formats checkFormat does not name itself, each
// registered by the file whose tables use it (a map filled by init
// functions, as a map literal naming checkFormat would be an
// initialization cycle).
var namedFormats = map[string]func(string) error{}

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
