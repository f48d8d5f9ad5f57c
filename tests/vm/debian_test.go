package vm

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// debianMarkerUnit runs once multi-user.target is active (it is wanted by
// the target and ordered after it, so the target does not wait for it),
// reports on the console and powers off.
const debianMarkerUnit = `[Unit]
Description=dockroot VM test marker
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dockroot-marker

[Install]
WantedBy=multi-user.target
`

const debianMarkerScript = `#!/bin/sh
{
	echo "DOCKROOT-MARKER image=debian multi-user=$(systemctl is-active multi-user.target) init=$(cat /proc/1/comm) hostname=$(cat /etc/hostname)"
	echo DOCKROOT-BOOTJSON-BEGIN
	cat /run/dockroot/boot.json
	echo DOCKROOT-BOOTJSON-END
} >/dev/console 2>&1
systemctl --no-block poweroff
`

// debianMarkerFiles are the files that make a Debian image a test image,
// each path under dir ("rootfs/" in a build context, "" in an image):
// debianMarkerUnit running marker, and serial-getty@ttyS0 masked. The
// images have no udev (debootstrap's minbase), so systemd never sees
// ttyS0's device, and the getty that console=ttyS0 asks for would hold
// multi-user.target back for its 90 s device timeout at every boot; no
// test logs in on the console.
func debianMarkerFiles(dir, marker string) []vmkit.File {
	return []vmkit.File{
		{Path: dir + "etc/systemd/system/dockroot-marker.service", Data: debianMarkerUnit},
		{Path: dir + "etc/systemd/system/multi-user.target.wants/dockroot-marker.service", Link: "../dockroot-marker.service"},
		{Path: dir + "usr/local/sbin/dockroot-marker", Mode: 0o755, Data: marker},
		{Path: dir + "etc/systemd/system/serial-getty@ttyS0.service", Link: "/dev/null"},
	}
}

// Case 6: a real distribution. Debian bookworm from debootstrap, imported
// into Docker, with a unit added by a Dockerfile, boots with systemd as
// PID 1 to multi-user.target and powers itself off.
//
// The image has no kernel modules (/lib/modules is empty): everything the
// boot needs is in the initramfs or built into Debian's kernel, and systemd
// does not need more in a VM without hardware to drive.
func TestDebianSystemd(t *testing.T) {
	testenv.RequireVM(t)
	testenv.RequireRoot(t, "debootstrap")
	const host = "debian-toplayer-host"
	disk := debianDisk(t, 3072, "debian-desk:1", debianMarkerScript, host)

	vm := Boot(t, vmkit.Options{
		Initrd: initramfs(t),
		Append: ancestorParam + " docker_image=debian-desk:1",
		Drives: []vmkit.Drive{{File: disk}},
	})
	expect(t, vm, "DOCKROOT-MARKER", 600*time.Second)
	if err := vm.WaitExit(180 * time.Second); err != nil {
		t.Fatal(err)
	}
	console := vm.Console.String()
	m := regexp.MustCompile(`DOCKROOT-MARKER image=debian multi-user=(\S+) init=(\S+) hostname=(\S+)`).FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("marker line incomplete:\n%s", vmkit.Tail(console, 30))
	}
	if m[1] != "active" || m[2] != "systemd" || m[3] != host {
		t.Errorf("booted Debian: multi-user.target %s, PID 1 %s, hostname %s; want active, systemd, %s", m[1], m[2], m[3], host)
	}
	if rec := parseBootJSON(t, console); rec.Layer.Subvolume != rwLayer {
		t.Errorf("boot.json rw layer = %q, want %s", rec.Layer.Subvolume, rwLayer)
	}
}

// debianDisk builds a btrfs disk of sizeMB holding, in a real dockerd's
// store at docker_path=, the debootstrap Debian (systemd as init) tagged
// ref with debianMarkerUnit running marker once multi-user.target is
// active, and a top layer that sets the hostname to host.
func debianDisk(t *testing.T, sizeMB int, ref, marker, host string) string {
	t.Helper()
	return debianDiskWith(t, sizeMB, ref, marker, host, debianExtra{})
}

// debianExtra is what a test adds to debianDisk's image and top layer.
type debianExtra struct {
	// Files go into the build context; those under rootfs/ end up in the
	// image with the marker.
	Files []vmkit.File
	// Dockerfile lines run after the marker's COPY (RUN useradd ...).
	Dockerfile []string
	// Toplayer files are written relative to the btrfs top level, beside
	// the hostname (toplayerPath + "/etc/passwd").
	Toplayer []vmkit.File
}

// debianDiskWith is debianDisk with more in the image and the top layer.
func debianDiskWith(t *testing.T, sizeMB int, ref, marker, host string, extra debianExtra) string {
	t.Helper()
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tarball, err := vmkit.DebootstrapTarball(cache, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap tarball %s ready in %v", tarball, time.Since(start).Round(time.Second))
	disk := filepath.Join(t.TempDir(), "debian.img")
	start = time.Now()
	err = vmkit.BuildDisk(disk, vmkit.DiskSpec{
		SizeMB:     sizeMB,
		Label:      rootLabel,
		DockerPath: dockerPath,
		Images: func(d *testenv.Dockerd) error {
			f, err := os.Open(tarball)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := vmkit.Import(d, "vmtest/debian:bookworm", f); err != nil {
				return err
			}
			files := append(debianMarkerFiles("rootfs/", marker), extra.Files...)
			dockerfile := append([]string{"FROM vmtest/debian:bookworm", "COPY rootfs/ /"}, extra.Dockerfile...)
			return vmkit.Build(d, ref, dockerfile, files)
		},
		Files: append([]vmkit.File{{Path: toplayerPath + "/etc/hostname", Data: host + "\n"}}, extra.Toplayer...),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Debian disk built in %v", time.Since(start).Round(time.Second))
	return disk
}
