// Package install puts an image's own kernel and a matching dockroot
// initramfs into a boot directory, one directory per image tag, and records
// it in the layout internal/bootmenu reads, so that `dockroot menu` makes a
// boot entry for the tag. It is the logic of `dockroot install`.
//
// The image is read offline from the Docker data root on the host, where
// the btrfs graph driver keeps each image's complete root filesystem as
// the subvolume <data-root>/btrfs/subvolumes/<cache-id>.
//
// A tag's directory is replaced as a whole: the new files are made in a
// staging directory next to it and swapped in by rename, so a bootloader
// (or a reader after a crash) finds the old set or the new set, never a
// kernel with another kernel's initramfs.
//
// It is host-only and must not import the boot (hook), internal/commands or
// cmd/...
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/imagekernel"
	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/stores"
	"golang.org/x/sys/unix"
)

// DefaultDockerRoot is dockerd's default --data-root.
const DefaultDockerRoot = "/var/lib/docker"

// StagingDir is the directory under the boot directory where a tag's new
// files are put together before they replace the old ones. It has no
// entry.json, so bootmenu.ReadInstalled skips it.
const StagingDir = ".dockroot-staging"

// Options say what to install where.
type Options struct {
	Ref        string // image reference with a tag: "desk:stable"
	BootDir    string // the boot directory, e.g. /boot/efi/dockroot
	DockerRoot string // absolute host path of the Docker data root; default DefaultDockerRoot
	PodmanRoot string // absolute host path of Podman's graph root; default /var/lib/containers/storage
	// ContainerdRoot is the absolute host path of a system containerd's
	// root; default /var/lib/containerd. Docker's own managed containerd
	// is found under DockerRoot.
	ContainerdRoot string
	Store          string // the image store kind (layout.StoreKinds); default layout.StoreAuto
	// Initramfs is where the initramfs comes from: InitramfsDockroot
	// (default) builds dockroot's own; InitramfsImage copies the one the
	// image's generator built, which must hold dockroot's hook.
	Initramfs  string
	InitBinary string // the static dockroot-init for dockroot's initramfs (or InitChoices; one is required for InitramfsDockroot)
	// InitChoices are dockroot-init binaries for several architectures,
	// used when InitBinary is empty: the initramfs gets the one for the
	// image's kernel (initramfs.Options.InitChoices).
	InitChoices []string
	// KernelVersion picks one kernel when the image has several; default
	// the newest one that has its modules.
	KernelVersion string
	Log           func(format string, args ...any) // progress; nil is quiet
	// Now stamps the record; default time.Now.
	Now func() time.Time
}

// The kinds of initramfs Options.Initramfs names.
const (
	InitramfsDockroot = "dockroot"
	InitramfsImage    = "image"
)

// InitramfsKinds lists them, the default first.
var InitramfsKinds = []string{InitramfsDockroot, InitramfsImage}

// Result says what Run did.
type Result struct {
	Ref           string // familiar form, as recorded: "desk:stable"
	ImageID       string
	Store         string // the image store kind the image was found in
	KernelVersion string
	KernelSource  string // the kernel's path in the image: "/boot/vmlinuz-6.1.0-56-amd64"
	Dir           string // the tag's directory under the boot directory
	Kernel        string // full paths of the installed files
	Initrd        string
	Entry         string
	KernelSize    int64
	Initramfs     *initramfs.Result // the build (also when UpToDate); nil for InitramfsImage
	// ImageInitrd is, for InitramfsImage, the initramfs's path in the
	// image ("/boot/initrd.img-6.1.0-57-amd64") and how it was read.
	ImageInitrd *ImageInitrd
	// UpToDate: the directory already held the same image's kernel and an
	// identical initramfs; nothing was written.
	UpToDate bool
}

// Run installs opts.Ref. See the package documentation for the layout.
// It stops between steps when ctx is done; the step that was running
// finishes or fails first, and cleanup still removes what it staged.
//
// Errors name the step and the reference ("resolve image desk:stable: …"),
// not the verb: the CLI prints "dockroot install: " before them.
func Run(ctx context.Context, opts Options) (*Result, error) {
	in := &installer{ctx: ctx, opts: opts}
	defer in.cleanup()
	if err := in.run([]step{
		{"check options", in.checkOptions},
		{"resolve image", in.resolveImage},
	}); err != nil {
		return nil, err
	}
	if err := in.fromRoot(); err != nil {
		return nil, err
	}
	return &in.res, nil
}

type step struct {
	name string
	run  func() error
}

func (in *installer) run(steps []step) error {
	for _, s := range steps {
		if err := in.ctx.Err(); err != nil {
			return fmt.Errorf("%s %s: stopped before it: %w", s.name, in.opts.Ref, err)
		}
		if err := s.run(); err != nil {
			return fmt.Errorf("%s %s: %w", s.name, in.opts.Ref, err)
		}
		if in.res.UpToDate {
			break
		}
	}
	return nil
}

// fromRoot installs from the image root the earlier steps found (in.root,
// in.res.Ref and in.res.ImageID).
func (in *installer) fromRoot() error {
	return in.run([]step{
		{"find kernel", in.findKernel},
		{"find the image's initramfs", in.findImageInitrd},
		{"lock boot directory", in.lock},
		{"stage files", in.stage},
		{"compare with installed", in.compare},
		{"replace installed", in.replace},
	})
}

type installer struct {
	ctx     context.Context
	opts    Options
	res     Result
	img     *snapshot.Image
	root    string // the image's root filesystem on the host
	scan    *imagekernel.Scan
	kernel  imagekernel.Kernel
	initrd  string // InitramfsImage: the image's initramfs on the host
	lockFD  int
	locked  bool
	staging string // <boot>/.dockroot-staging/install-XXXX
	staged  string // <staging>/<slug>
}

func (in *installer) logf(format string, args ...any) {
	if in.opts.Log != nil {
		in.opts.Log(format, args...)
	}
}

func (in *installer) checkOptions() error {
	o := &in.opts
	if o.DockerRoot == "" {
		o.DockerRoot = DefaultDockerRoot
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PodmanRoot == "" {
		o.PodmanRoot = "/" + layout.DefaultPodmanPath
	}
	if o.ContainerdRoot == "" {
		o.ContainerdRoot = "/" + layout.DefaultContainerdPath
	}
	if !filepath.IsAbs(o.ContainerdRoot) {
		return fmt.Errorf("containerd root %q is not an absolute path", o.ContainerdRoot)
	}
	o.ContainerdRoot = filepath.Clean(o.ContainerdRoot)
	if !filepath.IsAbs(o.DockerRoot) {
		return fmt.Errorf("docker root %q is not an absolute path", o.DockerRoot)
	}
	if !filepath.IsAbs(o.PodmanRoot) {
		return fmt.Errorf("podman graph root %q is not an absolute path", o.PodmanRoot)
	}
	if o.BootDir == "" {
		return errors.New("no boot directory given")
	}
	switch o.Initramfs {
	case "":
		o.Initramfs = InitramfsDockroot
	case InitramfsDockroot, InitramfsImage:
	default:
		return fmt.Errorf("unknown initramfs kind %q (want %s)", o.Initramfs, strings.Join(InitramfsKinds, " or "))
	}
	if o.InitBinary == "" && len(o.InitChoices) == 0 && o.Initramfs == InitramfsDockroot {
		return errors.New("no dockroot-init binary given")
	}
	o.DockerRoot, o.PodmanRoot = filepath.Clean(o.DockerRoot), filepath.Clean(o.PodmanRoot)
	fi, err := os.Stat(o.BootDir)
	if err != nil {
		return fmt.Errorf("boot directory: %w; create it first (e.g. mkdir -p %s on the mounted ESP)", err, o.BootDir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("boot directory %s is not a directory", o.BootDir)
	}
	return nil
}

// resolveImage finds the image in the store. The store is opened with the
// host's / as the btrfs "top level": Image.Subvolume is then the
// subvolume's host path, whatever the btrfs mount layout.
func (in *installer) resolveImage() error {
	store, err := stores.OpenPaths(in.opts.Store, "/", stores.Paths{Docker: relative(in.opts.DockerRoot), Podman: relative(in.opts.PodmanRoot), Containerd: relative(in.opts.ContainerdRoot)})
	if err != nil {
		return err
	}
	img, err := store.Resolve(in.opts.Ref)
	if err != nil {
		return err
	}
	ref, err := familiarTag(img)
	if err != nil {
		return err
	}
	in.img = img
	in.root = filepath.Join("/", img.Subvolume)
	if fi, err := os.Stat(in.root); err != nil || !fi.IsDir() {
		return fmt.Errorf("image %s (%s): its root filesystem %s is missing (%v): is the image store %s complete?", ref, img.ID, in.root, err, in.storeRoot())
	}
	in.res.Ref, in.res.ImageID, in.res.Store = ref, img.ID, img.Store
	in.logf("image %s is %s at %s", ref, img.ID, in.root)
	return nil
}

// relative is the host path p below /, as the stores take it.
func relative(p string) string {
	if rel := strings.TrimPrefix(filepath.Clean(p), "/"); rel != "" {
		return rel
	}
	return "."
}

// storeRoot is the root of the store the image was found in, told by
// where its subvolume is.
func (in *installer) storeRoot() string {
	if strings.HasPrefix(in.root, in.opts.PodmanRoot+"/") {
		return in.opts.PodmanRoot
	}
	if strings.HasPrefix(in.root, in.opts.ContainerdRoot+"/") {
		return in.opts.ContainerdRoot
	}
	return in.opts.DockerRoot
}

// familiarTag is the reference the boot entry passes as docker_image=: it
// must name the tag, not the image ID, so that the entry follows the tag.
func familiarTag(img *snapshot.Image) (string, error) {
	if strings.HasPrefix(img.Ref, "sha256:") {
		tags := "none"
		if len(img.Tags) > 0 {
			tags = strings.Join(img.Tags, ", ")
		}
		return "", fmt.Errorf("%s is an image ID; install takes a tag, which names the boot entry and is what it boots (tags of this image: %s)", img.Ref, tags)
	}
	r, err := snapshot.ParseRef(img.Ref)
	if err != nil {
		return "", err
	}
	return r.Familiar(), nil
}

func (in *installer) findKernel() error {
	s, err := imagekernel.ScanRoot(in.root)
	if err != nil {
		return err
	}
	k, err := s.Bootable(in.opts.KernelVersion)
	if err != nil {
		return err
	}
	in.scan, in.kernel = s, k
	in.res.KernelVersion = k.Version
	in.res.KernelSource = "/" + k.Rel
	in.logf("kernel %s from %s, modules in /%s", k.Version, in.res.KernelSource, k.Modules)
	return nil
}

// lock keeps two installs into one boot directory apart: they would swap
// each other's staging directories. The lock is flock(2) on the boot
// directory itself, so no lock file is left on the ESP (flock works on any
// local filesystem, FAT included: the kernel keeps the lock, not the disk).
func (in *installer) lock() error {
	fd, err := unix.Open(in.opts.BootDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", in.opts.BootDir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("another dockroot install is writing to %s; wait for it and try again", in.opts.BootDir)
		}
		return fmt.Errorf("lock %s: %w", in.opts.BootDir, err)
	}
	in.lockFD, in.locked = fd, true
	dir := filepath.Join(in.opts.BootDir, StagingDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Staging directories of runs that crashed; nobody else holds the lock.
	stale, _ := filepath.Glob(filepath.Join(dir, "install-*"))
	for _, s := range stale {
		in.logf("removing %s, left by an interrupted install", s)
		if err := os.RemoveAll(s); err != nil {
			return fmt.Errorf("remove %s, left by an interrupted install: %w", s, err)
		}
	}
	return nil
}

// stage copies the kernel and builds the initramfs into a fresh staging
// directory named like the tag's, so that bootmenu.WriteInstalled can
// record it there.
func (in *installer) stage() error {
	parent := filepath.Join(in.opts.BootDir, StagingDir)
	dir, err := os.MkdirTemp(parent, "install-")
	if err != nil {
		return err
	}
	in.staging = dir
	in.staged = bootmenu.InstalledDir(dir, in.res.Ref)
	if err := os.Mkdir(in.staged, 0o755); err != nil {
		return err
	}
	n, err := copyFile(in.kernel.File, filepath.Join(in.staged, bootmenu.KernelFile))
	if err != nil {
		return err
	}
	in.res.KernelSize = n
	if in.opts.Initramfs == InitramfsImage {
		_, err := copyFile(in.initrd, filepath.Join(in.staged, bootmenu.InitrdFile))
		return err
	}
	modRoot, err := in.scan.ModulesRoot(in.kernel)
	if err != nil {
		return err
	}
	res, err := initramfs.Build(initramfs.Options{
		Output:        filepath.Join(in.staged, bootmenu.InitrdFile),
		Root:          modRoot,
		KernelVersion: in.kernel.Version,
		InitBinary:    in.opts.InitBinary,
		InitChoices:   in.opts.InitChoices,
		// A fixed mtime makes equal inputs give an identical file, which
		// is how compare recognises an up-to-date install.
		ModTime: 0,
		Log:     in.opts.Log,
	})
	if err != nil {
		return err
	}
	in.res.Initramfs = res
	return nil
}

// compare decides whether the installed directory already holds this: the
// same reference, image and kernel, and byte-identical files.
func (in *installer) compare() error {
	dir := bootmenu.InstalledDir(in.opts.BootDir, in.res.Ref)
	in.setPaths(dir)
	// One entry, not bootmenu.ReadInstalled: another tag's broken
	// directory must not stop install from repairing its own.
	old, err := bootmenu.ReadEntry(dir)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Lstat(dir); serr == nil {
			return fmt.Errorf("%s exists but has no %s, so it is not a dockroot install; move it away and run install again", dir, bootmenu.EntryFile)
		}
		return nil
	}
	if err != nil {
		in.logf("replacing %s: %v", dir, err)
		return nil
	}
	if old.Ref != in.res.Ref {
		return fmt.Errorf("%s holds %s, whose directory name is the same (%s) on a case-insensitive ESP: remove it with `rm -r %s` if %s is no longer wanted, or retag one of them",
			dir, old.Ref, bootmenu.Slug(in.res.Ref), dir, old.Ref)
	}
	if old.ImageID != in.res.ImageID || old.KernelVersion != in.res.KernelVersion ||
		old.Kernel != bootmenu.KernelFile || old.Initrd != bootmenu.InitrdFile {
		return nil
	}
	for _, f := range []string{bootmenu.KernelFile, bootmenu.InitrdFile} {
		same, err := sameContent(filepath.Join(in.staged, f), filepath.Join(dir, f))
		if err != nil || !same {
			return nil
		}
	}
	in.res.UpToDate = true
	return nil
}

func (in *installer) setPaths(dir string) {
	in.res.Dir = dir
	in.res.Kernel = filepath.Join(dir, bootmenu.KernelFile)
	in.res.Initrd = filepath.Join(dir, bootmenu.InitrdFile)
	in.res.Entry = filepath.Join(dir, bootmenu.EntryFile)
}

// replace records the staged directory and swaps it in for the installed
// one: rename old away, rename new in, delete old. Between the two renames
// the tag has no directory (its menu entry cannot boot for that moment);
// at no point does it have a mixed one.
func (in *installer) replace() error {
	if _, err := bootmenu.WriteInstalled(in.staging, bootmenu.Installed{
		Ref:           in.res.Ref,
		ImageID:       in.res.ImageID,
		KernelVersion: in.res.KernelVersion,
		Store:         in.res.Store,
		Installed:     in.opts.Now().UTC().Truncate(time.Second),
	}); err != nil {
		return err
	}
	if err := syncDir(in.staged); err != nil {
		return err
	}
	dir := in.res.Dir
	old := filepath.Join(in.staging, "old")
	hadOld := false
	if _, err := os.Lstat(dir); err == nil {
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("move the installed %s aside: %w", dir, err)
		}
		hadOld = true
	}
	if err := os.Rename(in.staged, dir); err != nil {
		err = fmt.Errorf("move the new files into %s: %w", dir, err)
		if hadOld {
			if rerr := os.Rename(old, dir); rerr != nil {
				err = fmt.Errorf("%w; and putting the old files back failed: %v: they are in %s", err, rerr, old)
				in.staging = "" // keep them for the user
			}
		}
		return err
	}
	if err := syncDir(in.opts.BootDir); err != nil {
		return err
	}
	in.logf("installed %s into %s", in.res.Ref, dir)
	return nil
}

// cleanup removes this run's staging directory (holding the replaced
// files or a discarded build), and the staging parent when it is empty,
// then releases the lock.
func (in *installer) cleanup() {
	if in.staging != "" {
		if err := os.RemoveAll(in.staging); err != nil {
			in.logf("cleanup: remove %s: %v", in.staging, err)
		}
	}
	if in.locked {
		// Fails harmlessly while it holds files kept for the user.
		_ = os.Remove(filepath.Join(in.opts.BootDir, StagingDir))
		unix.Close(in.lockFD)
	}
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return n, nil
}

// sameContent compares two files byte by byte.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	sa, err := fa.Stat()
	if err != nil {
		return false, err
	}
	sb, err := fb.Stat()
	if err != nil {
		return false, err
	}
	if sa.Size() != sb.Size() {
		return false, nil
	}
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// syncDir makes a rename in dir durable (rename(2) is atomic but not
// durable until the directory itself is synced).
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// LockBootDir takes the lock install holds while it writes into bootDir
// (flock on the directory), for other writers of the installed layout:
// `dockroot watch` removing a tag's directory, `dockroot gc` removing
// leftovers. It does not wait: a running install is an error.
func LockBootDir(bootDir string) (unlock func(), err error) {
	fd, err := unix.Open(bootDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", bootDir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another dockroot install is writing to %s; wait for it and try again", bootDir)
		}
		return nil, fmt.Errorf("lock %s: %w", bootDir, err)
	}
	return func() { unix.Close(fd) }, nil
}

// RemoveStaging removes, under the lock, what interrupted runs left in
// bootDir's StagingDir (everything there is dockroot's), and returns the
// paths; with dryRun it only lists them.
func RemoveStaging(bootDir string, dryRun bool) ([]string, error) {
	unlock, err := LockBootDir(bootDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := filepath.Join(bootDir, StagingDir)
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		out = append(out, p)
		if dryRun {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return out, fmt.Errorf("remove %s, left by an interrupted run: %w", p, err)
		}
	}
	if !dryRun {
		_ = os.Remove(dir)
	}
	return out, nil
}
