package pveemu

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Migration, as qemu-server's migrate_vm (PVE/API2/Qemu.pm) and
// PVE::QemuMigrate do it within one cluster. The API checks what it can
// at once (the target, the lock, power, that every storage the VM uses is
// on the target node) and answers a task; the task holds the VM's config
// lock and sets "lock: migrate" while it copies the local volumes, then
// moves the config to the target node. A stopped VM migrates offline, its
// local disks copied whatever with-local-disks says; a running one only
// with online=1, and its local disks only with with-local-disks=1. What
// QemuMigrate refuses once under way — a linked clone on local storage, a
// local ISO, a volume of another VM, local storage of a type it cannot
// copy — ends the task with "migration aborted" and leaves the VM where it
// was. An HA-managed VM is migrated through HA: the API answers an
// hamigrate task, and the emulated HA manager moves the VM when it ends.

// TaskHAMigrate is the task of a migration requested through HA.
const TaskHAMigrate = "hamigrate"

func init() {
	DefaultDurations[TaskHAMigrate] = DefaultDurations[TaskMigrate]
	namedFormats["CIDR"] = func(v string) error {
		if checkCIDR(v, true) == nil || checkCIDR(v, false) == nil {
			return nil
		}
		return fmt.Errorf("value does not look like a valid CIDR network")
	}
}

// migrateRoutes are the migration endpoints.
var migrateRoutes = []route{
	{"POST", "/nodes/{node}/qemu/{vmid}/migrate", paramsMigrate, (*Emulator).postMigrate},
}

// paramsMigrate is the API schema's POST …/migrate.
var paramsMigrate = []param{
	str("node").req().withFormat("pve-node"), vmidParam("vmid").req(), str("target").req().withFormat("pve-node"),
	integer("bwlimit", 0, 0), boolean("force"), str("migration_network").withFormat("CIDR"),
	{name: "migration_type", kind: kString, enum: []string{"secure", "insecure"}},
	boolean("online"), str("targetstorage"), boolean("with-conntrack-state"), boolean("with-local-disks"),
}

// storageMap is a parsed storage-pair-list (PVE::JSONSchema::parse_idmap):
// "1" maps every storage to itself, a lone ID maps every storage to it,
// and "src:dst" pairs map one each.
type storageMap struct {
	identity bool
	fallback string
	entries  map[string]string
}

func parseStorageMap(v string) (storageMap, error) {
	m := storageMap{entries: map[string]string{}}
	for _, item := range splitList(v) {
		src, dst, pair := strings.Cut(item, ":")
		switch {
		case !pair && item == "1":
			m.identity = true
		case !pair:
			if m.fallback != "" {
				return m, fmt.Errorf("default target ID can only be provided once")
			}
			if !storageIDRe.MatchString(item) {
				return m, fmt.Errorf("invalid format '%s' for storage ID", item)
			}
			m.fallback = item
		default:
			if !storageIDRe.MatchString(src) || !storageIDRe.MatchString(dst) {
				return m, fmt.Errorf("invalid format '%s' for storage ID pair", item)
			}
			if _, dup := m.entries[src]; dup {
				return m, fmt.Errorf("duplicate mapping for source '%s'", src)
			}
			m.entries[src] = dst
		}
	}
	if m.identity && (m.fallback != "" || len(m.entries) > 0) {
		return m, fmt.Errorf("identity mapping cannot be combined with other mappings")
	}
	return m, nil
}

// target is map_id: where a volume of storage sid goes.
func (m storageMap) target(sid string) string {
	if dst, ok := m.entries[sid]; ok {
		return dst
	}
	return cmp.Or(m.fallback, sid)
}

// contentOf is parse_volname's content type: ISO images live under iso/,
// everything a guest's drive names otherwise is an image.
func contentOf(volname string) string {
	if strings.HasPrefix(volname, "iso/") {
		return "iso"
	}
	return "images"
}

// driveVolumes lists the volume IDs a VM's drives name ("none", "cdrom"
// and host paths name none), by drive key.
func driveVolumes(v *vm) [][2]string {
	var out [][2]string
	for _, k := range slices.Sorted(maps.Keys(v.conf)) {
		if !isDriveKey(k) {
			continue
		}
		volid, _, _ := strings.Cut(v.conf[k], ",")
		out = append(out, [2]string{k, volid})
	}
	return out
}

// checkStorageAvailability is qemu-server's check_storage_availability:
// every storage the VM uses is enabled on its node and on node, and takes
// the volume's content there.
func (e *Emulator) checkStorageAvailability(v *vm, node string) error {
	for _, d := range driveVolumes(v) {
		sid, volname, ok := strings.Cut(d[1], ":")
		if !ok {
			continue
		}
		st, err := e.checkStorageEnabled(sid, v.node)
		if err != nil {
			return err
		}
		if _, err := e.checkStorageEnabled(sid, node); err != nil {
			return err
		}
		if ct := contentOf(volname); !st.has(ct) {
			return fail("%s: content type '%s' is not available on storage '%s'", d[1], ct, sid)
		}
	}
	return nil
}

func (e *Emulator) postMigrate(c *call) (any, error) {
	node, target := c.values["node"], c.values["target"]
	if target == node {
		return nil, paramError(map[string]string{"target": "target is local node."})
	}
	if err := e.checkNode(target); err != nil {
		return nil, err
	}
	// API tokens are never root@pam.
	if on, _ := parseBool(c.values["force"]); on {
		return nil, paramError(map[string]string{"force": "Only root may use this option."})
	}
	for _, p := range []string{"migration_type", "migration_network"} {
		if c.values[p] != "" {
			return nil, paramError(map[string]string{p: "Only root may use this option."})
		}
	}
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if err := v.checkLock(); err != nil {
		return nil, err
	}
	online, _ := parseBool(c.values["online"])
	if v.running && !online {
		return nil, fail("can't migrate running VM without --online")
	}
	online = online && v.running // a stopped VM migrates offline, online or not
	var smap storageMap
	if ts, ok := c.values["targetstorage"]; ok {
		if smap, err = parseStorageMap(ts); err != nil {
			return nil, paramError(map[string]string{"targetstorage": "failed to parse storage map: " + err.Error()})
		}
		for _, sid := range append(slices.Sorted(maps.Values(smap.entries)), smap.fallback) {
			if sid == "" {
				continue
			}
			st, err := e.checkStorageEnabled(sid, target)
			if err != nil {
				return nil, err
			}
			if !st.has("images") {
				return nil, fail("storage '%s' does not support vm images", sid)
			}
		}
		if smap.identity {
			if err := e.checkStorageAvailability(v, target); err != nil {
				return nil, err
			}
		}
	} else if err := e.checkStorageAvailability(v, target); err != nil {
		return nil, err
	}
	if err := v.lockFile(); err != nil {
		return nil, err
	}
	withLocal, _ := parseBool(c.values["with-local-disks"])
	moved, problem := e.planMigration(v, target, online, withLocal, smap)
	typ := TaskMigrate
	if _, ha := e.ha.resources["vm:"+strconv.Itoa(v.vmid)]; ha {
		typ = TaskHAMigrate
	}
	if problem == nil {
		v.conf["lock"] = "migrate"
	}
	upid := e.startTask(c, node, typ, strconv.Itoa(v.vmid), v, func(time.Time) error {
		if problem != nil {
			return problem
		}
		delete(v.conf, "lock")
		maps.Copy(v.conf, moved)
		v.node = target
		return nil
	})
	if t := e.tasks[upid]; problem != nil && !t.stuck {
		t.end = c.now // the scan of the volumes fails at once
	}
	return upid, nil
}

// errMigrationAborted is how a migration that failed ends: QemuMigrate
// logs why and dies with this.
var errMigrationAborted = fail("migration aborted")

// planMigration is QemuMigrate's scan of the VM's volumes: it returns the
// drives whose volumes move to other storage (targetstorage), or why the
// migration aborts.
func (e *Emulator) planMigration(v *vm, target string, online, withLocal bool, smap storageMap) (map[string]string, error) {
	moved := map[string]string{}
	for _, d := range driveVolumes(v) {
		key, volid := d[0], d[1]
		drive := v.conf[key]
		cdrom := strings.Contains(drive, "media=cdrom")
		switch volid {
		case "none":
			continue
		case "cdrom":
			return nil, errMigrationAborted // can't migrate local cdrom drive
		}
		sid, volname, ok := strings.Cut(volid, ":")
		if !ok {
			return nil, errMigrationAborted // local file/device
		}
		st, err := e.checkStorageEnabled(sid, v.node)
		if err != nil {
			return nil, errMigrationAborted
		}
		tsid := sid
		if !st.shared {
			tsid = smap.target(sid)
		}
		tst, err := e.checkStorageEnabled(tsid, target)
		if err != nil || !tst.has(contentOf(volname)) {
			return nil, errMigrationAborted // not available on the target
		}
		if st.shared {
			continue
		}
		if cdrom && !strings.Contains(volid, "cloudinit") {
			return nil, errMigrationAborted // local cdrom image
		}
		vol, ok, err := e.parseVolume(volid)
		if err != nil || !ok || vol.vmid != v.vmid {
			return nil, errMigrationAborted // owned by other VM
		}
		if vol.isBase() && e.baseInUse(volid) {
			return nil, errMigrationAborted // referenced by linked clone(s)
		}
		if online && !cdrom && !withLocal {
			return nil, errMigrationAborted // can't live migrate attached local disks without with-local-disks option
		}
		if !st.kind().migratable {
			return nil, errMigrationAborted // storage type not supported
		}
		if vol.base != "" {
			return nil, errMigrationAborted // can't migrate '…' as it's a clone of '…'
		}
		if tsid != sid {
			nv := vol
			nv.st = tst
			if tst.kind().file {
				nv.format = cmp.Or(vol.format, tst.kind().formats[0])
			} else {
				nv.format = ""
			}
			_, opts, _ := strings.Cut(drive, ",")
			moved[key] = strings.TrimSuffix(nv.String()+","+opts, ",")
		}
	}
	return moved, nil
}

// baseInUse is volume_is_base_and_used: a linked clone sits on the base
// volume volid.
func (e *Emulator) baseInUse(volid string) bool {
	sid, volname, _ := strings.Cut(volid, ":")
	for _, o := range e.vms {
		for _, d := range driveVolumes(o) {
			if strings.HasPrefix(d[1], sid+":"+volname+"/") {
				return true
			}
		}
	}
	return false
}
