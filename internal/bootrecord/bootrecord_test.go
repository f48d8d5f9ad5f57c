package bootrecord

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteRecordAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "dockroot")
	path := filepath.Join(dir, "boot.json")
	rec := &Record{Schema: Schema, Version: "v1.2.3", Time: time.Unix(1700000000, 0).UTC(),
		Ref: "docker.io/library/web:1", ImageID: "sha256:aa", Layer: Layer{Subvolume: "rw", SubvolID: 260, Fresh: true},
		Steps: []Timing{{Step: "pseudo-fs", Desc: "mount the pseudo filesystems", MS: 3, Result: ResultOK}}}
	if err := Write(path, rec); err != nil {
		t.Fatal(err)
	}
	// Overwrite: the rename replaces the old file.
	rec.Version = "v1.2.4"
	if err := Write(path, rec); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("boot.json is not JSON: %v\n%s", err, data)
	}
	if m["dockroot_version"] != "v1.2.4" || m["ref"] != "docker.io/library/web:1" || m["schema"] != float64(1) {
		t.Errorf("boot.json = %s", data)
	}
	if _, ok := m["fallback"]; ok {
		t.Errorf("boot.json has a fallback key without a fallback: %s", data)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left beside boot.json: %v", entries)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("boot.json mode %v, want 0644 (readable by the booted system)", fi.Mode())
	}
}
