package container

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/testenv"
)

// Environment of the crashing helper (see TestMain): a copy of the test
// binary that runs one Start and kills itself at the named step.
const (
	envCrashAt     = "HOLDFAST_TEST_CRASH_AT"
	envCrashConfig = "HOLDFAST_TEST_CRASH_CONFIG"
)

func TestMain(m *testing.M) {
	if step := os.Getenv(envCrashAt); step != "" {
		os.Exit(crashingStart(step))
	}
	// An init built with -race would otherwise linger a second at exit.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// crashingStart is a process that starts a container and is killed (-9)
// at step, as `holdfast apply` could be.
func crashingStart(step string) int {
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv(envCrashConfig)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	testHook = func(s string) {
		if s == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // SIGKILL is on its way
		}
	}
	if _, err := Start(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// needRoot skips tests that need a real root: namespaces, cgroups, mounts.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.NeedRoot(t, "namespaces, cgroups and mounts")
	}
}

var seq atomic.Int64

// newNetNS creates a network namespace bound at /run/netns/<name>, with lo
// up, deleted when the test ends.
func newNetNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("hf-ctest-%d-%d", os.Getpid(), seq.Add(1))
	if err := nsthread.ShareNamedDir(); err != nil {
		t.Fatal(err)
	}
	// NewNamed moves its thread into the new namespace.
	err := onDisposableThread(func() error {
		ns, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			return err
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	})
	if err != nil {
		t.Fatalf("creating netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("deleting netns %s: %v", name, err)
		}
	})
	return filepath.Join("/run/netns", name)
}

// inNetNSDo runs fn on a thread inside the network namespace at path.
func inNetNSDo(t *testing.T, path string, fn func() error) error {
	t.Helper()
	return onDisposableThread(func() error {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			return err
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			return err
		}
		return fn()
	})
}

// testConfig is a container in a fresh netns, with a state directory and a
// cgroup of its own. The test's cleanup stops it (before the netns goes).
func testConfig(t *testing.T, name string) Config {
	t.Helper()
	needRoot(t)
	cfg := Config{
		Name:      name,
		NetNS:     newNetNS(t),
		Dir:       filepath.Join(t.TempDir(), "state"),
		Cgroup:    fmt.Sprintf("holdfast-test/%d-%d/%s", os.Getpid(), seq.Add(1), name),
		MemoryMiB: 256,
		PIDs:      64,
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := Stop(ctx, cfg); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return cfg
}

func start(t *testing.T, cfg Config) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return pid
}

func stop(t *testing.T, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Stop(ctx, cfg); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func inspect(t *testing.T, dir string) Status {
	t.Helper()
	st, err := Inspect(dir)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return st
}

// run Execs argv in the container and returns its exit code and output.
func run(t *testing.T, dir string, stdin string, argv ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code, err := Exec(ctx, dir, argv, strings.NewReader(stdin), &out, &errOut)
	if err != nil {
		t.Fatalf("Exec %q: %v", argv, err)
	}
	return code, out.String(), errOut.String()
}

// eventually polls cond every 10ms until it holds, failing the test after
// d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// livePIDsWithDir lists the live (not zombie) processes that are inits of
// the instance in dir.
func liveInits(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		info, err := readProc(pid)
		if err != nil {
			continue
		}
		if checkInit(pidRecord{PID: pid, Start: info.start}, dir) == nil {
			out = append(out, pid)
		}
	}
	return out
}

// cgroupDirs is where the instance's cgroup lives on this host.
func cgroupDirs(t *testing.T, rel string) (*cgroupSet, []string) {
	t.Helper()
	cg, err := findCgroups(rel)
	if err != nil {
		t.Fatal(err)
	}
	return cg, cg.dirs()
}

// assertGone checks that nothing of the instance is left: no init, no
// cgroup directory, no state directory.
func assertGone(t *testing.T, cfg Config) {
	t.Helper()
	eventually(t, 5*time.Second, "an init of "+cfg.Dir+" is still running", func() bool {
		return len(liveInits(cfg.Dir)) == 0
	})
	_, dirs := cgroupDirs(t, cfg.Cgroup)
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s is left (stat: %v)", d, err)
		}
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s is left (stat: %v)", cfg.Dir, err)
	}
}

// nsInode is the inode of a namespace file.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// buildRootfs makes a minimal root file system from the host's binaries
// and the shared libraries they need, placed at their host paths.
func buildRootfs(t *testing.T, bins ...string) string {
	t.Helper()
	root := t.TempDir()
	var copyFile func(src, dst string)
	copied := map[string]bool{}
	copyFile = func(src, dst string) {
		if copied[dst] {
			return
		}
		copied[dst] = true
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := elf.Open(real)
		if err != nil {
			return // not ELF: nothing to follow
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				interp, _ := io.ReadAll(p.Open())
				ld := strings.TrimRight(string(interp), "\x00")
				copyFile(ld, ld)
			}
		}
		libs, _ := f.ImportedLibraries()
		for _, lib := range libs {
			found := false
			for _, dir := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/lib", "/usr/lib"} {
				if _, err := os.Stat(filepath.Join(dir, lib)); err == nil {
					copyFile(filepath.Join(dir, lib), filepath.Join(dir, lib))
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("rootfs: library %s of %s not found", lib, src)
			}
		}
	}
	for _, b := range bins {
		path, err := exec.LookPath(b)
		if err != nil {
			testenv.Unavailable(t, "rootfs: "+b+" is not installed on this host")
		}
		copyFile(path, filepath.Join("/bin", filepath.Base(b)))
	}
	for _, d := range []string{"etc", "tmp", "proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
