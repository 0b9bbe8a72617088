package tenant

import (
	"database/sql"

	"github.com/holdfast/holdfast/api"
)

// TenantRecord is a tenant with its row id.
type TenantRecord struct {
	ID int64
	api.Tenant
}

const tenantCols = `id, name, display_name, q_instances, q_vcpus, q_memory_mib, q_disk_gib, q_networks, created_at, version`

// tenantColsOfTe are tenantCols of tenants aliased te, each 0 or empty where
// a LEFT JOIN found no tenant.
const tenantColsOfTe = `coalesce(te.id, 0), coalesce(te.name, ''), coalesce(te.display_name, ''), coalesce(te.q_instances, 0), ` +
	`coalesce(te.q_vcpus, 0), coalesce(te.q_memory_mib, 0), coalesce(te.q_disk_gib, 0), coalesce(te.q_networks, 0), ` +
	`coalesce(te.created_at, ''), coalesce(te.version, 0)`

// tenantFields is a tenant being scanned from tenantCols.
type tenantFields struct {
	r       TenantRecord
	created string
}

func (f *tenantFields) dest() []any {
	r, q := &f.r, &f.r.Quota
	return []any{&r.ID, &r.Name, &r.DisplayName, &q.Instances, &q.VCPUs, &q.MemoryMiB, &q.DiskGiB, &q.Networks, &f.created, &r.Version}
}

func (f *tenantFields) record() TenantRecord {
	f.r.CreatedAt = parseTime(f.created)
	return f.r
}

func scanTenant(sc scanner) (TenantRecord, error) {
	var f tenantFields
	err := sc.Scan(f.dest()...)
	return f.record(), err
}

// CreateTenant creates a tenant and its default project.
func (t *Tx) CreateTenant(name, display string, q api.Quota) (TenantRecord, error) {
	var retired bool
	if err := t.row(`SELECT count(*) > 0 FROM retired_tenants WHERE name = ?`, name).Scan(&retired); err != nil {
		return TenantRecord{}, err
	}
	if retired {
		return TenantRecord{}, ErrRetired
	}
	var id int64
	err := t.row(`INSERT INTO tenants(name, display_name, q_instances, q_vcpus, q_memory_mib, q_disk_gib, q_networks, created_at)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, name, display, q.Instances, q.VCPUs, q.MemoryMiB, q.DiskGiB, q.Networks, fmtTime(t.now)).Scan(&id)
	if isUnique(err) {
		return TenantRecord{}, ErrExists
	}
	if err != nil {
		return TenantRecord{}, err
	}
	if _, err := t.exec(`INSERT INTO projects(tenant_id, name, description, created_at) VALUES(?, 'default', 'Created with the tenant.', ?)`, id, fmtTime(t.now)); err != nil {
		return TenantRecord{}, err
	}
	return t.Tenant(name)
}

// Tenant reads a tenant with its usage.
func (t *Tx) Tenant(name string) (TenantRecord, error) {
	r, err := scanTenant(t.row(`SELECT `+tenantCols+` FROM tenants WHERE name = ?`, name))
	if err != nil {
		return r, notFound(err)
	}
	r.Usage, err = t.Usage(r.ID)
	return r, err
}

// TenantRef reads a tenant without its usage: what scoping a request
// needs, one indexed row however much the tenant holds.
func (t *Tx) TenantRef(name string) (TenantRecord, error) {
	r, err := scanTenant(t.row(`SELECT `+tenantCols+` FROM tenants WHERE name = ?`, name))
	return r, notFound(err)
}

// Tenants lists tenants by name after the given one; member > 0 limits
// the list to tenants that user belongs to.
func (t *Tx) Tenants(after string, limit int, member int64) ([]TenantRecord, error) {
	var rows *sql.Rows
	var err error
	if member > 0 {
		rows, err = t.query(`SELECT `+tenantCols+` FROM tenants WHERE name > ? AND id IN (SELECT tenant_id FROM memberships WHERE user_id = ?) ORDER BY name LIMIT ?`, after, member, limit)
	} else {
		rows, err = t.query(`SELECT `+tenantCols+` FROM tenants WHERE name > ? ORDER BY name LIMIT ?`, after, limit)
	}
	out, err := collect(rows, err, scanTenant)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Usage, err = t.Usage(out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UpdateTenant changes a tenant if its version is still ifVersion (0:
// any version).
func (t *Tx) UpdateTenant(name string, ifVersion int64, u api.TenantUpdate) (TenantRecord, error) {
	r, err := t.Tenant(name)
	if err != nil {
		return r, err
	}
	if ifVersion != 0 && ifVersion != r.Version {
		return r, ErrConflict
	}
	if u.DisplayName != nil {
		r.DisplayName = *u.DisplayName
	}
	if u.Quota != nil {
		r.Quota = *u.Quota
	}
	q := r.Quota
	_, err = t.exec(`UPDATE tenants SET display_name = ?, q_instances = ?, q_vcpus = ?, q_memory_mib = ?, q_disk_gib = ?, q_networks = ?, version = version + 1 WHERE id = ?`,
		r.DisplayName, q.Instances, q.VCPUs, q.MemoryMiB, q.DiskGiB, q.Networks, r.ID)
	if err != nil {
		return r, err
	}
	return t.Tenant(name)
}

// DeleteTenant deletes a tenant that owns no networks or instances.
func (t *Tx) DeleteTenant(name string) error {
	r, err := t.Tenant(name)
	if err != nil {
		return err
	}
	if r.Usage.Instances > 0 || r.Usage.Networks > 0 {
		return ErrInUse
	}
	if _, err := t.exec(`INSERT INTO retired_tenants(name, deleted_at) VALUES(?, ?)`, name, fmtTime(t.now)); err != nil {
		return err
	}
	return affected(t.exec(`DELETE FROM tenants WHERE id = ?`, r.ID))
}

// Usage sums what a tenant holds. Instances and networks count from the
// moment they are asked for until they are gone.
func (t *Tx) Usage(tenantID int64) (api.Quota, error) {
	var u api.Quota
	err := t.row(`SELECT count(*), coalesce(sum(cpus), 0), coalesce(sum(memory_mib), 0), coalesce(sum(disk_gib), 0) FROM instances WHERE tenant_id = ?`, tenantID).
		Scan(&u.Instances, &u.VCPUs, &u.MemoryMiB, &u.DiskGiB)
	if err != nil {
		return u, err
	}
	err = t.row(`SELECT count(*) FROM networks WHERE tenant_id = ?`, tenantID).Scan(&u.Networks)
	return u, err
}

// checkQuota refuses a change that would take the tenant past a limit.
func (t *Tx) checkQuota(r TenantRecord, add api.Quota) error {
	u, err := t.Usage(r.ID)
	if err != nil {
		return err
	}
	type lim struct {
		name            string
		used, want, max int64
	}
	for _, l := range []lim{
		{"instances", int64(u.Instances), int64(add.Instances), int64(r.Quota.Instances)},
		{"vcpus", int64(u.VCPUs), int64(add.VCPUs), int64(r.Quota.VCPUs)},
		{"memory_mib", u.MemoryMiB, add.MemoryMiB, r.Quota.MemoryMiB},
		{"disk_gib", u.DiskGiB, add.DiskGiB, r.Quota.DiskGiB},
		{"networks", int64(u.Networks), int64(add.Networks), int64(r.Quota.Networks)},
	} {
		if l.want > 0 && l.used+l.want > l.max {
			return &QuotaError{Resource: l.name, Used: l.used, Want: l.want, Limit: l.max}
		}
	}
	return nil
}
