package container

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// init turns any binary that imports this package into a container init
// when Start has re-executed it: the marker is checked before main (or a
// test binary's test runner) starts, and the process exits when the init
// is done, so neither ever runs. Packages initialized before this one have
// run their init functions; nothing else of the program has.
func init() {
	if os.Getenv(envInit) != "1" {
		return
	}
	os.Exit(runInit())
}

// Inherited descriptors of the init (see launch).
const (
	goFD     = 3 // read: one byte when the init may start the service
	statusFD = 4 // write: "ready\n", then "ok\n", or "error <why>\n"
)

func runInit() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if os.Getpid() != 1 {
		log.Error("not PID 1 of a new PID namespace: only Start runs a container init; is " + envInit + " set by mistake?")
		return 2
	}
	// Nothing the init starts may inherit these.
	unix.CloseOnExec(goFD)
	unix.CloseOnExec(statusFD)
	goPipe, status := os.NewFile(goFD, "go"), os.NewFile(statusFD, "status")

	dir := os.Getenv(envDir)
	fail := func(err error) int {
		log.Error("container init failed", "err", err)
		fmt.Fprintf(status, "error %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
	cfg, err := readConfig(dir)
	if err != nil {
		return fail(err)
	}
	log = log.With("container", cfg.Name)
	log.Info("init starting")
	ln, err := prepare(cfg, dir)
	if err != nil {
		return fail(err)
	}
	if _, err := status.WriteString("ready\n"); err != nil {
		return 1
	}
	var b [1]byte
	if n, _ := goPipe.Read(b[:]); n != 1 {
		// Start died (or gave up) before placing us in the cgroup: leave
		// nothing behind.
		log.Info("starter went away before the go; exiting")
		return 1
	}
	goPipe.Close()

	p := newInitProc(cfg, log)
	if err := p.begin(ln); err != nil {
		return fail(err)
	}
	if _, err := status.WriteString("ok\n"); err != nil {
		log.Warn("reporting ok", "err", err)
	}
	status.Close()
	return p.run()
}

// prepare sets up the container's view of the system: hostname, private
// mounts, its own /proc, the root file system. The control socket is bound
// first, in dir, which the root file system may hide.
func prepare(cfg Config, dir string) (*net.UnixListener, error) {
	if err := unix.Sethostname([]byte(cfg.Name)); err != nil {
		return nil, fmt.Errorf("sethostname: %w", err)
	}
	// Nothing mounted from here on propagates back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("making mounts private: %w", err)
	}
	ln, err := listenControl(dir)
	if err != nil {
		return nil, err
	}
	if cfg.Rootfs != "" {
		err = enterRootfs(cfg)
	} else {
		err = hostView(cfg)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// dropNetnsMounts detaches every nsfs mount of the container's copy of
// the host's mounts. One may be out of reach by its path: when processes
// race to make /run/netns a mount point of its own (as `ip netns` and the
// local engine do on first use), a namespace mounted before the last such
// bind is hidden beneath it. So the directory a namespace mount stays in
// is detached too (it holds only namespace mounts), and the mounts read
// again, until none is left.
func dropNetnsMounts() error {
	for range 8 {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		var points, nsfs []string
		for line := range strings.SplitSeq(string(b), "\n") {
			pre, post, ok := strings.Cut(line, " - ")
			pf, qf := strings.Fields(pre), strings.Fields(post)
			if !ok || len(pf) < 5 || len(qf) < 1 {
				continue
			}
			p := unescapeMountPath(pf[4])
			points = append(points, p)
			if qf[0] == "nsfs" {
				nsfs = append(nsfs, p)
			}
		}
		if len(nsfs) == 0 {
			return nil
		}
		dirs := map[string]bool{}
		for _, p := range nsfs {
			if d := filepath.Dir(p); d != "/" {
				dirs[d] = true
			}
		}
		// Newest first: a mount on top goes before what it covers.
		for i := len(points) - 1; i >= 0; i-- {
			if slices.Contains(nsfs, points[i]) || dirs[points[i]] {
				_ = unix.Unmount(points[i], unix.MNT_DETACH)
			}
		}
	}
	return errors.New("network namespace mounts remain in the container after detaching them eight times")
}

// mountBinds mounts each bind's source at its target under root (the
// root file system before pivot_root, or "/" for the host's view), in
// order. Nothing runs in the container yet, but a root file system kept
// from an earlier run may hold anything: a target whose path crosses a
// symbolic link is refused rather than followed out of the root.
func mountBinds(root string, binds []Bind) error {
	for _, b := range binds {
		target, err := mkdirInRoot(root, b.Target)
		if err != nil {
			return fmt.Errorf("bind target %s: %w", b.Target, err)
		}
		if err := unix.Mount(b.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("binding %s at %s: %w", b.Source, b.Target, err)
		}
	}
	return nil
}

// mkdirInRoot makes the directory rel (absolute inside root) under root,
// refusing to pass through a symbolic link, and returns its host path.
func mkdirInRoot(root, rel string) (string, error) {
	p := root
	for _, part := range strings.Split(strings.TrimPrefix(rel, "/"), "/") {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(p, 0o700); err != nil {
				return "", err
			}
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			return "", fmt.Errorf("%s is a symbolic link", strings.TrimPrefix(p, strings.TrimSuffix(root, "/")))
		case !fi.IsDir():
			return "", fmt.Errorf("%s is not a directory", strings.TrimPrefix(p, strings.TrimSuffix(root, "/")))
		}
	}
	return p, nil
}

// hostView keeps the host's file system but gives the container its own
// /proc, and drops the copies of network namespace bind mounts (such as
// /run/netns/*) that the new mount namespace got: held here, they would
// keep other namespaces alive after the host deletes them.
func hostView(cfg Config) error {
	if err := dropNetnsMounts(); err != nil {
		return err
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if err := mountBinds("/", cfg.Binds); err != nil {
		return err
	}
	return bindResolvConf(cfg)
}

// bindResolvConf gives a container on the host's file system its own
// resolver configuration: written to its state directory and bound over
// /etc/resolv.conf (through a symbolic link there, to the file it names)
// in the container's mount namespace only. A host without the file keeps
// none: the init creates nothing on the host's file system.
func bindResolvConf(cfg Config) error {
	text := resolvConf(cfg)
	if text == "" {
		return nil
	}
	if _, err := os.Stat("/etc/resolv.conf"); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	p := filepath.Join(cfg.Dir, resolvFile)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		return err
	}
	if err := unix.Mount(p, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding %s at /etc/resolv.conf: %w", p, err)
	}
	return nil
}

// enterRootfs makes cfg.Rootfs the container's root: a minimal /dev, then
// pivot_root (chroot where pivot_root is impossible, as on an initramfs),
// /proc, a read-only /sys, and /etc/resolv.conf.
func enterRootfs(cfg Config) error {
	r := cfg.Rootfs
	if cfg.Overlay != "" {
		// Mounted in the container's own mount namespace: it goes when
		// the container does, and the host never sees it.
		r = filepath.Join(cfg.Overlay, "merged")
		opts := "lowerdir=" + cfg.Rootfs + ",upperdir=" + filepath.Join(cfg.Overlay, "upper") + ",workdir=" + filepath.Join(cfg.Overlay, "work")
		if err := unix.Mount("overlay", r, "overlay", 0, opts); err != nil {
			return fmt.Errorf("mounting the overlay of %s: %w", cfg.Rootfs, err)
		}
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(r, r, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting rootfs %s: %w", r, err)
	}
	if err := mountBinds(r, cfg.Binds); err != nil {
		return err
	}
	if err := setupDev(filepath.Join(r, "dev")); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(r, "proc"), 0o555); err != nil {
		return err
	}
	if err := unix.Chdir(r); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves nothing of the host mounted.
	if perr := unix.PivotRoot(".", "."); perr == nil {
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detaching the old root: %w", err)
		}
	} else {
		if err := unix.Mount(r, "/", "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("pivot_root: %w; moving rootfs to /: %w", perr, err)
		}
		if err := unix.Chroot("."); err != nil {
			return fmt.Errorf("chroot: %w", err)
		}
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if fi, err := os.Stat("/sys"); err == nil && fi.IsDir() {
		// Optional: sysfs shows the container's network devices.
		_ = unix.Mount("sysfs", "/sys", "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	return writeResolvConf(cfg)
}

// setupDev mounts a tmpfs on dev with the few devices programs expect,
// bound from the host's /dev.
func setupDev(dev string) error {
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mounting %s: %w", dev, err)
	}
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := filepath.Join(dev, name)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+name, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding /dev/%s: %w", name, err)
		}
	}
	// Optional: TUN, for an overlay the instance runs (the agent's Nebula).
	if _, err := os.Stat("/dev/net/tun"); err == nil {
		tun := filepath.Join(dev, "net", "tun")
		if err := os.Mkdir(filepath.Dir(tun), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(tun, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/net/tun", tun, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding /dev/net/tun: %w", err)
		}
	}
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	// Optional: terminals and POSIX shared memory.
	_ = unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
	_ = unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k")
	return nil
}

// writeResolvConf replaces /etc/resolv.conf of the (already entered) root
// file system when there is something to say. A symlink there is replaced,
// not followed.
func writeResolvConf(cfg Config) error {
	text := resolvConf(cfg)
	if text == "" {
		return nil
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return err
	}
	if err := os.Remove("/etc/resolv.conf"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.WriteFile("/etc/resolv.conf", []byte(text), 0o644)
}

// resolvConf is the resolver configuration of cfg, "" when it says
// nothing. A short timeout, as the servers are on the instance's own
// network: a resolver that is down costs a second before the next is
// asked, not glibc's five.
func resolvConf(cfg Config) string {
	if len(cfg.Nameservers) == 0 && cfg.SearchDomain == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("# written by holdfast\n")
	if cfg.SearchDomain != "" {
		fmt.Fprintf(&b, "search %s\n", cfg.SearchDomain)
	}
	for _, ns := range cfg.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(cfg.Nameservers) > 1 {
		b.WriteString("options timeout:1 attempts:2\n")
	}
	return b.String()
}
