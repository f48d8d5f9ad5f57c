package vm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// fleetdUnit is the service of a new image's daemon, running as the
// system user the image adds. systemd fails it (status 217/USER) when
// that user is not in the booted system's etc/passwd; when it runs it
// leaves its user name in its runtime directory.
const fleetdUnit = `[Unit]
Description=a daemon with its own system user

[Service]
Type=oneshot
RemainAfterExit=yes
User=fleetd
RuntimeDirectory=fleetd
RuntimeDirectoryPreserve=yes
ExecStart=/bin/sh -c 'id -un > /run/fleetd/whoami'

[Install]
WantedBy=multi-user.target
`

// accountsMarkerScript reports the service, the accounts and the
// machine's identity. With fleet.capture=1 on the kernel command line it
// then does what a user does on a new laptop (adds a user, names the
// machine) and captures the machine into its top-layer directory with the
// real `dockroot toplayer capture`, from the booted system.
const accountsMarkerScript = `#!/bin/sh
{
	echo "DOCKROOT-MARKER image=debian multi-user=$(systemctl is-active multi-user.target) init=$(cat /proc/1/comm) hostname=$(cat /etc/hostname)"
	echo "ACCT-SERVICE state=$(systemctl is-active fleetd.service) runs-as=$(cat /run/fleetd/whoami 2>/dev/null)"
	echo "ACCT-USERS fleetd=$(getent passwd fleetd | cut -d: -f3) alice=$(getent passwd alice | cut -d: -f3) bob=$(getent passwd bob | cut -d: -f3)"
	echo "ACCT-IDENTITY machine-id=$(cat /etc/machine-id)"
	if grep -q 'fleet.capture=1' /proc/cmdline; then
		useradd -m -u 1001 -s /bin/bash bob && echo captured-host >/etc/hostname &&
			mkdir -p /mnt/top && mount -o subvolid=5 LABEL=linux /mnt/top &&
			dockroot toplayer capture --to /mnt/top/boot_docker && echo ACCT-CAPTURED
		umount /mnt/top
	fi
	echo DOCKROOT-BOOTJSON-BEGIN
	cat /run/dockroot/boot.json
	echo DOCKROOT-BOOTJSON-END
	echo ACCT-DONE
} >/dev/console 2>&1
systemctl --no-block poweroff
`

var (
	acctServiceRE  = regexp.MustCompile(`ACCT-SERVICE state=(\S*) runs-as=(\S*)`)
	acctUsersRE    = regexp.MustCompile(`ACCT-USERS fleetd=(\S*) alice=(\S*) bob=(\S*)`)
	acctIdentityRE = regexp.MustCompile(`ACCT-IDENTITY machine-id=(\S*)`)
	acctHostRE     = regexp.MustCompile(`DOCKROOT-MARKER image=debian multi-user=(\S+) init=(\S+) hostname=(\S+)`)
)

// Issue 15, §3 and §4 on a booted Debian with systemd. The top layer
// carries etc/passwd, group, shadow and gshadow as real `useradd` left
// them for a human user (alice) against the old image; the new image adds
// a system user (`useradd --system fleetd`) whose service runs as it. The
// merge keeps both: fleetd's service starts, alice exists. Then, on that
// booted machine, a user is added and the hostname set, and `dockroot
// toplayer capture` takes the machine into its top-layer directory; the
// next boot (a fresh rw layer) keeps its hostname, machine-id and users.
func TestDebianAccountsAndCapture(t *testing.T) {
	testenv.RequireFullVM(t, "two Debian systemd boots for the account merge and capture")
	testenv.RequireRoot(t, "debootstrap", "useradd")
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	tarball, err := vmkit.DebootstrapTarball(cache, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	// The top layer's account files: the old image's, with alice added
	// by the host's useradd working on a copy of them (--prefix).
	accounts := t.TempDir()
	testenv.Run(t, "tar", "-xf", tarball, "-C", accounts, "./etc/passwd", "./etc/group", "./etc/shadow", "./etc/gshadow", "./etc/login.defs")
	testenv.Run(t, "useradd", "--prefix", accounts, "-U", "-u", "1000", "-s", "/bin/bash", "-c", "Alice", "alice")
	var top []vmkit.File
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{"passwd", 0o644}, {"group", 0o644}, {"shadow", 0o640}, {"gshadow", 0o640}} {
		data, err := os.ReadFile(filepath.Join(accounts, "etc", f.name))
		if err != nil {
			t.Fatal(err)
		}
		top = append(top, vmkit.File{Path: toplayerPath + "/etc/" + f.name, Mode: f.mode, Data: string(data)})
	}

	cli, err := os.ReadFile(product(t).CLI)
	if err != nil {
		t.Fatal(err)
	}
	const host = "accounts-toplayer-host"
	disk := debianDiskWith(t, 3072, "debian-fleetd:2", accountsMarkerScript, host, debianExtra{
		Files: []vmkit.File{
			{Path: "rootfs/etc/systemd/system/fleetd.service", Data: fleetdUnit},
			{Path: "rootfs/etc/systemd/system/multi-user.target.wants/fleetd.service", Link: "../fleetd.service"},
			{Path: "rootfs/usr/local/bin/dockroot", Mode: 0o755, Data: string(cli)},
			// An image ships no machine-id of its own (every machine
			// would share it): systemd makes one at each boot of a fresh
			// layer, unless the top layer has the machine's. That boot
			// counts as a first boot, whose wizard would wait at the
			// console.
			{Path: "rootfs/etc/machine-id", Data: ""},
			{Path: "rootfs/etc/systemd/system/systemd-firstboot.service", Link: "/dev/null"},
		},
		Dockerfile: []string{"RUN useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin fleetd"},
		Toplayer:   top,
	})

	boot := func(extra string) string {
		vm := Boot(t, vmkit.Options{
			Initrd: initramfs(t),
			Append: ancestorParam + " docker_image=debian-fleetd:2" + extra,
			Drives: []vmkit.Drive{{File: disk}},
		})
		expect(t, vm, "DOCKROOT-MARKER", 600*time.Second)
		expect(t, vm, "ACCT-DONE", 180*time.Second)
		if err := vm.WaitExit(180 * time.Second); err != nil {
			t.Fatal(err)
		}
		return vm.Console.String()
	}
	find := func(console string, re *regexp.Regexp) []string {
		t.Helper()
		m := re.FindStringSubmatch(console)
		if m == nil {
			t.Fatalf("no %s line on the console:\n%s", re, vmkit.Tail(console, 40))
		}
		return m
	}

	first := boot(" fleet.capture=1")
	if m := find(first, acctHostRE); m[1] != "active" || m[2] != "systemd" || m[3] != host {
		t.Errorf("boot 1: multi-user.target %s, PID 1 %s, hostname %s; want active, systemd, %s", m[1], m[2], m[3], host)
	}
	if m := find(first, acctServiceRE); m[1] != "active" || m[2] != "fleetd" {
		t.Errorf("boot 1: fleetd.service is %s, ran as %q; want active as fleetd (the image's system user, merged with the top layer's etc/passwd)", m[1], m[2])
	}
	users := find(first, acctUsersRE)
	if users[1] == "" || users[2] != "1000" || users[3] != "" {
		t.Errorf("boot 1: fleetd uid %q, alice %q, bob %q; want the image's fleetd, the top layer's alice (1000), no bob yet", users[1], users[2], users[3])
	}
	id1 := find(first, acctIdentityRE)[1]
	if len(id1) != 32 {
		t.Errorf("boot 1: machine-id %q, want one systemd made", id1)
	}
	if !strings.Contains(first, "ACCT-CAPTURED") {
		t.Fatalf("boot 1: dockroot toplayer capture failed in the booted system:\n%s", vmkit.Tail(first, 60))
	}

	second := boot("")
	if m := find(second, acctHostRE); m[1] != "active" || m[3] != "captured-host" {
		t.Errorf("boot 2: multi-user.target %s, hostname %s; want active and the captured captured-host", m[1], m[3])
	}
	if m := find(second, acctServiceRE); m[1] != "active" || m[2] != "fleetd" {
		t.Errorf("boot 2: fleetd.service is %s, ran as %q; want active as fleetd", m[1], m[2])
	}
	if u := find(second, acctUsersRE); u[1] != users[1] || u[2] != "1000" || u[3] != "1001" {
		t.Errorf("boot 2: fleetd uid %q, alice %q, bob %q; want %s, 1000 and the captured bob (1001)", u[1], u[2], u[3], users[1])
	}
	if id2 := find(second, acctIdentityRE)[1]; id2 != id1 {
		t.Errorf("boot 2: machine-id %s, want the captured %s", id2, id1)
	}
	if rec := parseBootJSON(t, second); rec.Layer.Subvolume != rwLayer || !rec.Layer.Fresh {
		t.Errorf("boot 2: rw layer %+v, want a fresh %s (what the machine kept came from its top layer)", rec.Layer, rwLayer)
	}
}
