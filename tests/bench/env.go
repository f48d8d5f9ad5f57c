package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// cleanups is a stack of release functions, run newest first. It is run by
// run()'s defer on any return or panic, and by main's signal handler on
// Ctrl-C, so loop devices, mounts and dockerd never outlive the benchmark:
// the machines it runs on share eight loop devices.
type cleanups struct {
	mu    sync.Mutex
	funcs []cleanup
}

type cleanup struct {
	what string
	fn   func() error
}

func (c *cleanups) push(what string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.funcs = append(c.funcs, cleanup{what, fn})
}

// mark is the stack's height, for runFrom.
func (c *cleanups) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.funcs)
}

// run releases everything pushed so far, newest first, and reports every
// failure; a failure does not stop the rest.
func (c *cleanups) run(logf func(string, ...any)) error { return c.runFrom(0, logf) }

// runFrom releases what was pushed since mark, newest first.
func (c *cleanups) runFrom(mark int, logf func(string, ...any)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	if mark > len(c.funcs) {
		mark = len(c.funcs)
	}
	for i := len(c.funcs) - 1; i >= mark; i-- {
		if err := c.funcs[i].fn(); err != nil {
			logf("cleanup: %s: %v", c.funcs[i].what, err)
			errs = append(errs, fmt.Errorf("%s: %w", c.funcs[i].what, err))
		}
	}
	c.funcs = c.funcs[:mark]
	return errors.Join(errs...)
}

// newLoopBtrfs creates and formats a sparse sizeMB btrfs image under dir
// and mounts its top level (subvolid=5), as dockroot mounts it at boot. The
// unmount, the loop detach and the image's removal are pushed onto cl.
func newLoopBtrfs(cl *cleanups, dir string, sizeMB int) (*vmkit.Mount, error) {
	image := filepath.Join(dir, "bench-btrfs.img")
	cl.push("remove "+image, func() error {
		if err := os.Remove(image); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err := vmkit.MakeImage(image, sizeMB, "btrfs", "dockroot-bench", ""); err != nil {
		return nil, fmt.Errorf("loop btrfs: %w", err)
	}
	m, err := vmkit.MountImage(image, filepath.Join(dir, "mnt"), "btrfs")
	if err != nil {
		return nil, fmt.Errorf("loop btrfs: %w (all loop devices busy? see losetup -a)", err)
	}
	cl.push("unmount "+m.Dir+" and detach "+m.Loop, m.Close)
	return m, nil
}

// unmount unmounts mnt, lazily if it is still busy.
func unmount(mnt string) error {
	if _, err := testenv.Output("umount", mnt); err != nil {
		if _, err2 := testenv.Output("umount", "-l", mnt); err2 != nil {
			return fmt.Errorf("%w; lazily: %v", err, err2)
		}
	}
	return nil
}

// startDockerd starts a private dockerd (btrfs graph driver) with its data
// root at dataRoot; stopping it by PID is pushed onto cl.
func startDockerd(cl *cleanups, dataRoot, workDir string) (*testenv.Dockerd, error) {
	d, err := testenv.StartDockerdProcess(dataRoot, workDir)
	if err != nil {
		return nil, err
	}
	cl.push(fmt.Sprintf("stop dockerd (pid %d)", d.PID), d.Stop)
	return d, nil
}

// waitCleaner waits until btrfs has freed every deleted subvolume of the
// filesystem at top. Deletion returns at once and a kernel thread (the
// cleaner) frees the trees later, normally after the next periodic commit
// (every 30 s), which would otherwise land in the middle of a later
// measurement. BTRFS_IOC_SYNC (`btrfs filesystem sync`) commits and wakes
// the transaction thread, which pokes the cleaner (fs/btrfs/ioctl.c); then
// `btrfs subvolume list -d` is polled until no deleted subvolume is left.
// (`btrfs subvolume sync` would do, but it polls once a second.)
func waitCleaner(top string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for i := 0; ; i++ {
		if i%50 == 0 {
			if _, err := testenv.Output("btrfs", "filesystem", "sync", top); err != nil {
				return err
			}
		}
		out, err := testenv.Output("btrfs", "subvolume", "list", "-d", top)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("btrfs on %s still has deleted subvolumes to clean after 5 minutes:\n%s", top, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := testenv.Output("btrfs", "filesystem", "sync", top)
	return err
}
