package pveemu

import (
	"fmt"
	"strconv"
)

// The firewall's options endpoints: the [OPTIONS] section of the cluster's
// file and of a VM's, under /cluster/firewall/options and
// /nodes/{node}/qemu/{vmid}/firewall/options (a node's are in
// firewall_host.go).

// fwIntOptions are the options PVE's parser reads back as integers: the
// cluster's, a VM's and a node's.
var fwIntOptions = fwSet(`enable ebtables dhcp ndp radv macfilter ipfilter log_nf_conntrack
	nf_conntrack_allow_invalid nf_conntrack_max nf_conntrack_tcp_timeout_established
	nf_conntrack_tcp_timeout_syn_recv nftables nosmurfs protection_synflood
	protection_synflood_burst protection_synflood_rate tcpflags`)

func fwOptionsJSON(opts map[string]string) map[string]any {
	out := map[string]any{"digest": fwListDigest([]map[string]string{opts})}
	for k, v := range opts {
		if fwIntOptions[k] {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[k] = n
			continue
		}
		out[k] = v
	}
	return out
}

// expireEnable is parse_clusterfw_option: an enable set to a timestamp
// (PVE's anti-lockout double call) reads as 0 a minute later.
func expireEnable(opts map[string]string, now int64) {
	if n, _ := strconv.ParseInt(opts["enable"], 10, 64); n > 1 && now-n > 60 {
		opts["enable"] = "0"
	}
}

func (e *Emulator) getFWClusterOptions(c *call) (any, error) {
	f := e.clusterFW()
	expireEnable(f.options, c.now.Unix())
	return fwOptionsJSON(f.options), nil
}

func (e *Emulator) putFWClusterOptions(c *call) (any, error) {
	f := e.clusterFW()
	expireEnable(f.options, c.now.Unix())
	return nil, fwSetOptions(f.options, paramsFWClusterOptions, c, func(k, v string) string {
		switch k {
		case "enable":
			n, _ := strconv.ParseInt(v, 10, 64)
			if n > 1 {
				n = c.now.Unix()
			}
			return strconv.FormatInt(n, 10)
		case "ebtables":
			b, _ := parseBool(v)
			return strconv.Itoa(boolInt(b))
		}
		return v
	})
}

func (e *Emulator) getFWVMOptions(c *call) (any, error) {
	f, err := e.vmFW(c)
	if err != nil {
		return nil, err
	}
	return fwOptionsJSON(f.options), nil
}

func (e *Emulator) putFWVMOptions(c *call) (any, error) {
	f, err := e.vmFW(c)
	if err != nil {
		return nil, err
	}
	return nil, fwSetOptions(f.options, paramsFWVMOptions, c, func(k, v string) string {
		if fwIntOptions[k] {
			b, _ := parseBool(v)
			return strconv.Itoa(boolInt(b))
		}
		return v
	})
}

// fwSetOptions is set_options: the digest, then the deletions, then the
// values given, normalised as PVE's parser reads them back.
func fwSetOptions(opts map[string]string, params []param, c *call, normalise func(k, v string) string) error {
	if err := fwAssertDigest(fwListDigest([]map[string]string{opts}), c); err != nil {
		return err
	}
	isOption := func(k string) bool {
		_, ok := lookupParam(params, k)
		return ok && !fwOptionMeta[k]
	}
	del := splitList(c.values["delete"])
	for _, k := range del {
		if !isOption(k) {
			return paramError(map[string]string{"delete": fmt.Sprintf("no such option '%s'", k)})
		}
	}
	for _, k := range del {
		delete(opts, k)
	}
	for k, v := range c.values {
		if isOption(k) {
			opts[k] = normalise(k, v)
		}
	}
	return nil
}

var fwOptionMeta = map[string]bool{"node": true, "vmid": true, "digest": true, "delete": true}
