package proxmox

import (
	"testing"
)

func TestVIDsContain(t *testing.T) {
	for _, tc := range []struct {
		vids string
		vlan int
		want bool
	}{
		{"2-4094", 10, true}, {"2-4094", 1, false}, {"10 20 30-40", 35, true}, {"10 20 30-40", 25, false},
		{"10,20", 20, true}, {"", 10, false}, {"x 10", 10, true}, {cmpOrVIDs(""), 3000, true},
	} {
		if got := vidsContain(tc.vids, tc.vlan); got != tc.want {
			t.Errorf("vidsContain(%q, %d) = %t", tc.vids, tc.vlan, got)
		}
	}
}

func TestDriveSize(t *testing.T) {
	for drive, want := range map[string]int64{
		"local-lvm:vm-100-disk-0,size=4G":              4096,
		"local-lvm:vm-100-disk-0,iothread=1,size=512M": 512,
		"ceph:vm-100-disk-0,size=1T":                   1 << 20,
		"local:100/vm-100-disk-0.qcow2,size=2.5G":      2560,
		"local-lvm:vm-100-disk-0":                      0,
	} {
		if got := driveSizeMiB(drive); got != want {
			t.Errorf("driveSizeMiB(%q) = %d, want %d", drive, got, want)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	e := &Engine{cloud: "demo"}
	desc := e.description("web", meta{Reboot: 3, Rebuild: 1})
	m, ok := parseMeta(desc)
	if !ok || m != (meta{Reboot: 3, Rebuild: 1}) {
		t.Errorf("parseMeta(%q) = %+v, %t", desc, m, ok)
	}
	if _, ok := parseMeta("a VM someone made"); ok {
		t.Error("a description without Holdfast's line parsed as Holdfast's")
	}
	g := guest{}
	g.cfg.Name, g.cfg.Description = "web", desc
	if !e.ours(g, "web") || (&Engine{cloud: "demo2"}).ours(g, "web") || e.ours(g, "db") {
		t.Error("ownership by description is not exact")
	}
}

func TestFirewallNames(t *testing.T) {
	s := &site{cfg: Config{SDNZone: "hftasman"}}
	for zone, want := range map[string]string{
		"edge":       "hftasman-edge",
		"Management": "hftasman-mana-2889", // lower case, cut to 18 with a digest of the zone
		"storage":    "hftasman-storage",
	} {
		got := s.fwName(zone)
		if got != want || len(got) > fwNameMax {
			t.Errorf("fwName(%q) = %q, want %q", zone, got, want)
		}
	}
	if s.fwName("customers-a") == s.fwName("customers-b") {
		t.Error("two long zone names share a group")
	}
	e := &Engine{cloud: "prod"}
	if !e.ownedComment("holdfast prod zone web") || e.ownedComment("holdfast prod2 zone web") {
		t.Error("cloud prod claims another cloud's objects, or not its own")
	}
}
