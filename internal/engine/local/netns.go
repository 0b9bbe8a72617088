package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/nsthread"
)

// netnsDir is where named network namespaces are bind-mounted (iproute2's
// convention, so `ip netns` sees them too).
const netnsDir = nsthread.NamedDir

// shareNamedDir prepares netnsDir once per process, before the first
// namespace is mounted in it (nsthread.ShareNamedDir says why).
var shareNamedDir = sync.OnceValue(nsthread.ShareNamedDir)

// nsPath is a named namespace's file.
func nsPath(name string) string { return filepath.Join(netnsDir, name) }

// nsExists reports whether name is a live namespace: its file is an nsfs
// mount, not a leftover of a crash between creating the file and mounting.
func nsExists(name string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(nsPath(name), &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// ensureNS makes the named namespace exist.
func ensureNS(name string) error {
	if nsExists(name) {
		return nil
	}
	// A stale file from an interrupted create or delete is removed first.
	if err := unmountAndRemove(name); err != nil {
		return err
	}
	if err := shareNamedDir(); err != nil {
		return err
	}
	err := nsthread.Run(func() error { // creating one moves the calling thread into it
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// deleteNS removes a named namespace; its interfaces go with it (and the
// far ends of veth pairs in other namespaces). Absent is success.
func deleteNS(name string) error {
	return unmountAndRemove(name)
}

func unmountAndRemove(name string) error {
	p := nsPath(name)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove namespace %s: %w", name, err)
	}
	return nil
}

// listNS returns the named namespaces whose names start with prefix.
func listNS(prefix string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// inNS runs f on a thread inside the named namespace, for what netlink
// cannot do from outside (writing a namespace's /proc/sys).
func inNS(name string, f func() error) error { return nsthread.In(nsPath(name), f) }

// sysctl writes a value under /proc/sys/net in the named namespace.
func sysctl(ns, key, value string) error {
	return inNS(ns, func() error {
		p := "/proc/sys/net/" + strings.ReplaceAll(key, ".", "/")
		if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) == value {
			return nil
		}
		return os.WriteFile(p, []byte(value), 0o644)
	})
}

// readSysctl reads a value under /proc/sys/net in the named namespace.
func readSysctl(ns, key string) (string, error) {
	var v string
	err := inNS(ns, func() error {
		b, err := os.ReadFile("/proc/sys/net/" + strings.ReplaceAll(key, ".", "/"))
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}
