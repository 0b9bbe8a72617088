package enginetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/reconcile"
)

// The crash harness: a test binary re-executes itself as a child that
// applies a cloud and is killed with SIGKILL — by itself at a chosen step,
// or by the parent at a chosen moment — while the infrastructure (the
// host's kernel, an emulated cluster served by the parent) carries on.
// Packages whose tests use it call Main from TestMain.

// Environment of a child: which work it does, and where it kills itself.
const (
	envChild  = "HOLDFAST_CRASH_CHILD"   // the child's work: childEngine or childDeploy
	envKillAt = "HOLDFAST_CRASH_KILL_AT" // kill at this step (counted from 0); -1 never
	envKillOn = "HOLDFAST_CRASH_KILL_ON" // killStart (default) or killActed
	// Of a deploy child.
	envSpec     = "HOLDFAST_CRASH_SPEC"
	envState    = "HOLDFAST_CRASH_STATE"
	envRename   = "HOLDFAST_CRASH_CLOUD"
	envParallel = "HOLDFAST_CRASH_PARALLEL"
)

const (
	childEngine = "engine" // one engine applies a compiled cloud (the suite's KillAtEveryStep)
	childDeploy = "deploy" // `holdfast apply` of a spec, through deploy
)

// Kill points of a step.
const (
	killStart = "start" // its intent is written, the engine has not acted
	killActed = "acted" // the engine has acted, the outcome is not recorded
)

// Main runs the tests, or, in a child started by the crash harness, the
// child's apply. Call it from TestMain.
func Main(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case childEngine:
		os.Exit(report(engineChild()))
	case childDeploy:
		os.Exit(report(deployChild()))
	default:
		os.Exit(report(fmt.Errorf("%s=%q: no such child", envChild, os.Getenv(envChild))))
	}
}

func report(err error) int {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// killer counts steps and kills this process at the chosen one.
type killer struct {
	mu      sync.Mutex
	at      int
	on      string
	started int
}

func killerFromEnv() (*killer, error) {
	k := &killer{at: -1, on: os.Getenv(envKillOn)}
	if k.on == "" {
		k.on = killStart
	}
	if v := os.Getenv(envKillAt); v != "" {
		var err error
		if k.at, err = strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("%s: %w", envKillAt, err)
		}
	}
	return k, nil
}

// step is called as a step starts, and again (acted) once its engine work
// is done; it returns the step's number.
func (k *killer) step(point string, n int) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if point == killStart {
		n = k.started
		k.started++
	}
	if n == k.at && point == k.on {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return n
}

// progress kills at a step's start event (after its intent is written).
func (k *killer) progress(e reconcile.Event) {
	if e.Status == "start" {
		k.step(killStart, 0)
	}
}

func deployChild() error {
	k, err := killerFromEnv()
	if err != nil {
		return err
	}
	parallel, _ := strconv.Atoi(os.Getenv(envParallel))
	c, _, err := deploy.Open(os.Getenv(envSpec), deploy.Options{StateDir: os.Getenv(envState), Rename: os.Getenv(envRename),
		Parallel: parallel, LockWait: time.Minute, Progress: k.progress})
	if err != nil {
		return err
	}
	defer c.Close()
	p, err := c.Plan(context.Background())
	if err != nil {
		return err
	}
	_, err = c.Apply(context.Background(), p)
	return err
}

// DeployApply is a child doing `holdfast apply` of the spec at Spec, with
// state in State; it kills itself right after writing the intent of step
// KillAt (counted from 0, in the order steps start), or never if KillAt is
// negative.
type DeployApply struct {
	Spec, State string
	Rename      string // the cloud's name instead of the spec's
	Parallel    int
	KillAt      int
}

// Command is the child's command, not started.
func (d DeployApply) Command(t T) *exec.Cmd {
	t.Helper()
	return command(t, childDeploy, envSpec+"="+d.Spec, envState+"="+d.State, envRename+"="+d.Rename,
		envParallel+"="+strconv.Itoa(d.Parallel), envKillAt+"="+strconv.Itoa(d.KillAt))
}

func command(t T, child string, env ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("crash harness: %v", err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envChild+"="+child), env...)
	return cmd
}

// Killed reports whether a child that has run was killed with SIGKILL.
func Killed(cmd *exec.Cmd) bool {
	if cmd.ProcessState == nil {
		return false
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// KillLoop kills applies of one cloud, alternately right after a step's
// intent is written (a step chosen at random among those left) and from
// outside at a random moment of an apply (so inside engine work), until
// Kills of them died.
type KillLoop struct {
	Kills int
	// Full is how long a whole apply takes: random moments fall within it.
	Full time.Duration
	// Remaining is how many changes the cloud still needs.
	Remaining func() int
	// Restart takes the cloud back to where kills land in every phase; it
	// is called when an apply converged before the kills ran out.
	Restart func()
	// Child is an apply that kills itself at step killAt (never if < 0).
	Child func(killAt int) *exec.Cmd
}

// Run runs the loop with choices from rng and says how many kills landed
// at a step boundary and how many in flight.
func (l KillLoop) Run(t T, rng *rand.Rand) (atBoundary, inFlight int) {
	t.Helper()
	maxAttempts := 5 * l.Kills
	for attempt := 0; atBoundary+inFlight < l.Kills; attempt++ {
		if attempt > maxAttempts {
			t.Fatalf("only %d of %d kills landed in %d attempts", atBoundary+inFlight, l.Kills, maxAttempts)
		}
		remaining := l.Remaining()
		if remaining == 0 {
			l.Restart()
			continue
		}
		var cmd *exec.Cmd
		if attempt%2 == 0 {
			cmd = l.Child(rng.IntN(remaining))
			out, err := cmd.CombinedOutput()
			if err != nil && !Killed(cmd) {
				t.Fatalf("attempt %d: apply failed on its own: %v\n%s", attempt, err, out)
			}
			if Killed(cmd) {
				atBoundary++
			}
			continue
		}
		cmd = l.Child(-1)
		if err := cmd.Start(); err != nil {
			t.Fatalf("crash harness: %v", err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(l.Full) + 1))) // the fault's timing, not synchronisation
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		switch {
		case Killed(cmd):
			inFlight++
		case !cmd.ProcessState.Success():
			t.Fatalf("attempt %d: apply failed on its own", attempt)
		}
	}
	return atBoundary, inFlight
}
