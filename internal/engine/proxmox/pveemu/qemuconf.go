package pveemu

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The QEMU VM configuration's schema: every option POST
// /nodes/{node}/qemu/{vmid}/config takes, with its type, bounds, enum,
// pattern and format, as PVE's API schema (api-viewer/apidata.js of
// pve-docs 9.1.3) publishes them. The formats the schema only names are
// taken from qemu-server (PVE/QemuServer.pm's confdesc and the formats of
// QemuServer/{Drive,CPUConfig,PCI,RNG,Network,Memory,USB}.pm) and
// pve-common's JSONSchema.pm.

// Counts of the indexed options (qemu-server's MAX_* constants).
const (
	maxIDE, maxSATA, maxSCSI, maxVirtio = 4, 6, 31, 16
	maxUnused, maxHostPCI, maxUSB       = 256, 16, 14
	maxSerial, maxParallel, maxNUMA     = 4, 3, 8
	maxVirtiofs                         = 10
)

// pvePattern compiles a schema pattern as check_prop applies it:
// "^PATTERN$", with Perl's precedence (an alternation is anchored only at
// its ends).
func pvePattern(p string) *regexp.Regexp { return regexp.MustCompile("^" + p + "$") }

func intParam(name string) param { return param{name: name, kind: kInteger} }
func number(name string) param   { return param{name: name, kind: kNumber} }
func atLeast(name string, lo int64) param {
	return param{name: name, kind: kInteger, min: lo, hasMin: true}
}

// upTo makes p the option family p.name0 … p.name(n-1).
func (p param) upTo(n int) param { p.indexed = n; return p }

// opt builds a propFormat from its keys.
func opt(keys ...param) propFormat {
	f := propFormat{}
	for _, k := range keys {
		f[k.name] = k
	}
	return f
}

// merged is the union of formats, as qemu-server composes drive formats.
func merged(fs ...propFormat) propFormat {
	out := propFormat{}
	for _, f := range fs {
		maps.Copy(out, f)
	}
	return out
}

var (
	uuidRe     = `[a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}`
	base64Re   = pvePattern(`[A-Za-z0-9+\/]+={0,2}`)
	numSetRe   = pvePattern(`\d+(?:-\d+)?(?:;\d+(?:-\d+)?)*`)
	pciIDRe    = pvePattern(`^0x[0-9a-fA-F]{4}$`)
	pciAddr    = `(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?`
	usbHostRe  = pvePattern(`(?:(?:(0x)?([0-9A-Fa-f]{4}):(0x)?([0-9A-Fa-f]{4}))|(?:(\d+)\-(\d+(\.\d+)*))|[Ss][Pp][Ii][Cc][Ee])`)
	cpuFlagAny = `(?:[+-][a-zA-Z0-9\-_\.]+)`

	imageFormats = []string{"raw", "qcow", "qed", "qcow2", "vmdk", "cloop"}

	// Drive.pm's %drivedesc_base and the bus-specific additions.
	driveBase = func() propFormat {
		f := opt(
			str("file").withFormat("pve-volume-id-or-qm-path").defaultKey().req(),
			str("media").oneOf("cdrom", "disk"),
			boolean("snapshot"),
			str("cache").oneOf("none", "writethrough", "writeback", "unsafe", "directsync"),
			str("format").oneOf(imageFormats...),
			str("size").withFormat("disk-size"),
			boolean("backup"), boolean("replicate"),
			str("rerror").oneOf("ignore", "report", "stop"),
			str("werror").oneOf("enospc", "ignore", "report", "stop"),
			str("aio").oneOf("native", "threads", "io_uring"),
			str("discard").oneOf("ignore", "on"),
			boolean("detect_zeroes"),
			str("serial").withFormat("urlencoded").maxLen(60),
			boolean("shared"),
			str("import-from").withFormat("pve-volume-id-or-absolute-path"),
		)
		f["volume"] = alias("file")
		for _, k := range []string{"bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr", "iops_max", "iops_rd_max", "iops_wr_max"} {
			f[k] = intParam(k)
		}
		for _, k := range []string{"mbps", "mbps_rd", "mbps_wr", "mbps_max", "mbps_rd_max", "mbps_wr_max"} {
			f[k] = number(k)
		}
		for _, k := range []string{"bps_max_length", "bps_rd_max_length", "bps_wr_max_length", "iops_max_length", "iops_rd_max_length", "iops_wr_max_length"} {
			f[k] = atLeast(k, 1)
		}
		for _, k := range []string{"bps_rd", "bps_wr", "iops_rd", "iops_wr"} {
			f[k+"_length"] = alias(k + "_max_length")
		}
		return f
	}()
	iothreadKey  = opt(boolean("iothread"))
	productKey   = opt(str("product").matching(pvePattern(`[A-Za-z0-9\-_\s]{0,16}`)))
	vendorKey    = opt(str("vendor").matching(pvePattern(`[A-Za-z0-9\-_\s]{0,8}`)))
	modelKey     = opt(str("model").withFormat("urlencoded").maxLen(120))
	queuesKey    = opt(atLeast("queues", 2))
	roKey        = opt(boolean("ro"))
	scsiblockKey = opt(boolean("scsiblock"))
	ssdKey       = opt(boolean("ssd"))
	wwnKey       = opt(str("wwn").matching(pvePattern(`^(0x)[0-9a-fA-F]{16}`)))

	ideFormat    = merged(driveBase, modelKey, ssdKey, wwnKey)
	sataFormat   = merged(driveBase, ssdKey, wwnKey)
	scsiFormat   = merged(driveBase, iothreadKey, productKey, queuesKey, roKey, scsiblockKey, ssdKey, vendorKey, wwnKey)
	virtioFormat = merged(driveBase, iothreadKey, roKey)

	efidiskFormat = func() propFormat {
		f := opt(
			str("file").withFormat("pve-volume-id-or-qm-path").defaultKey().req(),
			str("format").oneOf(imageFormats...),
			str("size").withFormat("disk-size"),
			str("efitype").oneOf("2m", "4m"),
			boolean("pre-enrolled-keys"),
			str("ms-cert").oneOf("2011", "2023", "2023w", "2023k"),
			str("import-from").withFormat("pve-volume-id-or-absolute-path"),
		)
		f["volume"] = alias("file")
		return f
	}()
	tpmstateFormat = func() propFormat {
		f := opt(
			str("file").withFormat("pve-volume-id-or-qm-path").defaultKey().req(),
			str("format").oneOf("raw", "qcow2", "vmdk"),
			str("size").withFormat("disk-size"),
			str("version").oneOf("v1.2", "v2.0"),
			str("import-from").withFormat("pve-volume-id-or-absolute-path"),
		)
		f["volume"] = alias("file")
		return f
	}()
	unusedFormat = propFormat{"file": str("file").withFormat("pve-volume-id").defaultKey().req(), "volume": alias("file")}

	agentFormat = propFormat{
		"enabled":             boolean("enabled").defaultKey().req(),
		"freeze-fs":           boolean("freeze-fs"),
		"freeze-fs-on-backup": alias("freeze-fs"),
		"guest-fsfreeze":      alias("freeze-fs"),
		"fstrim_cloned_disks": boolean("fstrim_cloned_disks"),
		"type":                str("type").oneOf("virtio", "isa"),
	}
	audioFormat   = opt(str("device").oneOf("ich9-intel-hda", "intel-hda", "AC97").req(), str("driver").oneOf("spice", "none"))
	ivshmemFormat = opt(atLeast("size", 1).req(), str("name").matching(pvePattern(`[a-zA-Z0-9\-]+`)))
	machineFormat = opt(
		str("type").defaultKey().maxLen(40).matching(pvePattern(
			`(pc|pc(-i440fx)?-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|q35|pc-q35-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|virt(?:-\d+(\.\d+)+)?(\+pve\d+)?)`)),
		param{name: "aw-bits", kind: kNumber, min: 32, max: 64, hasMin: true},
		boolean("enable-s3"), boolean("enable-s4"),
		str("viommu").oneOf("intel", "virtio"),
	)
	numaFormat = opt(
		str("cpus").matching(numSetRe).req(), str("hostnodes").matching(numSetRe),
		number("memory"), str("policy").oneOf("preferred", "bind", "interleave"),
	)
	spiceFormat = opt(boolean("foldersharing"), str("videostreaming").oneOf("off", "all", "filter"))
	usbFormat   = opt(str("host").defaultKey().matching(usbHostRe), str("mapping").withFormat("pve-configid"), boolean("usb3"))
	vgaFormat   = opt(
		str("type").defaultKey().oneOf("cirrus", "qxl", "qxl2", "qxl3", "qxl4", "none", "serial0", "serial1",
			"serial2", "serial3", "std", "virtio", "virtio-gl", "vmware"),
		integer("memory", 4, 512), str("clipboard").oneOf("vnc"),
	)
	virtiofsFormat = opt(
		str("dirid").withFormat("pve-configid").defaultKey().req(),
		str("cache").oneOf("auto", "always", "metadata", "never"),
		boolean("direct-io"), boolean("expose-acl"), boolean("expose-xattr"),
	)

	// The named formats (register_format with a hash).
	smbios1Format = opt(
		str("uuid").matching(pvePattern(uuidRe)),
		str("version").matching(base64Re), str("serial").matching(base64Re),
		str("manufacturer").matching(base64Re), str("product").matching(base64Re),
		str("sku").matching(base64Re), str("family").matching(base64Re),
		boolean("base64"),
	)
	bootFormat = opt(
		str("legacy").defaultKey().matching(pvePattern(`[acdn]{1,4}`)),
		str("order").withFormat("pve-qm-bootdev-list"),
	)
	watchdogFormat = opt(
		str("model").defaultKey().oneOf("i6300esb", "ib700"),
		str("action").oneOf("reset", "shutdown", "poweroff", "pause", "debug", "none"),
	)
	rngFormat = opt(
		str("source").defaultKey().oneOf("/dev/urandom", "/dev/random", "/dev/hwrng").req(),
		intParam("max_bytes"), intParam("period"),
	)
	cicustomFormat = opt(
		str("meta").withFormat("pve-volume-id"), str("network").withFormat("pve-volume-id"),
		str("user").withFormat("pve-volume-id"), str("vendor").withFormat("pve-volume-id"),
	)
	sevFormat = opt(
		str("type").defaultKey().oneOf("std", "es", "snp").maxLen(3).req(),
		boolean("no-debug"), boolean("no-key-sharing"), boolean("allow-smt"), boolean("kernel-hashes"),
	)
	tdxFormat = opt(
		str("type").defaultKey().oneOf("tdx").req(), boolean("attestation").req(),
		atLeast("vsock-cid", 2), atLeast("vsock-port", 0),
	)
	hostpciFormat = opt(
		str("host").defaultKey().matching(pvePattern(pciAddr+`(;`+pciAddr+`)*`)),
		str("mapping").withFormat("pve-configid"),
		boolean("rombar"), str("romfile").matching(pvePattern(`[^,;]+`)),
		boolean("pcie"), boolean("x-vga"), boolean("legacy-igd"),
		str("mdev").matching(pvePattern(`[^/\.:]+`)),
		str("vendor-id").matching(pciIDRe), str("device-id").matching(pciIDRe),
		str("sub-vendor-id").matching(pciIDRe), str("sub-device-id").matching(pciIDRe),
		str("driver").oneOf("vfio", "keep"),
	)
	cpuFormat = opt(
		str("cputype").defaultKey(),
		str("reported-model").oneOf(cpuModels...),
		boolean("hidden"),
		str("hv-vendor-id").matching(pvePattern(`[a-zA-Z0-9]{1,12}`)),
		str("flags").matching(pvePattern(cpuFlagAny+`(;`+cpuFlagAny+`)*`)),
		integer("guest-phys-bits", 32, 64),
		str("phys-bits").withFormat("pve-phys-bits"),
	)

	// cpuModels are the CPU models QEMU knows (CPUConfig.pm's list for
	// x86_64, which PVE also uses for the reported-model enum), plus
	// host.
	cpuModels = strings.Fields(`486 pentium pentium2 pentium3 coreduo core2duo Conroe Penryn Nehalem
		Nehalem-IBRS Westmere Westmere-IBRS SandyBridge SandyBridge-IBRS IvyBridge IvyBridge-IBRS Haswell
		Haswell-IBRS Haswell-noTSX Haswell-noTSX-IBRS Broadwell Broadwell-IBRS Broadwell-noTSX
		Broadwell-noTSX-IBRS Skylake-Client Skylake-Client-IBRS Skylake-Client-noTSX-IBRS Skylake-Client-v4
		Skylake-Server Skylake-Server-IBRS Skylake-Server-noTSX-IBRS Skylake-Server-v4 Skylake-Server-v5
		Cascadelake-Server Cascadelake-Server-v2 Cascadelake-Server-noTSX Cascadelake-Server-v4
		Cascadelake-Server-v5 Cooperlake Cooperlake-v2 KnightsMill Icelake-Client Icelake-Client-noTSX
		Icelake-Server Icelake-Server-noTSX Icelake-Server-v3 Icelake-Server-v4 Icelake-Server-v5
		Icelake-Server-v6 Icelake-Server-v7 SapphireRapids SapphireRapids-v2 SapphireRapids-v3
		SapphireRapids-v4 GraniteRapids GraniteRapids-v2 GraniteRapids-v3 SierraForest SierraForest-v2
		SierraForest-v3 ClearwaterForest athlon phenom Opteron_G1 Opteron_G2 Opteron_G3 Opteron_G4
		Opteron_G5 EPYC EPYC-IBPB EPYC-v3 EPYC-v4 EPYC-v5 EPYC-Rome EPYC-Rome-v2 EPYC-Rome-v3 EPYC-Rome-v4
		EPYC-Rome-v5 EPYC-Milan EPYC-Milan-v2 EPYC-Milan-v3 EPYC-Genoa EPYC-Genoa-v2 EPYC-Turin kvm32 kvm64
		qemu32 qemu64 max host`)
	// builtinCPUModels are PVE's own models (x86-64-v2 …).
	builtinCPUModels = []string{"x86-64-v2", "x86-64-v2-AES", "x86-64-v3", "x86-64-v4"}
	// vmCPUFlags are the flags a VM's own cpu option may set (CPUFlags.pm).
	vmCPUFlags = []string{"aes", "amd-no-ssb", "amd-ssbd", "hv-evmcs", "hv-tlbflush", "ibpb", "md-clear",
		"nested-virt", "pcid", "pdpe1gb", "spec-ctrl", "ssbd", "virt-ssbd"}
)

// qemuOptions is the VM configuration: every option of the config
// endpoints, in the schema's order.
var qemuOptions = []param{
	boolean("acpi"),
	str("affinity").withFormat("pve-cpuset"),
	str("agent").withProps(agentFormat),
	boolean("allow-ksm"),
	str("amd-sev").withFormat("pve-qemu-sev-fmt"),
	str("arch").oneOf("x86_64", "aarch64"),
	str("args"),
	str("audio0").withProps(audioFormat),
	boolean("autostart"),
	atLeast("balloon", 0),
	str("bios").oneOf("seabios", "ovmf"),
	str("boot").withFormat("pve-qm-boot"),
	str("bootdisk").withFormat("pve-qm-bootdisk").matching(pvePattern(`(ide|sata|scsi|virtio)\d+`)),
	str("cdrom").withFormat("pve-qm-ide"),
	str("cicustom").withFormat("pve-qm-cicustom"),
	str("cipassword"),
	str("citype").oneOf("configdrive2", "nocloud", "opennebula"),
	boolean("ciupgrade"),
	str("ciuser"),
	atLeast("cores", 1),
	str("cpu").withFormat("pve-vm-cpu-conf"),
	{name: "cpulimit", kind: kNumber, min: 0, max: 128, hasMin: true},
	integer("cpuunits", 1, 262144),
	str("description").maxLen(8192),
	str("efidisk0").withProps(efidiskFormat),
	boolean("freeze"),
	str("hookscript").withFormat("pve-volume-id"),
	str("hostpci").withFormat("pve-qm-hostpci").upTo(maxHostPCI),
	str("hotplug").withFormat("pve-hotplug-features"),
	str("hugepages").oneOf("any", "2", "1024"),
	str("ide").withProps(ideFormat).upTo(maxIDE),
	str("intel-tdx").withFormat("pve-qemu-tdx-fmt"),
	str("ipconfig").withFormat("pve-qm-ipconfig").upTo(maxNets),
	str("ivshmem").withProps(ivshmemFormat),
	boolean("keephugepages"),
	str("keyboard").oneOf("de", "de-ch", "da", "en-gb", "en-us", "es", "fi", "fr", "fr-be", "fr-ca", "fr-ch",
		"hu", "is", "it", "ja", "lt", "mk", "nl", "no", "pl", "pt", "pt-br", "sv", "sl", "tr"),
	boolean("kvm"),
	boolean("localtime"),
	str("lock").oneOf("backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete",
		"suspending", "suspended"),
	str("machine").withProps(machineFormat),
	str("memory").withFormat("memory"),
	{name: "migrate_downtime", kind: kNumber, hasMin: true},
	atLeast("migrate_speed", 0),
	str("name").withFormat("dns-name"),
	str("nameserver").withFormat("address-list"),
	str("net").withFormat("pve-qm-net").upTo(maxNets),
	boolean("numa"),
	str("numa").withProps(numaFormat).upTo(maxNUMA),
	boolean("onboot"),
	str("ostype").oneOf("other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11",
		"l24", "l26", "solaris"),
	str("parallel").matching(pvePattern(`/dev/parport\d+|/dev/usb/lp\d+`)).upTo(maxParallel),
	boolean("protection"),
	boolean("reboot"),
	str("rng0").withFormat("pve-qm-rng"),
	str("sata").withProps(sataFormat).upTo(maxSATA),
	str("scsi").withProps(scsiFormat).upTo(maxSCSI),
	str("scsihw").oneOf("lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"),
	str("searchdomain"),
	str("serial").matching(pvePattern(`(/dev/.+|socket)`)).upTo(maxSerial),
	integer("shares", 0, 50000),
	str("smbios1").withFormat("pve-qm-smbios1").maxLen(512),
	atLeast("smp", 1),
	atLeast("sockets", 1),
	str("spice_enhancements").withProps(spiceFormat),
	str("sshkeys").withFormat("urlencoded"),
	str("startdate").matching(pvePattern(`(now|\d{4}-\d{1,2}-\d{1,2}(T\d{1,2}:\d{1,2}:\d{1,2})?)`)),
	str("startup").withFormat("pve-startup-order"),
	boolean("tablet"),
	str("tags").withFormat("pve-tag-list"),
	boolean("tdf"),
	boolean("template"),
	str("tpmstate0").withProps(tpmstateFormat),
	str("unused").withProps(unusedFormat).upTo(maxUnused),
	str("usb").withProps(usbFormat).upTo(maxUSB),
	atLeast("vcpus", 1),
	str("vga").withProps(vgaFormat),
	str("virtio").withProps(virtioFormat).upTo(maxVirtio),
	str("virtiofs").withProps(virtiofsFormat).upTo(maxVirtiofs),
	str("vmgenid").matching(pvePattern(`(?:` + uuidRe + `|[01])`)),
	str("vmstatestorage").withFormat("pve-storage-id"),
	str("watchdog").withFormat("pve-qm-watchdog"),
}

// qemuOption finds the schema of a configuration key (net0, scsi3, …).
func qemuOption(key string) (param, bool) { return lookupParam(qemuOptions, key) }

// Checks of the formats qemu-server and pve-storage register by name.
var (
	volumeIDRe  = regexp.MustCompile(`(?i)^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$`)
	diskSizeRe  = regexp.MustCompile(`^(\d+(\.\d+)?)([KMGT](?:iB)?)?$`)
	cpusetRe    = regexp.MustCompile(`^\s*(\d+)(?:-(\d+))?\s*$`)
	startupRe   = regexp.MustCompile(`^(?:(?:order=)?\d+|up=\d+|down=\d+)$`)
	physBitsRe  = regexp.MustCompile(`^(host|\d{1,2})$`)
	bootdevBase = regexp.MustCompile(`^(net|usb|hostpci)(\d+)$`)
)

func checkVolumeID(v string) error {
	if !volumeIDRe.MatchString(v) {
		return fmt.Errorf("unable to parse volume ID '%s'", v)
	}
	return nil
}

func init() {
	registerPropFormat("pve-qm-smbios1", smbios1Format, nil)
	registerPropFormat("pve-qm-boot", bootFormat, nil)
	registerPropFormat("pve-qm-watchdog", watchdogFormat, nil)
	registerPropFormat("pve-qm-rng", rngFormat, nil)
	registerPropFormat("pve-qm-cicustom", cicustomFormat, nil)
	registerPropFormat("pve-qemu-sev-fmt", sevFormat, nil)
	registerPropFormat("pve-qemu-tdx-fmt", tdxFormat, nil)
	registerPropFormat("pve-qm-hostpci", hostpciFormat, nil)
	registerPropFormat("pve-qm-ide", ideFormat, nil)
	registerPropFormat("pve-vm-cpu-conf", cpuFormat, validateVMCPU)

	maps.Copy(namedFormats, map[string]func(string) error{
		"pve-volume-id": checkVolumeID,
		"pve-volume-id-or-qm-path": func(v string) error {
			if v == "none" || v == "cdrom" || strings.HasPrefix(v, "/") {
				return nil
			}
			return checkVolumeID(v)
		},
		"pve-volume-id-or-absolute-path": func(v string) error {
			if strings.HasPrefix(v, "/") {
				return nil
			}
			return checkVolumeID(v)
		},
		"disk-size": func(v string) error {
			if !diskSizeRe.MatchString(v) {
				return fmt.Errorf("value does not look like a valid disk size: %s", v)
			}
			return nil
		},
		"pve-hotplug-features": func(v string) error {
			if v == "0" || v == "1" {
				return nil
			}
			for _, f := range splitList(v) {
				if !slices.Contains([]string{"network", "disk", "cpu", "memory", "usb", "cloudinit"}, f) {
					return fmt.Errorf("invalid hotplug feature '%s'", f)
				}
			}
			return nil
		},
		"pve-cpuset": func(v string) error {
			for _, part := range strings.Split(v, ",") {
				m := cpusetRe.FindStringSubmatch(part)
				if m == nil {
					return fmt.Errorf("unable to parse cpuset option")
				}
				from, _ := strconv.Atoi(m[1])
				if to, err := strconv.Atoi(m[2]); err == nil && to < from {
					return fmt.Errorf("unable to parse cpuset option")
				}
			}
			return nil
		},
		"pve-startup-order": func(v string) error {
			for _, part := range strings.Split(v, ",") {
				if strings.TrimSpace(part) != "" && !startupRe.MatchString(part) {
					return fmt.Errorf("unable to parse startup options")
				}
			}
			return nil
		},
		"pve-phys-bits": func(v string) error {
			n, err := strconv.Atoi(v)
			if !physBitsRe.MatchString(v) || err == nil && (n < 8 || n > 64) {
				return fmt.Errorf("value must be an integer between 8 and 64 or 'host'")
			}
			return nil
		},
		"pve-qm-bootdisk": func(v string) error {
			if !isDriveName(v) {
				return fmt.Errorf("invalid boot disk '%s'", v)
			}
			return nil
		},
		"pve-qm-bootdev": func(v string) error {
			if isDriveName(v) && v != "efidisk0" && v != "tpmstate0" {
				return nil
			}
			if m := bootdevBase.FindStringSubmatch(v); m != nil {
				if p, ok := qemuOption(v); ok && p.indexed > 0 {
					return nil
				}
			}
			return fmt.Errorf("invalid boot device '%s'", v)
		},
	})
}

// isDriveName is is_valid_drivename: a drive key (unused ones excepted).
func isDriveName(k string) bool {
	if k == "efidisk0" || k == "tpmstate0" {
		return true
	}
	p, ok := qemuOption(k)
	return ok && p.props != nil && (p.name == "ide" || p.name == "sata" || p.name == "scsi" || p.name == "virtio")
}

// validateVMCPU is qemu-server's validate_vm_cpu_conf: the model must
// exist (the emulator has no custom models), the flags must be ones a VM
// may set, and reported-model belongs to custom models only.
func validateVMCPU(cpu map[string]string) error {
	t := cpu["cputype"]
	switch {
	case t == "":
		return fmt.Errorf("CPU is missing cputype")
	case strings.HasPrefix(t, "custom-"):
		return pveMessage(fmt.Sprintf("Custom cputype '%s' not found", strings.TrimPrefix(t, "custom-")))
	case !slices.Contains(cpuModels, t) && !slices.Contains(builtinCPUModels, t):
		return pveMessage(fmt.Sprintf("Built-in cputype '%s' is not defined (missing 'custom-' prefix?)", t))
	}
	if flags := cpu["flags"]; flags != "" {
		for _, f := range strings.Split(flags, ";") {
			if len(f) < 2 || !slices.Contains(vmCPUFlags, f[1:]) {
				return fmt.Errorf("VM-specific CPU flags must be a subset of: %s", strings.Join(vmCPUFlags, ", "))
			}
		}
	}
	if _, ok := cpu["reported-model"]; ok {
		return pveMessage("Property 'reported-model' not allowed in VM-specific CPU config.")
	}
	return nil
}

// pveMessage is an error worded as PVE words it, capitals and full stops
// included.
type pveMessage string

func (m pveMessage) Error() string { return string(m) }

// configValue is a stored option as the config endpoints answer it:
// qemu-server's parse_vm_config reads booleans and integers as numbers
// (check_type), everything else as the string written.
func configValue(key, v string) any {
	p, ok := qemuOption(key)
	if !ok {
		return v
	}
	switch p.kind {
	case kBoolean:
		b, _ := parseBool(v)
		return boolInt(b)
	case kInteger:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}

// cloudInitKeys are the options the cloud-init drive is made from
// (cloudinit_pending_properties); a change to one is pending for the
// drive until it is regenerated.
func cloudInitKey(k string) bool {
	switch k {
	case "citype", "ciuser", "cipassword", "ciupgrade", "cicustom", "searchdomain", "nameserver", "sshkeys", "name":
		return true
	}
	p, ok := qemuOption(k)
	return ok && (p.name == "ipconfig" || p.name == "net") && p.indexed > 0
}

// cloudInitOptions are the options GET …/cloudinit lists by their current
// value (PVE::API2::Qemu's $cloudinitoptions).
var cloudInitOptions = []string{"cicustom", "cipassword", "citype", "ciupgrade", "ciuser", "nameserver", "searchdomain", "sshkeys"}
