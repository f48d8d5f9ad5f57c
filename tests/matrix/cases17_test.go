package matrix

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/layout"
	"golang.org/x/sys/unix"
)

// allCases is the whole matrix: Cases and reliabilityCases.
func allCases() []Case { return append(Cases(), reliabilityCases()...) }

// reliabilityCases are the rows issue 17's review added: what dockroot did
// not create is never adopted or deleted, store files are read safely,
// prepared bases are used only when intact, and two entries can share one
// top level.
func reliabilityCases() []Case {
	shell := config.OnFailShell
	return []Case{
		// --- what dockroot did not create ---
		{Name: "NAME is a user's snapshot of another image's layer: refused, not adopted", Cmdline: "rootflags=subvol=mysystem",
			Disk: []Mutation{snapshotOfImage("desk:2", "mysystem")},
			Want: Outcome{Step: "rw-layer", Policy: shell,
				Console: `cannot replace the rw layer mysystem: .*that dockroot did not create .*or choose another rootflags=subvol= name`,
				Checks:  []Check{fileIs("mysystem/"+markerFile, "the user's own\n")}}},
		{Name: "NAME is a user's snapshot of a Docker container layer: refused, not adopted", Cmdline: "rootflags=subvol=mycontainer",
			Disk: []Mutation{snapshotOf("{container-layer}", "mycontainer")},
			Want: Outcome{Step: "rw-layer", Policy: shell,
				Console: `cannot replace the rw layer mycontainer: .*that dockroot did not create`,
				Checks:  []Check{fileIs("mycontainer/"+markerFile, "the user's own\n")}}},
		{Name: "NAME is the ancestor's snapshot of the booted image: adopted and kept as NAME.adopted", Cmdline: "rootflags=subvol=ancestor",
			Disk: []Mutation{snapshotOfImage("desk:1", "ancestor"), alsoExpect("ancestor.adopted")},
			Want: Outcome{Booted: true, Image: "desk:1", Prev: PrevUntouched,
				Console: `adopted ancestor: a snapshot of .* \(the booted image's top layer\)`,
				Checks:  []Check{fileIs("ancestor.adopted/"+markerFile, "the user's own\n")}}},
		{Name: "the ancestor's snapshot with dockroot.adopt=0: refused", Cmdline: "rootflags=subvol=ancestor dockroot.adopt=0",
			Disk: []Mutation{snapshotOfImage("desk:1", "ancestor")},
			Want: Outcome{Step: "rw-layer", Policy: shell,
				Console: `cannot replace the rw layer ancestor: .*that dockroot did not create`,
				Checks:  []Check{fileIs("ancestor/"+markerFile, "the user's own\n")}}},
		{Name: "a user's subvolume at NAME.prev.1: refused, kept", Disk: []Mutation{userSubvolume(layerName + ".prev.1")},
			Want: Outcome{Step: "rw-layer", Policy: shell,
				Console: `docker_rwlayer.prev.1 is subvolume .* that dockroot did not create`,
				Checks:  []Check{fileIs(layerName+".prev.1/"+markerFile, "the user's own\n")}}},

		// --- the top layer ---
		{Name: "a merged-/usr image keeps lib -> usr/lib under a top layer's lib/", Cmdline: "docker_image=" + imageUsrMerge,
			Disk: []Mutation{topFile("lib/firmware/x", "fw\n", 0o644)},
			Want: Outcome{Booted: true, Image: imageUsrMerge,
				Console: `merging top layer lib/ into usr/lib`,
				Checks: []Check{symlinkIs("lib", "usr/lib"), rootFileIs("usr/lib/firmware/x", "fw\n"),
					rootFileIs("usr/lib/x86_64-linux-gnu/libc.so.6", "libc\n")}}},

		// --- store files read safely ---
		{Name: "repositories.json is a fifo: refused at once, never blocks", Disk: []Mutation{fifoAt(reposJSON)},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `store file .*repositories.json .*not a regular file`}},
		{Name: "repositories.json is a symlink out of the data root: not followed", Disk: []Mutation{symlinkAt(reposJSON, "/etc/passwd")},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `store file .*repositories.json is a symbolic link .*: image store is corrupt; the engine never writes one: put back the file it wrote`}},
		{Name: "repositories.json oversized: refused with its limit", Disk: []Mutation{bigFile(reposJSON, 17<<20)},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `store file .*repositories.json .*\(read limit \d+ bytes\)`}},
		{Name: "cache-id is a symlink to /dev/zero: not followed", Disk: []Mutation{symlinkImageFile("desk:1", "cache-id", "/dev/zero")},
			Want: Outcome{Step: "image", Policy: shell,
				Console: `store file .*cache-id is a symbolic link`}},

		// --- prepared bases ---
		{Name: "a prepared base made writable is not used, and is replaced", Disk: []Mutation{onBases("made writable", func(p string) error {
			return run("btrfs", "property", "set", "-f", "-ts", p, "ro", "false")
		})},
			Want: Outcome{Booted: true, Image: "desk:1",
				Console: `no prepared base for this image and top layer yet`,
				Checks:  []Check{basesReadOnly()}}},
		{Name: "a prepared base with a corrupt record is not used, and is replaced", Disk: []Mutation{onBases("record overwritten", func(p string) error {
			return os.WriteFile(p+".json", []byte("{\"key\": garbage"), 0o644)
		})},
			Want: Outcome{Booted: true, Image: "desk:1",
				Console: `no prepared base for this image and top layer yet`,
				Checks:  []Check{basesReadOnly()}}},

		// --- two entries, one top level ---
		{Name: "a second boot entry with its own NAME on the same top level leaves the first alone", Cmdline: "rootflags=subvol=other docker_image=desk:2",
			Disk: []Mutation{alsoExpect("other")},
			Want: Outcome{Booted: true, Image: "desk:2", Prev: PrevUntouched,
				Checks: []Check{fileIs("other/etc/fixture-image", "desk:2\n")}}},
	}
}

// snapshotOfImage makes p a writable snapshot of ref's top-layer subvolume
// with a marker file: what the ancestor hook left, or a user's own system.
func snapshotOfImage(ref, p string) Mutation {
	return Mutation{fmt.Sprintf("btrfs subvolume snapshot %s's top layer %s, with a file in it", ref, p), func(d *Disk) error {
		return snapshotTo(d, d.F.images[ref].Subvolume, p)
	}}
}

// snapshotOf is snapshotOfImage for a subvolume named by a fixture
// placeholder ({container-layer}).
func snapshotOf(src, p string) Mutation {
	return Mutation{fmt.Sprintf("btrfs subvolume snapshot %s %s, with a file in it", src, p), func(d *Disk) error {
		return snapshotTo(d, d.F.vars[src], p)
	}}
}

func snapshotTo(d *Disk, src, p string) error {
	if err := run("btrfs", "subvolume", "snapshot", d.path(src), d.path(p)); err != nil {
		return err
	}
	d.extraLayers = append(d.extraLayers, p)
	return os.WriteFile(d.path(p+"/"+markerFile), []byte("the user's own\n"), 0o644)
}

// alsoExpect says the boot makes the subvolume p outside the Docker store,
// beside the layers the case's Prev accounts for.
func alsoExpect(p string) Mutation {
	return Mutation{"(the boot makes " + p + ")", func(d *Disk) error {
		d.extraLayers = append(d.extraLayers, p)
		return nil
	}}
}

func fifoAt(p string) Mutation {
	return Mutation{"replace " + p + " with a fifo", func(d *Disk) error {
		if err := os.Remove(d.path(p)); err != nil {
			return err
		}
		return unix.Mkfifo(d.path(p), 0o600)
	}}
}

func symlinkAt(p, target string) Mutation {
	return Mutation{"replace " + p + " with a symlink to " + target, func(d *Disk) error {
		if err := os.Remove(d.path(p)); err != nil {
			return err
		}
		return os.Symlink(target, d.path(p))
	}}
}

func symlinkImageFile(ref, which, target string) Mutation {
	return Mutation{fmt.Sprintf("replace %s's %s with a symlink to %s", ref, which, target), func(d *Disk) error {
		return symlinkAt(imageFile(d, ref, which), target).Apply(d)
	}}
}

// bigFile appends spaces to p until it holds size bytes: still valid JSON,
// only too big.
func bigFile(p string, size int64) Mutation {
	return Mutation{fmt.Sprintf("grow %s to %d MiB", p, size>>20), func(d *Disk) error {
		f, err := os.OpenFile(d.path(p), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil && fi.Size() < size {
			_, err = f.Write([]byte(strings.Repeat(" ", int(size-fi.Size()))))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}}
}

// onBases runs fn on every prepared base on the disk (the pristine boot
// kept one).
func onBases(what string, fn func(path string) error) Mutation {
	return Mutation{"every prepared base " + what, func(d *Disk) error {
		bases, err := filepath.Glob(d.path(layout.BasesDir + "/*"))
		if err != nil {
			return err
		}
		n := 0
		for _, b := range bases {
			if strings.HasSuffix(b, ".json") {
				continue
			}
			if err := fn(b); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return fmt.Errorf("no prepared base in %s", d.path(layout.BasesDir))
		}
		return nil
	}}
}

// basesReadOnly checks that every prepared base left is read-only.
func basesReadOnly() Check {
	return Check{"every prepared base is read-only", func(d *Disk, r *Result) error {
		bases, _ := filepath.Glob(d.path(layout.BasesDir + "/*"))
		n := 0
		for _, b := range bases {
			if strings.HasSuffix(b, ".json") {
				continue
			}
			n++
			out, err := exec.Command("btrfs", "property", "get", "-ts", b, "ro").Output()
			if err != nil || strings.TrimSpace(string(out)) != "ro=true" {
				return fmt.Errorf("base %s: %q, %v", b, out, err)
			}
		}
		if n == 0 {
			return fmt.Errorf("no prepared base was kept")
		}
		return nil
	}}
}
