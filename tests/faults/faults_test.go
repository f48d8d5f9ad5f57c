// Package faults is dockroot's power-cut fault injection (issue 4 §5): QEMU
// boots the real kernel and initramfs and is killed (SIGKILL, the VM's
// power cut) at a random moment inside the hook's window; the same disk
// then boots again normally and must reach the image's init, and the disk
// must hold no temporary or extra subvolumes beyond keep + the current
// layer, and state files that parse.
//
// TestPowerCut boots dockroot's own initramfs; TestPowerCutInitramfsTools
// boots Debian's initramfs-tools initrd with dockroot's hook inside (hook
// mode), from the same disk.
//
// VM tier. DOCKROOT_FAULT_TRIALS sets the number of trials (default 10;
// `make test-faults` runs 50), DOCKROOT_FAULT_ITOOLS_TRIALS those in hook
// mode (unset: 3, in the full VM tier only; `make test-faults` runs 50
// too), DOCKROOT_FAULT_SEED repeats a run. Consoles are kept in
// tests/faults/testdata/out/.
package faults

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

const (
	label        = "faults"
	layerName    = "docker_rwlayer"
	dockerPath   = "docker"
	toplayerPath = "boot_docker"
	keep         = 1
	image        = "fault:1"
	initMarker   = "DOCKROOT-FAULT-INIT"
	cmdline      = "root=LABEL=" + label + " rootflags=subvol=" + layerName + " rw docker_path=" + dockerPath +
		" docker_image=" + image + " toplayer_path=" + toplayerPath + " dockroot.keep=1"
	// bootTimeout is power-on to the init marker under TCG (usually ~15 s).
	bootTimeout = 120 * time.Second
)

// faultInit is the image's /sbin/init: it writes into / (the user's work
// the next boot rotates away), prints the marker and powers off.
const faultInit = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
[ -e /proc/self ] || mount -t proc proc /proc
cat /proc/sys/kernel/random/boot_id > /written-by-init
echo "` + initMarker + ` pid=$$"
sync
poweroff -f
`

// TestPowerCut runs the trials against dockroot's own initramfs and prints
// the tally.
func TestPowerCut(t *testing.T) {
	testenv.RequireVM(t)
	runTrials(t, genDockroot, trialCount(t, "DOCKROOT_FAULT_TRIALS", 10))
}

// TestPowerCutInitramfsTools runs the trials against Debian's own
// initramfs with dockroot's hook inside (hook mode): the cut falls in
// dockroot-init --hook or after it, while initramfs-tools mounts the layer
// and hands over. DOCKROOT_FAULT_ITOOLS_TRIALS sets their number and runs
// them (`make test-faults` runs as many as the standalone trials);
// without it they are part of the full VM tier, 3 of them.
func TestPowerCutInitramfsTools(t *testing.T) {
	if os.Getenv("DOCKROOT_FAULT_ITOOLS_TRIALS") == "" {
		testenv.RequireFullVM(t, "power cuts in hook mode (initramfs-tools)")
	}
	testenv.RequireVM(t)
	testenv.RequireRoot(t, "debootstrap", "chroot")
	runTrials(t, genItools, trialCount(t, "DOCKROOT_FAULT_ITOOLS_TRIALS", 3))
}

// The initramfs a run's trials boot.
const (
	genDockroot = "dockroot"        // dockroot initramfs: dockroot-init is /init
	genItools   = "initramfs-tools" // update-initramfs with dockroot's hook
)

func trialCount(t *testing.T, env string, def int) int {
	t.Helper()
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", env, s)
	}
	return n
}

func runTrials(t *testing.T, gen string, trials int) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("DOCKROOT_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("DOCKROOT_FAULT_SEED=%q: %v", s, err)
		}
	}
	t.Logf("power-cut seed %d (repeat with DOCKROOT_FAULT_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))

	s := setUp(t, gen)
	w := measureWindow(t, s)
	t.Logf("hook window: %v from the first dockroot: line to the image's init marker, of which the last %v write the disk (%s)",
		w.length.Round(time.Millisecond), (w.length - w.disk).Round(time.Millisecond), w.steps)

	recovered := 0
	for i := 1; i <= trials; i++ {
		// Odd trials cut anywhere in the hook: a random time after the
		// trial's first dockroot: line. Even trials cut only where the
		// disk is written: a random time after the trial's own "mount the
		// btrfs top level" line, within that part's measured length.
		// Module loading, which writes nothing, takes most of the window
		// under TCG and varies by seconds between boots, so anchoring on
		// the trial's own lines keeps the cut where it is meant to be.
		c := cut{anchor: "dockroot:", span: w.length}
		if i%2 == 0 {
			c = cut{anchor: topLevelLine, span: w.length - w.disk}
		}
		c.delay = time.Duration(rng.Int63n(int64(c.span) + 1))
		start := time.Now()
		res, err := trial(t, s, i, c)
		took := time.Since(start).Round(time.Second)
		if err != nil {
			t.Errorf("trial %d: power cut %v after %q (%s): NOT RECOVERED (%v): %v", i, c.delay.Round(time.Millisecond), c.anchor, res, took, err)
			continue
		}
		recovered++
		t.Logf("trial %d: power cut %v after %q (%s): recovered (%v)", i, c.delay.Round(time.Millisecond), c.anchor, res, took)
	}
	msg := fmt.Sprintf("power-cut trials (%s): %d/%d recovered (seed %d)", gen, recovered, trials, seed)
	fmt.Println(msg)
	t.Log(msg)
}

// setup is what every trial shares.
type setup struct {
	gen     string // genDockroot or genItools
	kernel  *vmkit.Kernel
	vmlinuz string
	initrd  string
	disk    string // the prepared disk: booted once, so NAME holds a layer
	work    string
	logDir  string
	subvols int // Docker's subvolumes on the prepared disk
}

func setUp(t *testing.T, gen string) *setup {
	t.Helper()
	work := t.TempDir()
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{gen: gen, work: work}
	if s.logDir, err = filepath.Abs(filepath.Join("testdata", "out")); err == nil {
		err = os.MkdirAll(s.logDir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var kerr, perr, derr error
	var p *vmkit.Product
	wg.Add(2)
	go func() {
		defer wg.Done()
		if s.kernel, kerr = vmkit.FetchKernel(cache); kerr == nil {
			p, perr = vmkit.BuildProduct(filepath.Join(work, "bin"))
		}
	}()
	go func() {
		defer wg.Done()
		s.disk = filepath.Join(work, "prepared.img")
		derr = vmkit.BuildDisk(s.disk, vmkit.DiskSpec{
			SizeMB: 1024, Label: label, DockerPath: dockerPath,
			Images: func(d *testenv.Dockerd) error {
				if err := vmkit.ImportBusybox(d, "faults/busybox:base"); err != nil {
					return err
				}
				return vmkit.Build(d, image, []string{"FROM faults/busybox:base", "COPY init /sbin/init"},
					[]vmkit.File{{Path: "init", Mode: 0o755, Data: faultInit}})
			},
			Files: []vmkit.File{{Path: toplayerPath + "/etc/hostname", Data: "faults-machine\n"}},
		})
	}()
	wg.Wait()
	for _, err := range []error{kerr, perr, derr} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if gen == genItools {
		if s.initrd, s.vmlinuz, err = itoolsInitrd(cache, s.kernel, p, work); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s.initrd, s.vmlinuz = filepath.Join(work, "initramfs.img"), s.kernel.Vmlinuz
	if _, err := p.Initramfs(s.kernel, s.initrd); err != nil {
		t.Fatal(err)
	}
	return s
}

// itoolsInitrd builds Debian's initramfs with dockroot's hook, as
// tests/vm's TestInitramfsTools does: update-initramfs in the cached
// Debian root (vmkit.ItoolsRoot) with dockroot installed as `make install`
// lays it out.
func itoolsInitrd(cache string, k *vmkit.Kernel, p *vmkit.Product, work string) (initrd, vmlinuz string, err error) {
	root, err := vmkit.ItoolsRoot(cache, "bookworm", k)
	if err != nil {
		return "", "", err
	}
	repo, err := vmkit.RepoRoot()
	if err != nil {
		return "", "", err
	}
	files, err := vmkit.ItoolsFiles(repo, p.Init)
	if err != nil {
		return "", "", err
	}
	return vmkit.UpdateInitramfs(root, k.Version, files, work)
}

// stampWriter records when console text arrived.
type stampWriter struct {
	mu    sync.Mutex
	start time.Time
	buf   strings.Builder
	at    []stamp
}

type stamp struct {
	off int // byte offset in buf where the write began
	t   time.Duration
}

func (w *stampWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.at = append(w.at, stamp{w.buf.Len(), time.Since(w.start)})
	w.buf.Write(p)
	return len(p), nil
}

// when returns the time, relative to QEMU's start, at which text first
// arrived on the console.
func (w *stampWriter) when(text string) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := strings.Index(w.buf.String(), text)
	if i < 0 {
		return 0, false
	}
	j := sort.Search(len(w.at), func(k int) bool { return w.at[k].off > i }) - 1
	return w.at[j].t, true
}

// topLevelLine starts the part of the hook that writes the disk.
const topLevelLine = "mount the btrfs top level: starting"

// cut is when a trial cuts the power: delay after anchor first appears.
type cut struct {
	anchor string
	span   time.Duration // delay is drawn from [0, span]
	delay  time.Duration
}

type window struct {
	length time.Duration // first dockroot: line to the image's init marker
	disk   time.Duration // first dockroot: line to mounting the top level
	steps  string        // the "boot steps took" line
}

// measureWindow boots the prepared disk normally and measures, on the
// host's clock, how long the hook runs: from the first "dockroot:" line to
// the image's init marker. The window goes past "switch_root: exec" on
// purpose: the boot leaves the switch to btrfs's next transaction commit
// (snapshot/layers_durability.go), so a cut just after switch_root must
// find the disk as safe as one before it. That boot also gives the
// prepared disk its first layer, so every trial starts with one layer to
// lose.
func measureWindow(t *testing.T, s *setup) window {
	t.Helper()
	sw := &stampWriter{start: time.Now()}
	vm := start(t, s, s.disk, "measure", sw)
	if err := vm.Expect(initMarker, bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitExit(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	first, ok1 := sw.when("dockroot:")
	end, ok2 := sw.when(initMarker)
	top, ok3 := sw.when(topLevelLine)
	if !ok1 || !ok2 || !ok3 || end <= top || top < first {
		t.Fatalf("cannot measure the hook window (first dockroot: line %v, top level %v, init marker %v)", first, top, end)
	}
	steps := regexp.MustCompile(`boot steps took [^\r\n]*`).FindString(vm.Console.String())
	err := vmkit.WithMounted(s.disk, "btrfs", func(top string) error {
		subs, err := listSubvolumes(top)
		for _, sv := range subs {
			if strings.HasPrefix(sv, dockerPath+"/") {
				s.subvols++
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return window{length: end - first, disk: top - first, steps: steps}
}

func start(t *testing.T, s *setup, disk, name string, live *stampWriter) *vmkit.VM {
	t.Helper()
	if s.gen != genDockroot {
		name = s.gen + "-" + name
	}
	opts := vmkit.Options{Kernel: s.vmlinuz, Initrd: s.initrd, Append: cmdline,
		Drives: []vmkit.Drive{{File: disk}}, LogFile: filepath.Join(s.logDir, name+".log")}
	if live != nil {
		opts.Live = live
	}
	vm, err := vmkit.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	return vm
}

var stepLine = regexp.MustCompile(`dockroot: \[\d+/\d+\] [^:\r\n]*`)

// trial copies the prepared disk, boots it and cuts the power as c says,
// boots again and inspects the disk. It returns where the cut fell.
func trial(t *testing.T, s *setup, n int, c cut) (string, error) {
	disk := filepath.Join(s.work, fmt.Sprintf("trial-%d.img", n))
	if err := vmkit.CopyImage(s.disk, disk); err != nil {
		return "", err
	}
	defer os.Remove(disk)

	vm := start(t, s, disk, fmt.Sprintf("trial-%d.cut", n), nil)
	if err := vm.Expect(c.anchor, bootTimeout); err != nil {
		return "", fmt.Errorf("before the cut: %w", err)
	}
	time.Sleep(c.delay)
	vm.Kill()
	out := vm.Console.String()
	where := "during the last step logged"
	if steps := stepLine.FindAllString(out, -1); len(steps) > 0 {
		where = "in or after " + strings.TrimPrefix(steps[len(steps)-1], "dockroot: ")
	}
	if strings.Contains(out, "switch_root: exec") {
		where = "after switch_root: exec"
	}
	if f, line, ok := vmkit.FindFailure(out, vmkit.DefaultFailures); ok {
		return where, fmt.Errorf("the cut boot failed before the cut: %s: %s", f.Name, line)
	}

	vm = start(t, s, disk, fmt.Sprintf("trial-%d.next", n), nil)
	if err := vm.Expect(initMarker, bootTimeout); err != nil {
		return where, fmt.Errorf("the next boot: %w", err)
	}
	if err := vm.WaitExit(60 * time.Second); err != nil {
		return where, fmt.Errorf("the next boot: %w", err)
	}
	return where, vmkit.WithMounted(disk, "btrfs", func(top string) error { return inspect(s, top) })
}

// inspect checks the disk after the next boot: exactly NAME and NAME.prev.1
// outside the Docker store (keep=1), all recorded as dockroot's, no
// temporary subvolume, at most one prepared base (one image, one top
// layer), read-only, Docker's subvolumes as before, and a boot state file
// that parses.
func inspect(s *setup, top string) error {
	subs, err := listSubvolumes(top)
	if err != nil {
		return err
	}
	var layers, bases []string
	docker := 0
	for _, sv := range subs {
		switch {
		case strings.HasPrefix(sv, dockerPath+"/"):
			docker++
		case strings.HasPrefix(sv, layout.BasesDir+"/"):
			bases = append(bases, sv)
		default:
			layers = append(layers, sv)
		}
	}
	if len(bases) > 1 {
		return fmt.Errorf("prepared bases: %v; want at most one (a save replaces its slot's base)", bases)
	}
	for _, b := range bases {
		if info, err := btrfs.SubvolInfo(filepath.Join(top, b)); err != nil || !info.ReadOnly {
			return fmt.Errorf("prepared base %s is not a read-only subvolume (%v)", b, err)
		}
	}
	sort.Strings(layers)
	want := []string{layerName, layerName + ".prev.1"}
	if fmt.Sprint(layers) != fmt.Sprint(want) {
		return fmt.Errorf("subvolumes outside the Docker store: %v; want exactly %v (keep=%d + the current layer)", layers, want, keep)
	}
	if docker != s.subvols {
		return fmt.Errorf("the Docker store has %d subvolumes; it had %d", docker, s.subvols)
	}
	l := &rwlayer.Layers{Top: top, Name: layerName, DockerPath: dockerPath}
	infos, err := l.List()
	if err != nil {
		return fmt.Errorf("layer state: %w", err)
	}
	for _, li := range infos {
		if !li.Owned {
			return fmt.Errorf("layer %s is not recorded in %s", li.Name, rwlayer.LayerStateFile)
		}
	}
	if _, err := bootstate.Load(top); err != nil {
		return fmt.Errorf("boot state: %w", err)
	}
	return nil
}

func runOutput(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr))
	}
	return string(out), nil
}

// listSubvolumes returns the paths of every subvolume below top.
func listSubvolumes(top string) ([]string, error) {
	out, err := runOutput("btrfs", "subvolume", "list", top)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		if _, p, ok := strings.Cut(line, " path "); ok {
			paths = append(paths, strings.TrimPrefix(p, "<FS_TREE>/"))
		}
	}
	return paths, nil
}
