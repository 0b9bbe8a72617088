package pveemu

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Section configs (PVE::SectionConfig), shared by SDN and HA.

// scObj is one section of a section config file: its type and options,
// values as PVE writes them (booleans 1/0; a list option one value a line).
type scObj struct {
	typ  string
	opts map[string]string
}

// scFile is a section config file: its sections by ID.
type scFile map[string]*scObj

func (f scFile) ids() []string { return slices.Sorted(maps.Keys(f)) }

func (f *scFile) put(id string, o *scObj) {
	if *f == nil {
		*f = scFile{}
	}
	(*f)[id] = o
}

func (f scFile) clone() scFile {
	out := scFile{}
	for id, o := range f {
		out[id] = o.clone()
	}
	return out
}

// digest is the SHA1 of the file as written, which PVE reports and checks.
func (f scFile) digest() string {
	var b strings.Builder
	for _, id := range f.ids() {
		o := f[id]
		fmt.Fprintf(&b, "%s: %s\n", o.typ, id)
		for _, k := range slices.Sorted(maps.Keys(o.opts)) {
			for _, v := range splitLines(o.opts[k]) {
				fmt.Fprintf(&b, "\t%s %s\n", k, v)
			}
		}
		b.WriteString("\n")
	}
	sum := sha1.Sum([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

func (o *scObj) clone() *scObj { return &scObj{typ: o.typ, opts: maps.Clone(o.opts)} }

// keys are the section's keys as PVE holds them, type included.
func (o *scObj) keys() []string {
	return append([]string{"type"}, slices.Sorted(maps.Keys(o.opts))...)
}

func (o *scObj) get(k string) (string, bool) {
	if o == nil {
		return "", false
	}
	if k == "type" {
		return o.typ, true
	}
	v, ok := o.opts[k]
	return v, ok
}

// json is the section as the API answers it.
func (o *scObj) json() map[string]any {
	out := map[string]any{"type": o.typ}
	for k, v := range o.opts {
		out[k] = scValue(k, v)
	}
	return out
}

// scNumeric are the options whose values PVE answers as JSON numbers
// (integers, and booleans as 1 or 0).
var scNumeric = map[string]bool{
	"mtu": true, "tag": true, "vrf-vxlan": true, "vxlan-port": true, "dp-id": true,
	"advertise-subnets": true, "bridge-disable-mac-learning": true, "disable-arp-nd-suppression": true,
	"exitnodes-local-routing": true, "vlanaware": true, "isolate-ports": true, "snat": true,
	"max_restart": true, "max_relocate": true, "failback": true, "strict": true, "disable": true,
}

// scListKeys are the options that hold a list, one value a line.
var scListKeys = map[string]bool{"dhcp-range": true}

func scValue(k, v string) any {
	switch {
	case scListKeys[k]:
		return splitLines(v)
	case scNumeric[k]:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}

func splitLines(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, "\n")
}

// checkSection is SectionConfig's check_config on a request's parameters
// (less skip): each must be an option of the section's type (options, true
// marking the required ones), and on create every required option must be
// there. Values were checked by the schema; booleans are stored as 1 or 0,
// integers in decimal.
func checkSection(options map[string]bool, params []param, values map[string]string, skip []string, create bool) (map[string]string, error) {
	opts := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if slices.Contains(skip, k) {
			continue
		}
		if _, ok := options[k]; !ok {
			return nil, fail("unexpected property '%s'", k)
		}
		v := values[k]
		p, _ := lookupParam(params, k)
		// An array's elements are stored one a line.
		if strings.Contains(v, "\r") || p.kind != kArray && strings.Contains(v, "\n") {
			return nil, fail("property contains a line feed")
		}
		switch p.kind {
		case kBoolean:
			b, _ := parseBool(v)
			v = strconv.Itoa(boolInt(b))
		case kInteger:
			n, _ := strconv.ParseInt(v, 10, 64)
			v = strconv.FormatInt(n, 10)
		case kString:
			if p.format == "pve-node-list" {
				// Stored as a set of node names.
				v = strings.Join(slices.Compact(slices.Sorted(slices.Values(splitList(v)))), ",")
			}
		}
		opts[k] = v
	}
	if create {
		for _, k := range slices.Sorted(maps.Keys(options)) {
			if _, ok := opts[k]; options[k] && !ok {
				return nil, fail("missing value for required option '%s'", k)
			}
		}
	}
	return opts, nil
}

// deleteOptions is SectionConfig's delete_from_config.
func deleteOptions(o *scObj, options map[string]bool, set map[string]string, list string) error {
	for _, k := range splitList(list) {
		required, ok := options[k]
		switch {
		case !ok:
			return fail("no such option '%s'", k)
		case required:
			return fail("unable to delete required option '%s'", k)
		}
		if _, both := set[k]; both {
			return fail("cannot set and delete property '%s' at the same time!", k)
		}
		delete(o.opts, k)
	}
	return nil
}

// assertDigest is PVE::Tools::assert_if_modified.
func assertDigest(current, given string) error {
	if given != "" && given != current {
		return fail("detected modified configuration - file changed by other user? Try again.")
	}
	return nil
}

// lockedErr is how an error raised inside PVE's cluster-wide config locks
// (lock_sdn_config, lock_ha_domain) reaches the caller: a plain 500
// "<what>: <error>", a parameter exception stringified with its status and
// per-parameter errors.
func lockedErr(what string, err error) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return fail("%s: %v", what, err)
	}
	msg := ae.msg
	if ae.status != http.StatusInternalServerError {
		msg = fmt.Sprintf("%d %s", ae.status, ae.msg)
	}
	for _, k := range slices.Sorted(maps.Keys(ae.errors)) {
		msg += k + ": " + ae.errors[k] + "\n"
	}
	return &apiError{status: http.StatusInternalServerError, msg: what + ": " + msg}
}

func oneParamError(name, msg string) error { return paramError(map[string]string{name: msg}) }
