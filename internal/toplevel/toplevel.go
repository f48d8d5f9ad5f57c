// Package toplevel mounts a btrfs filesystem's top level (subvolid=5)
// privately, for the host verbs that change dockroot's state next to the
// layers: gc, mark-good and retry (internal/commands). Nothing else on the
// system sees the mount, and it goes away with the thread that made it.
//
// It is host-only and a leaf of the verbs: it must not import the boot
// (hook), internal/commands, internal/cli or cmd/….
package toplevel

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// With mounts the btrfs filesystem on dev at its top level (subvolid=5) on
// a temporary directory, runs fn with it, and unmounts it. A failure to
// unmount after fn failed is passed to warn (nil ignores it) and fn's error
// is returned.
//
// The mount happens in a mount namespace of its own, on one OS thread that
// is never returned to the Go scheduler: nothing else on the system sees
// the top level (every layer and Docker's whole data root, read-write),
// and if dockroot dies halfway the kernel drops the mount with the thread.
// Go starts new threads from a template thread, not from a locked one, so
// no other thread inherits the namespace.
func With(dev string, warn func(error), fn func(top string) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		errc <- mount(dev, warn, fn)
	}()
	return <-errc
}

func mount(dev string, warn func(error), fn func(top string) error) error {
	// CLONE_NEWNS is allowed in a threaded process (unlike CLONE_NEWUSER):
	// it copies only this thread's filesystem context. Where it is not
	// allowed (a container without CAP_SYS_ADMIN), mounting fails below
	// with the same cause.
	if err := unix.Unshare(unix.CLONE_NEWNS); err == nil {
		// systemd makes / shared: without this the mount would propagate
		// back into the system's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make the private mount namespace's mounts private: %w", err)
		}
	}
	base := "/run"
	if _, err := os.Stat(base); err != nil {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "dockroot-top.")
	if err != nil {
		return fmt.Errorf("make a mount point for the btrfs top level: %w", err)
	}
	defer os.Remove(dir)
	if err := unix.Mount(dev, dir, "btrfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "subvolid=5"); err != nil {
		return fmt.Errorf("mount %s on %s (btrfs, subvolid=5): %w", dev, dir, err)
	}
	ferr := fn(dir)
	if err := unix.Unmount(dir, 0); err != nil {
		uerr := fmt.Errorf("unmount %s: %w", dir, err)
		if ferr == nil {
			return uerr
		}
		if warn != nil {
			warn(uerr)
		}
	}
	return ferr
}
