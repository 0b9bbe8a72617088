package pveemu

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The task endpoints, as pve-manager's PVE/API2/Tasks.pm answers them:
// a node's task list (the archive of finished tasks, and the active ones),
// a task's status, and its log, which grows as the task runs.

var taskRoutes = []route{
	{"GET", "/nodes/{node}/tasks", paramsTaskList, (*Emulator).getTasks},
	{"GET", "/nodes/{node}/tasks/{upid}", paramsTask, (*Emulator).getTaskIndex},
	{"GET", "/nodes/{node}/tasks/{upid}/status", paramsTask, (*Emulator).getTaskStatus},
	{"GET", "/nodes/{node}/tasks/{upid}/log", paramsTaskLog, (*Emulator).getTaskLog},
}

var (
	paramsTaskList = []param{
		str("node").req().withFormat("pve-node"), atLeast("start", 0), atLeast("limit", 0),
		str("userfilter"), str("typefilter"), vmidParam("vmid"), boolean("errors"),
		str("source").oneOf("archive", "active", "all"), intParam("since"), intParam("until"),
		str("statusfilter").withFormat("pve-task-status-type-list"),
	}
	paramsTaskLog = []param{
		str("node").req().withFormat("pve-node"), str("upid").req(), atLeast("start", 0), atLeast("limit", 0),
		boolean("download"),
	}
)

func init() {
	namedFormats["pve-task-status-type"] = func(v string) error {
		if !slices.Contains([]string{"ok", "warning", "error", "unknown"}, strings.ToLower(v)) {
			return fmt.Errorf("invalid status type '%s'", v)
		}
		return nil
	}
}

// upidRe is PVE::UPID::decode's pattern.
var upidRe = pvePattern(`UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):`)

// lookupTask finds the task a request names, failing as PVE does: a UPID
// it cannot parse, or no such task on that node.
func (e *Emulator) lookupTask(c *call) (*task, error) {
	upid := c.values["upid"]
	if !upidRe.MatchString(upid) {
		return nil, paramError(map[string]string{"upid": "unable to parse worker upid"})
	}
	if err := e.checkNode(c.values["node"]); err != nil {
		return nil, err
	}
	t, ok := e.tasks[upid]
	if !ok || t.node != c.values["node"] {
		return nil, paramError(map[string]string{"upid": "no such task"})
	}
	return t, nil
}

// fields are the task's UPID decoded, with a token's name apart from its
// user (Tasks.pm's convert_token_task).
func (t *task) fields() map[string]any {
	out := map[string]any{
		"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
		"starttime": t.start.Unix(), "type": t.typ, "id": t.id, "user": t.user,
	}
	if user, token, ok := strings.Cut(t.user, "!"); ok {
		out["user"], out["tokenid"] = user, token
	}
	return out
}

func (e *Emulator) getTaskStatus(c *call) (any, error) {
	t, err := e.lookupTask(c)
	if err != nil {
		return nil, err
	}
	out := t.fields()
	out["status"] = "running"
	if t.done {
		out["status"] = "stopped"
		out["exitstatus"] = t.exit
	}
	return out, nil
}

func (e *Emulator) getTaskIndex(c *call) (any, error) {
	if _, err := e.lookupTask(c); err != nil {
		return nil, err
	}
	return []map[string]any{{"name": "log"}, {"name": "status"}}, nil
}

// statusType is PVE::UPID::normalize_status_type.
func statusType(status string) string {
	switch {
	case status == "":
		return "unknown"
	case status == "OK":
		return "ok"
	case warningsRe.MatchString(status):
		return "warning"
	case status == "unexpected status":
		return "unknown"
	}
	return "error"
}

var warningsRe = pvePattern(`WARNINGS: \d+`)

// getTasks is GET /nodes/{node}/tasks: by default the archive, which
// holds the finished tasks, newest first; source=active lists the running
// ones (status RUNNING), all both. The filters and the paging are
// Tasks.pm's, and the answer's "total" counts every match.
func (e *Emulator) getTasks(c *call) (any, error) {
	node := c.values["node"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	start, _ := strconv.Atoi(c.values["start"])
	limit := 50
	if l, ok := c.values["limit"]; ok {
		limit, _ = strconv.Atoi(l)
	}
	source := cmp.Or(c.values["source"], "archive")
	statuses := map[string]bool{"ok": true, "warning": true, "error": true, "unknown": true}
	errorsOnly := c.values["errors"] == "1"
	if f, ok := c.values["statusfilter"]; ok && !errorsOnly {
		statuses = map[string]bool{}
		for _, s := range splitList(f) {
			statuses[strings.ToLower(s)] = true
		}
	} else if errorsOnly {
		statuses["ok"] = false
	}
	var since, until *int64
	if v, ok := c.values["since"]; ok {
		n, _ := strconv.ParseInt(v, 10, 64)
		since = &n
	}
	if v, ok := c.values["until"]; ok {
		n, _ := strconv.ParseInt(v, 10, 64)
		until = &n
	}
	count := 0
	out := []map[string]any{}
	consider := func(t *task, status string) {
		user := t.user
		if u, _, ok := strings.Cut(user, "!"); ok {
			user = u
		}
		switch f := c.values["userfilter"]; {
		case f != "" && !strings.Contains(strings.ToLower(user), strings.ToLower(f)):
			return
		case c.values["typefilter"] != "" && t.typ != c.values["typefilter"]:
			return
		case c.values["vmid"] != "" && t.id != c.values["vmid"]:
			return
		case since != nil && t.start.Unix() < *since, until != nil && t.start.Unix() > *until:
			return
		case !statuses[statusType(status)]:
			return
		}
		count++
		if count <= start || limit <= 0 {
			return
		}
		entry := t.fields()
		if t.done {
			entry["endtime"] = t.end.Unix()
			entry["status"] = t.exit
		} else {
			entry["status"] = "RUNNING"
		}
		out = append(out, entry)
		limit--
	}
	var active, archive []*task
	for _, t := range e.tasks {
		if t.node != node {
			continue
		}
		if t.done {
			archive = append(archive, t)
		} else {
			active = append(active, t)
		}
	}
	if source == "active" || source == "all" {
		slices.SortFunc(active, func(a, b *task) int { return a.start.Compare(b.start) })
		for _, t := range active {
			consider(t, "")
		}
	}
	if source != "active" {
		// The index is appended as tasks end and read backwards.
		slices.SortFunc(archive, func(a, b *task) int {
			return cmp.Or(b.end.Compare(a.end), strings.Compare(b.upid, a.upid))
		})
		for _, t := range archive {
			consider(t, t.exit)
		}
	}
	if count > 0 {
		c.attrs = map[string]any{"total": count} // PVE leaves out a total of 0
	}
	return out, nil
}

// getTaskLog is GET …/tasks/{upid}/log: the lines written so far, each
// {n, t} numbered from 1, from start, at most limit (50; 0 for all), and
// the line count as "total". A finished task's last line is PVE's "TASK
// OK" or "TASK ERROR: …"; an empty log reads as "no content".
func (e *Emulator) getTaskLog(c *call) (any, error) {
	t, err := e.lookupTask(c)
	if err != nil {
		return nil, err
	}
	if c.values["download"] == "1" {
		if _, s := c.values["start"]; s {
			return nil, fail("'download' cannot be used together with 'start' or 'limit' parameters")
		}
		if _, l := c.values["limit"]; l {
			return nil, fail("'download' cannot be used together with 'start' or 'limit' parameters")
		}
	}
	lines := t.logLines(c.now)
	start, _ := strconv.Atoi(c.values["start"])
	limit := 50
	if l, ok := c.values["limit"]; ok {
		limit, _ = strconv.Atoi(l)
	}
	out := []map[string]any{}
	for i, line := range lines {
		if i < start || limit > 0 && len(out) >= limit {
			continue
		}
		out = append(out, map[string]any{"n": i + 1, "t": line})
	}
	count := len(lines)
	if count == 0 {
		count = 1
		out = append(out, map[string]any{"n": 1, "t": "no content"})
	}
	c.attrs = map[string]any{"total": count}
	return out, nil
}

// taskLine is a line of a task's log, written when the task has done the
// share at of its work.
type taskLine struct {
	at   float64
	text string
}

// logLines are the lines the task has written by now.
func (t *task) logLines(now time.Time) []string {
	progress := 1.0
	if !t.done {
		total := t.end.Sub(t.start)
		progress = 0
		if total > 0 {
			progress = float64(now.Sub(t.start)) / float64(total)
		}
		if t.stuck {
			progress = math.Min(progress, 0.5) // a task hangs half-way
		}
	}
	var out []string
	for _, l := range t.log {
		if l.at <= progress {
			out = append(out, l.text)
		}
	}
	if t.done {
		if t.exit == "OK" {
			out = append(out, "TASK OK")
		} else {
			out = append(out, "TASK ERROR: "+t.exit)
		}
	}
	return out
}

// plannedLog is what a task of type typ will write, as qemu-server's
// workers print it: a clone names each drive it copies and reports a full
// copy's progress, a config update lists its parameters, a start
// regenerates the cloud-init drive. Storage plugins' own messages are not
// emulated.
func (e *Emulator) plannedLog(typ, id string, c *call) []taskLine {
	vmid, _ := strconv.Atoi(id)
	v := e.vms[vmid]
	switch typ {
	case TaskClone:
		if v != nil {
			return cloneLog(v, c.values)
		}
	case TaskConfig:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(c.values)) {
			switch k {
			case "node", "vmid", "digest", "background_delay", "import-working-storage":
				continue
			case "cipassword":
				parts = append(parts, "-"+k, "<hidden>")
			default:
				parts = append(parts, "-"+k, c.values[k])
			}
		}
		return []taskLine{{0, fmt.Sprintf("update VM %d: %s", vmid, strings.Join(parts, " "))}}
	case TaskStart:
		if v != nil && slices.ContainsFunc(slices.Collect(maps.Values(v.conf)), func(val string) bool {
			return strings.Contains(val, fmt.Sprintf("vm-%d-cloudinit", vmid))
		}) {
			return []taskLine{{0, "generating cloud-init ISO"}}
		}
	}
	return nil
}

// cloneLog is clone_disk's output for each drive of the source that is
// copied (CD-ROMs other than the cloud-init drive are not): the drive,
// then, for a full copy of a disk, qemu-img's progress in tenths.
func cloneLog(src *vm, values map[string]string) []taskLine {
	full := src.conf["template"] != "1"
	if f, ok := values["full"]; ok && !full {
		full = f == "1"
	}
	var drives []string
	for _, k := range slices.Sorted(maps.Keys(src.conf)) {
		if !isDriveName(k) {
			continue
		}
		d, err := parsePropertyString(driveFormat(k), k, src.conf[k])
		if err != nil || driveIsCDROM(d) && !driveIsCloudInit(d["file"]) {
			continue
		}
		drives = append(drives, k)
	}
	var out []taskLine
	mode := "linked"
	if full {
		mode = "full"
	}
	for i, k := range drives {
		d, _ := parsePropertyString(driveFormat(k), k, src.conf[k])
		share, at := 1/float64(len(drives)), float64(i)/float64(len(drives))
		out = append(out, taskLine{at, fmt.Sprintf("create %s clone of drive %s (%s)", mode, k, d["file"])})
		if !full || driveIsCloudInit(d["file"]) {
			continue
		}
		size, _ := parseSize(d["size"])
		for p := 0; p <= 100; p += 10 {
			out = append(out, taskLine{at + share*float64(p)/100, fmt.Sprintf("transferred %s of %s (%d.00%%)",
				renderBytes(size*int64(p)/100), renderBytes(size), p)})
		}
	}
	return out
}

// renderBytes is PVE::Format::render_bytes with the precision of 1 that
// qemu-img's progress lines use.
func renderBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, u := float64(n), 0
	if n > 1023 {
		u = int(math.Log(v) / math.Log(1024))
		v /= math.Pow(1024, float64(u))
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}
