package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
	"golang.org/x/sys/unix"
)

// Each daemon.json setting gives the store moby's
// daemon/image_store_choice.go picks in Docker 29; only the two with
// "storage-driver": "btrfs" boot.
func TestDockerStoreOf(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		json     string
		store    string
		driver   string
		bootable bool
		detail   string
	}{
		{`{"storage-driver": "btrfs"}`, layout.StoreGraphDriver, "btrfs", true, "classic store with the btrfs graph driver"},
		{`{"storage-driver": "btrfs", "features": {"containerd-snapshotter": false}}`, layout.StoreGraphDriver, "btrfs", true, "classic store"},
		{`{"storage-driver": "btrfs", "features": {"containerd-snapshotter": true}}`, layout.StoreContainerd, "btrfs", true, "containerd's btrfs snapshotter"},
		{`{"features": {"containerd-snapshotter": true}}`, layout.StoreContainerd, "overlayfs", false, "overlayfs snapshotter"},
		{`{"storage-driver": "overlay2", "features": {"containerd-snapshotter": true}}`, layout.StoreContainerd, "overlayfs", false, "overlayfs snapshotter"},
		{`{"storage-driver": "overlay2"}`, layout.StoreGraphDriver, "overlay2", false, "overlay2 graph driver"},
		{`{"storage-driver": "vfs"}`, layout.StoreGraphDriver, "vfs", false, "vfs graph driver"},
		{`{"features": {"containerd-snapshotter": false}}`, layout.StoreGraphDriver, "", false, "graph driver dockerd picks"},
		{`{}`, layout.StoreContainerd, "overlayfs", false, "Docker 29's default"},
		{`{"log-level": "debug"}`, layout.StoreContainerd, "overlayfs", false, "Docker 29's default"},
	} {
		cfg, err := ParseDaemonJSON([]byte(c.json))
		if err != nil {
			t.Fatalf("ParseDaemonJSON(%s): %v", c.json, err)
		}
		got := DockerStoreOf(cfg)
		if got.Store != c.store || got.Driver != c.driver || got.Bootable != c.bootable || !strings.Contains(got.Detail, c.detail) {
			t.Errorf("DockerStoreOf(%s) = %+v; want %s/%s bootable=%v, detail with %q", c.json, got, c.store, c.driver, c.bootable, c.detail)
		}
	}
	if cfg, _ := ParseDaemonJSON([]byte(`{"features": {"containerd-snapshotter": true}}`)); cfg.Snapshotter == nil || *cfg.Snapshotter != yes {
		t.Errorf("snapshotter true parsed as %v", cfg.Snapshotter)
	}
	if cfg, _ := ParseDaemonJSON([]byte(`{"features": {"containerd-snapshotter": false}}`)); cfg.Snapshotter == nil || *cfg.Snapshotter != no {
		t.Errorf("snapshotter false parsed as %v", cfg.Snapshotter)
	}
}

func TestCheckDockerConfig(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, data string // data "" writes no file
		ok         bool
		status     Status
		want       string // in Detail or Fix
	}{
		{"none", "", false, "", ""},
		{"classic btrfs", `{"storage-driver": "btrfs"}`, true, OK, "classic store"},
		{"containerd btrfs", `{"storage-driver": "btrfs", "features": {"containerd-snapshotter": true}}`, true, OK, "containerd image store"},
		{"default", `{}`, true, Warn, `"containerd-snapshotter": true}} (Docker's containerd image store`},
		{"broken", `{"storage-driver": `, true, Fail, "JSON syntax"},
	} {
		path := filepath.Join(dir, c.name+".json")
		if c.data != "" {
			if err := os.WriteFile(path, []byte(c.data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, ok := CheckDockerConfig(path)
		if ok != c.ok || (ok && (got.Status != c.status || !strings.Contains(got.Detail+" "+got.Fix, c.want) || !strings.Contains(got.Detail, path))) {
			t.Errorf("%s: CheckDockerConfig = %+v, %v; want ok=%v status %s with %q and the path", c.name, got, ok, c.ok, c.status, c.want)
		}
	}
}

func TestParseStorageConf(t *testing.T) {
	for _, c := range []struct {
		data    string
		want    PodmanConfig
		wantErr string
	}{
		{"[storage]\ndriver = \"btrfs\"\ngraphroot = \"/var/lib/containers/storage\"\n", PodmanConfig{"btrfs", "/var/lib/containers/storage"}, ""},
		{"# comment\n[storage]\n  driver = \"overlay\" # Podman's default\nrunroot = \"/run/containers/storage\"\n", PodmanConfig{Driver: "overlay"}, ""},
		{"[storage]\ndriver = 'vfs'\n", PodmanConfig{Driver: "vfs"}, ""},
		{"[storage.options]\ndriver = \"btrfs\"\n", PodmanConfig{}, ""}, // not the [storage] table
		{"[storage.options.overlay]\nmountopt = \"nodev\"\n[storage]\ngraphroot = \"/srv/c\"\n", PodmanConfig{GraphRoot: "/srv/c"}, ""},
		{"", PodmanConfig{}, ""},
		{"[storage]\ndriver btrfs\n", PodmanConfig{}, "line 2"},
		{"[storage]\ndriver = btrfs\n", PodmanConfig{}, "want a quoted string"},
	} {
		got, err := ParseStorageConf([]byte(c.data))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseStorageConf(%q) = %+v, %v; want an error with %q", c.data, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseStorageConf(%q) = %+v, %v; want %+v", c.data, got, err, c.want)
		}
	}
}

func TestPodmanStoreOf(t *testing.T) {
	for _, c := range []struct {
		cfg      PodmanConfig
		bootable bool
		detail   string
	}{
		{PodmanConfig{Driver: "btrfs"}, true, "btrfs driver in /var/lib/containers/storage"},
		{PodmanConfig{Driver: "btrfs", GraphRoot: "/srv/containers"}, true, "/srv/containers"},
		{PodmanConfig{}, false, "overlay driver"},
		{PodmanConfig{Driver: "overlay"}, false, "overlay driver"},
		{PodmanConfig{Driver: "vfs"}, false, "vfs driver"},
	} {
		got := PodmanStoreOf(c.cfg)
		if got.Store != layout.StorePodman || got.Bootable != c.bootable || !strings.Contains(got.Detail, c.detail) {
			t.Errorf("PodmanStoreOf(%+v) = %+v; want bootable=%v, detail with %q", c.cfg, got, c.bootable, c.detail)
		}
	}
}

func TestIsRootless(t *testing.T) {
	for p, want := range map[string]bool{
		"/home/alice/.local/share/containers/storage":  true,
		"/home/alice/.local/share/containers/storage/": true,
		"/var/lib/containers/storage":                  false,
		"/srv/containers/storage":                      false,
		"/home/alice/.local/share/containers":          false,
	} {
		if got := IsRootless(p); got != want {
			t.Errorf("IsRootless(%s) = %v, want %v", p, got, want)
		}
	}
}

// A user's rootless store with images warns with how to move the image to
// the rootful store; an empty one, or a home without one, says nothing.
// Pointed at with --podman-root, a rootless store fails.
func TestRootlessPodman(t *testing.T) {
	homes := files(t, map[string]string{
		"alice/.local/share/containers/storage/overlay-images/images.json": "[]",
		"bob/.local/share/containers/storage/":                             "",
		"carol/notes":                                                      "",
	})
	got := CheckRootlessPodman(homes)
	if len(got) != 1 || got[0].Status != Warn || got[0].Store != layout.StorePodman || !strings.Contains(got[0].Name, "alice") ||
		!strings.Contains(got[0].Detail, "overlay driver") || !strings.Contains(got[0].Detail, "subordinate IDs") ||
		!strings.Contains(got[0].Fix, "podman image scp") {
		t.Errorf("CheckRootlessPodman = %+v; want one warning for alice's overlay store with podman image scp", got)
	}

	btrfsFS := func(string) (FSInfo, error) {
		return FSInfo{Type: unix.BTRFS_SUPER_MAGIC, Total: 100 << 30, Avail: 50 << 30}, nil
	}
	checks := Run(Options{DockerRoot: filepath.Join(t.TempDir(), "none"), Store: layout.StorePodman, DaemonJSON: "-", Homes: homes,
		PodmanRoot: filepath.Join(homes, "alice", rootlessStore), Statfs: btrfsFS})
	var root *Check
	for i := range checks {
		if checks[i].Name == "Podman graph root" {
			root = &checks[i]
		}
	}
	if root == nil || root.Status != Fail || !strings.Contains(root.Detail, "rootless") || root.Fix != RootlessFix {
		t.Errorf("Run with a rootless --podman-root: %+v; want a Podman graph root failure saying rootless", checks)
	}
}

// Run reports the configuration files' stores first, and tags each
// store's checks with the store.
func TestRunConfigAndStores(t *testing.T) {
	btrfsFS := func(string) (FSInfo, error) {
		return FSInfo{Type: unix.BTRFS_SUPER_MAGIC, Total: 100 << 30, Avail: 50 << 30}, nil
	}
	dir := t.TempDir()
	daemonJSON := filepath.Join(dir, "daemon.json")
	storageConf := filepath.Join(dir, "storage.conf")
	if err := os.WriteFile(daemonJSON, []byte(`{"storage-driver": "btrfs"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(storageConf, []byte("[storage]\ndriver = \"overlay\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	docker := files(t, map[string]string{"image/btrfs/": ""})
	podman := files(t, map[string]string{"btrfs-images/": ""})
	checks := Run(Options{DockerRoot: docker, PodmanRoot: podman, DaemonJSON: daemonJSON, StorageConf: storageConf, Statfs: btrfsFS, Image: "-"})
	want := map[string][2]string{ // name -> status, store
		"Docker configuration":       {string(OK), layout.StoreGraphDriver},
		"Podman configuration":       {string(Warn), layout.StorePodman},
		"storage driver":             {string(OK), layout.StoreGraphDriver},
		"Podman storage driver":      {string(OK), layout.StorePodman},
		"Podman graph root on btrfs": {string(OK), layout.StorePodman},
	}
	for _, c := range checks {
		if w, ok := want[c.Name]; ok {
			if string(c.Status) != w[0] || c.Store != w[1] {
				t.Errorf("%s: %s, store %q; want %s, store %s (%+v)", c.Name, c.Status, c.Store, w[0], w[1], c)
			}
			delete(want, c.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("checks missing: %v in %+v", want, checks)
	}
	if checks[0].Name != "Docker configuration" || checks[1].Name != "Podman configuration" {
		t.Errorf("the configuration checks do not come first: %+v", checks[:2])
	}
}
