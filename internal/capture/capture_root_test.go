package capture

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/toplayer"
)

// TestCaptureRealUseradd is the root tier for users: the machine's
// account files are written by Debian's own shadow-utils (useradd,
// groupadd and usermod with --prefix), and the capture of them applies
// onto an image with system users only.
func TestCaptureRealUseradd(t *testing.T) {
	testenv.RequireRoot(t, "useradd", "groupadd", "usermod")
	machine := t.TempDir()
	build(t, machine, map[string]node{
		"etc/passwd":  {content: lines("root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin", "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"), mode: 0o644},
		"etc/shadow":  {content: lines("root:*:19000:0:99999:7:::", "daemon:*:19000:0:99999:7:::", "nobody:*:19000:0:99999:7:::"), mode: 0o640},
		"etc/group":   {content: lines("root:x:0:", "daemon:x:1:", "sudo:x:27:daemon", "users:x:100:", "nogroup:x:65534:"), mode: 0o644},
		"etc/gshadow": {content: lines("root:*::", "daemon:*::", "sudo:*::daemon", "users:*::", "nogroup:*::"), mode: 0o640},
		"etc/subuid":  {mode: 0o644},
		"etc/subgid":  {mode: 0o644},
	})
	for _, argv := range [][]string{
		{"useradd", "--prefix", machine, "--system", "--user-group", "--shell", "/usr/sbin/nologin", "svc"},
		{"useradd", "--prefix", machine, "--uid", "1000", "--user-group", "--shell", "/bin/bash", "alice"},
		{"useradd", "--prefix", machine, "--uid", "1001", "--gid", "users", "--groups", "sudo", "--shell", "/bin/zsh", "bob"},
		{"groupadd", "--prefix", machine, "--gid", "2000", "proj"},
		{"groupadd", "--prefix", machine, "--gid", "1500", "team"},
		{"usermod", "--prefix", machine, "--append", "--groups", "proj", "alice"},
		{"usermod", "--prefix", machine, "--append", "--groups", "proj,team", "svc"},
	} {
		testenv.Run(t, argv...)
	}
	top := t.TempDir()
	rep := capt(t, machine, top, "users")
	var taken []string
	for _, a := range rep.Accounts {
		if a.Taken {
			taken = append(taken, a.Kind+" "+a.Name)
		}
	}
	if want := []string{"user alice", "user bob", "group sudo", "group users", "group alice", "group proj"}; !reflect.DeepEqual(taken, want) {
		t.Errorf("took %q, want %q", taken, want)
	}
	group := readFile(t, filepath.Join(top, "etc/group"))
	for _, want := range []string{"sudo:x:27:bob\n", "users:x:100:\n", "alice:x:1000:\n", "proj:x:2000:alice\n"} {
		if !strings.Contains(group, want) {
			t.Errorf("etc/group lacks %q:\n%s", want, group)
		}
	}
	if gs := readFile(t, filepath.Join(top, "etc/gshadow")); !strings.Contains(gs, "sudo:*::bob\n") || strings.Contains(gs, "svc") || strings.Contains(gs, "daemon") {
		t.Errorf("etc/gshadow:\n%s", gs)
	}
	for _, f := range []string{"etc/subuid", "etc/subgid"} {
		if got := readFile(t, filepath.Join(top, f)); !strings.HasPrefix(got, "alice:") || !strings.Contains(got, "\nbob:") || strings.Contains(got, "svc") {
			t.Errorf("%s (useradd allocated ranges to alice and bob):\n%s", f, got)
		}
	}

	image := t.TempDir()
	build(t, image, imageRoot)
	if _, err := toplayer.ApplyWith(image, top, toplayer.Options{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	passwd := readFile(t, filepath.Join(image, "etc/passwd"))
	for _, want := range []string{"_sshd:x:101:", "\nalice:x:1000:1000:", "\nbob:x:1001:100:"} {
		if !strings.Contains(passwd, want) {
			t.Errorf("etc/passwd after apply lacks %q:\n%s", want, passwd)
		}
	}
}

// TestCaptureKeepsOwners is the root tier for owners: files and
// directories owned by a human user keep that owner (and the setgid bit
// that chown would clear if done after chmod) in the top layer.
func TestCaptureKeepsOwners(t *testing.T) {
	testenv.RequireRoot(t)
	machine, top := t.TempDir(), t.TempDir()
	build(t, machine, map[string]node{
		"etc/NetworkManager/system-connections":                    {dir: true, mode: 0o2750},
		"etc/NetworkManager/system-connections/alice.nmconnection": {content: "[wifi]\n", mode: 0o600},
		"etc/localtime": {link: "/usr/share/zoneinfo/UTC"},
		"etc/shadow":    {content: "", mode: 0o640},
	})
	own := map[string][2]int{
		"etc/NetworkManager/system-connections":                    {0, 1000},
		"etc/NetworkManager/system-connections/alice.nmconnection": {1000, 1000},
		"etc/localtime": {1000, 42},
		"etc/shadow":    {0, 42},
	}
	for rel, o := range own {
		if err := os.Lchown(filepath.Join(machine, rel), o[0], o[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(machine, "etc/NetworkManager/system-connections"), 0o2750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	capt(t, machine, top, "network", "time", "users")
	for rel, o := range own {
		var a, b unix.Stat_t
		if err := unix.Lstat(filepath.Join(machine, rel), &a); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(top, rel), &b); err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if b.Uid != uint32(o[0]) || b.Gid != uint32(o[1]) || b.Mode != a.Mode {
			t.Errorf("%s: %d:%d %#o, want the machine's %d:%d %#o", rel, b.Uid, b.Gid, b.Mode, o[0], o[1], a.Mode)
		}
	}
}
