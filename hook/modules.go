package hook

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/dockroot/dockroot/internal/kmod"
	"github.com/dockroot/dockroot/internal/uevent"
)

// loadModuleList loads the initramfs's module list and summarises the
// outcome for the step's "done" line. Per-module lines are debug output:
// a dozen of them would use up the kernel's /dev/kmsg rate limit before
// the steps that matter. Failures come back in the error.
func loadModuleList(log Logger, list string) (string, error) {
	if _, err := os.Stat(list); err != nil {
		return "", err // os.ErrNotExist: the step is skipped
	}
	res, err := kmod.NewLoader(log.Debugf).LoadList(list)
	return moduleSummary(res), err
}

// moduleSummary renders "5 loaded, 2 already loaded, ..." in a fixed order.
func moduleSummary(res kmod.Result) string {
	var parts []string
	for _, o := range []kmod.Outcome{kmod.Loaded, kmod.Present, kmod.BuiltIn, kmod.NoDevice, kmod.Failed} {
		if n := len(res[o]); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	if len(parts) == 0 {
		return "the list is empty"
	}
	return strings.Join(parts, ", ")
}

// parallelLoads bounds the modules loading at once: one more than the
// CPUs (a load waits on the disk at times), so that the drivers of a
// machine probe side by side without a one-CPU machine juggling eight
// module inits at once (which delays the root disk's driver behind
// btrfs's), and at most 8, so that a thousand matching aliases do not
// start a thousand loads.
func parallelLoads() int {
	return min(max(runtime.NumCPU()+1, 2), 8)
}

// maxColdplugRounds bounds the rescans of the devices: a driver's probe
// adds devices (virtio_pci adds the virtio devices that virtio_blk
// drives), so the scan repeats until it asks for no new module.
const maxColdplugRounds = 8

// hotplug is the module loading of a real boot by the module table: the
// coldplug scan in the modules step, then, until switch_root, the uevent
// listener that loads drivers for devices that appear later and wakes the
// device wait when a block device appears. Without a table (an initramfs
// built with --modules all, or by an older dockroot) it loads the list and
// listens only to wake the device wait.
type hotplug struct {
	log   Logger
	table string // /etc/dockroot/modules.table
	sys   string // /sys

	mu   sync.Mutex
	set  *kmod.Set
	t    *kmod.Table
	conn *uevent.Conn
	wake chan struct{}
	done chan struct{} // closed when the listener ends
}

// load is System.LoadModules of a real boot.
func (h *hotplug) load(list string, fsTypes []string) (string, error) {
	h.listen()
	data, err := os.ReadFile(h.table)
	if errors.Is(err, os.ErrNotExist) {
		return loadModuleList(h.log, list)
	}
	if err != nil {
		return "", fmt.Errorf("read module table: %w", err)
	}
	t, err := kmod.DecodeTable(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", h.table, err)
	}
	set := kmod.NewSet(t, kmod.NewLoader(h.log.Debugf), parallelLoads(), h.log.Debugf)
	h.mu.Lock()
	h.t, h.set = t, set
	h.mu.Unlock()

	sum, err := coldplug(t, set, h.sys, fsTypes, h.log.Debugf)
	if err != nil {
		return "", err
	}
	res := set.Result()
	summary := fmt.Sprintf("%d of %d modules for %d of %d devices (%d scans of %s in %d ms): %s", sum.tried(res), len(t.Modules),
		sum.matched, sum.devices, sum.scans, h.sys, sum.scanTime.Milliseconds(), moduleSummary(res))
	if f := set.Failures(); len(f) > 0 {
		return summary, fmt.Errorf("%s: %w", summary, &kmod.LoadError{Failures: f, Total: sum.tried(res)})
	}
	return summary, nil
}

// coldSummary counts what the last coldplug scan saw.
type coldSummary struct {
	devices, matched int // devices with a modalias; those a packed module matched
	scans            int
	scanTime         time.Duration // reading and matching the modaliases
}

func (coldSummary) tried(res kmod.Result) int {
	n := 0
	for _, names := range res {
		n += len(names)
	}
	return n
}

// AnyFilesystem, as one of coldplug's fsTypes, asks for every packed
// filesystem: a top layer on another device whose type is detected from
// its superblock only when it is mounted.
const AnyFilesystem = "*"

// coldplug loads the modules flagged FlagAlways, those for the filesystem
// types fsTypes (fsModules), and those whose aliases match a device in
// sys (kmod.Modaliases), rescanning after each round until one asks for
// nothing new. The first round's drivers are asked for before the
// filesystems, so that the root disk's driver starts first: the mount
// needs btrfs only once the disk is there.
func coldplug(t *kmod.Table, set *kmod.Set, sys string, fsTypes []string, logf func(string, ...any)) (coldSummary, error) {
	var always []int
	for i, m := range t.Modules {
		if m.Always() {
			always = append(always, i)
		}
	}
	always = append(always, fsModules(t, fsTypes)...)
	var sum coldSummary
	for round := 1; round <= maxColdplugRounds; round++ {
		start := time.Now()
		aliases, err := kmod.Modaliases(sys)
		if err != nil {
			if round == 1 {
				set.Want(always...) // without devices, still the filesystems
			}
			return sum, err
		}
		sum.devices, sum.matched = len(aliases), 0
		var idx []int
		for _, a := range aliases {
			if m := t.Match(a); len(m) > 0 {
				sum.matched++
				idx = append(idx, m...)
			}
		}
		sum.scans++
		sum.scanTime += time.Since(start)
		added := set.Want(idx...)
		if round == 1 {
			set.Want(always...)
		}
		set.Wait()
		logf("coldplug round %d: %d devices, %d matched, %d new modules", round, sum.devices, sum.matched, added)
		if added == 0 && round > 1 {
			break
		}
	}
	return sum, nil
}

// fsModules are the packed modules a mount of each of fsTypes needs: the
// one with the type's "fs-TYPE" alias (what the kernel's mount asks
// request_module for) or its name, and for FAT the code pages its
// defaults ask for (nls_*, by name at mount). AnyFilesystem is every
// module with an "fs-" alias, and the code pages.
func fsModules(t *kmod.Table, fsTypes []string) []int {
	var want []int
	fat := false
	for _, fs := range fsTypes {
		switch fs {
		case "":
			continue
		case AnyFilesystem:
			for _, a := range t.Aliases {
				if strings.HasPrefix(a.Prefix, "fs_") || strings.HasPrefix(a.Prefix, "fs-") {
					want = append(want, a.Module)
				}
			}
			fat = true
			continue
		case "vfat", "msdos", "fat":
			fat = true
		}
		want = append(want, t.Match("fs-"+fs)...)
		if i := t.Lookup(fs); i >= 0 {
			want = append(want, i)
		}
	}
	if fat {
		for i, m := range t.Modules {
			if strings.HasPrefix(m.Name, "nls_") {
				want = append(want, i)
			}
		}
	}
	return want
}

// listen starts the uevent listener, once. Without the socket (a kernel
// without CONFIG_NET) the device wait polls as before.
func (h *hotplug) listen() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil || h.done != nil {
		return
	}
	conn, err := uevent.Listen()
	h.done = make(chan struct{})
	if err != nil {
		h.log.Warnf("no uevents (%v): drivers for devices that appear after the module scan are not loaded, and the device wait polls", err)
		close(h.done)
		return
	}
	h.conn = conn
	h.wake = make(chan struct{}, 1)
	go h.run(conn)
}

func (h *hotplug) run(conn *uevent.Conn) {
	defer close(h.done)
	for {
		ev, err := conn.Read()
		switch {
		case errors.Is(err, uevent.ErrClosed):
			return
		case errors.Is(err, uevent.ErrOverflow):
			h.log.Debugf("uevents: %v; rescanning the devices", err)
			h.rescan()
			h.notify()
			continue
		case err != nil:
			h.log.Warnf("uevents: %v: the device wait polls from now on", err)
			return
		}
		if ev.Action == "add" && ev.Modalias != "" {
			h.mu.Lock()
			t, set := h.t, h.set
			h.mu.Unlock()
			if set != nil {
				if m := t.Match(ev.Modalias); len(m) > 0 && set.Want(m...) > 0 {
					h.log.Debugf("uevent %s %s: loading modules for %s", ev.Action, ev.DevPath, ev.Modalias)
				}
			}
		}
		if ev.Subsystem == "block" && (ev.Action == "add" || ev.Action == "change") {
			h.notify()
		}
	}
}

// rescan matches every device again, after lost events.
func (h *hotplug) rescan() {
	h.mu.Lock()
	t, set := h.t, h.set
	h.mu.Unlock()
	if set == nil {
		return
	}
	aliases, err := kmod.Modaliases(h.sys)
	if err != nil {
		return
	}
	for _, a := range aliases {
		set.Want(t.Match(a)...)
	}
}

// notify wakes the device wait; a wake already pending is enough.
func (h *hotplug) notify() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Wake is the device wait's wake-up channel; nil without uevents.
func (h *hotplug) Wake() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil {
		return nil
	}
	return h.wake
}

// failures lists the modules that failed to load so far.
func (h *hotplug) failures() []kmod.Failure {
	h.mu.Lock()
	set := h.set
	h.mu.Unlock()
	if set == nil {
		return nil
	}
	return set.Failures()
}

// stopWait bounds how long switch_root waits for module loads in flight:
// a driver stuck in its probe must not stop the boot.
const stopWait = 5 * time.Second

// stop ends the listener and waits (up to stopWait) for the loads in
// flight, before switch_root deletes the initramfs.
func (h *hotplug) stop() {
	h.mu.Lock()
	conn, done, set := h.conn, h.done, h.set
	h.mu.Unlock()
	if conn != nil {
		conn.Close()
		<-done
	}
	if set == nil {
		return
	}
	idle := make(chan struct{})
	go func() { set.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(stopWait):
		h.log.Warnf("kernel modules still loading after %s; switching root without waiting for them", stopWait)
	}
}

// withModuleFailures adds the modules that failed to load to a device wait
// that timed out: one of them may have been the device's driver.
func withModuleFailures(err error, failures []kmod.Failure) error {
	if len(failures) == 0 {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d kernel modules failed to load, one may be this device's driver:", len(failures))
	for _, f := range failures {
		fmt.Fprintf(&b, "\n  %s: %v", f.Module.Name(), f.Err)
	}
	return fmt.Errorf("%w\n%s", err, b.String())
}
