package rwlayer

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Image IDs the layers are recorded with; the snapshot source is the same
// subvolume, only boot counting's view of them differs.
var (
	imageA = "sha256:" + strings.Repeat("a", 64)
	imageB = "sha256:" + strings.Repeat("b", 64)
)

// TestLayersFailedTrialKeepsLastGood (issue 17 item 10): with keep=1, the
// boots of a new image that are never marked good do not rotate the last
// good boot's layer out. A good (marked) → B#1 → B#2 → B#3: NAME.prev.1
// stays A's layer throughout, and NAME.failed holds the newest failed
// one. Once B is marked good (LastGood=B), the rotation resumes as before.
func TestLayersFailedTrialKeepsLastGood(t *testing.T) {
	fs, l := newLayerFS(t, "@/rw", 1)
	var logs []string
	l.Log = func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)); t.Logf(f, a...) }
	at := func(n int, img, lastGood string) *CreateResult {
		t.Helper()
		l.Image, l.LastGood = img, lastGood
		return boot(t, l, n)
	}

	// Boot 1: A on trial, then marked good in the booted system.
	at(1, imageA, "")
	checkLayers(t, fs, l, []int{1})
	// Boot 2: A, good. Boot 3: B#1; displaces A's layer, which is good.
	at(2, imageA, imageA)
	at(3, imageB, imageA)
	checkLayers(t, fs, l, []int{3, 2})

	// B#2 and B#3: the layer B#1 (then B#2) left is kept apart.
	logs = nil
	res := at(4, imageB, imageA)
	checkLayersFailed(t, fs, l, []int{4, 2}, 3)
	if got := strings.Join(res.Rotated, ", "); got != "@/rw -> @/rw.failed" || len(res.Deleted) != 0 {
		t.Errorf("B#2: Rotated %v, Deleted %v; want only @/rw -> @/rw.failed", res.Rotated, res.Deleted)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "it is kept as @/rw.failed, and @/rw.prev.1 stays the layer of the last good boot") {
		t.Errorf("B#2 does not say why the layer went to NAME.failed:\n%s", strings.Join(logs, "\n"))
	}
	res = at(5, imageB, imageA)
	checkLayersFailed(t, fs, l, []int{5, 2}, 4)
	if len(res.Deleted) != 1 || res.Deleted[0] != "@/rw.failed" {
		t.Errorf("B#3: Deleted %v, want the older @/rw.failed", res.Deleted)
	}
	// What the menu's "previous layer" entry boots (dockroot.layer=previous).
	if got := readFile(t, filepath.Join(fs.Mnt, l.PrevName(1), "boot")); got != "2" {
		t.Errorf("%s holds boot %s, want A's good boot 2", l.PrevName(1), got)
	}

	// A fallback to A (tries exhausted): B#3's layer is a failed one too.
	at(6, imageA, imageA)
	checkLayersFailed(t, fs, l, []int{6, 2}, 5)

	// Boot 7, B#4, displaces the fallback's layer, made from A (good).
	// B is marked good in boot 7: from boot 8 on its layers rotate
	// again, and NAME.failed waits for dockroot gc.
	at(7, imageB, imageA)
	checkLayersFailed(t, fs, l, []int{7, 6}, 5)
	at(8, imageB, imageB)
	checkLayersFailed(t, fs, l, []int{8, 7}, 5)
	at(9, imageB, imageB)
	checkLayersFailed(t, fs, l, []int{9, 8}, 5)

	// Without a last good image, or with keep=0, nothing changes.
	at(10, imageA, "")
	checkLayersFailed(t, fs, l, []int{10, 9}, 5)
	l.Keep = 0
	at(11, imageB, imageA)
	checkLayersFailed(t, fs, l, []int{11}, 5)
	at(12, imageB, imageA)
	checkLayersFailed(t, fs, l, []int{12}, 5)

	// gc's way to delete it.
	if err := l.DeleteSubvolume("@/rw" + failedSuffix); err != nil {
		t.Fatal(err)
	}
	checkLayers(t, fs, l, []int{12})
}

// TestLayersCrashAtEveryPointFailedTrial is TestLayersCrashAtEveryPoint for
// the paused rotation: every commit displaces a failed trial's layer into
// NAME.failed, over an older one. Stopped at every point, the next boot
// must leave NAME, the untouched NAME.prev.1 and NAME.prev.2 of the good
// image, and NAME.failed holding the newest failed layer.
func TestLayersCrashAtEveryPointFailedTrial(t *testing.T) {
	fs, l := newLayerFS(t, "@/rw", 2)
	l.Image, l.LastGood = imageA, imageA
	for n := 1; n <= 3; n++ {
		boot(t, l, n)
	}
	l.Image = imageB
	boot(t, l, 4) // B#1: displaces A's boot 3
	boot(t, l, 5) // B#2: B#1 goes to NAME.failed
	good := []int{3, 2}
	cur, failed := 5, 4
	checkLayersFailed(t, fs, l, append([]int{cur}, good...), failed)

	next := 6
	var points []string
	for k := 0; ; k++ {
		calls := 0
		crashed := ""
		l.hook = func(point string) error {
			if strings.HasPrefix(point, "recover") {
				return nil
			}
			if calls++; calls-1 == k {
				crashed = point
				return errCrash
			}
			return nil
		}
		crashBoot := next
		next++
		p, err := l.Prepare(testImageSubvol)
		if err == nil {
			putFile(t, filepath.Join(p.Path(), "boot"), strconv.Itoa(crashBoot))
			_, err = p.Commit()
		}
		l.hook = nil
		if crashed == "" {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if !errors.Is(err, errCrash) {
			t.Fatalf("crash at %q: error %v", crashed, err)
		}
		points = append(points, crashed)

		got := readFile(t, filepath.Join(fs.Mnt, "@/rw/boot"))
		wentLive := got == strconv.Itoa(crashBoot)
		if !wentLive && got != strconv.Itoa(cur) {
			t.Fatalf("crash at %q: @/rw holds boot %s, want %d or %d", crashed, got, cur, crashBoot)
		}
		if wentLive {
			cur, failed = crashBoot, cur
			putFile(t, filepath.Join(fs.Mnt, "@/rw/ran"), strconv.Itoa(crashBoot))
		}
		// The previous layers are never touched, whatever was interrupted.
		for i, b := range good {
			if got := readFile(t, filepath.Join(fs.Mnt, l.PrevName(i+1), "boot")); got != strconv.Itoa(b) {
				t.Fatalf("crash at %q: %s holds boot %s, want %d", crashed, l.PrevName(i+1), got, b)
			}
		}

		n := next
		next++
		boot(t, l, n)
		cur, failed = n, cur
		checkLayersFailed(t, fs, l, append([]int{cur}, good...), failed)
		if t.Failed() {
			t.Fatalf("after crash at %q", crashed)
		}
	}
	for _, want := range []string{"prepare: intent recorded", "prepare: snapshot made", "commit: exchange rw.dockroot-tmp rw",
		"commit: delete rw.failed", "commit: rename rw.dockroot-tmp rw.failed", "commit: rotated"} {
		found := false
		for _, p := range points {
			found = found || strings.HasPrefix(p, want)
		}
		if !found {
			t.Errorf("no crash injected at %q; points: %v", want, points)
		}
	}
	t.Logf("crashed at %d points: %v", len(points), points)
}
