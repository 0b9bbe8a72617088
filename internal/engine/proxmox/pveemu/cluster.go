package pveemu

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// The cluster's own endpoints, as pve-manager's PVE/API2/Cluster.pm
// answers them: the membership (the emulated nodes form one quorate
// cluster) and the datacenter options (datacenter.cfg).

// clusterRoutes are the cluster endpoints besides resources, nextid, SDN,
// firewall and HA.
var clusterRoutes = []route{
	{"GET", "/cluster/status", nil, (*Emulator).getClusterStatus},
	{"GET", "/cluster/options", nil, (*Emulator).getClusterOptions},
	{"PUT", "/cluster/options", paramsClusterOptions, (*Emulator).putClusterOptions},
}

// ClusterName is the name of the emulated cluster.
const ClusterName = "emulated"

// getClusterStatus answers the cluster entry and one entry a node. The
// node answering is the first by name ("local"); every node is online and
// has the address of its vmbr0.
func (e *Emulator) getClusterStatus(*call) (any, error) {
	names := e.nodeNames()
	out := []map[string]any{{
		"type": "cluster", "id": "cluster", "name": ClusterName, "nodes": len(names),
		"version": len(names), "quorate": 1,
	}}
	for i, name := range names {
		out = append(out, map[string]any{
			"type": "node", "id": "node/" + name, "name": name, "nodeid": i + 1,
			"local": boolInt(i == 0), "online": 1, "ip": e.nodeIP(name), "level": "",
		})
	}
	return out, nil
}

// nodeIP is the address a node's name resolves to: its vmbr0's.
func (e *Emulator) nodeIP(name string) string {
	return e.nodeNetwork(name).running["vmbr0"].opts["address"]
}

// dcFormats are the datacenter options held as property strings, which
// the options' GET answers parsed, as PVE::DataCenterConfig reads them.
var dcFormats = map[string]propFormat{
	"bwlimit": opt(number("clone"), number("default"), number("migration"), number("move"), number("restore")),
	"crs": opt(str("ha").oneOf("basic", "static", "dynamic"), boolean("ha-auto-rebalance"),
		number("ha-auto-rebalance-hold-duration").needs("ha-auto-rebalance"),
		number("ha-auto-rebalance-margin").needs("ha-auto-rebalance"),
		str("ha-auto-rebalance-method").oneOf("bruteforce", "topsis").needs("ha-auto-rebalance"),
		number("ha-auto-rebalance-threshold").needs("ha-auto-rebalance"), boolean("ha-rebalance-on-start")),
	"ha":        opt(str("shutdown_policy").oneOf("freeze", "failover", "conditional", "migrate").req()),
	"migration": opt(str("network").withFormat("CIDR"), str("type").defaultKey().oneOf("secure", "insecure").req()),
	"next-id":   opt(intParam("lower"), intParam("upper")),
	"notify": opt(str("fencing").oneOf("always", "never"), str("package-updates").oneOf("auto", "always", "never"),
		str("replication").oneOf("always", "never"), str("target-fencing"), str("target-package-updates"),
		str("target-replication")),
	"replication": opt(str("network").withFormat("CIDR"), str("type").defaultKey().oneOf("secure", "insecure").req()),
	"tag-style": opt(boolean("case-sensitive"),
		str("color-map").matching(pvePattern(`(?:(?i:[a-z0-9_][a-z0-9_\-\+\.]*):[0-9a-fA-F]{6}(?::[0-9a-fA-F]{6})?)(?:;(?:(?i:[a-z0-9_][a-z0-9_\-\+\.]*):[0-9a-fA-F]{6}(?::[0-9a-fA-F]{6})?))*`)),
		str("ordering").oneOf("config", "alphabetical"), str("shape").oneOf("full", "circle", "dense", "none")),
	"u2f": opt(str("appid"), str("origin")),
	"user-tag-access": opt(str("user-allow").oneOf("none", "list", "existing", "free"),
		str("user-allow-list").matching(pvePattern(`(?i:[a-z0-9_][a-z0-9_\-\+\.]*)(?:;(?i:[a-z0-9_][a-z0-9_\-\+\.]*))*`))),
	"webauthn": opt(boolean("allow-subdomains"), str("id"), str("origin"), str("rp")),
}

// paramsClusterOptions is PUT /cluster/options: the datacenter.cfg schema.
var paramsClusterOptions = func() []param {
	ps := []param{
		str("consent-text").maxLen(65536),
		str("console").oneOf("applet", "vv", "html5", "xtermjs"),
		str("delete").withFormat("pve-configid-list"),
		str("description").maxLen(65536),
		str("email_from").withFormat("email-opt"),
		str("fencing").oneOf("watchdog", "hardware", "both"),
		str("http_proxy").matching(pvePattern(`http://.*`)),
		str("keyboard").oneOf("de", "de-ch", "da", "en-gb", "en-us", "es", "fi", "fr", "fr-be", "fr-ca", "fr-ch",
			"hu", "is", "it", "ja", "lt", "mk", "nl", "no", "pl", "pt", "pt-br", "sv", "sl", "tr"),
		str("language").oneOf("ar", "ca", "da", "de", "en", "es", "eu", "fa", "fr", "hr", "he", "it", "ja", "ka", "kr",
			"nb", "nl", "nn", "pl", "pt_BR", "ru", "sl", "sv", "tr", "ukr", "zh_CN", "zh_TW"),
		str("mac_prefix").withFormat("mac-prefix"),
		atLeast("max_workers", 1),
		boolean("migration_unsecure"),
		str("registered-tags").matching(pvePattern(`(?:(?i:[a-z0-9_][a-z0-9_\-\+\.]*);)*(?i:[a-z0-9_][a-z0-9_\-\+\.]*)`)),
	}
	for _, k := range slices.Sorted(maps.Keys(dcFormats)) {
		ps = append(ps, str(k).withProps(dcFormats[k]))
	}
	return ps
}()

// getClusterOptions answers datacenter.cfg, its property strings parsed,
// and the tags the caller may use (every tag in use and the registered
// ones: an API token of root@pam may use them all).
func (e *Emulator) getClusterOptions(*call) (any, error) {
	out := map[string]any{}
	for k, v := range e.dcOptions() {
		f, ok := dcFormats[k]
		if !ok {
			if k == "max_workers" || k == "migration_unsecure" {
				out[k] = configNumber(v)
			} else {
				out[k] = v
			}
			continue
		}
		kv, _ := parsePropertyString(f, k, v)
		obj := map[string]any{}
		for sk, sv := range kv {
			if f[sk].kind == kBoolean || f[sk].kind == kInteger {
				obj[sk] = configNumber(sv)
			} else {
				obj[sk] = sv
			}
		}
		out[k] = obj
	}
	tags := map[string]bool{}
	for _, v := range e.vms {
		for _, t := range splitList(v.conf["tags"]) {
			tags[t] = true
		}
	}
	for _, t := range strings.Split(e.dc["registered-tags"], ";") {
		if t != "" {
			tags[t] = true
		}
	}
	out["allowed-tags"] = slices.Sorted(maps.Keys(tags))
	return out, nil
}

// putClusterOptions sets and deletes datacenter options.
func (e *Emulator) putClusterOptions(c *call) (any, error) {
	opts := e.dcOptions()
	for k, v := range c.values {
		if k != "delete" {
			opts[k] = v
		}
	}
	for _, k := range splitList(c.values["delete"]) {
		delete(opts, k)
	}
	return nil, nil
}

// dcOptions is datacenter.cfg, as a fresh installation writes it.
func (e *Emulator) dcOptions() map[string]string {
	if e.dc == nil {
		e.dc = map[string]string{"keyboard": "en-us"}
	}
	return e.dc
}

// configNumber is a stored number as JSON answers it.
func configNumber(v string) any {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	return v
}
