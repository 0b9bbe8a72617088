package spec_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		mib  int64
		err  string // substring of the error; "" = no error
		text string // String() of the result
	}{
		{in: "4096", mib: 4096, text: "4G"},
		{in: "512M", mib: 512, text: "512M"},
		{in: "512MiB", mib: 512, text: "512M"},
		{in: "512mb", mib: 512, text: "512M"},
		{in: "4G", mib: 4096, text: "4G"},
		{in: "4Gi", mib: 4096, text: "4G"},
		{in: "4GiB", mib: 4096, text: "4G"},
		{in: "4gb", mib: 4096, text: "4G"},
		{in: " 4 G ", mib: 4096, text: "4G"},
		{in: "1T", mib: 1 << 20, text: "1T"},
		{in: "2TiB", mib: 2 << 20, text: "2T"},
		{in: "1536", mib: 1536, text: "1536M"},
		{in: "0", mib: 0, text: "0M"}, // ParseSize allows 0; the YAML decoder refuses it
		{in: "4.5G", err: `unknown unit ".5G"`},
		{in: "4K", err: `unknown unit "K"`},
		{in: "4PB", err: `unknown unit "PB"`},
		{in: "G", err: "want a number"},
		{in: "", err: "want a number"},
		{in: "-1G", err: "want a number"},
		{in: "99999999999999999999", err: "value out of range"},
		{in: "4398046511104T", mib: 1 << 62, text: "4398046511104T"}, // the largest
		{in: "4398046511105T", err: "too large"},
	} {
		got, err := spec.ParseSize(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseSize(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("ParseSize(%q): %v", tc.in, err)
		case tc.err == "" && (got.MiB != tc.mib || got.String() != tc.text):
			t.Errorf("ParseSize(%q) = %d MiB %q, want %d MiB %q", tc.in, got.MiB, got, tc.mib, tc.text)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int
		err    string
	}{
		{in: "1000-1999", lo: 1000, hi: 1999},
		{in: " 1000 - 1999 ", lo: 1000, hi: 1999},
		{in: "443", lo: 443, hi: 443},
		{in: "5-5", lo: 5, hi: 5},
		{in: "1999-1000", err: "end is below start"},
		{in: "1000-", err: "want lo-hi"},
		{in: "-5", err: "want lo-hi"},
		{in: "1-2-3", err: "want lo-hi"},
		{in: "a-b", err: "want lo-hi"},
		{in: "", err: "want lo-hi"},
		{in: "99999999999999999999", err: "want lo-hi"},
	} {
		got, err := spec.ParseRange(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseRange(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("ParseRange(%q): %v", tc.in, err)
		case tc.err == "" && got != (spec.Range{Lo: tc.lo, Hi: tc.hi}):
			t.Errorf("ParseRange(%q) = %v, want %d-%d", tc.in, got, tc.lo, tc.hi)
		}
	}
	if r := (spec.Range{Lo: 10, Hi: 20}); !r.Contains(10) || !r.Contains(20) || r.Contains(9) || r.Contains(21) || r.String() != "10-20" {
		t.Errorf("Range 10-20: Contains/String wrong: %v", r)
	}
}

// TestValueSyntax: sizes, ranges, ports and port shorthands as written in
// YAML, with the position of each refusal.
func TestValueSyntax(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "sizes",
			yaml: header + `flavors:
  a: {cpus: 1, memory: 0}
  b: {cpus: 1, memory: "0G"}
  c: {cpus: 1, memory: 4.5G}
  d: {cpus: 1, memory: 9999999999999T}
  e: {cpus: 1, memory: [4G]}
  f: {cpus: 1, memory: 99999999999999999999}
  g: {cpus: 1, memory: 1G, disk: 32 GiB}
`,
			want: []string{
				`spec.yaml:4:24: flavor "a".memory: size must be positive, got "0"`,
				`spec.yaml:5:24: flavor "b".memory: size must be positive, got "0G"`,
				`spec.yaml:6:24: flavor "c".memory: size "4.5G": unknown unit ".5G" (use M, G or T)`,
				`spec.yaml:7:24: flavor "d".memory: size "9999999999999T" is too large`,
				`spec.yaml:8:24: flavor "e".memory: expected a size such as 4G or 4096, got a list`,
				`spec.yaml:9:24: flavor "f".memory: expected a size such as 4G or 4096, got number 99999999999999999999`,
			},
		},
		{
			name: "vmid ranges",
			yaml: header + `roles:
  a: {vmids: 2999-2000}
  b: {vmids: [1000, 1999]}
  c: {vmids: 1000-x}
  d: {vmids: 7000}
`,
			want: []string{
				`spec.yaml:4:14: role "a".vmids: range "2999-2000": end is below start`,
				`spec.yaml:5:14: role "b".vmids: expected a range such as 1000-1999, got a list`,
				`spec.yaml:6:14: role "c".vmids: range "1000-x": want lo-hi`,
			},
		},
		{
			name: "rule ports",
			yaml: header + `zones: {z: {type: iot, pinhole-allowed-from: [internet]}}
instances:
  i:
    vmid: 100
    zone: z
    ingress:
      - {from: internet, ports: 0}
      - {from: internet, ports: 65536}
      - {from: internet, ports: [1, 65535, "1-65535", " 8000 - 8100 "]}
      - {from: internet, ports: "8100-8000"}
      - {from: internet, ports: [80, [443]]}
      - {from: internet, ports: "0-10"}
      - {from: internet, ports: "65530-65536"}
      - {from: internet, ports: 99999999999999999999}
      - {from: internet, ports: {80: tcp}}
`,
			want: []string{
				`spec.yaml:9:33: instance "i".ingress[0].ports: port 0 is outside 1-65535`,
				`spec.yaml:10:33: instance "i".ingress[1].ports: port 65536 is outside 1-65535`,
				`spec.yaml:12:33: instance "i".ingress[3].ports: range "8100-8000": end is below start`,
				`spec.yaml:13:33: instance "i".ingress[4].ports: expected a port or range such as 443 or 8000-8100, got a list`,
				`spec.yaml:14:33: instance "i".ingress[5].ports: port 0-10 is outside 1-65535`,
				`spec.yaml:15:33: instance "i".ingress[6].ports: port 65530-65536 is outside 1-65535`,
				`spec.yaml:16:33: instance "i".ingress[7].ports: expected a port or range such as 443 or 8000-8100, got number 99999999999999999999`,
				`spec.yaml:17:33: instance "i".ingress[8].ports: expected a port or range such as 443 or 8000-8100, got a mapping`,
			},
		},
		{
			name: "served ports and their shorthand",
			yaml: header + `zones: {z: {type: iot}}
instances:
  i:
    vmid: 100
    zone: z
    ports: [1, 65535, "53/udp", "443/TCP", {port: 22}, 0, 65536, "53/sctp", "443/", "x", true, {port: 0}, {port: 65536}, {proto: udp}, {port: 80, proto: icmp}]
`,
			want: []string{
				`spec.yaml:8:56: instance "i".ports[5]: expected a port such as 443 or "53/udp", got "0"`,
				`spec.yaml:8:59: instance "i".ports[6]: expected a port such as 443 or "53/udp", got "65536"`,
				`spec.yaml:8:66: instance "i".ports[7]: port "53/sctp": protocol must be tcp or udp`,
				`spec.yaml:8:77: instance "i".ports[8]: port "443/": protocol must be tcp or udp`,
				`spec.yaml:8:85: instance "i".ports[9]: expected a port such as 443 or "53/udp", got "x"`,
				`spec.yaml:8:90: instance "i".ports[10]: expected a port such as 443 or "53/udp", got "true"`,
				`spec.yaml:8:103: instance "i".ports[11].port: 0 is out of range 1-65535`,
				`spec.yaml:8:114: instance "i".ports[12].port: 65536 is out of range 1-65535`,
				`spec.yaml:8:122: instance "i".ports[13]: missing required field "port"`,
				`spec.yaml:8:154: instance "i".ports[14].proto: "icmp" is not one of tcp, udp`,
			},
		},
	})

	t.Run("decoded values", func(t *testing.T) {
		s, _ := mustLoad(t, header+`zones: {z: {type: iot, pinhole-allowed-from: [internet]}}
flavors:
  f: {cpus: 2, memory: 4096, disk: 32 GiB}
roles:
  r: {vmids: 7000}
instances:
  i:
    role: r
    zone: z
    memory: 1T
    ports: [443, "53/udp", {port: 22, description: ssh}]
    ingress: [{from: internet, ports: [80, "8000-8100"]}, {from: internet, ports: 443}]
`)
		if f := s.Flavors["f"]; f.Memory.MiB != 4096 || f.Disk.MiB != 32<<10 {
			t.Errorf("flavor = %+v", f)
		}
		if r := s.Roles["r"].VMIDs; r != (spec.Range{Lo: 7000, Hi: 7000}) {
			t.Errorf("single-number range = %v", r)
		}
		in := s.Instances["i"]
		if in.Memory == nil || in.Memory.MiB != 1<<20 || in.Disk != nil {
			t.Errorf("instance memory %v disk %v", in.Memory, in.Disk)
		}
		var ports []string
		for _, p := range in.Ports {
			ports = append(ports, p.Proto+":"+spec.Range{Lo: p.Port, Hi: p.Port}.String())
		}
		if want := []string{":443", "udp:53", ":22"}; !slices.Equal(ports, want) {
			t.Errorf("ports = %v, want %v", ports, want)
		}
		if p := in.Ports[0]; p.Pos.Line != 13 || p.Pos.Col != 13 {
			t.Errorf("shorthand port position = %v, want 13:13", p.Pos)
		}
		if got := in.Ingress[0].Ports.Strings(); !slices.Equal(got, []string{"80", "8000-8100"}) {
			t.Errorf("ingress ports = %v", got)
		}
		if got := in.Ingress[1].Ports.Strings(); !slices.Equal(got, []string{"443"}) {
			t.Errorf("single ingress port = %v", got)
		}
	})
}
