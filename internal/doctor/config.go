package doctor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dockroot/dockroot/internal/layout"
)

// DockerConfig is what of dockerd's daemon.json decides its image store.
type DockerConfig struct {
	Driver string // "storage-driver"; "" when not set
	// Snapshotter is "features": {"containerd-snapshotter": …}; nil when
	// not set, so that Docker's version decides.
	Snapshotter *bool
}

// ParseDaemonJSON reads the settings DockerStoreOf needs from daemon.json.
func ParseDaemonJSON(data []byte) (DockerConfig, error) {
	var raw struct {
		StorageDriver string           `json:"storage-driver"`
		Features      map[string]*bool `json:"features"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return DockerConfig{}, err
	}
	return DockerConfig{Driver: raw.StorageDriver, Snapshotter: raw.Features["containerd-snapshotter"]}, nil
}

// StoreOf is the image store a configuration gives, and whether dockroot
// can boot from it.
type StoreOf struct {
	Store    string // layout.StoreGraphDriver or layout.StoreContainerd
	Driver   string // graph driver or containerd snapshotter; "" when the machine decides
	Bootable bool
	Detail   string // the configuration and what it gives, in Docker's terms
}

// DockerStoreOf says which store a daemon.json gives, as moby's
// daemon/image_store_choice.go decides it for Docker 29: a graph driver
// named without the snapshotter feature keeps the classic store (Docker 29
// too); the snapshotter feature gives the containerd image store, whose
// snapshotter is the driver named ("btrfs" gives containerd's btrfs
// snapshotter) or overlayfs; neither gives Docker 29's default, the
// containerd store with overlayfs. Only a driver named btrfs is sure to
// boot: the one dockerd picks by itself is overlay2 wherever overlay2
// runs.
func DockerStoreOf(c DockerConfig) StoreOf {
	on := c.Snapshotter != nil && *c.Snapshotter
	off := c.Snapshotter != nil && !*c.Snapshotter
	switch {
	case on && c.Driver == "btrfs":
		return StoreOf{layout.StoreContainerd, "btrfs", true,
			`"storage-driver": "btrfs" with "containerd-snapshotter": true gives Docker's containerd image store with containerd's btrfs snapshotter`}
	case on:
		sn := c.Driver
		if sn == "" || sn == "overlay2" {
			sn = "overlayfs"
		}
		return StoreOf{layout.StoreContainerd, sn, false,
			fmt.Sprintf(`"containerd-snapshotter": true with %s gives Docker's containerd image store with the %s snapshotter, whose snapshots are not btrfs subvolumes`, driverSetting(c.Driver), sn)}
	case c.Driver == "btrfs":
		return StoreOf{layout.StoreGraphDriver, "btrfs", true,
			`"storage-driver": "btrfs" without "containerd-snapshotter": true gives Docker's classic store with the btrfs graph driver (Docker 29 too)`}
	case c.Driver != "":
		return StoreOf{layout.StoreGraphDriver, c.Driver, false,
			fmt.Sprintf(`"storage-driver": %q gives Docker's classic store with the %s graph driver, whose layers are not btrfs subvolumes`, c.Driver, c.Driver)}
	case off:
		return StoreOf{layout.StoreGraphDriver, "", false,
			`"containerd-snapshotter": false with no "storage-driver" gives Docker's classic store with the graph driver dockerd picks (overlay2 wherever it runs), not necessarily btrfs`}
	default:
		return StoreOf{layout.StoreContainerd, "overlayfs", false,
			`no "storage-driver" and no "containerd-snapshotter" gives Docker 29's default, the containerd image store with the overlayfs snapshotter, whose snapshots are not btrfs subvolumes ` +
				`(Docker 28 and older: the classic store with the graph driver dockerd picks, overlay2 wherever it runs)`}
	}
}

func driverSetting(d string) string {
	if d == "" {
		return `no "storage-driver"`
	}
	return fmt.Sprintf(`"storage-driver": %q`, d)
}

// CheckDockerConfig reads daemon.json at path and says which store it
// gives, warning when that store cannot boot; ok is false when there is no file to judge (dockerd's defaults
// then apply, which the data root's layout shows).
func CheckDockerConfig(path string) (Check, bool) {
	c := Check{Name: "Docker configuration"}
	if path == "-" {
		return c, false
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, false
	}
	var cfg DockerConfig
	if err == nil {
		cfg, err = ParseDaemonJSON(data)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
		c.Status, c.Detail, c.Fix = Fail, err.Error(), "fix the JSON syntax of "+path+", then restart dockerd"
		return c, true
	}
	s := DockerStoreOf(cfg)
	c.Detail = path + ": " + s.Detail
	c.Store = s.Store
	// A configuration that cannot boot is a warning, not a failure: the
	// store's own checks fail on what is on disk, and a machine that boots
	// from another store may keep Docker as it is.
	if s.Bootable {
		c.Status = OK
	} else {
		c.Status, c.Fix = Warn, DaemonJSONFix
	}
	return c, true
}

// PodmanConfig is what of containers/storage's storage.conf decides
// Podman's store.
type PodmanConfig struct {
	Driver    string // [storage] driver; "" when not set (Podman then picks overlay)
	GraphRoot string // [storage] graphroot; "" is /var/lib/containers/storage
}

// ParseStorageConf reads the [storage] table's driver and graphroot from
// storage.conf, a TOML file; only the basic string form `key = "value"`
// that storage.conf uses is understood.
func ParseStorageConf(data []byte) (PodmanConfig, error) {
	var c PodmanConfig
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			table = strings.TrimSpace(strings.Trim(line, "[]"))
			continue
		}
		if table != "storage" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return c, fmt.Errorf("line %d: %q is not key = value", n, line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key != "driver" && key != "graphroot" {
			continue
		}
		if i := strings.Index(val, "#"); i >= 0 && !strings.HasPrefix(val, `"`) {
			val = strings.TrimSpace(val[:i])
		}
		s, err := strconv.Unquote(firstString(val))
		if err != nil {
			return c, fmt.Errorf("line %d: %s = %s: want a quoted string", n, key, val)
		}
		if key == "driver" {
			c.Driver = s
		} else {
			c.GraphRoot = s
		}
	}
	return c, sc.Err()
}

// firstString is the quoted string that starts val, without a comment
// after it.
func firstString(val string) string {
	if len(val) < 2 || (val[0] != '"' && val[0] != '\'') {
		return val
	}
	if val[0] == '\'' { // a TOML literal string has no escapes
		if end := strings.IndexByte(val[1:], '\''); end >= 0 {
			return strconv.Quote(val[1 : end+1])
		}
		return val
	}
	for i := 1; i < len(val); i++ {
		switch val[i] {
		case '\\':
			i++
		case '"':
			return val[:i+1]
		}
	}
	return val
}

// PodmanStoreOf says whether a storage.conf gives a Podman store dockroot
// boots: rootful Podman with the btrfs driver. Podman's default driver is
// overlay, vfs copies every layer into a plain directory.
func PodmanStoreOf(c PodmanConfig) StoreOf {
	root := c.GraphRoot
	if root == "" {
		root = "/" + layout.DefaultPodmanPath
	}
	switch c.Driver {
	case "btrfs":
		return StoreOf{layout.StorePodman, "btrfs", true, fmt.Sprintf(`driver = "btrfs" gives rootful Podman's store with the btrfs driver in %s`, root)}
	case "":
		return StoreOf{layout.StorePodman, "overlay", false, fmt.Sprintf(`no driver set gives Podman's default, the overlay driver, in %s, whose layers are not btrfs subvolumes`, root)}
	default:
		return StoreOf{layout.StorePodman, c.Driver, false, fmt.Sprintf(`driver = %q gives Podman's store with the %s driver in %s, whose layers are not btrfs subvolumes`, c.Driver, c.Driver, root)}
	}
}

// CheckPodmanConfig reads storage.conf at path and says which store it
// gives; ok is false when there is no file ("-" or missing).
func CheckPodmanConfig(path string) (Check, bool) {
	c := Check{Name: "Podman configuration", Store: layout.StorePodman}
	if path == "-" {
		return c, false
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, false
	}
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, err.Error(), "make "+path+" readable"
		return c, true
	}
	cfg, err := ParseStorageConf(data)
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, fmt.Sprintf("%s: %v", path, err), "fix the TOML syntax of "+path
		return c, true
	}
	s := PodmanStoreOf(cfg)
	c.Detail = path + ": " + s.Detail
	if s.Bootable {
		c.Status = OK
	} else {
		c.Status, c.Fix = Warn, PodmanStorageFix
	}
	return c, true
}

// rootlessStore is where rootless Podman keeps a user's images,
// relative to the home directory ($XDG_DATA_HOME/containers/storage).
const rootlessStore = ".local/share/containers/storage"

// RootlessFix is what to do with an image in a rootless Podman store.
const RootlessFix = `dockroot boots rootful Podman's store only: build the image as root (sudo podman build), or copy it there ` +
	`(podman image scp IMAGE root@localhost::, run as the user), with driver = "btrfs" in /etc/containers/storage.conf`

// IsRootless says whether graphRoot is a rootless Podman store: in a home
// directory's .local/share/containers/storage.
func IsRootless(graphRoot string) bool {
	p := filepath.ToSlash(filepath.Clean(graphRoot))
	return strings.HasSuffix(p, "/"+rootlessStore) || strings.Contains(p, "/"+rootlessStore+"/")
}

// rootlessDetail explains why a rootless store cannot boot.
func rootlessDetail(root string) string {
	return root + " is a rootless Podman store: its files are owned by the user's subordinate IDs (/etc/subuid), " +
		"so the booted system would see every owner shifted, and the store is a user's, not the machine's"
}

// CheckRootlessPodman looks for rootless Podman stores under the home
// directories in homes (/home/*) and warns for each that holds images:
// a user who built there finds the image missing from the boot.
func CheckRootlessPodman(homes string) []Check {
	users, err := os.ReadDir(homes)
	if err != nil {
		return nil
	}
	var out []Check
	for _, u := range users {
		if !u.IsDir() {
			continue
		}
		root := filepath.Join(homes, u.Name(), rootlessStore)
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		var drivers []string
		for _, e := range ents {
			if d, ok := strings.CutSuffix(e.Name(), "-images"); ok && d != "" && e.IsDir() {
				drivers = append(drivers, d)
			}
		}
		if len(drivers) == 0 {
			continue
		}
		out = append(out, Check{Name: "rootless Podman store of " + u.Name(), Store: layout.StorePodman, Status: Warn,
			Detail: fmt.Sprintf("%s (%s driver): its images are not booted", rootlessDetail(root), strings.Join(drivers, ", ")),
			Fix:    RootlessFix})
	}
	return out
}
