package matrix

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
	"golang.org/x/sys/unix"
)

// The fixture disk every case starts from. It is a real btrfs that a
// private dockerd filled (testenv fixtures plus the matrix's own images),
// booted once by the real hook so that NAME holds an owned layer with a
// marker file in it: the layer that must never be lost.
const (
	diskSizeMB   = 512
	diskLabel    = "dockroot-matrix"
	layerName    = "docker_rwlayer"
	dockerPath   = "var/lib/docker"
	toplayerPath = "machine"
	markerFile   = "MATRIX-PREVIOUS-LAYER"
	markerText   = "the layer the last boot used\n"
	machineHost  = "matrix-machine\n"
	// baseCmdline is what every case's cmdline is appended to; the kernel
	// parser lets the last of a repeated key win.
	baseCmdline = "root={root} rootflags=subvol=" + layerName + " rw docker_image=desk:1 toplayer_path=" + toplayerPath + " dockroot.keep=1"
)

// Images the matrix builds next to the testenv fixtures.
const (
	imageNoInit = "noinit:1" // the base image without /sbin/init and /bin/sh: no init the kernel would try
	imageEscape = "escape:1" // etc/outside-abs and etc/outside-rel are symlinks to a host directory
	// imageUsrMerge is a merged-/usr image: lib is a symlink to usr/lib.
	imageUsrMerge = "usrmerge:1"
	// containerName is a container created from desk:1, so the store holds
	// a container layer and its -init layer, as a used Docker store does.
	containerName = "matrix-container"
)

// fixture is the pristine disk image and what the cases need to know
// about it.
type fixture struct {
	image   string // pristine disk image; cases boot copies of it
	fix     testenv.Fixtures
	outside string // host directory the escape image's symlinks name
	prevID  uint64 // subvolume ID of NAME on the pristine disk
	images  map[string]*snapshot.Image
	// vars are the cmdline placeholders ({root} is per disk).
	vars map[string]string
}

var (
	work        string // removed by TestMain
	fixtureOnce sync.Once
	fixtureVal  *fixture
	fixtureErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dockroot-matrix-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	work = dir
	code := m.Run()
	os.RemoveAll(work)
	os.Exit(code)
}

// pristine builds the fixture disk once per run and fails t if that
// failed.
func pristine(t *testing.T) *fixture {
	t.Helper()
	testenv.RequireRoot(t, "dockerd", "docker", "btrfs", "btrfstune", "mkfs.ext4", "blockdev")
	fixtureOnce.Do(func() {
		start := time.Now()
		fixtureVal, fixtureErr = buildFixture(filepath.Join(work, "fixture"))
		if fixtureErr == nil {
			t.Logf("fixture disk ready in %v", time.Since(start).Round(time.Millisecond))
		}
	})
	if fixtureErr != nil {
		t.Fatalf("fixture disk: %v", fixtureErr)
	}
	return fixtureVal
}

// buildFixture makes the pristine disk. Everything it attaches, mounts or
// starts is released before it returns, also on failure.
func buildFixture(dir string) (_ *fixture, err error) {
	f := &fixture{image: filepath.Join(dir, "pristine.img"), outside: filepath.Join(dir, "outside"), images: map[string]*snapshot.Image{}}
	if err := os.MkdirAll(f.outside, 0o755); err != nil {
		return nil, err
	}
	if err := vmkit.MakeImage(f.image, diskSizeMB, "btrfs", diskLabel, ""); err != nil {
		return nil, err
	}
	m, err := vmkit.MountImage(f.image, filepath.Join(dir, "mnt"), "btrfs")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := m.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	d, err := testenv.StartDockerdProcess(filepath.Join(m.Dir, dockerPath), filepath.Join(dir, "dockerd"))
	if err != nil {
		return nil, err
	}
	f.fix, err = d.MakeFixtures(filepath.Join(dir, "build"))
	if err == nil {
		err = buildMatrixImages(d, filepath.Join(dir, "build"), f.fix.Base, f.outside)
	}
	var containerLayer string
	if err == nil {
		containerLayer, err = createContainer(d, f.fix.Desk1)
	}
	// The boot reads the store offline, as PID 1 does.
	if serr := d.Stop(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("%w\ndockerd log:\n%s", err, d.LogTail(20))
	}

	if err := vmkit.WriteFiles(m.Dir, []vmkit.File{{Path: toplayerPath + "/etc/hostname", Data: machineHost}}); err != nil {
		return nil, err
	}
	store := graphdriver.New(m.Dir, dockerPath)
	for _, ref := range []string{f.fix.Desk1, f.fix.Desk2, imageNoInit, imageEscape, imageUsrMerge} {
		img, err := store.Resolve(ref)
		if err != nil {
			return nil, err
		}
		f.images[ref] = img
	}
	f.vars = map[string]string{
		"{digested}":     f.fix.Digested,
		"{digest-repo}":  strings.SplitN(f.fix.Digested, "@", 2)[0],
		"{desk1-id}":     f.fix.IDs[f.fix.Desk1],
		"{desk2-id}":     f.fix.IDs[f.fix.Desk2],
		"{desk1-subvol}": f.images[f.fix.Desk1].Subvolume,
		// The container's own (writable) layer subvolume.
		"{container-layer}": dockerPath + "/btrfs/subvolumes/" + containerLayer,
	}

	// The first boot: NAME becomes an owned layer, and the marker stands
	// for everything the user did in the booted system.
	r := bootDisk(&Disk{Top: m.Dir, Loop: m.Loop, Root: m.Loop, F: f}, f.expand(baseCmdline, m.Loop), filepath.Join(dir, "boot"), nil)
	defer r.release()
	if r.Err != nil {
		return nil, fmt.Errorf("first boot of the fixture disk: %w\n%s", r.Err, r.Console)
	}
	if err := os.WriteFile(filepath.Join(m.Dir, layerName, markerFile), []byte(markerText), 0o644); err != nil {
		return nil, err
	}
	if f.prevID, err = btrfs.SubvolID(filepath.Join(m.Dir, layerName)); err != nil {
		return nil, err
	}
	return f, nil
}

// buildMatrixImages adds the images only the matrix needs.
func buildMatrixImages(d *testenv.Dockerd, dir, base, outside string) error {
	rel := strings.Repeat("../", 12) + strings.TrimPrefix(outside, "/")
	for ref, dockerfile := range map[string]string{
		imageNoInit: "FROM " + base + "\nRUN [\"/bin/busybox\", \"rm\", \"/sbin/init\", \"/bin/sh\"]\n",
		imageEscape: "FROM " + base + "\nRUN ln -s " + outside + " /etc/outside-abs && ln -s " + rel + " /etc/outside-rel && echo escape:1 > /etc/fixture-image\n",
		imageUsrMerge: "FROM " + base + "\nRUN rm -rf /lib && mkdir -p /usr/lib/x86_64-linux-gnu && echo libc > /usr/lib/x86_64-linux-gnu/libc.so.6 && " +
			"ln -s usr/lib /lib && echo usrmerge:1 > /etc/fixture-image\n",
	} {
		ctx := filepath.Join(dir, strings.NewReplacer(":", "-").Replace(ref))
		if err := vmkit.WriteFiles(ctx, []vmkit.File{{Path: "Dockerfile", Data: dockerfile}}); err != nil {
			return err
		}
		if _, err := d.Run(nil, "build", "--quiet", "--tag", ref, ctx); err != nil {
			return err
		}
	}
	return nil
}

// createContainer creates (does not start) a container from ref and
// returns the name of its writable layer's subvolume under btrfs/subvolumes
// (the graph driver's mount-id in layerdb/mounts/<container ID>).
func createContainer(d *testenv.Dockerd, ref string) (string, error) {
	out, err := d.Run(nil, "create", "--name", containerName, ref)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	mountID, err := os.ReadFile(filepath.Join(d.Root, "image/btrfs/layerdb/mounts", id, "mount-id"))
	if err != nil {
		return "", fmt.Errorf("container %s's layer: %w", id, err)
	}
	return strings.TrimSpace(string(mountID)), nil
}

// expand fills the cmdline placeholders.
func (f *fixture) expand(cmdline, root string) string {
	pairs := []string{"{root}", root}
	keys := make([]string, 0, len(f.vars))
	for k := range f.vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		pairs = append(pairs, k, f.vars[k])
	}
	return strings.NewReplacer(pairs...).Replace(cmdline)
}

// Disk is one case's copy of the fixture disk, attached and mounted at its
// top level (the test's own view; the boot mounts the device again).
type Disk struct {
	T    *testing.T
	Top  string // the btrfs top level, mounted
	Loop string
	Root string // what {root} becomes: Loop unless a mutation changed it
	F    *fixture
	m    *vmkit.Mount
	ro   bool
	// vars are placeholders a mutation adds for the cmdline.
	vars map[string]string
	// extraLayers are subvolumes outside the Docker store a mutation made
	// (the user's own), which must still be there after the boot.
	extraLayers []string
}

// newDisk copies the fixture disk for t and attaches it; cleanup detaches
// it (and whatever the boot left mounted below t's directories).
func newDisk(t *testing.T, f *fixture) *Disk {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := vmkit.CopyImage(f.image, img); err != nil {
		t.Fatal(err)
	}
	// A copy has the pristine disk's filesystem UUID. While another
	// filesystem with that UUID is still known to the kernel (the pristine
	// disk or an earlier case's copy, not yet fully released), mounting
	// this one can mount that one instead: btrfs finds filesystems by UUID.
	// A fresh UUID of its own (the metadata_uuid feature: one superblock
	// write) makes each case's disk its own filesystem.
	if err := run("btrfstune", "-m", img); err != nil {
		t.Fatal(err)
	}
	m, err := vmkit.MountImage(img, filepath.Join(dir, "top"), "btrfs")
	if err != nil {
		t.Fatal(err)
	}
	d := &Disk{T: t, Top: m.Dir, Loop: m.Loop, Root: m.Loop, F: f, m: m, vars: map[string]string{}}
	t.Cleanup(func() {
		if d.ro {
			_ = exec.Command("blockdev", "--setrw", d.Loop).Run()
		}
		if err := m.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return d
}

// path is p (relative to the top level) on the disk.
func (d *Disk) path(p string) string { return filepath.Join(d.Top, filepath.FromSlash(p)) }

// Subvol is one line of `btrfs subvolume list`.
type Subvol struct {
	ID   uint64
	Path string
}

// subvolumes lists every subvolume of the disk.
func (d *Disk) subvolumes() ([]Subvol, error) {
	return listSubvolumes(d.Top)
}

func listSubvolumes(top string) ([]Subvol, error) {
	out, err := exec.Command("btrfs", "subvolume", "list", top).Output()
	if err != nil {
		return nil, fmt.Errorf("btrfs subvolume list %s: %w", top, err)
	}
	var subs []Subvol
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		// "ID 256 gen 9 top level 5 path var/lib/docker/btrfs/subvolumes/…"
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] != "ID" {
			continue
		}
		id, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("btrfs subvolume list: %q: %w", sc.Text(), err)
		}
		_, p, _ := strings.Cut(sc.Text(), " path ")
		subs = append(subs, Subvol{ID: id, Path: strings.TrimPrefix(p, "<FS_TREE>/")})
	}
	return subs, sc.Err()
}

// layerSubvolumes are the subvolumes outside the Docker data root and the
// prepared bases (.dockroot/bases: read-only caches of image + top layer,
// replaced by their own rules): the layers and whatever is nested in them.
func layerSubvolumes(subs []Subvol) []Subvol {
	var out []Subvol
	for _, s := range subs {
		if !strings.HasPrefix(s.Path, dockerPath+"/") && !strings.HasPrefix(s.Path, layout.BasesDir+"/") {
			out = append(out, s)
		}
	}
	return out
}

// storeDigest sums the Docker data root's image metadata and the list of
// its subvolumes: the boot must never change either.
func (d *Disk) storeDigest() (string, error) {
	h := sha256.New()
	root := d.path(dockerPath + "/image")
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s %v\n", rel, e.Type())
		if e.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	subs, err := d.subvolumes()
	if err != nil {
		return "", err
	}
	for _, s := range subs {
		if strings.HasPrefix(s.Path, dockerPath+"/") {
			fmt.Fprintf(h, "subvol %d %s\n", s.ID, s.Path)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// setReadOnly makes the device read-only under the test's mount, as a
// write-protected disk or a btrfs forced read-only is.
func (d *Disk) setReadOnly() error {
	if err := unix.Unmount(d.Top, 0); err != nil {
		return fmt.Errorf("umount %s: %w", d.Top, err)
	}
	if out, err := exec.Command("blockdev", "--setro", d.Loop).CombinedOutput(); err != nil {
		return fmt.Errorf("blockdev --setro %s: %w: %s", d.Loop, err, out)
	}
	d.ro = true
	if out, err := exec.Command("mount", "-t", "btrfs", "-o", "ro,subvolid=5", d.Loop, d.Top).CombinedOutput(); err != nil {
		return fmt.Errorf("mount -o ro %s: %w: %s", d.Loop, err, out)
	}
	return nil
}

// unmountBelow detaches every mount at or below dir, deepest first.
func unmountBelow(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	sort.SliceStable(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		if unix.Unmount(mp, 0) != nil {
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
}

// expand fills the placeholders the disk's mutations added.
func (d *Disk) expand(s string) string {
	for k, v := range d.vars {
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}
