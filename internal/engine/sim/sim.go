// Package sim is an engine over a simulated infrastructure: a directory in
// which every object Holdfast makes is a file. It exists to prove the
// engine contract cheaply — the conformance suite's own tests run it, and
// its flaws (deliberate bugs, switched on by a file) show that the suite
// catches broken engines. It is also the smallest example of an engine:
// one folder that registers itself.
//
// The infrastructure lives in $HOLDFAST_SIM_ROOT (shared by every cloud
// and process that names it, like a cluster), else in the engine's state
// directory. Under it:
//
//	objects/<serial>.json  one object per resource made, named by a serial
//	                       number the infrastructure hands out (as a
//	                       cluster hands out VM IDs), so that an engine that
//	                       loses track of what it made duplicates it
//	serial                 the last serial handed out
//	log                    one line per write, for counting writes
//	faults                 failures to inject: "<cloud> <resource> transient <n>" or "... permanent"
//	flaws                  bugs to switch on, one word a line (see Flaw*)
package sim

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
)

// Name is the engine's name.
const Name = "sim"

// RootEnv names the directory holding the simulated infrastructure.
const RootEnv = "HOLDFAST_SIM_ROOT"

func init() {
	engine.Register(Name, engine.Driver{New: func(cfg engine.Config) (engine.Engine, error) { return New(cfg) }})
}

// Flaws are bugs the engine can be told to have, each one a way real
// engines have gone wrong, so that tests can show the conformance suite
// fails them.
const (
	// FlawLazyRecords: the engine finds its objects through its own
	// records, which it writes only when closed; a crash loses them and the
	// next apply makes the objects again.
	FlawLazyRecords = "lazy-records"
	// FlawRewrite: Ensure writes an object even when it is as desired.
	FlawRewrite = "rewrite"
	// FlawStrictDelete: deleting what is gone fails.
	FlawStrictDelete = "strict-delete"
	// FlawBlind: Observe never reports drift.
	FlawBlind = "blind"
	// FlawNoRetry: transient failures are reported as permanent.
	FlawNoRetry = "no-retry"
	// FlawSharedNames: objects are found by resource ID alone, so two
	// clouds on one infrastructure take each other's.
	FlawSharedNames = "shared-names"
)

// Object is one thing made on the infrastructure.
type Object struct {
	Serial int               `json:"serial"`
	Cloud  string            `json:"cloud"`
	ID     compile.ID        `json:"id"`
	Kind   string            `json:"kind"`
	Site   string            `json:"site,omitempty"`
	Attrs  map[string]string `json:"attrs"`
	// Ready is false while the object is half-made: instances are made in
	// two writes, so that a crash can fall between them.
	Ready bool `json:"ready"`
}

// Engine is the sim engine.
type Engine struct {
	cloud    string
	root     string
	stateDir string
	desired  map[compile.ID]compile.Resource
	flaws    map[string]bool

	mu      sync.Mutex
	records map[compile.ID]int // resource ID -> serial, with FlawLazyRecords
}

var _ engine.Engine = (*Engine)(nil)

// New creates a sim engine.
func New(cfg engine.Config) (*Engine, error) {
	root := cmp.Or(os.Getenv(RootEnv), filepath.Join(cfg.StateDir, "infra"))
	if err := os.MkdirAll(filepath.Join(root, "objects"), 0o700); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	e := &Engine{cloud: cfg.Cloud, root: root, stateDir: cfg.StateDir, desired: map[compile.ID]compile.Resource{}, flaws: map[string]bool{}}
	if cfg.Desired != nil {
		for _, r := range cfg.Desired.Resources {
			e.desired[r.ID] = r
		}
	}
	words, err := readLines(filepath.Join(root, "flaws"))
	if err != nil {
		return nil, err
	}
	for _, w := range words {
		e.flaws[w] = true
	}
	if e.flaws[FlawLazyRecords] {
		e.records = map[compile.ID]int{}
		data, err := os.ReadFile(e.recordsFile())
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sim: %w", err)
		}
		if len(data) > 0 {
			if err := json.Unmarshal(data, &e.records); err != nil {
				return nil, fmt.Errorf("sim: records: %w", err)
			}
		}
	}
	return e, nil
}

func (e *Engine) recordsFile() string { return filepath.Join(e.stateDir, "records.json") }

// Close writes the records a lazy engine keeps.
func (e *Engine) Close() error {
	if e.records == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	data, err := json.Marshal(e.records)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(e.stateDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(e.recordsFile(), data, 0o600)
}

// Observe lists the cloud's objects, with what differs from the desired
// state as drift.
func (e *Engine) Observe(ctx context.Context) ([]engine.Observed, error) {
	var out []engine.Observed
	err := e.locked(func() error {
		objs, err := Objects(e.root)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if !e.mine(o) {
				continue
			}
			obs := engine.Observed{Resource: compile.NewResource(o.ID, nil, o.Attrs)}
			if d, ok := e.desired[o.ID]; ok {
				obs.Deps = d.Deps
				if !e.flaws[FlawBlind] {
					obs.Drift = drift(o, d)
				}
			}
			out = append(out, obs)
		}
		return nil
	})
	return out, err
}

// mine says whether o is one of the cloud's objects the engine knows of.
func (e *Engine) mine(o Object) bool {
	if e.records != nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.records[o.ID] == o.Serial
	}
	return o.Cloud == e.cloud
}

func drift(o Object, d compile.Resource) []string {
	var out []string
	if !o.Ready {
		out = append(out, "half-made")
	}
	for _, k := range slices.Sorted(maps.Keys(d.Attrs)) {
		if got, ok := o.Attrs[k]; !ok {
			out = append(out, fmt.Sprintf("%s is missing, want %q", k, d.Attrs[k]))
		} else if got != d.Attrs[k] {
			out = append(out, fmt.Sprintf("%s is %q, want %q", k, got, d.Attrs[k]))
		}
	}
	return out
}

// Ensure makes r's object exist as desired.
func (e *Engine) Ensure(ctx context.Context, r compile.Resource) error {
	if err := e.fault(r.ID); err != nil {
		return err
	}
	return e.locked(func() error {
		o, found, err := e.find(r.ID)
		if err != nil {
			return err
		}
		want := Object{Serial: o.Serial, Cloud: e.cloud, ID: r.ID, Kind: r.Kind, Site: r.Site, Attrs: r.Attrs, Ready: true}
		if want.Attrs == nil {
			want.Attrs = map[string]string{}
		}
		if found && o.Ready && maps.Equal(o.Attrs, want.Attrs) && !e.flaws[FlawRewrite] {
			return nil
		}
		if !found {
			if want.Serial, err = e.nextSerial(); err != nil {
				return err
			}
			if r.Kind == compile.ResInstance {
				// Instances are made in two writes, like a guest cloned and
				// then configured.
				half := want
				half.Ready, half.Attrs = false, map[string]string{}
				if err := e.write(half); err != nil {
					return err
				}
			}
		}
		if err := e.write(want); err != nil {
			return err
		}
		if e.records != nil {
			e.mu.Lock()
			e.records[r.ID] = want.Serial
			e.mu.Unlock()
		}
		return nil
	})
}

// Delete removes r's objects; deleting what is gone succeeds and writes
// nothing.
func (e *Engine) Delete(ctx context.Context, r compile.Resource) error {
	if err := e.fault(r.ID); err != nil {
		return err
	}
	return e.locked(func() error {
		objs, err := Objects(e.root)
		if err != nil {
			return err
		}
		gone := true
		for _, o := range objs {
			if o.ID != r.ID || !e.owns(o) {
				continue
			}
			gone = false
			if err := e.remove(o); err != nil {
				return err
			}
		}
		if gone && e.flaws[FlawStrictDelete] {
			return fmt.Errorf("sim: %s: no such object", r.ID)
		}
		if e.records != nil {
			e.mu.Lock()
			delete(e.records, r.ID)
			e.mu.Unlock()
		}
		return nil
	})
}

// owns says whether o belongs to the cloud, as the engine tells.
func (e *Engine) owns(o Object) bool {
	if e.flaws[FlawSharedNames] {
		return true
	}
	if e.records != nil {
		return e.mine(o)
	}
	return o.Cloud == e.cloud
}

// find returns the object made for resource id.
func (e *Engine) find(id compile.ID) (Object, bool, error) {
	objs, err := Objects(e.root)
	if err != nil {
		return Object{}, false, err
	}
	for _, o := range objs {
		if o.ID == id && e.owns(o) {
			return o, true, nil
		}
	}
	return Object{}, false, nil
}

// fault fails as the faults file says for the cloud's resource id.
func (e *Engine) fault(id compile.ID) error {
	var err error
	lockErr := e.locked(func() error {
		file := filepath.Join(e.root, "faults")
		lines, rerr := readLines(file)
		if rerr != nil {
			return rerr
		}
		changed := false
		for i, l := range lines {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != e.cloud || f[1] != id.String() {
				continue
			}
			switch f[2] {
			case "permanent":
				err = fmt.Errorf("sim: %s: refused by the infrastructure", id)
			case "transient":
				n, _ := strconv.Atoi(f[3])
				if n <= 0 {
					continue
				}
				lines[i] = fmt.Sprintf("%s %s transient %d", f[0], f[1], n-1)
				changed = true
				err = fmt.Errorf("sim: %s: %w", id, syscall.EBUSY)
				if !e.flaws[FlawNoRetry] {
					err = engine.Retryable(err)
				}
			}
		}
		if changed {
			return os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		}
		return nil
	})
	return cmp.Or(lockErr, err)
}

// locked runs f holding the infrastructure's lock, which serializes every
// process and goroutine working on it.
func (e *Engine) locked(f func() error) error {
	l, err := os.OpenFile(filepath.Join(e.root, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	defer l.Close()
	if err := unix.Flock(int(l.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("sim: lock: %w", err)
	}
	return f()
}

func (e *Engine) nextSerial() (int, error) {
	file := filepath.Join(e.root, "serial")
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("sim: %w", err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	n++
	if err := os.WriteFile(file, []byte(strconv.Itoa(n)), 0o600); err != nil {
		return 0, fmt.Errorf("sim: %w", err)
	}
	return n, nil
}

func (e *Engine) write(o Object) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	file := filepath.Join(e.root, "objects", strconv.Itoa(o.Serial)+".json")
	// Atomic, as an infrastructure's API is: an object is there or not.
	if err := os.WriteFile(file+".tmp", data, 0o600); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return e.logWrite("write", o)
}

func (e *Engine) remove(o Object) error {
	if err := os.Remove(filepath.Join(e.root, "objects", strconv.Itoa(o.Serial)+".json")); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return e.logWrite("remove", o)
}

func (e *Engine) logWrite(op string, o Object) error {
	f, err := os.OpenFile(filepath.Join(e.root, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %d %s %s\n", op, o.Serial, o.Cloud, o.ID)
	return err
}

// Objects lists the objects on the infrastructure at root, by serial.
func Objects(root string) ([]Object, error) {
	entries, err := os.ReadDir(filepath.Join(root, "objects"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sim: %w", err)
	}
	var out []Object
	for _, ent := range entries {
		if !strings.HasSuffix(ent.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, "objects", ent.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		var o Object
		if err := json.Unmarshal(data, &o); err != nil {
			return nil, fmt.Errorf("sim: %s: %w", ent.Name(), err)
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Object) int { return cmp.Compare(a.Serial, b.Serial) })
	return out, nil
}

// Writes counts the writes the infrastructure at root has seen.
func Writes(root string) (int, error) {
	lines, err := readLines(filepath.Join(root, "log"))
	return len(lines), err
}

func readLines(file string) ([]string, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := strings.TrimSpace(s.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, s.Err()
}
