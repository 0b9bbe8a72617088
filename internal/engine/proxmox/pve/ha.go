package pve

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// HA (pve-ha-manager, PVE 9): resources, and the rules that replaced HA
// groups. Digests are those of resources.cfg and rules.cfg: an update
// carrying one fails (IsDigestMismatch) if any resource, or rule, changed
// since it was read.

// HAResource is a guest under HA, as "vm:100".
type HAResource struct {
	SID string
	// State is the requested state: started (the default), stopped,
	// disabled or ignored ("enabled" is an alias of started).
	State   string
	Comment string
	// MaxRestart and MaxRelocate bound the restarts on a node and the
	// moves to another after failed starts; PVE's default is 1 for both,
	// and 0 is a value, so callers set them.
	MaxRestart, MaxRelocate int
	Digest                  string
}

// HAResources lists the HA resources, with PVE's defaults for unset
// values.
func (c *Client) HAResources(ctx context.Context) ([]HAResource, error) {
	var w []struct {
		SID         string  `json:"sid"`
		State       string  `json:"state"`
		Comment     string  `json:"comment"`
		MaxRestart  *number `json:"max_restart"`
		MaxRelocate *number `json:"max_relocate"`
		Digest      string  `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, "/cluster/ha/resources", nil, &w); err != nil {
		return nil, err
	}
	orDefault := func(n *number) int {
		if n == nil {
			return 1
		}
		return int(*n)
	}
	out := make([]HAResource, len(w))
	for i, r := range w {
		state := r.State
		if state == "" {
			state = "started"
		}
		out[i] = HAResource{SID: r.SID, State: state, Comment: r.Comment,
			MaxRestart: orDefault(r.MaxRestart), MaxRelocate: orDefault(r.MaxRelocate), Digest: r.Digest}
	}
	return out, nil
}

func (r HAResource) params() url.Values {
	p := url.Values{"max_restart": {strconv.Itoa(r.MaxRestart)}, "max_relocate": {strconv.Itoa(r.MaxRelocate)}}
	setNonEmpty(p, "state", r.State)
	return p
}

// CreateHAResource puts a guest under HA. PVE refuses a guest that does
// not exist and one that is already a resource (IsExists).
func (c *Client) CreateHAResource(ctx context.Context, r HAResource) error {
	p := r.params()
	p.Set("sid", r.SID)
	setNonEmpty(p, "comment", r.Comment)
	return c.do(ctx, http.MethodPost, "/cluster/ha/resources", p, nil)
}

// UpdateHAResource sets a resource's state, limits and comment (an empty
// one removes it). With r.Digest set, PVE refuses the update if any
// resource changed since.
func (c *Client) UpdateHAResource(ctx context.Context, r HAResource) error {
	return c.do(ctx, http.MethodPut, "/cluster/ha/resources/"+Escape(r.SID), forUpdate(r.params(), r.Comment, r.Digest), nil)
}

// forUpdate completes an update's parameters: the digest it is guarded by,
// and the comment, which an update sets or (when empty) removes.
func forUpdate(p url.Values, comment, digest string) url.Values {
	setNonEmpty(p, "digest", digest)
	if comment != "" {
		p.Set("comment", comment)
	} else {
		p.Set("delete", "comment")
	}
	return p
}

// DeleteHAResource takes a guest out of HA and out of the rules naming it
// (deleting the rules left without resources).
func (c *Client) DeleteHAResource(ctx context.Context, sid string) error {
	return c.do(ctx, http.MethodDelete, "/cluster/ha/resources/"+Escape(sid), nil, nil)
}

// HARule is an HA rule: a node affinity (Resources prefer, or with Strict
// are confined to, Nodes) or a resource affinity (Resources kept together
// or apart, by Affinity).
type HARule struct {
	Rule      string
	Type      string // node-affinity or resource-affinity
	Resources []string
	// Nodes are node names, each optionally with a priority, "pve1:2";
	// higher is preferred.
	Nodes    []string
	Strict   bool
	Affinity string // positive (together) or negative (apart)
	Comment  string
	Digest   string
}

// HARules lists the HA rules in their order.
func (c *Client) HARules(ctx context.Context) ([]HARule, error) {
	var w []struct {
		Rule      string `json:"rule"`
		Type      string `json:"type"`
		Resources string `json:"resources"`
		Nodes     string `json:"nodes"`
		Strict    number `json:"strict"`
		Affinity  string `json:"affinity"`
		Comment   string `json:"comment"`
		Digest    string `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, "/cluster/ha/rules", nil, &w); err != nil {
		return nil, err
	}
	out := make([]HARule, len(w))
	for i, r := range w {
		out[i] = HARule{Rule: r.Rule, Type: r.Type, Resources: splitList(r.Resources), Nodes: splitList(r.Nodes),
			Strict: r.Strict != 0, Affinity: r.Affinity, Comment: r.Comment, Digest: r.Digest}
	}
	return out, nil
}

func (r HARule) params() url.Values {
	p := url.Values{"type": {r.Type}, "resources": {strings.Join(r.Resources, ",")}}
	switch r.Type {
	case "node-affinity":
		p.Set("nodes", strings.Join(r.Nodes, ","))
		p.Set("strict", boolParam(r.Strict))
	case "resource-affinity":
		p.Set("affinity", r.Affinity)
	}
	return p
}

// CreateHARule adds a rule. PVE refuses resources that are not HA
// resources, nodes that do not exist, and rules that contradict others.
func (c *Client) CreateHARule(ctx context.Context, r HARule) error {
	p := r.params()
	p.Set("rule", r.Rule)
	setNonEmpty(p, "comment", r.Comment)
	return c.do(ctx, http.MethodPost, "/cluster/ha/rules", p, nil)
}

// UpdateHARule sets a rule's resources, nodes, strictness or affinity and
// comment (an empty one removes it); its type cannot change. With
// r.Digest set, PVE refuses the update if any rule changed since.
func (c *Client) UpdateHARule(ctx context.Context, r HARule) error {
	return c.do(ctx, http.MethodPut, "/cluster/ha/rules/"+Escape(r.Rule), forUpdate(r.params(), r.Comment, r.Digest), nil)
}

// DeleteHARule removes a rule. Like PVE, it succeeds when there is none.
func (c *Client) DeleteHARule(ctx context.Context, rule string) error {
	return c.do(ctx, http.MethodDelete, "/cluster/ha/rules/"+Escape(rule), nil, nil)
}
