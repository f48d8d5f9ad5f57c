package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// leftovers lists what in dir is not one of names.
func leftovers(t *testing.T, dir string, names ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, e := range entries {
		known := false
		for _, n := range names {
			known = known || e.Name() == n
		}
		if !known {
			extra = append(extra, e.Name())
		}
	}
	return extra
}

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		old  string // content already at the path; "" for none
		data string
		perm os.FileMode
	}{
		{"new file", "", "hello\n", 0o644},
		{"replaces a longer file", "a much longer old content\n", "new\n", 0o644},
		{"private mode", "old", "secret", 0o600},
		{"empty data", "old", "", 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, []byte(tc.data), tc.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tc.data {
				t.Errorf("content = %q, %v; want %q", got, err, tc.data)
			}
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != tc.perm {
				t.Errorf("mode = %v, %v; want %v", st.Mode().Perm(), err, tc.perm)
			}
			if extra := leftovers(t, dir, "state.json"); len(extra) > 0 {
				t.Errorf("files left beside it: %v", extra)
			}
		})
	}
}

func TestWriteFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "entry.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("encoder failed")
	err := Write(path, 0o644, func(w io.Writer) error {
		io.WriteString(w, "half of the new")
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), path) {
		t.Errorf("Write = %v; want it to wrap %v and name %s", err, boom, path)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("content after a failed write = %q, want the old content", got)
	}
	if extra := leftovers(t, dir, "entry.json"); len(extra) > 0 {
		t.Errorf("temporary files left: %v", extra)
	}
}

func TestWriteReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "link")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "untouched" {
		t.Errorf("symlink target = %q: the write followed the link", got)
	}
	if st, err := os.Lstat(path); err != nil || !st.Mode().IsRegular() {
		t.Errorf("%s is %v, %v; want a regular file", path, st.Mode(), err)
	}
}

func TestWriteMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "file")
	err := WriteFile(path, []byte("x"), 0o644)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("WriteFile into a missing directory = %v; want ErrNotExist naming %s", err, path)
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, n := range []string{
		"state.json",          // the file itself stays
		".state.json.tmp-123", // a crash's leftover goes
		".state.json.tmp-abc", // and so does this one
		".other.json.tmp-123", // another file's temporary stays
		"state.json.tmp-123",  // not our pattern: stays
		".state.json.bak",     // stays
	} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	RemoveStale(path)
	want := []string{"state.json", ".other.json.tmp-123", "state.json.tmp-123", ".state.json.bak"}
	if extra := leftovers(t, dir, want...); len(extra) > 0 {
		t.Errorf("left after RemoveStale: %v", extra)
	}
	for _, n := range want {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("RemoveStale removed %s: %v", n, err)
		}
	}
}
