package tappaas

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

// The fuzz targets check more than "no panic": whatever the importer
// accepts must encode, load back without errors and encode the same; the
// validator must not panic on it, nor reject any rule it contains.

func FuzzImportZones(f *testing.F) {
	data, err := os.ReadFile(filepath.Join(fixtureDir(f), "zones.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"srv": {"type": "Service", "typeId": "2", "subId": "10", "vlantag": 210, "ip": "10.2.10.0/24", "access-to": ["internet"]}}`))
	f.Add([]byte(`{"_README": {"isolation_invariant": {"rule": "(cams)"}}, "cams": {"type": "IoT", "subId": 30, "pinhole-allowed-from": []}}`))
	f.Add([]byte(`{"vpn": {"type": "Overlay", "state": "Manual", "vlantag": 0, "ip": "100.64.0.0/10", "DHCP-start": 5}}`))
	f.Add([]byte(`{"a": {"type": "Management", "typeId": 7, "SSID": null, "x": [1]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, r, err := ImportFiles(File{Name: "zones.json", Data: data}, nil, Options{})
		checkImport(t, s, r, err)
	})
}

// fuzzZones has the zones the module fixtures use, and an isolated and an
// overlay zone, in TAPPaaS's format: small, so that each run is cheap.
const fuzzZones = `{
  "_README": {"isolation_invariant": {"rule": "Tier-4 isolation zones (iotCams) MUST NEVER appear in access-to."}},
  "mgmt": {"type": "Management", "state": "Manual", "typeId": "0", "subId": "0", "vlantag": 0, "ip": "10.0.0.0/24", "bridge": "lan",
           "access-to": ["internet", "srv", "srvHome", "home", "iotCams", "dmz"], "pinhole-allowed-from": []},
  "netbird": {"type": "Overlay", "state": "Manual", "typeId": "7", "subId": "0", "vlantag": 0, "ip": "100.64.0.0/10", "bridge": "lan"},
  "srv": {"type": "Service", "state": "Inactive", "typeId": "2", "subId": "0", "vlantag": 200, "ip": "10.2.0.0/24", "bridge": "lan",
          "access-to": ["internet", "dmz"], "pinhole-allowed-from": ["dmz"]},
  "srvHome": {"type": "Service", "state": "Active", "typeId": "2", "subId": "10", "vlantag": 210, "ip": "10.2.10.0/24", "bridge": "lan",
              "access-to": ["internet", "dmz"], "pinhole-allowed-from": ["home"]},
  "home": {"type": "Client", "state": "Active", "typeId": "3", "subId": "10", "vlantag": 310, "ip": "10.3.10.0/24", "bridge": "lan",
           "access-to": ["internet", "srvHome"], "pinhole-allowed-from": []},
  "iotCams": {"type": "IoT", "state": "Active", "typeId": "4", "subId": "30", "vlantag": 430, "ip": "10.4.30.0/24", "bridge": "lan",
              "access-to": [], "pinhole-allowed-from": ["srvHome"]},
  "dmz": {"type": "DMZ", "state": "Mandatory", "typeId": "6", "subId": "10", "vlantag": 610, "ip": "10.6.0.0/24", "bridge": "lan",
          "access-to": ["internet"], "pinhole-allowed-from": ["internet"]}
}`

func FuzzImportModule(f *testing.F) {
	zones := []byte(fuzzZones)
	for _, path := range moduleFiles(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"vmname": "m", "zone0": "srvHome", "zone1": "dmz", "trunks1": "ALL", "ingress": [{"from": "home", "ports": ["1:2"], "protocol": "ICMP"}]}`))
	f.Add([]byte(`{"vmname": "m", "vmid": "100", "ports": [{"port": "70000"}], "config": {"cluster:vm": {"imageType": "iso", "image": 9, "cloudInit": "maybe"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, r, err := ImportFiles(File{Name: "zones.json", Data: zones},
			[]File{{Name: "modules/m.json", Data: data}}, Options{})
		checkImport(t, s, r, err)
	})
}

func checkImport(t *testing.T, s *spec.Spec, r *Report, err error) {
	t.Helper()
	if r == nil {
		t.Fatal("nil report")
	}
	_ = r.String()
	if err != nil {
		if s != nil {
			t.Fatal("a spec returned with an error")
		}
		return
	}
	// No rule the validator rejects may survive the import.
	rulesAt := map[spec.Pos]bool{}
	for _, in := range s.Instances {
		for _, r := range slices.Concat(in.Ingress, in.Egress) {
			rulesAt[r.Pos] = true
		}
	}
	for _, d := range spec.Validate(s) {
		if d.Severity == spec.Error && rulesAt[d.Pos] {
			t.Fatalf("a rejected rule was emitted: %s", d)
		}
	}
	files, err := spec.Encode(s)
	if err != nil {
		t.Fatalf("imported spec does not encode: %v", err)
	}
	// One multi-document file loads like the directory Write would make.
	var all bytes.Buffer
	for _, name := range spec.EncodedFiles {
		if data, ok := files[name]; ok {
			all.WriteString("---\n")
			all.Write(data)
		}
	}
	back, diags := spec.Parse("spec.yaml", all.Bytes())
	if diags.HasErrors() {
		t.Fatalf("encoded spec does not load:\n%v\n%s", diags.Err(), all.Bytes())
	}
	again, err := spec.Encode(back)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(files, again) {
		t.Fatalf("encode -> load -> encode changed the spec:\n%s", all.Bytes())
	}
}
