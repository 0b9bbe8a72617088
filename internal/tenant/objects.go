package tenant

import (
	"github.com/holdfast/holdfast/api"
)

// CreateProject creates a project in a tenant.
func (t *Tx) CreateProject(tenantID int64, p api.ProjectCreate) (api.Project, error) {
	_, err := t.exec(`INSERT INTO projects(tenant_id, name, description, created_at) VALUES(?, ?, ?, ?)`, tenantID, p.Name, p.Description, fmtTime(t.now))
	if isUnique(err) {
		return api.Project{}, ErrExists
	}
	if err != nil {
		return api.Project{}, err
	}
	return t.Project(tenantID, p.Name)
}

// Project reads one of a tenant's projects.
func (t *Tx) Project(tenantID int64, name string) (api.Project, error) {
	p, err := scanProject(t.row(`SELECT name, description, created_at FROM projects WHERE tenant_id = ? AND name = ?`, tenantID, name))
	return p, notFound(err)
}

// Projects lists a tenant's projects.
func (t *Tx) Projects(tenantID int64, after string, limit int) ([]api.Project, error) {
	rows, err := t.query(`SELECT name, description, created_at FROM projects WHERE tenant_id = ? AND name > ? ORDER BY name LIMIT ?`, tenantID, after, limit)
	return collect(rows, err, scanProject)
}

func scanProject(sc scanner) (api.Project, error) {
	var p api.Project
	var created string
	err := sc.Scan(&p.Name, &p.Description, &created)
	p.CreatedAt = parseTime(created)
	return p, err
}

// DeleteProject deletes a project without instances.
func (t *Tx) DeleteProject(tenantID int64, name string) error {
	var n int
	if err := t.row(`SELECT count(*) FROM instances WHERE tenant_id = ? AND project = ?`, tenantID, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return ErrInUse
	}
	return affected(t.exec(`DELETE FROM projects WHERE tenant_id = ? AND name = ?`, tenantID, name))
}

// CreateSSHKey adds a public key to a tenant.
func (t *Tx) CreateSSHKey(tenantID int64, k api.SSHKey) (api.SSHKey, error) {
	k.CreatedAt = t.now
	_, err := t.exec(`INSERT INTO sshkeys(tenant_id, name, public_key, fingerprint, created_at) VALUES(?, ?, ?, ?, ?)`, tenantID, k.Name, k.PublicKey, k.Fingerprint, fmtTime(t.now))
	if isUnique(err) {
		return k, ErrExists
	}
	return k, err
}

// SSHKey reads one of a tenant's keys.
func (t *Tx) SSHKey(tenantID int64, name string) (api.SSHKey, error) {
	k, err := scanSSHKey(t.row(`SELECT name, public_key, fingerprint, created_at FROM sshkeys WHERE tenant_id = ? AND name = ?`, tenantID, name))
	return k, notFound(err)
}

// SSHKeys lists a tenant's keys.
func (t *Tx) SSHKeys(tenantID int64, after string, limit int) ([]api.SSHKey, error) {
	rows, err := t.query(`SELECT name, public_key, fingerprint, created_at FROM sshkeys WHERE tenant_id = ? AND name > ? ORDER BY name LIMIT ?`, tenantID, after, limit)
	return collect(rows, err, scanSSHKey)
}

func scanSSHKey(sc scanner) (api.SSHKey, error) {
	var k api.SSHKey
	var created string
	err := sc.Scan(&k.Name, &k.PublicKey, &k.Fingerprint, &created)
	k.CreatedAt = parseTime(created)
	return k, err
}

// DeleteSSHKey removes a key; instances keep the copy they were given.
func (t *Tx) DeleteSSHKey(tenantID int64, name string) error {
	return affected(t.exec(`DELETE FROM sshkeys WHERE tenant_id = ? AND name = ?`, tenantID, name))
}

// PutFlavor publishes a flavor, or changes it for instances created later.
func (t *Tx) PutFlavor(f api.Flavor) error {
	_, err := t.exec(`INSERT INTO flavors(name, cpus, memory_mib, disk_gib) VALUES(?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET cpus = excluded.cpus, memory_mib = excluded.memory_mib, disk_gib = excluded.disk_gib`, f.Name, f.CPUs, f.MemoryMiB, f.DiskGiB)
	return err
}

// Flavor reads a flavor.
func (t *Tx) Flavor(name string) (api.Flavor, error) {
	f, err := scanFlavor(t.row(`SELECT name, cpus, memory_mib, disk_gib FROM flavors WHERE name = ?`, name))
	return f, notFound(err)
}

// Flavors lists flavors.
func (t *Tx) Flavors(after string, limit int) ([]api.Flavor, error) {
	rows, err := t.query(`SELECT name, cpus, memory_mib, disk_gib FROM flavors WHERE name > ? ORDER BY name LIMIT ?`, after, limit)
	return collect(rows, err, scanFlavor)
}

func scanFlavor(sc scanner) (api.Flavor, error) {
	var f api.Flavor
	err := sc.Scan(&f.Name, &f.CPUs, &f.MemoryMiB, &f.DiskGiB)
	return f, err
}

// DeleteFlavor withdraws a flavor; instances keep their size.
func (t *Tx) DeleteFlavor(name string) error {
	return affected(t.exec(`DELETE FROM flavors WHERE name = ?`, name))
}

// PutTemplate publishes a template.
func (t *Tx) PutTemplate(tp api.Template) error {
	_, err := t.exec(`INSERT INTO templates(name, image, os, description) VALUES(?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET image = excluded.image, os = excluded.os, description = excluded.description`, tp.Name, tp.Image, tp.OS, tp.Description)
	return err
}

// Template reads a template.
func (t *Tx) Template(name string) (api.Template, error) {
	tp, err := scanTemplate(t.row(`SELECT name, image, os, description FROM templates WHERE name = ?`, name))
	return tp, notFound(err)
}

// Templates lists templates.
func (t *Tx) Templates(after string, limit int) ([]api.Template, error) {
	rows, err := t.query(`SELECT name, image, os, description FROM templates WHERE name > ? ORDER BY name LIMIT ?`, after, limit)
	return collect(rows, err, scanTemplate)
}

func scanTemplate(sc scanner) (api.Template, error) {
	var tp api.Template
	err := sc.Scan(&tp.Name, &tp.Image, &tp.OS, &tp.Description)
	return tp, err
}

// DeleteTemplate withdraws a template.
func (t *Tx) DeleteTemplate(name string) error {
	return affected(t.exec(`DELETE FROM templates WHERE name = ?`, name))
}
