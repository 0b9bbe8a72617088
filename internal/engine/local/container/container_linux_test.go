package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestStartIsolatesInNamespacesAndStopRemovesEverything(t *testing.T) {
	cfg := testConfig(t, "web")
	pid := start(t, cfg)

	st := inspect(t, cfg.Dir)
	if !st.Running || st.PID != pid || !st.Cgroup {
		t.Fatalf("Inspect = %+v, want running pid %d in its cgroup", st, pid)
	}
	for _, ns := range []string{"pid", "uts", "mnt", "ipc"} {
		if nsInode(t, fmt.Sprintf("/proc/%d/ns/%s", pid, ns)) == nsInode(t, "/proc/self/ns/"+ns) {
			t.Errorf("init shares the test's %s namespace", ns)
		}
	}
	if got, want := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid)), nsInode(t, cfg.NetNS); got != want {
		t.Errorf("init's netns inode = %d, want %d (%s)", got, want, cfg.NetNS)
	}

	// Seen from inside: PID 1 is the init, the hostname is the name.
	if _, out, _ := run(t, cfg.Dir, "", "cat", "/proc/1/cmdline"); !strings.HasPrefix(out, initArg0+"\x00") {
		t.Errorf("/proc/1/cmdline inside = %q, want the init", out)
	}
	if _, out, _ := run(t, cfg.Dir, "", "cat", "/proc/sys/kernel/hostname"); out != "web\n" {
		t.Errorf("hostname inside = %q, want web", out)
	}
	if _, out, _ := run(t, cfg.Dir, "", "readlink", "/proc/self/ns/net"); !strings.Contains(out, strconv.FormatUint(nsInode(t, cfg.NetNS), 10)) {
		t.Errorf("an Exec'd command is in netns %q, want inode %d", out, nsInode(t, cfg.NetNS))
	}
	// The container's mount namespace pins no network namespace of the
	// host (its copy of /run/netns/* is detached).
	if _, out, _ := run(t, cfg.Dir, "", "cat", "/proc/self/mountinfo"); strings.Contains(out, " - nsfs ") {
		t.Errorf("the container still holds nsfs mounts:\n%s", out)
	}

	if again := start(t, cfg); again != pid {
		t.Errorf("second Start = pid %d, want the running %d", again, pid)
	}
	if n := liveInits(cfg.Dir); len(n) != 1 {
		t.Errorf("inits running after two Starts: %v, want one", n)
	}

	stop(t, cfg)
	assertGone(t, cfg)
	if st := inspect(t, cfg.Dir); st.Running {
		t.Errorf("Inspect after Stop = %+v", st)
	}
	stop(t, cfg) // stopping a stopped instance succeeds
	assertGone(t, cfg)
}

func TestResponderAnswersTCPAndEchoesUDP(t *testing.T) {
	cfg := testConfig(t, "responder")
	cfg.Ports = []Port{{Port: 8080, Proto: "tcp"}, {Port: 5353, Proto: "udp"}, {Port: 22, Proto: "tcp"}}
	start(t, cfg)

	err := inNetNSDo(t, cfg.NetNS, func() error {
		for _, port := range []int{8080, 22} {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
			if err != nil {
				return err
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if want := fmt.Sprintf("holdfast responder %d\n", port); err != nil || line != want {
				return fmt.Errorf("tcp %d: read %q, want %q: %w", port, line, want, err)
			}
		}
		// An HTTP request gets 200 with the same line as its body, so
		// that a route's backend answers without installing anything.
		// (Dialled here: an http.Client dials from goroutines of its own,
		// outside this thread's namespace.)
		hc, err := net.DialTimeout("tcp", "127.0.0.1:8080", 2*time.Second)
		if err != nil {
			return err
		}
		defer hc.Close()
		_ = hc.SetDeadline(time.Now().Add(2 * time.Second))
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/some/path", nil)
		if err := req.Write(hc); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(hc), req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "holdfast responder 8080\n"; err != nil || resp.StatusCode != http.StatusOK || string(body) != want {
			return fmt.Errorf("http: %s %q, want 200 %q: %w", resp.Status, body, want, err)
		}
		c, err := net.Dial("udp", "127.0.0.1:5353")
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping 1")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "ping 1" {
			return fmt.Errorf("udp: read %q, want the datagram back: %w", buf[:n], err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// From the host's namespace the responder is unreachable: it is
	// really in the instance's netns.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:8080", 200*time.Millisecond); err == nil {
		c.Close()
		t.Error("the responder is reachable from the host's network namespace")
	}
}

func TestServiceIsRestartedWhenItExits(t *testing.T) {
	cfg := testConfig(t, "svc")
	marks := filepath.Join(t.TempDir(), "starts") // no rootfs: the container sees the host's files
	cfg.Command = []string{"/bin/sh", "-c", "echo started >> " + marks + "; sleep 0.2"}
	start(t, cfg)

	eventually(t, 5*time.Second, "the service did not run three times", func() bool {
		b, _ := os.ReadFile(marks)
		return strings.Count(string(b), "started\n") >= 3
	})
	if st := inspect(t, cfg.Dir); st.Restarts < 2 || !st.Running {
		t.Errorf("Inspect = %+v, want running with at least 2 restarts", st)
	}
}

func TestKilledServiceIsRestarted(t *testing.T) {
	cfg := testConfig(t, "svc")
	cfg.Command = []string{"sleep", "60"}
	init := start(t, cfg)

	var first Status
	eventually(t, 5*time.Second, "no service pid", func() bool {
		first = inspect(t, cfg.Dir)
		return first.ServicePID != 0
	})
	if info, err := readProc(first.ServicePID); err != nil || info.ppid != init {
		t.Fatalf("service pid %d: %+v, %v; want a child of the init %d", first.ServicePID, info, err, init)
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", first.ServicePID)); !bytes.HasPrefix(cmd, []byte("sleep\x00")) {
		t.Fatalf("service pid %d runs %q, want sleep", first.ServicePID, cmd)
	}
	if err := unix.Kill(first.ServicePID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the killed service was not restarted", func() bool {
		st := inspect(t, cfg.Dir)
		return st.Restarts == 1 && st.ServicePID != 0 && st.ServicePID != first.ServicePID
	})
}

func TestStartFailsForAMissingProgramAndLeavesNothing(t *testing.T) {
	cfg := testConfig(t, "broken")
	cfg.Command = []string{"/no/such/program"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "/no/such/program") {
		t.Fatalf("Start = %v, want an error naming the program", err)
	}
	if n := liveInits(cfg.Dir); len(n) != 0 {
		t.Errorf("inits left after a failed Start: %v", n)
	}
	_, dirs := cgroupDirs(t, cfg.Cgroup)
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after a failed Start", d)
		}
	}
	stop(t, cfg)
	assertGone(t, cfg)
}

func TestCgroupLimitsAreWritten(t *testing.T) {
	cfg := testConfig(t, "limited")
	cfg.CPUs, cfg.MemoryMiB, cfg.PIDs = 1, 192, 48
	pid := start(t, cfg)

	cg, _ := cgroupDirs(t, cfg.Cgroup)
	want := map[string]string{ // controller/file -> value
		"cpu/cpu.cfs_quota_us":         "100000",
		"cpu/cpu.cfs_period_us":        "100000",
		"memory/memory.limit_in_bytes": strconv.Itoa(192 << 20),
		"pids/pids.max":                "48",
	}
	if cg.v2 {
		want = map[string]string{
			"cpu/cpu.max":       "100000 100000",
			"memory/memory.max": strconv.Itoa(192 << 20),
			"pids/pids.max":     "48",
		}
	}
	for key, value := range want {
		ctl, file, _ := strings.Cut(key, "/")
		m, ok := cg.mounts[ctl]
		if !ok {
			t.Errorf("controller %s not found", ctl)
			continue
		}
		b, err := os.ReadFile(filepath.Join(m, cfg.Cgroup, file))
		if got := strings.TrimSpace(string(b)); err != nil || got != value {
			t.Errorf("%s = %q (%v), want %q", filepath.Join(m, cfg.Cgroup, file), got, err, value)
		}
	}
	for _, d := range cg.dirs() {
		if procs := cgroupProcs(d); !slices.Contains(procs, pid) {
			t.Errorf("%s/cgroup.procs = %v, want the init %d in it", d, procs, pid)
		}
	}
	// What is Exec'd is inside the limits too.
	if _, out, _ := run(t, cfg.Dir, "", "cat", "/proc/self/cgroup"); !strings.Contains(out, "/"+cfg.Cgroup+"\n") {
		t.Errorf("an Exec'd command's cgroups:\n%s\nwant %s", out, cfg.Cgroup)
	}
}

func TestExecPassesStdioAndExitCode(t *testing.T) {
	cfg := testConfig(t, "exec")
	start(t, cfg)

	code, out, errOut := run(t, cfg.Dir, "hello\nworld\n", "sh", "-c", "cat; echo err >&2; exit 3")
	if code != 3 || out != "hello\nworld\n" || errOut != "err\n" {
		t.Errorf("Exec = %d, stdout %q, stderr %q; want 3, the input, err", code, out, errOut)
	}

	// Files are handed over as they are: here, pipes.
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	defer inR.Close()
	defer outR.Close()
	go func() {
		fmt.Fprint(inW, "through a pipe")
		inW.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, err := Exec(ctx, cfg.Dir, []string{"tr", "a-z", "A-Z"}, inR, outW, nil)
	outW.Close()
	got, _ := io.ReadAll(outR)
	if err != nil || code != 0 || string(got) != "THROUGH A PIPE" {
		t.Errorf("Exec with files = %d, %v, output %q", code, err, got)
	}

	if code, _, _ := run(t, cfg.Dir, "", "sh", "-c", "kill -9 $$"); code != 128+9 {
		t.Errorf("a command killed by SIGKILL exits %d, want 137", code)
	}
	if _, err := Exec(ctx, cfg.Dir, []string{"no-such-command"}, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Exec of a missing command = %v, want not found", err)
	}
	if _, err := Exec(ctx, filepath.Join(t.TempDir(), "nothing"), []string{"true"}, nil, nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Exec without a container = %v, want ErrNotRunning", err)
	}
}

func TestExecIsKilledWhenItsContextEnds(t *testing.T) {
	cfg := testConfig(t, "exec")
	pid := start(t, cfg)

	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	errc := make(chan error, 1)
	go func() {
		_, err := Exec(ctx, cfg.Dir, []string{"sh", "-c", "echo up; exec sleep 60"}, nil, &out, nil)
		errc <- err
	}()
	cg, _ := cgroupDirs(t, cfg.Cgroup)
	dir := cg.dirs()[0]
	eventually(t, 5*time.Second, "the Exec'd command did not start", func() bool { return len(cgroupProcs(dir)) > 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Exec = %v, want context.Canceled", err)
	}
	eventually(t, 5*time.Second, "the Exec'd command survived its context", func() bool {
		return slices.Equal(cgroupProcs(dir), []int{pid})
	})
}

func TestControlSocketRefusesNonRoot(t *testing.T) {
	cfg := testConfig(t, "guarded")
	start(t, cfg)

	fi, err := os.Stat(filepath.Join(cfg.Dir, socketFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode = %v (%v), want 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(cfg.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode = %v (%v), want 0700", fi.Mode(), err)
	}

	// Connect with effective uid 65534 (nobody) but file system uid 0, so
	// that only the peer credential check can refuse: the path is open to
	// us. Credentials are per thread in the kernel.
	marker := filepath.Join(t.TempDir(), "ran")
	err = onDisposableThread(func() error {
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, ^uintptr(0), 65534, ^uintptr(0)); e != 0 {
			return fmt.Errorf("setresuid: %w", e)
		}
		_, _, _ = syscall.RawSyscall(syscall.SYS_SETFSUID, 0, 0, 0) // returns the previous fsuid, not an error
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := Exec(ctx, cfg.Dir, []string{"touch", marker}, nil, nil, nil)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "root only") {
		t.Errorf("Exec as uid 65534 = %v, want refused (root only)", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the refused command ran")
	}
}

func TestKilledInitIsRestartedByTheNextStart(t *testing.T) {
	cfg := testConfig(t, "crashy")
	cfg.Command = []string{"sleep", "60"}
	pid := start(t, cfg)
	var service int
	eventually(t, 5*time.Second, "no service pid", func() bool {
		service = inspect(t, cfg.Dir).ServicePID
		return service != 0
	})

	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "Inspect still says running after kill -9", func() bool {
		st := inspect(t, cfg.Dir)
		return !st.Running && st.Problem != ""
	})
	// The kernel took the PID namespace down with its init.
	eventually(t, 5*time.Second, "the service outlived its init", func() bool {
		info, err := readProc(service)
		return err != nil || info.state == 'Z'
	})

	again := start(t, cfg)
	if again == pid {
		t.Fatalf("Start after the crash returned the dead init %d", pid)
	}
	if st := inspect(t, cfg.Dir); !st.Running || st.PID != again || !st.Cgroup {
		t.Errorf("Inspect = %+v, want pid %d running in its cgroup", st, again)
	}
	if inits := liveInits(cfg.Dir); !slices.Equal(inits, []int{again}) {
		t.Errorf("inits = %v, want only %d", inits, again)
	}
	_, dirs := cgroupDirs(t, cfg.Cgroup)
	for _, d := range dirs {
		eventually(t, 5*time.Second, d+" holds more than the init and its service", func() bool {
			return len(cgroupProcs(d)) == 2 && slices.Contains(cgroupProcs(d), again)
		})
	}
}

// startSteps are the points of a Start at which it can be interrupted.
var startSteps = []string{"forked", "ready", "cgroup", "go", "ok", "pidfile"}

func TestStartKilledAtAnyStepConverges(t *testing.T) {
	for i, step := range startSteps {
		t.Run(step, func(t *testing.T) {
			cfg := testConfig(t, "interrupted")
			crash(t, cfg, step)
			if i%2 == 0 {
				// The next Start converges: one init, in its cgroup.
				pid := start(t, cfg)
				eventually(t, 5*time.Second, "more than one init", func() bool {
					return slices.Equal(liveInits(cfg.Dir), []int{pid})
				})
				_, dirs := cgroupDirs(t, cfg.Cgroup)
				for _, d := range dirs {
					if procs := cgroupProcs(d); !slices.Equal(procs, []int{pid}) {
						t.Errorf("%s holds %v, want only the init %d", d, procs, pid)
					}
				}
			}
			// And Stop cleans everything, whether or not Start ran again.
			stop(t, cfg)
			assertGone(t, cfg)
		})
	}
}

// crash runs a Start in another process that is killed at step.
func crash(t *testing.T, cfg Config, step string) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashAt+"="+step, envCrashConfig+"="+string(b))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the crashing Start ended with %v, want SIGKILL at %s; stderr: %s", err, step, stderr.String())
	}
}

func TestStartCancelledAtAnyStepLeavesNothing(t *testing.T) {
	for _, step := range startSteps {
		t.Run(step, func(t *testing.T) {
			cfg := testConfig(t, "cancelled")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			testHook = func(s string) {
				if s == step {
					cancel()
				}
			}
			defer func() { testHook = nil }()
			pid, err := Start(ctx, cfg)
			testHook = nil
			if step == "pidfile" {
				// Past the last step: the Start has succeeded.
				if err != nil || inspect(t, cfg.Dir).PID != pid {
					t.Fatalf("Start cancelled after its pid file = %d, %v; want success", pid, err)
				}
			} else {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Start = %d, %v; want context.Canceled", pid, err)
				}
				if inits := liveInits(cfg.Dir); len(inits) != 0 {
					t.Errorf("inits left by a cancelled Start: %v", inits)
				}
				_, dirs := cgroupDirs(t, cfg.Cgroup)
				for _, d := range dirs {
					if _, err := os.Stat(d); !os.IsNotExist(err) {
						t.Errorf("cgroup %s left by a cancelled Start", d)
					}
				}
				if st := inspect(t, cfg.Dir); st.Running {
					t.Errorf("Inspect after a cancelled Start = %+v", st)
				}
			}
			stop(t, cfg)
			assertGone(t, cfg)
		})
	}
}

func TestRootfs(t *testing.T) {
	cfg := testConfig(t, "rooted")
	cfg.Rootfs = buildRootfs(t, "sh", "cat", "sleep")
	if err := os.WriteFile(filepath.Join(cfg.Rootfs, "marker"), []byte("inside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Nameservers, cfg.SearchDomain = []string{"10.7.0.53", "fd00::53"}, "demo.internal"
	cfg.Command = []string{"sleep", "60"}
	start(t, cfg)

	if _, out, _ := run(t, cfg.Dir, "", "cat", "/marker"); out != "inside\n" {
		t.Errorf("/marker inside = %q, want the rootfs's", out)
	}
	if _, out, _ := run(t, cfg.Dir, "", "sh", "-c", "echo /*"); !strings.Contains(out, "/marker") ||
		strings.Contains(out, "/work") || strings.Contains(out, "/root") || strings.Contains(out, "/var") {
		t.Errorf("the root inside is %q, want the rootfs's and nothing of the host's", out)
	}
	if _, out, _ := run(t, cfg.Dir, "", "cat", "/etc/resolv.conf"); !strings.Contains(out, "search demo.internal\nnameserver 10.7.0.53\nnameserver fd00::53\n") {
		t.Errorf("/etc/resolv.conf inside = %q", out)
	}
	if code, out, _ := run(t, cfg.Dir, "", "sh", "-c", "echo x > /dev/null && cat /proc/1/cmdline"); code != 0 || !strings.HasPrefix(out, initArg0) {
		t.Errorf("/dev/null and /proc inside: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(cfg.Rootfs, "etc/resolv.conf")); err != nil {
		t.Errorf("resolv.conf not in the rootfs on the host: %v", err)
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil && strings.Contains(string(b), "10.7.0.53") {
		t.Error("the host's /etc/resolv.conf was written")
	}
	var st Status
	eventually(t, 5*time.Second, "the service did not start in the rootfs", func() bool {
		st = inspect(t, cfg.Dir)
		return st.ServicePID != 0
	})
	root := fmt.Sprintf("/proc/%d/root", st.ServicePID)
	if _, err := os.Stat(filepath.Join(root, "marker")); err != nil {
		t.Errorf("the service's root is not the rootfs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "work")); err == nil {
		t.Errorf("the service sees the host's /work")
	}
}

func TestConfigIsValidatedBeforeAnythingChanges(t *testing.T) {
	good := Config{Name: "web", NetNS: "/run/netns/x", Dir: "/var/lib/holdfast/x", Cgroup: "holdfast/demo/web"}
	if err := good.validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"name with a dot":     func(c *Config) { c.Name = "a.b" },
		"empty name":          func(c *Config) { c.Name = "" },
		"relative dir":        func(c *Config) { c.Dir = "state" },
		"long dir":            func(c *Config) { c.Dir = "/" + strings.Repeat("d", 120) },
		"escaping cgroup":     func(c *Config) { c.Cgroup = "../escape" },
		"absolute cgroup":     func(c *Config) { c.Cgroup = "/holdfast" },
		"relative netns":      func(c *Config) { c.NetNS = "x" },
		"bad proto":           func(c *Config) { c.Ports = []Port{{Port: 80, Proto: "sctp"}} },
		"bad port":            func(c *Config) { c.Ports = []Port{{Port: 0, Proto: "tcp"}} },
		"duplicate port":      func(c *Config) { c.Ports = []Port{{Port: 80, Proto: "tcp"}, {Port: 80, Proto: "tcp"}} },
		"reserved env":        func(c *Config) { c.Env = []string{envInit + "=1"} },
		"env without value":   func(c *Config) { c.Env = []string{"FOO"} },
		"bad nameserver":      func(c *Config) { c.Nameservers = []string{"dns.example"} },
		"negative memory":     func(c *Config) { c.MemoryMiB = -1 },
		"empty program":       func(c *Config) { c.Command = []string{""} },
		"relative rootfs":     func(c *Config) { c.Rootfs = "rootfs" },
		"spaces in search":    func(c *Config) { c.SearchDomain = "a b" },
		"negative cpus":       func(c *Config) { c.CPUs = -2 },
		"negative pids limit": func(c *Config) { c.PIDs = -1 },
		"overlay alone":       func(c *Config) { c.Overlay = "/var/lib/holdfast/x/overlay" },
		"relative overlay":    func(c *Config) { c.Rootfs, c.Overlay = "/srv/debian", "overlay" },
		"comma in a layer":    func(c *Config) { c.Rootfs, c.Overlay = "/srv/a,b", "/var/lib/holdfast/x/overlay" },
		"relative bind":       func(c *Config) { c.Binds = []Bind{{Source: "home", Target: "/root"}} },
		"bind over /":         func(c *Config) { c.Binds = []Bind{{Source: "/srv/home", Target: "/"}} },
		"unclean bind target": func(c *Config) { c.Binds = []Bind{{Source: "/srv/home", Target: "/root/../etc"}} },
	} {
		c := good
		mutate(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStartRefusesWhatIsNotANetworkNamespace(t *testing.T) {
	needRoot(t)
	plain := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(plain, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: "web", NetNS: plain, Dir: filepath.Join(t.TempDir(), "state"), Cgroup: "holdfast-test/none/web"}
	if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("Start = %v, want refused", err)
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Errorf("a refused Start created %s", cfg.Dir)
	}
}

func TestStopKeepsFilesThatAreNotTheContainers(t *testing.T) {
	cfg := testConfig(t, "keeper")
	start(t, cfg)
	keep := filepath.Join(cfg.Dir, "operator-notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	stop(t, cfg)
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("Stop removed a file it does not own: %v", err)
	}
	entries, _ := os.ReadDir(cfg.Dir)
	if len(entries) != 1 {
		t.Errorf("state dir after Stop holds %v, want only the foreign file", entries)
	}
	if err := os.Remove(keep); err != nil {
		t.Fatal(err)
	}
}

// The unified hierarchy (v2) cannot be exercised on a host whose
// controllers are bound to v1 hierarchies; this checks what is written
// there against a stand-in directory.
func TestCgroupV2LimitsFormat(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory hugetlb pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old string) { cgroupRoot = old }(cgroupRoot)
	cgroupRoot = root

	cg, err := findCgroups("holdfast/demo/web")
	if err != nil || !cg.v2 {
		t.Fatalf("findCgroups = %+v, %v; want v2", cg, err)
	}
	if err := cg.create(Config{CPUs: 2, MemoryMiB: 64, PIDs: 100}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"holdfast/demo/web/cpu.max":            "200000 100000",
		"holdfast/demo/web/memory.max":         strconv.Itoa(64 << 20),
		"holdfast/demo/web/pids.max":           "100",
		"cgroup.subtree_control":               "+pids", // the last of +cpu, +memory, +pids
		"holdfast/demo/cgroup.subtree_control": "+pids",
	} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", file, b, err, want)
		}
	}
	if err := cg.create(Config{PIDs: 1}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"cpu.max": "max 100000", "memory.max": "max"} {
		if b, _ := os.ReadFile(filepath.Join(root, "holdfast/demo/web", file)); string(b) != want {
			t.Errorf("unlimited %s = %q, want %q", file, b, want)
		}
	}
}

func TestStartInAnotherNetNSReplacesTheInit(t *testing.T) {
	cfg := testConfig(t, "moved")
	old := start(t, cfg)
	cfg.NetNS = newNetNS(t) // the engine recreated the instance's namespace
	pid := start(t, cfg)
	if pid == old {
		t.Fatalf("Start in a new netns kept the init %d of the old one", old)
	}
	if got, want := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid)), nsInode(t, cfg.NetNS); got != want {
		t.Errorf("new init's netns inode = %d, want %d", got, want)
	}
	if inits := liveInits(cfg.Dir); !slices.Equal(inits, []int{pid}) {
		t.Errorf("inits = %v, want only %d", inits, pid)
	}
}

func TestConcurrentStartsOfDifferentInstances(t *testing.T) {
	cfgs := []Config{testConfig(t, "a"), testConfig(t, "b"), testConfig(t, "c")}
	pids := make([]int, len(cfgs))
	errs := make(chan error, len(cfgs))
	for i, cfg := range cfgs {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			pids[i], err = Start(ctx, cfg)
			errs <- err
		}()
	}
	for range cfgs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, cfg := range cfgs {
		if got, want := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pids[i])), nsInode(t, cfg.NetNS); got != want {
			t.Errorf("%s: netns inode %d, want %d", cfg.Name, got, want)
		}
		if _, out, _ := run(t, cfg.Dir, "", "cat", "/proc/sys/kernel/hostname"); out != cfg.Name+"\n" {
			t.Errorf("%s: hostname inside = %q", cfg.Name, out)
		}
	}
	// No thread of this process stays in a container's namespace: the
	// threads that joined one have ended.
	host := nsInode(t, "/proc/self/ns/net")
	eventually(t, 5*time.Second, "a thread of the test process is in another network namespace", func() bool {
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			var st unix.Stat_t
			if unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st) == nil && st.Ino != host {
				return false
			}
		}
		return true
	})
}

func TestInitMarkerOutsideAContainerRunsNeitherInitNorTests(t *testing.T) {
	cmd := exec.Command("/proc/self/exe", "-test.v", "-test.run=.")
	cmd.Env = append(os.Environ(), envInit+"=1", envDir+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("a binary with the marker, not PID 1 of a namespace, = %v; want exit 2", err)
	}
	if strings.Contains(string(out), "=== RUN") || !strings.Contains(string(out), "not PID 1") {
		t.Errorf("output:\n%s\nwant a refusal and no tests", out)
	}
}
