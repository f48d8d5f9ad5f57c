package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
)

func TestNewStat(t *testing.T) {
	for _, c := range []struct {
		name             string
		runs             []float64
		median, min, max float64
	}{
		{"empty is not measured", nil, 0, 0, 0},
		{"one", []float64{3}, 3, 3, 3},
		{"odd count, unsorted", []float64{5, 1, 3}, 3, 1, 5},
		{"even count averages the middle two", []float64{4, 1, 3, 2}, 2.5, 1, 4},
		{"outlier does not move the median", []float64{10, 11, 12, 10, 900}, 11, 10, 900},
	} {
		s := newStat(c.runs)
		if s.Median != c.median || s.Min != c.min || s.Max != c.max {
			t.Errorf("%s: newStat(%v) = median %v min %v max %v; want %v %v %v", c.name, c.runs, s.Median, s.Min, s.Max, c.median, c.min, c.max)
		}
		if len(s.Runs) != len(c.runs) {
			t.Errorf("%s: kept %d runs, want %d", c.name, len(s.Runs), len(c.runs))
		}
	}
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{fmtMS(0), "—"},
		{fmtMS(math.NaN()), "—"},
		{fmtMS(0.1234), "0.123 ms"},
		{fmtMS(1.234), "1.23 ms"},
		{fmtMS(12.34), "12.3 ms"},
		{fmtMS(1234.5), "1234 ms"},
		{fmtRatio(0), "—"},
		{fmtRatio(ratio(3, 0)), "—"},
		{fmtRatio(1.034), "1.03×"},
		{fmtRatio(12.4), "12×"},
		{fmtBytes(512), "512 B"},
		{fmtBytes(3 << 20), "3.0 MiB"},
		{count(1000), "1,000"},
		{count(300000), "300,000"},
		{count(12), "12"},
		{verdict(1.05, "≤", 1.10), "meets ≤ 1.10×"},
		{verdict(1.2, "≤", 1.10), "**misses** ≤ 1.10×"},
		{verdict(6, "≥", 5), "meets ≥ 5.00×"},
		{verdict(4, "≥", 5), "**misses** ≥ 5.00×"},
		{verdict(0, "≥", 5), "not measured"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestModeOptions(t *testing.T) {
	for _, c := range []struct {
		mode string
		vm   bool
	}{{"full", true}, {"quick", true}, {"smoke", false}} {
		o, err := modeOptions(c.mode)
		if err != nil {
			t.Fatalf("%s: %v", c.mode, err)
		}
		if o.VM != c.vm || o.Runs < 1 || o.HookRuns < 1 || len(o.Images) < 2 || len(o.DeleteFiles) < 1 || len(o.RootFiles) < 2 || len(o.CopyTrees) < 2 ||
			len(o.TagCounts) < 2 || o.TagCounts[0] < 2 || len(o.MenuCounts) < 1 {
			t.Errorf("%s: incomplete options %+v", c.mode, o)
		}
		if o.Images[0].Files != 0 {
			t.Errorf("%s: the first image must be the small busybox one (the copy section snapshots it)", c.mode)
		}
	}
	full, _ := modeOptions("full")
	if full.Runs < 5 || full.HookRuns < 5 || full.BootRuns < 5 {
		t.Errorf("full mode: %d runs, %d boots; issue 6 asks for medians of at least 5", full.Runs, full.BootRuns)
	}
	if _, err := modeOptions("fast"); err == nil {
		t.Error("modeOptions(\"fast\") succeeded; want an error naming the modes")
	}
}

func TestDiffListings(t *testing.T) {
	f := entryMeta{Type: "f", Mode: 0o644, Size: 3}
	a := map[string]entryMeta{"x": f, "only-a": f, "y": f}
	changed := f
	changed.Mode = 0o4755
	b := map[string]entryMeta{"x": f, "only-b": f, "y": changed}
	got := diffListings(a, b, "A", "B")
	if len(got) != 3 {
		t.Fatalf("diffs = %q; want only-a, only-b and y", got)
	}
	for i, prefix := range []string{"only-a: only in A", "only-b: only in B", "y: A has f 0644"} {
		if !strings.HasPrefix(got[i], prefix) {
			t.Errorf("diff %d = %q, want prefix %q", i, got[i], prefix)
		}
	}
	if d := diffListings(a, a, "A", "B"); len(d) != 0 {
		t.Errorf("a listing differs from itself: %q", d)
	}
}

func TestMetaOfSeesWhatACopyMustKeep(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := metaOf(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	after, err := metaOf(p)
	if err != nil {
		t.Fatal(err)
	}
	if after.Mode != 0o600 || after.Mtime != when.UnixNano() || after.Size != 3 || after == before {
		t.Errorf("metaOf after chmod and chtimes = %s; want mode 0600, mtime %d, size 3", after, when.UnixNano())
	}
	if err := os.Symlink("target", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	l, err := metaOf(filepath.Join(dir, "l"))
	if err != nil || l.Type != "l" || l.Link != "target" {
		t.Errorf("metaOf(symlink) = %s, %v; want type l to target", l, err)
	}
}

// sampleResults is a complete set of figures for the report tests.
func sampleResults() *Results {
	st := func(v float64) Stat { return newStat([]float64{v, v, v, v, v}) }
	img := func(label string, mb int64) ImageInfo {
		return ImageInfo{Label: label, Ref: "bench/" + label + ":1", Bytes: mb << 20, Files: 10, Layers: 2}
	}
	return &Results{
		Mode: "full", Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), LayerdbN: 7,
		Machine: Machine{CPU: "Test CPU", Cores: 2, Tools: map[string]string{"go": "go1.26"}},
		Hook: []HookRow{
			{Image: img("small", 2), Dockroot: st(10), Shell: st(80), Speedup: 8, Steps: map[string]Stat{"resolve": st(1)}},
			{Image: img("large", 2000), Dockroot: st(10.5), Shell: st(90), Speedup: 90 / 10.5},
		},
		Store: &StoreRow{Extra: 300, LayerdbN: 307, How: storeLayersHow, Row: HookRow{Image: img("large", 2000), Dockroot: st(10.5), Shell: st(42), Speedup: 4}},
		Delete: []DeleteRow{
			{Files: 1000, Dockroot: st(0.2), Progs: st(4), Walk: st(1), Cleaner: st(20)},
			{Files: 1000, Nested: 3, Dockroot: st(0.5), ProgsErr: "btrfs subvolume delete x: exit status 1: ERROR: Could not destroy subvolume/snapshot: Directory not empty", Walk: st(1.5)},
			{Files: 300000, Dockroot: st(0.2), Progs: st(4), Walk: st(300)},
		},
		Copy:      []CopyRow{{Tree: "10k small files", Source: "tmpfs", Dockroot: st(50), CpA: st(100), Ratio: 0.5, MetadataEqual: true, Compared: 10000}},
		Initramfs: &InitramfsResult{Kernel: "6.1.0-56-amd64", Modules: []string{"btrfs"}, Sizes: []InitramfsSize{{Compression: "gzip", Dockroot: 3 << 20, Shell: 4 << 20}}},
		Boot: &BootResult{Contenders: []BootContender{
			{Name: cDockroot, Label: "dockroot", Bytes: 3 << 20, Init: st(4000), KInit: st(3000), Phase: st(1000), ToDisk: st(300), ToMount: st(400), Modules: st(12),
				Steps: map[string]Stat{"load kernel modules": st(250), "resolve the image": st(60)}},
			{Name: cShell, Label: "busybox shell", Bytes: 4 << 20, Init: st(6000), KInit: st(3000), Phase: st(3000), ToDisk: st(2500), ToMount: st(2700), Modules: st(59)},
			{Name: cItoolsMost, Label: "initramfs-tools most", Bytes: 30 << 20, Init: st(7000), KInit: st(3000), Phase: st(4000), ToDisk: st(2000), ToMount: st(3500), Modules: st(20)},
		}},
		Tags: []TagRow{{Tags: 10, Resolve: st(0.2)}, {Tags: 1000, Resolve: st(0.9)}},
		Menu: []MenuRow{{Tags: 200, Menu: st(3)}},
		Stores: &StoresResult{Image: "a test image", Runs: 5, Stores: []StoreBench{
			{Store: "graphdriver", Index: "repositories.json", How: "API", Rows: []StoreTagRow{{Tags: 10, Resolve: st(0.2)}, {Tags: 1000, Resolve: st(0.4)}}}}},
		TreeRoot: []RootRow{
			{Files: 300, Level: 1, Pointers: 10, Snapshot: st(2.05)},
			{Files: 6000, Level: 1, Pointers: 210, Snapshot: st(3.05)},
			{Files: 12000, Level: 1, Pointers: 410, Snapshot: st(4.05)},
			{Files: 24000, Level: 2, Pointers: 2, Snapshot: st(2.1)},
		},
		Missing: map[string]string{},
	}
}

// TestPointerCost checks the fit of section 1d: only the lowest node level
// counts, and too few rows give no fit rather than a made-up one.
func TestPointerCost(t *testing.T) {
	per, base, ok := pointerCost(sampleResults().TreeRoot)
	if !ok || math.Abs(per-0.005) > 1e-9 || math.Abs(base-2.0) > 1e-9 {
		t.Errorf("pointerCost = %v ms a pointer on %v ms (ok %v), want 0.005 on 2.0", per, base, ok)
	}
	one := []RootRow{{Level: 1, Pointers: 10, Snapshot: newStat([]float64{2})}, {Level: 2, Pointers: 3, Snapshot: newStat([]float64{2})}}
	if _, _, ok := pointerCost(one); ok {
		t.Error("pointerCost fitted a line through one row of its level")
	}
	if _, _, ok := rootSpan(one); ok {
		t.Error("rootSpan found a span in one row of its level")
	}
	leaves := []RootRow{{Level: 0, Pointers: 10, Snapshot: newStat([]float64{1})}, {Level: 0, Pointers: 50, Snapshot: newStat([]float64{2})}}
	if _, _, ok := pointerCost(leaves); ok {
		t.Error("pointerCost fitted leaf roots, whose items are not pointers")
	}
}

func TestRenderReport(t *testing.T) {
	st5 := func(v float64) Stat { return newStat([]float64{v, v, v, v, v}) }
	res := sampleResults()
	doc := renderReport(res, []string{"hook-vs-image-size.png", "delete-vs-files.png"}, nil)
	for _, want := range []string{
		"## 1 and 2.", "## 3.", "## 4.", "## 5.", "## 6.", "## 7.", "## Machine", "## How to reproduce",
		"bench/hook-vs-image-size.png", "bench/delete-vs-files.png",
		"| 1.05× | meets ≤ 1.10× |", // 10.5 / 10
		"8.00× faster at worst | meets ≥ 5.00× |",
		"fails: Could not destroy subvolume/snapshot: Directory not empty |",
		"Test CPU, 2 cores",
		"The layerdb held 7 layers",
		// Row 2b is labelled, measured for both contenders, and not the target row.
		"| 2b | Same as 2, large image, in a store that also holds 300 other layers | 10.5 ms | 42.0 ms | 4.00× faster | context, not the target row (would miss ≥ 5.00×) |",
		"it meets ≥ 5.00× (8.00× at worst)",
		"in the filled store the ratio is 4.00×, which misses ≥ 5.00×",
		"+ 300 other layers (307 in the layerdb), row 2b",
		"snapshot/layers_durability.go",
		// Section 1d: the snapshot against its source's tree root.
		"| 1d | One snapshot (what `prepare` asks of btrfs), tree root of 410 vs 10 pointers | 4.05 ms vs 2.05 ms | — | 5.0 µs a pointer;",
		"### 1d. What a snapshot costs",
		"| 12,000 | a level-1 node of 410 pointers | **4.05 ms** |",
		"From 10 to 410 pointers at level 1, the snapshot went 2.05 ms → 4.05 ms: 5.0 µs a pointer on a base of 2.00 ms",
		"With 24,000 files the root is a level-2 node of 2 pointers, and the snapshot takes 2.10 ms.",
		// Section 6: the phase against each peer, the targets met, the parts.
		"| 6 | Initramfs phase (kernel's `Run /init` to the image's init), QEMU TCG | 1000 ms | 4000 ms (initramfs-tools most) | 0.25× | meets ≤ 0.50× |",
		"| 6b | Initramfs phase (kernel's `Run /init` to the image's init), QEMU TCG | 1000 ms | 3000 ms (busybox shell) | 0.33× | meets ≤ 0.50× |",
		"| 6c | Initramfs size | 3.0 MiB | 30.0 MiB (initramfs-tools most) | 0.10× | meets ≤ 0.50× |",
		"| initramfs-tools most | 30.0 MiB | **4000 ms** | 4000 ms–4000 ms | 2000 ms | 3500 ms | 20 | 7000 ms | 4.00× slower |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(doc, "fsync (file and directory)") {
		t.Error("report still describes the old durability (fsync of file and directory several times)")
	}
	if strings.Contains(doc, "Why section 1 misses") || strings.Contains(doc, "Why section 2 misses") {
		t.Error("report explains a miss although sections 1 and 2 meet their targets")
	}
	if strings.Contains(doc, "boot-to-init.png") {
		t.Error("report links a plot that was not drawn")
	}
	if strings.Contains(doc, "is above both") {
		t.Error("report explains a middle image although there is none")
	}
	mid := res.Hook[0]
	mid.Image.Label, mid.Image.TreeLevel, mid.Image.TreeRootN, mid.Dockroot = "medium", 1, 341, st5(14)
	withMid := *res
	withMid.Hook = []HookRow{res.Hook[0], mid, res.Hook[1]}
	if doc := renderReport(&withMid, nil, nil); !strings.Contains(doc, "The medium image's boot work (14.0 ms, `prepare` —) is above both: its tree root is a level-1 node of 341 pointers") {
		t.Error("report does not explain a middle image whose boot work is above the smallest's and the largest's")
	}
	res.Hook[1].Dockroot, res.Hook[1].Speedup = st5(20), 90.0/20
	doc = renderReport(res, nil, nil)
	for _, want := range []string{"**Why section 1 misses ≤ 1.10× (2.00×):**", "**Why section 2 misses ≥ 5.00× (4.50× at large):**", "btrfs_inc_ref"} {
		if !strings.Contains(doc, want) {
			t.Errorf("report with missed targets lacks %q", want)
		}
	}
	slow := *res
	slow.Boot = &BootResult{Contenders: append([]BootContender(nil), res.Boot.Contenders...)}
	slow.Boot.Contenders[0].Phase = st5(2500)
	if doc := renderReport(&slow, nil, nil); !strings.Contains(doc, "**misses** the target of ≤ 0.50×. Of dockroot's 2500 ms, 300 ms pass before the disk is probed") ||
		!strings.Contains(doc, "dockroot's steps over 50 ms: load kernel modules 250 ms, resolve the image 60.0 ms.") {
		t.Errorf("a missed phase target is not explained from its parts:\n%s", doc)
	}
	res.Boot = nil
	res.Missing["boot"] = "not run: no QEMU"
	doc = renderReport(res, nil, nil)
	if !strings.Contains(doc, "**Not measured:** not run: no QEMU") {
		t.Error("a missing section is not explained in the report")
	}
}

func TestPlotData(t *testing.T) {
	files := plotData(sampleResults())
	hook := strings.Split(strings.TrimSpace(files["hook.dat"]), "\n")
	if len(hook) != 2 || !strings.HasPrefix(hook[0], "2 10 10 10 80 80 80 ") {
		t.Errorf("hook.dat = %q; want one line per image, size in MB first", files["hook.dat"])
	}
	del := strings.Split(strings.TrimSpace(files["delete.dat"]), "\n")
	if len(del) != 2 || del[0] != "1000 0.2 4 1 0.5 1.5" || del[1] != "300000 0.2 4 300 ? ?" {
		t.Errorf("delete.dat = %q; want flat and nested rows joined per file count, ? where missing", del)
	}
	if _, ok := files["boot.dat"]; !ok {
		t.Error("no boot.dat although the boot was measured")
	}
}

// TestSmoke runs the whole harness in smoke mode on a real loop btrfs and
// private dockerd: every section but the QEMU ones must produce figures,
// and toplayer.Apply and cp -a must leave identical metadata.
func TestSmoke(t *testing.T) {
	testenv.RequireRoot(t, append(requiredTools, "gnuplot")...)
	opts, err := modeOptions("smoke")
	if err != nil {
		t.Fatal(err)
	}
	opts.Out, opts.CacheDir = t.TempDir(), t.TempDir()
	opts.Log = t.Logf
	res, err := Run(opts, &cleanups{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hook) != len(opts.Images) {
		t.Fatalf("%d hook rows for %d images", len(res.Hook), len(opts.Images))
	}
	for _, h := range res.Hook {
		if h.Dockroot.Median <= 0 || h.Shell.Median <= 0 || h.Image.Subvolume == "" || h.Image.Layers != 2 {
			t.Errorf("hook row %+v: want both contenders timed and a 2-layer image", h)
		}
		if h.Deferred.Median <= 0 || h.Image.TreeRootN <= 0 || h.Image.TreeLevel < 0 {
			t.Errorf("hook row %s: deferred commit %v, tree root level %d with %d items: want the commit timed and the root read",
				h.Image.Label, h.Deferred.Median, h.Image.TreeLevel, h.Image.TreeRootN)
		}
	}
	if st := res.Store; st == nil || st.Row.Dockroot.Median <= 0 || st.Row.Shell.Median <= 0 || st.LayerdbN < res.LayerdbN+opts.StoreLayers {
		t.Errorf("filled-store row %+v: want both contenders timed on a layerdb of at least %d + %d entries", st, res.LayerdbN, opts.StoreLayers)
	}
	if len(res.Delete) != 2 || res.Delete[1].ProgsErr == "" || res.Delete[0].ProgsErr != "" {
		t.Errorf("delete rows = %+v; want a flat row btrfs-progs deletes and a nested row it cannot", res.Delete)
	}
	if len(res.Copy) != 4 {
		t.Errorf("%d copy rows, want 2 trees × 2 sources", len(res.Copy))
	}
	for _, c := range res.Copy {
		if !c.MetadataEqual || c.Compared < c.Files {
			t.Errorf("copy %s from %s: metadata equal %v on %d paths, diffs %q", c.Tree, c.Source, c.MetadataEqual, c.Compared, c.Diffs)
		}
	}
	if len(res.TreeRoot) != len(opts.RootFiles) {
		t.Errorf("%d tree-root rows for %d subvolumes", len(res.TreeRoot), len(opts.RootFiles))
	}
	for _, r := range res.TreeRoot {
		if r.Snapshot.Median <= 0 || r.Pointers <= 0 {
			t.Errorf("tree-root row %+v: want the snapshot timed and the root read", r)
		}
	}
	if n := len(res.TreeRoot); n == 2 && res.TreeRoot[1].Pointers <= res.TreeRoot[0].Pointers && res.TreeRoot[1].Level == res.TreeRoot[0].Level {
		t.Errorf("tree-root rows %+v: more files gave no more pointers in the root", res.TreeRoot)
	}
	if len(res.Tags) != len(opts.TagCounts) || len(res.Menu) != len(opts.MenuCounts) {
		t.Errorf("tags %+v menu %+v: want one row per count", res.Tags, res.Menu)
	}
	if res.Stores == nil || len(res.Stores.Stores) != 3 {
		t.Fatalf("section 7c = %+v; want the three stores", res.Stores)
	}
	for _, sb := range res.Stores.Stores {
		if sb.Skipped != "" {
			t.Logf("7c: %s skipped: %s", sb.Store, sb.Skipped)
			continue
		}
		if len(sb.Rows) != len(opts.TagCounts) || sb.Rows[0].Resolve.Median <= 0 || sb.Rows[0].IndexBytes <= 0 {
			t.Errorf("7c %s rows %+v: want one timed row per tag count, with the index's size", sb.Store, sb.Rows)
		}
	}
	if c := res.Stores.Bbolt; c == nil || c.Bbolt <= 0 || c.InitBytes <= 0 {
		t.Errorf("7c bbolt cost = %+v (%s); want bbolt's symbols counted", c, res.Stores.BboltErr)
	}
	data, err := os.ReadFile(filepath.Join(opts.Out, "bench", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil || len(back.Hook) != len(res.Hook) {
		t.Errorf("results.json does not read back: %v", err)
	}
	doc, err := os.ReadFile(filepath.Join(opts.Out, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, png := range []string{"hook-vs-image-size.png", "delete-vs-files.png"} {
		if fi, err := os.Stat(filepath.Join(opts.Out, "bench", png)); err != nil || fi.Size() == 0 {
			t.Errorf("plot %s: %v", png, err)
		} else if !strings.Contains(string(doc), "bench/"+png) {
			t.Errorf("BENCHMARKS.md does not show %s", png)
		}
	}
}

// TestKeepSections: a run of some sections (-vm-only, -only) keeps the
// other sections of the earlier results.json and says from which run each
// comes; without one they stay "not run".
func TestKeepSections(t *testing.T) {
	old := sampleResults()
	old.Missing["copy"] = "failed: cp"
	file := writeResults(t, old)
	only, err := parseOnly(vmOnly)
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{res: Results{Date: time.Date(2026, 2, 3, 4, 5, 0, 0, time.UTC), Only: onlyList(only),
		Missing: map[string]string{"hook": "not run: -only initramfs,boot", "boot": "failed: x"}}}
	b.keepSections(file)
	if len(b.res.Hook) != len(old.Hook) || len(b.res.Tags) != len(old.Tags) || !b.res.From["hook"].Equal(old.Date) || !b.res.From["stores"].Equal(old.Date) {
		t.Errorf("kept %d hook rows, %d tag rows, from %v; want %d, %d, from %v", len(b.res.Hook), len(b.res.Tags), b.res.From, len(old.Hook), len(old.Tags), old.Date)
	}
	if _, ok := b.res.From["boot"]; ok || b.res.Initramfs != nil {
		t.Errorf("the sections this run measured were taken from the earlier run: from %v", b.res.From)
	}
	if _, ok := b.res.Missing["hook"]; ok || b.res.Missing["copy"] != "failed: cp" || b.res.Missing["boot"] != "failed: x" {
		t.Errorf("missing after keeping = %v; want hook measured, copy's old failure, boot's own", b.res.Missing)
	}
	if doc := renderReport(&b.res, nil, nil); !strings.Contains(doc,
		"Sections 5 and 6 were measured on 2026-02-03 04:05 UTC (`-only initramfs,boot`); sections 1 and 2, 1d, 3, 4, 7a, 7b, 2b and 7c are from the run of 2026-01-02 03:04 UTC.") {
		t.Errorf("the report does not say where the kept sections come from:\n%s", doc[:600])
	}
	none := &bench{res: Results{Only: []string{"boot"}, Missing: map[string]string{"hook": "not run: -only boot"}}}
	none.keepSections(filepath.Join(t.TempDir(), "absent.json"))
	if none.res.From != nil || none.res.Missing["hook"] == "" {
		t.Error("with no earlier results the sections are not reported as not run")
	}
}

// TestKeepSectionsChained: -only stores after a -vm-only run keeps each
// section's own date, including those the -vm-only run had kept itself
// (written before Results.From, as sections_kept_from), and a section the
// earlier run never measured stays "not run".
func TestKeepSectionsChained(t *testing.T) {
	old := sampleResults()
	old.Stores = nil
	vmDate, envDate := old.Date, time.Date(2025, 12, 1, 10, 0, 0, 0, time.UTC)
	old.KeptFrom = &envDate
	file := writeResults(t, old)
	b := &bench{res: Results{Date: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Only: []string{"stores"},
		Missing: map[string]string{"hook": "not run: -only stores", "boot": "not run: -only stores"}}}
	b.keepSections(file)
	if !b.res.From["hook"].Equal(envDate) || !b.res.From["boot"].Equal(vmDate) || b.res.Boot == nil {
		t.Errorf("from = %v; want hook from %v, boot from %v", b.res.From, envDate, vmDate)
	}
	doc := renderReport(&b.res, nil, nil)
	want := "Section 7c was measured on 2026-03-01 00:00 UTC (`-only stores`); sections 5 and 6 are from the run of 2026-01-02 03:04 UTC; " +
		"sections 1 and 2, 1d, 3, 4, 7a, 7b and 2b are from the run of 2025-12-01 10:00 UTC."
	if !strings.Contains(doc, want) {
		t.Errorf("report lacks %q", want)
	}
	// A results.json of the old form, re-rendered, still says it.
	if line := provenance(old); line != "Sections 5 and 6 were measured on 2026-01-02 03:04 UTC (`-vm-only`); sections 1 and 2, 1d, 3, 4, 7a, 7b and 2b are from the run of 2025-12-01 10:00 UTC." {
		t.Errorf("provenance of a -vm-only results.json = %q", line)
	}
}

func writeResults(t *testing.T, r *Results) string {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "results.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestParseOnly(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{"stores", "stores", ""},
		{" tags , stores ", "tags,stores", ""},
		{vmOnly, "initramfs,boot", ""},
		{"boot", "initramfs,boot", ""}, // the boot needs its initramfs
		{"stores,hook", "hook,stores", ""},
		{"vm", "", `unknown section "vm"`},
		{",", "", "no section named"},
	} {
		only, err := parseOnly(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("parseOnly(%q) error = %v, want %q", c.in, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("parseOnly(%q): %v", c.in, err)
		case c.err == "" && strings.Join(onlyList(only), ",") != c.want:
			t.Errorf("parseOnly(%q) = %v, want %s", c.in, onlyList(only), c.want)
		}
	}
}

func TestRenderStores(t *testing.T) {
	st := func(v float64) Stat { return newStat([]float64{v, v, v}) }
	res := sampleResults()
	res.Stores = &StoresResult{Image: "a test image", Runs: 21, Stores: []StoreBench{
		{Store: "graphdriver", Index: "repositories.json", How: "API", Rows: []StoreTagRow{{Tags: 10, IndexBytes: 900, Resolve: st(0.2)}, {Tags: 1000, IndexBytes: 90000, Resolve: st(0.5)}}},
		{Store: "podman", Index: "images.json", How: "podman tag", Rows: []StoreTagRow{{Tags: 10, Resolve: st(0.3)}, {Tags: 1000, Resolve: st(0.6)}}},
		{Store: "containerd", Skipped: "docker 29 is not built in /x; run `make daemons`"},
	}, Bbolt: &BinaryCost{Arch: "amd64", InitBytes: 4 << 20, Bbolt: 100 << 10, BboltSymbols: 300, Reader: 50 << 10, ReaderSymbols: 80}}
	doc := renderReport(res, nil, nil)
	for _, want := range []string{
		"| 7c | Resolve with 1000 vs 10 tags, per image store | graphdriver 0.500 ms vs 0.200 ms; podman 0.600 ms vs 0.300 ms; containerd — | — | graphdriver 2.50×, podman 2.00× | **misses** independent of the number of tags (≤ 2.00×): graphdriver |",
		"Above 2.00×, the cost grows with the tags: each Resolve reads and decodes the store's whole index, which grows",
		"with every tag: graphdriver (`repositories.json` 900 B → 87.9 KiB).",
		"### 7c. Resolution vs tags, per image store",
		"| graphdriver | 1,000 | `repositories.json` 87.9 KiB | **0.500 ms** |",
		"| containerd | — | — | not measured: docker 29 is not built in /x; run `make daemons` | — |",
		"- podman: tagged by podman tag.",
		"Resolve at 1,000 tags / at 10: graphdriver 2.50× (0.200 ms → 0.500 ms); podman 2.00× (0.300 ms → 0.600 ms).",
		"go.etcd.io/bbolt sum to 100.0 KiB (300 symbols)",
		"the containerd store's bbolt reader takes about 150.0 KiB of symbols (section 7c)",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	res.Stores = nil
	res.Missing["stores"] = "not run: -only hook"
	if doc := renderReport(res, nil, nil); !strings.Contains(doc, "| 7c | Resolve with many tags, per image store | — | — | not measured |") ||
		!strings.Contains(doc, "> **Not measured:** not run: -only hook") {
		t.Error("a section 7c not run is not said so")
	}
}

func TestSymbolSizes(t *testing.T) {
	nm := `  542620       4261 T go.etcd.io/bbolt.Open
  5a0000        100 D type:go.etcd.io/bbolt.DB
  600000         50 T github.com/dockroot/dockroot/snapshot/containerd.(*store).Resolve
  700000       1000 T runtime.main
  800000            U undefined
`
	all, bb, nb, rd, nr := symbolSizes(nm)
	if all != 5411 || bb != 4361 || nb != 2 || rd != 50 || nr != 1 {
		t.Errorf("symbolSizes = %d %d %d %d %d; want 5411 4361 2 50 1", all, bb, nb, rd, nr)
	}
}
