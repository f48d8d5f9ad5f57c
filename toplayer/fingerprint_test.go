package toplayer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFingerprintSeesEveryChange changes a top layer in each way a user
// can, one at a time, and checks that the fingerprint changes every time;
// reading the tree (as Apply does) or taking the fingerprint again must
// not change it.
func TestFingerprintSeesEveryChange(t *testing.T) {
	src := t.TempDir()
	if _, err := TakeFingerprint(src); errors.Is(err, ErrNoChangeTime) {
		t.Skipf("the test directory's filesystem keeps no change time: %v", err)
	}
	mustMkdir(t, filepath.Join(src, "etc", "ssh"), 0o755)
	mustFile(t, filepath.Join(src, "etc", "hostname"), "alpha\n", 0o644)
	mustFile(t, filepath.Join(src, "etc", "ssh", "key"), "secret", 0o600)
	mustFile(t, filepath.Join(src, "etc", "other"), "o", 0o644)
	if err := os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(src, "etc", "localtime")); err != nil {
		t.Fatal(err)
	}
	take := func() Fingerprint {
		t.Helper()
		fp, err := TakeFingerprint(src)
		if err != nil {
			t.Fatalf("TakeFingerprint: %v", err)
		}
		return fp
	}
	first := take()
	if first.Entries != 7 { // . etc etc/hostname etc/localtime etc/other etc/ssh etc/ssh/key
		t.Errorf("Entries = %d, want 7", first.Entries)
	}
	if again := take(); again != first {
		t.Fatalf("fingerprint of an unchanged tree changed: %+v then %+v", first, again)
	}
	if _, err := os.ReadFile(filepath.Join(src, "etc", "ssh", "key")); err != nil {
		t.Fatal(err)
	}
	if again := take(); again != first {
		t.Fatalf("reading a file changed the fingerprint: %+v then %+v", first, again)
	}

	p := func(rel string) string { return filepath.Join(src, rel) }
	changes := []struct {
		name string
		do   func() error
	}{
		{"same-size rewrite, mtime put back", func() error {
			var st unix.Stat_t
			if err := unix.Lstat(p("etc/hostname"), &st); err != nil {
				return err
			}
			if err := os.WriteFile(p("etc/hostname"), []byte("bravo\n"), 0o644); err != nil {
				return err
			}
			// touch -r: only the change time still tells.
			return unix.UtimesNano(p("etc/hostname"), []unix.Timespec{st.Atim, st.Mtim})
		}},
		{"chmod", func() error { return os.Chmod(p("etc/ssh/key"), 0o640) }},
		{"chown", func() error { return os.Lchown(p("etc/other"), 1, 1) }},
		{"xattr", func() error { return unix.Lsetxattr(p("etc/other"), "user.dockroot", []byte("x"), 0) }},
		{"new file", func() error { return os.WriteFile(p("etc/new"), nil, 0o644) }},
		{"remove", func() error { return os.Remove(p("etc/new")) }},
		{"rename", func() error { return os.Rename(p("etc/other"), p("etc/other2")) }},
		{"symlink retargeted", func() error {
			if err := os.Remove(p("etc/localtime")); err != nil {
				return err
			}
			return os.Symlink("/usr/share/zoneinfo/CET", p("etc/localtime"))
		}},
		{"hard link", func() error { return os.Link(p("etc/hostname"), p("etc/ssh/hostname")) }},
		{"replaced by an identical copy", func() error {
			if err := os.Remove(p("etc/ssh/hostname")); err != nil {
				return err
			}
			return os.WriteFile(p("etc/ssh/hostname"), []byte("bravo\n"), 0o644)
		}},
		{"empty directory", func() error { return os.Mkdir(p("var"), 0o755) }},
	}
	prev := take()
	for _, c := range changes {
		// Coarse clocks: make sure the change lands in another tick.
		time.Sleep(2 * time.Millisecond)
		if err := c.do(); err != nil {
			if c.name == "xattr" && errors.Is(err, unix.ENOTSUP) || c.name == "chown" && errors.Is(err, unix.EPERM) {
				t.Logf("%s: not supported here, skipped", c.name)
				continue
			}
			t.Fatalf("%s: %v", c.name, err)
		}
		now := take()
		if now.Sum == prev.Sum {
			t.Errorf("%s: fingerprint did not change (%s)", c.name, now.Sum)
		}
		prev = now
	}
}

// TestFingerprintRefusesCoarseFilesystems: a filesystem without a real
// change time gets ErrNoChangeTime, so the caller applies the top layer
// in full. /proc stands in for one here (its own magic, unlisted).
func TestFingerprintRefusesCoarseFilesystems(t *testing.T) {
	_, err := TakeFingerprint("/proc/self")
	if !errors.Is(err, ErrNoChangeTime) {
		t.Fatalf("TakeFingerprint(/proc/self) = %v, want ErrNoChangeTime", err)
	}
}
