package toplayer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// assertWarnings checks that sum.Warnings has exactly one warning per
// entry of want, each containing all of that entry's words.
func assertWarnings(t *testing.T, sum Summary, want ...[]string) {
	t.Helper()
	if len(sum.Warnings) != len(want) {
		t.Fatalf("Summary.Warnings = %q, want %d warnings", sum.Warnings, len(want))
	}
	for i, words := range want {
		for _, w := range words {
			if !strings.Contains(sum.Warnings[i], w) {
				t.Errorf("warning %q does not say %q", sum.Warnings[i], w)
			}
		}
	}
}

// accountCases are the matrix cases for the account databases, which
// Apply merges rather than replaces (see the package documentation).
var accountCases = []matrixCase{
	{"accounts: passwd, group and shadow are merged and keep the image's mode", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/passwd"), lines(pwRoot, pwDaemon, pwNetworkd), 0o644)
		mustFile(t, f.r("etc/group"), lines("root:x:0:", "audio:x:29:pulse", "sudo:x:27:"), 0o644)
		mustFile(t, f.r("etc/shadow"), lines(shRootImage, shDaemon), 0o640)
		mustFile(t, f.s("etc/passwd"), lines(pwRootZsh, pwAlice), 0o600)
		mustFile(t, f.s("etc/group"), lines("audio:x:29:alice", "sudo:x:27:alice", "alice:x:1000:"), 0o600)
		mustFile(t, f.s("etc/shadow"), lines(shRootTop, shAlice), 0o600)
		sum := f.apply(t)
		assertContent(t, f.r("etc/passwd"), lines(pwRootZsh, pwDaemon, pwNetworkd, pwAlice))
		assertContent(t, f.r("etc/group"), lines("root:x:0:", "audio:x:29:pulse,alice", "sudo:x:27:alice", "alice:x:1000:"))
		assertContent(t, f.r("etc/shadow"), lines(shRootTop, shDaemon, shAlice))
		assertMode(t, f.r("etc/passwd"), 0o644)
		assertMode(t, f.r("etc/group"), 0o644)
		assertMode(t, f.r("etc/shadow"), 0o640)
		assertWarnings(t, sum)
		if sum.Files != 3 {
			t.Errorf("Summary.Files = %d, want 3", sum.Files)
		}
	}},
	{"accounts: the merged file keeps the image's owner and xattrs", func(t *testing.T, f *fixture) {
		needRoot(t, "chown to the shadow group")
		mustFile(t, f.r("etc/shadow"), lines(shRootImage), 0o640)
		mustChown(t, f.r("etc/shadow"), 0, 42)
		mustFile(t, f.r("etc/gshadow"), lines("root:*::"), 0o600)
		mustChown(t, f.r("etc/gshadow"), 0, 42)
		mustFile(t, f.s("etc/shadow"), lines(shAlice), 0o600)
		mustChown(t, f.s("etc/shadow"), 1000, 1000)
		mustFile(t, f.s("etc/gshadow"), lines("alice:!::"), 0o644)
		needUserXattr(t, f.root)
		if err := unix.Setxattr(f.r("etc/shadow"), "user.image", []byte("kept"), 0); err != nil {
			t.Fatal(err)
		}
		f.apply(t)
		assertContent(t, f.r("etc/shadow"), lines(shRootImage, shAlice))
		assertOwner(t, f.r("etc/shadow"), 0, 42)
		assertMode(t, f.r("etc/shadow"), 0o640)
		assertOwner(t, f.r("etc/gshadow"), 0, 42)
		assertMode(t, f.r("etc/gshadow"), 0o600)
		if v := getXattrT(t, f.r("etc/shadow"), "user.image"); string(v) != "kept" {
			t.Errorf("user.image = %q, want the image's %q", v, "kept")
		}
	}},
	{"accounts: a world-readable image shadow or gshadow is written without o+rwx, with a warning", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/shadow"), lines(shRootImage), 0o644)
		mustFile(t, f.r("etc/gshadow"), lines("root:*::"), 0o606)
		mustFile(t, f.s("etc/shadow"), lines(shAlice), 0o640)
		mustFile(t, f.s("etc/gshadow"), lines("alice:!::"), 0o640)
		sum := f.apply(t)
		assertMode(t, f.r("etc/shadow"), 0o640)
		assertMode(t, f.r("etc/gshadow"), 0o600)
		assertWarnings(t, sum, []string{"etc/gshadow", "0606", "0600"}, []string{"etc/shadow", "0644", "0640"})
	}},
	{"accounts: a top-layer shadow copied for want of an image's is not world-readable either", func(t *testing.T, f *fixture) {
		mustMkdir(t, f.r("etc"), 0o755)
		mustFile(t, f.s("etc/shadow"), lines(shAlice), 0o644)
		sum := f.apply(t)
		assertContent(t, f.r("etc/shadow"), lines(shAlice))
		assertMode(t, f.r("etc/shadow"), 0o640)
		assertWarnings(t, sum, []string{"etc/shadow", "0644", "0640"})
	}},
	{"accounts: etc/passwd.dockroot-replace copies the top layer's passwd as it is", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/passwd"), lines(pwRoot, pwDaemon), 0o644)
		mustFile(t, f.r("etc/group"), lines("root:x:0:"), 0o644)
		mustFile(t, f.s("etc/passwd"), "machine passwd, not even well formed\n", 0o600)
		mustFile(t, f.s("etc/passwd.dockroot-replace"), "", 0o644)
		mustFile(t, f.s("etc/group"), lines("alice:x:1000:"), 0o644)
		sum := f.apply(t)
		assertContent(t, f.r("etc/passwd"), "machine passwd, not even well formed\n")
		assertMode(t, f.r("etc/passwd"), 0o600)
		assertContent(t, f.r("etc/group"), lines("root:x:0:", "alice:x:1000:"))
		assertNames(t, f.r("etc"), "group", "passwd")
		assertWarnings(t, sum)
	}},
	{"accounts: a replace marker for a file that is not merged is a warning and is never copied", func(t *testing.T, f *fixture) {
		mustFile(t, f.s("etc/hosts"), "127.0.0.1 localhost\n", 0o644)
		mustFile(t, f.s("etc/hosts.dockroot-replace"), "", 0o644)
		mustFile(t, f.s("etc/shadow.dockroot-replace"), "", 0o644)
		sum := f.apply(t)
		assertContent(t, f.r("etc/hosts"), "127.0.0.1 localhost\n")
		assertNames(t, f.r("etc"), "hosts")
		assertWarnings(t, sum,
			[]string{"etc/hosts.dockroot-replace", "passwd"},
			[]string{"etc/shadow.dockroot-replace", "no etc/shadow"})
	}},
	{"accounts: a replace marker elsewhere than the top layer's etc is an ordinary file", func(t *testing.T, f *fixture) {
		mustFile(t, f.s("srv/etc/passwd"), "not an account file\n", 0o644)
		mustFile(t, f.s("srv/etc/passwd.dockroot-replace"), "", 0o644)
		mustFile(t, f.r("srv/etc/passwd"), lines(pwRoot), 0o644)
		f.apply(t)
		assertContent(t, f.r("srv/etc/passwd"), "not an account file\n")
		assertNames(t, f.r("srv/etc"), "passwd", "passwd.dockroot-replace")
	}},
	{"accounts: a malformed top-layer line fails Apply naming the file and line; the image's file is intact", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/passwd"), lines(pwRoot), 0o644)
		mustFile(t, f.s("etc/passwd"), lines(pwAlice, "bob:x:1001:1001:/home/bob:/bin/sh"), 0o644)
		_, err := f.applyErr(t)
		var e *Error
		var le *LineError
		if !errors.As(err, &e) || !errors.As(err, &le) {
			t.Fatalf("err = %v, want *Error wrapping *LineError", err)
		}
		if e.Op != "merge" || e.Src != f.s("etc/passwd") || e.Dst != f.r("etc/passwd") || le.Line != 2 {
			t.Errorf("error names op %q src %q dst %q line %d, want merge %s -> %s line 2", e.Op, e.Src, e.Dst, le.Line, f.s("etc/passwd"), f.r("etc/passwd"))
		}
		if !strings.Contains(err.Error(), "passwd.dockroot-replace") {
			t.Errorf("error %q does not say how to copy the file as it is", err)
		}
		assertContent(t, f.r("etc/passwd"), lines(pwRoot))
	}},
	{"accounts: without the image's file the top layer's is copied, and still checked", func(t *testing.T, f *fixture) {
		mustMkdir(t, f.r("etc"), 0o755)
		mustFile(t, f.s("etc/passwd"), lines("# mine", pwAlice), 0o644)
		mustFile(t, f.s("etc/shadow"), lines("alice:!"), 0o640)
		_, err := f.applyErr(t)
		var le *LineError
		if !errors.As(err, &le) || le.File != "etc/shadow" || le.Line != 1 {
			t.Fatalf("err = %v, want a *LineError for etc/shadow line 1", err)
		}
		assertContent(t, f.r("etc/passwd"), lines("# mine", pwAlice))
		assertAbsent(t, f.r("etc/shadow"))
	}},
	{"accounts: image etc/passwd -> outside is replaced, never read or written through, with a warning", func(t *testing.T, f *fixture) {
		mustSymlink(t, filepath.Join(f.outside, "passwd"), f.r("etc/passwd"))
		mustFile(t, f.s("etc/passwd"), lines(pwAlice), 0o644)
		sum := f.apply(t)
		// outside/passwd holds a root line: merged through the link, it
		// would be here.
		assertContent(t, f.r("etc/passwd"), lines(pwAlice))
		assertWarnings(t, sum, []string{"etc/passwd", "symlink", "not merged"})
	}},
	{"accounts: image etc/passwd a fifo or a directory is replaced, not merged (and Apply does not block)", func(t *testing.T, f *fixture) {
		mustMkdir(t, f.r("etc"), 0o755)
		if err := unix.Mkfifo(f.r("etc/passwd"), 0o644); err != nil {
			t.Fatal(err)
		}
		mustFile(t, f.r("etc/group/oops"), "x", 0o644)
		mustFile(t, f.s("etc/passwd"), lines(pwAlice), 0o644)
		mustFile(t, f.s("etc/group"), lines("alice:x:1000:"), 0o644)
		sum := f.apply(t)
		assertContent(t, f.r("etc/passwd"), lines(pwAlice))
		assertContent(t, f.r("etc/group"), lines("alice:x:1000:"))
		assertWarnings(t, sum, []string{"etc/group", "directory"}, []string{"etc/passwd", "fifo"})
	}},
	{"accounts: image etc -> usr/etc: merged in usr/etc", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("usr/etc/passwd"), lines(pwRoot), 0o644)
		mustSymlink(t, "usr/etc", f.r("etc"))
		mustFile(t, f.s("etc/passwd"), lines(pwAlice), 0o644)
		f.apply(t)
		assertLink(t, f.r("etc"), "usr/etc")
		assertContent(t, f.r("usr/etc/passwd"), lines(pwRoot, pwAlice))
	}},
	{"accounts: another name hard-linked to the image's passwd keeps the image's content", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/passwd"), lines(pwRoot), 0o644)
		mustLink(t, f.r("etc/passwd"), f.r("etc/passwd-"))
		mustFile(t, f.s("etc/passwd"), lines(pwAlice), 0o644)
		f.apply(t)
		assertContent(t, f.r("etc/passwd"), lines(pwRoot, pwAlice))
		assertContent(t, f.r("etc/passwd-"), lines(pwRoot))
	}},
	{"accounts: id conflicts reach Summary.Warnings", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/passwd"), lines(pwRoot, "bob:x:1000:1000::/home/bob:/bin/sh"), 0o644)
		mustFile(t, f.r("etc/group"), lines("root:x:0:", "bob:x:1000:"), 0o644)
		mustFile(t, f.s("etc/passwd"), lines(pwAlice), 0o644)
		mustFile(t, f.s("etc/group"), lines("alice:x:1000:"), 0o644)
		sum := f.apply(t)
		assertWarnings(t, sum,
			[]string{"etc/group", "alice", "bob", "gid 1000"},
			[]string{"etc/passwd", "alice", "bob", "uid 1000"})
		assertContent(t, f.r("etc/passwd"), lines(pwRoot, "bob:x:1000:1000::/home/bob:/bin/sh", pwAlice))
	}},
	{"accounts: the merged file is new: its mtime is not the image's", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/passwd"), lines(pwRoot), 0o644)
		setTimesNoFollow(t, f.r("etc/passwd"), time1, time1)
		mustFile(t, f.s("etc/passwd"), lines(pwAlice), 0o644)
		setTimesNoFollow(t, f.s("etc/passwd"), time2, time2)
		f.apply(t)
		st := lstat(t, f.r("etc/passwd"))
		if m := st.Mtim.Nano(); m == time1.UnixNano() || m == time2.UnixNano() {
			t.Errorf("mtime %d is an input's; the merged content is new", m)
		}
	}},
}

// readFileT reads p or fails t.
func readFileT(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
