package enginetest_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/enginetest"
	"github.com/holdfast/holdfast/internal/engine/sim"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// The sim engine, without flaws, passes the suite.
func TestSim(t *testing.T) {
	enginetest.Run(t, simHarness(t, ""))
}

// Each flaw of the sim engine is a way real engines have gone wrong; the
// property that guards against it fails, so the suite catches it.
func TestSuiteCatchesBrokenEngines(t *testing.T) {
	for _, tc := range []struct{ flaw, property string }{
		{sim.FlawLazyRecords, "KillAtEveryStep"},
		{sim.FlawRewrite, "EnsureTwiceIsANoOp"},
		{sim.FlawStrictDelete, "DeleteWhatIsGone"},
		{sim.FlawBlind, "DriftIsNamedAndRepaired"},
		{sim.FlawNoRetry, "TransientFaultIsRetried"},
		{sim.FlawSharedNames, "ConcurrentAppliesNeverCollide"},
	} {
		t.Run(tc.flaw, func(t *testing.T) {
			h := simHarness(t, tc.flaw)
			if f := enginetest.Failures(t, h, tc.property); len(f) == 0 {
				t.Errorf("an engine with the flaw %s passes %s", tc.flaw, tc.property)
			}
		})
	}
}

// simHarness is the harness of a sim engine on its own infrastructure,
// with flaw switched on (none if empty).
func simHarness(t *testing.T, flaw string) enginetest.Harness {
	root := t.TempDir()
	t.Setenv(sim.RootEnv, root) // children inherit it
	if flaw != "" {
		if err := os.WriteFile(filepath.Join(root, "flaws"), []byte(flaw+"\n"), 0o600); err != nil {
			t.Fatalf("%v", err)
		}
	}
	return enginetest.Harness{
		Engine:  sim.Name,
		Desired: simDesired,
		Fingerprint: func(t enginetest.T) string {
			n, err := sim.Writes(root)
			if err != nil {
				t.Fatalf("sim: %v", err)
			}
			lines := []string{fmt.Sprintf("%d writes", n)}
			for _, o := range objects(t, root) {
				data, _ := json.Marshal(o)
				lines = append(lines, string(data))
			}
			return strings.Join(lines, "\n")
		},
		Check: func(t enginetest.T, clouds ...*compile.State) {
			t.Helper()
			want := map[string]bool{}
			for _, st := range clouds {
				for _, r := range st.Resources {
					want[st.Cloud+" "+r.ID.String()] = true
				}
			}
			seen := map[string]int{}
			for _, o := range objects(t, root) {
				key := o.Cloud + " " + o.ID.String()
				seen[key]++
				switch {
				case !want[key]:
					t.Errorf("orphan object %d: %s", o.Serial, key)
				case seen[key] > 1:
					t.Errorf("duplicate object %d: %s", o.Serial, key)
				case !o.Ready:
					t.Errorf("half-made object %d: %s", o.Serial, key)
				}
			}
			for key := range want {
				if seen[key] == 0 {
					t.Errorf("missing: %s", key)
				}
			}
		},
		Drift: func(t enginetest.T, st *compile.State) []compile.ID {
			t.Helper()
			var changed []compile.ID
			tampered := false
			for _, o := range objects(t, root) {
				if o.Cloud != st.Cloud {
					continue
				}
				file := filepath.Join(root, "objects", fmt.Sprintf("%d.json", o.Serial))
				switch {
				case o.Kind == compile.ResInstance && !tampered && len(o.Attrs) > 0:
					tampered = true
					for k := range o.Attrs {
						o.Attrs[k] = "tampered"
						break
					}
					data, _ := json.Marshal(o)
					if err := os.WriteFile(file, data, 0o600); err != nil {
						t.Fatalf("%v", err)
					}
				case o.Kind == compile.ResFirewall:
					if err := os.Remove(file); err != nil {
						t.Fatalf("%v", err)
					}
				default:
					continue
				}
				changed = append(changed, o.ID)
			}
			if len(changed) != 2 {
				t.Fatalf("the sim cloud has no instance or firewall to tamper with: %v", changed)
			}
			return changed
		},
		Fault: func(t enginetest.T, st *compile.State, permanent bool) (compile.ID, func()) {
			t.Helper()
			id := st.Resources[len(st.Resources)-1].ID
			kind := "transient 1000"
			if permanent {
				kind = "permanent"
			}
			file := filepath.Join(root, "faults")
			if err := os.WriteFile(file, []byte(st.Cloud+" "+id.String()+" "+kind+"\n"), 0o600); err != nil {
				t.Fatalf("%v", err)
			}
			return id, func() { os.Remove(file) }
		},
		RandomKills: 2,
	}
}

func objects(t enginetest.T, root string) []sim.Object {
	t.Helper()
	objs, err := sim.Objects(root)
	if err != nil {
		t.Fatalf("sim: %v", err)
	}
	return objs
}

// simDesired compiles a small cloud — a site, two zones, three instances,
// a route — for the sim engine, which the spec names like any other:
// registering is all an engine does to be one a spec may use.
func simDesired(t enginetest.T, cloud string) *compile.State {
	return enginetest.Compile(t, fmt.Sprintf(simSpec, cloud))
}

const simSpec = `
cloud: {name: %s, domain: sim.example}
sites: {s: {engine: sim, nodes: [n1, n2]}}
zones:
  app: {type: service, sub-id: 1, access-to: [internet]}
  db: {type: service, sub-id: 2, pinhole-allowed-from: [app]}
roles: {r: {vmids: 100-199}}
instances:
  a1: {role: r, zone: app, node: n1, ports: [8080]}
  a2: {role: r, zone: app, node: n2, ports: [8080]}
  d1: {role: r, zone: db, node: n1, ports: [5432], ingress: [{from: app, ports: [5432]}]}
`
