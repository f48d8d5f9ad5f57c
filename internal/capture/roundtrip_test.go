package capture

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/toplayer"
)

// imageRoot is a fresh image: system users only (a newer image than the
// machine's, with a daemon the machine never had), its own hostname, no
// host keys.
var imageRoot = map[string]node{
	"etc":          {dir: true, mode: 0o755},
	"etc/hostname": {content: "image\n", mode: 0o644},
	"etc/passwd": {content: lines(
		"root:x:0:0:root:/root:/bin/bash",
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
		"_sshd:x:101:65534::/run/sshd:/usr/sbin/nologin",
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"), mode: 0o644},
	"etc/shadow":          {content: lines("root:*:19000:0:99999:7:::", "daemon:*:19000:0:99999:7:::", "_sshd:!:19000::::::", "nobody:*:19000:0:99999:7:::"), mode: 0o640},
	"etc/group":           {content: lines("root:x:0:", "daemon:x:1:", "sudo:x:27:", "users:x:100:", "nogroup:x:65534:"), mode: 0o644},
	"etc/gshadow":         {content: lines("root:*::", "daemon:*::", "sudo:*::", "users:*::", "nogroup:*::"), mode: 0o640},
	"etc/ssh/sshd_config": {content: "# image's\n", mode: 0o644},
}

// TestCaptureRoundTrip captures a machine and applies the result with
// toplayer.ApplyWith onto a fresh image, as the next boot does: the
// machine's users (merged with the image's system users), hostname,
// keys and connections are there, and the image's own accounts stay.
func TestCaptureRoundTrip(t *testing.T) {
	machine, top, image := t.TempDir(), filepath.Join(t.TempDir(), "top"), t.TempDir()
	build(t, machine, merged(machineFiles, handAccounts))
	build(t, image, imageRoot)
	capt(t, machine, top)

	sum, err := toplayer.ApplyWith(image, top, toplayer.Options{Log: t.Logf})
	if err != nil {
		t.Fatalf("apply the captured top layer: %v", err)
	}
	for _, w := range sum.Warnings {
		t.Logf("warning: %s", w)
	}
	want := map[string]string{
		"etc/passwd": lines(
			"root:x:0:0:root:/root:/bin/bash",
			"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
			"_sshd:x:101:65534::/run/sshd:/usr/sbin/nologin",
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
			"alice:x:1000:1000:Alice:/home/alice:/bin/bash",
			"bob:x:1001:100:Bob:/home/bob:/bin/zsh"),
		"etc/group":                    lines("root:x:0:", "daemon:x:1:", "sudo:x:27:bob", "users:x:100:", "nogroup:x:65534:", "alice:x:1000:", "proj:x:2000:alice"),
		"etc/gshadow":                  lines("root:*::", "daemon:*::", "sudo:*::bob", "users:*::", "nogroup:*::", "alice:!::", "proj:!:alice:alice"),
		"etc/subuid":                   wantAccounts["etc/subuid"],
		"etc/hostname":                 "desk1\n",
		"etc/machine-id":               machineFiles["etc/machine-id"].content,
		"etc/ssh/ssh_host_ed25519_key": machineFiles["etc/ssh/ssh_host_ed25519_key"].content,
		"etc/ssh/sshd_config":          "# image's\n",
		"etc/NetworkManager/system-connections/home.nmconnection": machineFiles["etc/NetworkManager/system-connections/home.nmconnection"].content,
		"etc/fstab": machineFiles["etc/fstab"].content,
	}
	for rel, w := range want {
		if got := readFile(t, filepath.Join(image, rel)); got != w {
			t.Errorf("%s after apply:\n%s\nwant\n%s", rel, got, w)
		}
	}
	if shadow := readFile(t, filepath.Join(image, "etc/shadow")); !strings.Contains(shadow, "_sshd:!") || !strings.Contains(shadow, "alice:$y$alice:") {
		t.Errorf("etc/shadow after apply lacks _sshd or alice:\n%s", shadow)
	}
	for rel, mode := range map[string]os.FileMode{
		"etc/ssh/ssh_host_ed25519_key":          0o600,
		"etc/ssh/ssh_host_ed25519_key.pub":      0o644,
		"etc/NetworkManager/system-connections": 0o700,
		"etc":                                   0o755,
		"etc/shadow":                            0o640,
	} {
		if fi, err := os.Stat(filepath.Join(image, rel)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s after apply: %v %v, want mode %v", rel, fi.Mode(), err, mode)
		}
	}
	if l, err := os.Readlink(filepath.Join(image, "etc/localtime")); err != nil || l != "/usr/share/zoneinfo/Europe/Paris" {
		t.Errorf("etc/localtime after apply: %q %v", l, err)
	}
}
