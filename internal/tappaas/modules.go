package tappaas

import (
	"fmt"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// module is one TAPPaaS module file, read and flattened.
type module struct {
	src    *source
	name   string // how dependsOn refers to it: the file name without .json
	vmname string // the instance's name; empty for a capability provider
	vmPos  spec.Pos
	// fields are the module's settings, flattened the way TAPPaaS itself
	// normalizes its "config" blocks: config["cluster:vm"].cores is the
	// same setting as a top-level cores.
	fields []field
	blocks []string // names of the config blocks, e.g. cluster:ha
	node   string   // a valid node name, or empty
	role   string   // derived from vmtag
	roleAt spec.Pos
	roleBy string // path of the vmtag the role came from; empty for the default
	inst   *spec.Instance
}

// field is one setting and where it was written.
type field struct {
	key  string
	path string // JSON path for the report, e.g. config.cluster:vm.cores
	off  int64
	val  *value
}

// informational keys describe the module, not the VM; they are consumed
// without a report line.
var informational = []string{"version", "releaseDate", "maintainer", "status", "appVersion", "vmtag"}

// notModelled explains, for settings TAPPaaS documents, why the spec has
// no place for them. Keys not listed here get a generic reason.
var notModelled = map[string]string{
	"bios":                "VM firmware; the spec has no field for it",
	"ostype":              "Proxmox guest OS profile; the spec has no field for it",
	"cputype":             "CPU model; the spec has no field for it",
	"storage":             "Proxmox storage pool; the spec has no field for it",
	"pbsStorageName":      "backup datastore; backups are not modelled yet",
	"alwaysBackup":        "backup selection; backups are not modelled yet",
	"imageLocation":       "download location of the image; a template names the image only",
	"sshAccess":           "management over SSH; the spec has no field for it",
	"autoInstall":         "template build mode; the spec has no field for it",
	"HANode":              "HA secondary node; the spec's ha takes no node",
	"replicationSchedule": "HA replication schedule; the spec's ha takes no schedule",
	"mac0":                "fixed MAC address; the spec has no field for it",
	"mac1":                "fixed MAC address; the spec has no field for it",
	"ip":                  "static address for firewall:dns; not mapped (give the instance an ip by hand if it needs one)",
	"firewallType":        "firewall product; the spec has no field for it",
	"aliasType":           "OPNsense alias type; the spec has no field for it",
	"aliases":             "OPNsense aliases; the spec has no aliases",
	"natRules":            "port forwards on the WAN; the spec has no NAT rules",
	"discoveryMdns":       "mDNS repeater; the spec has no discovery relays",
	"discoveryUdpRelay":   "UDP broadcast relay; the spec has no discovery relays",
	"identity":            "OIDC integration; not modelled",
	"windows":             "Windows guest options; not modelled",
	"installTime":         "install bookkeeping; not mapped",
	"updateTime":          "update bookkeeping; not mapped",
	"location":            "module source directory; not mapped",
	"variant":             "install variant; not mapped",
}

// maxMemoryMiB bounds memory (1 PiB) far above any VM, well inside what
// the spec's sizes can express.
const maxMemoryMiB = 1 << 30

// proxyKeys configure TAPPaaS's Caddy reverse proxy (firewall:proxy).
var proxyKeys = []string{"proxyDomain", "proxyPort", "proxyUpstreamTls", "proxyUpstreamHttp1", "proxyPreserveHost", "proxyTls", "proxyAllowedZones"}

// readModule parses a module file and decides whether it becomes an
// instance. Dependencies are resolved later, once every module is known.
func (im *importer) readModule(src *source) *module {
	root, err := src.parse()
	if err != nil {
		im.fail(err)
		return nil
	}
	if root.kind != kObject {
		im.errorf(src.pos(root.off), "module file: expected an object, got %s", root.describe())
		return nil
	}
	m := &module{src: src, name: moduleName(src.name)}
	if prev, dup := im.modules[m.name]; dup {
		im.errorf(src.pos(root.off), "module %q: given twice (also %s)", m.name, prev.src.name)
		return nil
	}
	im.modules[m.name] = m
	im.flatten(m, root)

	f := m.get("vmname")
	if f == nil {
		provides := "nothing"
		if p := m.get("provides"); p != nil {
			if list, ok := p.val.asStrings(); ok && len(list) > 0 {
				provides = strings.Join(list, ", ")
			}
		}
		im.report.notMapped(src.name, "", "capability provider, no VM (provides %s); not an instance", provides)
		return m
	}
	vmname, ok := f.val.asString()
	switch {
	case !ok:
		im.errorf(src.pos(f.val.off), "module %q: vmname: expected a string, got %s", m.name, f.val.describe())
		return m
	case !validName(vmname):
		im.errorf(src.pos(f.val.off), "module %q: vmname %q is not a valid name (a letter, then letters, digits or '-', at most 63)", m.name, vmname)
		return m
	}
	if other := im.vmnames[vmname]; other != nil {
		im.errorf(src.pos(f.val.off), "module %q: vmname %q is also the vmname of module %q (%s)", m.name, vmname, other.name, other.vmPos)
		return m
	}
	if st := m.get("status"); st != nil {
		switch s, _ := st.val.asString(); strings.ToLower(s) {
		case "archived":
			im.report.notMapped(src.name, st.path, "status archived: the VM was removed (config kept for restore); not imported as an instance")
			return m
		case "external":
			im.report.notMapped(src.name, st.path, "status external: the VM is managed outside TAPPaaS; not imported as an instance")
			return m
		}
	}
	m.vmname, m.vmPos = vmname, src.pos(f.off)
	im.vmnames[vmname] = m
	if n := m.get("node"); n != nil {
		if s, ok := n.val.asString(); ok && validName(s) {
			m.node = s
		} else {
			im.report.notMapped(src.name, n.path, "node %s is not a valid node name; not mapped", n.val.describe())
		}
	}
	return m
}

// flatten collects the header fields and the fields of every config block.
// A setting given twice is ambiguous, and TAPPaaS rejects it too.
func (im *importer) flatten(m *module, root *value) {
	seen := map[string]string{}
	add := func(f field) {
		if prev, dup := seen[f.key]; dup {
			im.errorf(m.src.pos(f.off), "module %q: %s is given twice (%s and %s); TAPPaaS rejects this as ambiguous", m.name, f.key, prev, f.path)
			return
		}
		seen[f.key] = f.path
		m.fields = append(m.fields, f)
	}
	for _, mb := range root.members {
		if strings.HasPrefix(mb.key, "_") || mb.val.kind == kNull {
			continue
		}
		if mb.key != "config" {
			add(field{key: mb.key, path: mb.key, off: mb.off, val: mb.val})
			continue
		}
		if mb.val.kind != kObject {
			im.report.notMapped(m.src.name, "config", "expected an object of config blocks, got %s; not mapped", mb.val.describe())
			continue
		}
		for _, block := range mb.val.members {
			path := "config." + block.key
			if block.val.kind != kObject {
				im.report.notMapped(m.src.name, path, "expected an object, got %s; not mapped", block.val.describe())
				continue
			}
			m.blocks = append(m.blocks, block.key)
			for _, in := range block.val.members {
				if strings.HasPrefix(in.key, "_") || in.val.kind == kNull {
					continue
				}
				add(field{key: in.key, path: path + "." + in.key, off: in.off, val: in.val})
			}
		}
	}
}

func (m *module) get(key string) *field {
	for i := range m.fields {
		if m.fields[i].key == key {
			return &m.fields[i]
		}
	}
	return nil
}

// builder turns one module into an instance.
type builder struct {
	im  *importer
	m   *module
	in  *spec.Instance
	src *source

	zone0, zone1, trunks0, trunks1, bridge0, bridge1 *field
	imageType, image, cloudInit, os                  *field
	ports, ingress, egress, dependsOn                []*field
}

func (b *builder) notMapped(f *field, format string, args ...any) {
	b.im.report.notMapped(b.src.name, f.path, format, args...)
}

func (b *builder) wrongType(f *field, want string) {
	b.notMapped(f, "expected %s, got %s; not mapped", want, f.val.describe())
}

// instance builds the module's instance, if it is one.
func (im *importer) instance(m *module) {
	if m.vmname == "" {
		return
	}
	in := &spec.Instance{Node: m.node}
	in.Name = m.vmname
	in.SetPos(m.vmPos)
	m.inst = in
	m.role, m.roleAt = "module", m.vmPos
	b := &builder{im: im, m: m, in: in, src: m.src}
	for i := range m.fields {
		b.field(&m.fields[i])
	}
	b.networks()
	b.template()
	for _, f := range b.ports {
		b.portList(f)
	}
	for _, f := range b.ingress {
		b.rules(f, true)
	}
	for _, f := range b.egress {
		b.rules(f, false)
	}
	for _, f := range b.dependsOn {
		b.dependencies(f)
	}
	if slices.Contains(m.blocks, "cluster:ha") {
		in.HA = true
	}
	im.spec.Instances[in.Name] = in
}

// field maps one setting, or sets it aside for the steps that need the
// whole module (networks, template, rules, dependencies).
func (b *builder) field(f *field) {
	in := b.in
	str, isStr := f.val.asString()
	switch f.key {
	case "vmname", "node":
		// read by readModule
	case "description":
		if !isStr {
			b.wrongType(f, "a string")
			return
		}
		in.Description = str
	case "vmid":
		id, ok := f.val.asInt()
		switch {
		case !ok:
			b.wrongType(f, "a whole number")
		case id < spec.MinVMID || id > spec.MaxVMID:
			b.notMapped(f, "vmid %d is outside %d-%d; not mapped (the role's range supplies one)", id, spec.MinVMID, spec.MaxVMID)
		default:
			in.VMID = &id
		}
	case "vmtag":
		if !isStr {
			b.wrongType(f, "a string")
			return
		}
		b.vmtag(f, str)
	case "cores":
		n, ok := f.val.asInt()
		switch {
		case !ok:
			b.wrongType(f, "a whole number")
		case n < 1:
			b.notMapped(f, "cores %d is below 1; not mapped", n)
		default:
			in.CPUs = &n
		}
	case "memory":
		n, ok := f.val.asInt()
		switch {
		case !ok:
			b.wrongType(f, "a number of MiB")
		case n < 1 || n > maxMemoryMiB:
			b.notMapped(f, "memory %d MiB is outside 1-%d; not mapped", n, maxMemoryMiB)
		default:
			in.Memory = &spec.Size{MiB: int64(n)}
		}
	case "diskSize":
		b.disk(f, str, isStr)
	case "zone0":
		b.zone0 = f
	case "zone1":
		b.zone1 = f
	case "trunks0":
		b.trunks0 = f
	case "trunks1":
		b.trunks1 = f
	case "bridge0":
		b.bridge0 = f
	case "bridge1":
		b.bridge1 = f
	case "imageType":
		b.imageType = f
	case "image":
		b.image = f
	case "cloudInit":
		b.cloudInit = f
	case "os":
		b.os = f
	case "ports":
		b.ports = append(b.ports, f)
	case "ingress":
		b.ingress = append(b.ingress, f)
	case "egress":
		b.egress = append(b.egress, f)
	case "dependsOn":
		b.dependsOn = append(b.dependsOn, f)
	case "provides":
		list, ok := f.val.asStrings()
		if !ok {
			b.wrongType(f, "a list of capability names")
			return
		}
		in.Provides = list
	default:
		switch {
		case slices.Contains(informational, f.key):
		case slices.Contains(proxyKeys, f.key):
			b.notMapped(f, "reverse-proxy setting: a route needs a frontend instance (the firewall's Caddy), so routes are not imported; add them to the spec by hand")
		case notModelled[f.key] != "":
			b.notMapped(f, "%s", notModelled[f.key])
		default:
			b.notMapped(f, "no Holdfast equivalent; not mapped")
		}
	}
}

// vmtag derives the role from the tag's second element: TAPPaaS tags
// modules "TAPPaaS,Foundation", "TAPPaaS,App,HomeAutomation", ...
func (b *builder) vmtag(f *field, tag string) {
	parts := strings.Split(tag, ",")
	if len(parts) < 2 || strings.TrimSpace(parts[1]) == "" {
		return // keeps the role "module"
	}
	role := strings.ToLower(strings.TrimSpace(parts[1]))
	if !validName(role) {
		b.notMapped(f, "vmtag element %q is not a valid role name; role \"module\" used", parts[1])
		return
	}
	b.m.role, b.m.roleAt, b.m.roleBy = role, b.src.pos(f.off), f.path
}

func (b *builder) disk(f *field, s string, isStr bool) {
	if !isStr {
		b.wrongType(f, `a size such as "32G"`)
		return
	}
	// A bare number is ambiguous (Proxmox reads GiB, the spec MiB), and
	// TAPPaaS's K unit has no spec equivalent: report both.
	last := s[max(0, len(s)-1):]
	if last == "" || strings.IndexByte("0123456789", last[0]) >= 0 || strings.EqualFold(last, "K") {
		b.notMapped(f, "disk size %q needs a unit M, G or T; not mapped", s)
		return
	}
	size, err := spec.ParseSize(s)
	if err != nil || size.MiB <= 0 {
		b.notMapped(f, "disk size %q is not a size such as 32G; not mapped", s)
		return
	}
	b.in.Disk = &size
}

// networks maps zone0/zone1, trunks and bridges onto the instance's
// interfaces: the short zone form for one NIC, networks for two.
func (b *builder) networks() {
	in := b.in
	zone0 := "mgmt"
	if b.zone0 == nil {
		b.im.report.note(b.src.name, "zone0", "no zone0: TAPPaaS's default zone mgmt used")
	} else if zone0 = b.zoneName(b.zone0); zone0 == "" {
		// Without net0 there is nothing to attach the rest to; the
		// validator reports the instance's missing zone.
		for _, f := range []*field{b.trunks0, b.bridge0, b.zone1, b.trunks1, b.bridge1} {
			if f != nil {
				b.notMapped(f, "no usable zone0; not mapped")
			}
		}
		return
	}
	trunks0 := b.trunks(b.trunks0)
	b.bridge(b.bridge0, zone0)

	zone1 := ""
	if b.zone1 != nil {
		switch s := b.zoneName(b.zone1); s {
		case "":
		case zone0:
			bridge := ""
			if b.bridge1 != nil {
				bridge = " (bridge1 " + b.bridge1.val.describe() + ")"
			}
			b.notMapped(b.zone1, "zone1 duplicates zone0%s; second interface not mapped", bridge)
		default:
			zone1 = s
		}
	} else if b.bridge1 != nil {
		b.notMapped(b.bridge1, "bridge1 without zone1; second interface not mapped")
	}
	if zone1 == "" {
		if b.trunks1 != nil {
			b.notMapped(b.trunks1, "trunks1 without a second interface; not mapped")
		}
		in.Zone, in.Trunks = zone0, trunks0
		return
	}
	b.bridge(b.bridge1, zone1)
	nic0 := &spec.NIC{Zone: zone0, Trunks: trunks0}
	nic1 := &spec.NIC{Zone: zone1, Trunks: b.trunks(b.trunks1)}
	nic0.SetPos(in.Pos) // zone0 may be TAPPaaS's default, written nowhere
	if b.zone0 != nil {
		nic0.SetPos(b.src.pos(b.zone0.off))
	}
	nic1.SetPos(b.src.pos(b.zone1.off))
	in.Networks = []*spec.NIC{nic0, nic1}
}

// zoneName reads a zone reference, or reports it and returns "".
func (b *builder) zoneName(f *field) string {
	s, ok := f.val.asString()
	if !ok || s == "" {
		b.wrongType(f, "a zone name")
		return ""
	}
	return s
}

// trunks reads TAPPaaS's "a;b;c" list, with ALL or * for every zone and
// NONE for no trunk.
func (b *builder) trunks(f *field) []string {
	if f == nil {
		return nil
	}
	s, ok := f.val.asString()
	if !ok {
		b.wrongType(f, `a list such as "srv;iot" or "ALL"`)
		return nil
	}
	switch s = strings.TrimSpace(s); strings.ToUpper(s) {
	case "ALL", "*":
		return []string{spec.All}
	case "NONE", "":
		return nil
	}
	var out []string
	for _, z := range strings.Split(s, ";") {
		if z = strings.TrimSpace(z); z != "" && !slices.Contains(out, z) {
			out = append(out, z)
		}
	}
	return out
}

// bridge accepts a NIC's Proxmox bridge when it is the zone's own bridge
// (the spec derives the NIC's uplink from its zone) and reports it otherwise.
func (b *builder) bridge(f *field, zone string) {
	if f == nil {
		return
	}
	s, _ := f.val.asString()
	z := b.im.spec.Zones[zone]
	if z != nil && s != "" && s == z.Uplink {
		return
	}
	uplink := "none"
	if z != nil && z.Uplink != "" {
		uplink = fmt.Sprintf("%q", z.Uplink)
	}
	b.notMapped(f, "bridge %s is not zone %q's bridge (%s); the interface follows its zone; not mapped", f.val.describe(), zone, uplink)
}

// portList maps the ports the module serves.
func (b *builder) portList(f *field) {
	if f.val.kind != kArray {
		b.wrongType(f, "a list of ports")
		return
	}
	for i, el := range f.val.elems {
		path := fmt.Sprintf("%s[%d]", f.path, i)
		if el.kind != kObject {
			b.im.report.notMapped(b.src.name, path, "expected an object {port, protocol, description}, got %s; not mapped", el.describe())
			continue
		}
		var port int
		var protos []string
		desc, ok := "", true
		for _, mb := range el.members {
			if mb.val.kind == kNull {
				continue // unset
			}
			switch mb.key {
			case "port":
				r, why := portRange(mb.val)
				switch {
				case why != "":
					b.im.report.notMapped(b.src.name, path, "%s; not mapped", why)
					ok = false
				case r.Lo != r.Hi:
					b.im.report.notMapped(b.src.name, path, "port range %s: the spec's ports are single ports; not mapped", r)
					ok = false
				default:
					port = r.Lo
				}
			case "protocol":
				var why string
				if protos, why = protocols(mb.val, false); why != "" {
					b.im.report.notMapped(b.src.name, path+".protocol", "%s; port not mapped", why)
					ok = false
				}
			case "description":
				var isStr bool
				if desc, isStr = mb.val.asString(); !isStr {
					b.im.report.notMapped(b.src.name, path+".description", "expected a string, got %s; not mapped", mb.val.describe())
				}
			default:
				if !strings.HasPrefix(mb.key, "_") {
					b.im.report.notMapped(b.src.name, path+"."+mb.key, "unknown port field; not mapped")
				}
			}
		}
		if p := el.get("port"); p == nil || p.val.kind == kNull {
			b.im.report.notMapped(b.src.name, path, "no port; not mapped")
			continue
		}
		if !ok {
			continue
		}
		if protos == nil {
			protos = []string{"tcp"} // TAPPaaS's default
		}
		for _, proto := range protos {
			p := &spec.Port{Port: port, Proto: proto, Description: desc}
			p.SetPos(b.src.pos(el.off))
			b.in.Ports = append(b.in.Ports, p)
		}
	}
}
