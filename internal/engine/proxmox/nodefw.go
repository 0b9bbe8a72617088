package proxmox

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

// A node's own SSH and API. Turning the datacenter firewall on (which the
// guests' firewalls need) turns on every node's host firewall too, with
// the datacenter's input policy, DROP by default: only PVE's management
// network still reaches the node's SSH (22) and API (8006). An operator
// who reaches them from anywhere else, and Holdfast itself when it talks
// to the API from outside that network, would be cut off. So before
// turning it on Holdfast puts two rules of its own, marked with the
// cloud's comment, at the top of each node's rules: IN ACCEPT tcp 22 and
// tcp 8006. The operator's own node rules stay as they are, below them.

// nodePort is a port Holdfast keeps open on each node, and what for.
type nodePort struct {
	port int
	what string
}

var nodePorts = []nodePort{{22, "SSH"}, {8006, "the API"}}

func (p nodePort) label() string { return fmt.Sprintf("keeping %s (%d)", p.what, p.port) }

// nodeRules are the rules Holdfast wants at the top of every node's rules,
// in order.
func (e *Engine) nodeRules() []pve.Rule {
	out := make([]pve.Rule, len(nodePorts))
	for i, p := range nodePorts {
		out[i] = pve.Rule{Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: strconv.Itoa(p.port), Enable: true,
			Comment: e.owner() + " " + p.label()}
	}
	return out
}

// syncNodeRules makes the top of node's rules Holdfast's rules, and
// removes Holdfast's rules anywhere else in the list; it changes no rule
// that is not Holdfast's. One change at a time against the list's
// current digest, as syncRules does, so a concurrent edit is read first.
func (e *Engine) syncNodeRules(ctx context.Context, api *pve.Client, node string) error {
	scope := pve.NodeScope(node)
	want := e.nodeRules()
	for range 64 {
		have, digest, err := api.Rules(ctx, scope, "")
		if err != nil {
			return err
		}
		i := 0
		for i < len(have) && i < len(want) && sameRule(have[i], want[i]) {
			i++
		}
		switch {
		case i < len(want) && i < len(have) && e.ownedComment(have[i].Comment):
			r := want[i]
			r.Pos = i
			err = api.UpdateRule(ctx, scope, "", r, digest)
		case i < len(want):
			r := want[i]
			r.Pos = i
			err = api.AddRule(ctx, scope, "", r, digest)
		default:
			stale := -1
			for j := len(want); j < len(have); j++ {
				if e.ownedComment(have[j].Comment) {
					stale = j
					break
				}
			}
			if stale < 0 {
				return nil
			}
			err = api.DeleteRule(ctx, scope, "", stale, digest)
		}
		if err != nil && !pve.IsDigestMismatch(err) {
			return err
		}
	}
	return fmt.Errorf("the node's rules keep changing under Holdfast: %w", errConflict)
}

// nodeRulesDrift names what differs between node's rules and Holdfast's
// wanted ones at their top.
func (e *Engine) nodeRulesDrift(node string, have []pve.Rule) []string {
	var drift []string
	want := e.nodeRules()
	named := map[int]bool{} // rules of Holdfast's that a message names already
	for i, w := range want {
		at := slices.IndexFunc(have, func(h pve.Rule) bool { return sameRule(h, w) })
		switch {
		case at < 0:
			drift = append(drift, fmt.Sprintf("node %s: rule %s is missing", node, nodePorts[i].label()))
		case at != i:
			named[at] = true
			drift = append(drift, fmt.Sprintf("node %s: rule %s is at position %d, want %d", node, nodePorts[i].label(), at, i))
		}
	}
	for j, h := range have {
		inPlace := j < len(want) && sameRule(h, want[j])
		if e.ownedComment(h.Comment) && !inPlace && !named[j] {
			drift = append(drift, fmt.Sprintf("node %s: rule %d (%s) is Holdfast's but not wanted", node, j, ruleText(h)))
		}
	}
	return drift
}

// deleteNodeRules removes Holdfast's rules from node's rules, and no
// other.
func (e *Engine) deleteNodeRules(ctx context.Context, api *pve.Client, node string) error {
	scope := pve.NodeScope(node)
	for range 64 {
		have, digest, err := api.Rules(ctx, scope, "")
		if err != nil {
			return err
		}
		pos := -1
		for j, h := range have {
			if e.ownedComment(h.Comment) {
				pos = j
				break
			}
		}
		if pos < 0 {
			return nil
		}
		if err := api.DeleteRule(ctx, scope, "", pos, digest); err != nil && !pve.IsDigestMismatch(err) && !pve.IsNotFound(err) {
			return err
		}
	}
	return fmt.Errorf("the node's rules keep changing under Holdfast: %w", errConflict)
}
