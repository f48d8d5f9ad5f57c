package securejoin

import (
	"errors"
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
