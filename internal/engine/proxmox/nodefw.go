package proxmox

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

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

// holdfastComment reports whether a rule's comment marks it as any
// Holdfast cloud's, so that two clouds on one cluster share the top of a
// node's rules instead of pushing each other's rules down.
func holdfastComment(c string) bool { return strings.HasPrefix(c, "holdfast ") }

// nodeRulesState reads a node's rule list against Holdfast's wanted
// rules: lead is the number of rules at the top that are Holdfast's (of
// any cloud), missing the wanted rules not among them, and stale the
// position of a rule of this cloud that must go (below the lead, not
// wanted, or a second copy), -1 for none.
func (e *Engine) nodeRulesState(have []pve.Rule) (lead int, missing []int, stale int) {
	want := e.nodeRules()
	for lead < len(have) && holdfastComment(have[lead].Comment) {
		lead++
	}
	found := make([]bool, len(want))
	stale = -1
	for j, h := range have {
		if !e.ownedComment(h.Comment) {
			continue
		}
		i := slices.IndexFunc(want, func(w pve.Rule) bool { return sameRule(h, w) })
		if j >= lead || i < 0 || found[i] {
			if stale < 0 {
				stale = j
			}
			continue
		}
		found[i] = true
	}
	for i := range want {
		if !found[i] {
			missing = append(missing, i)
		}
	}
	return lead, missing, stale
}

// syncNodeRules puts Holdfast's rules at the top of node's rules and
// removes this cloud's rules anywhere else; it changes no rule that is
// not this cloud's. One change at a time against the list's current
// digest, as syncRules does, so a concurrent edit is read first.
func (e *Engine) syncNodeRules(ctx context.Context, api *pve.Client, node string) error {
	scope := pve.NodeScope(node)
	want := e.nodeRules()
	for range 64 {
		have, digest, err := api.Rules(ctx, scope, "")
		if err != nil {
			return err
		}
		_, missing, stale := e.nodeRulesState(have)
		switch {
		case stale >= 0:
			err = api.DeleteRule(ctx, scope, "", stale, digest)
		case len(missing) > 0:
			// PVE adds at the top: the last missing first keeps the
			// wanted order.
			err = api.AddRule(ctx, scope, "", want[missing[len(missing)-1]], digest)
		default:
			return nil
		}
		if err != nil && !pve.IsDigestMismatch(err) && !pve.IsNotFound(err) {
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
	lead, missing, stale := e.nodeRulesState(have)
	for _, i := range missing {
		at := slices.IndexFunc(have, func(h pve.Rule) bool { return sameRule(h, want[i]) })
		if at < 0 {
			drift = append(drift, fmt.Sprintf("node %s: rule %s is missing", node, nodePorts[i].label()))
			continue
		}
		drift = append(drift, fmt.Sprintf("node %s: rule %s is at position %d, below rule %d (%s), which is not Holdfast's",
			node, nodePorts[i].label(), at, lead, ruleText(have[lead])))
	}
	for j, h := range have {
		if e.ownedComment(h.Comment) && !slices.ContainsFunc(want, func(w pve.Rule) bool { return sameRule(h, w) }) {
			drift = append(drift, fmt.Sprintf("node %s: rule %d (%s) is Holdfast's but not wanted", node, j, ruleText(h)))
		}
	}
	if len(drift) == 0 && stale >= 0 {
		drift = append(drift, fmt.Sprintf("node %s: rule %d (%s) repeats one of Holdfast's", node, stale, ruleText(have[stale])))
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
