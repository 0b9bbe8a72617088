package pveemu

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Resource pools, as pve-manager's PVE/API2/Pool.pm keeps them in
// user.cfg. A VM's membership is the VM's pool (set when a create or
// clone names one), and counts only while the pool exists, as
// add_vm_to_pool adds a VM to an existing pool only.

// pool is one resource pool.
type pool struct {
	comment string
	storage map[string]bool
}

var poolRoutes = []route{
	{"GET", "/pools", paramsPoolList, (*Emulator).getPools},
	{"POST", "/pools", paramsPoolCreate, (*Emulator).postPool},
	{"PUT", "/pools", paramsPoolUpdate, (*Emulator).putPool},
	{"DELETE", "/pools", paramsPoolID, (*Emulator).deletePool},
	{"GET", "/pools/{poolid}", paramsPoolRead, (*Emulator).getPool},
	{"PUT", "/pools/{poolid}", paramsPoolUpdate, (*Emulator).putPool},
	{"DELETE", "/pools/{poolid}", paramsPoolID, (*Emulator).deletePool},
}

var (
	poolIDParam      = str("poolid").withFormat("pve-poolid")
	paramsPoolID     = []param{poolIDParam.req()}
	paramsPoolList   = []param{poolIDParam, str("type").oneOf("qemu", "lxc", "storage").needs("poolid")}
	paramsPoolRead   = []param{poolIDParam.req(), str("type").oneOf("qemu", "lxc", "storage")}
	paramsPoolCreate = []param{poolIDParam.req(), str("comment")}
	paramsPoolUpdate = []param{poolIDParam.req(), str("comment"), str("vms").withFormat("pve-vmid-list"),
		str("storage").withFormat("pve-storage-id-list"), boolean("delete"), boolean("allow-move")}
)

// AddPool adds a resource pool, as POST /pools does.
func (e *Emulator) AddPool(id, comment string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := checkFormat("pve-poolid", id); err != nil {
		return err
	}
	return e.createPool(id, comment)
}

func (e *Emulator) createPool(id, comment string) error {
	if _, ok := e.pools[id]; ok {
		return fmt.Errorf("pool '%s' already exists", id)
	}
	leaf := id
	if i := strings.LastIndex(id, "/"); i >= 0 {
		parent := id[:i]
		if _, ok := e.pools[parent]; !ok {
			return fmt.Errorf("parent '%s' of pool '%s' does not exist", parent, id)
		}
		leaf = id[i+1:]
	}
	if !startsWithLetter.MatchString(leaf) {
		return fmt.Errorf("pool name must start with a letter")
	}
	if e.pools == nil {
		e.pools = map[string]*pool{}
	}
	e.pools[id] = &pool{comment: comment, storage: map[string]bool{}}
	return nil
}

var startsWithLetter = regexp.MustCompile(`^[A-Za-z]`)

func (e *Emulator) poolIDs() []string { return slices.Sorted(maps.Keys(e.pools)) }

// poolOf is the pool a VM belongs to: its pool, if that exists.
func (e *Emulator) poolOf(v *vm) string {
	if _, ok := e.pools[v.pool]; ok {
		return v.pool
	}
	return ""
}

// checkPool is RPCEnvironment's check_pool_exist, which a create or clone
// naming a pool runs first.
func (e *Emulator) checkPool(id string) error {
	if _, ok := e.pools[id]; id != "" && !ok {
		return &apiError{status: 403, msg: fmt.Sprintf("Permission check failed (pool '%s' does not exist)\n", id)}
	}
	return nil
}

func (e *Emulator) getPools(c *call) (any, error) {
	id, ok := c.values["poolid"]
	if !ok {
		out := []map[string]any{}
		for _, id := range e.poolIDs() {
			entry := map[string]any{"poolid": id}
			if cm := e.pools[id].comment; cm != "" {
				entry["comment"] = cm
			}
			out = append(out, entry)
		}
		return out, nil
	}
	p, ok := e.pools[id]
	if !ok {
		return nil, fail("pool '%s' does not exist", id)
	}
	members := []map[string]any{}
	if typ := c.values["type"]; typ == "" || typ == "qemu" {
		for _, vmid := range e.vmids() {
			if v := e.vms[vmid]; v.pool == id {
				m := v.resource(c.now)
				m["pool"] = id
				members = append(members, m)
			}
		}
	}
	if typ := c.values["type"]; typ == "" || typ == "storage" {
		for _, s := range slices.Sorted(maps.Keys(p.storage)) {
			members = append(members, map[string]any{"id": "storage/" + e.firstNode() + "/" + s,
				"storage": s, "node": e.firstNode(), "type": "storage", "status": "available"})
		}
	}
	info := map[string]any{"poolid": id, "members": members}
	if p.comment != "" {
		info["comment"] = p.comment
	}
	return []map[string]any{info}, nil
}

// getPool is the deprecated GET /pools/{poolid}: the one pool of the
// listing.
func (e *Emulator) getPool(c *call) (any, error) {
	list, err := e.getPools(c)
	if err != nil {
		return nil, err
	}
	return list.([]map[string]any)[0], nil
}

func (e *Emulator) firstNode() string {
	if names := e.nodeNames(); len(names) > 0 {
		return names[0]
	}
	return ""
}

func (e *Emulator) postPool(c *call) (any, error) {
	if err := e.createPool(c.values["poolid"], c.values["comment"]); err != nil {
		return nil, fail("create pool failed: %v", err)
	}
	return nil, nil
}

// putPool sets the comment and adds (or, with delete, removes) VMs and
// storages.
func (e *Emulator) putPool(c *call) (any, error) {
	id := c.values["poolid"]
	wrap := func(err error) error { return fail("update pools failed: %v", err) }
	p, ok := e.pools[id]
	if !ok {
		return nil, wrap(fmt.Errorf("pool '%s' does not exist", id))
	}
	if cm, ok := c.values["comment"]; ok {
		p.comment = cm
	}
	del := c.values["delete"] == "1"
	for _, s := range splitList(c.values["vms"]) {
		vmid, _ := strconv.Atoi(s)
		v := e.vms[vmid]
		member := v != nil && v.pool == id
		switch {
		case del && !member:
			return nil, wrap(fmt.Errorf("VM %d is not a pool member", vmid))
		case del:
			v.pool = ""
		case member:
			return nil, wrap(fmt.Errorf("VM %d is already a pool member", vmid))
		case v == nil:
			// PVE records a VMID that has no guest as well; the emulator
			// keeps membership on the guest, so there is nothing to keep.
		default:
			if other := e.poolOf(v); other != "" && c.values["allow-move"] != "1" {
				return nil, wrap(fmt.Errorf("VM %d belongs already to pool '%s' and 'allow-move' is not set", vmid, other))
			}
			v.pool = id
		}
	}
	for _, s := range splitList(c.values["storage"]) {
		switch {
		case del && !p.storage[s]:
			return nil, wrap(pveMessage(fmt.Sprintf("Storage '%s' is not a pool member", s)))
		case del:
			delete(p.storage, s)
		case p.storage[s]:
			return nil, wrap(pveMessage(fmt.Sprintf("Storage '%s' is already a pool member", s)))
		default:
			p.storage[s] = true
		}
	}
	return nil, nil
}

// deletePool deletes an empty pool.
func (e *Emulator) deletePool(c *call) (any, error) {
	id := c.values["poolid"]
	wrap := func(err error) error { return fail("delete pool failed: %v", err) }
	p, ok := e.pools[id]
	if !ok {
		return nil, wrap(fmt.Errorf("pool '%s' does not exist", id))
	}
	for _, sub := range e.poolIDs() {
		if strings.HasPrefix(sub, id+"/") {
			return nil, wrap(fmt.Errorf("pool '%s' is not empty (contains pool '%s')", id, sub))
		}
	}
	for _, vmid := range e.vmids() {
		if e.vms[vmid].pool == id {
			return nil, wrap(fmt.Errorf("pool '%s' is not empty (contains VM %d)", id, vmid))
		}
	}
	if len(p.storage) > 0 {
		return nil, wrap(fmt.Errorf("pool '%s' is not empty (contains storage '%s')", id, slices.Sorted(maps.Keys(p.storage))[0]))
	}
	delete(e.pools, id)
	return nil, nil
}
