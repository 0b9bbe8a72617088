package proxmox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

// lockWait bounds the wait for a clone or create under way (a task that
// never ends holds its lock until someone clears it).
const lockWait = 10 * time.Minute

// guest is one of the cloud's VMs as found: where it is and its config.
type guest struct {
	vmid int
	node string
	cfg  pve.VMConfig
}

// snapshot is the cluster's guest list as read at one moment.
type snapshot struct {
	at  time.Time // when the read started
	vms []pve.VM
}

// guests lists the cluster's guests. Concurrent callers share one read;
// with fresh, the read started after the call, else one at most a second
// old will do.
func (s *site) guests(ctx context.Context, fresh bool) ([]pve.VM, error) {
	asked := time.Now()
	s.vmsMu.Lock()
	defer s.vmsMu.Unlock()
	if v := s.vms; v != nil && (!v.at.Before(asked) || !fresh && time.Since(v.at) < time.Second) {
		return v.vms, nil
	}
	start := time.Now()
	vms, err := s.api.VMs(ctx)
	if err != nil {
		return nil, err
	}
	s.vms = &snapshot{at: start, vms: vms}
	return vms, nil
}

// find reads guest vmid, looking on node first and then wherever the
// cluster says it is (HA may have moved it). It waits while a clone is
// still writing the guest. ok is false when no guest has the VMID.
func (s *site) find(ctx context.Context, vmid int, node string) (g guest, ok bool, err error) {
	deadline := time.Now().Add(lockWait)
	for attempt := 0; ; attempt++ {
		cfg, err := s.api.Config(ctx, node, vmid)
		if pve.IsNotFound(err) {
			vms, lerr := s.guests(ctx, true)
			if lerr != nil {
				return g, false, lerr
			}
			i := slices.IndexFunc(vms, func(vm pve.VM) bool { return vm.VMID == vmid })
			if i < 0 {
				return g, false, nil
			}
			if vms[i].Type != "qemu" {
				return g, false, &engine.TakenError{VMID: vmid, Holder: fmt.Sprintf("container %q on %s", vms[i].Name, vms[i].Node)}
			}
			if vms[i].Node == node {
				// Listed where it was not a moment ago: another writer's
				// clone or create has just begun there. Ask again, as
				// for a locked guest, until it settles.
				if time.Now().After(deadline) {
					return g, false, err
				}
				if err := sleep(ctx, backoff(attempt)); err != nil {
					return g, false, err
				}
				continue
			}
			node = vms[i].Node
			continue
		}
		if err != nil {
			return g, false, err
		}
		if !passing(cfg.Lock) {
			return guest{vmid: vmid, node: node, cfg: cfg}, true, nil
		}
		// A clone or create is still under way (the config holds nothing
		// else yet), or a migration, which moves the guest when it ends.
		if time.Now().After(deadline) {
			return g, false, fmt.Errorf("VMID %d is still locked (%s) after %s: %w", vmid, cfg.Lock, lockWait, errConflict)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return g, false, err
		}
	}
}

// passing reports whether a config lock is one of the tasks that end by
// themselves with the guest made or moved: clone, create, migrate.
func passing(lock string) bool {
	return lock == "clone" || lock == "create" || lock == "migrate"
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ours reports whether a found guest is the instance's: named so, and
// tagged as the cloud's or, between its clone and its first
// configuration, described as the instance by the clone.
func (e *Engine) ours(g guest, name string) bool {
	return g.cfg.Name == name && (hasTag(g.cfg.Tags, e.tag()) || strings.Contains(g.cfg.Description, e.ownerNote(name)))
}

func (e *Engine) instance(r compile.Resource) (*compile.Instance, error) {
	name := r.ID.Name
	in, ok := e.instances[name]
	if !ok {
		return nil, fmt.Errorf("%s: not a desired instance", r.ID)
	}
	return in, nil
}

// ensureInstance makes the instance's guest exist and match: cloned from
// its template, configured, its disk grown, its firewall set, powered as
// desired, rebooted or rebuilt when its generation says so, and made an
// HA resource when it is one.
func (e *Engine) ensureInstance(ctx context.Context, r compile.Resource) error {
	in, err := e.instance(r)
	if err != nil {
		return err
	}
	s, err := e.site(in.Site)
	if err != nil {
		return err
	}
	g, found, err := s.find(ctx, in.VMID, in.Node)
	if err != nil {
		return err
	}
	if found && !e.ours(g, in.Name) {
		return &engine.TakenError{VMID: in.VMID, Holder: fmt.Sprintf("guest %q on %s", g.cfg.Name, g.node)}
	}
	if found {
		if m, _ := parseMeta(g.cfg.Description); m.Rebuild != in.Rebuild {
			if err := e.destroyGuest(ctx, s, g); err != nil {
				return fmt.Errorf("rebuild: %w", err)
			}
			found = false
		}
	}
	if !found {
		if g, err = e.clone(ctx, s, in); err != nil {
			return err
		}
	}
	if g, err = e.moveHome(ctx, s, in, g); err != nil {
		return err
	}
	if err := e.configure(ctx, s, in, g); err != nil {
		return err
	}
	if err := e.growDisk(ctx, s, in, g); err != nil {
		return err
	}
	if err := e.guestFirewall(ctx, s, in, g.node); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	if err := e.power(ctx, s, in, g); err != nil {
		return err
	}
	return e.ensureHA(ctx, s, in)
}

// clone copies the instance's template to its VMID. When the template
// can reach the instance's node — it is there, or its disks are on storage
// shared with that node — the clone is made for that node (PVE's target);
// otherwise it is made on the template's node, and moveHome migrates it
// after. Either way the task runs on the template's node and takes one of
// its slots. A clone whose answer was lost may have happened: a guest
// found at the VMID that is ours (named and tagged by this clone) is
// adopted; anyone else's means the VMID was taken under us.
func (e *Engine) clone(ctx context.Context, s *site, in *compile.Instance) (guest, error) {
	desc := e.description(in.Name, meta{Reboot: in.Reboot, Rebuild: in.Rebuild})
	if in.Template == "" {
		// No template: an empty VM with a boot disk and a cloud-init
		// drive, for an appliance or an installer to fill.
		release, err := s.slot(ctx, in.Node)
		if err != nil {
			return guest{}, err
		}
		err = s.api.Create(ctx, in.Node, pve.CreateOptions{
			VMID: in.VMID, Name: in.Name, Cores: in.CPUs, MemoryMiB: int(in.MemoryMiB), DiskGiB: int((in.DiskMiB + 1023) >> 10),
			Storage: cmp.Or(s.cfg.Storage, "local-lvm"), Pool: s.cfg.Pool, Description: desc, Tags: e.tag(),
		})
		release()
		if err != nil && !pve.IsExists(err) {
			return guest{}, fmt.Errorf("create VMID %d: %w", in.VMID, err)
		}
		return e.made(ctx, s, in, err)
	}
	tpl, err := s.template(ctx, in)
	if err != nil {
		return guest{}, err
	}
	full := s.cfg.Clone == "full"
	direct, err := s.reaches(ctx, in, tpl, full)
	if err != nil {
		return guest{}, err
	}
	opts := pve.CloneOptions{NewID: in.VMID, Name: in.Name, Full: full, Pool: s.cfg.Pool, Storage: s.cfg.Storage, Description: desc}
	if direct {
		opts.Target = in.Node
	}
	release, err := s.slot(ctx, tpl.Node)
	if err != nil {
		return guest{}, err
	}
	err = s.api.Clone(ctx, tpl.Node, tpl.VMID, opts)
	release()
	if err != nil && !pve.IsExists(err) {
		return guest{}, fmt.Errorf("clone template %q (VMID %d on %s) to VMID %d: %w", tpl.Name, tpl.VMID, tpl.Node, in.VMID, err)
	}
	return e.made(ctx, s, in, err)
}

// made reads the guest a clone or create just made, or found taken (err
// is then PVE's "already exists").
func (e *Engine) made(ctx context.Context, s *site, in *compile.Instance, err error) (guest, error) {
	g, found, ferr := s.find(ctx, in.VMID, in.Node)
	switch {
	case ferr != nil:
		return guest{}, ferr
	case !found && err != nil:
		return guest{}, fmt.Errorf("VMID %d: %w", in.VMID, errConflict) // it existed, and is gone again
	case !found:
		return guest{}, fmt.Errorf("clone to VMID %d finished but the guest is not there", in.VMID)
	case !e.ours(g, in.Name):
		return guest{}, &engine.TakenError{VMID: in.VMID, Holder: fmt.Sprintf("guest %q on %s", g.cfg.Name, g.node)}
	}
	return g, nil
}

// reaches tells whether a clone of tpl can be made for the instance's node
// in one step (PVE's target): the template is on that node, or every
// volume it has — the cloud-init drive and ISOs too, which is what PVE
// checks — is on shared storage configured there, and so is the storage a
// full clone is written to. When not, the clone is made on the template's
// node and migrated, which a linked clone on local storage cannot be: its
// disk is a layer over the template's. For another node, storage the
// guest's disks would be on that the node does not have is refused before
// anything is made.
func (s *site) reaches(ctx context.Context, in *compile.Instance, tpl pve.VM, full bool) (bool, error) {
	if tpl.Node == in.Node {
		return true, nil // PVE itself refuses a storage the node lacks
	}
	cfg, err := s.api.Config(ctx, tpl.Node, tpl.VMID)
	if err != nil {
		return false, fmt.Errorf("template %q (VMID %d on %s): %w", tpl.Name, tpl.VMID, tpl.Node, err)
	}
	all, err := s.api.Storages(ctx)
	if err != nil {
		return false, err
	}
	storages := map[string]pve.Storage{}
	for _, st := range all {
		storages[st.Storage] = st
	}
	shared := func(id string) bool { st, ok := storages[id]; return ok && st.Shared && st.On(in.Node) }
	// Where the guest's volumes end up: a full clone writes disks and
	// the cloud-init drive to storage; CD-ROM images stay where they are.
	ends := cfg.Volumes()
	if full && s.cfg.Storage != "" {
		ends = append(isoStorages(cfg), s.cfg.Storage)
	}
	for _, id := range ends {
		if st, ok := storages[id]; !ok || !st.On(in.Node) {
			return false, fmt.Errorf("instance %s: its disks would be on storage %s (template %q, VMID %d on %s), which node %s does not have; give the site a storage every node has, or pin the instance to a node that has it",
				in.Name, id, tpl.Name, tpl.VMID, tpl.Node, in.Node)
		}
	}
	direct := !slices.ContainsFunc(cfg.Volumes(), func(id string) bool { return !shared(id) })
	if full && s.cfg.Storage != "" {
		direct = direct && shared(s.cfg.Storage)
	}
	if !direct && !full {
		return false, fmt.Errorf("instance %s: a linked clone of template %q (VMID %d on %s, disks on %s) cannot be put on node %s: PVE clones to another node only from shared storage and cannot migrate a linked clone off its template; add a copy of the template on %s (proxmox templates), put the template on shared storage, or use clone: full",
			in.Name, tpl.Name, tpl.VMID, tpl.Node, strings.Join(cfg.Volumes(), ", "), in.Node, in.Node)
	}
	return direct, nil
}

var driveKey = regexp.MustCompile(`^(ide|sata|scsi|virtio)\d+$`)

// isoStorages lists the storage of a config's CD-ROM images (not the
// cloud-init drive): what a clone keeps as it is.
func isoStorages(cfg pve.VMConfig) []string {
	var out []string
	for k, v := range cfg.Raw {
		if !driveKey.MatchString(k) {
			continue
		}
		volid, opts, _ := strings.Cut(v, ",")
		sid, _, ok := strings.Cut(volid, ":")
		if ok && strings.Contains(","+opts+",", ",media=cdrom,") && !strings.Contains(volid, "cloudinit") {
			out = append(out, sid)
		}
	}
	return out
}

// moveHome migrates a guest found on another node than its instance's
// there, as a clone made on its template's node is left (or one an apply
// was killed before moving): offline, with its local disks. A running
// guest is left where it is (Holdfast does not migrate live; the node shows
// as drift), and so is an HA resource, which HA places. The migration runs
// on the guest's node and takes one of its slots. Whatever the answer (a
// lost one, a migration already under way), where the guest is afterwards
// decides.
func (e *Engine) moveHome(ctx context.Context, s *site, in *compile.Instance, g guest) (guest, error) {
	if g.node == in.Node {
		return g, nil
	}
	st, err := s.api.Status(ctx, g.node, g.vmid)
	if err != nil {
		return g, err
	}
	if st.Status == "running" {
		return g, nil
	}
	if in.HA {
		res, err := s.api.HAResources(ctx)
		if err != nil {
			return g, err
		}
		if haManaged(res, g.vmid) {
			return g, nil
		}
	}
	release, err := s.slot(ctx, g.node)
	if err != nil {
		return g, err
	}
	err = s.api.Migrate(ctx, g.node, g.vmid, pve.MigrateOptions{Target: in.Node})
	release()
	now, found, ferr := s.find(ctx, g.vmid, in.Node)
	switch {
	case ferr != nil:
		return g, ferr
	case !found:
		return g, fmt.Errorf("VMID %d vanished while migrated: %w", g.vmid, errConflict)
	case now.node == in.Node:
		return now, nil
	case err == nil:
		return now, fmt.Errorf("VMID %d: migrated to %s but found on %s: %w", g.vmid, in.Node, now.node, errConflict)
	}
	return now, fmt.Errorf("migrate VMID %d from %s to %s: %w (the task log on %s says why)", g.vmid, g.node, in.Node, err, g.node)
}

// template finds the template VM an instance is cloned from: the copy the
// site names for the instance's node, else a template VM named after the
// image (or a VMID when the image is a number), else one named after the
// Holdfast template. Of several templates of one name, the one on the
// instance's node is taken, else the one with the lowest VMID.
func (s *site) template(ctx context.Context, in *compile.Instance) (pve.VM, error) {
	keys := []string{in.Image, in.Template}
	if own := s.cfg.Templates[in.Template][in.Node]; own != "" {
		keys = []string{own}
	}
	s.tplMu.Lock()
	defer s.tplMu.Unlock()
	for pass := 0; pass < 2; pass++ {
		if s.templates != nil {
			for _, k := range keys {
				if c := s.templates[k]; k != "" && len(c) > 0 {
					if i := slices.IndexFunc(c, func(vm pve.VM) bool { return vm.Node == in.Node }); i >= 0 {
						return c[i], nil
					}
					return c[0], nil
				}
			}
			if pass == 1 {
				break
			}
		}
		vms, err := s.guests(ctx, s.templates != nil)
		if err != nil {
			return pve.VM{}, err
		}
		s.templates = map[string][]pve.VM{}
		for _, vm := range vms {
			if vm.Template && vm.Type == "qemu" {
				s.templates[vm.Name] = append(s.templates[vm.Name], vm)
				s.templates[strconv.Itoa(vm.VMID)] = []pve.VM{vm}
			}
		}
		for _, c := range s.templates {
			slices.SortFunc(c, func(a, b pve.VM) int { return a.VMID - b.VMID })
		}
	}
	if len(keys) == 1 {
		return pve.VM{}, fmt.Errorf("instance %s: no template VM %q on the cluster, which the site names as %s's copy on %s (proxmox templates)", in.Name, keys[0], in.Template, in.Node)
	}
	return pve.VM{}, fmt.Errorf("instance %s: no template VM %q (or %q) on the cluster; make one with `qm template` and name it so", in.Name, in.Image, in.Template)
}

// desiredConfig is the configuration the instance's guest must have.
func (e *Engine) desiredConfig(s *site, in *compile.Instance) pve.ConfigUpdate {
	u := pve.ConfigUpdate{
		Name: in.Name, Cores: in.CPUs, MemoryMiB: int(in.MemoryMiB),
		Nets: map[int]pve.NetDevice{}, IPConfigs: map[int]pve.IPConfig{},
		SSHKeys: strings.Join(in.SSHKeys, "\n"), CIUser: "root", Searchdomain: e.desired.Domain,
	}
	for _, nic := range in.NICs {
		z := e.zones[nic.Zone]
		bridge, tag := s.bridgeOf(z)
		d := pve.NetDevice{Model: "virtio", MAC: strings.ToUpper(nic.MAC), Bridge: bridge, Tag: tag, Firewall: true}
		if s.cfg.Network == "vxlan" && z != nil && s.sdnManaged(z) {
			// mtu=1: the guest takes the vnet's MTU, 50 bytes below the
			// underlay's for the VXLAN header, instead of 1500.
			d.Other = map[string]string{"mtu": "1"}
		}
		if len(nic.Trunks) > 0 {
			var vids []string
			for _, t := range nic.Trunks {
				if tz := e.zones[t]; tz != nil && tz.VLAN != nil {
					vids = append(vids, strconv.Itoa(*tz.VLAN))
				}
			}
			if d.Other == nil {
				d.Other = map[string]string{}
			}
			d.Other["trunks"] = strings.Join(vids, ";")
		}
		u.Nets[nic.Index] = d
		ic := pve.IPConfig{IP: nic.IP + "/" + strconv.Itoa(nic.Prefix)}
		if nic.Index == 0 {
			ic.Gateway = nic.Gateway
			// Its DNS servers, in the order it asks them (cloud-init
			// writes them to the guest's resolver configuration).
			u.Nameserver = strings.Join(in.Resolvers, " ")
		}
		u.IPConfigs[nic.Index] = ic
	}
	return u
}

// configDrift lists how cfg differs from want, as "field: have -> want".
func configDrift(cfg pve.VMConfig, want pve.ConfigUpdate) []string {
	var drift []string
	diff := func(field string, have, want any) {
		if fmt.Sprint(have) != fmt.Sprint(want) {
			drift = append(drift, fmt.Sprintf("%s is %v, want %v", field, have, want))
		}
	}
	diff("name", cfg.Name, want.Name)
	diff("cores", cfg.Cores, want.Cores)
	diff("memory", cfg.MemoryMiB, want.MemoryMiB)
	for _, i := range slices.Sorted(maps.Keys(want.Nets)) {
		have, ok := cfg.Nets[i]
		if !ok {
			drift = append(drift, fmt.Sprintf("net%d is missing", i))
			continue
		}
		if !sameNet(have, want.Nets[i]) {
			drift = append(drift, fmt.Sprintf("net%d is %s, want %s", i, have, want.Nets[i]))
		}
		diff("ipconfig"+strconv.Itoa(i), cfg.IPConfigs[i].String(), want.IPConfigs[i].String())
	}
	for i := range cfg.Nets {
		if _, ok := want.Nets[i]; !ok {
			drift = append(drift, fmt.Sprintf("net%d is not Holdfast's", i))
		}
	}
	if strings.TrimSpace(cfg.SSHKeys) != strings.TrimSpace(want.SSHKeys) {
		drift = append(drift, fmt.Sprintf("ssh keys are %s, want %s", compile.SSHKeysDigest(lines(cfg.SSHKeys)), compile.SSHKeysDigest(lines(want.SSHKeys))))
	}
	diff("ciuser", cfg.CIUser, want.CIUser)
	diff("nameserver", cfg.Nameserver, want.Nameserver)
	diff("searchdomain", cfg.Searchdomain, want.Searchdomain)
	if !cfg.OnBoot {
		drift = append(drift, "onboot is off")
	}
	return drift
}

func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func sameNet(a, b pve.NetDevice) bool {
	return a.Model == b.Model && strings.EqualFold(a.MAC, b.MAC) && a.Bridge == b.Bridge && a.Tag == b.Tag &&
		a.Firewall == b.Firewall && a.Other["trunks"] == b.Other["trunks"] && a.Other["mtu"] == b.Other["mtu"]
}

// configure sends the options that differ from what is wanted, with the
// digest of the config they were compared against.
func (e *Engine) configure(ctx context.Context, s *site, in *compile.Instance, g guest) error {
	want := e.desiredConfig(s, in)
	cfg := g.cfg
	u := pve.ConfigUpdate{Digest: cfg.Digest, Nets: map[int]pve.NetDevice{}, IPConfigs: map[int]pve.IPConfig{}}
	changed := false
	if cfg.Name != want.Name {
		u.Name, changed = want.Name, true
	}
	if cfg.Cores != want.Cores {
		u.Cores, changed = want.Cores, true
	}
	if cfg.MemoryMiB != want.MemoryMiB {
		u.MemoryMiB, changed = want.MemoryMiB, true
	}
	for i, d := range want.Nets {
		if have, ok := cfg.Nets[i]; !ok || !sameNet(have, d) {
			u.Nets[i], changed = d, true
		}
		if cfg.IPConfigs[i].String() != want.IPConfigs[i].String() {
			u.IPConfigs[i], changed = want.IPConfigs[i], true
		}
	}
	for i := range cfg.Nets {
		if _, ok := want.Nets[i]; !ok {
			u.Delete, changed = append(u.Delete, "net"+strconv.Itoa(i)), true
		}
	}
	for i := range cfg.IPConfigs {
		if _, ok := want.IPConfigs[i]; !ok {
			u.Delete, changed = append(u.Delete, "ipconfig"+strconv.Itoa(i)), true
		}
	}
	switch {
	case strings.TrimSpace(cfg.SSHKeys) == strings.TrimSpace(want.SSHKeys):
	case want.SSHKeys == "":
		u.Delete, changed = append(u.Delete, "sshkeys"), true
	default:
		u.SSHKeys, changed = want.SSHKeys+"\n", true
	}
	if cfg.CIUser != want.CIUser {
		u.CIUser, changed = want.CIUser, true
	}
	if cfg.Nameserver != want.Nameserver {
		u.Nameserver, changed = want.Nameserver, true
	}
	if cfg.Searchdomain != want.Searchdomain {
		u.Searchdomain, changed = want.Searchdomain, true
	}
	if !hasTag(cfg.Tags, e.tag()) {
		u.Tags, changed = withTag(cfg.Tags, e.tag()), true
	}
	if !cfg.OnBoot {
		on := true
		u.OnBoot, changed = &on, true
	}
	if smbios, differs := e.desiredSMBIOS1(s, in, cfg.SMBIOS1); differs {
		if smbios == "" {
			u.Delete = append(u.Delete, "smbios1")
		}
		u.SMBIOS1, changed = smbios, true
	}
	if !changed {
		return nil
	}
	slices.Sort(u.Delete)
	if err := s.api.SetConfig(ctx, g.node, g.vmid, u); err != nil {
		return fmt.Errorf("configure VMID %d: %w", g.vmid, err)
	}
	return nil
}

// bootDisk is the guest's first disk that is neither a CD-ROM nor the
// cloud-init drive.
func bootDisk(cfg pve.VMConfig) (key string, sizeMiB int64) {
	for _, bus := range []string{"scsi", "virtio", "sata", "ide"} {
		for i := range 31 {
			k := bus + strconv.Itoa(i)
			v, ok := cfg.Raw[k]
			if !ok || strings.Contains(v, "media=cdrom") || strings.Contains(v, "cloudinit") {
				continue
			}
			return k, driveSizeMiB(v)
		}
	}
	return "", 0
}

func driveSizeMiB(drive string) int64 {
	for _, part := range strings.Split(drive, ",") {
		v, ok := strings.CutPrefix(part, "size=")
		if !ok || v == "" {
			continue
		}
		mult := map[byte]int64{'K': 1, 'M': 1 << 10, 'G': 1 << 20, 'T': 1 << 30}[v[len(v)-1]]
		num := v
		if mult != 0 {
			num = v[:len(v)-1]
		} else {
			mult = 0 // bytes
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0
		}
		if mult == 0 {
			return int64(f) >> 20
		}
		return int64(f*float64(mult)) >> 10
	}
	return 0
}

// growDisk grows the boot disk to the instance's size. PVE cannot shrink
// disks: a disk larger than desired (a flavor made smaller) stays as it is.
func (e *Engine) growDisk(ctx context.Context, s *site, in *compile.Instance, g guest) error {
	key, size := bootDisk(g.cfg)
	if key == "" || in.DiskMiB <= size {
		return nil
	}
	release, err := s.slot(ctx, g.node)
	if err != nil {
		return err
	}
	defer release()
	if err := s.api.Resize(ctx, g.node, g.vmid, key, strconv.FormatInt(in.DiskMiB, 10)+"M"); err != nil {
		return fmt.Errorf("grow %s of VMID %d to %d MiB: %w", key, g.vmid, in.DiskMiB, err)
	}
	return nil
}

// power starts or stops the guest as desired, and reboots a running one
// whose reboot generation changed; the generation is recorded after.
func (e *Engine) power(ctx context.Context, s *site, in *compile.Instance, g guest) error {
	st, err := s.api.Status(ctx, g.node, g.vmid)
	if err != nil {
		return err
	}
	m, _ := parseMeta(g.cfg.Description)
	release, err := s.slot(ctx, g.node)
	if err != nil {
		return err
	}
	defer release()
	running := st.Status == "running"
	switch {
	case in.Power == compile.PowerStopped && running:
		if in.HA {
			// HA would start it again: stop it through HA first.
			if err := e.setHAState(ctx, s, in, "stopped"); err != nil {
				return err
			}
		}
		err = s.api.Stop(ctx, g.node, g.vmid)
	case in.Power != compile.PowerStopped && !running:
		err = s.api.Start(ctx, g.node, g.vmid)
		if isAlreadyRunning(err) {
			err = nil
		}
	case running && m.Reboot != in.Reboot:
		err = s.api.Reboot(ctx, g.node, g.vmid)
	}
	if err != nil {
		return fmt.Errorf("power VMID %d %s: %w", g.vmid, in.Power, err)
	}
	if m.Reboot == in.Reboot && m.Rebuild == in.Rebuild {
		return nil
	}
	cfg, err := s.api.Config(ctx, g.node, g.vmid)
	if err != nil {
		return err
	}
	return s.api.SetConfig(ctx, g.node, g.vmid, pve.ConfigUpdate{Digest: cfg.Digest,
		Description: e.description(in.Name, meta{Reboot: in.Reboot, Rebuild: in.Rebuild})})
}

func isAlreadyRunning(err error) bool {
	var te *pve.TaskError
	return errors.As(err, &te) && strings.Contains(te.Error(), "already running")
}

// destroyGuest stops and destroys a guest of the cloud, HA entries first.
func (e *Engine) destroyGuest(ctx context.Context, s *site, g guest) error {
	if err := e.removeHA(ctx, s, g.vmid); err != nil {
		return err
	}
	release, err := s.slot(ctx, g.node)
	if err != nil {
		return err
	}
	defer release()
	if err := s.api.Stop(ctx, g.node, g.vmid); err != nil && !pve.IsNotFound(err) {
		return fmt.Errorf("stop VMID %d: %w", g.vmid, err)
	}
	if err := s.api.Delete(ctx, g.node, g.vmid); err != nil && !pve.IsNotFound(err) {
		return fmt.Errorf("destroy VMID %d: %w", g.vmid, err)
	}
	return nil
}

// deleteInstance destroys the instance's guest, found by the VMID it was
// made with. A guest at that VMID that is not the instance's is not
// touched: the instance is gone already.
func (e *Engine) deleteInstance(ctx context.Context, r compile.Resource) error {
	s, err := e.site(r.Site)
	if err != nil {
		return err
	}
	vmid, err := strconv.Atoi(r.Attrs["vmid"])
	if err != nil {
		return fmt.Errorf("%s: recorded without a VMID", r.ID)
	}
	node := r.Attrs["node"]
	if node == "" && len(s.nodes) > 0 {
		node = s.nodes[0]
	}
	g, found, err := s.find(ctx, vmid, node)
	if err != nil || !found {
		return err
	}
	if !e.ours(g, r.ID.Name) {
		return nil
	}
	return e.destroyGuest(ctx, s, g)
}
