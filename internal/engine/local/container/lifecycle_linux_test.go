package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// With an overlay, the container writes into its own layer: the shared
// root file system is never changed, what it wrote survives a restart, and
// emptying the overlay while stopped resets it to the root file system.
func TestOverlayKeepsWritesOutOfTheRootfs(t *testing.T) {
	cfg := testConfig(t, "layered")
	cfg.Rootfs = buildRootfs(t, "sh", "cat")
	if err := os.WriteFile(filepath.Join(cfg.Rootfs, "marker"), []byte("template\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Overlay = filepath.Join(t.TempDir(), "overlay")
	cfg.Nameservers = []string{"10.7.0.53"}
	start(t, cfg)

	if code, _, errOut := run(t, cfg.Dir, "", "sh", "-c", "echo mine > /written && echo changed > /marker"); code != 0 {
		t.Fatalf("writing inside: exit %d %s", code, errOut)
	}
	if _, out, _ := run(t, cfg.Dir, "", "cat", "/written", "/marker"); out != "mine\nchanged\n" {
		t.Errorf("inside: %q", out)
	}
	for _, f := range []string{"written", "etc/resolv.conf"} {
		if _, err := os.Stat(filepath.Join(cfg.Rootfs, f)); !os.IsNotExist(err) {
			t.Errorf("the container wrote %s into the shared rootfs (stat: %v)", f, err)
		}
		if _, err := os.Stat(filepath.Join(cfg.Overlay, "upper", f)); err != nil {
			t.Errorf("%s is not in the container's layer: %v", f, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(cfg.Rootfs, "marker")); string(b) != "template\n" {
		t.Errorf("the rootfs's marker is now %q", b)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), cfg.Overlay) {
		t.Errorf("the overlay is mounted in the host's namespace")
	}

	// A restart keeps the layer.
	stop(t, cfg)
	start(t, cfg)
	if _, out, _ := run(t, cfg.Dir, "", "cat", "/written"); out != "mine\n" {
		t.Errorf("after a restart /written = %q, want it kept", out)
	}
	// An emptied layer is the template again.
	stop(t, cfg)
	if err := os.RemoveAll(cfg.Overlay); err != nil {
		t.Fatal(err)
	}
	start(t, cfg)
	if code, _, _ := run(t, cfg.Dir, "", "cat", "/written"); code == 0 {
		t.Error("/written survived emptying the overlay")
	}
	if _, out, _ := run(t, cfg.Dir, "", "cat", "/marker"); out != "template\n" {
		t.Errorf("after a reset /marker = %q, want the template's", out)
	}
}

// Binds put host directories inside: over the host's view (a home of the
// container's own at /root) and inside a root file system, one within
// another; what is written on either side shows on the other.
func TestBinds(t *testing.T) {
	for _, rooted := range []bool{false, true} {
		t.Run(map[bool]string{false: "host view", true: "rootfs"}[rooted], func(t *testing.T) {
			cfg := testConfig(t, "bound")
			home, keys := filepath.Join(t.TempDir(), "home"), filepath.Join(t.TempDir(), "ssh")
			for _, d := range []string{home, keys} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			cfg.Binds = []Bind{{Source: home, Target: "/root"}, {Source: keys, Target: "/root/.ssh"}}
			if rooted {
				cfg.Rootfs = buildRootfs(t, "sh", "cat")
				cfg.Overlay = filepath.Join(t.TempDir(), "overlay")
			}
			if err := os.WriteFile(filepath.Join(keys, "authorized_keys"), []byte("ssh-ed25519 AAAA one\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			start(t, cfg)
			if _, out, _ := run(t, cfg.Dir, "", "cat", "/root/.ssh/authorized_keys"); out != "ssh-ed25519 AAAA one\n" {
				t.Errorf("authorized_keys inside = %q", out)
			}
			// Replaced on the host (as the engine does, by a rename), seen inside.
			tmp := filepath.Join(keys, ".new")
			if err := os.WriteFile(tmp, []byte("ssh-ed25519 AAAA two\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(keys, "authorized_keys")); err != nil {
				t.Fatal(err)
			}
			if _, out, _ := run(t, cfg.Dir, "", "cat", "/root/.ssh/authorized_keys"); out != "ssh-ed25519 AAAA two\n" {
				t.Errorf("authorized_keys inside after a change = %q", out)
			}
			if code, _, errOut := run(t, cfg.Dir, "", "sh", "-c", "echo x > /root/notes"); code != 0 {
				t.Fatalf("writing in /root: %s", errOut)
			}
			if _, err := os.Stat(filepath.Join(home, "notes")); err != nil {
				t.Errorf("a file written in /root is not in the container's home: %v", err)
			}
			if !rooted {
				if _, err := os.Stat("/root/notes"); err == nil {
					t.Error("the host's /root was written")
				}
			}
		})
	}
}

// A bind target is never reached through a symbolic link: the root file
// system (or what an earlier run left in its layer) could point it at
// anything.
func TestBindRefusesATargetBehindASymlink(t *testing.T) {
	cfg := testConfig(t, "sly")
	cfg.Rootfs = buildRootfs(t, "sh")
	if err := os.Symlink("/etc", filepath.Join(cfg.Rootfs, "root")); err != nil {
		t.Fatal(err)
	}
	cfg.Overlay = filepath.Join(t.TempDir(), "overlay")
	cfg.Binds = []Bind{{Source: t.TempDir(), Target: "/root/.ssh"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "/root is a symbolic link") {
		t.Errorf("Start = %v, want refused: /root is a symbolic link", err)
	}
	if _, err := os.Stat("/etc/.ssh"); err == nil {
		t.Error("the bind followed the link out of the rootfs")
	}
}

// Resize changes the limits of a running container without restarting it.
func TestResizeInPlace(t *testing.T) {
	cfg := testConfig(t, "resized")
	cfg.CPUs, cfg.MemoryMiB = 1, 256
	cfg.Command = []string{"sleep", "600"}
	pid := start(t, cfg)
	var st Status
	eventually(t, 5*time.Second, "the service did not start", func() bool {
		st = inspect(t, cfg.Dir)
		return st.ServicePID != 0
	})
	if st.CPUs != 1 || st.MemoryMiB != 256 {
		t.Errorf("limits before = %d CPUs %d MiB, want 1 and 256", st.CPUs, st.MemoryMiB)
	}
	service := st.ServicePID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Resize(ctx, cfg.Dir, 2, 384); err != nil {
		t.Fatal(err)
	}
	st = inspect(t, cfg.Dir)
	if st.PID != pid || st.ServicePID != service || st.Restarts != 0 {
		t.Errorf("after resize: init %d service %d restarts %d, want %d, %d, 0", st.PID, st.ServicePID, st.Restarts, pid, service)
	}
	if st.CPUs != 2 || st.MemoryMiB != 384 || st.Config.CPUs != 2 || st.Config.MemoryMiB != 384 {
		t.Errorf("after resize: in force %d CPUs %d MiB, recorded %d %d; want 2 and 384", st.CPUs, st.MemoryMiB, st.Config.CPUs, st.Config.MemoryMiB)
	}
	cg, _ := cgroupDirs(t, cfg.Cgroup)
	file, want := filepath.Join(cg.mounts["memory"], cfg.Cgroup, "memory.limit_in_bytes"), strconv.Itoa(384<<20)
	if cg.v2 {
		file = filepath.Join(cg.mounts["memory"], cfg.Cgroup, "memory.max")
	}
	if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != want {
		t.Errorf("%s = %q (%v), want %s", file, b, err, want)
	}
	// Removing a limit is a resize too.
	if err := Resize(ctx, cfg.Dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if st = inspect(t, cfg.Dir); st.CPUs != 0 || st.MemoryMiB != 0 || st.PID != pid {
		t.Errorf("unlimited: %d CPUs %d MiB, init %d", st.CPUs, st.MemoryMiB, st.PID)
	}

	stop(t, cfg)
	if err := Resize(ctx, cfg.Dir, 1, 128); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Resize of a stopped container = %v, want ErrNotRunning", err)
	}
}
