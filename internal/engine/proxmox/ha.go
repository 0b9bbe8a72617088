package proxmox

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

// Instances marked ha become HA resources (vm:<vmid>), started or stopped
// with the instance. An instance the spec pins to a node gets a
// node-affinity rule keeping it there while the node is up; HA members of
// one spread group get a negative resource-affinity rule, so that a
// failover never puts two of them on one node.

func sid(vmid int) string { return "vm:" + strconv.Itoa(vmid) }

// haNodeRule and haSpreadRule name the cloud's HA rules.
func haNodeRule(vmid int) string { return "holdfast-" + strconv.Itoa(vmid) }
func (e *Engine) haSpreadRule(spread string) string {
	return "holdfast-" + e.cloud + "-" + spread
}

func (e *Engine) haState(in *compile.Instance) string {
	if in.Power == compile.PowerStopped {
		return "stopped"
	}
	return "started"
}

// ensureHA makes the instance's HA resource and rules match whether it is
// an HA instance.
func (e *Engine) ensureHA(ctx context.Context, s *site, in *compile.Instance) error {
	if !in.HA {
		return e.removeHA(ctx, s, in.VMID)
	}
	res, err := s.api.HAResources(ctx)
	if err != nil {
		return err
	}
	// PVE's defaults: one restart on the node, then one relocation.
	want := pve.HAResource{SID: sid(in.VMID), State: e.haState(in), Comment: e.owner() + " " + in.Name, MaxRestart: 1, MaxRelocate: 1}
	switch i := slices.IndexFunc(res, func(r pve.HAResource) bool { return r.SID == want.SID }); {
	case i < 0:
		if err := s.api.CreateHAResource(ctx, want); err != nil && !pve.IsExists(err) {
			return fmt.Errorf("HA resource %s: %w", want.SID, err)
		}
	case res[i].State != want.State || res[i].Comment != want.Comment || res[i].MaxRestart != want.MaxRestart || res[i].MaxRelocate != want.MaxRelocate:
		want.Digest = res[i].Digest
		if err := s.api.UpdateHAResource(ctx, want); err != nil {
			return fmt.Errorf("HA resource %s: %w", want.SID, err)
		}
	}
	rules, err := s.api.HARules(ctx)
	if err != nil {
		return err
	}
	if in.Pinned {
		want := pve.HARule{Rule: haNodeRule(in.VMID), Type: "node-affinity", Resources: []string{sid(in.VMID)}, Nodes: []string{in.Node}, Comment: e.owner() + " " + in.Name}
		if err := ensureRule(ctx, s, rules, want); err != nil {
			return err
		}
	} else if slices.ContainsFunc(rules, func(r pve.HARule) bool { return r.Rule == haNodeRule(in.VMID) }) {
		if err := s.api.DeleteHARule(ctx, haNodeRule(in.VMID)); err != nil && !pve.IsNotFound(err) {
			return err
		}
	}
	if in.Spread != "" {
		var members []string
		for _, other := range e.desired.Instances {
			if other.Spread == in.Spread && other.HA {
				members = append(members, sid(other.VMID))
			}
		}
		if len(members) > 1 {
			if rules, err = s.api.HARules(ctx); err != nil {
				return err
			}
			present := slices.DeleteFunc(slices.Clone(members), func(m string) bool {
				return m != sid(in.VMID) && !slices.ContainsFunc(res, func(r pve.HAResource) bool { return r.SID == m })
			})
			if len(present) > 1 {
				slices.Sort(present)
				want := pve.HARule{Rule: e.haSpreadRule(in.Spread), Type: "resource-affinity", Resources: present, Affinity: "negative", Comment: e.owner() + " spread " + in.Spread}
				if err := ensureRule(ctx, s, rules, want); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func ensureRule(ctx context.Context, s *site, rules []pve.HARule, want pve.HARule) error {
	i := slices.IndexFunc(rules, func(r pve.HARule) bool { return r.Rule == want.Rule })
	if i < 0 {
		err := s.api.CreateHARule(ctx, want)
		if pve.IsExists(err) {
			return fmt.Errorf("HA rule %s: %w", want.Rule, errConflict)
		}
		return err
	}
	have := rules[i]
	if have.Type == want.Type && slices.Equal(sorted(have.Resources), sorted(want.Resources)) &&
		slices.Equal(have.Nodes, want.Nodes) && have.Affinity == want.Affinity && have.Comment == want.Comment {
		return nil
	}
	want.Digest = have.Digest
	return s.api.UpdateHARule(ctx, want)
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// setHAState sets an HA instance's requested state.
func (e *Engine) setHAState(ctx context.Context, s *site, in *compile.Instance, state string) error {
	res, err := s.api.HAResources(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(res, func(r pve.HAResource) bool { return r.SID == sid(in.VMID) })
	if i < 0 || res[i].State == state {
		return nil
	}
	r := res[i]
	r.State = state
	return s.api.UpdateHAResource(ctx, r)
}

// removeHA removes the cloud's HA entries for a guest: its rules (PVE
// refuses to remove a resource a rule names) and its resource. A guest
// with no HA resource of the cloud's costs one read (and no HA rules
// endpoint, which clusters before PVE 9 do not have).
func (e *Engine) removeHA(ctx context.Context, s *site, vmid int) error {
	res, err := s.api.HAResources(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(res, func(r pve.HAResource) bool { return r.SID == sid(vmid) && e.ownedComment(r.Comment) }) {
		return nil
	}
	rules, err := s.api.HARules(ctx)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if !e.ownedComment(r.Comment) || !slices.Contains(r.Resources, sid(vmid)) {
			continue
		}
		rest := slices.DeleteFunc(slices.Clone(r.Resources), func(x string) bool { return x == sid(vmid) })
		if r.Type == "resource-affinity" && len(rest) > 1 {
			r.Resources = rest
			if err := s.api.UpdateHARule(ctx, r); err != nil {
				return err
			}
			continue
		}
		if err := s.api.DeleteHARule(ctx, r.Rule); err != nil && !pve.IsNotFound(err) {
			return err
		}
	}
	if err := s.api.DeleteHAResource(ctx, sid(vmid)); err != nil && !pve.IsNotFound(err) {
		return err
	}
	return nil
}

// haDrift checks an instance's HA resource against resources as listed.
// haManaged reports whether guest vmid is an HA resource.
func haManaged(res []pve.HAResource, vmid int) bool {
	return slices.ContainsFunc(res, func(r pve.HAResource) bool { return r.SID == sid(vmid) })
}

func (e *Engine) haDrift(in *compile.Instance, res []pve.HAResource) []string {
	i := slices.IndexFunc(res, func(r pve.HAResource) bool { return r.SID == sid(in.VMID) })
	switch {
	case in.HA && i < 0:
		return []string{"HA resource " + sid(in.VMID) + " is missing"}
	case in.HA && res[i].State != e.haState(in):
		return []string{fmt.Sprintf("HA resource %s is %s, want %s", sid(in.VMID), res[i].State, e.haState(in))}
	case !in.HA && i >= 0 && e.ownedComment(res[i].Comment):
		return []string{"HA resource " + sid(in.VMID) + " should not exist"}
	}
	return nil
}
