package proxmox

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/internal/compile"
	// guest is this package's word for a VM found on the cluster.
	agentguest "github.com/holdfast/holdfast/internal/guest"
)

// The agent's delivery on Proxmox: PVE has no API to upload cloud-init
// snippets, so each VM is seeded through its SMBIOS serial (smbios1) with
// cloud-init's NoCloud datasource over HTTP, from the metadata service at
// the site's metadata-url, under a path that holds the VM's agent token
// (agentguest.NoCloudSeed). The serial holds ';' and '=', which smbios1 takes
// only base64-encoded (base64=1). The VM's UUID, which PVE set when it
// made the VM, is kept as it is: guests and licences key on it.

// smbios1 is a parsed smbios1 option: its keys, the string values
// base64-encoded or not as base64 says.
type smbios1 map[string]string

// smbiosStrings are the smbios1 keys base64=1 applies to (not uuid).
var smbiosStrings = []string{"family", "manufacturer", "product", "serial", "sku", "version"}

func parseSMBIOS1(v string) smbios1 {
	m := smbios1{}
	for _, part := range strings.Split(v, ",") {
		if k, val, ok := strings.Cut(part, "="); ok && k != "" {
			m[k] = val
		}
	}
	return m
}

// String prints the option as PVE's print_property_string does: keys
// sorted.
func (m smbios1) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func (m smbios1) encoded() bool { return m["base64"] == "1" }

// serial is the decoded serial; false when it is not set or not decodable.
func (m smbios1) serial() (string, bool) {
	v, ok := m["serial"]
	if !ok {
		return "", false
	}
	if !m.encoded() {
		return v, true
	}
	b, err := base64.StdEncoding.DecodeString(v)
	return string(b), err == nil
}

// withSerial is the option with serial set to s (base64-encoded, so every
// other string value is encoded too), or removed when s is empty.
func (m smbios1) withSerial(s string) smbios1 {
	out := maps.Clone(m)
	if !m.encoded() {
		for _, k := range smbiosStrings {
			if v, ok := out[k]; ok {
				out[k] = base64.StdEncoding.EncodeToString([]byte(v))
			}
		}
	}
	out["base64"] = "1"
	if s == "" {
		delete(out, "serial")
	} else {
		out["serial"] = base64.StdEncoding.EncodeToString([]byte(s))
	}
	if !slices.ContainsFunc(smbiosStrings, func(k string) bool { _, ok := out[k]; return ok }) {
		delete(out, "base64")
	}
	return out
}

// seedWanted reports whether the instance's VM is to carry a seed.
func (e *Engine) seedWanted(s *site) bool {
	return e.agents != nil && s.cfg.MetadataURL != ""
}

// seedIsCurrent reports whether serial is the instance's seed from the
// site's metadata service with its current token, comparing the token in
// constant time.
func (e *Engine) seedIsCurrent(s *site, in *compile.Instance, serial string) bool {
	base, token, ok := agentguest.ParseNoCloudSeed(serial)
	return ok && base == s.cfg.MetadataURL && e.agents.Equal(compile.InstanceID(in.Site, in.Name), token)
}

func isSeed(serial string) bool { _, _, ok := agentguest.ParseNoCloudSeed(serial); return ok }

// seedDrift says how a VM's smbios1 differs from the seed it should
// carry, without the token: drift is printed.
func (e *Engine) seedDrift(s *site, in *compile.Instance, current string) []string {
	serial, _ := parseSMBIOS1(current).serial()
	switch {
	case e.seedWanted(s) && serial == "":
		return []string{"smbios1 carries no agent seed"}
	case e.seedWanted(s) && !e.seedIsCurrent(s, in, serial):
		return []string{"smbios1's seed is not this instance's current one"}
	case !e.seedWanted(s) && isSeed(serial):
		return []string{"smbios1 carries an agent seed, want none (no metadata-url)"}
	}
	return nil
}

// desiredSMBIOS1 is the smbios1 the VM must have, given its current one;
// changed is false when it has it already.
func (e *Engine) desiredSMBIOS1(s *site, in *compile.Instance, current string) (want string, changed bool) {
	if len(e.seedDrift(s, in, current)) == 0 {
		return current, false
	}
	m := parseSMBIOS1(current)
	if !e.seedWanted(s) {
		return m.withSerial("").String(), true
	}
	token := e.agents.Token(compile.InstanceID(in.Site, in.Name))
	return m.withSerial(agentguest.NoCloudSeed(s.cfg.MetadataURL, token)).String(), true
}
