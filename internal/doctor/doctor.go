// Package doctor checks, on the host, each thing that stops dockroot from
// booting an image, and says how to fix what is wrong. It is the logic of
// `dockroot doctor`: Run returns the checks as data, Print formats them.
//
// Every check reads the Docker data root, Podman's graph root, the image's
// root filesystem or the top layer through host paths; paths inside an image or a top layer
// are resolved inside that root. The file-system statistics come through
// Options.Statfs, so the checks run on temporary directories in tests.
//
// It is host-only and must not import the boot (hook), internal/commands or
// cmd/...
package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dockroot/dockroot/internal/imagekernel"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/containerd"
	"github.com/dockroot/dockroot/snapshot/stores"
	"golang.org/x/sys/unix"
)

// Status is a check's outcome.
type Status string

// Outcomes, as printed.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "FAIL"
)

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"` // "storage driver", "init of desk:1", ...
	Status Status `json:"status"`
	Detail string `json:"detail"`        // what was found
	Fix    string `json:"fix,omitempty"` // what to do; set for Warn and Fail
	// Store is the image store the check is about (layout.StoreGraphDriver,
	// StoreContainerd, StorePodman); "" for the top layer's checks.
	Store string `json:"store,omitempty"`
}

// FSInfo is what the checks need of statfs(2).
type FSInfo struct {
	Type  int64  // f_type: unix.BTRFS_SUPER_MAGIC for btrfs
	Total uint64 // bytes
	Avail uint64 // bytes available to unprivileged users
}

// Options say what to check.
type Options struct {
	DockerRoot string // absolute host path of the data root
	// PodmanRoot is the absolute host path of Podman's graph root; with
	// Store auto it is checked when it exists.
	PodmanRoot string
	// ContainerdRoot is the absolute host path of a system containerd's
	// root (Docker's containerd image store when dockerd uses the system
	// containerd); Docker's own managed one is under DockerRoot.
	ContainerdRoot string
	Store          string // the image store kind (layout.StoreKinds); "" is layout.StoreAuto
	Image          string // reference to check; "" checks every tagged image
	Toplayer       string // host directory of the top layer; "" skips its checks
	Init           string // the init to look for in the image; default /sbin/init
	// RWLayer is the rootflags=subvol= NAME; an fstab line remounting /
	// with exactly that subvolume is harmless. Optional.
	RWLayer string
	// DaemonJSON is dockerd's configuration file, read if it exists;
	// default /etc/docker/daemon.json. "-" skips it.
	DaemonJSON string
	// StorageConf is containers/storage's storage.conf, read if it exists
	// to say which Podman store it gives; "" or "-" skips it.
	StorageConf string
	// Homes is the directory of the users' home directories (/home),
	// searched for rootless Podman stores, which cannot boot; "" skips
	// the search.
	Homes string
	// Statfs defaults to unix.Statfs.
	Statfs func(path string) (FSInfo, error)
}

// Thresholds of the free-space check: below either is a warning.
const (
	MinFreeBytes   = 1 << 30
	MinFreePercent = 10
)

// DaemonJSONFix is the daemon.json change every storage failure points to:
// either store dockroot reads.
const DaemonJSONFix = `set {"storage-driver": "btrfs"} in /etc/docker/daemon.json (the classic store: naming a storage driver keeps Docker 29+ on it), ` +
	`or {"storage-driver": "btrfs", "features": {"containerd-snapshotter": true}} (Docker's containerd image store with the btrfs snapshotter), ` +
	`with the data root on btrfs; restart dockerd, then pull or build the images again (images of another driver are not carried over)`

// containerdRootFix points at the flags for containerd's root.
const containerdRootFix = "pass --containerd-root with the system containerd's root (containerd config dump | grep ^root) when dockerd runs with --containerd=, else --docker-root (its own containerd is under <data root>/" + layout.DockerContainerdDir + ")"

// PodmanStorageFix is the storage.conf change a Podman store of another
// driver needs.
const PodmanStorageFix = `set driver = "btrfs" in the [storage] table of /etc/containers/storage.conf, then podman system reset ` +
	`(it deletes every image and container of the store), then pull or build the images again`

// podmanRootFix points at the flag for Podman's graph root.
const podmanRootFix = "pass --podman-root with Podman's graph root (podman info -f '{{.Store.GraphRoot}}')"

// Run runs every check and returns them in report order: which store the
// Docker and Podman configuration files give, each store's checks, the
// rootless Podman stores found, then the images' and the top layer's.
func Run(opts Options) []Check {
	if opts.Store == "" {
		opts.Store = layout.StoreAuto
	}
	var cfg []Check
	if opts.Store != layout.StorePodman {
		if c, ok := CheckDockerConfig(daemonJSONPath(opts)); ok {
			cfg = append(cfg, c)
		}
	}
	if opts.Store == layout.StoreAuto || opts.Store == layout.StorePodman {
		if c, ok := CheckPodmanConfig(orDash(opts.StorageConf)); ok {
			cfg = append(cfg, c)
		}
		if opts.Homes != "" {
			cfg = append(cfg, CheckRootlessPodman(opts.Homes)...)
		}
	}
	return append(cfg, runStores(opts)...)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runStores is Run's part for the stores, the images and the top layer.
func runStores(opts Options) []Check {
	withPodman := opts.Store == layout.StorePodman || (opts.Store == layout.StoreAuto && opts.PodmanRoot != "" && exists(opts.PodmanRoot))
	withContainerd := opts.Store == layout.StoreContainerd || (opts.Store == layout.StoreAuto && containerdInUse(opts))
	withDocker := opts.Store == layout.StoreGraphDriver || (opts.Store == layout.StoreAuto && !withContainerd && (!withPodman || exists(opts.DockerRoot)))
	if !withPodman && !withContainerd {
		return tagStore(runDocker(opts), layout.StoreGraphDriver)
	}
	var out []Check
	storeOK, ok := true, false
	if withDocker {
		d := tagStore(runDocker(Options{DockerRoot: opts.DockerRoot, DaemonJSON: opts.DaemonJSON, Statfs: opts.Statfs, Store: layout.StoreGraphDriver, Image: "-"}), layout.StoreGraphDriver)
		out = append(out, d...)
		storeOK = Count(d, Fail) == 0
	}
	if withContainerd {
		c, cok := containerdChecks(opts)
		out = append(out, tagStore(c, layout.StoreContainerd)...)
		storeOK, ok = storeOK && cok, cok
	}
	if withPodman {
		p, pok := podmanChecks(opts)
		out = append(out, tagStore(p, layout.StorePodman)...)
		storeOK, ok = storeOK && pok, ok || pok
	}
	if ok {
		if opts.Store == layout.StoreAuto || storeOK {
			out = append(out, imageChecks(opts)...)
		} else {
			out = append(out, Check{Name: "images", Status: Warn, Detail: "not checked: the store cannot be read", Fix: "fix the storage driver first (see above)"})
		}
	}
	if opts.Toplayer != "" {
		out = append(out, CheckFstab("top layer", opts.Toplayer, opts.RWLayer))
		out = append(out, CheckShadow(opts.Toplayer)...)
	}
	return out
}

// tagStore sets Store on the checks of one store, leaving the image and
// top-layer checks (which set their own, or none) as they are.
func tagStore(cs []Check, store string) []Check {
	for i := range cs {
		if cs[i].Store == "" && !strings.HasPrefix(cs[i].Name, "top layer") && !isImageCheck(cs[i].Name) {
			cs[i].Store = store
		}
	}
	return cs
}

func isImageCheck(name string) bool {
	for _, p := range []string{"init of ", "kernel of ", "fstab of ", "image "} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return name == "images"
}

// containerdRoots are where Docker's containerd may keep its store: its
// own managed containerd under the data root, then a system containerd.
func containerdRoots(opts Options) []string {
	roots := []string{filepath.Join(opts.DockerRoot, layout.DockerContainerdDir)}
	if opts.ContainerdRoot != "" && opts.ContainerdRoot != roots[0] {
		roots = append(roots, opts.ContainerdRoot)
	}
	return roots
}

// containerdInUse says whether Docker keeps its images in the containerd
// image store: daemon.json enables it, or the data root has a containerd
// directory and no image/<driver> (Docker 29's default), or a system
// containerd's root holds images.
func containerdInUse(opts Options) bool {
	if _, snapshotter, err := readDaemonJSON(daemonJSONPath(opts)); err == nil && snapshotter {
		return true
	}
	drivers, _ := imageDrivers(opts.DockerRoot)
	if len(drivers) == 0 && exists(filepath.Join(opts.DockerRoot, "containerd")) {
		return true
	}
	return opts.ContainerdRoot != "" && exists(filepath.Join(opts.ContainerdRoot, "io.containerd.metadata.v1.bolt"))
}

func daemonJSONPath(opts Options) string {
	if opts.DaemonJSON == "" {
		return "/etc/docker/daemon.json"
	}
	return opts.DaemonJSON
}

// containerdChecks checks Docker's containerd image store: which
// snapshotter unpacks its images, its filesystem and free space. ok is
// false when no containerd root is there.
func containerdChecks(opts Options) (out []Check, ok bool) {
	if opts.Statfs == nil {
		opts.Statfs = Statfs
	}
	c, root := CheckContainerdStore(containerdRoots(opts))
	out = append(out, c)
	if root == "" {
		return out, false
	}
	fs, info := checkBtrfs("containerd root on btrfs", root, opts.Statfs, containerdRootFix,
		"put Docker's data root (and a system containerd's root) on a btrfs filesystem (mkfs.btrfs), then "+containerd.DockerFix)
	out = append(out, fs)
	if info != nil {
		f := CheckFreeSpace(root, *info)
		f.Name = "free space for containerd"
		out = append(out, f)
	}
	return out, true
}

// CheckContainerdStore tells, from the containerd roots' layout, whether
// Docker's containerd image store unpacks images with containerd's btrfs
// snapshotter: the only one whose snapshots are btrfs subvolumes. It
// returns the first root that holds a store ("" if none).
func CheckContainerdStore(roots []string) (Check, string) {
	c := Check{Name: "containerd snapshotter"}
	for _, root := range roots {
		if !exists(filepath.Join(root, "io.containerd.metadata.v1.bolt", "meta.db")) {
			continue
		}
		var snapshotters []string
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if sn, ok := strings.CutPrefix(e.Name(), "io.containerd.snapshotter.v1."); ok && e.IsDir() {
				snapshotters = append(snapshotters, sn)
			}
		}
		if slices.Contains(snapshotters, "btrfs") {
			c.Status, c.Detail = OK, "containerd image store with the btrfs snapshotter ("+filepath.Join(root, "io.containerd.snapshotter.v1.btrfs")+")"
			return c, root
		}
		c.Status, c.Fix = Fail, containerd.DockerFix
		c.Detail = fmt.Sprintf("the containerd image store at %s has no btrfs snapshotter (snapshotters there: %s): "+
			"Docker unpacks images with overlayfs by default, whose layers are directories that cannot become a root subvolume", root, strings.Join(snapshotters, ", "))
		if len(snapshotters) == 0 {
			c.Detail = fmt.Sprintf("the containerd image store at %s has no snapshotter directory yet", root)
		}
		return c, root
	}
	c.Status, c.Fix = Fail, containerdRootFix
	c.Detail = "no containerd metadata database (io.containerd.metadata.v1.bolt/meta.db) in " + strings.Join(roots, " or ")
	return c, ""
}

// podmanChecks checks Podman's graph root: its storage driver, its
// filesystem and its free space. ok is false when the root is missing.
func podmanChecks(opts Options) (out []Check, ok bool) {
	if opts.Statfs == nil {
		opts.Statfs = Statfs
	}
	root := opts.PodmanRoot
	if _, err := os.Stat(root); err != nil {
		return []Check{{Name: "Podman graph root", Status: Fail, Detail: err.Error(), Fix: podmanRootFix}}, false
	}
	if IsRootless(root) {
		return []Check{{Name: "Podman graph root", Status: Fail, Detail: rootlessDetail(root), Fix: RootlessFix}}, false
	}
	out = append(out, CheckPodmanDriver(root))
	c, info := checkBtrfs("Podman graph root on btrfs", root, opts.Statfs, podmanRootFix,
		"mount a btrfs filesystem (mkfs.btrfs) at "+root+" or point graphroot in /etc/containers/storage.conf at one, with the btrfs driver; then pull or build the images again")
	out = append(out, c)
	if info != nil {
		f := CheckFreeSpace(root, *info)
		f.Name = "free space for Podman"
		if f.Fix != "" {
			f.Fix = strings.Replace(f.Fix, "docker image prune", "podman image prune", 1)
		}
		out = append(out, f)
	}
	return out, true
}

// CheckPodmanDriver tells from the graph root's layout whether Podman
// stores images with the btrfs driver: containers/storage names its
// metadata directories <driver>-images and <driver>-layers.
func CheckPodmanDriver(root string) Check {
	c := Check{Name: "Podman storage driver"}
	ents, err := os.ReadDir(root)
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, fmt.Sprintf("cannot read Podman's graph root: %v", err), podmanRootFix
		return c
	}
	var drivers []string
	for _, e := range ents {
		if d, ok := strings.CutSuffix(e.Name(), "-images"); ok && d != "" && e.IsDir() {
			drivers = append(drivers, d)
		}
	}
	switch others := without(drivers, "btrfs"); {
	case len(others) < len(drivers):
		c.Status, c.Detail = OK, "btrfs driver ("+filepath.Join(root, "btrfs-images")+")"
		if len(others) > 0 {
			c.Detail += "; also left over: " + strings.Join(others, ", ")
		}
	case len(drivers) > 0:
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s uses the %s storage driver (%s), not btrfs: dockroot boots the btrfs subvolume the btrfs driver keeps per layer",
			root, strings.Join(drivers, ", "), filepath.Join(root, drivers[0]+"-images"))
		c.Fix = PodmanStorageFix
	default:
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s has no image store (no <driver>-images directory)", root)
		c.Fix = podmanRootFix + ", or store images there with Podman's btrfs driver: " + PodmanStorageFix
	}
	return c
}

// runDocker is Run for Docker's data root alone, as before Podman
// support; Image "-" stops after the data root's checks.
func runDocker(opts Options) []Check {
	if opts.Init == "" {
		opts.Init = "/sbin/init"
	}
	if opts.DaemonJSON == "" {
		opts.DaemonJSON = "/etc/docker/daemon.json"
	}
	if opts.Statfs == nil {
		opts.Statfs = Statfs
	}
	if _, err := os.Stat(opts.DockerRoot); err != nil {
		return []Check{{Name: "data root", Status: Fail, Detail: err.Error(),
			Fix: "pass --docker-root with dockerd's --data-root (docker info -f '{{.DockerRootDir}}')"}}
	}
	var out []Check
	out = append(out, CheckStorageDriver(opts.DockerRoot, opts.DaemonJSON))
	fsCheck, info := CheckBtrfs(opts.DockerRoot, opts.Statfs)
	out = append(out, fsCheck)
	if info != nil {
		out = append(out, CheckFreeSpace(opts.DockerRoot, *info))
	}
	if opts.Image == "-" {
		return out
	}
	out = append(out, imageChecks(opts)...)
	if opts.Toplayer != "" {
		out = append(out, CheckFstab("top layer", opts.Toplayer, opts.RWLayer))
		out = append(out, CheckShadow(opts.Toplayer)...)
	}
	return out
}

// Count returns how many checks have status s.
func Count(cs []Check, s Status) int {
	n := 0
	for _, c := range cs {
		if c.Status == s {
			n++
		}
	}
	return n
}

// Print writes one line per check, "ok    name: detail", with the fix
// indented under each warning and failure, then a summary line.
func Print(w io.Writer, cs []Check) {
	for _, c := range cs {
		fmt.Fprintf(w, "%-4s  %s: %s\n", c.Status, c.Name, c.Detail)
		if c.Fix != "" && c.Status != OK {
			fmt.Fprintf(w, "      fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintf(w, "%d ok, %d warnings, %d failed\n", Count(cs, OK), Count(cs, Warn), Count(cs, Fail))
}

// Statfs is statfs(2) as FSInfo.
func Statfs(path string) (FSInfo, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FSInfo{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	return FSInfo{Type: int64(st.Type), Total: st.Blocks * uint64(st.Bsize), Avail: st.Bavail * uint64(st.Bsize)}, nil
}

// CheckStorageDriver tells from the data root's layout (and daemon.json,
// when there is one) whether dockerd stores images with the btrfs graph
// driver, the only store dockroot reads. dockerd keeps each graph driver's
// image metadata in <root>/image/<driver> (moby daemon/images), and the
// containerd image store (Docker 29's default) under <root>/containerd.
func CheckStorageDriver(root, daemonJSON string) Check {
	c := Check{Name: "storage driver"}
	cfgDriver, snapshotter, cfgErr := readDaemonJSON(daemonJSON)
	drivers, err := imageDrivers(root)
	if err != nil {
		c.Status, c.Detail = Fail, fmt.Sprintf("cannot read the Docker data root: %v", err)
		c.Fix = "pass --docker-root with dockerd's --data-root (docker info -f '{{.DockerRootDir}}')"
		return c
	}
	hasBtrfs := false
	for _, d := range drivers {
		hasBtrfs = hasBtrfs || d == "btrfs"
	}
	switch {
	case cfgErr != nil:
		c.Status, c.Detail = Fail, cfgErr.Error()
		c.Fix = "fix the JSON syntax of " + daemonJSON + ", then restart dockerd"
	case cfgDriver != "" && cfgDriver != "btrfs":
		c.Status, c.Detail = Fail, fmt.Sprintf("%s sets \"storage-driver\": %q", daemonJSON, cfgDriver)
		c.Fix = DaemonJSONFix
	case snapshotter:
		c.Status, c.Detail = Fail, fmt.Sprintf("%s enables the containerd image store (\"containerd-snapshotter\": true), not the classic store (checked with --store containerd or auto)", daemonJSON)
		c.Fix = DaemonJSONFix
	case hasBtrfs:
		c.Status, c.Detail = OK, "btrfs graph driver ("+filepath.Join(root, "image", "btrfs")+")"
		if others := without(drivers, "btrfs"); len(others) > 0 {
			c.Detail += "; also left over: " + strings.Join(others, ", ")
		}
	case len(drivers) > 0:
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s uses the %s storage driver (%s), not btrfs: dockroot boots the btrfs subvolume the btrfs driver keeps per image",
			root, strings.Join(drivers, ", "), filepath.Join(root, "image", drivers[0]))
		if slices.Contains(drivers, "vfs") {
			c.Detail += " (vfs copies every layer into a plain directory)"
		}
		c.Fix = DaemonJSONFix
	case exists(filepath.Join(root, "containerd")):
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s has no image/btrfs but a containerd directory: Docker 29 and later keep images in the containerd image store by default (checked with --store containerd or auto)", root)
		c.Fix = DaemonJSONFix
	default:
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s has no image store (no image/<driver> directory)", root)
		c.Fix = "pass --docker-root with dockerd's --data-root (docker info -f '{{.DockerRootDir}}'), or start dockerd with the btrfs storage driver there: " + DaemonJSONFix
	}
	return c
}

func imageDrivers(root string) ([]string, error) {
	if _, err := os.Stat(root); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(root, "image"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// readDaemonJSON returns the storage driver and whether the containerd
// snapshotter is enabled in dockerd's daemon.json; a missing file is not
// an error (dockerd's defaults then apply, judged from the data root).
func readDaemonJSON(path string) (driver string, snapshotter bool, err error) {
	if path == "-" {
		return "", false, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	var cfg struct {
		StorageDriver string          `json:"storage-driver"`
		Features      map[string]bool `json:"features"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", false, fmt.Errorf("%s: %w", path, err)
	}
	return cfg.StorageDriver, cfg.Features["containerd-snapshotter"], nil
}

// CheckBtrfs checks that the data root is on btrfs and returns its
// statistics for the free-space check.
func CheckBtrfs(root string, statfs func(string) (FSInfo, error)) (Check, *FSInfo) {
	return checkBtrfs("data root on btrfs", root, statfs, "pass --docker-root with dockerd's --data-root",
		"mount a btrfs filesystem (mkfs.btrfs) at "+root+" or point \"data-root\" in /etc/docker/daemon.json at one, with the btrfs storage driver; then pull or build the images again")
}

func checkBtrfs(name, root string, statfs func(string) (FSInfo, error), statFix, fsFix string) (Check, *FSInfo) {
	c := Check{Name: name}
	info, err := statfs(root)
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, err.Error(), statFix
		return c, nil
	}
	if info.Type != unix.BTRFS_SUPER_MAGIC {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s is on %s, not btrfs", root, fsName(info.Type))
		c.Fix = fsFix
		return c, &info
	}
	c.Status, c.Detail = OK, root+" is on btrfs"
	return c, &info
}

func fsName(t int64) string {
	switch t {
	case unix.EXT4_SUPER_MAGIC:
		return "ext2/3/4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("type 0x%x", t)
}

// CheckFreeSpace warns when the data root's filesystem is nearly full: a
// boot snapshots the image (cheap) but everything the booted system
// writes lands there, and btrfs turns read-only when it cannot allocate
// metadata.
func CheckFreeSpace(root string, info FSInfo) Check {
	c := Check{Name: "free space", Status: OK}
	pct := 0.0
	if info.Total > 0 {
		pct = 100 * float64(info.Avail) / float64(info.Total)
	}
	c.Detail = fmt.Sprintf("%s available of %s (%.0f%%) on %s", gib(info.Avail), gib(info.Total), pct, root)
	if info.Avail < MinFreeBytes || pct < MinFreePercent {
		c.Status = Warn
		c.Fix = fmt.Sprintf("free space (docker image prune, dockroot gc, btrfs filesystem usage %s shows what is used) to above %s and %d%%",
			root, gib(MinFreeBytes), MinFreePercent)
	}
	return c
}

func gib(n uint64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// imageChecks resolves the images to check in the store and runs the
// per-image checks on each distinct image.
func imageChecks(opts Options) []Check {
	var store snapshot.Store
	var err error
	if (opts.PodmanRoot == "" && opts.ContainerdRoot == "" && opts.Store == layout.StoreAuto) || opts.Store == layout.StoreGraphDriver {
		store, err = stores.Open(layout.StoreAuto, "/", relative(opts.DockerRoot))
	} else {
		p := stores.Paths{Docker: relative(opts.DockerRoot)}
		if opts.PodmanRoot != "" {
			p.Podman = relative(opts.PodmanRoot)
		}
		if opts.ContainerdRoot != "" {
			p.Containerd = relative(opts.ContainerdRoot)
		}
		store, err = stores.OpenPaths(opts.Store, "/", p)
	}
	if err != nil {
		return []Check{{Name: "images", Status: Warn, Detail: "not checked: the store cannot be read", Fix: "fix the storage driver first (see above)"}}
	}
	var imgs []snapshot.Image
	if opts.Image != "" {
		img, err := store.Resolve(opts.Image)
		if err != nil {
			return []Check{{Name: "image " + opts.Image, Status: Fail, Detail: err.Error(), Fix: "pass --image with one of the tags listed, or build the image with the btrfs driver"}}
		}
		imgs = append(imgs, *img)
	} else {
		all, err := store.List()
		if err != nil {
			return []Check{{Name: "images", Status: Fail, Detail: err.Error(), Fix: "repair or rebuild the image store"}}
		}
		seen := map[string]bool{}
		for _, img := range all {
			if img.Problem != "" {
				continue
			}
			if !seen[img.ID] {
				seen[img.ID] = true
				imgs = append(imgs, img)
			}
		}
		if len(imgs) == 0 {
			if opts.PodmanRoot != "" {
				return []Check{{Name: "images", Status: Warn, Detail: "no bootable tagged image in the image store", Fix: "build or pull an image with dockerd or podman using the btrfs driver"}}
			}
			return []Check{{Name: "images", Status: Warn, Detail: "no bootable tagged image in " + opts.DockerRoot, Fix: "build or pull an image with dockerd using the btrfs driver"}}
		}
	}
	var out []Check
	for _, img := range imgs {
		name := imageName(img)
		root := filepath.Join("/", img.Subvolume)
		for _, c := range []Check{CheckInit(name, root, opts.Init), CheckKernel(name, root), CheckFstab(name, root, opts.RWLayer)} {
			c.Store = img.Store
			out = append(out, c)
		}
	}
	return out
}

// relative is the host path p below /, as the stores take it.
func relative(p string) string {
	if rel := strings.TrimPrefix(filepath.Clean(p), "/"); rel != "" {
		return rel
	}
	return "."
}

func imageName(img snapshot.Image) string {
	if len(img.Tags) > 0 {
		return img.Tags[0]
	}
	if r, err := snapshot.ParseRef(img.Ref); err == nil {
		return r.Familiar()
	}
	return img.Ref
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// CheckKernel reports whether the image's kernels have their modules.
func CheckKernel(name, root string) Check {
	c := Check{Name: "kernel of " + name}
	s, err := imagekernel.ScanRoot(root)
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, err.Error(), "check that the image's root "+root+" is readable"
		return c
	}
	if len(s.Kernels) == 0 {
		c.Status = Warn
		c.Detail = "no kernel in the image: `dockroot install` cannot install it, and a kernel from elsewhere finds no modules in its /lib/modules"
		c.Fix = imagekernel.InstallHint
		return c
	}
	if p := s.Problems(); len(p) > 0 {
		c.Status, c.Detail = Fail, strings.Join(p, "; ")
		c.Fix = "reinstall the kernel package in the Dockerfile (e.g. `RUN apt-get install -y --reinstall linux-image-amd64`), remove stale /lib/modules directories, and build the image again"
		return c
	}
	vs := make([]string, len(s.Kernels))
	for i, k := range s.Kernels {
		vs[i] = k.Version + " (/" + k.Rel + ")"
	}
	c.Status, c.Detail = OK, "with its modules: "+strings.Join(vs, ", ")
	return c
}
