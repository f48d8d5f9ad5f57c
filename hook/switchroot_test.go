package hook

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// tree builds files under root: "d/" is a directory, "l -> t" a symlink,
// "f*" an executable file, anything else a plain file.
func tree(t *testing.T, root string, entries ...string) {
	t.Helper()
	for _, e := range entries {
		switch {
		case strings.Contains(e, " -> "):
			name, target, _ := strings.Cut(e, " -> ")
			mustDo(t, os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755))
			mustDo(t, os.Symlink(target, filepath.Join(root, name)))
		case strings.HasSuffix(e, "/"):
			mustDo(t, os.MkdirAll(filepath.Join(root, e), 0o755))
		default:
			mode := os.FileMode(0o644)
			if strings.HasSuffix(e, "*") {
				e, mode = strings.TrimSuffix(e, "*"), 0o755
			}
			mustDo(t, os.MkdirAll(filepath.Dir(filepath.Join(root, e)), 0o755))
			mustDo(t, os.WriteFile(filepath.Join(root, e), []byte(e), mode))
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestResolveInit(t *testing.T) {
	root := t.TempDir()
	tree(t, root,
		"lib/systemd/systemd*",
		"sbin/init -> /lib/systemd/systemd",
		"bin/notexec",
		"bin/dir/",
		"bin/dangling -> /nowhere",
	)
	if p, err := ResolveInit(root, "/sbin/init"); err != nil || p != filepath.Join(root, "lib/systemd/systemd") {
		t.Errorf("ResolveInit(/sbin/init) = %q, %v", p, err)
	}
	for _, bad := range []string{"/bin/notexec", "/bin/dir", "/bin/dangling", "/bin/none", "sbin/init"} {
		if _, err := ResolveInit(root, bad); err == nil {
			t.Errorf("ResolveInit(%s) accepted it", bad)
		} else if !strings.Contains(err.Error(), "init") {
			t.Errorf("ResolveInit(%s): %v does not say what to do", bad, err)
		}
	}
	// A missing init (or one behind a dangling link) is a mistake in init=
	// or the image: the message says to set init=.
	for _, missing := range []string{"/bin/dangling", "/bin/none", "/no/such/init"} {
		if _, err := ResolveInit(root, missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "set init=") {
			t.Errorf("ResolveInit(%s) = %v; want ErrNotExist and a hint to set init=", missing, err)
		}
	}
}

func TestMkdirInRoot(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	tree(t, root, "dev/", "var/", "run -> /var/run", "proc -> "+outside, "sys", "etc/mnt -> ../../../mnt", "loop -> loop")
	for _, tc := range []struct {
		path, want string // want relative to root, "" for an error
	}{
		{"/dev", "dev"},
		{"/run", "var/run"}, // created inside the root, through the symlink
		{"/tmp", "tmp"},
		{"/proc", ""},       // points at a path whose parents do not exist inside the root
		{"/sys", ""},        // a file
		{"/etc/mnt", "mnt"}, // ".." stops at the root
		{"/loop", ""},       // a symlink loop
		{"/nope/x", ""},     // the parent must exist
	} {
		got, err := MkdirInRoot(root, tc.path)
		if tc.want == "" {
			if err == nil {
				t.Errorf("MkdirInRoot(%s) = %q, want an error", tc.path, got)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("MkdirInRoot(%s) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
		if fi, err := os.Stat(got); err != nil || !fi.IsDir() {
			t.Errorf("MkdirInRoot(%s): %s is not a directory", tc.path, got)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("MkdirInRoot wrote outside the root: %v", entries)
	}
}

func TestFreeTree(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	tree(t, outside, "keep/me", "keep/sub/too")
	tree(t, root,
		"init*",
		"etc/dockroot.json",
		"lib/modules/6.1/kernel/btrfs.ko",
		"bin/sh -> /bin/busybox",
		"escape -> "+outside+"/keep", // a symlink out: unlinked, never followed
		"newroot/usr/bin/app",        // the new root's mount point: skipped
		"mnt/other/data",             // faked as another device
		"empty/",
	)
	rootDev, err := devOfPath(root)
	mustDo(t, err)
	other := filepath.Join(root, "mnt", "other")
	opts := FreeOptions{
		RootDev: rootDev,
		Skip:    filepath.Join(root, "newroot"),
		DevOf: func(path string, fi fs.FileInfo) (uint64, error) {
			if path == other {
				return rootDev + 1, nil
			}
			return devOf(path, fi)
		},
	}
	n, err := FreeTree(root, opts)
	if err != nil {
		t.Fatalf("FreeTree: %v", err)
	}
	var left []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if p != root {
			left = append(left, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	sort.Strings(left)
	want := []string{"mnt", "mnt/other", "mnt/other/data", "newroot", "newroot/usr", "newroot/usr/bin", "newroot/usr/bin/app"}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Errorf("left after FreeTree:\n%v\nwant\n%v", left, want)
	}
	if n == 0 {
		t.Error("FreeTree reports nothing removed")
	}
	for _, p := range []string{"keep/me", "keep/sub/too"} {
		if _, err := os.Stat(filepath.Join(outside, p)); err != nil {
			t.Errorf("FreeTree followed a symlink out of the tree: %v", err)
		}
	}
}

func TestInitEnv(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		term string
	}{
		{nil, "TERM=linux"},
		{[]string{"TERM=vt102", "docker_path=var/lib/docker"}, "TERM=vt102"},
		{[]string{"TERM="}, "TERM=linux"},
	} {
		env := InitEnv(tc.in)
		joined := strings.Join(env, " ")
		if !strings.Contains(joined, tc.term) || !strings.Contains(joined, "HOME=/") || !strings.Contains(joined, "PATH=/usr/local/sbin:") {
			t.Errorf("InitEnv(%q) = %q", tc.in, env)
		}
		if strings.Contains(joined, "docker_path") {
			t.Errorf("InitEnv(%q) passes kernel parameters on: %q", tc.in, env)
		}
	}
}

func TestIsRAMFS(t *testing.T) {
	for _, tc := range []struct {
		magic int64
		want  bool
	}{
		{0x01021994, true},  // TMPFS_MAGIC
		{0x858458f6, true},  // RAMFS_MAGIC
		{0x9123683e, false}, // BTRFS_SUPER_MAGIC
		{0xef53, false},     // EXT4
	} {
		if got := isRAMFS(tc.magic); got != tc.want {
			t.Errorf("isRAMFS(%#x) = %v, want %v", tc.magic, got, tc.want)
		}
	}
}
