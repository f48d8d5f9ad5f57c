package commands

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/bootrecord"
)

// Which boots have an image to mark good: only a fresh layer of an image
// says that the image boots.
func TestBootedImage(t *testing.T) {
	id := "sha256:" + strings.Repeat("4f", 32)
	for _, tc := range []struct {
		name   string
		rec    bootrecord.Record
		wantID string
		why    string
	}{
		{"fresh", bootrecord.Record{LayerMode: "new", Ref: "docker.io/library/desk:1", ImageID: id, Layer: bootrecord.Layer{Subvolume: "rw", Fresh: true}}, id, ""},
		{"older init without layer mode", bootrecord.Record{ImageID: id, Layer: bootrecord.Layer{Subvolume: "rw", Fresh: true}}, id, ""},
		{"fell back to the last good image", bootrecord.Record{LayerMode: "new", ImageID: id, Layer: bootrecord.Layer{Subvolume: "rw", Fresh: true},
			BootCount: &bootrecord.BootCount{FellBack: true}}, id, ""},
		{"previous layer", bootrecord.Record{LayerMode: "previous", Layer: bootrecord.Layer{Subvolume: "rw.prev.1", Image: id, Reason: "dockroot.layer=previous"}},
			"", "existing rw layer rw.prev.1 as it was left (dockroot.layer=previous)"},
		{"hibernation", bootrecord.Record{LayerMode: "current", Layer: bootrecord.Layer{Subvolume: "rw", Reason: "a hibernation image is on /dev/vdb"}},
			"", "rw as it was left (a hibernation image is on /dev/vdb)"},
		{"onfail fallback, older init", bootrecord.Record{Layer: bootrecord.Layer{Subvolume: "rw"}, Fallback: &bootrecord.Fallback{Layer: "rw"}}, "", "as it was left"},
		{"no image", bootrecord.Record{LayerMode: "new", Layer: bootrecord.Layer{Subvolume: "rw", Fresh: true}}, "", "names no image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, why := bootedImage(&tc.rec)
			if img.ID != tc.wantID || (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
				t.Errorf("bootedImage = %+v, %q; want ID %q, why containing %q", img, why, tc.wantID, tc.why)
			}
		})
	}
}

// mark-good on a boot that used an existing layer succeeds without
// touching anything (the systemd unit runs it at every boot).
func TestMarkGoodNothingToMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "boot.json")
	rec := &bootrecord.Record{Schema: bootrecord.Schema, LayerMode: "previous", RootDevicePath: "/dev/nonexistent-dockroot-test",
		Layer: bootrecord.Layer{Subvolume: "rw.prev.1", Reason: "dockroot.layer=previous"}}
	if err := bootrecord.Write(path, rec); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := drive("mark-good", "--boot-json", path)
	if code != 0 || !strings.Contains(out, "nothing to mark good: this boot used the existing rw layer rw.prev.1") {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
}

func TestMarkGoodNeedsRootDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "boot.json")
	rec := &bootrecord.Record{Schema: bootrecord.Schema, LayerMode: "new", ImageID: "sha256:" + strings.Repeat("4f", 32),
		Layer: bootrecord.Layer{Subvolume: "rw", Fresh: true}}
	if err := bootrecord.Write(path, rec); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := drive("mark-good", "--boot-json", path)
	if code != 1 || !strings.Contains(stderr, "root_device_path") || !strings.Contains(stderr, "rebuild the initramfs") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	code, _, stderr = drive("mark-good", "--boot-json", filepath.Join(t.TempDir(), "none.json"))
	if code != 1 || !strings.Contains(stderr, "was not booted by dockroot-init") {
		t.Errorf("missing record: exit %d: %s", code, stderr)
	}
}

func TestStatusExistingLayerAndBootCount(t *testing.T) {
	good := "sha256:" + strings.Repeat("9a", 32)
	for _, tc := range []struct {
		name string
		edit func(r *bootrecord.Record)
		want []string
	}{
		{"previous layer", func(r *bootrecord.Record) {
			r.Ref, r.ImageID, r.LayerMode = "", "", "previous"
			r.Layer = bootrecord.Layer{Subvolume: "@/rw.prev.1", SubvolID: 258, Image: good, Reason: "dockroot.layer=previous"}
		}, []string{"made from image 9a9a9a9a9a9a", "@/rw.prev.1 (subvolume 258), as it was left (not fresh): dockroot.layer=previous"}},
		{"hibernation", func(r *bootrecord.Record) {
			r.Ref, r.ImageID, r.LayerMode = "", "", "current"
			r.Layer = bootrecord.Layer{Subvolume: "@/rw", Reason: "a hibernation image is on /dev/vdb"}
			r.Hibernation = &bootrecord.Hibernation{Device: "/dev/vdb", Reason: "resume=LABEL=swap: /dev/vdb holds a hibernation image (S1SUSPEND)", ResumeError: "write 254:16: invalid argument"}
		}, []string{"HIBERNATION", "holds a hibernation image (S1SUSPEND)", "the kernel did not resume: write 254:16"}},
		{"counting", func(r *bootrecord.Record) {
			r.BootCount = &bootrecord.BootCount{Tries: 3, Attempt: 2, Requested: bootrecord.ImageRef{Ref: r.Ref, ID: r.ImageID},
				LastGood: &bootrecord.ImageRef{Ref: "docker.io/library/desk:old", ID: good}}
		}, []string{"attempt 2 of dockroot.tries=3 for desk:stable (4f4f4f4f4f4f): not marked good yet", "last good", "desk:old (9a9a9a9a9a9a)"}},
		{"fell back", func(r *bootrecord.Record) {
			r.Ref, r.ImageID = "docker.io/library/desk:old", good
			r.BootCount = &bootrecord.BootCount{Tries: 3, FellBack: true, Requested: bootrecord.ImageRef{Ref: "docker.io/library/desk:stable", ID: "sha256:" + strings.Repeat("4f", 32)},
				LastGood: &bootrecord.ImageRef{Ref: "docker.io/library/desk:old", ID: good}, Message: "FALLING BACK: desk:stable was booted 3 times without being marked good"}
		}, []string{"desk:old (9a9a9a9a9a9a)", "FALLBACK", "FALLING BACK: desk:stable was booted 3 times", "last good"}},
		{"never marked", func(r *bootrecord.Record) {
			r.BootCount = &bootrecord.BootCount{Tries: 3, Attempt: 1, Requested: bootrecord.ImageRef{Ref: r.Ref, ID: r.ImageID}}
		}, []string{"attempt 1 of dockroot.tries=3", "none marked yet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := sampleRecord()
			tc.edit(rec)
			path := filepath.Join(t.TempDir(), "boot.json")
			if err := bootrecord.Write(path, rec); err != nil {
				t.Fatal(err)
			}
			code, out, stderr := drive("status", "--boot-json", path)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("status lacks %q:\n%s", w, out)
				}
			}
			if tc.name != "fell back" && strings.Contains(out, "FALLBACK") {
				t.Errorf("status shows a fallback that did not happen:\n%s", out)
			}
		})
	}
}
