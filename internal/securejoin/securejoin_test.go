package securejoin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	// A merged-/usr image with links that climb, restart at / and loop;
	// "a -> b" is a symlink, anything else a file.
	for _, e := range []string{
		"usr/lib/systemd/systemd", "usr/share/ssh/sshd_config", "file",
		"lib -> usr/lib", "usr/sbin/init -> ../lib/systemd/systemd", "sbin -> usr/sbin",
		"etc/ssh -> /usr/share/ssh", "etc/up -> ../../../../../..", "etc/abs -> /etc/passwd-outside",
		"loop -> loop", "a -> b", "b -> a",
	} {
		p, target, link := strings.Cut(e, " -> ")
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if link {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(e), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		rel          string
		join, follow string // relative to root; "ELOOP" for that error
	}{
		{"", "", ""},
		{"/", "", ""},
		{"..", "", ""},
		{"../../etc/shadow", "etc/shadow", "etc/shadow"},
		{"/sbin/init", "usr/sbin/init", "usr/lib/systemd/systemd"},
		{"sbin/init", "usr/sbin/init", "usr/lib/systemd/systemd"},
		{"lib/systemd/systemd", "usr/lib/systemd/systemd", "usr/lib/systemd/systemd"},
		{"etc/ssh/sshd_config", "usr/share/ssh/sshd_config", "usr/share/ssh/sshd_config"},
		{"etc/ssh", "etc/ssh", "usr/share/ssh"},
		{"etc/up/etc/up/x", "x", "x"},                // climbing links are clamped at root
		{"etc/abs", "etc/abs", "etc/passwd-outside"}, // absolute targets restart at root
		{"etc/up/../..", "", ""},
		{"missing/../etc/./ssh/x", "usr/share/ssh/x", "usr/share/ssh/x"},
		{"file/x", "file/x", "file/x"}, // a file used as a directory: taken literally
		{"loop", "loop", "ELOOP"},
		{"loop/x", "ELOOP", "ELOOP"},
		{"a/x", "ELOOP", "ELOOP"},
	}
	for _, tc := range tests {
		for _, mode := range []struct {
			name string
			fn   func(string, string) (string, error)
			want string
		}{{"Join", Join, tc.join}, {"Resolve", Resolve, tc.follow}} {
			got, err := mode.fn(root, tc.rel)
			if mode.want == "ELOOP" {
				if !errors.Is(err, unix.ELOOP) {
					t.Errorf("%s(%q) = %q, %v; want ELOOP", mode.name, tc.rel, got, err)
				}
				continue
			}
			want := filepath.Join(root, mode.want)
			if err != nil || got != want {
				t.Errorf("%s(%q) = %q, %v; want %q", mode.name, tc.rel, got, err, want)
			}
		}
	}
	if _, err := Join("", "x"); err == nil {
		t.Error("Join with an empty root: want an error")
	}
	// The result is usable: the resolved init exists inside root.
	p, _ := Resolve(root, "/sbin/init")
	if _, err := os.Stat(p); err != nil {
		t.Errorf("resolved init: %v", err)
	}
}

// TestOpenInRoot checks the strict lookup against the kernel's path walk
// (path_resolution(7)): a missing component is ENOENT and a non-directory
// used as one ENOTDIR before any later ".." applies, a trailing "/" or "/."
// needs a directory, symlinks resolve inside the root, 40 of them at most.
// Every row runs through openat2(RESOLVE_IN_ROOT) where the kernel has it,
// through the userspace walk, and through OpenInRoot with openat2 missing,
// and all must agree.
func TestOpenInRoot(t *testing.T) {
	root := t.TempDir()
	for _, e := range []string{
		"usr/lib/systemd/systemd", "usr/share/", "file", "dir/",
		"lib -> usr/lib", "usr/sbin/init -> ../lib/systemd/systemd", "sbin -> usr/sbin",
		"etc/up -> ../../../../../..", "etc/abs -> /usr/share", "etc/dirslash -> /usr/share/",
		"etc/fileslash -> /file/", "etc/viafile -> /file/x", "etc/dangling -> /nowhere/x",
		"loop -> loop", "a -> b", "b -> a",
	} {
		p, target, link := strings.Cut(e, " -> ")
		full := filepath.Join(root, p)
		var err error
		switch {
		case link:
			if err = os.MkdirAll(filepath.Dir(full), 0o755); err == nil {
				err = os.Symlink(target, full)
			}
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		default:
			if err = os.MkdirAll(filepath.Dir(full), 0o755); err == nil {
				err = os.WriteFile(full, []byte(e), 0o755)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// chain/l0 -> l1 -> ... -> l40 -> /file: 40 links from l1, 41 from l0.
	if err := os.Mkdir(filepath.Join(root, "chain"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= MaxSymlinks; i++ {
		target := fmt.Sprintf("l%d", i+1)
		if i == MaxSymlinks {
			target = "/file"
		}
		if err := os.Symlink(target, filepath.Join(root, "chain", fmt.Sprintf("l%d", i))); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		rel  string
		want string // relative to root, for a success
		err  error  // the errno, for a failure
		comp string // the component the failure names
	}{
		{rel: "/", want: ""},
		{rel: "", err: unix.ENOENT},
		{rel: "/..", want: ""},
		{rel: "/sbin/init", want: "usr/lib/systemd/systemd"},
		{rel: "sbin//./init", want: "usr/lib/systemd/systemd"},
		{rel: "/etc/up/etc/up/file", want: "file"},
		{rel: "/etc/abs/../lib", want: "usr/lib"}, // ".." from the link's target
		{rel: "/etc/dirslash", want: "usr/share"},
		{rel: "/dir/", want: "dir"},
		{rel: "/dir/.", want: "dir"},
		{rel: "/chain/l1", want: "file"},
		{rel: "/nonexist/../file", err: unix.ENOENT, comp: "/nonexist"},
		{rel: "/dir/nonexist/..", err: unix.ENOENT, comp: "/dir/nonexist"},
		{rel: "/file/../dir", err: unix.ENOTDIR, comp: "/file"},
		{rel: "/file/", err: unix.ENOTDIR, comp: "/file"},
		{rel: "/file/.", err: unix.ENOTDIR, comp: "/file"},
		{rel: "/sbin/init/.", err: unix.ENOTDIR, comp: "/usr/lib/systemd/systemd"},
		{rel: "/etc/fileslash", err: unix.ENOTDIR, comp: "/file"},
		{rel: "/etc/viafile", err: unix.ENOTDIR, comp: "/file"},
		{rel: "/etc/dangling", err: unix.ENOENT, comp: "/nowhere"},
		{rel: "/lib/systemd/nosuch", err: unix.ENOENT, comp: "/usr/lib/systemd/nosuch"},
		{rel: "/loop", err: unix.ELOOP},
		{rel: "/a/x", err: unix.ELOOP},
		{rel: "/chain/l0", err: unix.ELOOP},
	}
	noOpenat2 := func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }
	for _, mode := range []struct {
		name  string
		open  func(root, rel string, flags int) (*os.File, error)
		setup func()
	}{
		{"OpenInRoot", OpenInRoot, nil},
		{"WalkInRoot", WalkInRoot, nil},
		{"OpenInRoot without openat2", OpenInRoot, func() { openat2 = noOpenat2 }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.setup != nil {
				saved := openat2
				mode.setup()
				defer func() { openat2 = saved }()
			}
			for _, tc := range tests {
				f, err := mode.open(root, tc.rel, unix.O_PATH)
				if tc.err == nil {
					want := filepath.Join(root, tc.want)
					if err != nil || f.Name() != want {
						t.Errorf("(%q) = %v, %v; want %s", tc.rel, f, err, want)
					}
					if err == nil {
						f.Close()
					}
					continue
				}
				var e *Error
				switch {
				case err == nil:
					f.Close()
					t.Errorf("(%q) = %s; want %v", tc.rel, f.Name(), tc.err)
				case !errors.Is(err, tc.err) || !errors.As(err, &e):
					t.Errorf("(%q) = %v; want a *Error with %v", tc.rel, err, tc.err)
				case tc.comp != "" && e.Component != tc.comp:
					t.Errorf("(%q) = %v; want it to name %s", tc.rel, err, tc.comp)
				case !strings.Contains(err.Error(), tc.rel) || !strings.Contains(err.Error(), root):
					t.Errorf("(%q) = %v; want it to name the path and the root", tc.rel, err)
				}
			}
		})
	}

	if _, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT}); errors.Is(err, unix.ENOSYS) {
		t.Log("this kernel has no openat2 (Linux < 5.6): OpenInRoot ran the walk in every mode")
	}
	// O_NOFOLLOW leaves the last symlink as it is, in both ways.
	for _, open := range []func(string, string, int) (*os.File, error){OpenInRoot, WalkInRoot} {
		f, err := open(root, "/etc/../loop", unix.O_PATH|unix.O_NOFOLLOW)
		if err != nil || f.Name() != filepath.Join(root, "loop") {
			t.Errorf("open /etc/../loop with O_NOFOLLOW = %v, %v; want the symlink", f, err)
		} else {
			f.Close()
		}
	}

	// Reading through the result reads the file inside the root.
	f, err := OpenInRoot(root, "/sbin/init", unix.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64)
	n, _ := f.Read(buf)
	if got := string(buf[:n]); got != "usr/lib/systemd/systemd" {
		t.Errorf("read /sbin/init: %q", got)
	}
	if _, err := OpenInRoot(filepath.Join(root, "nosuchroot"), "/file", unix.O_PATH); !errors.Is(err, unix.ENOENT) {
		t.Errorf("OpenInRoot with a missing root = %v; want ENOENT", err)
	}
}
