package spec_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

// FuzzLoad feeds arbitrary bytes to Parse and, when they parse, to
// Validate: neither may panic, and every finding must have a message and
// point into the file (line 0 only for a problem with the whole file).
//
//	go test -run='^$' -fuzz=FuzzLoad -fuzztime=5m ./internal/spec
func FuzzLoad(f *testing.F) {
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		f.Fatal(err)
	}
	seed := string(full)
	f.Add(full)
	for _, broken := range []string{
		strings.Replace(seed, "  srv:\n", "\tsrv:\n", 1), // syntax: a tab
		seed[:len(seed)/2], // cut off mid-way
		strings.Replace(seed, "sub-id: 10", "sub-id: ten", 1),                        // wrong type
		strings.Replace(seed, "access-to: [internet, dmz]", "acces-to: {dmz: 1}", 1), // unknown key
		strings.Replace(seed, "  old:", "  dmz:", 1),                                 // duplicate zone
		strings.Replace(seed, "peer: hobart", "peer: hobrat", 1),                     // dangling reference
		strings.Replace(seed, "depends-on: [fw]", "depends-on: [web2]", 1),           // cycle
		strings.Replace(seed, "cidr: 10.7.0.0/16", "cidr: 10.0.0.0/8", 1),            // overlaps
		strings.ReplaceAll(seed, "10.", "10.300."),                                   // bad addresses
		seed + "---\n" + seed,                         // everything twice
		"zones: &z {a: {type: iot, access-to: *z}}\n", // alias into the wrong type
		"cloud: {name: x, domain: y}\nsites: {s: {engine: local, nodes: [n]}}\ninstances: {i: {zone: z, networks: [~], ingress: [~], ports: [~]}}\n",
		"zones: {a: {type: !!bool yes, sub-id: !!int x, vlan: 0x10, cidr: !!binary AAAA}}\n",
		"",
		"~",
		"- [",
	} {
		if broken == seed {
			f.Fatalf("a broken variant equals the seed: testdata/full.yaml changed under it")
		}
		f.Add([]byte(broken))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "fuzz.yaml"
		s, diags := spec.Parse(file, data)
		checkFindings(t, file, diags)
		if s == nil {
			if !diags.HasErrors() {
				t.Fatal("Parse returned no spec and no error")
			}
			return
		}
		// Validate what the CLI validates (a spec that parsed cleanly), but
		// also a partial one: importers and future callers may hand it
		// anything Parse can return, and it must not panic on it either.
		vd := spec.Validate(s)
		checkFindings(t, file, vd)
		again := spec.Validate(s)
		if !slices.Equal(vd, again) {
			t.Fatalf("Validate is not deterministic:\n%v\n---\n%v", vd, again)
		}
	})
}

func checkFindings(t *testing.T, file string, diags spec.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		switch {
		case d.Message == "":
			t.Fatalf("finding without a message at %v", d.Pos)
		case d.Pos.File != file:
			t.Fatalf("finding in file %q, want %q: %v", d.Pos.File, file, d)
		case d.Pos.Line < 0 || d.Pos.Line == 0 && d.Pos.Col != 0 || d.Pos.Line > 0 && d.Pos.Col < 1:
			t.Fatalf("finding at a bad position %d:%d: %v", d.Pos.Line, d.Pos.Col, d)
		case d.Severity != spec.Error && d.Severity != spec.Warning:
			t.Fatalf("finding with severity %d: %v", d.Severity, d)
		}
	}
	if err := diags.Err(); (err != nil) != diags.HasErrors() || err != nil && err.Error() == "" {
		t.Fatalf("Err() = %v for %d findings", err, len(diags))
	}
}
