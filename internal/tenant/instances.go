package tenant

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"strings"

	"github.com/holdfast/holdfast/api"
)

// Key is an SSH key as put into an instance: a copy, so deleting the
// tenant's key later does not change running instances.
type Key struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// InstanceRecord is an instance with what the spec needs.
type InstanceRecord struct {
	TenantID int64
	Image    string
	Keys     []Key
	Reboot   int
	Rebuild  int
	api.Instance
}

// SpecName is the name of a tenant instance in the spec.
func SpecName(tenant, instance string) string { return tenant + "--" + instance }

const instanceCols = `i.tenant_id, te.name, i.name, i.project, i.flavor, i.template, i.image, i.network, i.ssh_keys, i.power, i.status,
	i.cpus, i.memory_mib, i.disk_gib, i.reboot, i.rebuild, i.vmid, i.ip, i.fqdn, i.node, i.spec_name, i.error, i.created_at, i.updated_at, i.version`

func scanInstance(sc scanner) (InstanceRecord, error) {
	var r InstanceRecord
	var keys, created, updated string
	err := sc.Scan(&r.TenantID, &r.Tenant, &r.Name, &r.Project, &r.Flavor, &r.Template, &r.Image, &r.Network, &keys, &r.Power, &r.Status,
		&r.CPUs, &r.MemoryMiB, &r.DiskGiB, &r.Reboot, &r.Rebuild, &r.VMID, &r.IP, &r.FQDN, &r.Node, &r.Spec, &r.Error, &created, &updated, &r.Version)
	if err != nil {
		return r, err
	}
	r.CreatedAt, r.UpdatedAt = parseTime(created), parseTime(updated)
	r.Keys = []Key{}
	if keys != "[]" { // most instances have none: no decoding for a page of them
		if err := json.Unmarshal([]byte(keys), &r.Keys); err != nil {
			return r, err
		}
	}
	r.SSHKeys = make([]string, len(r.Keys))
	for i, k := range r.Keys {
		r.SSHKeys[i] = k.Name
	}
	return r, nil
}

func size(r InstanceRecord) api.Quota {
	return api.Quota{Instances: 1, VCPUs: r.CPUs, MemoryMiB: r.MemoryMiB, DiskGiB: r.DiskGiB}
}

// CreateInstance records a new instance if the tenant's quota allows it.
func (t *Tx) CreateInstance(tr TenantRecord, r InstanceRecord) (InstanceRecord, error) {
	if err := t.checkQuota(tr, size(r)); err != nil {
		return r, err
	}
	keys, err := json.Marshal(nonNilKeys(r.Keys))
	if err != nil {
		return r, err
	}
	now := fmtTime(t.now)
	_, err = t.exec(`INSERT INTO instances(tenant_id, name, project, flavor, template, image, network, ssh_keys, power, status, cpus, memory_mib, disk_gib, spec_name, created_at, updated_at)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tr.ID, r.Name, r.Project, r.Flavor, r.Template, r.Image, r.Network, string(keys), r.Power, api.StatusCreating, r.CPUs, r.MemoryMiB, r.DiskGiB, SpecName(tr.Name, r.Name), now, now)
	if isUnique(err) {
		return r, ErrExists
	}
	if err != nil {
		return r, err
	}
	return t.Instance(tr.ID, r.Name)
}

func nonNilKeys(k []Key) []Key {
	if k == nil {
		return []Key{}
	}
	return k
}

// Instance reads one of a tenant's instances.
func (t *Tx) Instance(tenantID int64, name string) (InstanceRecord, error) {
	r, err := scanInstance(t.row(`SELECT `+instanceCols+` FROM instances i JOIN tenants te ON te.id = i.tenant_id WHERE i.tenant_id = ? AND i.name = ?`, tenantID, name))
	return r, notFound(err)
}

// Instances lists a tenant's instances by name.
func (t *Tx) Instances(tenantID int64, after string, limit int) ([]InstanceRecord, error) {
	return t.instances(make([]InstanceRecord, 0, min(limit, 1000)), `i.tenant_id = ? AND i.name > ? ORDER BY i.name LIMIT ?`, tenantID, after, limit)
}

// AllInstances lists every tenant instance, for the tenants spec.
func (t *Tx) AllInstances() ([]InstanceRecord, error) {
	return t.instances(nil, `1 = 1 ORDER BY i.spec_name`)
}

// instances appends the instances where says to out.
func (t *Tx) instances(out []InstanceRecord, where string, args ...any) ([]InstanceRecord, error) {
	rows, err := t.query(`SELECT `+instanceCols+` FROM instances i JOIN tenants te ON te.id = i.tenant_id WHERE `+where, args...)
	return collectInto(out, rows, err, scanInstance)
}

// UpdateInstance changes an instance through f if its version is still
// ifVersion (0: any). A change of size is checked against the quota,
// counting only what it adds.
func (t *Tx) UpdateInstance(tr TenantRecord, name string, ifVersion int64, f func(*InstanceRecord) error) (InstanceRecord, error) {
	r, err := t.Instance(tr.ID, name)
	if err != nil {
		return r, err
	}
	if ifVersion != 0 && ifVersion != r.Version {
		return r, ErrConflict
	}
	old := size(r)
	if err := f(&r); err != nil {
		return r, err
	}
	grow := size(r)
	grow.Instances = 0
	grow.VCPUs = max(grow.VCPUs-old.VCPUs, 0)
	grow.MemoryMiB = max(grow.MemoryMiB-old.MemoryMiB, 0)
	grow.DiskGiB = max(grow.DiskGiB-old.DiskGiB, 0)
	if err := t.checkQuota(tr, grow); err != nil {
		return r, err
	}
	keys, err := json.Marshal(nonNilKeys(r.Keys))
	if err != nil {
		return r, err
	}
	_, err = t.exec(`UPDATE instances SET flavor = ?, template = ?, image = ?, ssh_keys = ?, power = ?, status = ?, cpus = ?, memory_mib = ?, disk_gib = ?,
		reboot = ?, rebuild = ?, error = ?, updated_at = ?, version = version + 1 WHERE tenant_id = ? AND name = ?`,
		r.Flavor, r.Template, r.Image, string(keys), r.Power, r.Status, r.CPUs, r.MemoryMiB, r.DiskGiB, r.Reboot, r.Rebuild, r.Error, fmtTime(t.now), tr.ID, name)
	if err != nil {
		return r, err
	}
	return t.Instance(tr.ID, name)
}

// Observed is what the reconciler found of an instance.
type Observed struct {
	Status, IP, FQDN, Node, Error string
	VMID                          int
}

// SetInstanceObserved records what the reconciler made of an instance,
// bumping its version only when something changed.
func (t *Tx) SetInstanceObserved(specName string, o Observed) (changed bool, err error) {
	res, err := t.exec(`UPDATE instances SET status = ?, vmid = ?, ip = ?, fqdn = ?, node = ?, error = ?, updated_at = ?, version = version + 1
		WHERE spec_name = ? AND status <> 'deleting' AND (status, vmid, ip, fqdn, node, error) <> (?, ?, ?, ?, ?, ?)`, // all NOT NULL
		o.Status, o.VMID, o.IP, o.FQDN, o.Node, o.Error, fmtTime(t.now), specName, o.Status, o.VMID, o.IP, o.FQDN, o.Node, o.Error)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// RemoveInstance forgets an instance once the reconciler has removed it.
func (t *Tx) RemoveInstance(specName string) error {
	_, err := t.exec(`DELETE FROM instances WHERE spec_name = ?`, specName)
	return err
}

// NewID returns a random id with a prefix, e.g. op-k3j5....
func NewID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
