package commands

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/testenv"
)

// TestMarkGoodRoot runs mark-good and retry against a real loop btrfs, as
// the booted system does: they find the device in boot.json and mount its
// top level themselves, privately, and leave no mount behind.
func TestMarkGoodRoot(t *testing.T) {
	testenv.RequireRoot(t, "mkfs.btrfs", "losetup")
	b := testenv.NewBtrfs(t, 256, "")
	newImg := bootstate.Image{ID: "sha256:" + strings.Repeat("4f", 32), Ref: "docker.io/library/desk:2"}
	goodImg := bootstate.Image{ID: "sha256:" + strings.Repeat("9a", 32), Ref: "docker.io/library/desk:1"}

	// Boot counting has tried desk:2 twice and fell back to desk:1 on the
	// third boot, which is this one.
	st, _ := bootstate.Load(b.Mnt)
	st.LastGood = &bootstate.Good{Image: goodImg}
	for i := 0; i < 3; i++ {
		if _, err := st.BeginBoot(newImg.ID, newImg.Ref, 2); err != nil {
			t.Fatal(err)
		}
	}
	if st.FellBack == nil {
		t.Fatalf("setup: no fallback: %+v", st.Record)
	}
	bootJSON := filepath.Join(t.TempDir(), "boot.json")
	rec := &bootrecord.Record{Schema: bootrecord.Schema, LayerMode: "new", RootDevicePath: b.Loop, RootDevice: b.Loop + " (test)",
		Ref: goodImg.Ref, ImageID: goodImg.ID, Layer: bootrecord.Layer{Subvolume: "rw", Fresh: true}}
	if err := bootrecord.Write(bootJSON, rec); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := drive("mark-good", "--boot-json", bootJSON)
	if code != 0 || !strings.Contains(out, "marked desk:1") && !strings.Contains(out, "marked docker.io/library/desk:1") {
		t.Fatalf("mark-good: exit %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out, "still counts as failed") || !strings.Contains(out, "dockroot retry") {
		t.Errorf("mark-good after a fallback does not say the new image still counts as failed:\n%s", out)
	}
	after, err := bootstate.Load(b.Mnt)
	if err != nil {
		t.Fatal(err)
	}
	if after.LastGood == nil || after.LastGood.ID != goodImg.ID || after.LastGood.Marked.IsZero() || after.FellBack == nil || after.Trying == nil {
		t.Errorf("state after mark-good: %+v", after.Record)
	}
	testenv.AssertNoTopLevelMount(t)

	code, out, stderr = drive("retry", "--boot-json", bootJSON)
	if code != 0 || !strings.Contains(out, "gets new tries") {
		t.Fatalf("retry: exit %d\n%s%s", code, out, stderr)
	}
	after, _ = bootstate.Load(b.Mnt)
	if after.Trying != nil || after.FellBack != nil || after.LastGood == nil || after.LastGood.ID != goodImg.ID {
		t.Errorf("state after retry: %+v", after.Record)
	}
	testenv.AssertNoTopLevelMount(t)

	// The new image boots and is marked good in turn.
	rec.Ref, rec.ImageID = newImg.Ref, newImg.ID
	if err := bootrecord.Write(bootJSON, rec); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr = drive("mark-good", "--boot-json", bootJSON); code != 0 {
		t.Fatalf("mark-good: exit %d\n%s%s", code, out, stderr)
	}
	after, _ = bootstate.Load(b.Mnt)
	if after.LastGood == nil || after.LastGood.ID != newImg.ID || after.LastGood.Ref != newImg.Ref {
		t.Errorf("state after marking the new image: %+v", after.Record)
	}

	// A device that is not btrfs: the error names it and the mount.
	rec.RootDevicePath = "/dev/null"
	if err := bootrecord.Write(bootJSON, rec); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = drive("mark-good", "--boot-json", bootJSON)
	if code != 1 || !strings.Contains(stderr, "mount /dev/null on ") || !strings.Contains(stderr, "subvolid=5") {
		t.Errorf("mark-good on /dev/null: exit %d: %s", code, stderr)
	}
	testenv.AssertNoTopLevelMount(t)
}
