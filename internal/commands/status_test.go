package commands

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/toplayer"
)

func sampleRecord() *bootrecord.Record {
	return &bootrecord.Record{
		Schema: bootrecord.Schema, Version: "v0.1.0", Time: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Cmdline:    "root=LABEL=linux rootflags=subvol=@/rw docker_image=desk:stable",
		RootDevice: "/dev/vda (LABEL=linux)",
		Ref:        "docker.io/library/desk:stable", ImageID: "sha256:" + strings.Repeat("4f", 32),
		ImageSubvolume: "var/lib/docker/btrfs/subvolumes/abc", ImageStore: "graphdriver",
		Layer: bootrecord.Layer{Subvolume: "@/rw", SubvolID: 261, Fresh: true,
			Rotated: []string{"@/rw -> @/rw.prev.1"}, Deleted: []string{"@/rw.prev.1"}},
		Toplayer: &bootrecord.Toplayer{Device: "/dev/vdb (LABEL=top)", Path: "machines/desk", Summary: toplayer.Summary{Files: 12, Dirs: 3}},
		Init:     []string{"/sbin/init", "splash"},
		Warnings: []string{"unknown key dockroot.foo"},
		Steps: []bootrecord.Timing{
			{Step: "pseudofs", Desc: "mount the pseudo filesystems", MS: 3, Result: bootrecord.ResultOK},
			{Step: "rw-layer", Desc: "create the rw layer", MS: 41, Result: bootrecord.ResultOK, Note: "subvolume 261"},
		},
	}
}

func TestStatus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "boot.json")
	if err := bootrecord.Write(path, sampleRecord()); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := drive("status", "--boot-json", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"desk:stable (4f4f4f4f4f4f)", "/dev/vda (LABEL=linux)", "@/rw (subvolume 261), fresh from the image",
		"@/rw -> @/rw.prev.1", "/dev/vdb (LABEL=top):machines/desk: 12 files, 3 dirs", "/sbin/init splash",
		"unknown key dockroot.foo", "create the rw layer", "subvolume 261", "total", "dockroot-init v0.1.0",
		"image store      graphdriver",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FALLBACK") {
		t.Errorf("status shows a fallback that did not happen:\n%s", out)
	}

	code, out, _ = drive("status", "--json", "--boot-json", path)
	var back bootrecord.Record
	if code != 0 || json.Unmarshal([]byte(out), &back) != nil || back.Layer.SubvolID != 261 || len(back.Steps) != 2 || back.Ref != sampleRecord().Ref || back.ImageStore != "graphdriver" {
		t.Errorf("status --json: exit %d\n%s", code, out)
	}
}

// TestStatusPreparedBase: status says when the layer came from a prepared
// base, and which base a boot that copied the top layer kept.
// TestStatusToplayerSkippedAndWarnings: the top layer's skipped elements
// (toplayer_path= directories this machine lacks) and its warnings (account
// id conflicts) are shown.
func TestStatusToplayerSkippedAndWarnings(t *testing.T) {
	rec := sampleRecord()
	rec.Toplayer.Skipped = []string{"fleet/machines/4c4c (fleet/machines/%u): does not exist"}
	rec.Toplayer.Summary.Warnings = []string{"etc/passwd: alice has uid 1000, which the image gives to bob"}
	path := filepath.Join(t.TempDir(), "boot.json")
	if err := bootrecord.Write(path, rec); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := drive("status", "--boot-json", path)
	if code != 0 || !strings.Contains(out, "fleet/machines/4c4c (fleet/machines/%u): does not exist") || !strings.Contains(out, "alice has uid 1000") {
		t.Errorf("exit %d: %s\n%s", code, stderr, out)
	}
}

func TestStatusPreparedBase(t *testing.T) {
	for _, c := range []struct {
		reused bool
		want   string
	}{
		{true, "unchanged, the layer was made from the prepared base .dockroot/bases/s-k"},
		{false, ".dockroot/bases/s-k, for the next boot"},
	} {
		rec := sampleRecord()
		rec.Toplayer.Base, rec.Toplayer.Reused = ".dockroot/bases/s-k", c.reused
		path := filepath.Join(t.TempDir(), "boot.json")
		if err := bootrecord.Write(path, rec); err != nil {
			t.Fatal(err)
		}
		if code, out, stderr := drive("status", "--boot-json", path); code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("reused=%v: exit %d, status lacks %q:\n%s%s", c.reused, code, c.want, out, stderr)
		}
	}
}

func TestStatusFallback(t *testing.T) {
	rec := sampleRecord()
	rec.Ref, rec.ImageID, rec.Toplayer = "", "", nil
	rec.Layer = bootrecord.Layer{Subvolume: "@/rw"}
	rec.Fallback = &bootrecord.Fallback{Step: "resolve", Reason: `image "desk:nope" not found`, Layer: "@/rw"}
	path := filepath.Join(t.TempDir(), "boot.json")
	if err := bootrecord.Write(path, rec); err != nil {
		t.Fatal(err)
	}
	code, out, _ := drive("status", "--boot-json", path)
	for _, want := range []string{"not resolved", `FALLBACK`, `step "resolve" failed: image "desk:nope" not found; booted @/rw instead`, "as it was left", "top layer"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, status lacks %q:\n%s", code, want, out)
		}
	}
}

func TestStatusErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("{nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.json")
	if err := os.WriteFile(other, []byte(`{"hello": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "--boot-json", filepath.Join(dir, "missing.json")}, 1, "not booted by dockroot"},
		{[]string{"status", "--boot-json", garbage}, 1, "read the boot record"},
		{[]string{"status", "--boot-json", other}, 1, "not a dockroot boot record"},
		{[]string{"status", "extra"}, 2, "unexpected argument"},
	} {
		code, _, stderr := drive(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "Usage:") != (tc.code == 2) {
			t.Errorf("%v: exit %d %q; want %d with %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

func TestImagesUsage(t *testing.T) {
	if code, _, stderr := drive("images", "--docker-root", "var/lib/docker"); code != 2 || !strings.Contains(stderr, "absolute") {
		t.Errorf("relative --docker-root: exit %d %s", code, stderr)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if code, _, stderr := drive("images", "--docker-root", missing); code != 1 || strings.Contains(stderr, "Usage:") || !strings.Contains(stderr, missing) {
		t.Errorf("missing data root: exit %d %s", code, stderr)
	}
}

func TestGCUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gc", "--top", "/x", "--rwlayer", "rw", "--keep", "-1"}, "--keep -1"},
		{[]string{"gc", "--top", "/x", "--rwlayer", "rw", "now"}, "unexpected argument"},
	} {
		if code, _, stderr := drive(tc.args...); code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d %q", tc.args, code, stderr)
		}
	}
	// Not a btrfs top level: a runtime error without usage.
	code, _, stderr := drive("gc", "--top", t.TempDir(), "--rwlayer", "rw", "--boot-json", "/nonexistent")
	if code != 1 || strings.Contains(stderr, "Usage:") || !strings.Contains(stderr, "top level") {
		t.Errorf("gc on a plain directory: exit %d %q", code, stderr)
	}
}

// TestStatusFailedTrialLayer: a boot that displaced the layer of a failed
// trial into NAME.failed (issue 17 item 10) says why, and that
// NAME.prev.1 is still the last good boot's layer.
func TestStatusFailedTrialLayer(t *testing.T) {
	rec := sampleRecord()
	rec.Layer.Rotated = []string{"@/rw -> @/rw.failed"}
	rec.Layer.Deleted = []string{"@/rw.failed"}
	path := filepath.Join(t.TempDir(), "boot.json")
	if err := bootrecord.Write(path, rec); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := drive("status", "--boot-json", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "@/rw -> @/rw.failed: the last boot's layer was never marked good; kept apart, so @/rw.prev.1 is still the last good boot's layer") {
		t.Errorf("status does not explain @/rw.failed:\n%s", out)
	}
}
