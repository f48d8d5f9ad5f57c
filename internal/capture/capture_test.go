package capture

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dockroot/dockroot/internal/bootrecord"
)

func capt(t *testing.T, from, to string, what ...string) *Report {
	t.Helper()
	rep, err := Capture(Options{From: from, To: to, What: what})
	if err != nil {
		t.Fatalf("Capture: %v", err)
	}
	return rep
}

// TestCaptureAll takes every category from a fake machine: each file
// with its content, owner and mode, the directories it needs made with
// the machine's modes, and nothing else; a second run writes nothing,
// and a changed file is the one replaced.
func TestCaptureAll(t *testing.T) {
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "top")
	build(t, from, merged(machineFiles, handAccounts))
	rep := capt(t, from, to)

	want := map[string]Action{
		"etc/hostname": New, "etc/machine-id": New, "etc/machine-info": Absent, "etc/hosts": New,
		"etc/ssh/ssh_host_ed25519_key": New, "etc/ssh/ssh_host_ed25519_key.pub": New, "etc/ssh/ssh_host_rsa_key": New,
		"etc/NetworkManager/system-connections/home.nmconnection": New,
		"etc/systemd/network/10-wired.network":                    New, "etc/systemd/network/99-default.link": New,
		"etc/netplan/": Absent,
		"etc/passwd":   New, "etc/shadow": New, "etc/group": New, "etc/gshadow": New, "etc/subuid": New, "etc/subgid": New,
		"etc/fstab": New, "etc/crypttab": Absent,
		"etc/adjtime": New, "etc/timezone": New, "etc/localtime": New,
	}
	if got := fileActions(rep); !reflect.DeepEqual(got, want) {
		t.Errorf("actions:\n got %v\nwant %v", got, want)
	}
	wantTree := []string{
		"etc/", "etc/NetworkManager/", "etc/NetworkManager/system-connections/", "etc/NetworkManager/system-connections/home.nmconnection",
		"etc/adjtime", "etc/fstab", "etc/group", "etc/gshadow", "etc/hostname", "etc/hosts", "etc/localtime", "etc/machine-id",
		"etc/passwd", "etc/shadow",
		"etc/ssh/", "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/ssh_host_rsa_key",
		"etc/subgid", "etc/subuid",
		"etc/systemd/", "etc/systemd/network/", "etc/systemd/network/10-wired.network", "etc/systemd/network/99-default.link",
		"etc/timezone",
	}
	if got := listTree(t, to); !reflect.DeepEqual(got, wantTree) {
		t.Errorf("top layer:\n got %q\nwant %q", got, wantTree)
	}
	for rel, nd := range machineFiles {
		p := filepath.Join(to, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			continue // not taken; the tree check says whether it should be
		}
		switch {
		case nd.link != "":
			if l, _ := os.Readlink(p); l != nd.link {
				t.Errorf("%s -> %q, want a symlink to %q", rel, l, nd.link)
			}
		case nd.dir:
			if st.Mode&0o7777 != uint32(nd.mode) {
				t.Errorf("%s: directory mode %#o, want the machine's %#o", rel, st.Mode&0o7777, nd.mode)
			}
		default:
			if got := readFile(t, p); got != nd.content || st.Mode&0o7777 != uint32(nd.mode) {
				t.Errorf("%s: %q mode %#o, want %q mode %#o", rel, got, st.Mode&0o7777, nd.content, nd.mode)
			}
		}
	}
	for rel, content := range wantAccounts {
		if got := readFile(t, filepath.Join(to, rel)); got != content {
			t.Errorf("%s:\n%s\nwant\n%s", rel, got, content)
		}
	}
	if fi, _ := os.Stat(filepath.Join(to, "etc/shadow")); fi.Mode().Perm() != 0o640 {
		t.Errorf("etc/shadow mode %v, want the machine's 0640", fi.Mode())
	}

	again := capt(t, from, to)
	for _, f := range again.Files {
		if f.Action != Unchanged && f.Action != Absent {
			t.Errorf("second run: %s %s, want unchanged", f.Path, f.Action)
		}
	}
	if err := os.WriteFile(filepath.Join(from, "etc/hostname"), []byte("desk2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(from, "etc/fstab"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := fileActions(capt(t, from, to))
	for _, p := range []string{"etc/hostname", "etc/fstab"} {
		if third[p] != Replaced {
			t.Errorf("after a change: %s %s, want replaced", p, third[p])
		}
	}
	// etc/hosts names desk1, no longer the hostname: left out now, and
	// the old copy stays (capture never deletes).
	if third["etc/hosts"] != LeftOut || third["etc/machine-id"] != Unchanged {
		t.Errorf("after a change: hosts %s, machine-id %s", third["etc/hosts"], third["etc/machine-id"])
	}
	if got := readFile(t, filepath.Join(to, "etc/hostname")); got != "desk2\n" {
		t.Errorf("etc/hostname %q after replace", got)
	}
}

// TestCaptureAccountsReport: each user taken or left out with why, the
// groups taken, the human-range group left out, the system groups
// counted.
func TestCaptureAccountsReport(t *testing.T) {
	from := t.TempDir()
	build(t, from, handAccounts)
	rep, err := Capture(Options{From: from, To: filepath.Join(t.TempDir(), "top"), What: []string{"users"}, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range rep.Accounts {
		s := a.Kind + " " + a.Name
		if a.Taken {
			s = "took " + s
		}
		got = append(got, s+": "+a.Why)
	}
	want := []string{
		"user root: system account (uid below UID_MIN 1000)",
		"user daemon: system account (uid below UID_MIN 1000)",
		"user svc: system account (uid below UID_MIN 1000)",
		"took user alice: ",
		"took user bob: ",
		"user nobody: uid above UID_MAX 60000: not a user useradd made (nobody is 65534)",
		"took group sudo: members bob",
		"took group users: primary group of bob",
		"took group alice: primary group of alice",
		"group team: no captured user has it as primary group or is a member",
		"took group proj: members alice",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("accounts:\n got %q\nwant %q", got, want)
	}
	if rep.SystemGroups != 4 { // root, daemon, svc, nogroup
		t.Errorf("SystemGroups %d, want 4", rep.SystemGroups)
	}
}

func TestCaptureWhatUsersOnly(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	build(t, from, merged(machineFiles, handAccounts))
	rep := capt(t, from, to, "users")
	want := []string{"etc/", "etc/group", "etc/gshadow", "etc/passwd", "etc/shadow", "etc/subgid", "etc/subuid"}
	if got := listTree(t, to); !reflect.DeepEqual(got, want) {
		t.Errorf("--what users wrote %q, want %q", got, want)
	}
	for _, f := range rep.Files {
		if f.Category != "users" {
			t.Errorf("--what users reports %s (%s)", f.Path, f.Category)
		}
	}
}

// TestCaptureDryRun writes nothing: not the missing directory, and not a
// change into an existing one.
func TestCaptureDryRun(t *testing.T) {
	from := t.TempDir()
	build(t, from, merged(machineFiles, handAccounts))
	missing := filepath.Join(t.TempDir(), "top")
	rep, err := Capture(Options{From: from, To: missing, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := rep.Written(); n == 0 || !rep.DryRun {
		t.Errorf("dry run plans %d files, want them all", n)
	}
	if _, err := os.Lstat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run made %s: %v", missing, err)
	}

	existing := t.TempDir()
	build(t, existing, map[string]node{"etc/hostname": {content: "old\n", mode: 0o644}})
	rep, err = Capture(Options{From: from, To: existing, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := fileActions(rep)["etc/hostname"]; a != Replaced {
		t.Errorf("dry run says etc/hostname %s, want replaced", a)
	}
	if got := listTree(t, existing); !reflect.DeepEqual(got, []string{"etc/", "etc/hostname"}) || readFile(t, filepath.Join(existing, "etc/hostname")) != "old\n" {
		t.Errorf("dry run changed the top layer: %q", got)
	}
}

// TestCaptureNeverFollowsSymlinks: a file of the machine that is a
// symlink out of its root is left out, a directory that is one is
// resolved inside the root (and holds nothing there), and a symlink in
// the top-layer directory is never written through.
func TestCaptureNeverFollowsSymlinks(t *testing.T) {
	outside := t.TempDir()
	build(t, outside, map[string]node{
		"secret":                   {content: "host secret\n", mode: 0o600},
		"ssh/ssh_host_ed25519_key": {content: "HOST KEY\n", mode: 0o600},
		"passwd":                   {content: "eve:x:1000:1000::/home/eve:/bin/sh\n", mode: 0o644},
		"victim/etc/hostname":      {content: "victim\n", mode: 0o644},
		"victim/etc/timezone":      {content: "victim\n", mode: 0o644},
	})
	from := t.TempDir()
	build(t, from, map[string]node{
		"etc/hostname":   {link: filepath.Join(outside, "secret")},
		"etc/machine-id": {link: "../../../../../../../../" + filepath.Join(outside, "secret")},
		"etc/ssh":        {link: filepath.Join(outside, "ssh")},
		"etc/passwd":     {link: filepath.Join(outside, "passwd")},
		"etc/fstab":      {content: "fstab\n", mode: 0o644},
		"etc/timezone":   {content: "Europe/Paris\n", mode: 0o644},
	})
	to := t.TempDir()
	rep := capt(t, from, to, "identity", "ssh", "users", "fstab")
	got := fileActions(rep)
	for p, want := range map[string]Action{"etc/hostname": LeftOut, "etc/machine-id": LeftOut, "etc/ssh/": Absent, "etc/passwd": LeftOut, "etc/fstab": New} {
		if got[p] != want {
			t.Errorf("%s: %s, want %s", p, got[p], want)
		}
	}
	if tree := listTree(t, to); !reflect.DeepEqual(tree, []string{"etc/", "etc/fstab"}) {
		t.Errorf("top layer holds %q, want only etc/fstab", tree)
	}
	for _, f := range rep.Files {
		if f.Path == "etc/hostname" && !strings.Contains(f.Why, "symlink to "+filepath.Join(outside, "secret")+", not followed") {
			t.Errorf("etc/hostname left out because %q", f.Why)
		}
	}

	// The top layer's etc is a symlink to another root's etc: refused,
	// nothing written there.
	bad := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "victim/etc"), filepath.Join(bad, "etc")); err != nil {
		t.Fatal(err)
	}
	_, err := Capture(Options{From: from, To: bad, What: []string{"time"}})
	var te *TargetError
	if !errors.As(err, &te) || te.Path != filepath.Join(bad, "etc") {
		t.Errorf("capture into a top layer whose etc is a symlink: %v, want a *TargetError for %s", err, filepath.Join(bad, "etc"))
	}
	if got := readFile(t, filepath.Join(outside, "victim/etc/timezone")); got != "victim\n" {
		t.Errorf("written through the symlink: %q", got)
	}

	// A file of the top layer that is a symlink is replaced, not written
	// through.
	linked := t.TempDir()
	build(t, linked, map[string]node{"etc/timezone": {link: filepath.Join(outside, "victim/etc/timezone")}})
	rep = capt(t, from, linked, "time")
	if a := fileActions(rep)["etc/timezone"]; a != Replaced {
		t.Errorf("etc/timezone over a symlink: %s, want replaced", a)
	}
	if got := readFile(t, filepath.Join(outside, "victim/etc/timezone")); got != "victim\n" {
		t.Errorf("written through the symlink: %q", got)
	}
	if fi, err := os.Lstat(filepath.Join(linked, "etc/timezone")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("etc/timezone is %v (%v), want a regular file", fi.Mode(), err)
	}
}

func TestCaptureRefusesSourceRoot(t *testing.T) {
	from := t.TempDir()
	build(t, from, handAccounts)
	_, err := Capture(Options{From: from, To: from + "/", What: []string{"users"}})
	if err == nil || !strings.Contains(err.Error(), "is the source root") {
		t.Fatalf("capture into the source root: %v", err)
	}
	if got := readFile(t, filepath.Join(from, "etc/passwd")); got != handAccounts["etc/passwd"].content {
		t.Errorf("etc/passwd of the source changed:\n%s", got)
	}
}

// TestCheckTarget is the rw-layer decision with injected stat results.
func TestCheckTarget(t *testing.T) {
	rec := &bootrecord.Record{Schema: 1, Layer: bootrecord.Layer{Subvolume: "docker_rwlayer", SubvolID: 260}}
	root := FileID{Dev: 40, Ino: 256, MntID: 25}
	tests := []struct {
		name   string
		rec    *bootrecord.Record
		target FileID
		refuse bool
	}{
		{"not booted by dockroot", nil, FileID{Dev: 40, Ino: 9000, MntID: 25}, false},
		{"a directory in the rw layer", rec, FileID{Dev: 40, Ino: 9000, MntID: 25}, true},
		{"/ itself", rec, root, true},
		{"the rw layer through another mount (the top level's docker_rwlayer)", rec, FileID{Dev: 40, Ino: 9000, MntID: 77}, true},
		{"a subvolume nested in the rw layer", rec, FileID{Dev: 41, Ino: 256, MntID: 25}, true},
		{"the btrfs top level mounted elsewhere", rec, FileID{Dev: 39, Ino: 300, MntID: 80}, false},
		{"another disk", rec, FileID{Dev: 2049, Ino: 2, MntID: 81}, false},
		{"no mount ids (old kernel), another device", rec, FileID{Dev: 39, Ino: 300}, false},
	}
	for _, tt := range tests {
		r := root
		if tt.target.MntID == 0 {
			r.MntID = 0
		}
		err := CheckTarget("/srv/top/", tt.rec, r, tt.target)
		var rw *RwLayerError
		if got := errors.As(err, &rw); got != tt.refuse {
			t.Errorf("%s: %v, want refused %v", tt.name, err, tt.refuse)
			continue
		}
		if tt.refuse && (rw.Dir != "/srv/top" || rw.Layer != "docker_rwlayer" || !strings.Contains(err.Error(), "the next boot replaces")) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestCaptureRefusesBootedRwLayer: with a boot record, a top-layer
// directory on the same filesystem as the host root is refused before
// anything is written; without one, it is fine.
func TestCaptureRefusesBootedRwLayer(t *testing.T) {
	from := t.TempDir()
	build(t, from, machineFiles)
	hostRoot := t.TempDir()
	to := filepath.Join(hostRoot, "srv/top")
	bootJSON := filepath.Join(t.TempDir(), "boot.json")
	if err := bootrecord.Write(bootJSON, &bootrecord.Record{Schema: bootrecord.Schema, Layer: bootrecord.Layer{Subvolume: "@/docker_rwlayer", SubvolID: 260}}); err != nil {
		t.Fatal(err)
	}
	_, err := Capture(Options{From: from, To: to, BootRecord: bootJSON, HostRoot: hostRoot})
	var rw *RwLayerError
	if !errors.As(err, &rw) || rw.Layer != "@/docker_rwlayer" || rw.Dir != to {
		t.Fatalf("capture into the booted rw layer: %v, want a *RwLayerError", err)
	}
	if _, err := os.Lstat(filepath.Join(hostRoot, "srv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused capture made %s", filepath.Join(hostRoot, "srv"))
	}
	if _, err := Capture(Options{From: from, To: to, BootRecord: filepath.Join(t.TempDir(), "none.json"), HostRoot: hostRoot}); err != nil {
		t.Errorf("without a boot record: %v", err)
	}
}

func TestParseWhat(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{"", Categories, false},
		{"all", Categories, false},
		{"users", []string{"users"}, false},
		{"time,ssh,identity,ssh", []string{"identity", "ssh", "time"}, false},
		{"ssh, network", []string{"ssh", "network"}, false},
		{"homes", nil, true},
		{"users,", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseWhat(tt.in)
		var ue *UnknownCategoryError
		if tt.bad != errors.As(err, &ue) || (!tt.bad && !slices.Equal(got, tt.want)) {
			t.Errorf("ParseWhat(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestParseLoginDefs(t *testing.T) {
	tests := []struct {
		in   string
		want Ranges
	}{
		{"", DefaultRanges},
		{"# UID_MIN 10\nUID_MIN\t\t\t 500\nUID_MAX 29999\n", Ranges{500, 29999, 1000, 60000}},
		{"GID_MIN 2000\nGID_MAX 0x10000\n", Ranges{1000, 60000, 2000, 65536}},
		{"UID_MIN many\nUID_MIN 1500\n", Ranges{1500, 60000, 1000, 60000}},
		{"UID_MIN 1200\nUID_MIN 1300\n", Ranges{1200, 60000, 1000, 60000}},
		{"UID_MIN\n", DefaultRanges},
	}
	for _, tt := range tests {
		if got := ParseLoginDefs([]byte(tt.in)); got != tt.want {
			t.Errorf("ParseLoginDefs(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestCaptureLoginDefsRange: a machine whose login.defs starts humans at
// 500 has them taken from there.
func TestCaptureLoginDefsRange(t *testing.T) {
	from := t.TempDir()
	build(t, from, map[string]node{
		"etc/login.defs": {content: "UID_MIN 500\nUID_MAX 999\n", mode: 0o644},
		"etc/passwd":     {content: lines("old:x:500:500::/home/old:/bin/sh", "alice:x:1000:1000::/home/alice:/bin/sh"), mode: 0o644},
	})
	to := t.TempDir()
	capt(t, from, to, "users")
	if got := readFile(t, filepath.Join(to, "etc/passwd")); got != "old:x:500:500::/home/old:/bin/sh\n" {
		t.Errorf("etc/passwd with UID_MIN 500, UID_MAX 999:\n%s", got)
	}
}
