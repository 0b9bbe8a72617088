package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tenant"
)

// maxSpecName bounds tenant--instance: the local engine's control socket
// path, <state>/<cloud>/local/i/<name>/control.sock, must fit the 107 bytes
// of a Unix socket address under a state directory of usual length.
const maxSpecName = 40

// The names a tenant's request puts into the cloud's spec are checked
// here, when the request arrives, with the spec's own rule: a network is the
// zone <tenant>--<network>, an instance is <tenant>--<instance>. The wire
// types' patterns (api.NamePattern) bound each name alone; these checks add
// what only the tenant's name decides — the length of the whole — and that
// the operator's spec does not already use it. What the API accepts, the
// realizer can write (FuzzAcceptedNamesAreSpecValid).

// networkName checks the zone a tenant's network named name would be.
func (s *Server) networkName(tenantName, name string) error {
	return specName(s, "zone", tenant.ZoneName(tenantName, name), s.spec.Zones)
}

// instanceName checks the spec name of a tenant's instance named name.
func (s *Server) instanceName(tenantName, name string) error {
	// The spec name names the instance's namespace and its control socket,
	// whose path the kernel bounds.
	if len(tenant.SpecName(tenantName, name)) > maxSpecName {
		return badField("name", fmt.Sprintf("is too long for this tenant: tenant and instance names together may have at most %d characters", maxSpecName-2))
	}
	return specName(s, "instance", tenant.SpecName(tenantName, name), s.spec.Instances)
}

// specName refuses a spec name the spec would refuse, or that the
// operator's spec already gives one of its own objects.
func specName[T any](s *Server, kind, name string, operators map[string]T) error {
	if err := spec.CheckName(name); err != nil {
		return badField("name", fmt.Sprintf("gives the %s %q in the cloud's spec, which %v", kind, name, err))
	}
	if _, taken := operators[name]; taken {
		p := problem(http.StatusConflict, "exists", fmt.Sprintf("the cloud's spec already has a %s %q", kind, name))
		p.Errors = []api.FieldError{{Field: "name", Message: fmt.Sprintf("gives the %s %q in the cloud's spec, which the operator's spec already names", kind, name)}}
		return p
	}
	return nil
}

// Networks.

func networkPath(t, n string) string  { return "/v1/tenants/" + t + "/networks/" + n }
func instancePath(t, n string) string { return "/v1/tenants/" + t + "/instances/" + n }

func (s *Server) listNetworks(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var items []api.Network
	err = q.do(s, func(tx *tenant.Tx) error {
		ns, err := tx.Networks(q.tenant.ID, after, limit+1)
		for _, n := range ns {
			items = append(items, n.Network)
		}
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(pageOf(items, limit, func(n api.Network) string { return n.Name }))
}

func (s *Server) getNetwork(q *request) error {
	name := q.r.PathValue("network")
	var n tenant.NetworkRecord
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		n, err = tx.Network(q.tenant.ID, name)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("network", name)
	}
	if err != nil {
		return err
	}
	return q.versioned(http.StatusOK, n.Network, n.Version)
}

func (s *Server) createNetwork(q *request) error {
	var in api.NetworkCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	if err := s.networkName(q.tenant.Name, in.Name); err != nil {
		return err
	}
	if s.pool.Slots() == 0 {
		return problem(http.StatusConflict, "no-pool", "the operator has not published a pool of tenant networks (tenancy in the spec)")
	}
	var op api.Operation
	err := q.do(s, func(tx *tenant.Tx) error {
		n, err := tx.CreateNetwork(*q.tenant, in.Name, s.pool.Pool)
		if err != nil {
			return err
		}
		op, err = tx.CreateOperation("network.create", q.tenant.Name, networkPath(q.tenant.Name, n.Name), n.Zone)
		return err
	})
	if err != nil {
		return err
	}
	s.emit(api.Event{Type: "network.creating", Tenant: q.tenant.Name, Object: op.Target})
	s.real.kick()
	return q.accepted(op)
}

func (s *Server) deleteNetwork(q *request) error {
	name := q.r.PathValue("network")
	var op api.Operation
	err := q.do(s, func(tx *tenant.Tx) error {
		n, err := tx.MarkNetworkDeleting(q.tenant.ID, name)
		if err != nil {
			return err
		}
		op, err = tx.CreateOperation("network.delete", q.tenant.Name, networkPath(q.tenant.Name, name), n.Zone)
		return err
	})
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		return notFound("network", name)
	case errors.Is(err, tenant.ErrInUse):
		return problem(http.StatusConflict, "in-use", "instances are still attached to the network; delete them first")
	case err != nil:
		return err
	}
	s.emit(api.Event{Type: "network.deleting", Tenant: q.tenant.Name, Object: op.Target})
	s.real.kick()
	return q.accepted(op)
}

// Instances.

func (s *Server) listInstances(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var items []api.Instance
	err = q.read(s, func(tx *tenant.Tx) error {
		is, err := tx.Instances(q.tenant.ID, after, limit+1)
		items = make([]api.Instance, 0, len(is))
		for _, i := range is {
			items = append(items, i.Instance)
		}
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(pageOf(items, limit, func(i api.Instance) string { return i.Name }))
}

func (s *Server) getInstance(q *request) error {
	name := q.r.PathValue("instance")
	var in tenant.InstanceRecord
	err := q.read(s, func(tx *tenant.Tx) error {
		var err error
		in, err = tx.Instance(q.tenant.ID, name)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("instance", name)
	}
	if err != nil {
		return err
	}
	return q.versioned(http.StatusOK, in.Instance, in.Version)
}

// refs resolves the names an instance refers to, each failure naming its
// field: the client gets all of them at once.
type refs struct {
	flavor   api.Flavor
	template api.Template
	keys     []tenant.Key
}

func resolve(tx *tenant.Tx, t *tenant.TenantRecord, flavor, template string, keys []string) (refs, error) {
	var r refs
	var errs []api.FieldError
	var err error
	if flavor != "" {
		if r.flavor, err = tx.Flavor(flavor); errors.Is(err, tenant.ErrNotFound) {
			errs = append(errs, api.FieldError{Field: "flavor", Message: "no such flavor"})
		} else if err != nil {
			return r, err
		}
	}
	if template != "" {
		if r.template, err = tx.Template(template); errors.Is(err, tenant.ErrNotFound) {
			errs = append(errs, api.FieldError{Field: "template", Message: "no such template"})
		} else if err != nil {
			return r, err
		}
	}
	seen := map[string]bool{}
	for i, k := range keys {
		if seen[k] {
			errs = append(errs, api.FieldError{Field: fmt.Sprintf("ssh_keys[%d]", i), Message: "listed twice"})
			continue
		}
		seen[k] = true
		key, err := tx.SSHKey(t.ID, k)
		if errors.Is(err, tenant.ErrNotFound) {
			errs = append(errs, api.FieldError{Field: fmt.Sprintf("ssh_keys[%d]", i), Message: "no such SSH key in the tenant"})
			continue
		}
		if err != nil {
			return r, err
		}
		r.keys = append(r.keys, tenant.Key{Name: key.Name, Key: key.PublicKey})
	}
	if len(errs) > 0 {
		p := problem(http.StatusUnprocessableEntity, "invalid", "the request refers to objects that do not exist")
		p.Errors = errs
		return r, p
	}
	return r, nil
}

func (s *Server) createInstance(q *request) error {
	var in api.InstanceCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	if err := s.instanceName(q.tenant.Name, in.Name); err != nil {
		return err
	}
	if in.Project == "" {
		in.Project = "default"
	}
	var op api.Operation
	err := q.do(s, func(tx *tenant.Tx) error {
		r, err := resolve(tx, q.tenant, in.Flavor, in.Template, in.SSHKeys)
		if err != nil {
			return err
		}
		var errs []api.FieldError
		if _, err := tx.Project(q.tenant.ID, in.Project); errors.Is(err, tenant.ErrNotFound) {
			errs = append(errs, api.FieldError{Field: "project", Message: "no such project"})
		}
		n, err := tx.Network(q.tenant.ID, in.Network)
		switch {
		case errors.Is(err, tenant.ErrNotFound):
			errs = append(errs, api.FieldError{Field: "network", Message: "no such network"})
		case err != nil:
			return err
		case n.Status == "deleting":
			errs = append(errs, api.FieldError{Field: "network", Message: "the network is being deleted"})
		}
		if len(errs) > 0 {
			p := problem(http.StatusUnprocessableEntity, "invalid", "the request refers to objects that do not exist")
			p.Errors = errs
			return p
		}
		rec := tenant.InstanceRecord{Image: r.template.Image, Keys: r.keys}
		rec.Name, rec.Project, rec.Network, rec.Power = in.Name, in.Project, in.Network, "running"
		rec.Flavor, rec.CPUs, rec.MemoryMiB, rec.DiskGiB = r.flavor.Name, r.flavor.CPUs, r.flavor.MemoryMiB, r.flavor.DiskGiB
		rec.Template = r.template.Name
		if _, err := tx.CreateInstance(*q.tenant, rec); err != nil {
			return err
		}
		op, err = tx.CreateOperation("instance.create", q.tenant.Name, instancePath(q.tenant.Name, in.Name), tenant.SpecName(q.tenant.Name, in.Name))
		return err
	})
	if err != nil {
		return err
	}
	s.emit(api.Event{Type: "instance.creating", Tenant: q.tenant.Name, Object: op.Target})
	s.real.kick()
	return q.accepted(op)
}

func (s *Server) deleteInstance(q *request) error {
	name := q.r.PathValue("instance")
	v, err := q.ifMatch()
	if err != nil {
		return err
	}
	var op api.Operation
	err = q.do(s, func(tx *tenant.Tx) error {
		in, err := tx.UpdateInstance(*q.tenant, name, v, func(r *tenant.InstanceRecord) error {
			r.Status = api.StatusDeleting
			return nil
		})
		if err != nil {
			return err
		}
		op, err = tx.CreateOperation("instance.delete", q.tenant.Name, instancePath(q.tenant.Name, name), in.Spec)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("instance", name)
	}
	if err != nil {
		return err
	}
	s.emit(api.Event{Type: "instance.deleting", Tenant: q.tenant.Name, Object: op.Target})
	s.real.kick()
	return q.accepted(op)
}

// instanceAction changes what is desired of an instance; the realizer
// makes it so.
func (s *Server) instanceAction(action string) func(*request) error {
	return func(q *request) error {
		name := q.r.PathValue("instance")
		v, err := q.ifMatch()
		if err != nil {
			return err
		}
		var resize api.InstanceResize
		var rebuild api.InstanceRebuild
		switch action {
		case "resize":
			if err := q.decode(&resize); err != nil {
				return err
			}
		case "rebuild":
			if len(q.body) > 0 {
				if err := q.decode(&rebuild); err != nil {
					return err
				}
			}
		}
		var op api.Operation
		err = q.do(s, func(tx *tenant.Tx) error {
			r, err := resolve(tx, q.tenant, resize.Flavor, rebuild.Template, nil)
			if err != nil {
				return err
			}
			in, err := tx.UpdateInstance(*q.tenant, name, v, func(in *tenant.InstanceRecord) error {
				if in.Status == api.StatusDeleting {
					return problem(http.StatusConflict, "deleting", "the instance is being deleted")
				}
				switch action {
				case "start":
					in.Power = "running"
				case "stop":
					in.Power = "stopped"
				case "reboot":
					if in.Power != "running" {
						return problem(http.StatusConflict, "stopped", "a stopped instance cannot be rebooted; start it")
					}
					in.Reboot++
				case "resize":
					in.Flavor, in.CPUs, in.MemoryMiB, in.DiskGiB = r.flavor.Name, r.flavor.CPUs, r.flavor.MemoryMiB, max(in.DiskGiB, r.flavor.DiskGiB)
				case "rebuild":
					if rebuild.Template != "" {
						in.Template, in.Image = r.template.Name, r.template.Image
					}
					in.Rebuild++
				}
				in.Error = ""
				return nil
			})
			if err != nil {
				return err
			}
			op, err = tx.CreateOperation("instance."+action, q.tenant.Name, instancePath(q.tenant.Name, name), in.Spec)
			return err
		})
		if errors.Is(err, tenant.ErrNotFound) {
			return notFound("instance", name)
		}
		if err != nil {
			return err
		}
		s.emit(api.Event{Type: "instance." + action, Tenant: q.tenant.Name, Object: op.Target})
		s.real.kick()
		return q.accepted(op)
	}
}
