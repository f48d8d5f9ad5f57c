package main

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

//go:embed shell-init.sh
var shellInitTemplate string

// InitramfsSize is one initramfs, packed with one compression.
type InitramfsSize struct {
	Compression string `json:"compression"`
	Dockroot    int64  `json:"dockroot_bytes"`
	Shell       int64  `json:"shell_bytes"` // busybox + btrfs-progs, same modules
	DockrootRaw int64  `json:"dockroot_cpio_bytes"`
	ShellRaw    int64  `json:"shell_cpio_bytes"`
}

// InitramfsResult is section 5.
type InitramfsResult struct {
	Kernel      string           `json:"kernel"`
	Modules     []string         `json:"modules"`
	ModuleBytes int64            `json:"module_bytes"`
	InitBytes   int64            `json:"dockroot_init_bytes"`
	ShellTools  map[string]int64 `json:"shell_tools_bytes"` // busybox, btrfs and each shared library
	Sizes       []InitramfsSize  `json:"sizes"`
}

// BootResult is section 6: each contender booted the same disk, with
// the same kernel, in the same run, in a rotating order.
type BootResult struct {
	Contenders []BootContender `json:"contenders"`
	QEMU       string          `json:"qemu"`
}

// BootContender is one initramfs's boots. Times are the guest's uptime,
// from the console: the kernel's own timestamps and the image's init's
// /proc/uptime.
type BootContender struct {
	Name    string `json:"name"`
	Label   string `json:"label"`
	Note    string `json:"note"`
	Cmdline string `json:"cmdline"`
	Bytes   int64  `json:"initramfs_bytes"`
	Init    Stat   `json:"image_init"`      // the image's init ran
	KInit   Stat   `json:"kernel_ran_init"` // "Run /init as init process"
	// Phase is the initramfs phase alone, per boot: the image's init minus
	// the kernel's "Run /init". It leaves out the kernel's own start, whose
	// run-to-run noise under TCG is larger than the phase.
	Phase Stat `json:"initramfs_phase"`
	// Its parts, from /init: the root disk probed (virtio_blk's "[vda]"
	// line), then btrfs's first mount of it.
	ToDisk  Stat            `json:"to_disk"`
	ToMount Stat            `json:"to_mount"`
	Modules Stat            `json:"modules_loaded"`  // lines of /proc/modules at the image's init
	Steps   map[string]Stat `json:"steps,omitempty"` // dockroot's own "done in N ms" per step
}

// contender returns the named contender's result, or nil.
func (r *BootResult) contender(name string) *BootContender {
	if r == nil {
		return nil
	}
	for i := range r.Contenders {
		if r.Contenders[i].Name == name && r.Contenders[i].Init.Median > 0 {
			return &r.Contenders[i]
		}
	}
	return nil
}

// vmEnv is what sections 5 and 6 share.
type vmEnv struct {
	kernel   *vmkit.Kernel
	init     string // the static dockroot-init built from this checkout
	disk     string
	subvol   string
	dockroot string // initramfs files
	shell    string
	// contenders are section 6's initramfs images, in report order.
	contenders []contender
}

// benchInitramfs builds dockroot's initramfs for Debian's kernel with the
// default module set, and the busybox + btrfs-progs one with the same
// modules, both gzip (the default) and zstd, with the same cpio writer and
// compressors (hook/initramfs.Archive), and records their sizes.
func (b *bench) benchInitramfs(v *vmEnv) error {
	cache, err := vmkit.CacheDir()
	if err != nil {
		return err
	}
	if v.kernel, err = vmkit.FetchKernel(cache); err != nil {
		return err
	}
	if v.init, err = buildInit(filepath.Join(b.work, "dockroot-init")); err != nil {
		return err
	}
	res := &InitramfsResult{Kernel: v.kernel.Version, ShellTools: map[string]int64{}}
	if fi, err := os.Stat(v.init); err == nil {
		res.InitBytes = fi.Size()
	}
	for _, comp := range []string{initramfs.Gzip, initramfs.Zstd} {
		out := filepath.Join(b.work, "dockroot-"+comp+".img")
		r, err := initramfs.Build(initramfs.Options{
			Output: out, Root: v.kernel.Root, KernelVersion: v.kernel.Version,
			Compress: comp, InitBinary: v.init,
		})
		if err != nil {
			return fmt.Errorf("dockroot initramfs (%s): %w", comp, err)
		}
		if comp == initramfs.Gzip {
			v.dockroot = out
			res.Modules, res.ModuleBytes = nil, 0
			for _, m := range r.Modules {
				res.Modules = append(res.Modules, m.Name)
				res.ModuleBytes += m.Size
			}
		}
		arc, tools, err := shellArchive(v.kernel, r.Modules, v.subvol)
		if err != nil {
			return fmt.Errorf("busybox initramfs: %w", err)
		}
		res.ShellTools = tools
		sout := filepath.Join(b.work, "shell-"+comp+".img")
		f, err := os.Create(sout)
		if err != nil {
			return err
		}
		raw, packed, err := arc.Encode(f, comp, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("busybox initramfs (%s): %w", comp, err)
		}
		if comp == initramfs.Gzip {
			v.shell = sout
		}
		res.Sizes = append(res.Sizes, InitramfsSize{Compression: comp, Dockroot: r.Size, DockrootRaw: r.UncompressedSize, Shell: packed, ShellRaw: raw})
		b.logf("initramfs (%s, %d modules): dockroot %s, busybox + btrfs-progs %s", comp, len(r.Modules), fmtBytes(r.Size), fmtBytes(packed))
	}
	b.res.Initramfs = res
	v.contenders = append(v.contenders,
		contender{Name: cDockroot, Label: "**dockroot** (`--modules alias`, the default)", Initrd: v.dockroot, Cmdline: imageCmdline(),
			Note: "`dockroot initramfs`: loads the filesystems and the drivers whose aliases match the machine's devices, in parallel"},
		contender{Name: cShell, Label: "busybox shell `/init`", Initrd: v.shell, Cmdline: subvolCmdline(v.subvol),
			Note: "section 5's baseline: loads every module of dockroot's list in order, waits for `/dev/vda`, mounts the image's subvolume; no snapshot, no top layer"})
	return nil
}

// buildInit builds cmd/dockroot-init as `make build` does (static,
// CGO_ENABLED=0, trimmed) and returns its path. The dockroot CLI is not
// needed: the initramfs is built in process with hook/initramfs.
func buildInit(out string) (string, error) {
	if err := vmkit.GoBuild(out, "./cmd/dockroot-init", "-ldflags", "-s -w"); err != nil {
		return "", err
	}
	return out, nil
}

// shellArchive is the initramfs a shell hook needs for the same job:
// static busybox, the btrfs tool and the shared libraries ldd names for
// it, the same modules in the same load order, and shell-init.sh as /init
// mounting subvol.
func shellArchive(k *vmkit.Kernel, modules []initramfs.Module, subvol string) (*initramfs.Archive, map[string]int64, error) {
	arc := initramfs.NewArchive()
	tools := map[string]int64{}
	addFile := func(dst, src string, mode uint32) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		tools[dst] = int64(len(data))
		return arc.Add(initramfs.Entry{Path: dst, Mode: mode, Data: data})
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, nil, fmt.Errorf("%w (apt-get install busybox-static)", err)
	}
	btrfsBin, err := exec.LookPath("btrfs")
	if err != nil {
		return nil, nil, fmt.Errorf("%w (apt-get install btrfs-progs)", err)
	}
	if err := addFile("bin/busybox", busybox, 0o755); err != nil {
		return nil, nil, err
	}
	if err := addFile("sbin/btrfs", btrfsBin, 0o755); err != nil {
		return nil, nil, err
	}
	libs, err := sharedLibs(btrfsBin)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range libs {
		if err := addFile(strings.TrimPrefix(l, "/"), l, 0o755); err != nil {
			return nil, nil, err
		}
	}
	if err := arc.Add(initramfs.Entry{Path: "bin/sh", Mode: 0o777, Link: "busybox"}); err != nil {
		return nil, nil, err
	}
	var list []string
	for _, m := range modules {
		if strings.HasSuffix(m.Source, ".xz") || strings.HasSuffix(m.Source, ".zst") || strings.HasSuffix(m.Source, ".gz") {
			return nil, nil, fmt.Errorf("module %s is compressed (%s): this baseline stores modules as the kernel package ships them", m.Name, m.Source)
		}
		data, err := os.ReadFile(filepath.Join(k.Root, m.Source))
		if err != nil {
			return nil, nil, err
		}
		rel := filepath.ToSlash(filepath.Join(k.Version, m.Path))
		if err := arc.Add(initramfs.Entry{Path: "lib/modules/" + rel, Mode: 0o644, Data: data}); err != nil {
			return nil, nil, err
		}
		list = append(list, rel)
	}
	script := strings.NewReplacer("@ROOT@", "/dev/vda", "@SUBVOL@", subvol).Replace(shellInitTemplate)
	for _, e := range []initramfs.Entry{
		{Path: "init", Mode: 0o755, Data: []byte(script)},
		{Path: "etc/modules.list", Mode: 0o644, Data: []byte(strings.Join(list, "\n") + "\n")},
		{Path: "dev/console", Mode: 0o600, Char: true, Major: 5, Minor: 1},
		{Path: "proc", Mode: 0o755, Dir: true},
		{Path: "sys", Mode: 0o755, Dir: true},
		{Path: "newroot", Mode: 0o755, Dir: true},
	} {
		if err := arc.Add(e); err != nil {
			return nil, nil, err
		}
	}
	return arc, tools, nil
}

// sharedLibs lists the shared libraries and the loader that ldd resolves
// for bin, as mkinitcpio's add_binary does.
func sharedLibs(bin string) ([]string, error) {
	out, err := testenv.Output("ldd", bin)
	if err != nil {
		return nil, err
	}
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i, w := range f {
			if strings.HasPrefix(w, "/") && (i == 0 || f[i-1] == "=>") {
				libs = append(libs, w)
			}
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s named no libraries", bin)
	}
	return libs, nil
}

// bootDisk builds the boot benchmark's disk: btrfs labelled benchroot with
// the Docker data root at docker/ holding bench/boot:1 (busybox and
// benchInit), and returns the image's subvolume, which the shell /init
// mounts directly.
func (b *bench) bootDisk(v *vmEnv) error {
	v.disk = filepath.Join(b.cacheDir, "boot-disk.img")
	b.cl.push("remove "+v.disk, func() error { return os.Remove(v.disk) })
	err := vmkit.BuildDisk(v.disk, vmkit.DiskSpec{SizeMB: 512, Label: "benchroot", DockerPath: "docker",
		Images: func(d *testenv.Dockerd) error {
			_, err := buildImage(d, imageSpec{Label: "boot", Ref: bootImage}, b.work)
			return err
		}})
	if err != nil {
		return err
	}
	return vmkit.WithMounted(v.disk, "btrfs", func(top string) error {
		img, err := graphdriver.New(top, "docker").Resolve(bootImage)
		if err != nil {
			return err
		}
		v.subvol = img.Subvolume
		return nil
	})
}

const bootImage = "bench/boot:1"

var (
	uptimeRE  = regexp.MustCompile(`BENCH-INIT uptime=([0-9.]+)`)
	modsRE    = regexp.MustCompile(`BENCH-MODULES n=(\d+)`)
	runInitRE = regexp.MustCompile(`\[\s*([0-9]+\.[0-9]+)\] Run /init as init process`)
	diskRE    = regexp.MustCompile(`\[\s*([0-9]+\.[0-9]+)\] virtio_blk \S+: \[vda\]`)
	mountRE   = regexp.MustCompile(`\[\s*([0-9]+\.[0-9]+)\] BTRFS info \(device vda\)`)
	stepRE    = regexp.MustCompile(`dockroot: \[\d+/\d+\] ([^:\r\n]+?)(?: \(optional\))?: done in (\d+) ms`)
)

// bootTimes is what one boot's console says, in ms of guest uptime.
type bootTimes struct {
	init, kinit, disk, mount, modules float64
	steps                             map[string]float64
}

// parseBoot reads a boot's console.
func parseBoot(console string) (bootTimes, error) {
	t := bootTimes{steps: map[string]float64{}}
	m := uptimeRE.FindStringSubmatch(console)
	if m == nil {
		return t, fmt.Errorf("no %q line with a number on the console", bootMarker)
	}
	t.init = seconds(m[1])
	for re, dst := range map[*regexp.Regexp]*float64{runInitRE: &t.kinit, diskRE: &t.disk, mountRE: &t.mount} {
		if k := re.FindStringSubmatch(console); k != nil {
			*dst = seconds(k[1])
		}
	}
	if k := modsRE.FindStringSubmatch(console); k != nil {
		t.modules, _ = strconv.ParseFloat(k[1], 64)
	}
	for _, s := range stepRE.FindAllStringSubmatch(console, -1) {
		n, _ := strconv.ParseFloat(s[2], 64)
		t.steps[s[1]] = n
	}
	return t, nil
}

// seconds is a console timestamp in ms.
func seconds(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f * 1000
}

// bootOnce boots c's initrd and reads its console.
func (b *bench) bootOnce(v *vmEnv, c contender, log string) (bootTimes, error) {
	vm, err := vmkit.Start(vmkit.Options{Kernel: v.kernel.Vmlinuz, Initrd: c.Initrd, Append: c.Cmdline,
		Drives: []vmkit.Drive{{File: v.disk}}, LogFile: log})
	if err != nil {
		return bootTimes{}, err
	}
	defer vm.Kill()
	if err := vm.Expect(bootMarker, 400*time.Second); err != nil {
		return bootTimes{}, err
	}
	if err := vm.WaitExit(120 * time.Second); err != nil {
		return bootTimes{}, err
	}
	t, err := parseBoot(vm.Console.String())
	if err != nil {
		return t, fmt.Errorf("%w; see %s", err, log)
	}
	return t, nil
}

// benchBoot measures section 6: one untimed boot of each contender first
// (the first dockroot boot has no layer to rotate), then BootRuns of
// each, the order rotating by one at every round. A contender that fails
// to boot is reported missing; the others go on.
func (b *bench) benchBoot(v *vmEnv) error {
	res := &BootResult{}
	if out, err := testenv.Output("qemu-system-x86_64", "--version"); err == nil {
		res.QEMU = firstLine(out)
	}
	logs := filepath.Join(b.work, "consoles")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	type series struct {
		init, kinit, phase, disk, mount, mods []float64
		steps                                 map[string][]float64
		failed                                error
	}
	runs := make([]series, len(v.contenders))
	for i := -1; i < b.opts.BootRuns; i++ {
		for j := range v.contenders {
			k := (j + i + 1) % len(v.contenders)
			c, s := v.contenders[k], &runs[k]
			if s.failed != nil {
				continue
			}
			log := filepath.Join(logs, fmt.Sprintf("%s-%d.log", c.Name, i+1))
			t, err := b.bootOnce(v, c, log)
			if err != nil {
				s.failed = fmt.Errorf("boot %d: %w", i+1, err)
				b.logf("boot %d %-12s: %v", i+1, c.Name, err)
				continue
			}
			if i < 0 {
				continue
			}
			s.init, s.kinit, s.phase = append(s.init, t.init), append(s.kinit, t.kinit), append(s.phase, t.init-t.kinit)
			if t.disk > 0 {
				s.disk = append(s.disk, t.disk-t.kinit)
			}
			if t.mount > 0 {
				s.mount = append(s.mount, t.mount-t.kinit)
			}
			if t.modules > 0 {
				s.mods = append(s.mods, t.modules)
			}
			if s.steps == nil {
				s.steps = map[string][]float64{}
			}
			for name, x := range t.steps {
				s.steps[name] = append(s.steps[name], x)
			}
			b.logf("boot %d %-12s: init at %.0f ms uptime, %.0f ms after /init", i+1, c.Name, t.init, t.init-t.kinit)
		}
	}
	var failed []string
	for k, c := range v.contenders {
		s := runs[k]
		if s.failed != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", c.Name, firstLine(s.failed.Error())))
			continue
		}
		bc := BootContender{Name: c.Name, Label: c.Label, Note: c.Note, Cmdline: c.Cmdline,
			Init: newStat(s.init), KInit: newStat(s.kinit), Phase: newStat(s.phase),
			ToDisk: newStat(s.disk), ToMount: newStat(s.mount), Modules: newStat(s.mods)}
		if fi, err := os.Stat(c.Initrd); err == nil {
			bc.Bytes = fi.Size()
		}
		if len(s.steps) > 0 {
			bc.Steps = map[string]Stat{}
			for name, x := range s.steps {
				bc.Steps[name] = newStat(x)
			}
		}
		res.Contenders = append(res.Contenders, bc)
		b.logf("boot %-12s: initramfs phase %s (image's init at %s)", c.Name, fmtMS(bc.Phase.Median), fmtMS(bc.Init.Median))
	}
	if len(failed) > 0 {
		b.res.Missing["boot"] = "did not boot, so not reported: " + strings.Join(failed, "; ")
	}
	b.res.Boot = res
	if res.contender(cDockroot) == nil {
		return fmt.Errorf("dockroot's own initramfs did not boot: %s", b.res.Missing["boot"])
	}
	return nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
