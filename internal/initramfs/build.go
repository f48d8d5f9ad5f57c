// Package initramfs builds the initramfs that boots dockroot standalone: the
// static dockroot-init as /init, the kernel modules needed to reach a btrfs
// root on common disks (closed over their dependencies and written with an
// ordered load list), and the optional baked config and rescue shell.
//
// It is host-side code, called by the `dockroot initramfs` and `dockroot
// install` verbs. The boot binary never imports it: at boot, internal/kmod
// reads the load list this package writes (see layout.ModulesList).
//
// It is the build half of the boot and host-only: dockroot-init never links
// it, and it must not import the boot (hook) or internal/commands.
package initramfs

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/atomicfile"
	"github.com/dockroot/dockroot/internal/kernel"
	"github.com/dockroot/dockroot/internal/kmod"
	"github.com/dockroot/dockroot/internal/layout"
)

// DefaultModules are loaded by every dockroot initramfs when the kernel has
// them as modules; ones that are built in or absent are skipped. The btrfs
// checksum drivers (crc32c, xxhash64, sha256, blake2b) are not listed: they
// come from btrfs's own soft dependencies, so each kernel gets the set its
// btrfs asks for.
var DefaultModules = append(slices.Clone(FilesystemModules), []string{
	// Virtual machines: QEMU/KVM and cloud disks, PCI and MMIO transports.
	"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_scsi",
	// SATA, SCSI and NVMe disks.
	"ahci", "ata_piix", "sd_mod", "nvme",
	// USB disks on any host controller generation.
	"xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "usb_storage", "uas",
	// SD cards and eMMC.
	"mmc_block", "sdhci_pci", "sdhci_acpi",
}...)

// FilesystemModules are the filesystems of DefaultModules: the root's
// (btrfs) and a top layer's on another filesystem (toplayerfstype=), with
// FAT's code pages. Every module mode packs them. The init loads
// RootFilesystemModule whatever the hardware (no device alias asks for a
// filesystem), and the others by the filesystem type the top layer's
// mount needs: toplayerfstype=, or all of them when it must be detected.
var FilesystemModules = []string{RootFilesystemModule, "ext4", "vfat", "nls_cp437", "nls_ascii"}

// RootFilesystemModule is the root's filesystem: dockroot boots btrfs.
const RootFilesystemModule = "btrfs"

// Module modes: which modules the initramfs packs and how the init picks
// the ones to load (Options.ModuleMode, `dockroot initramfs --modules`).
const (
	// ModulesAlias packs DefaultModules and a module table; the init
	// loads btrfs, the top layer's filesystem and the drivers whose aliases match the
	// machine's devices.
	ModulesAlias = "alias"
	// ModulesAll packs DefaultModules and the init loads every one of
	// them, in list order, as before the module table existed.
	ModulesAll = "all"
	// ModulesHostOnly packs the modules loaded on the build machine
	// (/proc/modules) and the filesystems, with a module table; the init
	// loads the filesystems, the modules without any alias, and the
	// drivers whose aliases match.
	ModulesHostOnly = "hostonly"
)

// ModuleModes lists the module modes, the default first.
var ModuleModes = []string{ModulesAlias, ModulesAll, ModulesHostOnly}

// CheckModuleMode says whether mode is one of ModuleModes.
func CheckModuleMode(mode string) error {
	if !slices.Contains(ModuleModes, mode) {
		return fmt.Errorf("unknown module mode %q: want one of %s", mode, strings.Join(ModuleModes, ", "))
	}
	return nil
}

// ShellModules are added with Options.Shell: a rescue shell is no use
// without a USB keyboard (the PS/2 one, atkbd, is built into distribution
// kernels).
var ShellModules = []string{"usbhid", "hid_generic"}

// Paths inside the initramfs that the boot binary relies on.
const (
	InitPath    = "init"
	BusyboxPath = "bin/busybox"
)

// mountPoints are the directories dockroot-init mounts on before anything
// else exists: devtmpfs, proc, sysfs, the /run tmpfs, the new root.
var mountPoints = []string{"dev", "proc", "sys", "run", "newroot", "tmp"}

// Options say what to build. Only Output is required.
type Options struct {
	Output        string   // the initramfs file to write (via a temporary file and rename)
	Root          string   // filesystem root holding lib/modules/KVER; default "/"
	KernelVersion string   // default: the newest kernel under Root
	Modules       []string // extra modules or aliases; each must exist, and the init always loads them
	// ModuleMode is ModulesAlias (default), ModulesAll or ModulesHostOnly.
	ModuleMode string
	// ProcModules lists the build machine's loaded modules for
	// ModulesHostOnly; default /proc/modules.
	ProcModules string
	ConfigFile  string // baked in as /etc/dockroot.json; checked with config.CheckFile
	// DockerBtrfsJSON is the ancestor's {"docker_image", "docker_tag"}
	// file, baked in as /etc/docker-btrfs.json (checked with
	// config.CheckDockerBtrfsFile), so the ancestor's kernel command line,
	// which names no image, boots as it did.
	DockerBtrfsJSON string
	Compress        string // "gzip" (default), "zstd" or "none"
	Shell           bool   // add a static busybox as /bin/busybox and /bin/sh
	Busybox         string // the busybox to add; default /bin/busybox or /usr/bin/busybox
	InitBinary      string // the static dockroot-init, whatever the kernel's architecture
	// InitChoices, when InitBinary is empty, are dockroot-init binaries
	// for several architectures: the one for the kernel's (the machine of
	// its modules) is used. Default: LocateInits.
	InitChoices []string
	ModTime     int64 // mtime of every file (SOURCE_DATE_EPOCH); default 0
	// Log receives progress lines; nil is quiet.
	Log func(format string, args ...any)
}

// Module is one kernel module in the initramfs.
type Module struct {
	Name   string // normalised module name, e.g. "usb_storage"
	Path   string // relative to lib/modules/KVER, decompressed: "kernel/fs/btrfs/btrfs.ko"
	Source string // the file it was read from, relative to the root
	Size   int64  // decompressed bytes
}

// Result describes a built initramfs.
type Result struct {
	Output           string
	Init             string // the dockroot-init used as /init
	Arch             string // its architecture: amd64, arm64, or the ELF machine
	KernelVersion    string
	Modules          []Module // in load order
	Builtin          []string // requested modules built into the kernel
	Skipped          []string // default modules and soft dependencies this kernel lacks
	Files            []string // every path in the archive, in archive order
	Size             int64    // bytes written to Output
	UncompressedSize int64    // bytes of the cpio archive
	Compression      string
	ModuleMode       string
	Aliases          int      // alias patterns in the module table (0 for ModulesAll)
	Warnings         []string // from checking the config file
}

// Build writes an initramfs as opts describe. Errors start with the step
// that failed ("resolve modules: ...").
//
// Gzip is the default compression: every kernel that can use an initramfs
// unpacks gzip (CONFIG_RD_GZIP is on in all distribution and defconfig
// kernels), while zstd needs CONFIG_RD_ZSTD from Linux 5.9 on, which vendor
// kernels for boards may lack. Debian's 6.1 has both; pass "zstd" for a
// smaller image when the kernel is known.
func Build(opts Options) (*Result, error) {
	b := &builder{opts: opts, arc: NewArchive()}
	if err := b.defaults(); err != nil {
		return nil, err
	}
	defer func() {
		if b.root != nil {
			b.root.Close()
		}
	}()
	steps := []struct {
		name string
		run  func() error
	}{
		{"open root", b.openRoot},
		{"pick kernel", b.pickKernel},
		{"resolve modules", b.resolveModules},
		{"add init", b.addInit},
		{"add modules", b.addModules},
		{"add config", b.addConfig},
		{"add shell", b.addShell},
		{"add devices and mount points", b.addSkeleton},
		{"write archive", b.write},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return b.res, nil
}

type builder struct {
	opts    Options
	arc     *Archive
	root    *os.Root
	fsys    fs.FS
	tree    kernel.Tree
	db      *DB
	plan    *Plan
	always  []string    // names or aliases the init loads whatever the hardware
	machine elf.Machine // of /init; modules and busybox must match
	res     *Result
}

func (b *builder) log(format string, args ...any) {
	if b.opts.Log != nil {
		b.opts.Log(format, args...)
	}
}

func (b *builder) defaults() error {
	o := &b.opts
	if o.Output == "" {
		return errors.New("no output file given")
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Compress == "" {
		o.Compress = Gzip
	}
	if o.ModuleMode == "" {
		o.ModuleMode = ModulesAlias
	}
	if err := CheckModuleMode(o.ModuleMode); err != nil {
		return err
	}
	if o.ProcModules == "" {
		o.ProcModules = "/proc/modules"
	}
	if err := CheckCompression(o.Compress); err != nil {
		return err
	}
	if o.InitBinary == "" && len(o.InitChoices) == 0 {
		p, err := LocateInits(os.Getenv)
		if err != nil {
			return err
		}
		o.InitChoices = p
	}
	b.res = &Result{Output: o.Output, Compression: o.Compress, ModuleMode: o.ModuleMode}
	return nil
}

// LocateInits finds the dockroot-init binaries when none is given:
// $DOCKROOT_INIT alone, else dockroot-init next to the running executable
// and ARCH/dockroot-init below it, where `make build` puts them beside
// dockroot (bin/dockroot-init, bin/arm64/dockroot-init). The builder uses
// the one for the kernel's architecture.
func LocateInits(getenv func(string) string) ([]string, error) {
	if p := getenv("DOCKROOT_INIT"); p != "" {
		return []string{p}, nil
	}
	var found []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		sub, _ := filepath.Glob(filepath.Join(dir, "*", "dockroot-init"))
		for _, p := range append([]string{filepath.Join(dir, "dockroot-init")}, sub...) {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				found = append(found, p)
			}
		}
	}
	if len(found) == 0 {
		return nil, errors.New("no dockroot-init binary found next to this program or in $DOCKROOT_INIT: " +
			"run `make build` (it writes bin/dockroot-init beside bin/dockroot) or pass --init PATH")
	}
	return found, nil
}

// openRoot reads the root through os.Root, so that a symlink in someone
// else's root (an image's /lib/modules, say) cannot lead to the host's
// files: os.Root refuses links that leave the root.
func (b *builder) openRoot() error {
	r, err := os.OpenRoot(b.opts.Root)
	if err != nil {
		return fmt.Errorf("open root %s: %w", b.opts.Root, err)
	}
	b.root = r
	b.fsys = r.FS()
	return nil
}

func (b *builder) pickKernel() error {
	t, err := kernel.Pick(b.fsys, b.opts.Root, b.opts.KernelVersion)
	if err != nil {
		return err
	}
	b.tree = t
	b.res.KernelVersion = t.Version
	b.log("kernel %s (%s)", t.Version, filepath.Join(b.opts.Root, t.Dir))
	return nil
}

func (b *builder) resolveModules() error {
	if _, err := fs.Stat(b.fsys, path.Join(b.tree.Dir, "modules.dep")); err != nil {
		b.log("no modules.dep in %s: reading each module's .modinfo", filepath.Join(b.opts.Root, b.tree.Dir))
	}
	db, err := LoadDB(b.fsys, b.tree.Dir)
	if err != nil {
		return err
	}
	b.db = db
	base := DefaultModules
	if b.opts.ModuleMode == ModulesHostOnly {
		host, err := hostModules(b.opts.ProcModules)
		if err != nil {
			return err
		}
		base = append(slices.Clone(FilesystemModules), host...)
	}
	// always are what the init loads whatever the hardware: no device
	// alias asks for the root's filesystem, a keyboard for the rescue
	// shell or a module the user named. A top layer's filesystem is
	// loaded by its type at boot.
	always := []string{RootFilesystemModule}
	var reqs []Request
	for _, m := range base {
		reqs = append(reqs, Request{Name: m})
	}
	if b.opts.Shell {
		for _, m := range ShellModules {
			reqs = append(reqs, Request{Name: m})
		}
		always = append(always, ShellModules...)
	}
	for _, m := range b.opts.Modules {
		reqs = append(reqs, Request{Name: m, Required: true})
	}
	b.always = append(always, b.opts.Modules...)
	plan, err := db.Resolve(reqs)
	if errors.Is(err, ErrModuleNotFound) {
		dir := filepath.Join(b.opts.Root, b.tree.Dir)
		return fmt.Errorf("kernel %s: %w (checked %s: modules.dep or the module files, modules.alias, modules.builtin); "+
			"list the available ones with `find %s -name '*.ko*'`", b.tree.Version, err, dir, dir)
	}
	if err != nil {
		return fmt.Errorf("kernel %s: %w", b.tree.Version, err)
	}
	b.plan = plan
	b.res.Builtin = plan.Builtin
	b.res.Skipped = plan.Missing
	return nil
}

func (b *builder) addInit() error {
	file, data, m, err := b.chooseInit()
	if err != nil {
		return err
	}
	b.machine = m
	b.res.Init, b.res.Arch = file, archName(m)
	b.log("init %s (%s)", file, b.res.Arch)
	return b.arc.Add(Entry{Path: InitPath, Mode: 0o755, Data: data})
}

// chooseInit reads InitBinary, or the one of InitChoices built for the
// kernel's architecture, which is its modules' ELF machine (the kernel
// image itself may be compressed or wrapped for a bootloader).
func (b *builder) chooseInit() (string, []byte, elf.Machine, error) {
	read := func(file string) ([]byte, elf.Machine, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, 0, fmt.Errorf("read init binary: %w (run `make build` or pass --init PATH)", err)
		}
		m, err := checkStaticExecutable("init binary", file, data)
		return data, m, err
	}
	if b.opts.InitBinary != "" {
		data, m, err := read(b.opts.InitBinary)
		return b.opts.InitBinary, data, m, err
	}
	var want elf.Machine
	if len(b.plan.Load) > 0 {
		src, _ := b.db.Path(b.plan.Load[0])
		full := path.Join(b.tree.Dir, src)
		mod, err := ReadModule(b.fsys, full)
		if err != nil {
			return "", nil, 0, err
		}
		if want, err = elfMachine(mod); err != nil {
			return "", nil, 0, fmt.Errorf("module %s: %w", full, err)
		}
	}
	var seen []string
	for _, file := range b.opts.InitChoices {
		data, m, err := read(file)
		if err != nil {
			return "", nil, 0, err
		}
		// With no module to tell, the first choice (this machine's) goes.
		if want == 0 || m == want {
			return file, data, m, nil
		}
		seen = append(seen, fmt.Sprintf("%s (%s)", file, archName(m)))
	}
	return "", nil, 0, fmt.Errorf("kernel %s is for %s, and no dockroot-init for it was found (%s): build one (`make build` writes bin/arm64/dockroot-init for arm64) or pass --init PATH",
		b.tree.Version, archName(want), strings.Join(seen, ", "))
}

// archName is an ELF machine as Go's GOARCH names it, where dockroot
// builds for it.
func archName(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	}
	return m.String()
}

func (b *builder) addModules() error {
	var list strings.Builder
	fmt.Fprintf(&list, "# Kernel modules for dockroot-init to load, in this order (dependencies first).\n")
	fmt.Fprintf(&list, "# One path per line, relative to /lib/modules/%s/. Written by `dockroot initramfs`.\n", b.tree.Version)
	fmt.Fprintf(&list, "# kernel: %s\n", b.tree.Version)
	for _, name := range b.plan.Load {
		src, _ := b.db.Path(name)
		full := path.Join(b.tree.Dir, src)
		data, err := ReadModule(b.fsys, full)
		if err != nil {
			return err
		}
		if m, err := elfMachine(data); err != nil {
			return fmt.Errorf("module %s: %w", full, err)
		} else if m != b.machine {
			return fmt.Errorf("module %s is for %s but init binary %s is for %s: use the dockroot-init built for the kernel's architecture (bin/arm64/dockroot-init for arm64)",
				full, archName(m), b.res.Init, b.res.Arch)
		}
		rel := plainPath(src)
		if err := b.arc.Add(Entry{Path: path.Join("lib/modules", b.tree.Version, rel), Mode: 0o644, Data: data}); err != nil {
			return err
		}
		list.WriteString(rel + "\n")
		b.res.Modules = append(b.res.Modules, Module{Name: name, Path: rel, Source: full, Size: int64(len(data))})
	}
	if err := b.arc.Add(Entry{Path: layout.ModulesList, Mode: 0o644, Data: []byte(list.String())}); err != nil {
		return err
	}
	if b.opts.ModuleMode == ModulesAll {
		return nil // no table: the init loads the whole list, in order
	}
	t := b.table()
	b.res.Aliases = len(t.Aliases)
	return b.arc.Add(Entry{Path: layout.ModulesTable, Mode: 0o644, Data: t.Encode()})
}

// table is the module table (kmod.Table) of the packed modules: their
// dependencies and soft dependencies as indices, and their aliases split
// for matching at boot.
func (b *builder) table() *kmod.Table {
	index := make(map[string]int, len(b.plan.Load))
	for i, name := range b.plan.Load {
		index[name] = i
	}
	// lookup maps a module name or alias to packed module indices; below,
	// when >= 0, keeps only those before that index (a dependency must
	// come first, which keeps the graph acyclic).
	lookup := func(name string, below int) []int {
		var out []int
		mods, _ := b.db.Lookup(name)
		for _, m := range mods {
			if j, ok := index[m]; ok && (below < 0 || j < below) && !slices.Contains(out, j) {
				out = append(out, j)
			}
		}
		return out
	}
	t := &kmod.Table{Modules: make([]kmod.TableModule, len(b.plan.Load))}
	for i, name := range b.plan.Load {
		src, _ := b.db.Path(name)
		m := kmod.TableModule{Name: name, Path: plainPath(src)}
		for _, d := range b.db.deps[name] {
			if j, ok := index[d]; ok && j < i {
				m.Deps = append(m.Deps, j)
			}
		}
		for _, s := range b.db.softPre[name] {
			m.Pre = append(m.Pre, lookup(s, i)...)
		}
		for _, s := range b.db.softPost[name] {
			for _, j := range lookup(s, -1) {
				if j != i {
					m.Post = append(m.Post, j)
				}
			}
		}
		t.Modules[i] = m
	}
	for _, name := range b.always {
		for _, j := range lookup(name, -1) {
			t.Modules[j].Flags |= kmod.FlagAlways
		}
	}
	for _, a := range b.db.aliases {
		j, ok := index[a.module]
		if !ok {
			continue
		}
		prefix, rest := kmod.SplitPattern(a.pattern)
		t.Aliases = append(t.Aliases, kmod.TableAlias{Prefix: prefix, Rest: rest, Module: j})
	}
	if b.opts.ModuleMode == ModulesHostOnly {
		// The build machine had these loaded; with no device alias
		// ("bus:...") nothing at boot asks for them: dm_mod, loop, a
		// filesystem (fs-NAME), a crypto driver (crypto-NAME).
		hasAlias := make([]bool, len(t.Modules))
		for _, a := range t.Aliases {
			if strings.Contains(a.Prefix, ":") && !strings.HasPrefix(a.Prefix, "devname:") {
				hasAlias[a.Module] = true
			}
		}
		for j := range t.Modules {
			if !hasAlias[j] {
				t.Modules[j].Flags |= kmod.FlagAlways
			}
		}
	}
	sort.SliceStable(t.Aliases, func(i, j int) bool {
		a, c := t.Aliases[i], t.Aliases[j]
		if a.Prefix != c.Prefix {
			return a.Prefix < c.Prefix
		}
		if a.Rest != c.Rest {
			return a.Rest < c.Rest
		}
		return a.Module < c.Module
	})
	t.Aliases = slices.Compact(t.Aliases)
	return t
}

// hostModules lists the modules loaded on the build machine: the first
// column of /proc/modules.
func hostModules(procModules string) ([]string, error) {
	data, err := os.ReadFile(procModules)
	if err != nil {
		return nil, fmt.Errorf("read the build machine's loaded modules for --modules %s: %w", ModulesHostOnly, err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out, nil
}

func (b *builder) addConfig() error {
	for _, f := range []struct {
		src, dst string
		check    func(string, []byte) ([]string, error)
	}{
		{b.opts.ConfigFile, layout.DockrootJSON, config.CheckFile},
		{b.opts.DockerBtrfsJSON, layout.DockerBtrfsJSON, config.CheckDockerBtrfsFile},
	} {
		if f.src == "" {
			continue
		}
		data, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		// The same parser and checks dockroot-init applies at boot, so a
		// typo fails now instead of sending the machine to dockroot.onfail=.
		warnings, err := f.check(f.src, data)
		if err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
		for _, w := range warnings {
			b.log("warning: %s", w)
		}
		b.res.Warnings = append(b.res.Warnings, warnings...)
		if err := b.arc.Add(Entry{Path: f.dst, Mode: 0o644, Data: data}); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) addShell() error {
	if !b.opts.Shell {
		return nil
	}
	bb := b.opts.Busybox
	if bb == "" {
		for _, c := range []string{"/bin/busybox", "/usr/bin/busybox"} {
			if _, err := os.Stat(c); err == nil {
				bb = c
				break
			}
		}
		if bb == "" {
			return errors.New("no busybox on this host for --shell: install Debian's busybox-static, or pass --busybox PATH")
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	m, err := checkStaticExecutable("busybox", bb, data)
	if err != nil {
		return fmt.Errorf("%w (on Debian: apt-get install busybox-static)", err)
	}
	if m != b.machine {
		return fmt.Errorf("busybox %s is for %s but the init binary is for %s", bb, archName(m), b.res.Arch)
	}
	if err := b.arc.Add(Entry{Path: BusyboxPath, Mode: 0o755, Data: data}); err != nil {
		return err
	}
	return b.arc.Add(Entry{Path: "bin/sh", Link: "busybox"})
}

// addSkeleton adds what the kernel and dockroot-init need before any
// filesystem is mounted. The kernel opens /dev/console for /init's stdio
// before running it (init/main.c console_on_rootfs) and warns "unable to open
// an initial console" without it; devtmpfs mounted on /dev later hides these.
func (b *builder) addSkeleton() error {
	entries := []Entry{
		{Path: "dev/console", Char: true, Major: 5, Minor: 1, Mode: 0o600},
		{Path: "dev/null", Char: true, Major: 1, Minor: 3, Mode: 0o666},
	}
	for _, d := range mountPoints {
		mode := uint32(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		entries = append(entries, Entry{Path: d, Dir: true, Mode: mode})
	}
	for _, e := range entries {
		if err := b.arc.Add(e); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) write() error {
	var raw, packed int64
	err := atomicfile.Write(b.opts.Output, 0o644, func(w io.Writer) error {
		var err error
		raw, packed, err = b.arc.Encode(w, b.opts.Compress, uint64(b.opts.ModTime))
		return err
	})
	if err != nil {
		return err
	}
	b.res.Files = b.arc.Paths()
	b.res.Size = packed
	b.res.UncompressedSize = raw
	return nil
}
