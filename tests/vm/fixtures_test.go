package vm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// deskInit is /sbin/init of the busybox test images. It prints what the
// tests check on one line, leaves a file in / for the freshness test,
// prints boot.json between markers and powers off. It runs as PID 1, so it
// must never exit: poweroff -f does not return.
const deskInit = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
[ -e /proc/self ] || mount -t proc proc /proc
echo "DOCKROOT-MARKER image=$(cat /etc/desk-tag) hostname=$(cat /etc/hostname) pid=$$ boot_id=$(cat /proc/sys/kernel/random/boot_id)"
if [ -e /left-by-previous-boot ]; then
	echo "DOCKROOT-STALE $(cat /left-by-previous-boot)"
else
	echo "DOCKROOT-FRESH"
fi
cat /proc/sys/kernel/random/boot_id > /left-by-previous-boot
echo DOCKROOT-BOOTJSON-BEGIN
cat /run/dockroot/boot.json
echo DOCKROOT-BOOTJSON-END
sync
poweroff -f
`

// The ancestor's parameters: the rw layer, the Docker data root and the
// top layer all on the one btrfs labelled "linux".
const (
	rootLabel     = "linux"
	rwLayer       = "docker_rwlayer"
	dockerPath    = "docker"
	toplayerPath  = "boot_docker"
	toplayerHost  = "vm-toplayer-host"
	ancestorParam = "root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer=LABEL=linux toplayer_path=boot_docker"
	// bakedImage is what the initramfs's /etc/docker-btrfs.json, the
	// ancestor's file, selects: {"docker_image": "desk", "docker_tag": "1"}.
	bakedImage = "desk:1"
)

// deskImages builds desk:1 (busybox and deskInit) and desk:2 (desk:1 with
// a different tag file, one more layer).
func deskImages(d vmkit.Engine) error {
	if err := vmkit.ImportBusybox(d, "vmtest/busybox:base"); err != nil {
		return err
	}
	if err := vmkit.Build(d, "desk:1", []string{"FROM vmtest/busybox:base", "COPY rootfs/ /"}, []vmkit.File{
		{Path: "rootfs/sbin/init", Mode: 0o755, Data: deskInit},
		{Path: "rootfs/etc/desk-tag", Data: "desk:1\n"},
	}); err != nil {
		return err
	}
	return vmkit.Build(d, "desk:2", []string{"FROM desk:1", "COPY desk-tag /etc/desk-tag"}, []vmkit.File{
		{Path: "desk-tag", Data: "desk:2\n"},
	})
}

var deskDiskOnce once[string]

// deskDisk returns a copy, for t alone, of the btrfs disk "linux" holding
// the Docker data root at docker/ with desk:1 and desk:2, and the top layer
// boot_docker/etc/hostname.
func deskDisk(t *testing.T) string {
	src := deskDiskOnce.get(t, "desk disk", func() (string, error) {
		path := filepath.Join(work, "desk.img")
		return path, vmkit.BuildDisk(path, vmkit.DiskSpec{
			SizeMB:     1024,
			Label:      rootLabel,
			DockerPath: dockerPath,
			Images:     func(d *testenv.Dockerd) error { return deskImages(d) },
			Files:      []vmkit.File{{Path: toplayerPath + "/etc/hostname", Data: toplayerHost + "\n"}},
		})
	})
	return copyDisk(t, src)
}

var productOnce once[*vmkit.Product]

// product builds dockroot-init and dockroot from this checkout.
func product(t *testing.T) *vmkit.Product {
	return productOnce.get(t, "dockroot binaries", func() (*vmkit.Product, error) {
		return vmkit.BuildProduct(filepath.Join(work, "bin"))
	})
}

var initramfsOnce once[string]

// initramfs is `dockroot initramfs` for Debian's kernel with ext4 added
// (for the top layer on a second disk) and the ancestor's
// /etc/docker-btrfs.json baked in, selecting bakedImage: with it, the
// ancestor's kernel command line boots as it did.
func initramfs(t *testing.T) string {
	p, k := product(t), Kernel(t)
	return initramfsOnce.get(t, "initramfs", func() (string, error) {
		conf := filepath.Join(work, "docker-btrfs.json")
		name, tag, _ := strings.Cut(bakedImage, ":")
		if err := os.WriteFile(conf, []byte(`{"docker_image": "`+name+`", "docker_tag": "`+tag+`"}`+"\n"), 0o644); err != nil {
			return "", err
		}
		out := filepath.Join(work, "initramfs.img")
		msg, err := p.Initramfs(k, out, "--docker-btrfs-json", conf, "--module", "ext4")
		if err == nil {
			t.Logf("dockroot initramfs:\n%s", strings.TrimSpace(msg))
		}
		return out, err
	})
}

// marker is the line deskInit prints.
type marker struct{ Image, Hostname, PID, BootID string }

var markerRE = regexp.MustCompile(`DOCKROOT-MARKER image=(\S*) hostname=(\S*) pid=(\S*) boot_id=(\S*)`)

// parseMarker finds deskInit's marker line on the console.
func parseMarker(t *testing.T, console string) marker {
	t.Helper()
	m := markerRE.FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("no DOCKROOT-MARKER line on the console:\n%s", vmkit.Tail(console, 40))
	}
	return marker{m[1], m[2], m[3], m[4]}
}

// bootRecord is the part of /run/dockroot/boot.json (bootrecord.Record) the
// tests check. It is declared here, not imported, so that the harness's own
// tests compile while the product does not.
type bootRecord struct {
	Schema         int    `json:"schema"`
	Version        string `json:"dockroot_version"`
	RootDevice     string `json:"root_device"`
	Ref            string `json:"ref"`
	ImageID        string `json:"image_id"`
	ChainID        string `json:"chain_id"`
	ImageSubvolume string `json:"image_subvolume"`
	ImageStore     string `json:"image_store"`
	Layer          struct {
		Subvolume string   `json:"subvolume"`
		SubvolID  uint64   `json:"subvol_id"`
		Fresh     bool     `json:"fresh"`
		Rotated   []string `json:"rotated"`
	} `json:"rw_layer"`
	Toplayer *struct {
		Device  string `json:"device"`
		Path    string `json:"path"`
		Base    string `json:"base"`
		Reused  bool   `json:"reused"`
		Summary struct {
			Files int `json:"Files"`
		} `json:"summary"`
	} `json:"toplayer"`
	Steps []json.RawMessage `json:"steps"`
}

// parseBootJSON decodes the boot.json deskInit printed between its markers.
func parseBootJSON(t *testing.T, console string) *bootRecord {
	t.Helper()
	console = strings.ReplaceAll(console, "\r", "")
	_, rest, ok := strings.Cut(console, "DOCKROOT-BOOTJSON-BEGIN\n")
	body, _, ok2 := strings.Cut(rest, "DOCKROOT-BOOTJSON-END")
	if !ok || !ok2 {
		t.Fatalf("no boot.json between markers on the console:\n%s", vmkit.Tail(console, 40))
	}
	// A slow systemd boot prints "A start job is running" status lines
	// (terminal escapes, which JSON never holds) between the marker's
	// lines: drop them.
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if !strings.Contains(l, "\x1b") {
			lines = append(lines, l)
		}
	}
	body = strings.Join(lines, "\n")
	var rec bootRecord
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatalf("/run/dockroot/boot.json in the booted system: %v\n%s", err, body)
	}
	return &rec
}

// stepTimings returns dockroot's "<step>: done in N ms" console lines.
func stepTimings(console string) []string {
	return regexp.MustCompile(`dockroot: [^\r\n]*done in \d+ ms[^\r\n]*`).FindAllString(console, -1)
}

// A systemd status line printed in the middle of boot.json on the console
// (a slow boot's "A start job is running") does not break its parsing.
func TestParseBootJSONDropsStatusLines(t *testing.T) {
	console := "DOCKROOT-BOOTJSON-BEGIN\n{\n  \"schema\": 1,\n" +
		"\x1b[K[\x1b[0;1;31m*** \x1b[0m] A start job is running for /dev/disk (5s / 1min 30s)\r\n" +
		"  \"ref\": \"desk:1\"\n}\nDOCKROOT-BOOTJSON-END\n"
	rec := parseBootJSON(t, console)
	if rec.Schema != 1 || rec.Ref != "desk:1" {
		t.Errorf("parsed %+v, want schema 1 and ref desk:1", rec)
	}
}
