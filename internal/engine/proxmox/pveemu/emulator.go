// Package pveemu is an in-memory emulator of the Proxmox VE REST API
// (api2/json), for proving the proxmox engine where no PVE cluster exists.
//
// It serves the part of the API that the engine and third-party clients
// use (VMs and their whole configuration schema, nodes, the cluster,
// storage, pools, tasks and their logs, SDN, the firewall, HA, node
// networks) with PVE's real paths, parameter names, types and formats
// (taken from PVE's published API schema, see schema.go and qemuconf.go),
// request bodies and answers as pve-http-server reads and writes them
// (wire.go: forms and JSON, the {"data": ...} envelope, errors with their
// message in the status line), API-token authentication, UPID tasks that
// take real time, VM locks, and injected faults: an error rate, added
// latency, stuck tasks and dropped connections, all drawn from one seeded
// source so that a run is repeatable. NewServer serves it as pveproxy
// does: HTTPS (SelfSignedCertificate) and HTTP/1.1 only.
//
// State is in memory and the Emulator is safe for concurrent use. Tasks
// advance in real time: a task's effects (a clone's lock released, a VM
// running) apply when its duration has passed, as seen by the next
// request.
package pveemu

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// APIPrefix is where PVE serves its JSON API.
const APIPrefix = "/api2/json"

// Task types, as they appear in UPIDs; the keys of Config.Durations.
const (
	TaskClone    = "qmclone"
	TaskStart    = "qmstart"
	TaskStop     = "qmstop"
	TaskShutdown = "qmshutdown"
	TaskReboot   = "qmreboot"
	TaskDestroy  = "qmdestroy"
	TaskResize   = "resize"
	TaskConfig   = "qmconfig"
	TaskMigrate  = "qmigrate"
)

// DefaultDurations are how long tasks take unless Config.Durations says
// otherwise: roughly what a small VM takes on a real cluster.
var DefaultDurations = map[string]time.Duration{
	TaskClone:    2 * time.Second,
	TaskStart:    1 * time.Second,
	TaskStop:     500 * time.Millisecond,
	TaskShutdown: 2 * time.Second,
	TaskReboot:   3 * time.Second,
	TaskDestroy:  1 * time.Second,
	TaskResize:   500 * time.Millisecond,
	TaskConfig:   100 * time.Millisecond,
	// An offline migration copying a small VM's local disks to another
	// node; with only shared disks it is quicker.
	TaskMigrate: 5 * time.Second,
}

// Config configures an Emulator.
type Config struct {
	// Tokens maps API token IDs ("user@realm!tokenid") to their secrets.
	Tokens map[string]string
	// Seed makes fault injection and generated values (MACs, PIDs)
	// repeatable.
	Seed uint64
	// Durations overrides DefaultDurations per task type.
	Durations map[string]time.Duration
	// Faults to inject from the start; SetFaults changes them later.
	Faults Faults
}

// Faults are the failures the emulator injects. Rates are probabilities
// from 0 to 1. Injected errors and drops happen before a request is
// handled, so a failed request has had no effect.
type Faults struct {
	ErrorRate float64       // requests answered with a 5xx instead ("got timeout", proxy errors)
	DropRate  float64       // requests whose connection is closed without an answer
	Latency   time.Duration // added to every request
	StuckRate float64       // new tasks that never finish (their VM stays locked)
	// LostRate is the probability that a request is carried out but its
	// answer never arrives (the connection drops after the handler ran):
	// the caller cannot know whether its write happened.
	LostRate float64
}

// Stats counts what the emulator did, so tests can show that faults were
// really injected.
type Stats struct {
	Requests       int // authenticated or not
	InjectedErrors int
	Dropped        int
	StuckTasks     int
	Lost           int // answers dropped after the request took effect
	Tasks          int
}

// Emulator is an emulated PVE cluster; it is an http.Handler serving the
// API under APIPrefix.
type Emulator struct {
	mux *http.ServeMux
	// notImplemented answers a request no route takes.
	notImplemented http.HandlerFunc
	tokens         map[string]string
	durations      map[string]time.Duration

	mu     sync.Mutex
	rng    *rand.Rand
	faults Faults
	stats  Stats
	nodes  map[string]*node
	vms    map[int]*vm
	tasks  map[string]*task
	// running holds unfinished tasks; advance finishes those whose time
	// has come, in order of their end.
	running []*task
	pid     uint32

	sdn   sdnState          // SDN zones, vnets and subnets (sdn.go)
	fw    firewallState     // cluster and VM firewalls (firewall.go)
	ha    haState           // HA resources and rules (ha.go)
	net   netState          // node network interfaces (network.go)
	dc    map[string]string // datacenter.cfg (cluster.go)
	pools map[string]*pool  // resource pools (pools.go)

	storages map[string]*storage // storage.cfg (storage.go)

	consoles map[int]*pendingConsole // termproxies waiting for their client, by port (console.go)
}

var _ http.Handler = (*Emulator)(nil)

type node struct {
	name   string
	maxCPU int
	maxMem int64 // bytes
	born   time.Time
}

// Node describes a cluster node to add.
type Node struct {
	Name   string
	MaxCPU int   // default 16
	MaxMem int64 // bytes, default 64 GiB
}

// New returns an emulator with no nodes or VMs (add them with AddNode and
// AddTemplate) and the storage of a fresh install: local and local-lvm,
// neither shared (AddStorage adds more).
func New(cfg Config) *Emulator {
	e := &Emulator{
		tokens:    map[string]string{},
		durations: map[string]time.Duration{},
		rng:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		faults:    cfg.Faults,
		nodes:     map[string]*node{},
		vms:       map[int]*vm{},
		tasks:     map[string]*task{},
	}
	for k, v := range cfg.Tokens {
		e.tokens[k] = v
	}
	for k, v := range DefaultDurations {
		e.durations[k] = v
	}
	for k, v := range cfg.Durations {
		e.durations[k] = v
	}
	e.pid = 0x1000 + uint32(e.rng.IntN(0x10000))
	for _, s := range defaultStorages {
		if err := e.addStorage(s); err != nil {
			panic(err) // the defaults are valid
		}
	}
	e.mux = http.NewServeMux()
	for _, r := range slices.Concat(routes, configRoutes, nodeRoutes, clusterRoutes, taskRoutes, poolRoutes,
		sdnRoutes, firewallRoutes, haRoutes, networkRoutes, storageRoutes, migrateRoutes, consoleRoutes) {
		e.mux.HandleFunc(r.method+" "+APIPrefix+r.path, e.serve(r))
	}
	// The console's WebSocket is no JSON call (console.go).
	e.mux.HandleFunc("GET "+APIPrefix+"/nodes/{node}/qemu/{vmid}/vncwebsocket", e.vncWebsocket)
	// Anything else is authenticated, then refused as PVE refuses a path
	// it has no handler for.
	e.notImplemented = e.serve(route{})
	e.mux.HandleFunc("/", e.notImplemented)
	return e
}

// AddNode adds a cluster node.
func (e *Emulator) AddNode(n Node) error {
	if !nodeRe.MatchString(n.Name) {
		return fmt.Errorf("node name %q is not a valid PVE node name", n.Name)
	}
	if n.MaxCPU == 0 {
		n.MaxCPU = 16
	}
	if n.MaxMem == 0 {
		n.MaxMem = 64 << 30
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.nodes[n.Name]; dup {
		return fmt.Errorf("node %q exists", n.Name)
	}
	e.nodes[n.Name] = &node{name: n.Name, maxCPU: n.MaxCPU, maxMem: n.MaxMem, born: time.Now()}
	return nil
}

// SetFaults replaces the faults injected from now on.
func (e *Emulator) SetFaults(f Faults) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = f
}

// Stats reports the counts so far.
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

// route is one endpoint: its method, path under APIPrefix, the parameters
// the schema allows, and the handler, which runs with e.mu held.
type route struct {
	method, path string
	params       []param
	handle       func(e *Emulator, c *call) (any, error)
}

// routes is the API surface the emulator serves.
var routes = []route{
	{"GET", "/version", nil, (*Emulator).getVersion},
	{"GET", "/nodes", nil, (*Emulator).getNodes},
	{"GET", "/cluster/resources", paramsResources, (*Emulator).getResources},
	{"GET", "/cluster/nextid", paramsNextID, (*Emulator).getNextID},
	{"POST", "/nodes/{node}/qemu", paramsCreate, (*Emulator).postCreate},
	{"POST", "/nodes/{node}/qemu/{vmid}/clone", paramsClone, (*Emulator).postClone},
	{"GET", "/nodes/{node}/qemu/{vmid}/config", paramsConfigGet, (*Emulator).getConfig},
	{"POST", "/nodes/{node}/qemu/{vmid}/config", paramsConfigPost, (*Emulator).postConfig},
	{"PUT", "/nodes/{node}/qemu/{vmid}/config", paramsConfigSet, (*Emulator).putConfig},
	{"PUT", "/nodes/{node}/qemu/{vmid}/resize", paramsResize, (*Emulator).putResize},
	{"GET", "/nodes/{node}/qemu/{vmid}/status/current", paramsVM, (*Emulator).getStatus},
	{"POST", "/nodes/{node}/qemu/{vmid}/status/start", paramsStart, powerHandler(TaskStart)},
	{"POST", "/nodes/{node}/qemu/{vmid}/status/stop", paramsStop, powerHandler(TaskStop)},
	{"POST", "/nodes/{node}/qemu/{vmid}/status/shutdown", paramsShutdown, powerHandler(TaskShutdown)},
	{"POST", "/nodes/{node}/qemu/{vmid}/status/reboot", paramsReboot, powerHandler(TaskReboot)},
	{"DELETE", "/nodes/{node}/qemu/{vmid}", paramsDestroy, (*Emulator).deleteVM},
}

// pathNames lists the wildcards of a route's path ("{node}" -> "node").
func pathNames(path string) []string {
	var names []string
	for _, seg := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			names = append(names, strings.TrimSuffix(name, "}"))
		}
	}
	return names
}

// call is one request as a handler sees it.
type call struct {
	user   string            // the token ID the request authenticated as
	values map[string]string // path, query and form parameters
	now    time.Time
	// attrs are keys the answer carries beside "data" (PVE's "changes"
	// of a node's network index).
	attrs map[string]any
}

// apiError is an answer other than 200: PVE puts the message in the status
// line and, for the json format, in "message"; parameter errors go in
// "errors".
type apiError struct {
	status int
	msg    string
	errors map[string]string
	body   errorBody
}

// errorBody is what an error answer carries besides its status line.
type errorBody int

const (
	// envelope is the JSON formatter's {"data": null, "message": …,
	// "errors": …}: errors of an API handler or its parameters.
	envelope errorBody = iota
	// text is the bare message: errors pve-http-server raises before or
	// outside a handler (a body it will not read).
	text
	// none is an empty body: a refused login, or pveproxy failing to
	// reach a node.
	none
)

func (e *apiError) Error() string { return e.msg }

// fail is PVE's die: an HTTP 500 whose message ends in a newline.
func fail(format string, args ...any) error {
	return &apiError{status: http.StatusInternalServerError, msg: fmt.Sprintf(format, args...) + "\n"}
}

// paramError is PVE's raise_param_exc.
func paramError(errs map[string]string) error {
	return &apiError{status: http.StatusBadRequest, msg: "Parameter verification failed.\n", errors: errs}
}

// ServeHTTP refuses what pve-http-server refuses before any handler (a
// method it does not know), then dispatches. A path served for other
// methods only is PVE's 501 like any path it has no handler for (Go's mux
// would answer 405).
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete:
	default:
		writeError(w, r, &apiError{status: http.StatusNotImplemented, body: none,
			msg: fmt.Sprintf("method '%s' not available", r.Method)})
		return
	}
	if _, pattern := e.mux.Handler(r); pattern == "" {
		e.notImplemented(w, r)
		return
	}
	e.mux.ServeHTTP(w, r)
}

func (e *Emulator) serve(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.stats.Requests++
		f := e.faults
		drop := f.DropRate > 0 && e.rng.Float64() < f.DropRate
		injected := !drop && f.ErrorRate > 0 && e.rng.Float64() < f.ErrorRate
		lost := !drop && !injected && f.LostRate > 0 && e.rng.Float64() < f.LostRate
		kind := e.rng.IntN(2)
		if drop {
			e.stats.Dropped++
		}
		if injected {
			e.stats.InjectedErrors++
		}
		e.mu.Unlock()

		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if drop {
			dropConnection(w)
			return
		}
		if injected {
			// The two ways a busy PVE answers: a cluster filesystem lock
			// that timed out, and pveproxy failing to reach the node.
			if kind == 0 {
				writeError(w, r, &apiError{status: http.StatusInternalServerError, msg: "got timeout\n"})
			} else {
				writeError(w, r, &apiError{status: 595, body: none, msg: "Connection timed out"})
			}
			return
		}
		user, err := e.authenticate(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if rt.handle == nil {
			writeError(w, r, &apiError{status: http.StatusNotImplemented,
				msg: fmt.Sprintf("Method '%s %s' not implemented", r.Method, strings.TrimPrefix(r.URL.Path, APIPrefix))})
			return
		}
		values, err := requestValues(rt, r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		c := &call{user: user, values: values, now: time.Now()}
		e.mu.Lock()
		e.advance(c.now)
		data, err := rt.handle(e, c)
		if lost {
			e.stats.Lost++
		}
		e.mu.Unlock()
		if lost {
			dropConnection(w)
			return
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		body := map[string]any{"data": data}
		for k, v := range c.attrs {
			body[k] = v
		}
		writeJSON(w, body)
	}
}

// requestValues reads, normalizes and validates a request's parameters
// against its route, path parameters included, as PVE's rest_handler and
// JSON schema do.
func requestValues(rt route, r *http.Request) (map[string]string, error) {
	raw, err := readParams(r)
	if err != nil {
		return nil, err
	}
	dup := map[string]string{}
	for _, name := range pathNames(rt.path) {
		v := r.PathValue(name)
		if old, ok := raw[name]; ok && old != nil && !sameScalar(old, v) {
			dup[name] = "duplicate parameter (already defined in URI) with conflicting values!"
		}
		raw[name] = v
	}
	if len(dup) > 0 {
		return nil, paramError(dup)
	}
	values, errs := normalize(rt.params, raw)
	for k, msg := range validate(rt.params, values) {
		if _, typeErr := errs[k]; !typeErr {
			errs[k] = msg
		}
	}
	if len(errs) > 0 {
		return nil, paramError(errs)
	}
	return values, nil
}

// sameScalar reports whether a decoded parameter is the string s, as
// Perl's ne compares them.
func sameScalar(v any, s string) bool {
	switch v := v.(type) {
	case string:
		return v == s
	case json.Number:
		return string(v) == s
	}
	return false
}

// authenticate checks "Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET"
// and returns the token ID. As PVE's auth_handler does, it tells the
// client only that there was no credential or that it failed, never why.
func (e *Emulator) authenticate(r *http.Request) (string, error) {
	value, ok := authValue(r.Header.Get("Authorization"), "PVEAPIToken")
	if !ok {
		return "", &apiError{status: http.StatusUnauthorized, body: none, msg: "No ticket\n"}
	}
	failed := &apiError{status: http.StatusUnauthorized, body: none, msg: "Authentication failed!\n"}
	id, secret, ok := strings.Cut(value, "=")
	if !ok {
		return "", failed
	}
	want, known := e.tokens[id]
	if subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 || !known {
		return "", failed
	}
	return id, nil
}

// authValue is pve-http-server's extract_auth_value: the value after
// "KEY=" or "KEY " at the start of the header or after a space, up to a
// semicolon, URI-unescaped.
func authValue(header, key string) (string, bool) {
	for i := 0; ; {
		j := strings.Index(header[i:], key)
		if j < 0 {
			return "", false
		}
		j += i
		rest := header[j+len(key):]
		if (j == 0 || header[j-1] == ' ' || header[j-1] == '\t') && rest != "" && (rest[0] == '=' || rest[0] == ' ') {
			v, _, _ := strings.Cut(rest[1:], ";")
			if v == "" {
				return "", false
			}
			return percentDecode(strings.ReplaceAll(v, "+", "%2B")), true
		}
		i = j + len(key)
	}
}

func (e *Emulator) getNodes(c *call) (any, error) {
	out := []map[string]any{}
	for _, name := range e.nodeNames() {
		out = append(out, e.nodeStats(name, c.now))
	}
	return out, nil
}

// nodeStats is API2Tools' extract_node_stats, the entry of a node in GET
// /nodes and /cluster/resources.
func (e *Emulator) nodeStats(name string, now time.Time) map[string]any {
	n := e.nodes[name]
	return map[string]any{
		"node": name, "status": "online", "type": "node", "id": "node/" + name,
		"cpu": 0.02, "maxcpu": n.maxCPU, "mem": e.nodeMemUsed(name), "maxmem": n.maxMem,
		"disk": int64(12 << 30), "maxdisk": int64(100 << 30), "uptime": n.uptime(now), "level": "",
	}
}

func (e *Emulator) nodeNames() []string {
	names := make([]string, 0, len(e.nodes))
	for n := range e.nodes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (e *Emulator) checkNode(name string) error {
	if _, ok := e.nodes[name]; !ok {
		return fail("no such cluster node '%s'", name)
	}
	return nil
}

func (e *Emulator) getResources(c *call) (any, error) {
	typ := c.values["type"]
	out := []map[string]any{}
	if typ == "" {
		// Pools have no type of their own in the filter (PVE 9.1).
		for _, id := range e.poolIDs() {
			out = append(out, map[string]any{"id": "/pool/" + id, "type": "pool", "pool": id})
		}
	}
	if typ == "" || typ == "vm" {
		for _, id := range e.vmids() {
			v := e.vms[id]
			r := v.resource(c.now)
			delete(r, "pool")
			if p := e.poolOf(v); p != "" {
				r["pool"] = p
			}
			if state := e.haState(id); state != "" {
				r["hastate"] = state
			}
			out = append(out, r)
		}
	}
	if typ == "" || typ == "node" {
		for _, name := range e.nodeNames() {
			out = append(out, e.nodeStats(name, c.now))
		}
	}
	if typ == "" || typ == "storage" {
		// API2Tools' extract_storage_stats: each storage enabled on a
		// node, once per node.
		for _, name := range e.nodeNames() {
			for _, id := range slices.Sorted(maps.Keys(e.storages)) {
				st := e.storages[id]
				if !st.enabledOn(name) {
					continue
				}
				out = append(out, map[string]any{
					"id": "storage/" + name + "/" + id, "storage": id, "node": name, "type": "storage",
					"plugintype": st.typ, "status": "available", "shared": boolInt(st.shared),
					"content": strings.Join(st.content, ","), "maxdisk": st.size, "disk": e.storageUsed(st, name),
				})
			}
		}
	}
	return out, nil
}

func (e *Emulator) vmids() []int {
	ids := make([]int, 0, len(e.vms))
	for id := range e.vms {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// getNextID answers the lowest free VMID from 100 up. Like PVE it reserves
// nothing: two callers asking at once get the same answer.
func (e *Emulator) getNextID(c *call) (any, error) {
	if s, ok := c.values["vmid"]; ok {
		id, _ := strconv.Atoi(s)
		if _, taken := e.vms[id]; taken {
			return nil, paramError(map[string]string{"vmid": fmt.Sprintf("VM %d already exists", id)})
		}
		return strconv.Itoa(id), nil
	}
	for id := 100; ; id++ {
		if _, taken := e.vms[id]; !taken {
			// PVE answers the number as a JSON string.
			return strconv.Itoa(id), nil
		}
	}
}
