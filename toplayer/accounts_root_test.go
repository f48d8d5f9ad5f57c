package toplayer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
)

// seedAccounts is a Debian image's account databases before any package
// added a user: what both the image and the machine started from.
var seedAccounts = map[string]struct {
	content string
	mode    os.FileMode
	gid     int
}{
	"passwd":  {lines(pwRoot, pwDaemon), 0o644, 0},
	"group":   {lines("root:x:0:", "daemon:x:1:", "sudo:x:27:", "audio:x:29:", "shadow:x:42:", "users:x:100:"), 0o644, 0},
	"shadow":  {lines(shRootImage, shDaemon), 0o640, 42},
	"gshadow": {lines("root:*::", "daemon:*::", "sudo:*::", "audio:*::", "shadow:*::", "users:*::"), 0o640, 42},
	"subuid":  {"", 0o644, 0},
	"subgid":  {"", 0o644, 0},
}

// TestAccountsMergeRealUseradd is the root tier for the account merge,
// with the files written by Debian's own shadow-utils: an image whose new
// package added a system user (useradd --system newdaemon, member of
// audio) and a machine's top layer, made from the same older image, where
// the owner added a human user (uid 1000, in sudo and audio) and set
// root's password. After Apply, the new root must have both users, both
// memberships, and shadow/gshadow as the image had them (0640 root:shadow),
// and pwck/grpck (chrooted into the new root) must find nothing wrong.
func TestAccountsMergeRealUseradd(t *testing.T) {
	testenv.RequireRoot(t, "useradd", "groupadd", "usermod", "pwck", "grpck")
	fs := testenv.NewBtrfs(t, 256, "")
	image, top := mustTempIn(t, fs.Mnt), mustTempIn(t, fs.Mnt)
	for _, dir := range []string{image, top} {
		for name, f := range seedAccounts {
			p := filepath.Join(dir, "etc", name)
			mustFile(t, p, f.content, f.mode)
			mustChown(t, p, 0, f.gid)
		}
	}
	// --prefix (not --root): shadow-utils edits PREFIX/etc/* without
	// chroot, so the directories need no libraries or login.defs.
	testenv.Run(t, "groupadd", "--prefix", image, "--system", "newdaemon")
	testenv.Run(t, "useradd", "--prefix", image, "--system", "-g", "newdaemon", "-G", "audio",
		"-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", "newdaemon")
	testenv.Run(t, "useradd", "--prefix", top, "-m", "-U", "-u", "1000", "-G", "sudo,audio", "-s", "/bin/bash", "alice")
	testenv.Run(t, "usermod", "--prefix", top, "-p", "$6$salt$machinehash", "root")

	sum, err := ApplyWith(image, top, Options{Log: t.Logf})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(sum.Warnings) != 0 {
		t.Errorf("warnings: %q", sum.Warnings)
	}
	db := func(name string) map[string][]string { return readAccountsT(t, filepath.Join(image, "etc", name)) }
	passwd, shadow, group, gshadow := db("passwd"), db("shadow"), db("group"), db("gshadow")
	for _, u := range []string{"root", "daemon", "newdaemon", "alice"} {
		if passwd[u] == nil || shadow[u] == nil {
			t.Errorf("user %s: passwd %q shadow %q, want both", u, passwd[u], shadow[u])
		}
	}
	if uid := passwd["alice"]; uid == nil || uid[2] != "1000" {
		t.Errorf("alice: %q, want uid 1000", uid)
	}
	if u := passwd["newdaemon"]; u != nil {
		if uid, err := strconv.Atoi(u[2]); err != nil || uid >= 1000 {
			t.Errorf("newdaemon: %q, want a system uid", u)
		}
	}
	if s := shadow["root"]; s == nil || s[1] != "$6$salt$machinehash" {
		t.Errorf("root's shadow line %q, want the machine's password", s)
	}
	for _, g := range []string{"root", "sudo", "audio", "shadow", "users", "newdaemon", "alice"} {
		if group[g] == nil || gshadow[g] == nil {
			t.Errorf("group %s: group %q gshadow %q, want both", g, group[g], gshadow[g])
		}
	}
	members := func(db map[string][]string, g string) string {
		if db[g] == nil {
			return ""
		}
		return db[g][3]
	}
	if m := members(group, "audio"); m != "newdaemon,alice" {
		t.Errorf("group audio members %q, want newdaemon,alice", m)
	}
	if m := members(gshadow, "audio"); m != "newdaemon,alice" {
		t.Errorf("gshadow audio members %q, want newdaemon,alice", m)
	}
	if m := members(group, "sudo"); m != "alice" {
		t.Errorf("group sudo members %q, want alice", m)
	}
	for _, name := range []string{"subuid", "subgid"} {
		if db(name)["alice"] == nil {
			t.Errorf("etc/%s has no range for alice", name)
		}
	}
	for name, f := range seedAccounts {
		p := filepath.Join(image, "etc", name)
		assertMode(t, p, uint32(f.mode))
		assertOwner(t, p, 0, uint32(f.gid))
	}
	assertOwner(t, filepath.Join(image, "home", "alice"), 1000, 1000)

	// shadow-utils' own checks, chrooted into the new root (glibc's files
	// lookups need no library there). -q: errors only, not missing shells.
	for _, argv := range [][]string{{"pwck", "-r", "-q", "-R", image}, {"grpck", "-r", "-R", image}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
}

// readAccountsT reads an account database the way getent's files backend
// does: every line not blank or a comment, by its first field, the first
// line of a name winning.
func readAccountsT(t *testing.T, p string) map[string][]string {
	t.Helper()
	db := map[string][]string{}
	for _, l := range strings.Split(readFileT(t, p), "\n") {
		if s := strings.TrimSpace(l); s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Split(l, ":")
		if _, ok := db[f[0]]; !ok {
			db[f[0]] = f
		}
	}
	return db
}
