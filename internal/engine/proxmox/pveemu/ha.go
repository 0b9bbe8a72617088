package pveemu

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// HA, as pve-ha-manager (PVE 9) serves it: resources (PVE::API2::HA::
// Resources) and the rules that replaced HA groups (PVE::API2::HA::Rules),
// in /etc/pve/ha/resources.cfg and rules.cfg. Changes take effect at once;
// there is no CRM, so resources have no service state. The parameter
// tables are taken from PVE's published API schema (see schema.go); the
// checks and error texts follow pve-ha-manager's Perl source.

// haState is the emulated cluster's HA configuration.
type haState struct {
	resources scFile // by SID, vm:100
	rules     scFile
	order     map[string]int // the rules' order
	lastOrder int
}

// haRoutes are the HA configuration endpoints.
var haRoutes = []route{
	{"GET", "/cluster/ha/resources", paramsHAResourceList, haHandler((*Emulator).getHAResources)},
	{"POST", "/cluster/ha/resources", paramsHAResourceCreate, haHandler((*Emulator).postHAResource)},
	{"GET", "/cluster/ha/resources/{sid}", paramsHAResourceRead, haHandler((*Emulator).getHAResource)},
	{"PUT", "/cluster/ha/resources/{sid}", paramsHAResourceUpdate, haHandler((*Emulator).putHAResource)},
	{"DELETE", "/cluster/ha/resources/{sid}", paramsHAResourceDelete, haHandler((*Emulator).deleteHAResource)},
	{"GET", "/cluster/ha/rules", paramsHARuleList, haHandler((*Emulator).getHARules)},
	{"POST", "/cluster/ha/rules", paramsHARuleCreate, haHandler((*Emulator).postHARule)},
	{"GET", "/cluster/ha/rules/{rule}", paramsHARuleRead, haHandler((*Emulator).getHARule)},
	{"PUT", "/cluster/ha/rules/{rule}", paramsHARuleUpdate, haHandler((*Emulator).putHARule)},
	{"DELETE", "/cluster/ha/rules/{rule}", paramsHARuleRead, haHandler((*Emulator).deleteHARule)},
	// PVE 9 migrated HA groups to rules: with no groups left, the group
	// endpoints refuse.
	{"GET", "/cluster/ha/groups", nil, groupsMigrated("cannot index groups")},
	{"POST", "/cluster/ha/groups", paramsHAGroupCreate, groupsMigrated("cannot create group")},
	{"GET", "/cluster/ha/groups/{group}", paramsHAGroup, groupsMigrated("cannot read group")},
	{"PUT", "/cluster/ha/groups/{group}", paramsHAGroupUpdate, groupsMigrated("cannot update group")},
	{"DELETE", "/cluster/ha/groups/{group}", paramsHAGroup, groupsMigrated("cannot delete group")},
}

var (
	paramsHAGroup       = []param{str("group").withFormat("pve-configid").req()}
	paramsHAGroupCreate = []param{str("group").withFormat("pve-configid").req(),
		str("nodes").withFormat("pve-ha-group-node-list").req(), str("comment").maxLen(4096),
		boolean("nofailback"), boolean("restricted"), str("type").oneOf("group")}
	paramsHAGroupUpdate = []param{str("group").withFormat("pve-configid").req(),
		str("nodes").withFormat("pve-ha-group-node-list"), str("comment").maxLen(4096),
		boolean("nofailback"), boolean("restricted"), str("delete").withFormat("pve-configid-list").maxLen(4096),
		str("digest").maxLen(64)}
)

// groupsMigrated answers as pve-ha-manager's API2/HA/Groups.pm does once
// the groups have been migrated to rules, which is the state of a cluster
// without groups.
func groupsMigrated(what string) func(*Emulator, *call) (any, error) {
	return func(*Emulator, *call) (any, error) {
		return nil, fail("%s: ha groups have been migrated to rules", what)
	}
}

// haState is the HA state of a VM, as /cluster/resources reports it ("" for
// a VM that is not an HA resource).
func (e *Emulator) haState(vmid int) string {
	r, ok := e.ha.resources[fmt.Sprintf("vm:%d", vmid)]
	if !ok {
		return ""
	}
	return cmp.Or(r.opts["state"], "started")
}

var (
	haStates   = []string{"started", "stopped", "enabled", "disabled", "ignored"}
	haRuleType = []string{"node-affinity", "resource-affinity"}

	// From the API schema, as are all parameter tables.
	paramsHAResourceList = []param{{name: "type", kind: kString, enum: []string{"ct", "vm"}}}
	haResourceProperties = []param{
		str("comment").maxLen(4096), boolean("failback"), str("group").withFormat("pve-configid"),
		integer("max_relocate", 0, 0), integer("max_restart", 0, 0),
		str("sid").withFormat("pve-ha-resource-or-vm-id").req(), {name: "state", kind: kString, enum: haStates},
	}
	paramsHAResourceCreate = append(slices.Clone(haResourceProperties), param{name: "type", kind: kString, enum: []string{"ct", "vm"}})
	paramsHAResourceUpdate = append(slices.Clone(haResourceProperties),
		str("delete").withFormat("pve-configid-list").maxLen(4096), str("digest").maxLen(64))
	paramsHAResourceRead   = []param{str("sid").withFormat("pve-ha-resource-or-vm-id").req()}
	paramsHAResourceDelete = []param{boolean("purge"), str("sid").withFormat("pve-ha-resource-or-vm-id").req()}

	paramsHARuleList = []param{str("resource"), {name: "type", kind: kString, enum: haRuleType}}
	haRuleProperties = []param{
		{name: "affinity", kind: kString, enum: []string{"positive", "negative"}}, str("comment").maxLen(4096),
		boolean("disable"), str("nodes").withFormat("pve-ha-node-list"), str("rule").withFormat("pve-configid").req(),
		boolean("strict"), {name: "type", kind: kString, enum: haRuleType, required: true},
	}
	paramsHARuleCreate = append(slices.Clone(haRuleProperties), str("resources").withFormat("pve-ha-resource-id-list").req())
	paramsHARuleUpdate = append(slices.Clone(haRuleProperties), str("resources").withFormat("pve-ha-resource-id-list"),
		str("delete").withFormat("pve-configid-list").maxLen(4096), str("digest").maxLen(64))
	paramsHARuleRead = []param{str("rule").withFormat("pve-configid").req()}
)

var (
	// haResourceOptions are the options of a vm (and ct) resource.
	haResourceOptions = map[string]bool{"state": false, "group": false, "comment": false, "failback": false,
		"max_restart": false, "max_relocate": false}
	haRuleOptions = map[string]map[string]bool{
		"node-affinity":     {"resources": true, "nodes": true, "strict": false, "disable": false, "comment": false},
		"resource-affinity": {"resources": true, "affinity": true, "disable": false, "comment": false},
	}
)

// haHandler drops, before an HA request, the resources of VMs that no
// longer exist: the emulated destroy (vm.go) knows nothing of HA, and
// PVE's destroy with purge removes the VM's resource as it goes.
func haHandler(h func(*Emulator, *call) (any, error)) func(*Emulator, *call) (any, error) {
	return func(e *Emulator, c *call) (any, error) {
		for _, sid := range e.ha.resources.ids() {
			typ, name, _ := strings.Cut(sid, ":")
			id, _ := strconv.Atoi(name)
			if _, ok := e.vms[id]; typ == "vm" && !ok {
				delete(e.ha.resources, sid)
			}
		}
		return h(e, c)
	}
}

// parseSID is PVE::HA::Config::parse_sid: "type:name", or a VMID standing
// for the guest that has it.
func (e *Emulator) parseSID(sid string) (full, typ, name string, err error) {
	if _, err := strconv.Atoi(sid); err == nil && !strings.HasPrefix(sid, "+") && !strings.HasPrefix(sid, "-") {
		id, _ := strconv.Atoi(sid)
		if _, ok := e.vms[id]; !ok {
			return "", "", "", fail("unable to detect SID from VMID - VM/CT %s does not exist", sid)
		}
		return "vm:" + sid, "vm", sid, nil
	}
	typ, name, ok := strings.Cut(sid, ":")
	if !ok || typ == "" || name == "" || strings.ContainsAny(sid, " \t\n") {
		return "", "", "", fail("unable to parse service id '%s'", sid)
	}
	return sid, typ, name, nil
}

var vmidNameRe = regexp.MustCompile(`^[1-9][0-9]+$`)

// checkGuest is the resource plugins' verify_name and exists. The emulator
// has VMs only.
func (e *Emulator) checkGuest(typ, name string) error {
	if typ != "vm" && typ != "ct" {
		return fail("unknown section type '%s'", typ)
	}
	if !vmidNameRe.MatchString(name) {
		return fail("invalid VMID")
	}
	id, _ := strconv.Atoi(name)
	if _, ok := e.vms[id]; !ok {
		return fail("resource '%s:%s' does not exist in cluster", typ, name)
	}
	if typ == "ct" {
		return fail("resource 'ct:%s' - guest with ID %s is not a CT", name, name)
	}
	return nil
}

func (e *Emulator) haResourceJSON(sid string) map[string]any {
	o := e.ha.resources[sid].json()
	o["sid"] = sid
	o["digest"] = e.ha.resources.digest()
	return o
}

func (e *Emulator) getHAResources(c *call) (any, error) {
	out := []map[string]any{}
	for _, sid := range e.ha.resources.ids() {
		if t := c.values["type"]; t != "" && e.ha.resources[sid].typ != t {
			continue
		}
		out = append(out, e.haResourceJSON(sid))
	}
	return out, nil
}

func (e *Emulator) getHAResource(c *call) (any, error) {
	sid, _, _, err := e.parseSID(c.values["sid"])
	if err != nil {
		return nil, err
	}
	if _, ok := e.ha.resources[sid]; !ok {
		return nil, fail("no such resource '%s'", sid)
	}
	return e.haResourceJSON(sid), nil
}

// groupsMigrated: there are no HA groups, so they count as migrated to
// rules and the group option is refused.
func refuseHAGroup(c *call) error {
	if _, ok := c.values["group"]; ok {
		return fail("invalid parameter 'group': ha groups have been migrated to rules")
	}
	return nil
}

func (e *Emulator) postHAResource(c *call) (any, error) {
	sid, typ, name, err := e.parseSID(c.values["sid"])
	if err != nil {
		return nil, err
	}
	if t := c.values["type"]; t != "" && t != typ {
		return nil, fail("types does not match")
	}
	if err := refuseHAGroup(c); err != nil {
		return nil, err
	}
	if err := e.checkGuest(typ, name); err != nil {
		return nil, err
	}
	opts, err := checkSection(haResourceOptions, paramsHAResourceCreate, c.values, []string{"sid", "type"}, true)
	if err != nil {
		return nil, err
	}
	if _, dup := e.ha.resources[sid]; dup {
		return nil, lockedErr("create resource failed", fail("resource ID '%s' already defined", sid))
	}
	e.ha.resources.put(sid, &scObj{typ: typ, opts: opts})
	return nil, nil
}

func (e *Emulator) putHAResource(c *call) (any, error) {
	const what = "update resources config failed"
	sid, _, _, err := e.parseSID(c.values["sid"])
	if err != nil {
		return nil, err
	}
	if err := refuseHAGroup(c); err != nil {
		return nil, err
	}
	if err := assertDigest(e.ha.resources.digest(), c.values["digest"]); err != nil {
		return nil, lockedErr(what, err)
	}
	old, ok := e.ha.resources[sid]
	if !ok {
		return nil, lockedErr(what, fail("no such resource '%s'", sid))
	}
	opts, err := checkSection(haResourceOptions, paramsHAResourceUpdate, c.values, []string{"sid", "digest", "delete"}, false)
	if err != nil {
		return nil, lockedErr(what, err)
	}
	r := old.clone()
	maps.Copy(r.opts, opts)
	for _, k := range splitList(c.values["delete"]) {
		if _, ok := haResourceOptions[k]; !ok {
			return nil, lockedErr(what, fail("no such option '%s'", k))
		}
		delete(r.opts, k)
	}
	e.ha.resources[sid] = r
	return nil, nil
}

// deleteHAResource removes a resource and, with purge (the default), takes
// it out of the rules, deleting the rules left without resources.
func (e *Emulator) deleteHAResource(c *call) (any, error) {
	sid, _, _, err := e.parseSID(c.values["sid"])
	if err != nil {
		return nil, err
	}
	if _, ok := e.ha.resources[sid]; !ok {
		return nil, fail("cannot delete service '%s', not HA managed!", sid)
	}
	delete(e.ha.resources, sid)
	purge := true
	if v, ok := c.values["purge"]; ok {
		purge, _ = parseBool(v)
	}
	if purge {
		for _, id := range e.ha.rules.ids() {
			r := e.ha.rules[id]
			rest := slices.DeleteFunc(splitList(r.opts["resources"]), func(s string) bool { return s == sid })
			if len(rest) == 0 {
				delete(e.ha.rules, id)
				continue
			}
			r.opts["resources"] = strings.Join(rest, ",")
		}
	}
	return nil, nil
}

// haRuleJSON is a rule as the API answers it, with the feasibility errors
// PVE finds in it.
func (e *Emulator) haRuleJSON(id string, errs map[string][]string) map[string]any {
	o := e.ha.rules[id].json()
	o["rule"], o["order"], o["digest"] = id, e.ha.order[id], e.ha.rules.digest()
	if len(errs) > 0 {
		o["errors"] = errs
	}
	return o
}

func (e *Emulator) getHARules(c *call) (any, error) {
	errs := e.haRuleErrors(e.ha.rules)
	ids := e.ha.rules.ids()
	slices.SortStableFunc(ids, func(a, b string) int { return e.ha.order[a] - e.ha.order[b] })
	out := []map[string]any{}
	for _, id := range ids {
		r := e.ha.rules[id]
		if t := c.values["type"]; t != "" && r.typ != t {
			continue
		}
		if sid := c.values["resource"]; sid != "" && !slices.Contains(splitList(r.opts["resources"]), sid) {
			continue
		}
		out = append(out, e.haRuleJSON(id, errs[id]))
	}
	return out, nil
}

func (e *Emulator) getHARule(c *call) (any, error) {
	id := c.values["rule"]
	if _, ok := e.ha.rules[id]; !ok {
		return nil, fail("no such ha rule '%s'", id)
	}
	return e.haRuleJSON(id, e.haRuleErrors(e.ha.rules)[id]), nil
}

func (e *Emulator) postHARule(c *call) (any, error) {
	const what = "create ha rule failed"
	typ, id := c.values["type"], c.values["rule"]
	values := maps.Clone(c.values)
	if on, _ := parseBool(values["disable"]); !on {
		delete(values, "disable")
	}
	opts, err := checkSection(haRuleOptions[typ], paramsHARuleCreate, values, []string{"type", "rule"}, true)
	if err != nil {
		return nil, err
	}
	decodeRuleOptions(opts)
	if _, dup := e.ha.rules[id]; dup {
		return nil, lockedErr(what, fail("HA rule '%s' already defined", id))
	}
	if err := e.checkRuleRefs(opts); err != nil {
		return nil, lockedErr(what, err)
	}
	rules := e.ha.rules.clone()
	rules.put(id, &scObj{typ: typ, opts: opts})
	if err := e.assertFeasible(rules, id); err != nil {
		return nil, lockedErr(what, err)
	}
	e.ha.rules = rules
	if e.ha.order == nil {
		e.ha.order = map[string]int{}
	}
	e.ha.lastOrder++
	e.ha.order[id] = e.ha.lastOrder
	return nil, nil
}

func (e *Emulator) putHARule(c *call) (any, error) {
	const what = "update HA rules failed"
	id := c.values["rule"]
	if err := assertDigest(e.ha.rules.digest(), c.values["digest"]); err != nil {
		return nil, lockedErr(what, err)
	}
	old, ok := e.ha.rules[id]
	if !ok {
		return nil, lockedErr(what, fail("HA rule '%s' does not exist", id))
	}
	values := maps.Clone(c.values)
	if on, _ := parseBool(values["disable"]); !on {
		delete(values, "disable")
	}
	if values["type"] != old.typ {
		return nil, lockedErr(what, fail("unexpected property 'type'"))
	}
	opts, err := checkSection(haRuleOptions[old.typ], paramsHARuleUpdate, values, []string{"type", "rule", "digest", "delete"}, false)
	if err != nil {
		return nil, lockedErr(what, err)
	}
	decodeRuleOptions(opts)
	if err := e.checkRuleRefs(opts); err != nil {
		return nil, lockedErr(what, err)
	}
	r := old.clone()
	if err := deleteOptions(r, haRuleOptions[old.typ], opts, c.values["delete"]); err != nil {
		return nil, lockedErr(what, err)
	}
	maps.Copy(r.opts, opts)
	rules := e.ha.rules.clone()
	rules[id] = r
	if err := e.assertFeasible(rules, id); err != nil {
		return nil, lockedErr(what, err)
	}
	e.ha.rules = rules
	return nil, nil
}

// deleteHARule removes a rule; like PVE it succeeds when there is none.
func (e *Emulator) deleteHARule(c *call) (any, error) {
	delete(e.ha.rules, c.values["rule"])
	return nil, nil
}

// decodeRuleOptions stores resources and nodes as PVE's encode_value
// writes them: resources sorted, nodes sorted with their priority (none
// when 0). Entries that are not valid IDs are dropped, as decode_value
// does.
func decodeRuleOptions(opts map[string]string) {
	if v, ok := opts["resources"]; ok {
		var sids []string
		for _, s := range splitList(v) {
			if checkHAResourceID(s) == nil {
				sids = append(sids, s)
			}
		}
		opts["resources"] = strings.Join(slices.Compact(slices.Sorted(slices.Values(sids))), ",")
	}
	if v, ok := opts["nodes"]; ok {
		prio := map[string]int{}
		for _, entry := range splitList(v) {
			m := haNodeRe.FindStringSubmatch(entry)
			if m == nil {
				continue
			}
			n, _ := strconv.Atoi(strings.TrimPrefix(m[3], ":"))
			prio[m[1]] = n
		}
		var nodes []string
		for _, node := range slices.Sorted(maps.Keys(prio)) {
			if prio[node] != 0 {
				node += ":" + strconv.Itoa(prio[node])
			}
			nodes = append(nodes, node)
		}
		opts["nodes"] = strings.Join(nodes, ",")
	}
}

// checkRuleRefs checks that a rule names HA resources and cluster nodes.
func (e *Emulator) checkRuleRefs(opts map[string]string) error {
	if v, ok := opts["resources"]; ok {
		if v == "" {
			return fail("no resources were specified")
		}
		var missing []string
		for _, sid := range splitList(v) {
			if _, ok := e.ha.resources[sid]; !ok {
				missing = append(missing, sid)
			}
		}
		if len(missing) > 0 {
			return fail("cannot use unmanaged resource(s) %s.", strings.Join(missing, ", "))
		}
	}
	if v, ok := opts["nodes"]; ok {
		if v == "" {
			return fail("no nodes were specified")
		}
		var missing []string
		for _, entry := range splitList(v) {
			node, _, _ := strings.Cut(entry, ":")
			if _, ok := e.nodes[node]; !ok {
				missing = append(missing, node)
			}
		}
		if len(missing) > 0 {
			return fail("cannot use non-existent node(s) %s.", strings.Join(missing, ", "))
		}
	}
	return nil
}

// assertFeasible fails as PVE does when the rule set makes rule id
// infeasible: HTTP 400 "Rule '<id>' is invalid." with the reasons.
func (e *Emulator) assertFeasible(rules scFile, id string) error {
	errs := e.haRuleErrors(rules)[id]
	if len(errs) == 0 {
		return nil
	}
	params := map[string]string{}
	for opt, msgs := range errs {
		params[opt] = strings.Join(msgs, ", ")
	}
	return &apiError{status: 400, msg: fmt.Sprintf("Rule '%s' is invalid.\n", id), errors: params}
}

// haRuleErrors are the feasibility checks of PVE::HA::Rules and its
// plugins that concern rules of one type: a resource in two node affinity
// rules, resource affinity rules with fewer than two resources, negative
// ones with more resources than nodes, and positive and negative rules
// sharing two or more resources. Disabled rules are not checked.
func (e *Emulator) haRuleErrors(rules scFile) map[string]map[string][]string {
	errs := map[string]map[string][]string{}
	add := func(id, msg string) {
		if errs[id] == nil {
			errs[id] = map[string][]string{}
		}
		errs[id]["resources"] = append(errs[id]["resources"], msg)
	}
	enabled := func(typ string) []string {
		var ids []string
		for _, id := range rules.ids() {
			if r := rules[id]; r.typ == typ && r.opts["disable"] != "1" {
				ids = append(ids, id)
			}
		}
		return ids
	}
	resources := func(id string) []string { return splitList(rules[id].opts["resources"]) }

	users := map[string][]string{}
	for _, id := range enabled("node-affinity") {
		for _, sid := range resources(id) {
			users[sid] = append(users[sid], id)
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(users)) {
		if len(users[sid]) > 1 {
			for _, id := range users[sid] {
				add(id, fmt.Sprintf("resource '%s' is already used in another node affinity rule", sid))
			}
		}
	}

	var positive, negative []string
	for _, id := range enabled("resource-affinity") {
		if len(resources(id)) < 2 {
			add(id, "rule is ineffective as there are less than two resources")
		}
		if rules[id].opts["affinity"] == "negative" {
			negative = append(negative, id)
			if len(resources(id)) > len(e.nodes) {
				add(id, "rule defines more resources than available nodes")
			}
		} else {
			positive = append(positive, id)
		}
	}
	for _, p := range positive {
		for _, n := range negative {
			shared := 0
			for _, sid := range resources(p) {
				if slices.Contains(resources(n), sid) {
					shared++
				}
			}
			if shared >= 2 {
				add(p, "rule shares two or more resources with a negative resource affinity rule")
				add(n, "rule shares two or more resources with a positive resource affinity rule")
			}
		}
	}
	return errs
}

// HA formats of pve-ha-manager's PVE::HA::Tools.

var (
	haResourceIDRe = regexp.MustCompile(`^[a-z]+:\S+$`)
	haResourceOrVM = regexp.MustCompile(`^([a-z]+:\S+|\d+)$`)
	haNodeRe       = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)(:\d+)?$`)
)

func checkHAResourceID(v string) error {
	if !haResourceIDRe.MatchString(v) {
		return fmt.Errorf("value does not look like a valid ha resource id")
	}
	return nil
}

func checkHAResourceOrVMID(v string) error {
	if !haResourceOrVM.MatchString(v) {
		return fmt.Errorf("value does not look like a valid ha resource id")
	}
	return nil
}

func checkHANode(v string) error {
	if !haNodeRe.MatchString(v) {
		return fmt.Errorf("value does not look like a valid ha node")
	}
	return nil
}
