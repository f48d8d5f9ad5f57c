package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
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

// runCmd runs argv and returns its stdout; the error carries argv and
// stderr.
func runCmd(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// loopBtrfs is a btrfs filesystem in a sparse file, mounted at its top
// level (subvolid=5) as dockroot mounts it at boot.
type loopBtrfs struct {
	Image, Loop, Mnt string
}

// newLoopBtrfs creates, formats and mounts a sparse sizeMB btrfs under dir.
// The unmount, the loop detach and the file's removal are pushed onto cl.
func newLoopBtrfs(cl *cleanups, dir string, sizeMB int) (*loopBtrfs, error) {
	b := &loopBtrfs{Image: filepath.Join(dir, "bench-btrfs.img"), Mnt: filepath.Join(dir, "mnt")}
	if err := os.MkdirAll(b.Mnt, 0o755); err != nil {
		return nil, fmt.Errorf("loop btrfs: %w", err)
	}
	f, err := os.Create(b.Image)
	if err != nil {
		return nil, fmt.Errorf("loop btrfs: %w", err)
	}
	cl.push("remove "+b.Image, func() error { return os.Remove(b.Image) })
	err = f.Truncate(int64(sizeMB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("loop btrfs: size %s: %w", b.Image, err)
	}
	if _, err := runCmd("mkfs.btrfs", "-q", "-f", "-L", "dockroot-bench", b.Image); err != nil {
		return nil, fmt.Errorf("loop btrfs: %w", err)
	}
	out, err := runCmd("losetup", "--find", "--show", b.Image)
	if err != nil {
		return nil, fmt.Errorf("loop btrfs: %w (all loop devices busy? see losetup -a)", err)
	}
	b.Loop = strings.TrimSpace(out)
	cl.push("detach "+b.Loop, func() error { _, err := runCmd("losetup", "-d", b.Loop); return err })
	if _, err := runCmd("mount", "-t", "btrfs", "-o", "subvolid=5", b.Loop, b.Mnt); err != nil {
		return nil, fmt.Errorf("loop btrfs: %w", err)
	}
	cl.push("unmount "+b.Mnt, func() error { return unmount(b.Mnt) })
	return b, nil
}

// unmount unmounts mnt, lazily if it is still busy.
func unmount(mnt string) error {
	if _, err := runCmd("umount", mnt); err != nil {
		if _, err2 := runCmd("umount", "-l", mnt); err2 != nil {
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
			if _, err := runCmd("btrfs", "filesystem", "sync", top); err != nil {
				return err
			}
		}
		out, err := runCmd("btrfs", "subvolume", "list", "-d", top)
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
	_, err := runCmd("btrfs", "filesystem", "sync", top)
	return err
}
