package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/frontdoor"
)

// Health is what an agent reports.
type Health struct {
	// Version is the agent's (holdfast's) version.
	Version string `json:"version"`
	// Config is the version of the guest configuration it has applied
	// (Config.Version); empty before the first.
	Config string `json:"config"`
	// Services are the services it runs, by name ("overlay").
	Services map[string]Service `json:"services,omitempty"`
	// Problems are what keeps it from converging: the control plane out
	// of reach, a config that did not apply.
	Problems []string `json:"problems,omitempty"`
	// Routes are a front end's routes: which backends are up, whether it
	// has failed over.
	Routes []frontdoor.RouteHealth `json:"routes,omitempty"`
}

// Service is one service's health on the instance.
type Service struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"` // a line for holdfast status: "3 tunnels", "no tunnel to a lighthouse"
}

// OK reports whether the agent and all its services are well.
func (h Health) OK() bool {
	if len(h.Problems) > 0 {
		return false
	}
	for _, s := range h.Services {
		if !s.OK {
			return false
		}
	}
	return true
}

// Report is a Health as the control plane received it.
type Report struct {
	Health
	Received time.Time `json:"received"`
	From     string    `json:"from,omitempty"` // the address it came from; empty over the local socket
}

// StaleAfter is how old a report may be before holdfast status calls the
// agent silent: a few of the agent's polls (DefaultInterval).
const StaleAfter = 6 * DefaultInterval

// DefaultInterval is how often an agent asks for its configuration and
// reports its health.
const DefaultInterval = 5 * time.Second

// Reports keeps the last report of each instance's agent, one file each
// (reports/<site>/<name>.json).
type Reports struct{ dir string }

// NewReports is the reports of cloud under stateDir.
func NewReports(stateDir, cloud string) *Reports {
	return &Reports{dir: filepath.Join(Dir(stateDir, cloud), "reports")}
}

func (r *Reports) path(id compile.ID) string {
	return filepath.Join(r.dir, id.Site, id.Name+".json")
}

// Put keeps rep as the instance's latest.
func (r *Reports) Put(id compile.ID, rep Report) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path(id)), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(r.path(id), b, 0o600)
}

// Get is the instance's latest report; false when its agent never reported.
func (r *Reports) Get(id compile.ID) (Report, bool, error) {
	var rep Report
	b, err := os.ReadFile(r.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return rep, false, nil
	}
	if err != nil {
		return rep, false, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, false, fmt.Errorf("%s: %w", r.path(id), err)
	}
	return rep, true, nil
}

// Forget drops the instance's report (it is gone).
func (r *Reports) Forget(id compile.ID) error {
	if err := os.Remove(r.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Summary is a report in a few words for holdfast status: "ok", the
// problems, "silent since …" or "no report".
func Summary(rep Report, ok bool, now time.Time) (state, detail string) {
	if !ok {
		return "unknown", "no report from its agent yet"
	}
	age := now.Sub(rep.Received).Round(time.Second)
	if age > StaleAfter {
		return "silent", fmt.Sprintf("last report %s ago", age)
	}
	if rep.OK() {
		return "ok", summarize(rep.Health)
	}
	return "unhealthy", summarize(rep.Health)
}

func summarize(h Health) string {
	var parts []string
	parts = append(parts, h.Problems...)
	for _, name := range slices.Sorted(maps.Keys(h.Services)) {
		s := h.Services[name]
		parts = append(parts, name+": "+s.Detail)
	}
	return strings.Join(parts, "; ")
}
