package dhcp

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"time"
)

// Lease is an address bound to a client.
type Lease struct {
	Zone     string     `json:"zone"`
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"`
	Hostname string     `json:"hostname"`
	Expires  time.Time  `json:"expires"`
	Reserved bool       `json:"reserved"` // the address is the client's reservation
}

// leaseFile is the lease file's content. Expired leases stay in it until
// their address goes to another client, so that a client coming back
// after a long absence (or a server restart) gets its old address.
type leaseFile struct {
	Leases []Lease `json:"leases"`
}

// How long an offered address is held for the client it was offered to,
// and how long an address a client declined (it found it in use) is left
// alone.
const (
	offerHold   = 30 * time.Second
	declineHold = 10 * time.Minute
)

type state int

const (
	offered  state = iota // held for a client between its DISCOVER and REQUEST; not persisted
	bound                 // acknowledged; persisted
	declined              // in use by someone we do not know; not persisted
)

type entry struct {
	mac      string
	hostname string
	expires  time.Time
	state    state
	reserved bool
}

// zone is one zone's allocator: which address is whose, and until when.
// A MAC holds at most one address in a zone; entries are keyed by address,
// so an address can never be held by two clients at once.
type zone struct {
	pool     Pool
	resByMAC map[string]Reservation
	resByIP  map[netip.Addr]Reservation
	entries  map[netip.Addr]*entry
	byMAC    map[string]netip.Addr
}

func newZone() *zone {
	return &zone{
		resByMAC: map[string]Reservation{},
		resByIP:  map[netip.Addr]Reservation{},
		entries:  map[netip.Addr]*entry{},
		byMAC:    map[string]netip.Addr{},
	}
}

// configure gives z the pool p and drops what p no longer allows: leases
// outside the new range, and a dynamic lease on an address now reserved
// for someone else or held by a client that now has a reservation.
func (z *zone) configure(p Pool) (dropped int) {
	z.pool = p
	z.resByMAC = map[string]Reservation{}
	z.resByIP = map[netip.Addr]Reservation{}
	for _, r := range p.Reservations {
		z.resByMAC[r.MAC.String()] = r
		z.resByIP[r.IP] = r
	}
	for ip, e := range z.entries {
		if !z.allowed(ip, e.mac) {
			z.del(ip)
			dropped++
		}
	}
	return dropped
}

// allowed says whether p's rules let mac hold ip at all, whoever holds it
// now.
func (z *zone) allowed(ip netip.Addr, mac string) bool {
	if r, ok := z.resByMAC[mac]; ok {
		return ip == r.IP
	}
	if _, ok := z.resByIP[ip]; ok {
		return false
	}
	return z.pool.inRange(ip) && ip != z.pool.Gateway
}

// free says whether mac may have ip now: the rules allow it and nobody
// else holds it (an expired lease no longer holds its address).
func (z *zone) free(ip netip.Addr, mac string, now time.Time) bool {
	if !z.allowed(ip, mac) {
		return false
	}
	e := z.entries[ip]
	if e == nil || !e.expires.After(now) {
		return true
	}
	return e.mac == mac && e.state != declined
}

func (z *zone) del(ip netip.Addr) {
	if e := z.entries[ip]; e != nil && z.byMAC[e.mac] == ip {
		delete(z.byMAC, e.mac)
	}
	delete(z.entries, ip)
}

// put gives ip to e.mac, releasing the address e.mac held before.
func (z *zone) put(ip netip.Addr, e *entry) {
	if prev, ok := z.byMAC[e.mac]; ok && prev != ip && e.mac != "" {
		z.del(prev)
	}
	z.del(ip)
	z.entries[ip] = e
	if e.mac != "" {
		z.byMAC[e.mac] = ip
	}
}

// offer picks the address to offer mac: its reservation; else the address
// it had, if still free; else the one it asks for, if free; else the
// first never-used address of the range; else the address whose lease
// expired longest ago. ok is false when the range is exhausted.
func (z *zone) offer(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if r, ok := z.resByMAC[mac]; ok {
		return r.IP, true
	}
	ip, ok := z.pick(mac, requested, now)
	if !ok {
		return ip, false
	}
	if e := z.entries[ip]; e != nil && e.mac == mac && e.state == bound && e.expires.After(now) {
		return ip, true // already its lease: an offer must not shorten it
	}
	hostname := ""
	if e := z.entries[ip]; e != nil && e.mac == mac {
		hostname = e.hostname
	}
	z.put(ip, &entry{mac: mac, hostname: hostname, expires: now.Add(offerHold), state: offered})
	return ip, true
}

func (z *zone) pick(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if prev, ok := z.byMAC[mac]; ok && z.free(prev, mac, now) {
		return prev, true
	}
	if requested.IsValid() && z.free(requested, mac, now) {
		return requested, true
	}
	for ip := z.pool.Start; ip.IsValid() && z.pool.inRange(ip); ip = ip.Next() {
		if z.entries[ip] == nil && z.allowed(ip, mac) {
			return ip, true
		}
	}
	var oldest netip.Addr
	var oldestExp time.Time
	for ip, e := range z.entries {
		if e.expires.After(now) || !z.allowed(ip, mac) {
			continue
		}
		if !oldest.IsValid() || e.expires.Before(oldestExp) || (e.expires.Equal(oldestExp) && ip.Less(oldest)) {
			oldest, oldestExp = ip, e.expires
		}
	}
	return oldest, oldest.IsValid()
}

// bind acknowledges mac's request for ip: false when ip is not the
// client's to have (the server then NAKs).
func (z *zone) bind(mac string, ip netip.Addr, hostname string, now time.Time) bool {
	if !z.free(ip, mac, now) {
		return false
	}
	r, reserved := z.resByMAC[mac]
	if reserved && r.Hostname != "" {
		hostname = r.Hostname
	}
	if e := z.entries[ip]; hostname == "" && e != nil && e.mac == mac {
		hostname = e.hostname
	}
	z.put(ip, &entry{mac: mac, hostname: hostname, expires: now.Add(z.pool.leaseTime()), state: bound, reserved: reserved})
	return true
}

// release ends mac's lease on ip now, keeping the record so that mac gets
// the address back next time if nobody took it meanwhile.
func (z *zone) release(mac string, ip netip.Addr, now time.Time) bool {
	e := z.entries[ip]
	if e == nil || e.mac != mac || e.state != bound || !e.expires.After(now) {
		return false
	}
	e.expires = now
	return true
}

// decline takes ip out of service for a while: the client found another
// host using it.
func (z *zone) decline(mac string, ip netip.Addr, now time.Time) bool {
	e := z.entries[ip]
	if e == nil || e.mac != mac || e.state == declined {
		return false
	}
	if _, ok := z.resByIP[ip]; ok {
		return false // a reservation is the client's whatever it finds; nothing else to give it
	}
	z.put(ip, &entry{expires: now.Add(declineHold), state: declined})
	return true
}

// forget drops what was offered to mac (it chose another server).
func (z *zone) forget(mac string) {
	if ip, ok := z.byMAC[mac]; ok && z.entries[ip].state == offered {
		z.del(ip)
	}
}

// leases lists z's bound leases, the expired ones too when all is set.
func (z *zone) leases(name string, now time.Time, all bool) []Lease {
	var out []Lease
	for ip, e := range z.entries {
		if e.state != bound || (!all && !e.expires.After(now)) {
			continue
		}
		out = append(out, Lease{Zone: name, IP: ip, MAC: e.mac, Hostname: e.hostname, Expires: e.expires, Reserved: e.reserved})
	}
	return out
}

func sortLeases(ls []Lease) {
	slices.SortFunc(ls, func(a, b Lease) int {
		return cmp.Or(cmp.Compare(a.Zone, b.Zone), a.IP.Compare(b.IP))
	})
}

// readLeaseFile reads every lease in path, expired ones included; a
// missing file holds none.
func readLeaseFile(path string) ([]Lease, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f leaseFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("lease file %s: %w", path, err)
	}
	for i, l := range f.Leases {
		if l.Zone == "" || !l.IP.Is4() || l.MAC == "" {
			return nil, fmt.Errorf("lease file %s: lease %d: zone, IPv4 address and MAC are required", path, i+1)
		}
	}
	return f.Leases, nil
}

// ReadLeases returns the unexpired leases in a server's lease file, by
// zone and address: what `holdfast show leases` prints. A missing file
// holds none.
func ReadLeases(path string) ([]Lease, error) {
	all, err := readLeaseFile(path)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []Lease
	for _, l := range all {
		if l.Expires.After(now) {
			out = append(out, l)
		}
	}
	sortLeases(out)
	return out, nil
}
