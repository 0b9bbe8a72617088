package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where hosts mount cgroups: the unified hierarchy itself
// (v2), or one directory per v1 hierarchy. A variable for tests only.
var cgroupRoot = "/sys/fs/cgroup"

// cfsPeriod is the CFS period the CPU quota is a multiple of, in µs.
const cfsPeriod = 100000

// limitedControllers are the controllers Holdfast sets limits with.
var limitedControllers = []string{"cpu", "memory", "pids"}

// cgroupSet is one instance's cgroup: a directory in the unified hierarchy
// (v2), or one per controller hierarchy (v1). Which one is decided at run
// time, from what the host has mounted.
type cgroupSet struct {
	rel    string
	v2     bool
	mounts map[string]string // controller -> mount point of its hierarchy (v2: all the same)
}

// findCgroups locates the hierarchies rel lives in; it changes nothing.
func findCgroups(rel string) (*cgroupSet, error) {
	if err := validCgroup(rel); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	c := &cgroupSet{rel: rel, mounts: map[string]string{}}
	if b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		c.v2 = true
		have := strings.Fields(string(b))
		for _, ctl := range limitedControllers {
			if slices.Contains(have, ctl) {
				c.mounts[ctl] = cgroupRoot
			}
		}
		if len(c.mounts) == 0 {
			// Limits are impossible, but membership (and killing by
			// cgroup) still works.
			c.mounts[""] = cgroupRoot
		}
		return c, nil
	}
	mounts, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	for _, ctl := range limitedControllers {
		if m, ok := mounts[ctl]; ok {
			c.mounts[ctl] = m
		}
	}
	if len(c.mounts) == 0 {
		return nil, errors.New("cgroup: neither a unified hierarchy nor any of the cpu, memory, pids controllers is mounted")
	}
	return c, nil
}

// v1Mounts maps each v1 controller to where its hierarchy is mounted,
// reading /proc/self/mountinfo (hierarchies may be co-mounted, such as
// "cpu,cpuacct").
func v1Mounts() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != "cgroup" || pf[3] != "/" {
			continue
		}
		for opt := range strings.SplitSeq(qf[2], ",") {
			if _, dup := out[opt]; !dup {
				out[opt] = unescapeMountPath(pf[4])
			}
		}
	}
	return out, sc.Err()
}

// unescapeMountPath undoes the octal escapes of mountinfo (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// dirs lists this instance's cgroup directories, one per hierarchy.
func (c *cgroupSet) dirs() []string {
	var out []string
	for _, m := range c.mounts {
		d := filepath.Join(m, c.rel)
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// create makes the directories and writes the limits of cfg.
func (c *cgroupSet) create(cfg Config) error {
	if c.v2 {
		if err := c.enableV2Controllers(); err != nil {
			return err
		}
	}
	for _, d := range c.dirs() {
		if err := mkdirRacing(d); err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
	}
	return c.setLimits(cfg)
}

// setLimits writes the CPU, memory and PIDs limits of cfg; a running
// container is resized in place. Lowering memory below what the container
// uses fails (the kernel cannot reclaim enough) and leaves the old limit.
func (c *cgroupSet) setLimits(cfg Config) error {
	type limit struct {
		ctl, file, value string
		set              bool // the limit is wanted, so its controller must exist
	}
	quota, mem := "-1", "-1"
	if c.v2 {
		quota, mem = "max", "max"
	}
	if cfg.CPUs > 0 {
		quota = strconv.Itoa(cfg.CPUs * cfsPeriod)
	}
	if cfg.MemoryMiB > 0 {
		mem = strconv.FormatInt(cfg.MemoryMiB<<20, 10)
	}
	limits := []limit{
		{"cpu", "cpu.cfs_period_us", strconv.Itoa(cfsPeriod), cfg.CPUs > 0},
		{"cpu", "cpu.cfs_quota_us", quota, cfg.CPUs > 0},
		{"memory", "memory.limit_in_bytes", mem, cfg.MemoryMiB > 0},
		{"pids", "pids.max", strconv.Itoa(cfg.PIDs), true},
	}
	if c.v2 {
		limits = []limit{
			{"cpu", "cpu.max", quota + " " + strconv.Itoa(cfsPeriod), cfg.CPUs > 0},
			{"memory", "memory.max", mem, cfg.MemoryMiB > 0},
			{"pids", "pids.max", strconv.Itoa(cfg.PIDs), true},
		}
	}
	for _, l := range limits {
		m, ok := c.mounts[l.ctl]
		if !ok {
			if l.set {
				return fmt.Errorf("cgroup: the %s controller is not available on this host, so %s cannot be set", l.ctl, l.file)
			}
			continue
		}
		p := filepath.Join(m, c.rel, l.file)
		if err := os.WriteFile(p, []byte(l.value), 0); err != nil {
			return fmt.Errorf("cgroup: writing %s to %s: %w", l.value, p, err)
		}
	}
	return nil
}

// unlimitedBytes is where a v1 memory limit counts as none (the kernel
// reports "no limit" as a page-rounded 2^63-1).
const unlimitedBytes = 1 << 62

// limits reads the CPU and memory limits in force: whole CPUs and MiB,
// 0 for none (or when the controller is not there).
func (c *cgroupSet) limits() (cpus int, memMiB int64, err error) {
	read := func(ctl, file string) (string, bool, error) {
		m, ok := c.mounts[ctl]
		if !ok {
			return "", false, nil
		}
		b, err := os.ReadFile(filepath.Join(m, c.rel, file))
		return strings.TrimSpace(string(b)), true, err
	}
	var quota, period, mem string
	var ok bool
	if c.v2 {
		var cpuMax string
		if cpuMax, ok, err = read("cpu", "cpu.max"); err == nil && ok {
			quota, period, _ = strings.Cut(cpuMax, " ")
		}
		if err == nil {
			mem, _, err = read("memory", "memory.max")
		}
	} else {
		if quota, ok, err = read("cpu", "cpu.cfs_quota_us"); err == nil && ok {
			period, _, err = read("cpu", "cpu.cfs_period_us")
		}
		if err == nil {
			mem, _, err = read("memory", "memory.limit_in_bytes")
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("cgroup: %w", err)
	}
	q, qerr := strconv.ParseInt(quota, 10, 64)
	p, perr := strconv.ParseInt(period, 10, 64)
	if qerr == nil && perr == nil && q > 0 && p > 0 {
		cpus = int((q + p - 1) / p)
	}
	if b, err := strconv.ParseInt(mem, 10, 64); err == nil && b > 0 && b < unlimitedBytes {
		memMiB = b >> 20
	}
	return cpus, memMiB, nil
}

// enableV2Controllers turns on the limited controllers for the children of
// every ancestor of the instance's cgroup, creating the ancestors.
func (c *cgroupSet) enableV2Controllers() error {
	var ctls []string
	for ctl := range c.mounts {
		if ctl != "" {
			ctls = append(ctls, ctl)
		}
	}
	slices.Sort(ctls)
	dir := cgroupRoot
	parts := strings.Split(c.rel, "/")
	for i, part := range parts {
		for _, ctl := range ctls {
			p := filepath.Join(dir, "cgroup.subtree_control")
			if err := os.WriteFile(p, []byte("+"+ctl), 0); err != nil {
				return fmt.Errorf("cgroup: enabling %s in %s: %w", ctl, p, err)
			}
		}
		dir = filepath.Join(dir, part)
		if i < len(parts)-1 {
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("cgroup: %w", err)
			}
		}
	}
	return nil
}

// add moves process pid into the instance's cgroup in every hierarchy.
func (c *cgroupSet) add(pid int) error {
	for _, d := range c.dirs() {
		p := filepath.Join(d, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("cgroup: adding %d to %s: %w", pid, p, err)
		}
	}
	return nil
}

// contains reports whether pid is in the instance's cgroup in every
// hierarchy.
func (c *cgroupSet) contains(pid int) bool {
	for _, d := range c.dirs() {
		if !slices.Contains(cgroupProcs(d), pid) {
			return false
		}
	}
	return true
}

func cgroupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// destroy kills every process in the instance's cgroup (and in any cgroup
// created below it), removes the directories, and then the ancestors that
// have become empty. Destroying what does not exist succeeds.
func (c *cgroupSet) destroy(ctx context.Context) error {
	for _, d := range c.dirs() {
		if err := removeCgroupTree(ctx, d); err != nil {
			return err
		}
	}
	// Ancestors are shared with other instances: remove them only while
	// empty; a busy one ends the walk.
	for _, m := range c.mounts {
		for p := filepath.Dir(c.rel); p != "."; p = filepath.Dir(p) {
			if unix.Rmdir(filepath.Join(m, p)) != nil {
				break
			}
		}
	}
	return nil
}

func removeCgroupTree(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(ctx, filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) // v2, Linux 5.14+
	emptied := waitUntil(ctx, cgroupWait, func() bool {
		pids := cgroupProcs(dir)
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		return len(pids) == 0
	})
	if !emptied {
		return fmt.Errorf("cgroup %s: processes %v survive SIGKILL", dir, cgroupProcs(dir))
	}
	// A cgroup whose last process has just died may be busy for a moment.
	var rmErr error
	waitUntil(ctx, cgroupWait, func() bool {
		rmErr = unix.Rmdir(dir)
		return !errors.Is(rmErr, unix.EBUSY)
	})
	if rmErr != nil && !errors.Is(rmErr, unix.ENOENT) {
		return fmt.Errorf("cgroup: removing %s: %w", dir, rmErr)
	}
	return nil
}

// mkdirRacing is MkdirAll for a tree that others prune concurrently: a
// sibling's destroy removes ancestors that look empty, which can happen
// between MkdirAll making the parent and the leaf; then it tries again.
func mkdirRacing(dir string) error {
	var err error
	for range 20 {
		if err = os.MkdirAll(dir, 0o755); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}
