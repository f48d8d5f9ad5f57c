package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// dockerPath is the Docker data root relative to the benchmark btrfs's top
// level, dockroot's default docker_path=.
const dockerPath = layout.DefaultDockerPath

// Options say what to run and where.
type Options struct {
	Mode     string // "full", "quick" or "smoke"
	Out      string // docs directory: BENCHMARKS.md and bench/ (plots, results.json) go there
	CacheDir string // scratch space for the loop file and the boot disk
	Log      func(format string, args ...any)

	Runs        int // timed runs per figure (medians)
	HookRuns    int // timed runs of sections 1 and 2: each takes milliseconds, so more of them steady the medians
	BootRuns    int
	LoopMB      int
	Images      []imageSpec
	DeleteFiles []int
	RootFiles   []int // section 1d: files in each subvolume whose snapshot is timed, chosen for its tree root's size
	CopyTrees   []copyTree
	TagCounts   []int
	MenuCounts  []int
	StoreLayers int  // section 2's second row: layers added to the store (the ancestor scanned them all)
	StoreRuns   int  // section 7c: timed Resolve calls per store and tag count
	VM          bool // sections 5 and 6 (QEMU, Debian's kernel)
	// Only, when not nil, are the sections to run (-only, parseOnly): the
	// others are kept from the earlier results.json in Out.
	Only map[string]bool
}

// modeOptions are the sizes of each mode. Full is what docs/BENCHMARKS.md
// reports; quick is a smaller run for trying changes; smoke only checks
// that every part of the harness works (make test runs it).
func modeOptions(mode string) (Options, error) {
	small := imageSpec{Label: "2 MB", Ref: "bench/small:1"}
	switch mode {
	case "full":
		return Options{Mode: mode, Runs: 11, HookRuns: 41, BootRuns: 5, LoopMB: 5632, VM: true,
			Images: []imageSpec{small,
				{Label: "200 MB", Ref: "bench/medium:1", Files: 10000, Bytes: 200 << 20},
				{Label: "2 GB", Ref: "bench/large:1", Files: 100000, Bytes: 2000 << 20}},
			DeleteFiles: []int{1000, 100000, 300000},
			RootFiles:   []int{300, 3000, 6000, 9000, 12000, 15000, 30000, 100000},
			CopyTrees:   []copyTree{{name: "10k small files", small: 10000}, {name: "4 large files", large: 4, size: 64 << 20}},
			TagCounts:   []int{10, 100, 1000},
			MenuCounts:  []int{10, 200},
			StoreLayers: 300,
			StoreRuns:   21,
		}, nil
	case "quick":
		return Options{Mode: mode, Runs: 5, HookRuns: 9, BootRuns: 3, LoopMB: 3072, VM: true,
			Images: []imageSpec{small,
				{Label: "50 MB", Ref: "bench/medium:1", Files: 2500, Bytes: 50 << 20},
				{Label: "400 MB", Ref: "bench/large:1", Files: 20000, Bytes: 400 << 20}},
			DeleteFiles: []int{1000, 10000, 30000},
			RootFiles:   []int{300, 6000, 12000, 24000},
			CopyTrees:   []copyTree{{name: "2k small files", small: 2000}, {name: "4 large files", large: 4, size: 16 << 20}},
			TagCounts:   []int{10, 100, 1000},
			MenuCounts:  []int{10, 200},
			StoreLayers: 300,
			StoreRuns:   11,
		}, nil
	case "smoke":
		return Options{Mode: mode, Runs: 1, HookRuns: 1, BootRuns: 1, LoopMB: 1024,
			Images:      []imageSpec{small, {Label: "2 MB + 200 files", Ref: "bench/medium:1", Files: 200, Bytes: 2 << 20}},
			DeleteFiles: []int{100},
			RootFiles:   []int{50, 3000},
			CopyTrees:   []copyTree{{name: "100 small files", small: 100}, {name: "1 large file", large: 1, size: 1 << 20}},
			TagCounts:   []int{2, 5},
			MenuCounts:  []int{3},
			StoreLayers: 5,
			StoreRuns:   3,
		}, nil
	}
	return Options{}, fmt.Errorf("unknown mode %q: want full, quick or smoke", mode)
}

// Results is everything measured; results.json holds it and the report is
// rendered from it.
type Results struct {
	Mode      string           `json:"mode"`
	Date      time.Time        `json:"date"`
	Machine   Machine          `json:"machine"`
	Images    []ImageInfo      `json:"images"`
	LayerdbN  int              `json:"layerdb_entries"`
	Hook      []HookRow        `json:"hook"`
	TreeRoot  []RootRow        `json:"snapshot_vs_tree_root"`
	Store     *StoreRow        `json:"hook_in_filled_store,omitempty"`
	Delete    []DeleteRow      `json:"delete"`
	Copy      []CopyRow        `json:"copy"`
	Initramfs *InitramfsResult `json:"initramfs,omitempty"`
	Boot      *BootResult      `json:"boot,omitempty"`
	Tags      []TagRow         `json:"tags"`
	Menu      []MenuRow        `json:"menu"`
	Stores    *StoresResult    `json:"stores,omitempty"`
	// Only are the sections this run measured when it ran only some
	// (-only); From has the date of the run each other section was
	// measured in (keepSections).
	Only []string             `json:"only,omitempty"`
	From map[string]time.Time `json:"sections_from,omitempty"`
	// KeptFrom is how results.json said it before From: the date of the
	// run whose sections 1–4 and 7 a -vm-only run kept. Read, never written.
	KeptFrom *time.Time `json:"sections_kept_from,omitempty"`
	// Missing says why a section has no figures: "failed: …" or "not run: …".
	Missing  map[string]string `json:"missing,omitempty"`
	Duration float64           `json:"duration_secs"`
}

// bench is one run of the benchmark.
type bench struct {
	opts     Options
	cl       *cleanups
	work     string // temporary, removed at the end
	cacheDir string
	fs       *vmkit.Mount
	dockerd  *testenv.Dockerd
	images   []ImageInfo
	toplayer string
	res      Results
}

func (b *bench) logf(format string, args ...any) {
	if b.opts.Log != nil {
		b.opts.Log(format, args...)
	}
}

// requiredTools are what every mode runs.
var requiredTools = []string{"mkfs.btrfs", "btrfs", "losetup", "mount", "umount", "dockerd", "docker", "busybox", "bash", "jq", "cp"}

// checkHost refuses to start without root and the tools, saying what to do.
func checkHost(opts Options) error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark needs root: it makes a loop btrfs, calls btrfs ioctls and runs a private dockerd; run `sudo make bench` (or sudo go run ./tests/bench)")
	}
	tools := requiredTools
	if opts.VM {
		tools = append(tools, "qemu-system-x86_64", "ldd", "cpio", "modinfo")
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %s; run `make deps` (Debian packages: see docs/BENCHMARKS.md)", strings.Join(missing, ", "))
	}
	return nil
}

// Run runs every section the options ask for, writes the report and
// plots, and releases everything it made (also on error and panic). A
// failing section is recorded in the report and the others still run;
// Run then returns an error naming it.
func Run(opts Options, cl *cleanups) (res *Results, err error) {
	if err := checkHost(opts); err != nil {
		return nil, err
	}
	start := time.Now()
	b := &bench{opts: opts, cl: cl, res: Results{Mode: opts.Mode, Date: start.UTC(), Missing: map[string]string{}}}
	defer func() {
		if cerr := cl.run(b.logf); cerr != nil && err == nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
	}()
	b.res.Machine = describeMachine()
	if b.cacheDir, err = filepath.Abs(opts.CacheDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.cacheDir, 0o755); err != nil {
		return nil, err
	}
	if b.work, err = os.MkdirTemp("", "dockroot-bench-"); err != nil {
		return nil, err
	}
	cl.push("remove "+b.work, func() error { return os.RemoveAll(b.work) })

	var failed []string
	section := func(key, what string, f func() error) {
		b.logf("== %s", what)
		t0 := time.Now()
		if err := f(); err != nil {
			b.logf("%s FAILED: %v", what, err)
			b.res.Missing[key] = "failed: " + err.Error()
			failed = append(failed, fmt.Sprintf("%s: %v", what, err))
			return
		}
		b.logf("   (%s took %v)", what, time.Since(t0).Round(time.Second))
	}
	want := func(key string) bool { return opts.Only == nil || opts.Only[key] }
	if opts.Only != nil {
		b.res.Only = onlyList(opts.Only)
		for _, s := range sections {
			if !opts.Only[s.key] {
				b.res.Missing[s.key] = "not run: -only " + strings.Join(b.res.Only, ",")
			}
		}
		if opts.Out != "" {
			b.keepSections(filepath.Join(opts.Out, "bench", "results.json"))
		}
	}
	envWanted := false
	for _, s := range sections {
		envWanted = envWanted || (s.env && want(s.key))
	}
	envOK, envMark := false, cl.mark()
	if envWanted {
		section("setup", "set up a loop btrfs, a private dockerd and the images", func() error {
			if err := b.setup(); err != nil {
				return err
			}
			envOK = true
			return nil
		})
	}
	if envOK {
		envSection := func(key, what string, f func() error) {
			if want(key) {
				section(key, what, f)
			}
		}
		envSection("hook", "1+2. hook work vs image size, dockroot vs the shell way", b.benchHook)
		envSection("root", "1d. one snapshot vs the pointers in the tree root", b.benchTreeRoot)
		envSection("delete", "3. old-layer deletion vs files in the layer", b.benchDelete)
		envSection("copy", "4. top-layer copy vs cp -a", b.benchCopy)
		envSection("tags", "7a. resolution vs tags in repositories.json", b.benchTags)
		envSection("menu", "7b. boot menu for many tags", b.benchMenu)
		// Last in the store: the extra layers must not change the
		// figures above, taken on the store section 1 describes.
		envSection("store", "2b. dockroot vs the shell way in a store with many more layers", b.benchStore)
		// Stop dockerd and release the loop device before the next
		// sections, which make their own: the machine has only eight.
		if err := cl.runFrom(envMark, b.logf); err != nil {
			failed = append(failed, "release the benchmark filesystem: "+err.Error())
		}
	}
	if want("stores") {
		section("stores", "7c. resolution vs tags, per image store", b.benchStores)
	}
	if opts.VM && (want("initramfs") || want("boot")) {
		v := &vmEnv{subvol: "docker/btrfs/subvolumes/UNKNOWN"}
		diskOK := false
		section("bootdisk", "6. (setup) boot disk with a private dockerd", func() error {
			if err := b.bootDisk(v); err != nil {
				return err
			}
			diskOK = true
			return nil
		})
		initrdOK := false
		section("initramfs", "5. initramfs size", func() error {
			if err := b.benchInitramfs(v); err != nil {
				return err
			}
			initrdOK = true
			return nil
		})
		switch {
		case !want("boot"):
		case diskOK && initrdOK:
			section("peers", "6. (setup) the peers' initramfs images", func() error {
				if err := b.dockrootAll(v); err != nil {
					return err
				}
				b.peers(v)
				return nil
			})
			section("boot", "6. boot to the image's init in QEMU (TCG)", func() error { return b.benchBoot(v) })
		default:
			b.res.Missing["boot"] = "not run: the boot disk or the initramfs could not be built (see above)"
		}
	} else if !opts.VM {
		for _, k := range []string{"initramfs", "boot"} {
			if want(k) {
				b.res.Missing[k] = "not run in " + opts.Mode + " mode (no QEMU)"
			}
		}
	}
	b.res.Duration = time.Since(start).Seconds()
	b.res.Machine.LoadAvg[1] = loadAvg()
	if opts.Out != "" {
		if err := writeOutputs(&b.res, opts.Out, b.work, b.logf); err != nil {
			failed = append(failed, "write the report: "+err.Error())
		}
	}
	if len(failed) > 0 {
		return &b.res, fmt.Errorf("%d part(s) failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	return &b.res, nil
}

// sections are the report's sections that -only names, in the order they
// run, with the numbers the report gives them. env: measured on the shared
// loop btrfs and dockerd that "setup" makes; vm: in QEMU.
var sections = []struct {
	key, label string
	env, vm    bool
}{
	{"hook", "1 and 2", true, false},
	{"root", "1d", true, false},
	{"delete", "3", true, false},
	{"copy", "4", true, false},
	{"tags", "7a", true, false},
	{"menu", "7b", true, false},
	{"store", "2b", true, false},
	{"stores", "7c", false, false},
	{"initramfs", "5", false, true},
	{"boot", "6", false, true},
}

// sectionLabel is key's number in the report.
func sectionLabel(key string) string {
	for _, s := range sections {
		if s.key == key {
			return s.label
		}
	}
	return key
}

// vmOnly is what -vm-only means: -only initramfs,boot.
const vmOnly = "initramfs,boot"

// parseOnly reads -only's comma-separated section keys. "boot" needs the
// initramfs it boots, so it brings "initramfs" along.
func parseOnly(list string) (map[string]bool, error) {
	only := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		known := false
		for _, s := range sections {
			known = known || s.key == k
		}
		if !known {
			var keys []string
			for _, s := range sections {
				keys = append(keys, s.key)
			}
			return nil, fmt.Errorf("-only: unknown section %q; the sections are %s", k, strings.Join(keys, ", "))
		}
		only[k] = true
	}
	if len(only) == 0 {
		return nil, errors.New("-only: no section named; give a comma-separated list such as -only stores")
	}
	if only["boot"] {
		only["initramfs"] = true
	}
	return only, nil
}

// onlyList is only's keys in the report's order.
func onlyList(only map[string]bool) []string {
	var l []string
	for _, s := range sections {
		if only[s.key] {
			l = append(l, s.key)
		}
	}
	return l
}

// keepSections takes every section this run does not measure (b.res.Only)
// from an earlier run's results.json, so that a run of some sections
// rewrites the whole report: From records which run each kept section was
// measured in. A section the earlier file does not have stays "not run".
func (b *bench) keepSections(file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		b.logf("-only: other sections not kept: %v", err)
		return
	}
	var old Results
	if err := json.Unmarshal(data, &old); err != nil {
		b.logf("-only: other sections not kept: %s: %v", file, err)
		return
	}
	r := &b.res
	ran := map[string]bool{}
	for _, k := range r.Only {
		ran[k] = true
	}
	// measuredOn is the date of the run that measured old's section k.
	measuredOn := func(k string) time.Time {
		if d, ok := old.From[k]; ok {
			return d
		}
		if old.KeptFrom != nil {
			for _, s := range sections {
				if s.key == k && !s.vm && k != "stores" {
					return *old.KeptFrom
				}
			}
		}
		return old.Date
	}
	envRan := false
	for _, s := range sections {
		envRan = envRan || (s.env && ran[s.key])
	}
	// Setup's images go with section 1; the VM sections' setup steps go
	// with theirs.
	if !envRan {
		r.Images, r.LayerdbN = old.Images, old.LayerdbN
		keepMissing(r, &old, "setup")
	}
	if !ran["initramfs"] {
		keepMissing(r, &old, "bootdisk")
	}
	if !ran["boot"] {
		keepMissing(r, &old, "peers")
	}
	var kept []string
	for _, s := range sections {
		k := s.key
		if ran[k] {
			continue
		}
		has := true
		switch k {
		case "hook":
			r.Hook, has = old.Hook, len(old.Hook) > 0
		case "root":
			r.TreeRoot, has = old.TreeRoot, len(old.TreeRoot) > 0
		case "delete":
			r.Delete, has = old.Delete, len(old.Delete) > 0
		case "copy":
			r.Copy, has = old.Copy, len(old.Copy) > 0
		case "tags":
			r.Tags, has = old.Tags, len(old.Tags) > 0
		case "menu":
			r.Menu, has = old.Menu, len(old.Menu) > 0
		case "store":
			r.Store, has = old.Store, old.Store != nil
		case "stores":
			r.Stores, has = old.Stores, old.Stores != nil
		case "initramfs":
			r.Initramfs, has = old.Initramfs, old.Initramfs != nil
		case "boot":
			r.Boot, has = old.Boot, old.Boot != nil
		}
		if _, failed := old.Missing[k]; !has && !failed {
			continue // never measured: stays "not run"
		}
		keepMissing(r, &old, k)
		if r.From == nil {
			r.From = map[string]time.Time{}
		}
		r.From[k] = measuredOn(k).UTC()
		kept = append(kept, s.label)
	}
	b.logf("-only: sections %s kept from %s", strings.Join(kept, ", "), file)
}

// keepMissing takes old's reason for section k having no figures, or none.
func keepMissing(r, old *Results, k string) {
	delete(r.Missing, k)
	if why, ok := old.Missing[k]; ok {
		r.Missing[k] = why
	}
}

// setup makes the loop btrfs, starts dockerd with its data root on it,
// builds the images and writes the top layer.
func (b *bench) setup() error {
	var err error
	if b.fs, err = newLoopBtrfs(b.cl, b.cacheDir, b.opts.LoopMB); err != nil {
		return err
	}
	if b.dockerd, err = startDockerd(b.cl, filepath.Join(b.fs.Dir, dockerPath), filepath.Join(b.work, "dockerd")); err != nil {
		return err
	}
	for _, spec := range b.opts.Images {
		info, err := buildImage(b.dockerd, spec, b.work)
		if err != nil {
			return err
		}
		img, err := resolveImage(b.fs.Dir, spec.Ref)
		if err != nil {
			return err
		}
		info.Subvolume, info.Layers = img.Subvolume, len(img.DiffIDs)
		if info.TreeLevel, info.TreeRootN, err = treeShape(b.fs.Loop, b.fs.Dir, filepath.Join(b.fs.Dir, img.Subvolume)); err != nil {
			return fmt.Errorf("image %s: tree shape: %w", spec.Ref, err)
		}
		b.logf("image %-8s %s: %d entries, %s, %d layers, tree root level %d with %d items, built in %.1f s", spec.Label, spec.Ref,
			info.Files, fmtBytes(info.Bytes), info.Layers, info.TreeLevel, info.TreeRootN, info.BuildSecs)
		b.images = append(b.images, info)
	}
	b.res.Images = b.images
	if des, err := os.ReadDir(filepath.Join(b.fs.Dir, dockerPath, "image", "btrfs", "layerdb", "sha256")); err == nil {
		b.res.LayerdbN = len(des)
	}
	b.toplayer = filepath.Join(b.fs.Dir, "boot_docker")
	return writeTopLayer(b.toplayer)
}

// defaultCacheDir is $DOCKROOT_CACHE/bench, else .cache/bench in the
// repository (gitignored).
func defaultCacheDir() string {
	if d, err := vmkit.CacheDir(); err == nil {
		return filepath.Join(d, "bench")
	}
	return filepath.Join(".cache", "bench")
}
