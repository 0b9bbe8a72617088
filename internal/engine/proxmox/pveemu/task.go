package pveemu

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// task is a PVE worker task, named by its UPID.
type task struct {
	upid, node, typ, id, user string
	pid, pstart               uint32
	start, end                time.Time
	stuck, done               bool
	exit                      string
	// holds is the VM whose config lock file the task holds while it
	// runs (nil for a clone, which marks its VM with lock: clone).
	holds *vm
	// finish applies the task's effects when it ends; its error becomes
	// the exit status.
	finish func(now time.Time) error
	// log is what the task writes as it runs, each line at the share of
	// its duration it has reached when the line is written (tasklog.go).
	log []taskLine
}

// startTask records a new task on node and returns its UPID, which has
// PVE's form UPID:node:pid:pstart:starttime:type:id:user: with the numbers
// in hex.
func (e *Emulator) startTask(c *call, node, typ, id string, holds *vm, finish func(time.Time) error) string {
	e.pid++
	n := e.nodes[node]
	t := &task{
		node: node, typ: typ, id: id, user: c.user,
		pid:    e.pid,
		pstart: uint32(c.now.Sub(n.born)/(10*time.Millisecond)) + 360000, // clock ticks since boot
		start:  c.now,
		end:    c.now.Add(e.durations[typ]),
		holds:  holds,
		finish: finish,
	}
	t.upid = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", node, t.pid, t.pstart, t.start.Unix(), typ, id, c.user)
	t.log = e.plannedLog(typ, id, c)
	if e.faults.StuckRate > 0 && e.rng.Float64() < e.faults.StuckRate {
		t.stuck = true
		e.stats.StuckTasks++
	}
	e.stats.Tasks++
	if holds != nil {
		holds.busy = t
	}
	e.tasks[t.upid] = t
	if !t.stuck {
		e.running = append(e.running, t)
	}
	return t.upid
}

// advance finishes, in order, every task whose end has come.
func (e *Emulator) advance(now time.Time) {
	slices.SortStableFunc(e.running, func(a, b *task) int { return a.end.Compare(b.end) })
	i := 0
	for ; i < len(e.running) && !e.running[i].end.After(now); i++ {
		t := e.running[i]
		if t.holds != nil && t.holds.busy == t {
			t.holds.busy = nil
		}
		t.exit = "OK"
		if err := t.finish(t.end); err != nil {
			t.exit = strings.TrimSuffix(err.Error(), "\n")
		}
		t.done = true
	}
	e.running = e.running[i:]
}
