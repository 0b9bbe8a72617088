package tenant

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/holdfast/holdfast/api"
)

// Pool is the operator's pool of tenant networks: every network is one
// subnet of Prefix, Bits long, with one VLAN of [FirstVLAN, LastVLAN].
type Pool struct {
	Prefix              netip.Prefix
	Bits                int
	FirstVLAN, LastVLAN int
}

// Slots is how many networks the pool holds.
func (p Pool) Slots() int {
	if !p.Prefix.IsValid() || p.Bits < p.Prefix.Bits() || p.Bits > 30 {
		return 0
	}
	subnets := 1 << min(p.Bits-p.Prefix.Bits(), 24)
	return min(subnets, p.LastVLAN-p.FirstVLAN+1)
}

// Slot is the subnet and VLAN of slot i.
func (p Pool) Slot(i int) (netip.Prefix, int) {
	base := p.Prefix.Masked().Addr().As4()
	n := binary.BigEndian.Uint32(base[:]) + uint32(i)<<(32-p.Bits)
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], n)
	return netip.PrefixFrom(netip.AddrFrom4(a), p.Bits), p.FirstVLAN + i
}

// ZoneName is the name of a tenant network's zone in the spec. Tenant
// names hold no "--", so the name is unique.
func ZoneName(tenant, network string) string { return tenant + "--" + network }

// NetworkRecord is a network with its pool slot.
type NetworkRecord struct {
	TenantID int64
	Slot     int
	api.Network
}

const networkCols = `n.tenant_id, te.name, n.name, n.slot, n.zone, n.cidr, n.gateway, n.vlan, n.status, n.created_at, n.version`

func scanNetwork(sc scanner) (NetworkRecord, error) {
	var r NetworkRecord
	var created string
	err := sc.Scan(&r.TenantID, &r.Tenant, &r.Name, &r.Slot, &r.Zone, &r.CIDR, &r.Gateway, &r.VLAN, &r.Status, &created, &r.Version)
	r.CreatedAt = parseTime(created)
	r.VNI = 10000 + r.VLAN
	return r, err
}

// CreateNetwork takes the lowest free slot of the pool for a new network,
// within the tenant's quota.
func (t *Tx) CreateNetwork(tr TenantRecord, name string, pool Pool) (NetworkRecord, error) {
	if err := t.checkQuota(tr, api.Quota{Networks: 1}); err != nil {
		return NetworkRecord{}, err
	}
	if _, err := t.Network(tr.ID, name); err == nil {
		return NetworkRecord{}, ErrExists
	}
	slot, err := t.freeSlot()
	if err != nil {
		return NetworkRecord{}, err
	}
	if slot >= pool.Slots() {
		return NetworkRecord{}, ErrPoolFull
	}
	prefix, vlan := pool.Slot(slot)
	gw := prefix.Addr().Next()
	_, err = t.exec(`INSERT INTO networks(tenant_id, name, slot, zone, cidr, gateway, vlan, status, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tr.ID, name, slot, ZoneName(tr.Name, name), prefix.String(), gw.String(), vlan, "creating", fmtTime(t.now))
	if isUnique(err) {
		return NetworkRecord{}, fmt.Errorf("network slot %d: %w", slot, ErrExists)
	}
	if err != nil {
		return NetworkRecord{}, err
	}
	return t.Network(tr.ID, name)
}

// Network reads one of a tenant's networks.
func (t *Tx) Network(tenantID int64, name string) (NetworkRecord, error) {
	r, err := scanNetwork(t.row(`SELECT `+networkCols+` FROM networks n JOIN tenants te ON te.id = n.tenant_id WHERE n.tenant_id = ? AND n.name = ?`, tenantID, name))
	return r, notFound(err)
}

// Networks lists a tenant's networks.
func (t *Tx) Networks(tenantID int64, after string, limit int) ([]NetworkRecord, error) {
	return t.networks(`n.tenant_id = ? AND n.name > ? ORDER BY n.name LIMIT ?`, tenantID, after, limit)
}

// AllNetworks lists every tenant network, for the tenants spec.
func (t *Tx) AllNetworks() ([]NetworkRecord, error) {
	return t.networks(`1 = 1 ORDER BY n.zone`)
}

func (t *Tx) networks(where string, args ...any) ([]NetworkRecord, error) {
	rows, err := t.query(`SELECT `+networkCols+` FROM networks n JOIN tenants te ON te.id = n.tenant_id WHERE `+where, args...)
	return collect(rows, err, scanNetwork)
}

// SetNetworkStatus records what the reconciler made of a network.
func (t *Tx) SetNetworkStatus(zone, status string) error {
	_, err := t.exec(`UPDATE networks SET status = ?, version = version + 1 WHERE zone = ? AND status <> ?`, status, zone, status)
	return err
}

// MarkNetworkDeleting asks for a network without instances to go.
func (t *Tx) MarkNetworkDeleting(tenantID int64, name string) (NetworkRecord, error) {
	r, err := t.Network(tenantID, name)
	if err != nil {
		return r, err
	}
	var n int
	if err := t.row(`SELECT count(*) FROM instances WHERE tenant_id = ? AND network = ?`, tenantID, name).Scan(&n); err != nil {
		return r, err
	}
	if n > 0 {
		return r, ErrInUse
	}
	_, err = t.exec(`UPDATE networks SET status = 'deleting', version = version + 1 WHERE tenant_id = ? AND name = ?`, tenantID, name)
	return r, err
}

// RemoveNetwork forgets a network once the reconciler has removed it.
func (t *Tx) RemoveNetwork(zone string) error {
	_, err := t.exec(`DELETE FROM networks WHERE zone = ?`, zone)
	return err
}

// freeSlot is the lowest slot no network holds.
func (t *Tx) freeSlot() (int, error) {
	rows, err := t.query(`SELECT slot FROM networks ORDER BY slot`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	next := 0
	for rows.Next() {
		var s int
		if err := rows.Scan(&s); err != nil {
			return 0, err
		}
		if s != next {
			break
		}
		next++
	}
	return next, rows.Err()
}
