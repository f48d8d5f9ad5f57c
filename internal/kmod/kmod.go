// Package kmod loads the kernel modules the initramfs carries. dockroot-init
// (PID 1) calls it in its "load modules" step, before it waits for the root
// device; the initramfs builder (`dockroot initramfs`) writes the list and
// the module table it reads. There is no modprobe in the initramfs: the
// builder has already resolved dependencies and softdeps.
//
// Two ways to load: LoadList walks the whole list in order with
// finit_module(2) (`--modules all`). With the module table (table.go), the
// init matches each device's modalias against the packed modules' aliases
// (Table.Match, fnmatch as kmod does) and a Set loads the matches with
// their dependencies, independent ones in parallel.
//
// # The module list: /etc/dockroot/modules.list
//
// A UTF-8 text file, one module per line, in load order (dependencies
// first). The rules:
//
//   - Blank lines, and lines whose first non-blank character is '#', are
//     ignored.
//   - Column 1 is the module file: relative to /lib/modules/<running kernel
//     release>/ (`uname -r`), or absolute. It must end in ".ko"; ".ko.xz",
//     ".ko.zst" and ".ko.gz" are accepted but are loaded only if the
//     running kernel can decompress that format itself (Linux 5.17+ with
//     CONFIG_MODULE_DECOMPRESS, gzip/xz; zstd from 6.2; it says which in
//     /sys/module/compression), so the builder should write plain ".ko".
//   - An optional second column, after a single TAB, is the module's
//     parameter string exactly as finit_module takes it ("a=1 b=2").
//   - Leading and trailing blanks of a line are ignored; paths cannot
//     contain a TAB or a newline.
//
// For example (the gap before multipath=N is one TAB):
//
//	# written by dockroot initramfs for 6.1.0-18-amd64
//	kernel/lib/libcrc32c.ko
//	kernel/fs/btrfs/btrfs.ko
//	kernel/drivers/block/virtio_blk.ko
//	kernel/drivers/nvme/host/nvme_core.ko	multipath=N
//	/lib/modules/extra/out-of-tree.ko
//
// # Outcomes
//
// A module that is already loaded or built in (/sys/module/NAME exists, or
// finit_module says EEXIST) is fine. A module whose hardware is absent
// (ENODEV) is fine too: the builder adds the common storage drivers whether
// or not this machine has them. Any other failure is logged and the rest of
// the list is still loaded; LoadList then returns a *LoadError naming each
// failure. The caller usually treats it as a warning: whether a driver
// that mattered is missing shows in the root device wait that follows.
//
// It is a leaf the init links: it imports nothing of dockroot's.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Module is one line of the module list.
type Module struct {
	Path   string // as written: relative to the modules dir, or absolute
	Params string // finit_module parameter string; "" for none
	Line   int    // 1-based line number, for messages
}

// compressions maps a module file suffix to the name the kernel writes in
// /sys/module/compression when it can decompress that format.
var compressions = []struct{ suffix, kernelName string }{
	{".ko.xz", "xz"},
	{".ko.zst", "zstd"},
	{".ko.gz", "gzip"},
}

// Compression returns the kernel's name of the module's compression ("xz",
// "zstd", "gzip"), or "" for a plain .ko.
func (m Module) Compression() string {
	for _, c := range compressions {
		if strings.HasSuffix(m.Path, c.suffix) {
			return c.kernelName
		}
	}
	return ""
}

// Name is the module name the kernel uses: the file name without ".ko"
// and compression suffix, with '-' read as '_' (usb-storage.ko registers as
// usb_storage under /sys/module).
func (m Module) Name() string {
	base := filepath.Base(m.Path)
	for _, c := range compressions {
		base = strings.TrimSuffix(base, c.suffix)
	}
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// ParseList reads a module list in the format of the package doc. A line
// that is not a module path is an error naming the line: a list the
// builder wrote wrongly should fail its tests, not half-load at boot.
func ParseList(r io.Reader) ([]Module, error) {
	var mods []Module
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		path, params, _ := strings.Cut(text, "\t")
		path, params = strings.TrimSpace(path), strings.TrimSpace(params)
		m := Module{Path: path, Params: params, Line: line}
		if path == "" || (m.Compression() == "" && !strings.HasSuffix(path, ".ko")) {
			return nil, fmt.Errorf("module list line %d: %q is not a module file (want PATH.ko[.xz|.zst|.gz], then optionally a TAB and parameters)", line, text)
		}
		mods = append(mods, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read module list: %w", err)
	}
	return mods, nil
}

// Outcome is what happened to one module.
type Outcome string

const (
	Loaded   Outcome = "loaded"
	Present  Outcome = "already loaded"
	BuiltIn  Outcome = "built in"
	NoDevice Outcome = "no matching device"
	Failed   Outcome = "failed"
)

// Loader loads modules. NewLoader fills it for the running system; tests
// set the paths to a temporary tree and Finit to a fake.
type Loader struct {
	ModulesDir string // base of relative paths; default /lib/modules/$(uname -r)
	SysModule  string // /sys/module
	// Finit is finit_module(2); the default is unix.FinitModule.
	Finit func(fd int, params string, flags int) error
	Log   func(format string, args ...any)
}

// NewLoader returns a loader for the running kernel.
func NewLoader(log func(format string, args ...any)) *Loader {
	dir := "/lib/modules"
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		dir = filepath.Join(dir, unix.ByteSliceToString(u.Release[:]))
	}
	return &Loader{ModulesDir: dir, SysModule: "/sys/module", Finit: unix.FinitModule, Log: log}
}

func (l *Loader) logf(format string, args ...any) {
	if l.Log != nil {
		l.Log(format, args...)
	}
}

// Failure is one module that did not load.
type Failure struct {
	Module Module
	Err    error
}

// LoadError lists the modules that failed; the others were loaded.
type LoadError struct {
	Failures []Failure
	Total    int
}

func (e *LoadError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d kernel modules failed to load:", len(e.Failures), e.Total)
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "\n  %s: %v", f.Module.Name(), f.Err)
	}
	b.WriteString("\nThe boot goes on; if the root device is then not found, one of these was its driver.")
	return b.String()
}

// Result counts what LoadList did, by outcome.
type Result map[Outcome][]string

// LoadList loads every module of the list at path, in order. A missing
// list means an initramfs without modules (everything built in) and is not
// an error. Failures are logged as they happen and returned together as a
// *LoadError after the whole list was tried.
func (l *Loader) LoadList(path string) (Result, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		l.logf("no module list at %s: loading no modules (the kernel must have its storage and btrfs drivers built in)", path)
		return Result{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open module list %s: %w", path, err)
	}
	defer f.Close()
	mods, err := ParseList(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res := Result{}
	var failures []Failure
	for _, m := range mods {
		start := time.Now()
		out, err := l.Load(m)
		res[out] = append(res[out], m.Name())
		switch {
		case errors.Is(err, errNoModuleSupport):
			return res, fmt.Errorf("load %s: %w", m.Name(), err)
		case err != nil:
			l.logf("module %s: failed: %v", m.Name(), err)
			failures = append(failures, Failure{Module: m, Err: err})
		default:
			l.logf("module %s: %s (%s)", m.Name(), out, time.Since(start).Round(time.Microsecond))
		}
	}
	if len(failures) > 0 {
		return res, &LoadError{Failures: failures, Total: len(mods)}
	}
	return res, nil
}

// LoadList loads the list at path into the running kernel.
func LoadList(path string, log func(format string, args ...any)) error {
	_, err := NewLoader(log).LoadList(path)
	return err
}

var errNoModuleSupport = errors.New("this kernel cannot load modules (built without CONFIG_MODULES): build the storage and btrfs drivers into it")

// Load loads one module. The outcome is Failed exactly when err is set.
func (l *Loader) Load(m Module) (Outcome, error) {
	name := m.Name()
	if l.SysModule != "" {
		if _, err := os.Stat(filepath.Join(l.SysModule, name)); err == nil {
			// initstate exists only for modules loaded from a file;
			// a built-in module with parameters has the directory alone.
			if _, err := os.Stat(filepath.Join(l.SysModule, name, "initstate")); err == nil {
				return Present, nil
			}
			return BuiltIn, nil
		}
	}
	path := m.Path
	if !filepath.IsAbs(path) {
		path = filepath.Join(l.ModulesDir, path)
	}
	flags := 0
	if c := m.Compression(); c != "" {
		if err := l.checkDecompression(c); err != nil {
			return Failed, fmt.Errorf("%s: %w", path, err)
		}
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	f, err := os.Open(path)
	if err != nil {
		where := ""
		if m.Line > 0 {
			where = fmt.Sprintf(" (list line %d)", m.Line)
		}
		return Failed, fmt.Errorf("open module file%s: %w%s", where, err, l.kernelMismatch())
	}
	defer f.Close()
	err = l.Finit(int(f.Fd()), m.Params, flags)
	switch {
	case err == nil:
		return Loaded, nil
	case errors.Is(err, unix.EEXIST):
		return Present, nil
	case errors.Is(err, unix.ENODEV):
		return NoDevice, nil
	case errors.Is(err, unix.ENOSYS):
		return Failed, errNoModuleSupport
	}
	return Failed, fmt.Errorf("finit_module %s%s: %w%s", path, paramsNote(m.Params), err, hint(err, flags))
}

func paramsNote(p string) string {
	if p == "" {
		return ""
	}
	return fmt.Sprintf(" (params %q)", p)
}

// checkDecompression reports whether the kernel says it decompresses
// format itself. Without the sysfs file (older kernel, or sysfs not
// mounted) it lets finit_module decide.
func (l *Loader) checkDecompression(format string) error {
	if l.SysModule == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(l.SysModule, "compression"))
	if err != nil {
		return nil
	}
	if have := strings.TrimSpace(string(b)); have != format {
		return fmt.Errorf("module is %s-compressed but this kernel decompresses only %s: "+
			"the initramfs builder should store it decompressed", format, have)
	}
	return nil
}

// kernelMismatch explains a missing module file when the modules in the
// initramfs belong to another kernel release than the one running.
func (l *Loader) kernelMismatch() string {
	if l.ModulesDir == "" {
		return ""
	}
	if _, err := os.Stat(l.ModulesDir); err == nil {
		return ""
	}
	entries, err := os.ReadDir(filepath.Dir(l.ModulesDir))
	if err != nil || len(entries) == 0 {
		return ""
	}
	var have []string
	for _, e := range entries {
		have = append(have, e.Name())
	}
	return fmt.Sprintf("; the running kernel is %s but the initramfs has modules for %s: "+
		"rebuild it with `dockroot initramfs --kernel-version %s`",
		filepath.Base(l.ModulesDir), strings.Join(have, ", "), filepath.Base(l.ModulesDir))
}

// hints says what a finit_module errno means for a module from the list.
var hints = map[unix.Errno]string{
	unix.ENOEXEC:      "not a valid module for this kernel (wrong architecture or version magic): rebuild the initramfs for the running kernel",
	unix.ENOENT:       "unknown symbol: a module it needs is not loaded before it; check the list order and dmesg",
	unix.EKEYREJECTED: "module signature rejected: the kernel enforces module signatures (module.sig_enforce or lockdown)",
	unix.ENOKEY:       "module signature key unknown: the kernel enforces module signatures (module.sig_enforce or lockdown)",
	unix.EBADMSG:      "module signature malformed: the kernel enforces module signatures",
	unix.EPERM:        "not permitted: needs CAP_SYS_MODULE, and /proc/sys/kernel/modules_disabled must be 0",
	unix.EBUSY:        "the module is still initialising from an earlier load",
}

func hint(err error, flags int) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	if errno == unix.EINVAL && flags&unix.MODULE_INIT_COMPRESSED_FILE != 0 {
		return " (this kernel cannot decompress modules: that needs Linux 5.17+ with CONFIG_MODULE_DECOMPRESS; the initramfs builder should store it decompressed)"
	}
	if h, ok := hints[errno]; ok {
		return " (" + h + ")"
	}
	return ""
}
