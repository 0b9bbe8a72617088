package pveemu

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// This file is what a VM configuration update does beyond storing values,
// as qemu-server's update_vm_api and vmconfig_apply_pending do it for a
// VM whose changes apply at once (the emulator keeps no pending changes):
// drive allocation, unused volumes, the boot order, unique tags, the
// record of what the cloud-init drive was made from, and the checks that
// run before anything is written.

// configRoutes are the VM configuration's views besides GET …/config.
var configRoutes = []route{
	{"GET", "/nodes/{node}/qemu/{vmid}/pending", paramsVM, (*Emulator).getPending},
	{"GET", "/nodes/{node}/qemu/{vmid}/cloudinit", paramsVM, (*Emulator).getCloudInit},
	{"PUT", "/nodes/{node}/qemu/{vmid}/cloudinit", paramsVM, (*Emulator).putCloudInit},
}

// configMeta are the config endpoints' parameters that are not options.
var configMeta = map[string]bool{"node": true, "vmid": true, "digest": true, "delete": true,
	"revert": true, "skiplock": true, "background_delay": true, "force": true, "import-working-storage": true}

// configChange is a configuration update, checked: the options to set
// and the ones to delete.
type configChange struct {
	set map[string]string
	del []string
}

// readConfigChange checks an update's parameters as update_vm_api does
// before it takes the config lock.
func (e *Emulator) readConfigChange(c *call) (configChange, error) {
	ch := configChange{set: map[string]string{}}
	for k, val := range c.values {
		if !configMeta[k] {
			ch.set[k] = val
		}
	}
	if keys, ok := ch.set["sshkeys"]; ok {
		if err := checkSSHKeys(keys); err != nil {
			return ch, err
		}
	}
	if len(ch.set) == 0 && c.values["delete"] == "" && c.values["revert"] == "" {
		return ch, fail("no options specified")
	}
	// cdrom is an alias of ide2 as a CD-ROM.
	if v, ok := ch.set["cdrom"]; ok {
		if !strings.Contains(v, "media=") {
			v += ",media=cdrom"
		}
		ch.set["ide2"] = v
		delete(ch.set, "cdrom")
	}
	revert := map[string]bool{}
	for _, k := range splitList(c.values["revert"]) {
		if _, ok := qemuOption(k); !ok {
			return ch, paramError(map[string]string{"revert": fmt.Sprintf("unknown option '%s'", k)})
		}
		if _, ok := ch.set[k]; ok {
			return ch, paramError(map[string]string{"delete": fmt.Sprintf("you can't use '-%s' and -revert %s' at the same time", k, k)})
		}
		revert[k] = true
	}
	for _, k := range splitList(c.values["delete"]) {
		if k == "cdrom" {
			k = "ide2"
		}
		if _, ok := ch.set[k]; ok {
			return ch, paramError(map[string]string{"delete": fmt.Sprintf("you can't use '-%s' and -delete %s' at the same time", k, k)})
		}
		if revert[k] {
			return ch, paramError(map[string]string{"revert": fmt.Sprintf("you can't use '-delete %s' and -revert %s' at the same time", k, k)})
		}
		if _, ok := qemuOption(k); !ok {
			return ch, paramError(map[string]string{"delete": fmt.Sprintf("unknown option '%s'", k)})
		}
		ch.del = append(ch.del, k)
	}
	for k, val := range ch.set {
		switch {
		case strings.HasPrefix(k, "net"):
			d, _ := parseNet(val) // validated already
			if d.mac == "" {
				d.mac = e.newMAC()
			}
			ch.set[k] = d.String()
		case k == "vmgenid" && val == "1":
			ch.set[k] = e.newUUID()
		}
	}
	return ch, nil
}

// checkSSHKeys is validate_ssh_public_keys: every line of the decoded
// value that is not blank must be a public key ssh-keygen reads.
func checkSSHKeys(encoded string) error {
	keys, err := url.PathUnescape(encoded)
	if err != nil {
		return fail("SSH public key validation error")
	}
	for _, line := range strings.Split(keys, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
			return fail("SSH public key validation error")
		}
	}
	return nil
}

// newUUID makes a random UUID from the emulator's seeded source (vmgenid=1).
func (e *Emulator) newUUID() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(e.rng.IntN(256))
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// checkConfigChange runs the checks update_vm_api makes against the
// config it loaded: the balloon against the memory.
func checkConfigChange(v *vm, ch configChange) error {
	mem, hasMem := ch.set["memory"]
	balloon, hasBalloon := ch.set["balloon"]
	if !hasMem && !hasBalloon {
		return nil
	}
	if !hasMem {
		mem = v.conf["memory"]
	}
	if !hasBalloon {
		balloon = v.conf["balloon"]
	}
	maxmem, err := parseMemory(mem)
	if err != nil {
		maxmem = 512 // the schema's default
	}
	if b, _ := strconv.Atoi(balloon); b > maxmem {
		return fail("balloon value too large (must be smaller than assigned memory)")
	}
	return nil
}

// applyConfig writes a checked change into the VM's config: deletions
// first, then the new values.
func (e *Emulator) applyConfig(v *vm, ch configChange) error {
	boot := bootOrder(v.conf["boot"])
	bootDeleted := slices.Contains(ch.del, "boot")
	var pending []func()
	for _, k := range ch.del {
		old, ok := v.conf[k]
		if !ok {
			continue // PVE warns "cannot delete 'k' - not set" and goes on
		}
		if !bootDeleted && slices.Contains(boot, k) {
			boot = slices.DeleteFunc(boot, func(d string) bool { return d == k })
			pending = append(pending, func() { setBootOrder(v, boot) })
		}
		delete(v.conf, k)
		if isDriveName(k) {
			if d, err := parsePropertyString(driveFormat(k), k, old); err == nil && !driveIsCDROM(d) {
				e.registerUnused(v, d["file"])
			}
		}
		v.recordCloudInit(k, &old, nil)
	}
	for _, k := range slices.Sorted(maps.Keys(ch.set)) {
		val := ch.set[k]
		replaced := "" // a volume the new drive takes the place of
		switch {
		case isDriveName(k):
			drive, err := e.allocDrive(v, k, val)
			if err != nil {
				return err
			}
			if old, ok := v.conf[k]; ok {
				od, err := parsePropertyString(driveFormat(k), k, old)
				nd, _ := parsePropertyString(driveFormat(k), k, drive)
				if err == nil && !driveIsCDROM(od) && od["file"] != nd["file"] {
					replaced = od["file"]
				}
			}
			val = drive
			if d, _ := parsePropertyString(driveFormat(k), k, val); len(boot) > 0 && driveIsCDROM(d) && !slices.Contains(boot, k) {
				boot = append(boot, k)
				pending = append(pending, func() { setBootOrder(v, boot) })
			}
		case k == "boot":
			kv, _ := parsePropertyString(bootFormat, k, val)
			if order := kv["order"]; order != "" {
				devs := splitList(order)
				for _, dev := range devs {
					_, exists := v.conf[dev]
					_, setNow := ch.set[dev]
					if !exists && !setNow || slices.Contains(ch.del, dev) {
						return fail("invalid bootorder: device '%s' does not exist'", dev)
					}
				}
				val = "order=" + strings.Join(devs, ";")
				delete(v.conf, "bootdisk") // the legacy setting goes
				boot = devs
			}
		case k == "tags":
			val = uniqueTags(val)
		case k == "description":
			val = strings.TrimRight(val, " \t\r\n")
		}
		old, had := v.conf[k]
		v.conf[k] = val
		if replaced != "" {
			e.registerUnused(v, replaced)
		}
		if had {
			v.recordCloudInit(k, &old, &val)
		} else {
			v.recordCloudInit(k, nil, &val)
		}
	}
	for _, f := range pending {
		f()
	}
	return nil
}

// driveFormat is the property-string format of a drive key.
func driveFormat(k string) propFormat {
	switch k {
	case "efidisk0":
		return efidiskFormat
	case "tpmstate0":
		return tpmstateFormat
	}
	p, _ := qemuOption(k)
	return p.props
}

func driveIsCDROM(d map[string]string) bool { return d["media"] == "cdrom" }

// driveIsCloudInit is drive_is_cloudinit.
func driveIsCloudInit(volid string) bool {
	_, name, _ := strings.Cut(volid, ":")
	return name == "cloudinit" || strings.HasSuffix(name, "cloudinit") && strings.Contains(name, "vm-")
}

// allocDrive is create_disks for one drive: "STORAGE:SIZE" (GiB) makes a
// new volume, "STORAGE:cloudinit" the VM's cloud-init drive, and any
// other value names an existing volume. The result is the drive as
// print_drive writes it.
func (e *Emulator) allocDrive(v *vm, key, val string) (string, error) {
	f := driveFormat(key)
	d, err := parsePropertyString(f, key, val)
	if err != nil {
		return "", paramError(map[string]string{key: "invalid format - " + err.Error()})
	}
	store, rest, isVol := strings.Cut(d["file"], ":")
	switch {
	case isVol && rest == "cloudinit":
		for k, other := range v.conf {
			if k != key && strings.Contains(other, fmt.Sprintf("vm-%d-cloudinit", v.vmid)) {
				return "", fail("%s - cloud-init drive is already attached at '%s'", key, k)
			}
		}
		d["file"] = fmt.Sprintf("%s:vm-%d-cloudinit", store, v.vmid)
		d["media"] = "cdrom"
	case isVol && newDiskSizeRe.MatchString(rest):
		gib, _ := strconv.ParseFloat(rest, 64)
		size := int64(gib * (1 << 30))
		switch key {
		case "efidisk0":
			size = 528 << 10 // the OVMF vars copied in (2m type)
		case "tpmstate0":
			size = 4 << 20
		}
		d["file"] = fmt.Sprintf("%s:%s", store, e.freeDiskName(v))
		d["size"] = strconv.FormatInt(size, 10)
	}
	if d["size"] != "" {
		if n, err := parseSize(d["size"]); err == nil {
			d["size"] = formatSize(n)
		}
	}
	return printPropertyString(f, d), nil
}

// newDiskSizeRe is the size part of Drive.pm's NEW_DISK_RE.
var newDiskSizeRe = regexp.MustCompile(`^\d+(\.\d+)?$`)

// freeDiskName is find_free_diskname: the lowest vm-VMID-disk-N that none
// of the VM's drives or unused volumes names (a linked clone's volume
// "base-9000-disk-0/vm-100-disk-0" names vm-100-disk-0).
func (e *Emulator) freeDiskName(v *vm) string {
	taken := map[string]bool{}
	for _, val := range v.conf {
		vol, _, _ := strings.Cut(val, ",")
		if _, name, ok := strings.Cut(vol, ":"); ok {
			taken[name[strings.LastIndex(name, "/")+1:]] = true
		}
	}
	for n := 0; ; n++ {
		if name := fmt.Sprintf("vm-%d-disk-%d", v.vmid, n); !taken[name] {
			return name
		}
	}
}

// registerUnused is vmconfig_register_unused_drive: a volume the VM owns
// that leaves a drive becomes unusedN, except the cloud-init drive, which
// is freed.
func (e *Emulator) registerUnused(v *vm, volid string) {
	if driveIsCloudInit(volid) {
		return
	}
	_, name, ok := strings.Cut(volid, ":")
	if !ok || !strings.Contains(name, fmt.Sprintf("vm-%d-", v.vmid)) {
		return // not a volume of this VM's own
	}
	for _, val := range v.conf {
		if vol, _, _ := strings.Cut(val, ","); vol == volid {
			return // still in use, or already unused
		}
	}
	for n := range maxUnused {
		k := "unused" + strconv.Itoa(n)
		if _, taken := v.conf[k]; !taken {
			v.conf[k] = volid
			return
		}
	}
}

// printPropertyString is print_property_string: the default key's bare
// value first, then the required keys, then the rest, each sorted.
func printPropertyString(f propFormat, kv map[string]string) string {
	var parts []string
	done := map[string]bool{}
	add := func(k string, bare bool) {
		if done[k] {
			return
		}
		done[k] = true
		v, ok := kv[k]
		if !ok {
			return
		}
		if f[k].format == "disk-size" {
			if n, err := parseSize(v); err == nil {
				v = formatSize(n)
			}
		}
		if bare {
			parts = append(parts, v)
		} else {
			parts = append(parts, k+"="+v)
		}
	}
	keys := slices.Sorted(maps.Keys(kv))
	for _, k := range slices.Sorted(maps.Keys(f)) {
		if f[k].isDefault {
			add(k, true)
		}
	}
	for _, k := range keys {
		if f[k].required {
			add(k, false)
		}
	}
	for _, k := range keys {
		add(k, false)
	}
	return strings.Join(parts, ",")
}

// bootOrder is the device list of a boot option's order.
func bootOrder(boot string) []string {
	kv, err := parsePropertyString(bootFormat, "boot", boot)
	if err != nil || kv["order"] == "" {
		return nil
	}
	return splitList(kv["order"])
}

// setBootOrder is print_bootorder.
func setBootOrder(v *vm, devs []string) {
	if len(devs) == 0 {
		delete(v.conf, "boot")
		return
	}
	v.conf["boot"] = "order=" + strings.Join(devs, ";")
}

// uniqueTags is get_unique_tags with the datacenter defaults: lower case,
// sorted, each once, joined by semicolons.
func uniqueTags(tags string) string {
	var out []string
	for _, t := range splitList(tags) {
		out = append(out, strings.ToLower(t))
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ";")
}

// ciRecord is a VM config's [special:cloudinit] section: what the
// options the cloud-init drive is made from were when it was last made
// (old values of changed or deleted options, and the names of added ones).
type ciRecord struct {
	old   map[string]string
	added map[string]bool
}

// recordCloudInit is vmconfig_apply_pending's cloudinit_record_changed:
// it notes a change of a cloud-init option (old or new nil: absent).
func (v *vm) recordCloudInit(opt string, old, new *string) {
	if !cloudInitKey(opt) {
		return
	}
	if v.ci == nil {
		v.ci = &ciRecord{old: map[string]string{}, added: map[string]bool{}}
	}
	recorded, hasRecorded := v.ci.old[opt]
	switch {
	case new != nil && old != nil: // changed
		switch {
		case hasRecorded && *new == recorded: // back to what the drive holds
			delete(v.ci.old, opt)
			delete(v.ci.added, opt)
		case hasRecorded, v.ci.added[opt]:
		default:
			v.ci.old[opt] = *old
		}
	case new != nil: // added
		switch {
		case hasRecorded && *new == recorded:
			delete(v.ci.old, opt)
			delete(v.ci.added, opt)
		case hasRecorded, v.ci.added[opt]:
		default:
			v.ci.added[opt] = true
		}
	case old != nil: // deleted
		switch {
		case hasRecorded:
		case v.ci.added[opt]:
			delete(v.ci.added, opt)
		default:
			v.ci.old[opt] = *old
		}
	}
}

// getPending is GET …/pending (config_with_pending_array). The emulator
// applies changes at once, so every option has its value and none is
// pending.
func (e *Emulator) getPending(c *call) (any, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	conf := v.configView()
	out := []map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		out = append(out, map[string]any{"key": k, "value": conf[k]})
	}
	return out, nil
}

// getCloudInit is GET …/cloudinit: the cloud-init options with the value
// the drive was made from and, when it changed since, the pending one.
func (e *Emulator) getCloudInit(c *call) (any, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	conf := v.configView()
	ci := v.ci
	if ci == nil {
		ci = &ciRecord{}
	}
	mask := func(k string, val any) any {
		if k == "cipassword" {
			return "**********"
		}
		return val
	}
	out := []map[string]any{}
	added := slices.Sorted(maps.Keys(ci.added))
	for _, k := range added {
		out = append(out, map[string]any{"key": k, "pending": conf[k]})
	}
	for _, k := range cloudInitOptions {
		cur := conf[k]
		if perlFalse(cur) || slices.ContainsFunc(added, func(a string) bool { return strings.Contains(a, k) }) {
			continue
		}
		item := map[string]any{"key": k, "value": cur}
		if old := ci.old[k]; !perlFalse(old) {
			item["value"], item["pending"] = mask(k, configValue(k, old)), cur
		}
		out = append(out, item)
	}
	for _, k := range slices.Sorted(maps.Keys(ci.old)) {
		if !perlFalse(conf[k]) {
			continue
		}
		out = append(out, map[string]any{"key": k, "delete": 1})
	}
	return out, nil
}

// putCloudInit is PUT …/cloudinit: the drive is made again from the
// current values.
func (e *Emulator) putCloudInit(c *call) (any, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if err := v.lockFile(); err != nil {
		return nil, err
	}
	if err := v.checkLock(); err != nil {
		return nil, err
	}
	v.ci = nil
	return nil, nil
}

// configView is the config as GET …/config answers it: typed values and
// the password masked.
func (v *vm) configView() map[string]any {
	out := map[string]any{"digest": v.digest()}
	for k, val := range v.conf {
		if k == "cipassword" {
			out[k] = "**********"
			continue
		}
		out[k] = configValue(k, val)
	}
	return out
}

// perlFalse is Perl's idea of false for a config value: absent, empty or
// zero.
func perlFalse(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == "" || v == "0"
	case int:
		return v == 0
	case int64:
		return v == 0
	}
	return false
}
