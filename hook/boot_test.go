package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/internal/resume"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/toplayer"
	"golang.org/x/sys/unix"
)

// world is a fake Env: every call is recorded in order, and failures are
// injected by name. Paths are temporary directories; the new root is a
// directory the test fills like a mounted image.
type world struct {
	t       *testing.T
	base    string // the temporary directory standing for /
	env     *Env
	fx      *envFuncs // env's System, Devices, Images, Layers, BootCount
	log     *memLog
	calls   []string
	fail    map[string]error // call name -> error to return
	cmdline string
	rootDev Device
	topDev  Device
	image   *snapshot.Image
	record  *bootrecord.Record
	pending *fakePending   // the layer the last PrepareLayer made
	layers  rwlayer.Layers // what the last Prepare was asked for

	// The image store's other images, by ID (for the last good image).
	images map[string]*snapshot.Image
	// Layers the fake layer list reports, by name: their subvolume IDs
	// and images (the directories under TopDir decide which exist).
	layerIDs    map[string]uint64
	layerImages map[string]string
	// The hibernation guard's view: what resume= finds, and its signature.
	resumeDev  string
	hibernated string // "" for none
	space      freespace.Space
}

const baseCmdline = "root=LABEL=linux rootflags=subvol=rw,compress=zstd rw docker_image=web:1 docker_path=var/lib/docker toplayer_path=top -- --log-level=info"

// withParams adds kernel parameters to baseCmdline, before its "--".
func withParams(params string) string {
	return strings.Replace(baseCmdline, " -- ", " "+params+" -- ", 1)
}

func newWorld(t *testing.T, cmdline string) *world {
	w := &world{t: t, log: &memLog{}, fail: map[string]error{}, cmdline: cmdline,
		images: map[string]*snapshot.Image{}, layerIDs: map[string]uint64{}, layerImages: map[string]string{},
		space:   freespace.Space{Free: 10 << 30, Total: 20 << 30, Btrfs: true},
		rootDev: Device{Path: "/dev/vda", FSType: "btrfs"},
		topDev:  Device{Path: "/dev/vdb", FSType: "ext4"},
		image: &snapshot.Image{Ref: "docker.io/library/web:1", ID: "sha256:" + strings.Repeat("ab", 32),
			ChainID: "sha256:" + strings.Repeat("cd", 32), Subvolume: "var/lib/docker/btrfs/subvolumes/c1"}}
	dir := t.TempDir()
	w.base = dir
	w.env = &Env{
		Log:         w.log,
		Version:     "v0-test",
		RunDir:      filepath.Join(dir, "run/dockroot"),
		TopDir:      filepath.Join(dir, "run/dockroot/top"),
		ToplayerDir: filepath.Join(dir, "run/dockroot/toplayer"),
		NewRoot:     filepath.Join(dir, "newroot"),
		ModulesList: "/etc/dockroot/modules.list",
	}
	w.fx = &envFuncs{
		mountPseudo: func() ([]string, error) { return nil, w.call("pseudo") },
		readCmdline: func() (string, error) { return w.cmdline, w.call("cmdline") },
		loadConfig: func(c string) (*config.Config, error) {
			w.call("config")
			return config.Load(c, nil)
		},
		loadModules: func(list string) (string, error) { return "3 modules", w.call("modules " + list) },
		waitDevice: func(spec config.DeviceSpec, what string, cfg *config.Config) (Device, error) {
			if err := w.call("wait " + what + " " + spec.String()); err != nil {
				return Device{}, err
			}
			if what == "root" {
				return w.rootDev, nil
			}
			return w.topDev, nil
		},
		mount: func(src, dst, fstype string, flags uintptr, data string) error {
			ro := ""
			if flags&unix.MS_RDONLY != 0 {
				ro = " ro"
			}
			return w.call(fmt.Sprintf("mount %s %s %s %s%s", src, w.rel(dst), fstype, data, ro))
		},
		unmount: func(dst string, flags int) error { return w.call("umount " + w.rel(dst)) },
		openStore: func(kind, top string, paths stores.Paths) (snapshot.Store, error) {
			return storeFunc(func(ref string) (*snapshot.Image, error) {
				if err := w.call("resolve " + ref); err != nil {
					return nil, err
				}
				if img, ok := w.images[ref]; ok {
					cp := *img
					return &cp, nil
				}
				return w.image, nil
			}), w.call("store " + kind + " " + paths.Docker)
		},
		listLayers: func(l *rwlayer.Layers) ([]rwlayer.LayerInfo, error) {
			top, name := l.Top, l.Name
			if err := w.call("list " + name); err != nil {
				return nil, err
			}
			var out []rwlayer.LayerInfo
			for i := 0; i <= 3; i++ {
				n := name
				if i > 0 {
					n = fmt.Sprintf("%s.prev.%d", name, i)
				}
				if fi, err := os.Stat(filepath.Join(top, n)); err == nil && fi.IsDir() {
					out = append(out, rwlayer.LayerInfo{Name: n, Path: filepath.Join(top, n), Index: i,
						SubvolID: w.layerIDs[n], Image: w.layerImages[n], Owned: true})
				}
			}
			return out, nil
		},
		beginBoot: bootCounter{}.BeginBoot,
		freeSpace: func(top string) (freespace.Space, error) {
			if err := w.call("freespace"); err != nil {
				return w.space, err
			}
			if w.space.Free < freespace.MinFree {
				return w.space, &freespace.LowSpaceError{Path: top, Space: w.space, Need: freespace.MinFree}
			}
			return w.space, nil
		},
		prepareLayer: func(req *rwlayer.Layers, from string) (Pending, error) {
			w.layers = *req
			if err := w.call(fmt.Sprintf("prepare %s keep=%d from %s", req.Name, req.Keep, from)); err != nil {
				return nil, err
			}
			// The layer is a snapshot of the image, which the new root
			// stands for.
			p := filepath.Join(req.Top, req.Name+".dockroot-tmp")
			mustDo(t, os.RemoveAll(p)) // a fake commit leaves it behind
			mustDo(t, os.MkdirAll(p, 0o755))
			mustDo(t, copyTree(w.env.NewRoot, p))
			w.pending = &fakePending{w: w, path: p}
			return w.pending, nil
		},
		applyTop: func(newRoot, src string) (toplayer.Summary, error) {
			return toplayer.Summary{Files: 2}, w.call("apply " + w.rel(src) + " -> " + w.rel(newRoot))
		},
		subvolID: func(string) (uint64, error) { return 300, nil },
		writeRecord: func(path string, rec *bootrecord.Record) error {
			w.record = rec
			return w.call("record " + w.rel(path))
		},
		switchRoot: func(newRoot, init string, args []string) error {
			return w.call("switch_root " + w.rel(newRoot) + " " + strings.Join(append([]string{init}, args...), " "))
		},
		now: fakeClock(7 * time.Millisecond),
	}
	w.fx.install(w.env)
	// The real hibernation guard, over a fake /sys/power/resume (absent:
	// the kernel reports no resume device) and fake devices.
	w.env.Hibernation = &resume.Prober{
		SysPowerResume: filepath.Join(dir, "sys/power/resume"),
		Find: func(spec string) (string, error) {
			if err := w.call("find " + spec); err != nil {
				return "", err
			}
			return w.resumeDev, nil
		},
		Signature: func(dev string, _ int64) (bool, string, error) {
			return w.hibernated != "", w.hibernated, w.call("probe " + dev)
		},
	}
	// The mounted image: /sbin/init is systemd through a symlink.
	tree(t, w.env.NewRoot, "lib/systemd/systemd*", "sbin/init -> /lib/systemd/systemd")
	return w
}

// copyTree copies the directories, regular files and symlinks under src
// into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, fi.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, data, fi.Mode().Perm())
		}
	})
}

type fakePending struct {
	w            *world
	path         string
	metadataOnly bool
}

func (p *fakePending) Path() string  { return p.path }
func (p *fakePending) MetadataOnly() { p.metadataOnly = true }
func (p *fakePending) Commit() (*rwlayer.CreateResult, error) {
	if err := p.w.call("commit"); err != nil {
		return nil, err
	}
	return &rwlayer.CreateResult{Path: p.path, SubvolID: 260, Rotated: []string{"rw -> rw.prev.1"}}, nil
}
func (p *fakePending) Abort() error { return p.w.call("abort") }

func (w *world) call(name string) error {
	w.calls = append(w.calls, name)
	for k, err := range w.fail {
		if strings.HasPrefix(name, k) {
			return err
		}
	}
	return nil
}

// rel shortens a temporary path to what it stands for.
func (w *world) rel(p string) string {
	if r, err := filepath.Rel(w.base, p); err == nil && !strings.HasPrefix(r, "..") {
		return "/" + r
	}
	return p
}

func (w *world) has(call string) bool {
	for _, c := range w.calls {
		if c == call {
			return true
		}
	}
	return false
}

func (w *world) hasPrefix(prefix string) bool {
	for _, c := range w.calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func TestBootSequence(t *testing.T) {
	w := newWorld(t, baseCmdline)
	if err := Boot(w.env); err != nil {
		t.Fatalf("Boot: %v\n%s", err, w.log)
	}
	want := []string{
		"pseudo",
		"cmdline",
		"config",
		"modules /etc/dockroot/modules.list",
		"wait root LABEL=linux",
		"mount /dev/vda /run/dockroot/top btrfs subvolid=5,compress=zstd",
		"store auto var/lib/docker",
		"resolve web:1",
		"freespace",
		"prepare rw keep=1 from var/lib/docker/btrfs/subvolumes/c1",
		"apply /run/dockroot/top/top -> /run/dockroot/top/rw.dockroot-tmp",
		"commit",
		"mount /dev/vda /newroot btrfs subvol=rw,subvolid=260,compress=zstd",
		"record /run/dockroot/boot.json",
		"umount /run/dockroot/top",
		"switch_root /newroot /sbin/init --log-level=info",
	}
	if got := strings.Join(w.calls, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\n\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	for _, line := range []string{
		"[1/17] mount the pseudo filesystems: starting",
		"[4/17] wait for the root device: starting (LABEL=linux)",
		"[4/17] wait for the root device: done in ",
		"[5/17] check for a hibernation image: skipped: no resume device",
		"[7/17] choose the rw layer: done in ",
		"[9/17] count the boot (optional): done in ",
		"attempt 1 of 3",
		"[10/17] check the free space: done in ",
		"10.0 GiB free of 20.0 GiB",
		"[11/17] find the top layer: done in ",
		"[13/17] apply the top layer: done in ",
		"[14/17] commit the rw layer: starting (/tmp/",
		"[14/17] commit the rw layer: done in ",
		"committed rw (subvolume 260)",
		"[17/17] switch to the new root: starting (/sbin/init --log-level=info)",
	} {
		if w.log.find(line) == "" {
			t.Errorf("log lacks %q:\n%s", line, w.log)
		}
	}

	r := w.record
	if r == nil {
		t.Fatal("no boot record written")
	}
	if r.Ref != w.image.Ref || r.ImageID != w.image.ID || r.ChainID != w.image.ChainID || r.ImageSubvolume != w.image.Subvolume || r.ImageStore != w.image.Store {
		t.Errorf("record image = %q %q %q %q %q", r.Ref, r.ImageID, r.ChainID, r.ImageSubvolume, r.ImageStore)
	}
	if r.Layer.Subvolume != "rw" || r.Layer.SubvolID != 260 || !r.Layer.Fresh || len(r.Layer.Rotated) != 1 ||
		r.Layer.Image != w.image.ID || r.LayerMode != "new" || r.RootDevicePath != "/dev/vda" {
		t.Errorf("record layer = %+v", r.Layer)
	}
	if r.Toplayer == nil || r.Toplayer.Path != "top" || r.Toplayer.Summary.Files != 2 || !strings.Contains(r.Toplayer.Device, "/dev/vda") {
		t.Errorf("record toplayer = %+v", r.Toplayer)
	}
	if r.Fallback != nil || r.Hibernation != nil || r.Version != "v0-test" || r.Cmdline != baseCmdline || r.ReadOnly {
		t.Errorf("record = %+v", r)
	}
	if strings.Join(r.Init, " ") != "/sbin/init --log-level=info" {
		t.Errorf("record init = %q", r.Init)
	}
	// Steps 1-15 are timed in the record; it is written in step 16.
	if len(r.Steps) != 15 || r.Steps[0].Step != "pseudo-fs" || r.Steps[13].Step != "commit" || r.Steps[14].Step != "new-root" {
		t.Errorf("record steps = %+v", r.Steps)
	}
	for _, s := range r.Steps {
		if want := map[bool]string{true: bootrecord.ResultSkipped, false: bootrecord.ResultOK}[s.Step == "hibernation"]; s.Result != want {
			t.Errorf("step %s: %s, want %s", s.Step, s.Result, want)
		}
	}
	if bc := r.BootCount; bc == nil || bc.Attempt != 1 || bc.Tries != 3 || bc.FellBack || bc.Requested.ID != w.image.ID {
		t.Errorf("record boot count = %+v", r.BootCount)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("record does not encode: %v", err)
	}
}

// The ancestor's kernel command line names no image: it comes from the
// baked /etc/docker-btrfs.json, and the log says so.
func TestBootImageFromAncestorFile(t *testing.T) {
	const ancestor = "root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer=LABEL=linux toplayer_path=boot_docker"
	files := fstest.MapFS{"etc/docker-btrfs.json": {Data: []byte(`{"docker_image": "desk", "docker_tag": "1"}`)}}
	for _, c := range []struct{ cmdline, note, ref string }{
		{ancestor, "image=desk:1 (from /etc/docker-btrfs.json) onfail=shell", "resolve desk:1"},
		{ancestor + " docker_image=desk:2", "image=desk:2 onfail=shell", "resolve desk:2"},
	} {
		w := newWorld(t, c.cmdline)
		w.fx.loadConfig = func(cmdline string) (*config.Config, error) { return config.Load(cmdline, files) }
		if err := Boot(w.env); err != nil {
			t.Fatalf("%s: Boot: %v\n%s", c.cmdline, err, w.log)
		}
		if w.log.find("[2/17] read the configuration: done in ") == "" || w.log.find(c.note) == "" || !slices.Contains(w.calls, c.ref) {
			t.Errorf("%s: want the configuration step to note %q and %q; calls %q, log:\n%s", c.cmdline, c.note, c.ref, w.calls, w.log)
		}
	}
}

// A failure anywhere after the layer is prepared and before it is
// committed aborts the new layer, never commits, never switches.
// TestBootLogsTopLayerWarnings: the top layer's warnings (an account
// database's id conflicts, a narrowed shadow mode) reach the console, and
// boot.json through the summary.
func TestBootLogsTopLayerWarnings(t *testing.T) {
	w := newWorld(t, baseCmdline)
	w.fx.applyTop = func(newRoot, src string) (toplayer.Summary, error) {
		return toplayer.Summary{Files: 1, Warnings: []string{"etc/passwd: alice has uid 1000, which the image gives to bob"}}, nil
	}
	if err := Boot(w.env); err != nil {
		t.Fatalf("Boot: %v\n%s", err, w.log)
	}
	if w.log.find("top layer: etc/passwd: alice has uid 1000, which the image gives to bob") == "" {
		t.Errorf("the warning is not on the console:\n%s", w.log)
	}
	if w.record == nil || w.record.Toplayer == nil || len(w.record.Toplayer.Summary.Warnings) != 1 {
		t.Errorf("boot.json's top layer lacks the warning: %+v", w.record)
	}
}

// TestBootAdoptsOnlyTheImagesSnapshot: the rw layer may adopt the
// ancestor hook's NAME only as a snapshot of the image being booted
// (issue 17 item 1), and dockroot.adopt=0 adopts nothing.
func TestBootAdoptsOnlyTheImagesSnapshot(t *testing.T) {
	for _, tc := range []struct {
		cmdline, want string
	}{
		{baseCmdline, "var/lib/docker/btrfs/subvolumes/"},
		{strings.Replace(baseCmdline, " -- ", " dockroot.adopt=0 -- ", 1), ""},
	} {
		w := newWorld(t, tc.cmdline)
		if err := Boot(w.env); err != nil {
			t.Fatalf("%s: Boot = %v", tc.cmdline, err)
		}
		if w.layers.Name == "" {
			t.Fatalf("%s: no layer was prepared: %v", tc.cmdline, w.calls)
		}
		if got := w.layers.AdoptFrom; tc.want == "" && got != "" || tc.want != "" && !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: AdoptFrom = %q, want %q…", tc.cmdline, got, tc.want)
		}
	}
}

func TestBootFailureBeforeCommitAborts(t *testing.T) {
	for _, tc := range []struct{ failAt, step string }{{"apply", "top-layer"}, {"commit", "commit"}} {
		failAt := tc.failAt
		t.Run(failAt, func(t *testing.T) {
			w := newWorld(t, baseCmdline)
			w.fail[failAt] = errors.New("disk full")
			err := Boot(w.env)
			var be *BootError
			if !errors.As(err, &be) || be.Step != tc.step || be.OnFail != config.OnFailShell {
				t.Fatalf("Boot = %#v, want a BootError in %s with onfail shell", err, tc.step)
			}
			if !strings.Contains(err.Error(), "disk full") {
				t.Errorf("error %q hides the cause", err)
			}
			if !w.has("abort") {
				t.Errorf("the pending layer was not aborted: %v", w.calls)
			}
			if failAt == "apply" && w.has("commit") {
				t.Errorf("committed after a failed apply: %v", w.calls)
			}
			if w.hasPrefix("switch_root") || w.hasPrefix("record") || w.hasPrefix("mount /dev/vda /newroot") {
				t.Errorf("went on after the failure: %v", w.calls)
			}
		})
	}
}

func TestBootStopsAtEachFailure(t *testing.T) {
	for _, tc := range []struct {
		fail, step string
		prepared   bool
	}{
		{"pseudo", "pseudo-fs", false},
		{"cmdline", "config", false},
		{"wait root", "root-device", false},
		{"mount /dev/vda /run/dockroot/top", "top-level", false},
		{"store", "image", false},
		{"resolve", "image", false},
		{"freespace", "free-space", false},
		{"prepare", "rw-layer", false},
		{"mount /dev/vda /newroot", "new-root", true},
		{"record", "record", true},
		{"switch_root", "switch-root", true},
	} {
		t.Run(tc.step+"/"+tc.fail, func(t *testing.T) {
			w := newWorld(t, withParams("dockroot.onfail=reboot"))
			w.fail[tc.fail] = errors.New("injected")
			err := Boot(w.env)
			var be *BootError
			if !errors.As(err, &be) || be.Step != tc.step {
				t.Fatalf("Boot = %v, want a failure in %s", err, tc.step)
			}
			wantPolicy := config.OnFailReboot
			if tc.step == "pseudo-fs" || tc.step == "config" {
				wantPolicy = config.OnFailShell // the config was not read yet
			}
			if be.OnFail != wantPolicy {
				t.Errorf("policy %q, want %q", be.OnFail, wantPolicy)
			}
			if w.has("abort") {
				t.Errorf("aborted a layer (committed: %v): %v", tc.prepared, w.calls)
			}
			if w.calls[len(w.calls)-1] != w.callFor(tc.fail) {
				t.Errorf("went on after %q: %v", tc.fail, w.calls)
			}
		})
	}
}

// callFor returns the recorded call that matched an injected failure.
func (w *world) callFor(prefix string) string {
	for _, c := range w.calls {
		if strings.HasPrefix(c, prefix) {
			return c
		}
	}
	return ""
}

func TestBootConfigErrorKeepsParsedPolicy(t *testing.T) {
	w := newWorld(t, "rootflags=subvol=rw docker_image=web:1 dockroot.onfail=halt dockroot.keep=lots")
	err := Boot(w.env)
	var be *BootError
	if !errors.As(err, &be) || be.Step != "config" {
		t.Fatalf("Boot = %v, want a config failure", err)
	}
	if be.OnFail != config.OnFailHalt {
		t.Errorf("policy %q, want halt from the command line despite the other errors", be.OnFail)
	}
	if !strings.Contains(err.Error(), "dockroot.keep") {
		t.Errorf("error does not name the bad key: %v", err)
	}
	if w.hasPrefix("wait") {
		t.Errorf("went on after a bad config: %v", w.calls)
	}
}

func TestBootOptionalModules(t *testing.T) {
	for _, tc := range []struct {
		err  error
		line string
	}{
		{os.ErrNotExist, "load kernel modules (optional): skipped: /etc/dockroot/modules.list does not exist"},
		{errors.New("finit_module nvme: exec format error"), "load kernel modules (optional): failed after"},
	} {
		w := newWorld(t, baseCmdline)
		w.fail["modules"] = tc.err
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot with modules error %v: %v", tc.err, err)
		}
		if w.log.find(tc.line) == "" {
			t.Errorf("log lacks %q:\n%s", tc.line, w.log)
		}
		if !w.hasPrefix("switch_root") {
			t.Errorf("did not boot: %v", w.calls)
		}
	}
}

func TestBootToplayerDevice(t *testing.T) {
	t.Run("second disk", func(t *testing.T) {
		w := newWorld(t, withParams("toplayer=LABEL=top toplayerflags=noatime"))
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		for _, c := range []string{
			"wait toplayer LABEL=top",
			"mount /dev/vdb /run/dockroot/toplayer ext4  ro",
			"apply /run/dockroot/toplayer/top -> /run/dockroot/top/rw.dockroot-tmp",
			"umount /run/dockroot/toplayer",
			"umount /run/dockroot/top",
		} {
			if !w.has(c) {
				t.Errorf("no call %q in\n%s", c, strings.Join(w.calls, "\n"))
			}
		}
		if !strings.Contains(w.record.Toplayer.Device, "/dev/vdb (LABEL=top)") {
			t.Errorf("record toplayer device = %q", w.record.Toplayer.Device)
		}
	})
	t.Run("same disk by another name", func(t *testing.T) {
		w := newWorld(t, withParams("toplayer=UUID=1234"))
		w.topDev = w.rootDev
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v", err)
		}
		if w.hasPrefix("mount /dev/vda /run/dockroot/toplayer") || !w.has("apply /run/dockroot/top/top -> /run/dockroot/top/rw.dockroot-tmp") {
			t.Errorf("calls:\n%s", strings.Join(w.calls, "\n"))
		}
	})
	t.Run("missing", func(t *testing.T) {
		w := newWorld(t, withParams("toplayer=LABEL=top"))
		w.fail["wait toplayer"] = errors.New("toplayer device LABEL=top not found")
		// Found before the layer is made: nothing to abort.
		err := Boot(w.env)
		var be *BootError
		if !errors.As(err, &be) || be.Step != "top-layer-source" || w.hasPrefix("prepare") || w.has("commit") {
			t.Errorf("Boot = %v, calls %v: want a failure at top-layer-source, no layer prepared", err, w.calls)
		}
	})
	t.Run("no top layer", func(t *testing.T) {
		w := newWorld(t, strings.Replace(baseCmdline, " toplayer_path=top", "", 1))
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v", err)
		}
		if w.hasPrefix("apply") || !w.has("commit") || w.record.Toplayer != nil {
			t.Errorf("calls %v, record toplayer %+v", w.calls, w.record.Toplayer)
		}
	})
}

func TestBootFallbackToPrevious(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     string
		existing []string // layers under the top level
		want     string   // layer booted, "" for a boot failure
		aborted  bool
	}{
		{"image missing, current layer", "resolve", []string{"rw/", "rw.prev.1/"}, "rw", false},
		{"apply fails", "apply", []string{"rw/"}, "rw", true},
		{"prepare fails, only prev.1", "prepare", []string{"rw.prev.1/"}, "rw.prev.1", false},
		{"nothing to fall back to", "resolve", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, withParams("dockroot.onfail=previous"))
			tree(t, w.env.TopDir, tc.existing...)
			w.fail[tc.fail] = errors.New("injected " + tc.fail)
			err := Boot(w.env)
			if tc.aborted != w.has("abort") {
				t.Errorf("aborted = %v, want %v: %v", w.has("abort"), tc.aborted, w.calls)
			}
			if w.has("commit") {
				t.Errorf("committed during a fallback: %v", w.calls)
			}
			if tc.want == "" {
				var be *BootError
				if !errors.As(err, &be) || be.OnFail != config.OnFailPrevious {
					t.Fatalf("Boot = %v, want a BootError", err)
				}
				if w.hasPrefix("switch_root") {
					t.Errorf("switched root with nothing to boot: %v", w.calls)
				}
				return
			}
			if err != nil {
				t.Fatalf("Boot: %v\n%s", err, w.log)
			}
			if !w.has("mount /dev/vda /newroot btrfs subvol="+tc.want+",compress=zstd") || !w.hasPrefix("switch_root") {
				t.Errorf("calls:\n%s", strings.Join(w.calls, "\n"))
			}
			r := w.record
			if r.Fallback == nil || r.Fallback.Layer != tc.want || !strings.Contains(r.Fallback.Reason, "injected") {
				t.Errorf("record fallback = %+v", r.Fallback)
			}
			if r.Layer.Fresh || r.Layer.Subvolume != tc.want || r.Layer.SubvolID != 300 || r.ImageID != "" {
				t.Errorf("record layer = %+v, image %q: a fallback must not claim a fresh layer of the image", r.Layer, r.ImageID)
			}
			if w.log.find("ERR", "!!! dockroot.onfail=previous", tc.want, "AS IT WAS LEFT") == "" {
				t.Errorf("the fallback is not loud:\n%s", w.log)
			}
			if r.LayerMode != map[bool]string{true: "current", false: "previous"}[tc.want == "rw"] {
				t.Errorf("record layer mode = %q", r.LayerMode)
			}
			if w.log.find("skipped: booting "+tc.want+" as it was left (dockroot.onfail=previous") == "" && tc.fail != "apply" {
				t.Errorf("the fresh-layer steps are not shown as skipped:\n%s", w.log)
			}
		})
	}
}

func TestBootInitChoice(t *testing.T) {
	t.Run("kernel defaults", func(t *testing.T) {
		w := newWorld(t, baseCmdline)
		mustDo(t, os.RemoveAll(filepath.Join(w.env.NewRoot, "sbin")))
		tree(t, w.env.NewRoot, "bin/busybox*", "bin/init -> busybox")
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v", err)
		}
		if !w.has("switch_root /newroot /bin/init --log-level=info") {
			t.Errorf("calls: %v", w.calls)
		}
	})
	// A fresh layer without the init is found before it is committed:
	// aborted, never committed (which would rotate the previous layer and,
	// with keep=0, delete it), the error names the init and the fix.
	for _, tc := range []struct {
		name, params string
		image        []string // the image's tree, replacing the default
		want         []string // parts of the error
	}{
		{"init= missing", "init=/usr/bin/nothere", nil,
			[]string{"init /usr/bin/nothere in the new root", "no such file or directory", "set init=", "add an init to the image", "rw is still the layer the last boot used"}},
		{"init= missing, keep=0", "init=/usr/bin/nothere dockroot.keep=0", nil,
			[]string{"init /usr/bin/nothere in the new root", "not committed"}},
		{"image without any init", "", []string{"etc/os-release"},
			[]string{"the image has none of /sbin/init, /etc/init, /bin/init, /bin/sh", "set init=", "add an init to the image"}},
		{"init= not executable", "init=/bin/tool", []string{"bin/tool"},
			[]string{"init /bin/tool in the new root", "is not an executable file"}},
		{"init= a symlink out of the image", "init=/sbin/init", []string{"sbin/init -> ../../../../../../bin/true"},
			[]string{"init /sbin/init in the new root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, withParams(tc.params))
			if tc.image != nil {
				mustDo(t, os.RemoveAll(w.env.NewRoot))
				tree(t, w.env.NewRoot, tc.image...)
			}
			err := Boot(w.env)
			var be *BootError
			if !errors.As(err, &be) || be.Step != "top-layer" {
				t.Fatalf("Boot = %v, want a top-layer failure (before the commit)", err)
			}
			for _, part := range tc.want {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q lacks %q", err, part)
				}
			}
			if w.has("commit") || !w.has("abort") {
				t.Errorf("calls %v: want the layer aborted, never committed", w.calls)
			}
			if w.hasPrefix("mount /dev/vda /newroot") || w.hasPrefix("switch_root") {
				t.Errorf("went on after the failure: %v", w.calls)
			}
		})
	}
	t.Run("a commit skips the data flush only when nothing was copied", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			cmdline  string
			copied   int64
			metadata bool
		}{
			{"all reflinked", baseCmdline, 0, true},
			{"bytes copied from another device", baseCmdline, 4096, false},
			{"no top layer", strings.Replace(baseCmdline, "toplayer_path=top", "toplayer_path=", 1), 0, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := newWorld(t, tc.cmdline)
				w.fx.applyTop = func(newRoot, src string) (toplayer.Summary, error) {
					return toplayer.Summary{Files: 1, Bytes: 4096, Copied: tc.copied}, w.call("apply")
				}
				if err := Boot(w.env); err != nil {
					t.Fatalf("Boot: %v\n%s", err, w.log)
				}
				if !w.has("commit") || w.pending.metadataOnly != tc.metadata {
					t.Errorf("calls %v, metadata only %v: want a commit, metadata only %v", w.calls, w.pending.metadataOnly, tc.metadata)
				}
			})
		}
	})
	t.Run("the top layer adds the init", func(t *testing.T) {
		w := newWorld(t, withParams("init=/usr/local/sbin/machine-init"))
		w.fx.applyTop = func(newRoot, src string) (toplayer.Summary, error) {
			tree(t, newRoot, "usr/local/sbin/machine-init*")
			return toplayer.Summary{Files: 1}, w.call("apply")
		}
		// The mounted layer is the committed one, top layer included.
		tree(t, w.env.NewRoot, "usr/local/sbin/machine-init*")
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		if !w.has("switch_root /newroot /usr/local/sbin/machine-init --log-level=info") {
			t.Errorf("calls: %v", w.calls)
		}
	})
	t.Run("an existing layer's init is checked when it is mounted", func(t *testing.T) {
		w := newWorld(t, withParams("dockroot.layer=current init=/usr/bin/nothere"))
		tree(t, w.env.TopDir, "rw/")
		err := Boot(w.env)
		var be *BootError
		if !errors.As(err, &be) || be.Step != "new-root" || !strings.Contains(err.Error(), "init /usr/bin/nothere") {
			t.Fatalf("Boot = %v, want a new-root failure naming the init", err)
		}
	})
	t.Run("kernel argv wins", func(t *testing.T) {
		w := newWorld(t, baseCmdline)
		w.env.KernelInitArgs = []string{"single"}
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v", err)
		}
		if !w.has("switch_root /newroot /sbin/init single") {
			t.Errorf("calls: %v", w.calls)
		}
	})
}

func TestBootReadOnlyAndNotBtrfs(t *testing.T) {
	w := newWorld(t, strings.Replace(baseCmdline, " rw ", " ro ", 1))
	if err := Boot(w.env); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	if !w.has("mount /dev/vda /newroot btrfs subvol=rw,subvolid=260,compress=zstd ro") ||
		!w.has("mount /dev/vda /run/dockroot/top btrfs subvolid=5,compress=zstd") {
		t.Errorf("ro: the new root must be read-only and the top level not: %v", w.calls)
	}

	w = newWorld(t, baseCmdline)
	w.rootDev.FSType = "ext4"
	err := Boot(w.env)
	if err == nil || !strings.Contains(err.Error(), "not btrfs") || w.hasPrefix("mount") {
		t.Errorf("ext4 root: Boot = %v, calls %v", err, w.calls)
	}
}

func TestBootRecoversPanicInStep(t *testing.T) {
	w := newWorld(t, baseCmdline)
	w.fx.applyTop = func(string, string) (toplayer.Summary, error) { panic("bug") }
	err := Boot(w.env)
	var be *BootError
	if !errors.As(err, &be) || be.Step != "top-layer" || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("Boot = %v", err)
	}
	if !w.has("abort") {
		t.Errorf("a panic after prepare did not abort the layer: %v", w.calls)
	}
}

// A panic outside the steps (here in the AfterStep seam, between two
// steps) is not recovered by Boot: it goes up to dockroot-init's main,
// whose recover reports it and follows dockroot.onfail=. On its way the
// layer this boot prepared is removed, and the policy read so far is
// known to main through Env.OnFail.
func TestBootPanicOutsideStepsReachesMain(t *testing.T) {
	w := newWorld(t, withParams("dockroot.onfail=reboot"))
	w.env.AfterStep = func(step string) error {
		if step == "rw-layer" {
			panic("bug between steps")
		}
		return nil
	}
	var p any
	func() {
		defer func() { p = recover() }()
		Boot(w.env)
	}()
	if p != "bug between steps" {
		t.Fatalf("recovered %v, want the panic to leave Boot", p)
	}
	if !w.has("abort") {
		t.Errorf("the prepared layer was not aborted on the panic's way out: %v", w.calls)
	}
	if got := w.env.OnFail(); got != config.OnFailReboot {
		t.Errorf("Env.OnFail = %q, want reboot", got)
	}
}

// A device that refuses a read-write mount: the message explains why and
// what to do; dockroot.layer=current|previous with ro boots the existing
// layer from a read-only top level, since nothing is written then.
func TestBootReadOnlyDevice(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		errno        error // the read-write mount's error
		roErr        error // the read-only retry's error
		booted       string
		want         []string // parts of the error
	}{
		{"fresh layer: explained", "", unix.EACCES, nil, "",
			[]string{"permission denied", "the device is read-only", "blockdev --getro /dev/vda", "dmesg", "btrfs check --readonly /dev/vda", `"dockroot.layer=current ro"`}},
		{"EROFS: explained", "", unix.EROFS, nil, "",
			[]string{"read-only file system", "forced it read-only after an error"}},
		{"layer=current without ro: add ro", "dockroot.layer=current", unix.EACCES, nil, "",
			[]string{"dockroot.layer=current boots the existing layer without writing only when it is mounted read-only too", `add "ro"`}},
		{"layer=current ro: boots read-only", "dockroot.layer=current ro", unix.EACCES, nil, "rw", nil},
		{"layer=previous ro: boots read-only", "dockroot.layer=previous ro", unix.EROFS, nil, "rw.prev.1", nil},
		{"layer=current ro, read-only mount fails too", "dockroot.layer=current ro", unix.EACCES, unix.EINVAL, "",
			[]string{"read-only as well: invalid argument", "btrfs check --readonly /dev/vda"}},
		{"another mount error: no read-only advice", "", unix.EINVAL, nil, "",
			[]string{"invalid argument"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, withParams(tc.params))
			tree(t, w.env.TopDir, "rw/", "rw.prev.1/")
			mount := w.fx.mount
			var topMounts []string
			w.fx.mount = func(src, dst, fstype string, flags uintptr, data string) error {
				if dst == w.env.TopDir {
					ro := flags&unix.MS_RDONLY != 0
					topMounts = append(topMounts, map[bool]string{true: "ro", false: "rw"}[ro])
					if !ro {
						return tc.errno
					}
					if tc.roErr != nil {
						return tc.roErr
					}
				}
				return mount(src, dst, fstype, flags, data)
			}
			err := Boot(w.env)
			if tc.booted == "" {
				var be *BootError
				if !errors.As(err, &be) || be.Step != "top-level" {
					t.Fatalf("Boot = %v, want a top-level failure", err)
				}
				for _, part := range tc.want {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q lacks %q", err, part)
					}
				}
				if tc.errno == unix.EINVAL && strings.Contains(err.Error(), "the device is read-only") {
					t.Errorf("error %q blames a read-only device", err)
				}
				wantMounts := "rw"
				if tc.roErr != nil {
					wantMounts = "rw ro"
				}
				if got := strings.Join(topMounts, " "); got != wantMounts {
					t.Errorf("top-level mounts %q, want %q", got, wantMounts)
				}
				return
			}
			if err != nil {
				t.Fatalf("Boot: %v\n%s", err, w.log)
			}
			if got := strings.Join(topMounts, " "); got != "rw ro" {
				t.Errorf("top-level mounts %q, want a read-write try, then read-only", got)
			}
			if !w.has("mount /dev/vda /newroot btrfs subvol=" + tc.booted + ",compress=zstd ro") {
				t.Errorf("the layer was not mounted read-only: %v", w.calls)
			}
			if w.hasPrefix("prepare") || w.hasPrefix("commit") || w.hasPrefix("freespace") {
				t.Errorf("wrote to a read-only filesystem: %v", w.calls)
			}
			if w.log.find("WARN", "the device is read-only, so the top level is mounted read-only") == "" {
				t.Errorf("the read-only mount is not said:\n%s", w.log)
			}
		})
	}
}

// Env.AfterStep fails the boot at a step boundary as the step's own
// failure would: the prepared layer is aborted, the error names the step;
// an optional step's boundary failure is logged and the boot goes on.
func TestBootAfterStep(t *testing.T) {
	for _, tc := range []struct {
		step     string
		failStep string // "" when the boot goes on
		aborted  bool
	}{
		{"config", "config", false},
		{"rw-layer", "rw-layer", true},
		{"top-layer", "top-layer", true},
		{"commit", "commit", false}, // committed by then: nothing to abort
		{"boot-count", "", false},
		{"switch-root", "switch-root", false},
	} {
		t.Run(tc.step, func(t *testing.T) {
			w := newWorld(t, baseCmdline)
			var seen []string
			w.env.AfterStep = func(step string) error {
				seen = append(seen, step)
				if step == tc.step {
					return errors.New("injected after " + step)
				}
				return nil
			}
			err := Boot(w.env)
			if tc.failStep == "" {
				if err != nil {
					t.Fatalf("Boot = %v; an optional step's failure must not stop the boot", err)
				}
				if w.log.find("ERR", "failed after the step: injected after "+tc.step) == "" {
					t.Errorf("the failure is not logged:\n%s", w.log)
				}
				return
			}
			var be *BootError
			if !errors.As(err, &be) || be.Step != tc.failStep || !strings.Contains(err.Error(), "injected after "+tc.step) {
				t.Fatalf("Boot = %v, want a failure at %s", err, tc.failStep)
			}
			if seen[len(seen)-1] != tc.step {
				t.Errorf("AfterStep ran for %v after the failure", seen)
			}
			if w.has("abort") != tc.aborted {
				t.Errorf("aborted = %v, want %v: %v", w.has("abort"), tc.aborted, w.calls)
			}
		})
	}
}
