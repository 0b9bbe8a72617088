package nsthread_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/testenv"
)

func inode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// In runs its function inside the namespace, and no other goroutine's
// thread ever is.
func TestInEntersTheNamespaceAndLeavesOtherThreadsAlone(t *testing.T) {
	testenv.NeedRoot(t, "creating a network namespace")
	name := fmt.Sprintf("hf-nsthread-%d", os.Getpid())
	var created netns.NsHandle
	err := nsthread.Run(func() error {
		var err error
		created, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	created.Close()
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	path := "/run/netns/" + name
	host := inode("/proc/self/ns/net")
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inside uint64
			if err := nsthread.In(path, func() error {
				inside = inode("/proc/thread-self/ns/net")
				return nil
			}); err != nil {
				t.Error(err)
			}
			if inside != inode(path) {
				t.Errorf("fn ran in namespace %d, want %d", inside, inode(path))
			}
		}()
	}
	wg.Wait()
	// Every thread the process keeps is in the host's namespace. The
	// thread Run created the namespace from is discarded, and the kernel
	// may still list it for a moment while it exits: a thread left in
	// another namespace is one still there after that.
	var left []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		left = left[:0]
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			if ino := inode("/proc/self/task/" + task.Name() + "/ns/net"); ino != 0 && ino != host {
				left = append(left, fmt.Sprintf("thread %s in namespace %d", task.Name(), ino))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling /proc: a thread's exit has no event to wait on
	}
	for _, l := range left {
		t.Errorf("%s was left behind", l)
	}
}
