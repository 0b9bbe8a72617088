package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/nsthread"
)

// Environment of the init. envInit is the marker the package init function
// looks for; envDir says where its configuration is. Both also identify an
// init in /proc/<pid>/environ.
const (
	envInit = reservedEnvPrefix + "INIT"
	envDir  = reservedEnvPrefix + "DIR"
)

const (
	startTimeout = 20 * time.Second          // Start gives up on an init that does not report
	stopGrace    = 5 * time.Second           // SIGTERM to SIGKILL (the init gives its children less)
	killWait     = 5 * time.Second           // SIGKILL to giving up
	pollEvery    = 10 * time.Millisecond     // how often waits look again
	lockPoll     = 20 * time.Millisecond     // how often a waiting Start or Stop tries the lock
	cgroupWait   = 20 * time.Second          // emptying and removing a cgroup (slow on a loaded host)
	initArg0     = "holdfast-container-init" // what ps shows for an init
)

// testHook, when set by a test, is called at each step of a Start; a test
// may cancel the Start's context or kill the process there.
var testHook func(step string)

func hook(step string) {
	if testHook != nil {
		testHook(step)
	}
}

// Start runs the container described by cfg and returns the host pid of its
// init. If the instance's init is already running in cfg.NetNS, Start
// returns its pid and changes nothing; reconfiguring is Stop then Start.
// Whatever an earlier, interrupted Start left behind is cleaned first.
func Start(ctx context.Context, cfg Config) (int, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	if err := checkNetNS(cfg.NetNS); err != nil {
		return 0, fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	if cfg.Rootfs != "" {
		if fi, err := os.Stat(cfg.Rootfs); err != nil || !fi.IsDir() {
			return 0, fmt.Errorf("container %q: rootfs %q is not a directory", cfg.Name, cfg.Rootfs)
		}
	}
	for _, b := range cfg.Binds {
		if fi, err := os.Stat(b.Source); err != nil || !fi.IsDir() {
			return 0, fmt.Errorf("container %q: bind source %q is not a directory", cfg.Name, b.Source)
		}
	}
	lock, err := lockDir(ctx, cfg.Dir)
	if err != nil {
		return 0, fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	defer lock.release()
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return 0, fmt.Errorf("container %q: %w", cfg.Name, err)
	}

	if rec, err := readPIDFile(cfg.Dir); err == nil && checkInit(rec, cfg.Dir) == nil {
		if ok, _ := inNetNS(rec.PID, cfg.NetNS); ok {
			return rec.PID, nil
		}
	}
	if err := cleanup(ctx, cfg.Dir, cfg.Cgroup); err != nil {
		return 0, fmt.Errorf("container %q: cleaning up before start: %w", cfg.Name, err)
	}
	pid, err := launch(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	return pid, nil
}

// launch starts a fresh init; the caller holds the lock and has cleaned up.
// On error it leaves no process and no cgroup.
func launch(ctx context.Context, cfg Config) (pid int, err error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	if err := prepareStart(cfg); err != nil {
		return 0, err
	}
	cg, err := findCgroups(cfg.Cgroup)
	if err != nil {
		return 0, err
	}
	undo = append(undo, func() { _ = cg.destroy(context.Background()) })
	if err := cg.create(cfg); err != nil {
		return 0, err
	}
	p, err := startInit(cfg)
	if err != nil {
		return 0, err
	}
	defer p.close()
	undo = append(undo, func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	hook("forked")
	if err := p.handshake(ctx, cfg, cg); err != nil {
		return 0, err
	}
	// Reap the init when it ends, should this process still be running;
	// otherwise it is reparented and reaped by the host's init.
	go func() { _ = p.cmd.Wait() }()
	return p.cmd.Process.Pid, nil
}

// prepareStart writes what must exist before the init starts: the configuration
// first, since it tells a later Stop which cgroup to remove, then the
// overlay's directories.
func prepareStart(cfg Config) error {
	conf, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(cfg.Dir, configFile), conf, 0o600); err != nil {
		return err
	}
	if cfg.Overlay == "" {
		return nil
	}
	// The upper layer's root is the container's "/": world-readable, like
	// any root directory.
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"", 0o700}, {"upper", 0o755}, {"work", 0o700}, {"merged", 0o755}} {
		if err := os.MkdirAll(filepath.Join(cfg.Overlay, d.name), d.mode); err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
	}
	return nil
}

// initProcess is a started init and this side of its start-up handshake.
type initProcess struct {
	cmd    *exec.Cmd
	goW    *os.File      // Start -> init: one byte, "go"
	status *statusReader // init -> Start: "ready", "ok" or "error ..."
}

func (p *initProcess) close() {
	p.goW.Close()
	p.status.f.Close()
}

// startInit forks the init in the instance's namespaces, its output going
// to the console file. The init waits for "go" before doing anything.
func startInit(cfg Config) (*initProcess, error) {
	console, err := os.OpenFile(filepath.Join(cfg.Dir, consoleFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer console.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	goR, goW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		goR.Close()
		goW.Close()
		return nil, err
	}

	cmd := &exec.Cmd{
		// /proc/self/exe still works when the binary on disk was replaced.
		Path:       "/proc/self/exe",
		Args:       []string{initArg0, cfg.Name},
		Env:        initEnv(cfg.Dir),
		Dir:        "/",
		Stdin:      devNull,
		Stdout:     console,
		Stderr:     console,
		ExtraFiles: []*os.File{goR, statusW}, // fds 3 and 4
		SysProcAttr: &syscall.SysProcAttr{
			// Its own session: the init outlives the command that started it
			// and no terminal's signals reach it.
			Setsid:     true,
			Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC,
		},
	}
	err = startInNetNS(cmd, cfg.NetNS)
	goR.Close()
	statusW.Close()
	if err != nil {
		goW.Close()
		statusR.Close()
		return nil, fmt.Errorf("starting init: %w", err)
	}
	return &initProcess{cmd: cmd, goW: goW, status: &statusReader{f: statusR, br: bufio.NewReader(statusR)}}, nil
}

// handshake takes a forked init to running: once it is ready, into the
// cgroup, then "go", then its "ok", then the pid file that later commands
// find it by.
func (p *initProcess) handshake(ctx context.Context, cfg Config, cg *cgroupSet) error {
	pid := p.cmd.Process.Pid
	if err := p.status.expect(ctx, "ready"); err != nil {
		return fmt.Errorf("init: %w%s", err, consoleTail(cfg.Dir))
	}
	hook("ready")
	if err := ctx.Err(); err != nil {
		return err
	}
	// Into the cgroup before "go": everything the init starts is limited,
	// and from here on every process of this instance is in the cgroup,
	// where a later cleanup finds it.
	if err := cg.add(pid); err != nil {
		return err
	}
	hook("cgroup")
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := p.goW.Write([]byte{'g'}); err != nil {
		return fmt.Errorf("init: %w%s", err, consoleTail(cfg.Dir))
	}
	p.goW.Close()
	hook("go")
	if err := p.status.expect(ctx, "ok"); err != nil {
		return fmt.Errorf("init: %w%s", err, consoleTail(cfg.Dir))
	}
	hook("ok")
	if err := ctx.Err(); err != nil {
		return err
	}
	info, err := readProc(pid)
	if err != nil {
		return err
	}
	if err := writePIDFile(cfg.Dir, pidRecord{PID: pid, Start: info.start}); err != nil {
		return err
	}
	hook("pidfile")
	return nil
}

// initEnv is the whole environment of an init: the marker, its state
// directory, and the Go runtime's diagnostic settings of this process (the
// init is the same binary). Nothing else of the caller's environment, which
// may hold secrets, reaches the container.
func initEnv(dir string) []string {
	env := []string{envInit + "=1", envDir + "=" + dir}
	for _, k := range []string{"GORACE", "GOTRACEBACK", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// startInNetNS starts cmd from an OS thread that has joined the network
// namespace at path; the child inherits it (and the thread's reduced
// capability bounding set).
func startInNetNS(cmd *exec.Cmd, path string) error {
	return onDisposableThread(func() error {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("opening netns: %w", err)
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("joining netns %s: %w", path, err)
		}
		dropBoundingCaps()
		return cmd.Start()
	})
}

// onDisposableThread runs fn on an OS thread of its own that ends when fn
// returns (see nsthread.Run).
func onDisposableThread(fn func() error) error { return nsthread.Run(fn) }

// unneededCaps are removed from the bounding set of the init and so of
// everything in the container: none is needed to run a service, each is a
// way to reach past the container.
var unneededCaps = []uintptr{
	unix.CAP_SYS_MODULE, unix.CAP_SYS_RAWIO, unix.CAP_SYS_BOOT, unix.CAP_SYS_TIME,
	unix.CAP_MAC_ADMIN, unix.CAP_MAC_OVERRIDE, unix.CAP_SYSLOG, unix.CAP_WAKE_ALARM,
	unix.CAP_BLOCK_SUSPEND, unix.CAP_AUDIT_CONTROL,
}

// dropBoundingCaps changes only the calling thread (the bounding set is per
// thread), which must be one that is never reused.
func dropBoundingCaps() {
	for _, c := range unneededCaps {
		_ = unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0) // EINVAL: the kernel does not know it
	}
}

// statusReader reads the init's status lines.
type statusReader struct {
	f  *os.File
	br *bufio.Reader
}

func (s *statusReader) expect(ctx context.Context, want string) error {
	stop := context.AfterFunc(ctx, func() { _ = s.f.SetReadDeadline(time.Now()) })
	defer stop()
	line, err := s.br.ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %q: %w", want, ctx.Err())
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("exited before it was %s", want)
		}
		return err
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return errors.New(msg)
	}
	if line != want {
		return fmt.Errorf("said %q, expected %q", line, want)
	}
	return nil
}

// consoleTail is the end of console.log, to explain a failed start.
func consoleTail(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, consoleFile))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 400 {
		b = b[len(b)-400:]
	}
	return "; console.log ends: " + strings.TrimSpace(string(b))
}

// Stop kills the whole container — its init and, with it, every process in
// its PID namespace and cgroup — waits until they are gone, and removes the
// cgroups and the state directory. Stopping a stopped or unknown instance
// succeeds. Only Dir and Cgroup of cfg are used; the cgroup recorded in
// Dir is removed too when it differs. Of Dir, Stop removes the files it
// knows; Dir itself goes only once empty, so that a mistaken Dir never
// costs anyone else's files.
func Stop(ctx context.Context, cfg Config) error {
	if !filepath.IsAbs(cfg.Dir) {
		return fmt.Errorf("container %q: dir %q is not an absolute path", cfg.Name, cfg.Dir)
	}
	var cgroups []string
	if cfg.Cgroup != "" {
		if err := validCgroup(cfg.Cgroup); err != nil {
			return fmt.Errorf("container %q: cgroup: %w", cfg.Name, err)
		}
		cgroups = append(cgroups, cfg.Cgroup)
	}
	lock, err := lockDir(ctx, cfg.Dir)
	if err != nil {
		return fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	defer lock.release()
	if err := cleanup(ctx, cfg.Dir, cgroups...); err != nil {
		return fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	if err := removeStateDir(cfg.Dir); err != nil {
		return fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	return nil
}

// removeStateDir removes the container's files from dir (with the
// temporary files of interrupted writes), then dir if nothing else is in
// it. The caller still holds the lock on the removed lock file; a waiter
// notices that it has gone (see lockDir).
func removeStateDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	ours := []string{configFile, pidFile, socketFile, consoleFile, lockFile}
	for _, e := range entries {
		name := e.Name()
		temp := slices.ContainsFunc(ours, func(f string) bool { return strings.HasPrefix(name, "."+f+".") })
		if slices.Contains(ours, name) || temp {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// cleanup stops the init recorded in dir, whatever its netns, empties and
// removes the given cgroups and the one recorded in dir, and forgets the
// pid. The caller holds the lock.
func cleanup(ctx context.Context, dir string, cgroups ...string) error {
	if rec, err := readPIDFile(dir); err == nil && checkInit(rec, dir) == nil {
		if err := terminate(ctx, rec); err != nil {
			return err
		}
	}
	if saved, err := readConfig(dir); err == nil && validCgroup(saved.Cgroup) == nil {
		cgroups = append(cgroups, saved.Cgroup)
	}
	seen := map[string]bool{}
	for _, rel := range cgroups {
		if seen[rel] {
			continue
		}
		seen[rel] = true
		cg, err := findCgroups(rel)
		if err != nil {
			return err
		}
		if err := cg.destroy(ctx); err != nil {
			return err
		}
	}
	for _, f := range []string{pidFile, socketFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// terminate asks the init to stop, then kills it, and waits until it is
// gone. The kernel kills the rest of its PID namespace when it dies.
func terminate(ctx context.Context, rec pidRecord) error {
	for _, step := range []struct {
		sig  unix.Signal
		wait time.Duration
	}{{unix.SIGTERM, stopGrace}, {unix.SIGKILL, killWait}} {
		if gone(rec) {
			return nil
		}
		if err := unix.Kill(rec.PID, step.sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signalling init %d: %w", rec.PID, err)
		}
		if waitUntil(ctx, step.wait, func() bool { return gone(rec) }) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return fmt.Errorf("init %d still running after SIGKILL", rec.PID)
}

// gone reports whether the process rec names has exited (a zombie counts:
// it runs nothing and holds nothing but its pid).
func gone(rec pidRecord) bool {
	info, err := readProc(rec.PID)
	return err != nil || info.start != rec.Start || info.state == 'Z' || info.state == 'X'
}

// waitUntil polls cond until it holds (true), or d or ctx runs out (false).
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollEvery):
		}
	}
}

// Inspect reports what it finds of the instance whose state directory is
// dir. It changes nothing. An instance that was never started or has been
// stopped is reported not running, without error.
func Inspect(dir string) (Status, error) {
	var st Status
	cfg, err := readConfig(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	st.Config = cfg
	rec, err := readPIDFile(dir)
	if errors.Is(err, fs.ErrNotExist) {
		st.Problem = "no init is recorded (never started, or its start did not finish)"
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := checkInit(rec, dir); err != nil {
		st.Problem = err.Error()
		return st, nil
	}
	ok, err := inNetNS(rec.PID, cfg.NetNS)
	if err != nil || !ok {
		st.Problem = fmt.Sprintf("init %d is not in network namespace %s", rec.PID, cfg.NetNS)
		if err != nil {
			st.Problem += ": " + err.Error()
		}
		return st, nil
	}
	st.Running, st.PID = true, rec.PID
	if cg, err := findCgroups(cfg.Cgroup); err == nil {
		st.Cgroup = cg.contains(rec.PID)
		if cpus, mem, err := cg.limits(); err == nil {
			st.CPUs, st.MemoryMiB = cpus, mem
		}
	}
	if !st.Cgroup {
		st.Problem = fmt.Sprintf("init %d is not in cgroup %s", rec.PID, cfg.Cgroup)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := queryStatus(ctx, dir)
	if err != nil {
		st.Problem = "control socket: " + err.Error()
		return st, nil
	}
	st.Restarts = s.Restarts
	if s.ServicePID > 0 {
		st.ServicePID = hostPID(rec.PID, s.ServicePID)
	}
	if s.AgentPID > 0 {
		st.AgentPID = hostPID(rec.PID, s.AgentPID)
	}
	return st, nil
}

// ErrResize is returned (wrapped) by Resize when the kernel refuses a new
// limit, typically memory below what the container already uses; the old
// limits stay, and a restart is what applies the new ones.
var ErrResize = errors.New("cannot resize in place")

// Resize changes the CPU and memory limits of the running container whose
// state directory is dir, in place: its processes keep running. The
// recorded configuration is updated to match, so that Inspect reports the
// new limits as the configuration. It fails with ErrNotRunning when there
// is no running container.
func Resize(ctx context.Context, dir string, cpus int, memoryMiB int64) error {
	if cpus < 0 || memoryMiB < 0 {
		return fmt.Errorf("resize: negative limits (%d cpus, %d MiB)", cpus, memoryMiB)
	}
	lock, err := lockDir(ctx, dir)
	if err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	defer lock.release()
	cfg, err := readConfig(dir)
	if err != nil {
		return fmt.Errorf("resize %s: %w", dir, ErrNotRunning)
	}
	if rec, err := readPIDFile(dir); err != nil || checkInit(rec, dir) != nil {
		return fmt.Errorf("resize %s: %w", cfg.Name, ErrNotRunning)
	}
	cg, err := findCgroups(cfg.Cgroup)
	if err != nil {
		return err
	}
	old := cfg.withDefaults()
	cfg.CPUs, cfg.MemoryMiB = cpus, memoryMiB
	if err := cg.setLimits(cfg.withDefaults()); err != nil {
		// Put back what was in force, so that the limits and the recorded
		// configuration agree.
		_ = cg.setLimits(old)
		return fmt.Errorf("resize %s: %w: %w", cfg.Name, ErrResize, err)
	}
	conf, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, configFile), conf, 0o600)
}

// pidRecord is the pid file. Start is the init's start time in clock ticks
// since boot (/proc/<pid>/stat field 22): a pid reused by another process
// does not match it.
type pidRecord struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func readPIDFile(dir string) (pidRecord, error) {
	var rec pidRecord
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID <= 0 {
		return rec, fmt.Errorf("%s: malformed pid file", filepath.Join(dir, pidFile))
	}
	return rec, nil
}

func writePIDFile(dir string, rec pidRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, pidFile), b, 0o600)
}

func readConfig(dir string) (Config, error) {
	var cfg Config
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", filepath.Join(dir, configFile), err)
	}
	return cfg, nil
}

// procInfo is what /proc/<pid>/stat says about a process.
type procInfo struct {
	state byte
	ppid  int
	start uint64
}

func readProc(pid int) (procInfo, error) {
	var info procInfo
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return info, err
	}
	// The command name, in parentheses, may contain anything; the fields
	// after the last ')' are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return info, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return info, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	info.state = f[0][0]
	info.ppid, _ = strconv.Atoi(f[1])
	info.start, err = strconv.ParseUint(f[19], 10, 64)
	return info, err
}

// checkInit returns nil if rec names a live process that is the init of
// the instance in dir: same start time, and our marker and dir in its
// environment.
func checkInit(rec pidRecord, dir string) error {
	info, err := readProc(rec.PID)
	switch {
	case err != nil:
		return fmt.Errorf("init %d is not running", rec.PID)
	case info.state == 'Z' || info.state == 'X':
		return fmt.Errorf("init %d has exited", rec.PID)
	case info.start != rec.Start:
		return fmt.Errorf("init %d has exited (its pid now belongs to another process)", rec.PID)
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(rec.PID) + "/environ")
	if err != nil {
		return fmt.Errorf("init %d: %w", rec.PID, err)
	}
	var marked, ours bool
	for _, kv := range bytes.Split(env, []byte{0}) {
		marked = marked || string(kv) == envInit+"=1"
		ours = ours || string(kv) == envDir+"="+dir
	}
	if !marked || !ours {
		return fmt.Errorf("process %d is not the init of %s", rec.PID, dir)
	}
	return nil
}

// inNetNS reports whether process pid is in the network namespace bound at
// path.
func inNetNS(pid int, path string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &a); err != nil {
		return false, err
	}
	if err := unix.Stat(path, &b); err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// checkNetNS makes sure path is a network namespace, not a plain file left
// where one was.
func checkNetNS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		return fmt.Errorf("netns %s: not a network namespace", path)
	}
	return nil
}

// hostPID finds the host pid of the child of init whose pid inside the
// container is nsPID (0 if there is none).
func hostPID(initPID, nsPID int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if info, err := readProc(pid); err != nil || info.ppid != initPID {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
				f := strings.Fields(rest)
				if len(f) > 1 && f[len(f)-1] == strconv.Itoa(nsPID) {
					return pid
				}
			}
		}
	}
	return 0
}

// dirLock is an exclusive flock on dir/lock.
type dirLock struct{ f *os.File }

// lockDir creates dir if needed and locks it, waiting as long as ctx allows.
func lockDir(ctx context.Context, dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFile)
	for {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
				break
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
			case <-time.After(lockPoll):
			}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		// The holder before us may have been a Stop that removed the
		// directory: a lock on an unlinked file protects nothing.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil &&
			held.Dev == now.Dev && held.Ino == now.Ino {
			return &dirLock{f: f}, nil
		}
		f.Close()
	}
}

func (l *dirLock) release() { l.f.Close() }
