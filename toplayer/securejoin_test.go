package toplayer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	mustFile(t, filepath.Join(root, "usr/lib/systemd/systemd"), "init", 0o755)
	mustFile(t, filepath.Join(root, "usr/share/ssh/sshd_config"), "cfg", 0o644)
	mustSymlink(t, "usr/lib", filepath.Join(root, "lib"))
	mustSymlink(t, "../lib/systemd/systemd", filepath.Join(root, "usr/sbin/init"))
	mustSymlink(t, "usr/sbin", filepath.Join(root, "sbin"))
	mustSymlink(t, "/usr/share/ssh", filepath.Join(root, "etc/ssh"))
	mustSymlink(t, "../../../../../..", filepath.Join(root, "etc/up"))
	mustSymlink(t, "/etc/passwd-outside", filepath.Join(root, "etc/abs"))
	mustSymlink(t, "loop", filepath.Join(root, "loop"))
	mustSymlink(t, "b", filepath.Join(root, "a"))
	mustSymlink(t, "a", filepath.Join(root, "b"))
	mustFile(t, filepath.Join(root, "file"), "f", 0o644)

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
		}{{"SecureJoin", SecureJoin, tc.join}, {"ResolveInRoot", ResolveInRoot, tc.follow}} {
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
	if _, err := SecureJoin("", "x"); err == nil {
		t.Error("SecureJoin with an empty root: want an error")
	}
	// The result is usable: the resolved init exists inside root.
	p, _ := ResolveInRoot(root, "/sbin/init")
	if _, err := os.Stat(p); err != nil {
		t.Errorf("resolved init: %v", err)
	}
}
