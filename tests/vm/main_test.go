// Package vm is dockroot's VM test tier: each test boots Debian's kernel in
// QEMU (TCG) with the initramfs `dockroot initramfs` builds, from disk
// images whose Docker data root a private dockerd filled, and waits for the
// marker lines the image's own init prints. The machinery is in vmkit.
//
// Set DOCKROOT_VM_CONSOLE=1 to see the consoles live; every console is also
// kept in tests/vm/testdata/out/<Test>.log.
package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// work holds what the tests of one run share (binaries, initramfs, the
// pristine disk images); TestMain removes it.
var work string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dockroot-vm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	work = dir
	code := m.Run()
	os.RemoveAll(work)
	os.Exit(code)
}

// once memoises a setup step for the whole run; a failure is reported to
// every test that needs it.
type once[T any] struct {
	sync.Once
	v   T
	err error
}

func (o *once[T]) get(t *testing.T, what string, f func() (T, error)) T {
	t.Helper()
	o.Do(func() {
		start := time.Now()
		o.v, o.err = f()
		if o.err == nil {
			t.Logf("%s ready in %v", what, time.Since(start).Round(time.Millisecond))
		}
	})
	if o.err != nil {
		t.Fatalf("%s: %v", what, o.err)
	}
	return o.v
}

var kernelOnce once[*vmkit.Kernel]

// Kernel returns Debian's kernel, fetching it into the cache on first use.
func Kernel(t *testing.T) *vmkit.Kernel {
	return kernelOnce.get(t, "kernel", func() (*vmkit.Kernel, error) {
		cache, err := vmkit.CacheDir()
		if err != nil {
			return nil, err
		}
		return vmkit.FetchKernel(cache)
	})
}

// Boot starts QEMU with opts (Kernel defaults to Debian's), logs the
// console to testdata/out/<Test>.log (<Test>.2.log for its second boot, ...)
// and kills QEMU when t ends.
func Boot(t *testing.T, opts vmkit.Options) *vmkit.VM {
	t.Helper()
	if opts.Kernel == "" {
		opts.Kernel = Kernel(t).Vmlinuz
	}
	if os.Getenv("DOCKROOT_VM_CONSOLE") == "1" {
		opts.Live = os.Stderr
	}
	if opts.LogFile == "" {
		logFile, err := vmkit.NextLogFile(filepath.Join("testdata", "out"), t.Name())
		if err != nil {
			t.Fatal(err)
		}
		opts.LogFile = logFile
	}
	vm, err := vmkit.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	t.Logf("qemu: %s", strings.Join(vm.Argv, " "))
	return vm
}

// expect waits for text on vm's console and fails t with the console tail
// if it does not come.
func expect(t *testing.T, vm *vmkit.VM, text string, timeout time.Duration) {
	t.Helper()
	if err := vm.Expect(text, timeout); err != nil {
		t.Fatal(err)
	}
}

// copyDisk gives the test its own copy of a pristine disk image.
func copyDisk(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := vmkit.CopyImage(src, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// inspect mounts a disk image after its VM exited and runs fn on it.
func inspect(t *testing.T, image, fstype string, fn func(top string) error) {
	t.Helper()
	if err := vmkit.WithMounted(image, fstype, fn); err != nil {
		t.Fatal(err)
	}
}
