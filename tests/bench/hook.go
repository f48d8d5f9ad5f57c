package main

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/toplayer"
)

//go:embed ancestor.sh
var ancestorScript []byte

// Names of the rw layers the two contenders make, beside each other at the
// top level, as rootflags=subvol= names them.
const (
	dockrootLayer = "bench_rwlayer"
	ancestorLayer = "ancestor_rwlayer"
)

// HookRow is the boot-time work for one image: dockroot in process against
// the ancestor's shell algorithm, on the same filesystem in the same run.
// Dockroot is a boot whose image and top layer are those of the boot
// before (the layer is made from the prepared base); Cold is the first
// boot after either changed (the top layer is copied and a base saved).
type HookRow struct {
	Image    ImageInfo       `json:"image"`
	Dockroot Stat            `json:"dockroot"`
	Steps    map[string]Stat `json:"dockroot_steps"` // see hookSteps
	// Deferred is the btrfs transaction commit that writes the switch to
	// disk after the hook returned (a syncfs timed right after it): work
	// btrfs does in the background once the booted system runs, not part
	// of Dockroot.
	Deferred  Stat            `json:"dockroot_deferred_commit"`
	Cold      Stat            `json:"dockroot_cold"`
	ColdSteps map[string]Stat `json:"dockroot_cold_steps"`
	Shell     Stat            `json:"shell"`
	Speedup   float64         `json:"speedup"`      // shell median / dockroot median
	ColdSpeed float64         `json:"speedup_cold"` // shell median / cold median
}

// hookSteps are the parts of dockroot's boot work, in order: resolve the
// tag; fingerprint the top layer and look for its prepared base; snapshot
// the base (or, cold, the image); copy the top layer (cold only); save the
// base for the next boot (cold only); commit.
var hookSteps = []string{"resolve", "base", "prepare", "toplayer", "save", "commit"}

// dockrootHook does what dockroot-init does between mounting the top level
// and mounting the new root (hook.createLayer, hook.applyTopLayer and
// hook.commitLayer, with dockroot.cache= on): resolve ref, fingerprint the top layer and look
// for its prepared base, snapshot the base (or the image, with no base)
// into a prepared layer, apply the top layer and save the base (only when
// there was none), commit (swap it under the layer name, rotate, delete
// the layer beyond keep=1). It returns each part's time, and under
// "deferred" the time of a syncfs right after (see HookRow.Deferred).
func dockrootHook(top, dockerPath, ref, toplayerDir string) (map[string]float64, error) {
	t := map[string]float64{}
	var img *snapshot.Image
	var p *rwlayer.Pending
	var err error
	if t["resolve"], err = timeIt(func() error {
		img, err = graphdriver.New(top, dockerPath).Resolve(ref)
		return err
	}); err != nil {
		return nil, err
	}
	bases := &rwlayer.Bases{Top: top}
	var key rwlayer.BaseKey
	source, reused := img.Subvolume, false
	if t["base"], err = timeIt(func() error {
		fp, err := toplayer.TakeFingerprint(toplayerDir)
		if err != nil {
			return err
		}
		if key, err = rwlayer.NewBaseKey(top, dockrootLayer, img, "bench:"+toplayerDir, fp.Sum); err != nil {
			return err
		}
		if rel, ok := bases.Find(key); ok {
			source, reused = rel, true
		}
		return nil
	}); err != nil {
		return nil, err
	}
	layers := &rwlayer.Layers{Top: top, Name: dockrootLayer, Keep: 1, DockerPath: dockerPath, Image: img.ID}
	if t["prepare"], err = timeIt(func() error { p, err = layers.Prepare(source); return err }); err != nil {
		return nil, err
	}
	var sum toplayer.Summary
	if !reused {
		if t["toplayer"], err = timeIt(func() error { sum, err = toplayer.Apply(p.Path(), toplayerDir); return err }); err == nil {
			t["save"], err = timeIt(func() error { _, _, err := bases.Save(p.Path(), key); return err })
		}
		if err != nil {
			if aerr := p.Abort(); aerr != nil {
				err = fmt.Errorf("%w (and aborting the prepared layer: %v)", err, aerr)
			}
			return nil, err
		}
	}
	if t["commit"], err = timeIt(func() error {
		if sum.Copied == 0 {
			p.MetadataOnly() // as hook.commitLayer does
		}
		res, err := p.Commit()
		if err == nil && len(res.Warnings) > 0 {
			err = fmt.Errorf("commit warnings: %s", strings.Join(res.Warnings, "; "))
		}
		return err
	}); err != nil {
		return nil, err
	}
	if t["deferred"], err = timeIt(layers.Sync); err != nil {
		return nil, err
	}
	if reused {
		t["reused"] = 1
	}
	return t, nil
}

// forgetBase deletes the prepared base of ref's slot, so that the next
// dockrootHook on it is a cold boot.
func forgetBase(top, ref string) error {
	b := &rwlayer.Bases{Top: top}
	list, err := b.List()
	if err != nil {
		return err
	}
	for _, bi := range list {
		if bi.Key.Ref == "" || familiar(bi.Key.Ref) == familiar(ref) {
			if err := b.Delete(bi.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// hookRuns collects dockrootHook's timed runs for one image: warm (from
// the prepared base) and cold.
type hookRuns struct {
	total, deferred, cold []float64
	steps, coldSteps      map[string][]float64
}

func (r *hookRuns) add(t map[string]float64) {
	if r.steps == nil {
		r.steps, r.coldSteps = map[string][]float64{}, map[string][]float64{}
	}
	total, steps, totals := 0.0, r.steps, &r.total
	if t["reused"] == 0 {
		steps, totals = r.coldSteps, &r.cold
	}
	for _, s := range hookSteps {
		total += t[s]
		steps[s] = append(steps[s], t[s])
	}
	*totals = append(*totals, total)
	if t["reused"] != 0 {
		r.deferred = append(r.deferred, t["deferred"])
	}
}

// row is the HookRow of these runs against the shell's.
func (r *hookRuns) row(img ImageInfo, shell []float64) HookRow {
	row := HookRow{Image: img, Steps: map[string]Stat{}, ColdSteps: map[string]Stat{},
		Dockroot: newStat(r.total), Deferred: newStat(r.deferred), Cold: newStat(r.cold), Shell: newStat(shell)}
	for s, v := range r.steps {
		row.Steps[s] = newStat(v)
	}
	for s, v := range r.coldSteps {
		row.ColdSteps[s] = newStat(v)
	}
	row.Speedup = ratio(row.Shell.Median, row.Dockroot.Median)
	row.ColdSpeed = ratio(row.Shell.Median, row.Cold.Median)
	return row
}

// ancestorHook runs ancestor.sh for ref and returns its wall time,
// process start included, as the ancestor's hook paid it.
func ancestorHook(script, top, dockerPath, ref, toplayerDir string) (float64, error) {
	repo, tag, ok := strings.Cut(familiar(ref), ":")
	if !ok {
		return 0, fmt.Errorf("ancestor.sh needs a name:tag reference, got %q", ref)
	}
	argv := []string{"bash", script, top, dockerPath, repo, tag, ancestorLayer, toplayerDir}
	return timeIt(func() error {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
		}
		return nil
	})
}

// familiar is ref as repositories.json keys it ("bench/small:1").
func familiar(ref string) string {
	r, err := snapshot.ParseRef(ref)
	if err != nil {
		return ref
	}
	return r.Familiar()
}

// benchHook measures sections 1 and 2 for every image. Each contender
// does two untimed warm-up runs per image first, so every timed run finds
// an old layer to replace, as every boot but the first does. Timed runs
// go round the images, alternating which contender goes first, so that
// drift on the machine is spread over all of them; btrfs's cleaner is
// waited for, untimed, before each run.
func (b *bench) benchHook() error {
	script := filepath.Join(b.work, "ancestor.sh")
	if err := os.WriteFile(script, ancestorScript, 0o755); err != nil {
		return err
	}
	dr := make([]hookRuns, len(b.images))
	sh := make([][]float64, len(b.images))
	// who: "warm" (dockroot, its base kept from the run before), "cold"
	// (dockroot after its base was deleted) or "shell".
	one := func(k int, who string, timed bool) error {
		img := b.images[k]
		if who == "cold" {
			if err := forgetBase(b.fs.Dir, img.Ref); err != nil {
				return err
			}
		}
		if err := waitCleaner(b.fs.Dir); err != nil {
			return err
		}
		if who != "shell" {
			t, err := dockrootHook(b.fs.Dir, dockerPath, img.Ref, b.toplayer)
			if err != nil {
				return fmt.Errorf("dockroot hook on %s: %w", img.Ref, err)
			}
			if (t["reused"] != 0) != (who == "warm") {
				return fmt.Errorf("dockroot hook on %s: a %s run found reused=%v", img.Ref, who, t["reused"] != 0)
			}
			if timed {
				dr[k].add(t)
			}
			return nil
		}
		t, err := ancestorHook(script, b.fs.Dir, dockerPath, img.Ref, b.toplayer)
		if err != nil {
			return err
		}
		if timed {
			sh[k] = append(sh[k], t)
		}
		return nil
	}
	// The three contenders take turns in a rotating order, so drift on
	// the machine is spread over all of them. A warm run follows a cold
	// one or another warm one, so its base is always there.
	orders := [][]string{{"cold", "warm", "shell"}, {"shell", "cold", "warm"}, {"warm", "shell", "cold"}}
	for k := range b.images {
		for w := 0; w < 2; w++ {
			for _, who := range orders[0] {
				if err := one(k, who, false); err != nil {
					return err
				}
			}
		}
	}
	for i := 0; i < b.opts.HookRuns; i++ {
		for k := range b.images {
			for _, who := range orders[(i+k)%len(orders)] {
				if err := one(k, who, true); err != nil {
					return err
				}
			}
		}
	}
	for k, img := range b.images {
		row := dr[k].row(img, sh[k])
		b.logf("hook %-8s dockroot %s (resolve %s, base %s, prepare %s, commit %s; then btrfs commits in %s); cold %s (prepare %s, top layer %s, save %s, commit %s); shell %s: %s / %s faster",
			img.Label, fmtMS(row.Dockroot.Median), fmtMS(row.Steps["resolve"].Median), fmtMS(row.Steps["base"].Median),
			fmtMS(row.Steps["prepare"].Median), fmtMS(row.Steps["commit"].Median), fmtMS(row.Deferred.Median),
			fmtMS(row.Cold.Median), fmtMS(row.ColdSteps["prepare"].Median), fmtMS(row.ColdSteps["toplayer"].Median),
			fmtMS(row.ColdSteps["save"].Median), fmtMS(row.ColdSteps["commit"].Median),
			fmtMS(row.Shell.Median), fmtRatio(row.Speedup), fmtRatio(row.ColdSpeed))
		b.res.Hook = append(b.res.Hook, row)
	}
	return nil
}

// writeTopLayer writes the fixed per-machine top layer both contenders
// copy: what a real machine keeps there (hostname, keys, network config,
// a symlink, a private directory), about 20 entries and 10 KB.
func writeTopLayer(dir string) error {
	type f struct {
		path, data string
		mode       os.FileMode
	}
	files := []f{
		{"etc/hostname", "bench-machine\n", 0o644},
		{"etc/hosts", "127.0.0.1 localhost\n127.0.1.1 bench-machine\n", 0o644},
		{"etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444},
		{"etc/fstab", "LABEL=data /srv btrfs subvol=data 0 0\n", 0o644},
		{"etc/ssh/ssh_host_ed25519_key", strings.Repeat("k", 400), 0o600},
		{"etc/ssh/ssh_host_ed25519_key.pub", strings.Repeat("p", 100), 0o644},
		{"etc/ssh/ssh_host_rsa_key", strings.Repeat("r", 2600), 0o600},
		{"etc/ssh/ssh_host_rsa_key.pub", strings.Repeat("q", 560), 0o644},
		{"etc/systemd/network/10-lan.network", "[Match]\nName=en*\n[Network]\nDHCP=yes\n", 0o644},
		{"root/.ssh/authorized_keys", strings.Repeat("a", 800), 0o600},
		{"usr/local/bin/site-setup", "#!/bin/sh\nexit 0\n", 0o755},
		{"var/lib/site/state", strings.Repeat("s", 4096), 0o640},
	}
	for _, x := range files {
		p := filepath.Join(dir, x.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(x.data), x.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, x.mode); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "root/.ssh"), 0o700); err != nil {
		return err
	}
	return os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(dir, "etc/localtime"))
}

// resolveImage resolves ref in the benchmark's Docker data root.
func resolveImage(top, ref string) (*snapshot.Image, error) {
	return graphdriver.New(top, dockerPath).Resolve(ref)
}
