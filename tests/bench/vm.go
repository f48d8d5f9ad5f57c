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

// BootResult is section 6: guest uptime when the image's init runs.
type BootResult struct {
	Dockroot      Stat    `json:"dockroot"`
	Shell         Stat    `json:"shell"`
	Ratio         float64 `json:"ratio"`                   // dockroot / shell
	DockrootKInit Stat    `json:"dockroot_kernel_to_init"` // uptime at "Run /init"
	ShellKInit    Stat    `json:"shell_kernel_to_init"`
	// The initramfs phase alone, per boot: uptime at the image's init minus
	// uptime when the kernel ran /init. It leaves out the kernel's own
	// start, whose run-to-run noise under TCG is larger than the phase.
	DockrootPhase Stat            `json:"dockroot_initramfs_phase"`
	ShellPhase    Stat            `json:"shell_initramfs_phase"`
	PhaseRatio    float64         `json:"initramfs_phase_ratio"`
	Steps         map[string]Stat `json:"dockroot_steps"` // dockroot's own "done in N ms" per step
	Cmdline       string          `json:"cmdline"`
	QEMU          string          `json:"qemu"`
}

// vmEnv is what sections 5 and 6 share.
type vmEnv struct {
	kernel   *vmkit.Kernel
	init     string // the static dockroot-init built from this checkout
	disk     string
	subvol   string
	dockroot string // initramfs files
	shell    string
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
	runInitRE = regexp.MustCompile(`\[\s*([0-9]+\.[0-9]+)\] Run /init as init process`)
	stepRE    = regexp.MustCompile(`dockroot: \[\d+/\d+\] ([^:\r\n]+?)(?: \(optional\))?: done in (\d+) ms`)
)

// bootOnce boots initrd and returns the uptime the image's init printed,
// the uptime when the kernel started /init, and dockroot's step timings.
func (b *bench) bootOnce(v *vmEnv, initrd, cmdline, log string) (up, kinit float64, steps map[string]float64, err error) {
	vm, err := vmkit.Start(vmkit.Options{Kernel: v.kernel.Vmlinuz, Initrd: initrd, Append: cmdline,
		Drives: []vmkit.Drive{{File: v.disk}}, LogFile: log})
	if err != nil {
		return 0, 0, nil, err
	}
	defer vm.Kill()
	if err := vm.Expect(bootMarker, 300*time.Second); err != nil {
		return 0, 0, nil, err
	}
	if err := vm.WaitExit(120 * time.Second); err != nil {
		return 0, 0, nil, err
	}
	console := vm.Console.String()
	m := uptimeRE.FindStringSubmatch(console)
	if m == nil {
		return 0, 0, nil, fmt.Errorf("no %q line with a number on the console; see %s", bootMarker, log)
	}
	up, _ = strconv.ParseFloat(m[1], 64)
	if k := runInitRE.FindStringSubmatch(console); k != nil {
		kinit, _ = strconv.ParseFloat(k[1], 64)
	}
	steps = map[string]float64{}
	for _, s := range stepRE.FindAllStringSubmatch(console, -1) {
		n, _ := strconv.ParseFloat(s[2], 64)
		steps[s[1]] = n
	}
	return up * 1000, kinit * 1000, steps, nil
}

// benchBoot measures section 6: one untimed boot of each first (the first
// dockroot boot has no layer to rotate), then BootRuns of each,
// alternating.
func (b *bench) benchBoot(v *vmEnv) error {
	cmdline := "root=/dev/vda rootflags=subvol=" + dockrootLayer + " rw docker_path=docker docker_image=" + bootImage
	res := &BootResult{Cmdline: cmdline, Steps: map[string]Stat{}}
	if out, err := testenv.Output("qemu-system-x86_64", "--version"); err == nil {
		res.QEMU = firstLine(out)
	}
	logs := filepath.Join(b.work, "consoles")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	var dr, sh, dk, sk, dp, sp []float64
	steps := map[string][]float64{}
	for i := -1; i < b.opts.BootRuns; i++ {
		order := []string{"dockroot", "shell"}
		if i%2 != 0 {
			order = []string{"shell", "dockroot"}
		}
		for _, who := range order {
			initrd := v.dockroot
			if who == "shell" {
				initrd = v.shell
			}
			log := filepath.Join(logs, fmt.Sprintf("%s-%d.log", who, i+1))
			up, kinit, st, err := b.bootOnce(v, initrd, cmdline, log)
			if err != nil {
				return fmt.Errorf("boot %s (run %d): %w", who, i+1, err)
			}
			if i < 0 {
				continue
			}
			if who == "dockroot" {
				dr, dk, dp = append(dr, up), append(dk, kinit), append(dp, up-kinit)
				for k, x := range st {
					steps[k] = append(steps[k], x)
				}
			} else {
				sh, sk, sp = append(sh, up), append(sk, kinit), append(sp, up-kinit)
			}
			b.logf("boot %d %-8s: init at %.0f ms uptime (kernel ran /init at %.0f ms)", i+1, who, up, kinit)
		}
	}
	res.Dockroot, res.Shell = newStat(dr), newStat(sh)
	res.DockrootKInit, res.ShellKInit = newStat(dk), newStat(sk)
	res.Ratio = ratio(res.Dockroot.Median, res.Shell.Median)
	res.DockrootPhase, res.ShellPhase = newStat(dp), newStat(sp)
	res.PhaseRatio = ratio(res.DockrootPhase.Median, res.ShellPhase.Median)
	for k, x := range steps {
		res.Steps[k] = newStat(x)
	}
	b.logf("boot: dockroot %s, busybox shell %s: %s", fmtMS(res.Dockroot.Median), fmtMS(res.Shell.Median), fmtRatio(res.Ratio))
	b.res.Boot = res
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
