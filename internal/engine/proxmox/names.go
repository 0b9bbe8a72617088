package proxmox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

// The marks that say what Holdfast owns on a cluster.

// tag is the PVE tag every guest of the cloud carries.
func (e *Engine) tag() string { return "holdfast-" + strings.ToLower(e.cloud) }

// owner is the comment or alias prefix of the SDN and firewall objects the
// cloud owns.
func (e *Engine) owner() string { return "holdfast " + e.cloud }

// ownedComment reports whether a comment marks an object as the cloud's:
// the owner and then a space, so that cloud prod never claims prod2's.
func (e *Engine) ownedComment(c string) bool { return strings.HasPrefix(c, e.owner()+" ") }

// owns reports whether a guest is one of the cloud's instances.
func (e *Engine) owns(vm pve.VM) bool {
	return vm.Type == "qemu" && !vm.Template && vm.Name != "" && hasTag(vm.Tags, e.tag())
}

func hasTag(tags, tag string) bool {
	return slices.ContainsFunc(splitTags(tags), func(t string) bool { return strings.EqualFold(t, tag) })
}

func splitTags(tags string) []string {
	return strings.FieldsFunc(tags, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
}

// withTag adds tag to a PVE tag list, keeping the operator's tags.
func withTag(tags, tag string) string {
	if hasTag(tags, tag) {
		return tags
	}
	return strings.Join(append(splitTags(tags), tag), ";")
}

// meta is what Holdfast keeps in a guest's description: who owns it and
// the generations of the last reboot and rebuild it carried out.
type meta struct {
	Reboot, Rebuild int
}

const metaPrefix = "holdfast:"

func (e *Engine) description(name string, m meta) string {
	return fmt.Sprintf("Managed by Holdfast %s; changes made here are repaired.\n%s reboot=%d rebuild=%d",
		e.ownerNote(name), metaPrefix, m.Reboot, m.Rebuild)
}

// ownerNote names the instance a guest is, in its description.
func (e *Engine) ownerNote(name string) string {
	return fmt.Sprintf("(cloud %s, instance %s)", e.cloud, name)
}

func parseMeta(desc string) (meta, bool) {
	var m meta
	for line := range strings.Lines(desc) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), metaPrefix)
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			n, err := strconv.Atoi(v)
			if err != nil {
				continue
			}
			switch k {
			case "reboot":
				m.Reboot = n
			case "rebuild":
				m.Rebuild = n
			}
		}
		return m, true
	}
	return m, false
}

// fwNameMax is the longest security group or IPset name PVE accepts.
const fwNameMax = 18

// fwName names the cloud's security group and IPset for a zone: the SDN
// zone ID (unique per cloud on a cluster) and the zone's name, shortened
// with a digest when PVE's limit demands, in lower case.
func (s *site) fwName(zone string) string {
	zone = strings.ToLower(zone) // PVE lower-cases them when it reads them back
	name := s.cfg.SDNZone + "-" + zone
	if len(name) <= fwNameMax {
		return name
	}
	sum := sha256.Sum256([]byte(zone))
	keep := fwNameMax - len(s.cfg.SDNZone) - 1 - 5
	return s.cfg.SDNZone + "-" + zone[:keep] + "-" + hex.EncodeToString(sum[:])[:4]
}

// internetSet is the IPset standing for the internet: everything but the
// cloud's own networks.
func (s *site) internetSet() string { return s.cfg.SDNZone + "-internet" }

// vnetID names a zone's vnet: its VLAN tag (vlan zones) or its VNI in
// base 36 (vxlan zones), which PVE's 8 characters always hold and which
// are unique where they must be.
func (s *site) vnetID(z *compile.Zone) string {
	if s.cfg.Network == "vxlan" {
		return "x" + strconv.FormatInt(int64(*z.VNI), 36)
	}
	return "v" + strconv.Itoa(*z.VLAN)
}

// bridgeOf says what a NIC in zone z attaches to: the zone's vnet, or the
// node bridge with the zone's VLAN tag (untagged zones, manual zones,
// sites without SDN).
func (s *site) bridgeOf(z *compile.Zone) (bridge string, tag int) {
	if z == nil || z.VLAN == nil {
		return s.cfg.Bridge, 0
	}
	if s.cfg.Network == "bridge" || *z.VLAN == 0 || z.State == "manual" {
		return s.cfg.Bridge, *z.VLAN
	}
	return s.vnetID(z), 0
}

// sdnManaged reports whether the zone is a vnet Holdfast makes.
func (s *site) sdnManaged(z *compile.Zone) bool {
	return s.cfg.Network != "bridge" && z.VLAN != nil && *z.VLAN != 0 && z.State != "manual"
}

// backoff waits before the next look at something that changes by
// itself (a lock being released), doubling up to a bound.
func backoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 5)
	return min(d, time.Second)
}
