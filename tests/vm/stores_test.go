package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
