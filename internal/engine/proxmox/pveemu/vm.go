package pveemu

import (
	"cmp"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// vm is a QEMU guest. conf holds its configuration file's keys as PVE
// writes them (lock and template included), which is what the digest is
// taken over.
type vm struct {
	vmid    int
	node    string
	pool    string
	conf    map[string]string
	running bool
	started time.Time
	busy    *task // the task holding the config lock file, if any
	// ci records what the cloud-init drive was last made from (config.go).
	ci *ciRecord
}

// Template describes a template VM to add, like one made with
// `qm template` from a cloud image.
type Template struct {
	Node      string
	VMID      int
	Name      string
	Cores     int    // default 1
	MemoryMiB int    // default 512
	DiskGiB   int    // default 4
	Storage   string // where its disks are; default local-lvm
}

// AddTemplate adds a template VM with a cloud-init drive, a SCSI disk and
// one virtio NIC on vmbr0. Its storage must take VM images on its node.
func (e *Emulator) AddTemplate(t Template) error {
	if t.Cores == 0 {
		t.Cores = 1
	}
	if t.MemoryMiB == 0 {
		t.MemoryMiB = 512
	}
	if t.DiskGiB == 0 {
		t.DiskGiB = 4
	}
	if t.Storage == "" {
		t.Storage = "local-lvm"
	}
	if t.VMID < 100 || t.VMID > 999999999 {
		return fmt.Errorf("template VMID %d is outside 100-999999999", t.VMID)
	}
	if !dnsNameRe.MatchString(t.Name) {
		return fmt.Errorf("template name %q is not a DNS name", t.Name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.nodes[t.Node]; !ok {
		return fmt.Errorf("no node %q", t.Node)
	}
	if _, dup := e.vms[t.VMID]; dup {
		return fmt.Errorf("VMID %d exists", t.VMID)
	}
	st, err := e.checkStorageEnabled(t.Storage, t.Node)
	if err != nil {
		return fmt.Errorf("template %d: %s", t.VMID, strings.TrimSpace(err.Error()))
	}
	if !st.has("images") {
		return fmt.Errorf("template %d: storage '%s' does not support vm images", t.VMID, t.Storage)
	}
	disk := newVolume(st, t.VMID, false, "", map[string]bool{})
	disk.name = "base-" + strings.TrimPrefix(disk.name, "vm-") // qm template renames the disks
	cloudinit := newVolume(st, t.VMID, true, "qcow2", nil)
	e.vms[t.VMID] = &vm{vmid: t.VMID, node: t.Node, conf: map[string]string{
		"name":     t.Name,
		"template": "1",
		"cores":    strconv.Itoa(t.Cores),
		"memory":   strconv.Itoa(t.MemoryMiB),
		"scsihw":   "virtio-scsi-single",
		"scsi0":    fmt.Sprintf("%s,size=%dG", disk, t.DiskGiB),
		"ide2":     cloudinit.String() + ",media=cdrom",
		"net0":     "virtio=" + e.newMAC() + ",bridge=vmbr0",
		"boot":     "order=scsi0",
		"ostype":   "l26",
		"agent":    "1",
		"serial0":  "socket",
		"vga":      "serial0",
		"smbios1":  "uuid=" + e.newUUID(), // qm create gives every VM one
	}}
	return nil
}

// withNewUUID is an smbios1 value with a new uuid, printed as
// print_smbios1 does (print_property_string: keys sorted).
func (e *Emulator) withNewUUID(smbios1 string) string {
	kv := map[string]string{}
	for _, part := range strings.Split(smbios1, ",") {
		if k, v, ok := strings.Cut(part, "="); ok && k != "" {
			kv[k] = v
		}
	}
	kv["uuid"] = e.newUUID()
	parts := make([]string, 0, len(kv))
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		parts = append(parts, k+"="+kv[k])
	}
	return strings.Join(parts, ",")
}

// newMAC makes a MAC in Proxmox's own OUI (BC:24:11), as PVE does for new
// NICs.
func (e *Emulator) newMAC() string {
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", e.rng.IntN(256), e.rng.IntN(256), e.rng.IntN(256))
}

func (v *vm) memoryMiB() int {
	if n, err := parseMemory(v.conf["memory"]); err == nil {
		return n
	}
	return 512 // the schema's default
}

func (v *vm) cpus() int {
	cores, sockets := 1, 1 // the schema's defaults
	if n, err := strconv.Atoi(v.conf["cores"]); err == nil {
		cores = n
	}
	if n, err := strconv.Atoi(v.conf["sockets"]); err == nil {
		sockets = n
	}
	return cores * sockets
}

var diskKeyRe = regexp.MustCompile(`^(ide|sata|scsi|virtio)\d+$`)

// rootDiskSize is the size of the boot disk (the first non-CD drive).
func (v *vm) rootDiskSize() int64 {
	keys := slices.Sorted(maps.Keys(v.conf))
	for _, k := range keys {
		if diskKeyRe.MatchString(k) && !strings.Contains(v.conf[k], "media=cdrom") {
			return diskSize(v.conf[k])
		}
	}
	return 0
}

func diskSize(drive string) int64 {
	for _, opt := range strings.Split(drive, ",")[1:] {
		if s, ok := strings.CutPrefix(opt, "size="); ok {
			n, _ := parseSize(s)
			return n
		}
	}
	return 0
}

// digest is the SHA1 of the config file, as PVE reports it.
func (v *vm) digest() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(v.conf)) {
		fmt.Fprintf(&b, "%s: %s\n", k, v.conf[k])
	}
	sum := sha1.Sum([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

func (v *vm) status() string {
	if v.running {
		return "running"
	}
	return "stopped"
}

func (v *vm) uptime(now time.Time) int64 {
	if !v.running {
		return 0
	}
	return int64(now.Sub(v.started).Seconds())
}

func (v *vm) resource(now time.Time) map[string]any {
	r := map[string]any{
		"id": fmt.Sprintf("qemu/%d", v.vmid), "type": "qemu", "vmid": v.vmid, "node": v.node,
		"status": v.status(), "template": boolInt(v.conf["template"] == "1"),
		"maxcpu": v.cpus(), "maxmem": int64(v.memoryMiB()) << 20, "maxdisk": v.rootDiskSize(),
		"mem": 0, "cpu": 0, "disk": 0, "uptime": v.uptime(now),
	}
	if v.running {
		r["mem"] = int64(v.memoryMiB()) << 19 // half in use
	}
	if n := v.conf["name"]; n != "" {
		r["name"] = n
	}
	if l := v.conf["lock"]; l != "" {
		r["lock"] = l
	}
	if v.pool != "" {
		r["pool"] = v.pool
	}
	if t := v.conf["tags"]; t != "" {
		r["tags"] = t
	}
	return r
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// lookupVM finds the VM the path names, failing as PVE does when its
// config file is not on that node.
func (e *Emulator) lookupVM(c *call) (*vm, error) {
	node := c.values["node"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	id, _ := strconv.Atoi(c.values["vmid"])
	v, ok := e.vms[id]
	if !ok || v.node != node {
		return nil, fail("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", node, id)
	}
	return v, nil
}

// lockFile fails when a task holds the VM's config lock file: PVE waits
// ten seconds for it, then gives up with this message.
func (v *vm) lockFile() error {
	if v.busy != nil {
		return fail("can't lock file '/var/lock/qemu-server/lock-%d.conf' - got timeout", v.vmid)
	}
	return nil
}

// checkLock is PVE's check_lock.
func (v *vm) checkLock() error {
	if l := v.conf["lock"]; l != "" {
		return fail("VM is locked (%s)", l)
	}
	return nil
}

// refuseSkiplock: only root@pam may skip locks, and API tokens are never
// root@pam.
func refuseSkiplock(c *call) error {
	if on, _ := parseBool(c.values["skiplock"]); on {
		return paramError(map[string]string{"skiplock": "Only root may use this option."})
	}
	return nil
}

func (e *Emulator) checkDigest(v *vm, c *call) error {
	if d := c.values["digest"]; d != "" && d != v.digest() {
		return fail("checksum mismatch (file change by other user?)")
	}
	return nil
}

// postClone is qemu-server's clone_vm: its checks in its order, with its
// messages. A clone to another node (target) needs every volume of the
// source, the cloud-init drive and ISOs included, on shared storage, and a
// full clone's storage must be shared and on both nodes. As in PVE the new
// VMID is taken at once by a config on the source's node holding only the
// lock; the copy is written there and moved to the target when the task
// ends.
func (e *Emulator) postClone(c *call) (any, error) {
	src, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if err := e.checkPool(c.values["pool"]); err != nil {
		return nil, err
	}
	target := c.values["target"]
	if target == src.node || target == "localhost" {
		target = ""
	}
	if target != "" {
		if err := e.checkNode(target); err != nil {
			return nil, err
		}
	}
	storage, hasStorage := c.values["storage"]
	if hasStorage {
		st, err := e.checkStorageEnabled(storage, src.node)
		if err != nil {
			return nil, err
		}
		if !st.has("images") {
			return nil, paramError(map[string]string{"storage": fmt.Sprintf("storage '%s' does not support vm images", storage)})
		}
		if target != "" {
			if _, err := e.checkStorageEnabled(storage, target); err != nil {
				return nil, err
			}
			if !st.shared {
				return nil, fail("can't clone to non-shared storage '%s'", storage)
			}
		}
	}
	if err := src.lockFile(); err != nil {
		return nil, err
	}
	if err := src.checkLock(); err != nil {
		return nil, err
	}
	if s := c.values["snapname"]; s != "" {
		return nil, fail("snapshot '%s' does not exist", s) // the emulator keeps no snapshots
	}
	isTemplate := src.conf["template"] == "1"
	full := !isTemplate // a normal VM is always copied in full
	if s, ok := c.values["full"]; ok {
		full, _ = parseBool(s)
	}
	format, hasFormat := c.values["format"]
	if hasStorage && !full {
		return nil, fail("parameter 'storage' not allowed for linked clones")
	}
	if hasFormat && !full {
		return nil, fail("parameter 'format' not allowed for linked clones")
	}
	shared, err := e.sharedVM(src)
	if err != nil {
		return nil, err
	}
	if target != "" && !shared {
		return nil, fail("can't clone VM to node '%s' (VM uses local storage)", target)
	}
	newid, _ := strconv.Atoi(c.values["newid"])
	if _, exists := e.vms[newid]; exists {
		return nil, fail("unable to create VM %d: config file already exists", newid)
	}
	conf := maps.Clone(src.conf)
	delete(conf, "template")
	delete(conf, "lock")
	taken := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		val := conf[k]
		switch {
		case strings.HasPrefix(k, "net"):
			if d, err := parseNet(val); err == nil {
				d.mac = e.newMAC()
				conf[k] = d.String()
			}
		case isDriveKey(k):
			d, err := e.cloneDrive(k, val, newid, full, storage, format, taken)
			if err != nil {
				return nil, err
			}
			conf[k] = d
		}
	}
	// As clone_vm: the copy always gets a UUID of its own (the other
	// SMBIOS values are kept, the option printed again, keys sorted), and
	// a vmgenid of its own when the source has one.
	conf["smbios1"] = e.withNewUUID(conf["smbios1"])
	if conf["vmgenid"] != "" {
		conf["vmgenid"] = e.newUUID()
	}
	conf["name"] = cmp.Or(c.values["name"], "Copy-of-VM-"+cmp.Or(src.conf["name"], strconv.Itoa(src.vmid)))
	if d := c.values["description"]; d != "" {
		conf["description"] = d
	}
	dst := &vm{vmid: newid, node: src.node, pool: c.values["pool"], conf: map[string]string{"lock": "clone"}}
	e.vms[newid] = dst
	return e.startTask(c, src.node, TaskClone, strconv.Itoa(src.vmid), nil, func(time.Time) error {
		dst.conf = conf
		if target != "" {
			dst.node = target // the config file moves to the target's directory
		}
		return nil
	}), nil
}

// sharedVM is check_storage_access_clone's verdict: whether every volume
// the VM's drives name (CD-ROMs included, but not "none" or a host drive)
// is on shared storage.
func (e *Emulator) sharedVM(v *vm) (bool, error) {
	shared := true
	for _, k := range slices.Sorted(maps.Keys(v.conf)) {
		if !isDriveKey(k) {
			continue
		}
		volid, _, _ := strings.Cut(v.conf[k], ",")
		sid, _, ok := strings.Cut(volid, ":")
		if !ok {
			continue // none, cdrom, a path
		}
		st, err := e.storageConfig(sid)
		if err != nil {
			return false, err
		}
		shared = shared && st.shared
	}
	return shared, nil
}

// cloneDrive is clone_disk's naming of a drive's copy: a CD-ROM is kept as
// it is; a full copy (and the cloud-init drive, always copied) gets a new
// volume on storage, or the source's storage, in format when the storage
// takes it; a linked clone a volume on top of the template's base on the
// same storage.
func (e *Emulator) cloneDrive(key, drive string, newid int, full bool, storage, format string, taken map[string]bool) (string, error) {
	volid, opts, _ := strings.Cut(drive, ",")
	cloudinit := strings.Contains(volid, "cloudinit")
	if strings.Contains(","+opts+",", ",media=cdrom,") && !cloudinit {
		return drive, nil
	}
	src, ok, err := e.parseVolume(volid)
	if err != nil || !ok {
		return "", fail("unable to parse drive options for '%s'", key)
	}
	var dst volume
	if full || cloudinit || key == "tpmstate0" {
		st := src.st
		if storage != "" {
			st = e.storages[storage]
		}
		dst = newVolume(st, newid, cloudinit, cmp.Or(format, src.format), taken)
	} else {
		if !src.st.kind().linked || !src.isBase() {
			return "", fail("Linked clone feature is not supported for '%s' (%s)", volid, key)
		}
		dst = newVolume(src.st, newid, false, "qcow2", taken) // a file clone is a qcow2 over its base
		dst.base = strings.TrimPrefix(src.String(), src.st.id+":")
	}
	if opts == "" {
		return dst.String(), nil
	}
	return dst.String() + "," + opts, nil
}

func (e *Emulator) getConfig(c *call) (any, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if snap := c.values["snapshot"]; snap != "" {
		return nil, fail("snapshot '%s' does not exist", snap)
	}
	return v.configView(), nil
}

// updateConfig is PVE's update_vm_api, without pending changes: options
// are applied at once (config.go).
func (e *Emulator) updateConfig(c *call) (*vm, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if err := refuseSkiplock(c); err != nil {
		return nil, err
	}
	ch, err := e.readConfigChange(c)
	if err != nil {
		return nil, err
	}
	if err := v.lockFile(); err != nil {
		return nil, err
	}
	if err := e.checkDigest(v, c); err != nil {
		return nil, err
	}
	if err := v.checkLock(); err != nil {
		return nil, err
	}
	if err := checkConfigChange(v, ch); err != nil {
		return nil, err
	}
	if err := e.applyConfig(v, ch); err != nil {
		return nil, err
	}
	return v, nil
}

func (e *Emulator) putConfig(c *call) (any, error) {
	if _, err := e.updateConfig(c); err != nil {
		return nil, err
	}
	return nil, nil
}

// postConfig is the asynchronous variant: it answers a qmconfig task.
func (e *Emulator) postConfig(c *call) (any, error) {
	v, err := e.updateConfig(c)
	if err != nil {
		return nil, err
	}
	return e.startTask(c, v.node, TaskConfig, strconv.Itoa(v.vmid), v, func(time.Time) error { return nil }), nil
}

func (e *Emulator) putResize(c *call) (any, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if err := refuseSkiplock(c); err != nil {
		return nil, err
	}
	if err := v.lockFile(); err != nil {
		return nil, err
	}
	if err := e.checkDigest(v, c); err != nil {
		return nil, err
	}
	if err := v.checkLock(); err != nil {
		return nil, err
	}
	disk := c.values["disk"]
	drive, ok := v.conf[disk]
	if !ok || strings.Contains(drive, "media=cdrom") {
		return nil, fail("disk '%s' does not exist", disk)
	}
	size := c.values["size"]
	cur := diskSize(drive)
	add, rel := strings.CutPrefix(size, "+")
	n, err := parseSize(add)
	if err != nil {
		return nil, paramError(map[string]string{"size": err.Error()})
	}
	want := n
	if rel {
		want = cur + n
	}
	if want < cur {
		return nil, fail("shrinking disks is not supported")
	}
	return e.startTask(c, v.node, TaskResize, strconv.Itoa(v.vmid), v, func(time.Time) error {
		v.conf[disk] = setDriveSize(v.conf[disk], want)
		return nil
	}), nil
}

func setDriveSize(drive string, size int64) string {
	parts := strings.Split(drive, ",")
	for i, p := range parts {
		if strings.HasPrefix(p, "size=") {
			parts[i] = "size=" + formatSize(size)
			return strings.Join(parts, ",")
		}
	}
	return drive + ",size=" + formatSize(size)
}

var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}}

// parseSize parses the schema's size pattern \d+(\.\d+)?[KMGT]? (bytes
// without a unit).
func parseSize(s string) (int64, error) {
	var shift uint
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = rest, u.shift
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size '%s'", s)
	}
	return int64(math.Round(f * float64(int64(1)<<shift))), nil
}

// formatSize writes a size in the largest unit that divides it, as PVE
// does in drive strings.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n%(int64(1)<<u.shift) == 0 && n != 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// getStatus is GET …/status/current: qemu-server's vmstatus for the VM,
// with its HA state and whether the guest agent is configured.
func (e *Emulator) getStatus(c *call) (any, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	out := v.vmStatus(c.now, true)
	out["ha"] = map[string]any{"managed": 0}
	if state := e.haState(v.vmid); state != "" {
		out["ha"] = map[string]any{"managed": 1, "state": state}
	}
	if agent, err := parsePropertyString(agentFormat, "agent", v.conf["agent"]); err == nil && agent["enabled"] == "1" {
		out["agent"] = 1
	}
	return out, nil
}

// powerHandler returns the handler of one of status/start, stop, shutdown
// and reboot.
func powerHandler(typ string) func(e *Emulator, c *call) (any, error) {
	return func(e *Emulator, c *call) (any, error) {
		v, err := e.lookupVM(c)
		if err != nil {
			return nil, err
		}
		if err := refuseSkiplock(c); err != nil {
			return nil, err
		}
		if typ == TaskStart && v.conf["template"] == "1" {
			return nil, fail("you can't start a vm if it's a template")
		}
		if typ == TaskReboot && !v.running {
			return nil, fail("VM %d not running", v.vmid)
		}
		if err := v.lockFile(); err != nil {
			return nil, err
		}
		if err := v.checkLock(); err != nil {
			return nil, err
		}
		finish := func(now time.Time) error {
			switch typ {
			case TaskStart:
				if v.running {
					return fmt.Errorf("VM %d already running", v.vmid)
				}
				v.running, v.started = true, now
				v.ci = nil // the cloud-init drive is made again from the config
			case TaskStop, TaskShutdown:
				v.running = false
			case TaskReboot:
				v.started = now
			}
			return nil
		}
		return e.startTask(c, v.node, typ, strconv.Itoa(v.vmid), v, finish), nil
	}
}

func (e *Emulator) deleteVM(c *call) (any, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if err := refuseSkiplock(c); err != nil {
		return nil, err
	}
	if err := v.lockFile(); err != nil {
		return nil, err
	}
	if err := v.checkLock(); err != nil {
		return nil, err
	}
	if v.running {
		return nil, fail("VM %d is running - destroy failed", v.vmid)
	}
	return e.startTask(c, v.node, TaskDestroy, strconv.Itoa(v.vmid), v, func(time.Time) error {
		if e.vms[v.vmid] == v {
			delete(e.vms, v.vmid)
		}
		return nil
	}), nil
}

// TaskCreate is the task of POST /nodes/{node}/qemu.
const TaskCreate = "qmcreate"

func init() { DefaultDurations[TaskCreate] = time.Second }

// newDiskRe is a drive allocating a new volume, "STORAGE:SIZE_IN_GiB"
// with options; cloudInitRe the cloud-init drive, "STORAGE:cloudinit".
var (
	newDiskRe   = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9._-]*):(\d+(\.\d+)?)(,.*)?$`)
	cloudInitRe = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9._-]*):cloudinit(,.*)?$`)
)

// postCreate creates a VM from parameters (no template), allocating the
// new volumes its drives ask for. As in PVE the VMID is taken at once,
// the disks are allocated by the task.
func (e *Emulator) postCreate(c *call) (any, error) {
	node := c.values["node"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	if err := e.checkPool(c.values["pool"]); err != nil {
		return nil, err
	}
	vmid, _ := strconv.Atoi(c.values["vmid"])
	if _, exists := e.vms[vmid]; exists {
		return nil, fail("unable to create VM %d: config file already exists", vmid)
	}
	conf := map[string]string{}
	errs := map[string]string{}
	for k, val := range c.values {
		switch {
		case k == "node" || k == "vmid" || k == "start" || k == "pool":
		case k == "sshkeys":
			conf[k] = val
		case diskKeyRe.MatchString(k):
			switch m := newDiskRe.FindStringSubmatch(val); {
			case m != nil:
				gib, _ := strconv.ParseFloat(m[2], 64)
				conf[k] = fmt.Sprintf("%s:vm-%d-disk-%s,size=%s%s", m[1], vmid, strings.TrimLeft(k, "abcdefghijklmnopqrstuvwxyz"), formatSize(int64(gib*(1<<30))), m[4])
			case cloudInitRe.MatchString(val):
				sm := cloudInitRe.FindStringSubmatch(val)
				conf[k] = fmt.Sprintf("%s:vm-%d-cloudinit,media=cdrom", sm[1], vmid)
			default:
				errs[k] = "unable to parse drive options - expected STORAGE:SIZE or STORAGE:cloudinit"
			}
		case strings.HasPrefix(k, "net"):
			d, err := parseNet(val)
			if err != nil {
				errs[k] = err.Error()
				continue
			}
			if d.mac == "" {
				d.mac = e.newMAC()
			}
			conf[k] = d.String()
		default:
			conf[k] = val
		}
	}
	if len(errs) > 0 {
		return nil, paramError(errs)
	}
	if conf["smbios1"] == "" {
		conf["smbios1"] = "uuid=" + e.newUUID() // create_vm's generate_smbios1_uuid
	}
	v := &vm{vmid: vmid, node: node, pool: c.values["pool"], conf: map[string]string{"lock": "create"}}
	e.vms[vmid] = v
	start, _ := parseBool(c.values["start"])
	return e.startTask(c, node, TaskCreate, strconv.Itoa(vmid), nil, func(now time.Time) error {
		v.conf = conf
		if start {
			v.running, v.started = true, now
		}
		return nil
	}), nil
}
