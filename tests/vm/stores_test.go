package vm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// podmanParams boots desk:1 from rootful Podman's store at its default
// place (podman_path= left out), the top layer and the rw layer as in the
// ancestor's line; the disk holds no Docker store at all.
const podmanParams = "root=LABEL=linux rootflags=subvol=docker_rwlayer rw toplayer=LABEL=linux toplayer_path=boot_docker dockroot.store=podman docker_image=desk:1"

var podmanDiskOnce once[string]

// podmanDisk is deskDisk with the images built by Podman (btrfs driver)
// into var/lib/containers/storage instead of by dockerd.
func podmanDisk(t *testing.T) string {
	testenv.RequireRoot(t, "podman")
	src := podmanDiskOnce.get(t, "podman desk disk", func() (string, error) {
		path := filepath.Join(work, "podman-desk.img")
		return path, vmkit.BuildDisk(path, vmkit.DiskSpec{
			SizeMB:       1024,
			Label:        rootLabel,
			PodmanPath:   layout.DefaultPodmanPath,
			PodmanImages: func(p *testenv.Podman) error { return deskImages(p) },
			Files:        []vmkit.File{{Path: toplayerPath + "/etc/hostname", Data: toplayerHost + "\n"}},
		})
	})
	return copyDisk(t, src)
}

// TestBootFromPodmanStore: an image built by rootful Podman with its btrfs
// driver boots as the standalone initramfs boots a Docker image: the
// image's init is PID 1 with the top layer's hostname, boot.json names the
// Podman store's image, and the second boot is fresh with the first boot's
// layer kept as NAME.prev.1. Podman's own image is never written.
func TestBootFromPodmanStore(t *testing.T) {
	testenv.RequireVM(t)
	disk := podmanDisk(t)

	console1 := bootDesk(t, podmanParams, vmkit.Drive{File: disk})
	first := parseMarker(t, console1)
	if first.Image != "desk:1" || first.Hostname != toplayerHost || first.PID != "1" {
		t.Errorf("booted system: image=%s hostname=%s pid=%s; want image=desk:1 hostname=%s (top layer) pid=1",
			first.Image, first.Hostname, first.PID, toplayerHost)
	}
	rec := parseBootJSON(t, console1)
	if !strings.Contains(rec.Ref, "desk:1") || rec.ImageID == "" ||
		!strings.Contains(rec.ImageSubvolume, filepath.Join(layout.DefaultPodmanPath, "btrfs", "subvolumes")) {
		t.Errorf("boot.json ref=%s image_id=%s image_subvolume=%s; want desk:1 from %s/btrfs/subvolumes",
			rec.Ref, rec.ImageID, rec.ImageSubvolume, layout.DefaultPodmanPath)
	}

	console2 := bootDesk(t, podmanParams, vmkit.Drive{File: disk})
	second := parseMarker(t, console2)
	if strings.Contains(console2, "DOCKROOT-STALE") || !strings.Contains(console2, "DOCKROOT-FRESH") {
		t.Errorf("boot 2 from the Podman store sees the file boot 1 wrote into /:\n%s", vmkit.Tail(console2, 20))
	}
	inspect(t, disk, "btrfs", func(top string) error {
		for _, c := range []struct{ layer, want string }{
			{rwLayer + ".prev.1", first.BootID},
			{rwLayer, second.BootID},
		} {
			data, err := os.ReadFile(filepath.Join(top, c.layer, "left-by-previous-boot"))
			if err != nil {
				t.Errorf("after two boots from the Podman store: %v", err)
			} else if got := strings.TrimSpace(string(data)); got != c.want {
				t.Errorf("%s/left-by-previous-boot = %s, want boot_id %s", c.layer, got, c.want)
			}
		}
		image := filepath.Join(top, strings.TrimPrefix(rec.ImageSubvolume, "/"))
		if _, err := os.Stat(filepath.Join(image, "left-by-previous-boot")); err == nil {
			t.Errorf("Podman's image subvolume %s was written by a boot", rec.ImageSubvolume)
		}
		return nil
	})
}

// debianStoreMarker is debianMarkerScript with what the freshness check
// needs: it says whether / holds the file a previous boot left, leaves one
// with this boot's ID, and prints that ID on the marker line.
const debianStoreMarker = `#!/bin/sh
{
	if [ -e /left-by-previous-boot ]; then
		echo "DOCKROOT-STALE $(cat /left-by-previous-boot)"
	else
		echo DOCKROOT-FRESH
	fi
	cat /proc/sys/kernel/random/boot_id >/left-by-previous-boot
	sync
	echo "DOCKROOT-MARKER image=debian multi-user=$(systemctl is-active multi-user.target) init=$(cat /proc/1/comm) hostname=$(cat /etc/hostname) boot_id=$(cat /proc/sys/kernel/random/boot_id)"
	echo DOCKROOT-BOOTJSON-BEGIN
	cat /run/dockroot/boot.json
	echo DOCKROOT-BOOTJSON-END
} >/dev/console 2>&1
systemctl --no-block poweroff
`

var debianStoreMarkerRE = regexp.MustCompile(`DOCKROOT-MARKER image=debian multi-user=(\S+) init=(\S+) hostname=(\S+) boot_id=(\S+)`)

const (
	debianStoreRef  = "debian-desk:1"
	debianStoreHost = "debian-store-host"
	// debianStoreParams are the ancestor's parameters with the store
	// named and the Debian image; the store's own path parameter is left
	// at its default (Docker's managed containerd under docker_path=,
	// Podman's graph root at podman_path='s default).
	debianStoreParams = "root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer=LABEL=linux toplayer_path=boot_docker docker_image=" + debianStoreRef
)

// debianStoreFiles are what the Debian image gets on top of debootstrap:
// debianStoreMarker, run by a unit once multi-user.target is active.
var debianStoreFiles = debianMarkerFiles("", debianStoreMarker)

// debianStoreImage imports the debootstrap Debian with debianStoreFiles
// as debianStoreRef into e and, with unpack, leaves it unpacked with
// docker create, as docker run would (Podman unpacks on import).
func debianStoreImage(e vmkit.Engine, unpack bool) error {
	cache, err := vmkit.CacheDir()
	if err != nil {
		return err
	}
	tarball, err := vmkit.DebootstrapTarball(cache, "bookworm")
	if err != nil {
		return err
	}
	if err := vmkit.ImportTarballWith(e, debianStoreRef, tarball, debianStoreFiles, `CMD ["/sbin/init"]`); err != nil {
		return err
	}
	if !unpack {
		return nil
	}
	id, err := e.Run(nil, "create", "--network", "none", debianStoreRef)
	if err != nil {
		return err
	}
	_, err = e.Run(nil, "rm", strings.TrimSpace(id))
	return err
}

// docker29Bins returns the Docker 29 that `make daemons` built, skipping t
// when it is not built (a VM test does not spend the build's minutes) or
// when a system containerd would take the place of its own.
func docker29Bins(t *testing.T) *testenv.Docker29Bins {
	t.Helper()
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := testenv.Docker29Built(cache)
	if err != nil {
		t.Skipf("booting from Docker 29's containerd image store: %v", err)
	}
	if sock, ok := testenv.SystemContainerd(); ok {
		t.Skipf("a system containerd listens on %s: dockerd 29 would use it instead of its own containerd %s", sock, testenv.ContainerdVersion)
	}
	return bins
}

// TestBootDebianFromContainerdStore: a Debian image with systemd, put
// into Docker 29's containerd image store with containerd's btrfs
// snapshotter (docker import, then docker create to unpack it), boots to
// multi-user.target with the top layer's hostname; boot.json names the
// image by Docker's own ID and store and its subvolume is the
// snapshotter's; the second boot is fresh and keeps the first boot's
// layer as NAME.prev.1.
func TestBootDebianFromContainerdStore(t *testing.T) {
	testenv.RequireFullVM(t, "a systemd image booted from Docker 29's containerd image store")
	testenv.RequireRoot(t, "docker")
	bins := docker29Bins(t)
	var id string
	disk := debianStoreDisk(t, vmkit.DiskSpec{
		DockerPath: dockerPath,
		Docker29:   bins,
		Images: func(d *testenv.Dockerd) error {
			if err := debianStoreImage(d, true); err != nil {
				return err
			}
			out, err := d.Run(nil, "image", "inspect", "--format", "{{.Id}}", debianStoreRef)
			id = strings.TrimSpace(out)
			return err
		},
	})
	testDebianStoreBoots(t, disk, debianStoreParams+" dockroot.store=containerd", layout.StoreContainerd, id,
		dockerPath+"/"+layout.DockerContainerdDir+"/io.containerd.snapshotter.v1.btrfs/snapshots/")
}

// TestBootDebianFromPodmanStore is TestBootDebianFromContainerdStore with
// the image imported by rootful Podman with its btrfs driver into its
// default graph root.
func TestBootDebianFromPodmanStore(t *testing.T) {
	testenv.RequireFullVM(t, "a systemd image booted from Podman's store")
	testenv.RequireRoot(t, "podman")
	var id string
	disk := debianStoreDisk(t, vmkit.DiskSpec{
		PodmanPath: layout.DefaultPodmanPath,
		PodmanImages: func(p *testenv.Podman) error {
			if err := debianStoreImage(p, false); err != nil {
				return err
			}
			out, err := p.Run(nil, "image", "inspect", "--format", "{{.Id}}", debianStoreRef)
			id = "sha256:" + strings.TrimSpace(out)
			return err
		},
	})
	testDebianStoreBoots(t, disk, debianStoreParams+" dockroot.store=podman", layout.StorePodman, id,
		layout.DefaultPodmanPath+"/btrfs/subvolumes/")
}

// debianStoreDisk builds spec (its store and images) on a btrfs disk of
// the test's own, with the top layer setting debianStoreHost.
func debianStoreDisk(t *testing.T, spec vmkit.DiskSpec) string {
	t.Helper()
	spec.SizeMB, spec.Label = 3072, rootLabel
	spec.Files = []vmkit.File{{Path: toplayerPath + "/etc/hostname", Data: debianStoreHost + "\n"}}
	disk := filepath.Join(t.TempDir(), "debian-store.img")
	start := time.Now()
	if err := vmkit.BuildDisk(disk, spec); err != nil {
		t.Fatal(err)
	}
	t.Logf("Debian disk built in %v", time.Since(start).Round(time.Second))
	return disk
}

// bootDebian boots disk with params and returns the console once the
// marker unit has printed boot.json and the guest has powered off.
func bootDebian(t *testing.T, params, disk string) string {
	t.Helper()
	vm := Boot(t, vmkit.Options{Initrd: initramfs(t), Append: params, Drives: []vmkit.Drive{{File: disk}}})
	expect(t, vm, "DOCKROOT-MARKER", 600*time.Second)
	expect(t, vm, "DOCKROOT-BOOTJSON-END", 60*time.Second)
	if err := vm.WaitExit(180 * time.Second); err != nil {
		t.Fatal(err)
	}
	return vm.Console.String()
}

// testDebianStoreBoots boots disk twice with params and checks each boot:
// systemd reached multi-user.target as PID 1 with the top layer's
// hostname, boot.json names the image of store with id (as the engine
// reports it) in a subvolume under subvolPrefix, and the second boot is
// fresh, with the first boot's layer kept as NAME.prev.1 and the store's
// subvolume never written.
func testDebianStoreBoots(t *testing.T, disk, params, store, id, subvolPrefix string) {
	t.Helper()
	var bootIDs []string
	var rec *bootRecord
	for boot := 1; boot <= 2; boot++ {
		console := bootDebian(t, params, disk)
		m := debianStoreMarkerRE.FindStringSubmatch(console)
		if m == nil {
			t.Fatalf("boot %d from the %s store: marker line incomplete:\n%s", boot, store, vmkit.Tail(console, 30))
		}
		if m[1] != "active" || m[2] != "systemd" || m[3] != debianStoreHost {
			t.Errorf("boot %d from the %s store: multi-user.target %s, PID 1 %s, hostname %s; want active, systemd, %s (top layer)",
				boot, store, m[1], m[2], m[3], debianStoreHost)
		}
		if strings.Contains(console, "DOCKROOT-STALE") || !strings.Contains(console, "DOCKROOT-FRESH") {
			t.Errorf("boot %d from the %s store sees a file an earlier boot wrote into /:\n%s", boot, store, vmkit.Tail(console, 30))
		}
		bootIDs = append(bootIDs, m[4])
		rec = parseBootJSON(t, console)
		if !strings.Contains(rec.Ref, debianStoreRef) || rec.ImageID != id || rec.ImageStore != store ||
			!strings.HasPrefix(strings.TrimPrefix(rec.ImageSubvolume, "/"), subvolPrefix) || !rec.Layer.Fresh {
			t.Errorf("boot %d boot.json: ref=%s image_id=%s image_store=%s image_subvolume=%s fresh=%v; want %s, %s, %s, under %s, fresh",
				boot, rec.Ref, rec.ImageID, rec.ImageStore, rec.ImageSubvolume, rec.Layer.Fresh, debianStoreRef, id, store, subvolPrefix)
		}
	}
	inspect(t, disk, "btrfs", func(top string) error {
		for _, c := range []struct{ layer, want string }{
			{rwLayer + ".prev.1", bootIDs[0]},
			{rwLayer, bootIDs[1]},
		} {
			data, err := os.ReadFile(filepath.Join(top, c.layer, "left-by-previous-boot"))
			if err != nil {
				t.Errorf("after two boots from the %s store: %v", store, err)
			} else if got := strings.TrimSpace(string(data)); got != c.want {
				t.Errorf("%s/left-by-previous-boot = %s, want boot_id %s", c.layer, got, c.want)
			}
		}
		image := filepath.Join(top, strings.TrimPrefix(rec.ImageSubvolume, "/"))
		if _, err := os.Stat(filepath.Join(image, "left-by-previous-boot")); err == nil {
			t.Errorf("the %s store's image subvolume %s was written by a boot", store, rec.ImageSubvolume)
		}
		return nil
	})
}
