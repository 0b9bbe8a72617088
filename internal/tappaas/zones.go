package tappaas

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// zoneStates are TAPPaaS's zone states, which the spec spells in lowercase.
var zoneStates = []string{"active", "mandatory", "inactive", "disabled", "manual"}

// zones imports zones.json: an object of zones keyed by name, plus
// documentation blocks whose keys begin with '_' (which every TAPPaaS
// consumer skips, and so does this one).
func (im *importer) zones(src *source, root *value) {
	if root.kind != kObject {
		im.errorf(src.pos(root.off), "zones file: expected an object of zones, got %s", root.describe())
		return
	}
	first := map[string]spec.Pos{}
	var rule *value
	for _, m := range root.members {
		if strings.HasPrefix(m.key, "_") {
			if m.key == "_README" {
				if inv := m.val.get("isolation_invariant"); inv != nil {
					if r := inv.val.get("rule"); r != nil {
						rule = r.val
					}
				}
			}
			continue
		}
		pos := src.pos(m.off)
		if prev, dup := first[m.key]; dup {
			im.errorf(pos, "zone %q: defined twice (first at line %d)", m.key, prev.Line)
			continue
		}
		first[m.key] = pos
		if !validName(m.key) {
			im.errorf(pos, "zone %q: not a valid name (a letter, then letters, digits or '-', at most 63)", m.key)
			continue
		}
		if z := im.zone(src, m); z != nil {
			im.spec.Zones[m.key] = z
		}
	}
	im.isolation(src, rule)
}

// zoneFields maps TAPPaaS zone keys to the spec fields they become.
var zoneFields = map[string]string{
	"type": "type", "subId": "sub-id", "vlantag": "vlan", "ip": "cidr", "bridge": "uplink", "state": "state",
	"SSID": "ssid", "description": "description", "DHCP-start": "dhcp-start", "DHCP-end": "dhcp-end",
	"access-to": "access-to", "pinhole-allowed-from": "pinhole-allowed-from",
}

// zone converts one zone. Wrongly typed known fields are errors rather than
// report entries: dropping a vlantag or ip would silently move the zone.
func (im *importer) zone(src *source, m member) *spec.Zone {
	name := m.key
	if m.val.kind != kObject {
		im.errorf(src.pos(m.val.off), "zone %q: expected an object, got %s", name, m.val.describe())
		return nil
	}
	z := &spec.Zone{}
	z.Name = name
	z.SetPos(src.pos(m.off))
	ok := true
	bad := func(f member, want string) {
		im.errorf(src.pos(f.val.off), "zone %q: %s: expected %s, got %s", name, f.key, want, f.val.describe())
		ok = false
	}
	intField := func(f member) *int {
		n, isInt := f.val.asInt()
		if !isInt {
			bad(f, "a whole number")
			return nil
		}
		return &n
	}
	var typeID *int
	typeBad := false
	seen := map[string]bool{}
	for _, f := range m.val.members {
		if seen[f.key] {
			im.errorf(src.pos(f.off), "zone %q: %s is given twice", name, f.key)
			ok = false
			continue
		}
		seen[f.key] = true
		if f.val.kind == kNull || strings.HasPrefix(f.key, "_") {
			continue // null is unset; '_' keys are TAPPaaS comments
		}
		if field, ok := zoneFields[f.key]; ok {
			z.SetFieldPos(field, src.pos(f.val.off)) // validation findings point at the TAPPaaS key
		}
		str, isStr := f.val.asString()
		switch f.key {
		case "type":
			t := strings.ToLower(str)
			if _, known := spec.TypeIDs[t]; !isStr || !known {
				im.errorf(src.pos(f.val.off), "zone %q: unknown type %s (TAPPaaS types: Management, Service, Client, IoT, Guest, DMZ, Overlay, Test)", name, f.val.describe())
				ok, typeBad = false, true
				continue
			}
			z.Type = t
		case "typeId":
			typeID = intField(f)
		case "subId":
			z.SubID = intField(f)
		case "vlantag":
			z.VLAN = intField(f)
		case "DHCP-start":
			z.DHCPStart = intField(f)
		case "DHCP-end":
			z.DHCPEnd = intField(f)
		case "ip", "bridge", "state", "SSID", "description":
			if !isStr {
				bad(f, "a string")
				continue
			}
			switch f.key {
			case "ip":
				z.CIDR = str
			case "bridge":
				z.Uplink = str
			case "SSID":
				z.SSID = str
			case "description":
				z.Description = str
			case "state":
				z.State = strings.ToLower(str)
				if !slices.Contains(zoneStates, z.State) {
					im.errorf(src.pos(f.val.off), "zone %q: unknown state %q (TAPPaaS states: Active, Mandatory, Inactive, Disabled, Manual)", name, str)
					ok = false
				}
			}
		case "access-to", "pinhole-allowed-from":
			list, isList := f.val.asStrings()
			if !isList {
				bad(f, "a list of zone names")
				continue
			}
			if len(list) == 0 {
				list = nil // written [] in TAPPaaS, left out in the spec
			}
			if f.key == "access-to" {
				z.AccessTo = list
			} else {
				z.PinholeAllowedFrom = list
			}
		default:
			im.report.notMapped(src.name, name+"."+f.key, "unknown zone field; not mapped")
		}
	}
	if z.Type == "" {
		if !typeBad {
			im.errorf(z.Pos, "zone %q: missing type (Management, Service, Client, IoT, Guest, DMZ, Overlay or Test)", name)
		}
		return nil
	}
	if typeID != nil && *typeID != spec.TypeIDs[z.Type] {
		im.report.notMapped(src.name, name+".typeId", "typeId %d does not match type %s (typeId %d); the type decides", *typeID, z.Type, spec.TypeIDs[z.Type])
	}
	if z.Type == "overlay" {
		// An overlay (netbird) has no interface and so no DHCP range; the
		// spec defaults to that too, but the import states it.
		off := false
		z.DHCP = &off
	}
	if !ok {
		return nil
	}
	return z
}

// wordPattern splits prose into words the way zone names are spelt, so
// that "iotCams," matches iotCams but "access-to" does not match "to".
var wordPattern = regexp.MustCompile(`[A-Za-z0-9-]+`)

// isolation marks the zones TAPPaaS's isolation rule names. TAPPaaS keeps
// that rule in prose (_README.isolation_invariant.rule), so every zone
// whose name appears in it as a whole word is isolated.
func (im *importer) isolation(src *source, rule *value) {
	const path = "_README.isolation_invariant.rule"
	text, ok := "", false
	if rule != nil {
		text, ok = rule.asString()
	}
	if !ok {
		im.report.note(src.name, path, "no isolation rule found: no zone is marked isolated")
		return
	}
	words := map[string]bool{}
	for _, w := range wordPattern.FindAllString(text, -1) {
		words[w] = true
	}
	var isolated []string
	for _, name := range spec.SortedNames(im.spec.Zones) {
		if words[name] {
			im.spec.Zones[name].Isolated = true
			isolated = append(isolated, name)
		}
	}
	if len(isolated) == 0 {
		im.report.note(src.name, path, "the isolation rule names no zone: no zone is marked isolated")
		return
	}
	im.report.note(src.name, path, "%s named in the isolation rule: imported as isolated (reachable through pinholes only; only management zones may list them in access-to)", quoteList(isolated))
}

func quoteList(names []string) string {
	if len(names) == 1 {
		return fmt.Sprintf("zone %s is", names[0])
	}
	return fmt.Sprintf("zones %s are", strings.Join(names, ", "))
}
