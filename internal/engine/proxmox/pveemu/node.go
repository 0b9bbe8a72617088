package pveemu

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// A node's own endpoints, as pve-manager's PVE/API2/Nodes.pm and
// qemu-server's vmlist answer them. The figures are made up but
// consistent: a node's memory in use is its running guests' plus 2 GiB for
// PVE itself, as GET /nodes reports it.

// nodeRoutes are the node endpoints besides the network, SDN and tasks.
var nodeRoutes = []route{
	{"GET", "/nodes/{node}/status", paramsNode, (*Emulator).getNodeStatus},
	{"GET", "/nodes/{node}/version", paramsNode, (*Emulator).getNodeVersion},
	{"GET", "/nodes/{node}/qemu", paramsVMList, (*Emulator).getNodeVMs},
}

var (
	paramsNode   = []param{str("node").req().withFormat("pve-node")}
	paramsVMList = []param{str("node").req().withFormat("pve-node"), boolean("full")}
)

// The version the emulator reports, PVE's pvecfg::version_info.
const (
	pveVersion = "9.1.3"
	pveRelease = "9.1"
	pveRepoID  = "e5010dc1a3c4b2f0"
	// pveKernel is the kernel a PVE 9.1 node boots.
	pveKernel = "6.17.2-1-pve"
)

func (e *Emulator) getVersion(*call) (any, error) {
	return map[string]any{"version": pveVersion, "release": pveRelease, "repoid": pveRepoID}, nil
}

func (e *Emulator) getNodeVersion(c *call) (any, error) {
	if err := e.checkNode(c.values["node"]); err != nil {
		return nil, err
	}
	return e.getVersion(c)
}

// nodeMemUsed is what GET /nodes and a node's status report in use: the
// running guests' memory and 2 GiB for the host.
func (e *Emulator) nodeMemUsed(name string) int64 {
	used := int64(2 << 30)
	for _, v := range e.vms {
		if v.node == name && v.running {
			used += int64(v.memoryMiB()) << 20
		}
	}
	return used
}

func (n *node) uptime(now time.Time) int64 { return int64(now.Sub(n.born).Seconds()) + 86400 }

// getNodeStatus is GET /nodes/{node}/status. Like PVE it answers numbers
// where the host's files hold numbers, and strings where Perl kept the
// text it read: the load averages, the CPU's MHz and its hvm flag.
func (e *Emulator) getNodeStatus(c *call) (any, error) {
	name := c.values["node"]
	if err := e.checkNode(name); err != nil {
		return nil, err
	}
	n := e.nodes[name]
	used := e.nodeMemUsed(name)
	const rootfs = 100 << 30
	return map[string]any{
		"uptime": n.uptime(c.now), "idle": 0,
		"loadavg":        []string{"0.12", "0.09", "0.05"},
		"kversion":       "Linux " + pveKernel + " #1 SMP PREEMPT_DYNAMIC PMX " + pveKernel + " (2025-11-20T10:58Z)",
		"current-kernel": map[string]any{"sysname": "Linux", "release": pveKernel, "version": "#1 SMP PREEMPT_DYNAMIC PMX " + pveKernel + " (2025-11-20T10:58Z)", "machine": "x86_64"},
		"boot-info":      map[string]any{"mode": "efi", "secureboot": 0},
		"cpuinfo": map[string]any{
			"user_hz": 100, "model": "Emulated CPU @ 2.40GHz", "vendor": "GenuineIntel", "family": "6",
			"mhz": "2400.000", "cpus": n.maxCPU, "sockets": 1, "cores": n.maxCPU, "hvm": "1",
			"flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm constant_tsc pni vmx ssse3 sse4_1 sse4_2 popcnt aes avx avx2",
		},
		"cpu": 0.02, "wait": 0.001,
		"memory":     map[string]any{"total": n.maxMem, "used": used, "free": n.maxMem - used, "available": n.maxMem - used},
		"ksm":        map[string]any{"shared": 0},
		"swap":       map[string]any{"total": 8 << 30, "used": 0, "free": 8 << 30},
		"rootfs":     map[string]any{"total": rootfs, "used": 12 << 30, "free": rootfs - 12<<30, "avail": rootfs - 17<<30},
		"pveversion": "pve-manager/" + pveVersion + "/" + pveRepoID,
	}, nil
}

// getNodeVMs is GET /nodes/{node}/qemu: the VMs whose config is on the
// node (qemu-server's vmstatus; full adds qmpstatus and the running
// machine).
func (e *Emulator) getNodeVMs(c *call) (any, error) {
	name := c.values["node"]
	if err := e.checkNode(name); err != nil {
		return nil, err
	}
	full := c.values["full"] == "1"
	out := []map[string]any{}
	for _, id := range e.vmids() {
		if v := e.vms[id]; v.node == name {
			out = append(out, v.vmStatus(c.now, full))
		}
	}
	return out, nil
}

// vmStatus is qemu-server's vmstatus for one VM.
func (v *vm) vmStatus(now time.Time, full bool) map[string]any {
	name := v.conf["name"]
	if name == "" {
		name = fmt.Sprintf("VM %d", v.vmid)
	}
	d := map[string]any{
		"vmid": v.vmid, "name": name, "status": v.status(), "cpus": v.cpus(),
		"maxmem": int64(v.memoryMiB()) << 20, "maxdisk": v.rootDiskSize(), "disk": 0,
		"uptime": v.uptime(now), "cpu": 0, "mem": 0, "memhost": 0, "netin": 0, "netout": 0,
		"diskread": 0, "diskwrite": 0,
	}
	if vcpus, err := strconv.Atoi(v.conf["vcpus"]); err == nil && vcpus > 0 {
		d["cpus"] = vcpus
	}
	if b, err := strconv.Atoi(v.conf["balloon"]); err == nil && b > 0 {
		d["balloon_min"] = int64(b) << 20
		d["shares"] = 1000
		if s, err := strconv.Atoi(v.conf["shares"]); err == nil {
			d["shares"] = s
		}
	}
	if v.conf["template"] == "1" {
		d["template"] = 1
	}
	if slices.ContainsFunc([]string{"serial0", "serial1", "serial2", "serial3"}, func(k string) bool { return v.conf[k] != "" }) {
		d["serial"] = 1
	}
	if l := v.conf["lock"]; l != "" {
		d["lock"] = l
	}
	if t, ok := v.conf["tags"]; ok {
		d["tags"] = t
	}
	if v.running {
		d["pid"] = 10000 + v.vmid%50000
		d["mem"] = int64(v.memoryMiB()) << 19 // half in use
		d["memhost"] = d["mem"]
		d["cpu"] = 0.01
	}
	if full {
		d["qmpstatus"] = v.status()
		if v.running {
			d["running-machine"] = "pc-i440fx-10.1+pve0"
			d["running-qemu"] = "10.1.2"
		}
	}
	return d
}
